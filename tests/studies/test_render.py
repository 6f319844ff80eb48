"""Typed report blocks written as Markdown and as one self-contained HTML page."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

from common.studies.render import render_html, render_markdown
from common.studies.task_reports import Heading, Image, Link, Paragraph, Plot, Table


def _png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (8, 6), colour).save(path)
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run dir (``<experiment>/<run>/`` with ``config.yaml``) holding a figure and an interactive view."""
    run = tmp_path / "runs" / "seg_dice" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\n")
    _png(run / "views3d" / "case1.png")
    (run / "views3d" / "case1.html").write_text("<html>view</html>")
    (run / "views3d" / "plotly.min.js").write_text("/* plotly */")
    return run


def _blocks(run_dir: Path) -> list:
    frame = pd.DataFrame({"cls_ce": ["0.500", "yes"], "cls_ce_focal": ["0.250", "no"]}, index=["accuracy", "TTA"])
    return [
        Heading("medlit: a <report>", 1),
        Heading("Task", 2),
        Heading("Section", 3),
        Paragraph("**Better model: a**, chosen on `val/acc` & more"),
        Table(frame, "metric"),
        Image(run_dir / "views3d" / "case1.png", "case1: overlay"),
        Plot("across_runs", lambda path: _png(path, (0, 90, 200)), "both runs"),
        Link(run_dir / "views3d" / "case1.html", "case1: interactive 3D view"),
    ]


def test_markdown_of_each_block(run_dir: Path, tmp_path: Path) -> None:
    """Each block and an empty line; a table with its index header first; a run's files copied under
    ``figures/<experiment>/<run>/``, a plot drawn at ``figures/<name>.png``."""
    out = tmp_path / "report"
    text = render_markdown(_blocks(run_dir), out)
    copied = "figures/seg_dice/20260101-000000/views3d"
    assert text == (
        "# medlit: a <report>\n\n## Task\n\n### Section\n\n"
        "**Better model: a**, chosen on `val/acc` & more\n\n"
        "| metric | cls_ce | cls_ce_focal |\n|---|---|---|\n| accuracy | 0.500 | 0.250 |\n| TTA | yes | no |\n\n"
        f"![case1: overlay]({copied}/case1.png)\n*case1: overlay*\n\n"
        "![both runs](figures/across_runs.png)\n*both runs*\n\n"
        f"[case1: interactive 3D view]({copied}/case1.html)\n"
    )
    assert (out / copied / "case1.png").read_bytes() == (run_dir / "views3d" / "case1.png").read_bytes()
    assert (out / copied / "plotly.min.js").is_file()  # the interactive view's script travels with it
    with PILImage.open(out / "figures" / "across_runs.png") as drawn:
        assert drawn.getpixel((0, 0)) == (0, 90, 200)


def test_markdown_table_of_no_rows_ends_like_any_block(tmp_path: Path) -> None:
    empty = Table(pd.DataFrame({"cls_ce": []}), "metric")
    assert render_markdown([empty, Paragraph("after")], tmp_path) == "| metric | cls_ce |\n|---|---|\n\nafter\n"


def test_html_of_each_block_is_escaped_and_embeds_the_images(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    page = render_html(_blocks(run_dir), out, "medlit: a <report>")
    assert page.startswith("<!DOCTYPE html>") and "<title>medlit: a &lt;report&gt;</title>" in page
    assert "<h1>medlit: a &lt;report&gt;</h1><h2>Task</h2><h3>Section</h3>" in page
    assert "<p><strong>Better model: a</strong>, chosen on <code>val/acc</code> &amp; more</p>" in page
    assert (
        "<table><thead><tr><th>metric</th><th>cls_ce</th><th>cls_ce_focal</th></tr></thead><tbody>"
        "<tr><td>accuracy</td><td>0.500</td><td>0.250</td></tr><tr><td>TTA</td><td>yes</td><td>no</td></tr>"
        "</tbody></table>"
    ) in page
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)">', page)
    assert [alt for _, alt in images] == ["case1: overlay", "both runs"]
    assert base64.b64decode(images[0][0]) == (run_dir / "views3d" / "case1.png").read_bytes()
    assert base64.b64decode(images[1][0]) == (out / "figures" / "across_runs.png").read_bytes()
    link = "figures/seg_dice/20260101-000000/views3d/case1.html"
    assert f'<p><a href="{link}">case1: interactive 3D view</a> (opens beside this report)</p>' in page
    assert (out / link).read_text() == "<html>view</html>"


def test_something_that_is_not_a_block_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not a report block"):
        render_markdown([("h2", "an old tuple block", None)], tmp_path)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a report block"):
        render_html([np.zeros(2)], tmp_path, "t")  # type: ignore[list-item]
