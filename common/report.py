"""The seed document, generated: ``report.md`` and ``report.html`` from finished run dirs.

``python -m common.report --root runs/demo --out runs/demo/report`` takes the newest finished run of each
experiment under the root (or ``--runs DIR ...``) and writes, for the classification runs, the model-parameter
table, overall metrics per loss, per-class tables, curves, ROC curves, calibration and the Grad-CAM examples of
the better model; for the segmentation runs, each configuration's parameters and test metrics, loss curves, and
the 2D overlays and 3D views of the best configuration.

"Better" and "best" are chosen on the validation metric that selected each run's checkpoint, never on test
data, and the report says so. Every number is read from the runs' files (``metrics.json``,
``classification_report.csv``, ``history.csv``, ``config.yaml``, ``run_info.json``); nothing is recomputed.
The Markdown links figures copied beside it (``figures/``); the HTML embeds them, so it is one file.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from common.errors import MedlitError
from common.results import RunResult, latest_runs, load_run

__all__ = ["build_report", "fmt", "main", "show"]

Block = tuple[str, Any, Any]  # (kind, content, extra): h1/h2/h3/p/table/img/link


def fmt(value: Any, digits: int = 3) -> str:
    """How the report shows a value: floats with ``digits`` decimals, ``n/a`` for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def show(value: Any) -> str:
    """How the report shows a configuration value: as written (``1e-05``, ``2.0``), lists as ``a×b×c``."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "×".join(show(v) for v in value)
    return str(value)


def _mean_std(summary: dict[str, Any], digits: int = 3) -> str:
    return f"{fmt(summary.get('mean'), digits)} ± {fmt(summary.get('std'), digits)}"


def _table(rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Columns = runs, rows = quantities (the seed's layout); cells not yet text are configuration values."""
    return pd.DataFrame(rows).map(lambda v: v if isinstance(v, str) else show(v))


def _best(runs: Sequence[RunResult]) -> RunResult:
    return max(runs, key=lambda r: r.validation_score if r.monitor_mode == "max" else -r.validation_score)


