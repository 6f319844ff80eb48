"""Report blocks written out: Markdown (figures copied beside it) and one self-contained HTML page (figures
embedded).

:func:`render_markdown` and :func:`render_html` take the typed blocks of :mod:`common.studies.task_reports`; a run's
image or file is copied to ``<out>/figures/<experiment>/<run>/...``, a plot across runs is drawn at
``<out>/figures/<name>.png``.
"""

from __future__ import annotations

import base64
import html
import shutil
from pathlib import Path

from common.studies.task_reports import Block, Heading, Image, Link, Paragraph, Plot, Table
from common.text import markdown_table

__all__ = ["render_html", "render_markdown"]


def _copy(path: Path, out: Path) -> str:
    """Copy a run's file to ``out/figures/<experiment>/<run>/...``; return its link relative to ``out``."""
    run_dir = next(p for p in path.parents if (p / "config.yaml").exists())
    relative = Path("figures") / run_dir.parent.name / run_dir.name / path.relative_to(run_dir)
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target)
    if path.suffix == ".html" and (path.parent / "plotly.min.js").exists():
        shutil.copy2(path.parent / "plotly.min.js", target.parent / "plotly.min.js")
    return relative.as_posix()


def _draw(plot: Plot, out: Path) -> Path:
    """A plot's figure, drawn at ``out/figures/<name>.png`` (figures across runs belong to the report)."""
    path = out / "figures" / f"{plot.name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot.draw(path)
    return path


def _markdown_lines(block: Block, out: Path) -> list[str]:
    """The lines of one block, each block followed by an empty line."""
    match block:
        case Heading(text, level):
            return ["#" * level + " " + text, ""]
        case Paragraph(text):
            return [text, ""]
        case Table(frame, index_header):
            return [markdown_table(frame, index=index_header).rstrip("\n"), ""]
        case Image(path, caption):
            return [f"![{caption}]({_copy(path, out)})", f"*{caption}*", ""]
        case Plot(_, _, caption):
            return [f"![{caption}]({_draw(block, out).relative_to(out).as_posix()})", f"*{caption}*", ""]
        case Link(path, text):
            return [f"[{text}]({_copy(path, out)})", ""]
    raise TypeError(f"not a report block: {block!r}")


def render_markdown(blocks: list[Block], out: Path) -> str:
    """The blocks as Markdown; their images and files are copied into ``out/figures``."""
    return "\n".join(line for block in blocks for line in _markdown_lines(block, out))


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f0f3f7}figure{margin:0.8em 0 1.6em}img{max-width:100%;border:1px solid #eee}
figcaption{font-size:0.85em;color:#555}h2{border-bottom:2px solid #4c72b0;padding-bottom:0.2em;margin-top:2em}
code{background:#f4f4f4;padding:0 0.2em}
"""


def _inline(text: str) -> str:
    """Markdown-light text as HTML: escaped, ``**bold**`` and ```code```."""
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [table.index_header, *table.frame.columns])
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in [name, *row]) + "</tr>"
        for name, row in table.frame.iterrows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _html_figure(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _html_block(block: Block, out: Path) -> str:
    match block:
        case Heading(text, level):
            return f"<h{level}>{html.escape(text)}</h{level}>"
        case Paragraph(text):
            return f"<p>{_inline(text)}</p>"
        case Table():
            return _html_table(block)
        case Image(path, caption):
            return _html_figure(path, caption)
        case Plot(_, _, caption):
            return _html_figure(_draw(block, out), caption)
        case Link(path, text):
            return f'<p><a href="{_copy(path, out)}">{html.escape(text)}</a> (opens beside this report)</p>'
    raise TypeError(f"not a report block: {block!r}")


def render_html(blocks: list[Block], out: Path, title: str) -> str:
    """The blocks as one HTML page with its own style; images embedded, linked files copied into ``out/figures``."""
    body = "".join(_html_block(block, out) for block in blocks)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