# --- classification --------------------------------------------------------------------------------------------
def _classification(runs: list[RunResult]) -> list[Block]:
    blocks: list[Block] = [("h2", "Skin-lesion classification (HAM10000 / ISIC 2018 Task 3)", None)]
    first = runs[0]
    blocks.append(
        (
            "p",
            (
                f"Data: `{first.cfg('data.root')}`, split by `lesion_id` (no lesion in two splits), seed "
                f"{first.cfg('data.split_seed')}; {first.metrics.get('n_images')} test images. "
                "Classes in the fixed order "
                "MEL, NV, BCC, AKIEC, BKL, DF, VASC. Each model was tested with the checkpoint of its best validation "
                "balanced accuracy."
            ),
            None,
        )
    )
    parameters = {}
    for run in runs:
        loss = run.cfg("model.loss")
        parameters[run.experiment] = {
            "backbone": run.cfg("model.backbone"),
            "pretrained": run.cfg("model.pretrained"),
            "loss": loss,
            "focal gamma": run.cfg("model.focal_gamma") if "focal" in str(loss) else None,
            "optimizer": "Adam",
            "learning rate": run.cfg("model.lr"),
            "scheduler": run.cfg("model.scheduler"),
            "epochs": run.cfg("trainer.max_epochs"),
            "batch size": run.cfg("data.batch_size"),
            "image size": run.cfg("data.image_size"),
            "augmentation": run.cfg("data.augment"),
            "balanced sampler": run.cfg("data.balanced_sampler"),
            "class weights": run.cfg("data.class_weights"),
            "trainable parameters": run.info["trainable_parameters"],
            "seed": run.cfg("seed_everything"),
        }
    blocks += [("h3", "Model parameters", None), ("table", _table(parameters), "parameter")]
    overall = {}
    for run in runs:
        best = run.best_epoch()
        overall[run.experiment] = {
            "selected epoch": int(best["epoch"]) + 1,
            "train loss": fmt(best.get("train/loss")),
            "validation loss": fmt(best.get("val/loss")),
            "train accuracy": fmt(best.get("train/acc")),
            "validation accuracy": fmt(best.get("val/acc")),
            "validation balanced accuracy": fmt(best.get("val/bal_acc")),
            "test loss": fmt(run.metrics.get("loss")),
            "test accuracy": fmt(run.metrics.get("accuracy")),
            "test balanced accuracy": fmt(run.metrics.get("balanced_accuracy")),
            "test macro F1": fmt(run.metrics.get("f1_macro")),
            "test macro AUC": fmt(run.metrics.get("auc_macro")),
            "test ECE": fmt(run.metrics.get("ece")),
        }
    better = _best(runs)
    blocks += [
        ("h3", "Overall metrics", None),
        (
            "p",
            "Training and validation values are those of the selected epoch; test values are on the held-out "
            "test split. Balanced accuracy is the mean per-class recall (the ISIC 2018 ranking metric); ECE is the "
            "expected calibration error over 15 confidence bins.",
            None,
        ),
        ("table", _table(overall), "metric"),
        (
            "p",
            f"**Better model: {better.experiment}**, chosen on validation balanced accuracy "
            f"({fmt(better.validation_score)}), not on test data.",
            None,
        ),
    ]
    for run in runs:
        report = pd.read_csv(run.path / "classification_report.csv", index_col=0)
        shown = report.copy()
        for column in ("precision", "recall", "f1-score"):
            shown[column] = [fmt(v) if not pd.isna(v) else "" for v in report[column]]
        shown["support"] = report["support"].astype(int).astype(str)
        blocks += [("h3", f"Per-class results: {run.experiment}", None), ("table", shown, "class")]
    blocks.append(("h3", "Training and validation curves", None))
    blocks += [
        ("img", run.path / "curves.png", f"{run.experiment}: loss, accuracy, balanced accuracy, macro F1")
        for run in runs
    ]
    blocks.append(("h3", "ROC curves", None))
    blocks += [("img", run.path / "roc.png", f"{run.experiment}: one-vs-rest ROC per class") for run in runs]
    blocks.append(("h3", "Confusion matrices", None))
    blocks += [("img", run.path / "confusion_matrix.png", f"{run.experiment}") for run in runs]
    blocks.append(("h3", "Calibration", None))
    blocks += [
        ("img", run.path / "calibration.png", f"{run.experiment}: reliability diagram")
        for run in runs
        if (run.path / "calibration.png").exists()
    ]
    blocks.append(("h3", f"Grad-CAM examples of the better model ({better.experiment})", None))
    for folder in sorted((better.path / "gradcam").iterdir()) if (better.path / "gradcam").is_dir() else []:
        examples = sorted(folder.glob("correct_*.png"))[:1] + sorted(folder.glob("wrong_*.png"))[:1]
        if not examples:
            blocks.append(("p", f"{folder.name}: no test image of this class.", None))
        blocks += [("img", path, f"{folder.name}: {path.stem.split('_')[0]}ly classified") for path in examples]
    return blocks


# --- segmentation -----------------------------------------------------------------------------------------------
def _segmentation(runs: list[RunResult]) -> list[Block]:
    blocks: list[Block] = [("h2", "3D segmentation", None)]
    first = runs[0]
    unit = first.metrics.get("distance_unit", "voxels")
    blocks.append(
        (
            "p",
            (
                f"Data: `{first.cfg('data.root')}`; {first.metrics.get('n_cases')} test cases, evaluated on whole "
                "volumes by sliding-window inference with the checkpoint of the best validation Dice. "
                "Dice and Jaccard "
                f"are fractions; HD95 (95th-percentile symmetric surface distance) and ASD (mean distance from the "
                f"predicted to the true surface) are in {unit}, as defined by medpy. "
                f"Empty masks: {first.metrics.get('empty_mask_policy', 'n/a')}."
            ),
            None,
        )
    )
    parameters = {}
    for run in runs:
        parameters[run.experiment] = {
            "network": run.cfg("model.net"),
            "channels": run.cfg("model.channels"),
            "loss": run.cfg("model.loss"),
            "optimizer": "Adam",
            "learning rate": run.cfg("model.lr"),
            "batch size": run.cfg("data.batch_size"),
            "epochs": run.cfg("trainer.max_epochs"),
            "patches per volume": run.cfg("data.patches_per_volume"),
            "patch size": run.cfg("data.patch_size"),
            "augmentation": run.cfg("data.augment"),
            "normalisation": run.cfg("data.normalize"),
            "largest component": run.cfg("model.largest_component"),
            "trainable parameters": run.info["trainable_parameters"],
            "seed": run.cfg("seed_everything"),
        }
    blocks += [("h3", "Configurations", None), ("table", _table(parameters), "parameter")]
    metrics = {}
    for run in runs:
        m = run.metrics
        metrics[run.experiment] = {
            "selected epoch": int(run.best_epoch()["epoch"]) + 1,
            "validation Dice": fmt(run.validation_score),
            "test Dice": _mean_std(m["dice"]),
            "test Jaccard": _mean_std(m["jaccard"]),
            f"test HD95 ({unit})": _mean_std(m["hd95"], 2),
            f"test ASD ({unit})": _mean_std(m["asd"], 2),
            "cases with HD95 defined": f"{m['hd95']['n_defined']}/{m['n_cases']}",
            "empty predictions": m.get("n_empty_prediction", 0),
        }
    best = _best(runs)
    blocks += [
        ("h3", "Test metrics", None),
        ("p", "Mean ± standard deviation over test cases.", None),
        ("table", _table(metrics), "metric"),
        (
            "p",
            f"**Best configuration: {best.experiment}**, chosen on validation Dice ({fmt(best.validation_score)}), "
            "not on test data.",
            None,
        ),
        ("h3", "Training curves", None),
    ]
    blocks += [
        ("img", run.path / "curves.png", f"{run.experiment}: training loss, validation loss and Dice") for run in runs
    ]
    blocks.append(("h3", f"2D overlays of the best configuration ({best.experiment})", None))
    blocks += [
        ("img", path, f"{path.stem}: image, ground truth, prediction, errors")
        for path in sorted((best.path / "overlays").glob("*.png"))[:4]
    ]
    blocks.append(("h3", f"3D views of the best configuration ({best.experiment})", None))
    for path in sorted((best.path / "views3d").glob("*.png"))[:2]:
        blocks.append(("img", path, f"{path.stem}: ground truth, prediction, overlay (marching cubes)"))
        if path.with_suffix(".html").exists():
            blocks.append(("link", path.with_suffix(".html"), f"{path.stem}: interactive 3D view"))
    return blocks


# --- rendering -----------------------------------------------------------------------------------------------------
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


def _markdown(blocks: list[Block], out: Path) -> str:
    lines = []
    for kind, content, extra in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + content, ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "table":
            columns = [extra, *map(str, content.columns)]
            lines.append("| " + " | ".join(columns) + " |")
            lines.append("|" + "---|" * len(columns))
            for name, row in content.iterrows():
                lines.append("| " + " | ".join([str(name), *map(str, row)]) + " |")
            lines.append("")
        elif kind == "img":
            lines += [f"![{extra}]({_copy(content, out)})", f"*{extra}*", ""]
        elif kind == "link":
            lines += [f"[{extra}]({_copy(content, out)})", ""]
    return "\n".join(lines)


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
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html(blocks: list[Block], out: Path, title: str) -> str:
    body = []
    for kind, content, extra in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(content)}</p>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [extra, *content.columns])
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in [name, *row]) + "</tr>"
                for name, row in content.iterrows()
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(content).read_bytes()).decode()
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(extra)}">'
                f"<figcaption>{html.escape(extra)}</figcaption></figure>"
            )
        elif kind == "link":
            body.append(f'<p><a href="{_copy(content, out)}">{html.escape(extra)}</a> (opens beside this report)</p>')
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def build_report(runs: Sequence[RunResult], out: Path, title: str = "medlit report") -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out``; returns their paths."""
    if not runs:
        raise MedlitError("no finished runs to report on")
    out.mkdir(parents=True, exist_ok=True)
    classification = [r for r in runs if r.task == "classification"]
    segmentation = [r for r in runs if r.task == "segmentation"]
    blocks: list[Block] = [
        ("h1", title, None),
        (
            "p",
            f"Generated on {time.strftime('%Y-%m-%d %H:%M')} from {len(runs)} run(s): "
            + ", ".join(f"`{r.path}`" for r in runs)
            + ". Every number below is read from these runs' files.",
            None,
        ),
    ]
    if classification:
        blocks += _classification(classification)
    if segmentation:
        blocks += _segmentation(segmentation)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(_markdown(blocks, out))
    html_path.write_text(_html(blocks, out, title))
    return md_path, html_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m common.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("runs/demo"), help="newest run of each experiment")
    parser.add_argument("--runs", type=Path, nargs="*", default=None, help="explicit run dirs instead of --root")
    parser.add_argument("--out", type=Path, default=None, help="default: <root>/report")
    parser.add_argument("--title", default="medlit: skin-lesion classification and 3D segmentation")
    args = parser.parse_args(argv)
    try:
        runs = [load_run(p) for p in args.runs] if args.runs else list(latest_runs(args.root).values())
        md_path, html_path = build_report(runs, args.out or args.root / "report", args.title)
    except MedlitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {md_path}\nreport: {html_path}")


if __name__ == "__main__":
    main()
