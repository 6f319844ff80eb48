"""The classification part of the report (registered for the task ``classification``).

For the classification runs: the model-parameter table, overall metrics per run, per-class tables, curves, ROC
curves, confusion matrices, calibration and the Grad-CAM examples of the better model (chosen on validation
balanced accuracy). Everything is read from the run dirs: ``metrics.json``, ``classification_report.csv``,
``history.csv``, ``config.yaml``, ``run_info.json`` and the figures the test wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from common.stats import ScoredItems
from common.studies.anchors import published_blocks
from common.studies.runs import RunResult
from common.studies.sections import best_run, no_best_run, table, tested_weights, training_rows, with_interval
from common.studies.task_reports import Block, Heading, Image, Paragraph, Table, register_report
from common.text import fmt
from lesion_cls import CLASS_NAMES, TASK
from lesion_cls.labels import is_isic
from lesion_cls.metrics import scored_items

__all__ = ["PARAMETERS", "ClassificationReport"]

PARAMETERS: dict[str, str] = {
    "backbone": "model.backbone",
    "pretrained": "model.pretrained",
    "loss": "model.loss",
    "focal gamma": "model.focal_gamma",
    "optimizer": "model.optimizer",
    "learning rate": "model.lr",
    "scheduler": "model.scheduler",
    "batch size": "data.batch_size",
    "image size": "data.image_size",
    "augmentation": "data.augment",
    "balanced sampler": "data.class_balance",
    "class weights": "data.class_weights",
    "logit adjustment τ": "model.logit_adjustment",
    "flip TTA": "model.tta_flips",
    "decision τ": "model.decision_tau",
    "selected on validation": "model.selection_metric",
}
"""The parameter table: row label → config key (then the training budget and what the run used of it, the
trainable parameters and the seed)."""


_SELECTION_LABELS = {
    "val/bal_acc": "balanced accuracy",
    "val/acc": "accuracy",
    "val/acc_bal_mean": "mean of accuracy and balanced accuracy",
}


def _parameters(run: RunResult) -> dict[str, object]:
    values = {label: run.cfg(key) for label, key in PARAMETERS.items()}
    if "focal" not in str(values["loss"]):
        values["focal gamma"] = None  # not used by the loss
    tau = run.metrics.get("decision_tau")  # the one the test used: chosen on validation when the setting is null
    if tau is not None and values["decision τ"] is None:
        values["decision τ"] = f"{fmt(tau)} (chosen on validation)"
    return {
        **values,
        **training_rows(run),
        "trainable parameters": run.info["trainable_parameters"],
        "seed": run.cfg("seed_everything"),
    }


def _overall(run: RunResult) -> dict[str, str]:
    best = run.best_epoch()
    m = run.metrics
    return {
        "tested weights": tested_weights(run),
        "train loss": fmt(best.get("train/loss")),
        "validation loss": fmt(best.get("val/loss")),
        "train accuracy": fmt(best.get("train/acc")),
        "validation accuracy": fmt(best.get("val/acc")),
        "validation balanced accuracy": fmt(best.get("val/bal_acc")),
        "test loss": fmt(m.get("loss")),
        **{f"test {label}": with_interval(run, name) for name, label in _INTERVAL_ROWS.items()},
        "test ECE": fmt(m.get("ece")),
    }


_INTERVAL_ROWS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "f1_macro": "macro F1",
    "auc_macro": "macro AUC",
}


def _scored_items(run: RunResult) -> ScoredItems | None:
    """The test images of ``predictions.csv`` (probabilities as tested, true labels), grouped by the lesions
    ``split.csv`` gives them (each image its own unit where it gives none, e.g. an explicit test set)."""
    path = run.path / "predictions.csv"
    if not path.is_file():
        return None
    predictions = pd.read_csv(path, dtype={"image": str})
    if "label" not in predictions:
        return None
    lesion_of: dict[str, str] = {}
    if (run.path / "split.csv").is_file():
        split = pd.read_csv(run.path / "split.csv", dtype={"image_id": str, "lesion_id": str})
        lesion_of = dict(zip(split["image_id"], split["lesion_id"], strict=True))
    ids, names = predictions["image"].tolist(), _class_names(run)
    target = predictions["label"].map({name: i for i, name in enumerate(names)}).to_numpy()
    probs = predictions[list(names)].to_numpy(dtype=float)
    unit = run.metrics.get("ci_unit", "lesion")
    return scored_items(ids, [lesion_of.get(i, i) for i in ids], probs, target, names, unit)


def _class_names(run: RunResult) -> tuple[str, ...]:
    """The run's classes, as its ``metrics.json`` names them (HAM10000's seven for runs that predate the field)."""
    return tuple(run.metrics.get("class_names") or CLASS_NAMES)


_UNIT_WORDING = {
    "lesion": ("split by `lesion_id` (no lesion in two splits)", "lesions: all images of a lesion drawn together"),
    "group": ("split by `group` (no group in two splits)", "groups: all images of a group drawn together"),
    "image": ("split by image (no groups given)", "images: each image its own unit, as no groups were given"),
}


def _validation_lesions(run: RunResult) -> int | None:
    path = run.path / "split.csv"
    if not path.is_file():
        return None
    split = pd.read_csv(path, dtype={"lesion_id": str})
    return int(split.loc[split["split"] == "val", "lesion_id"].nunique()) or None


def _per_class(run: RunResult) -> pd.DataFrame:
    report = pd.read_csv(run.path / "classification_report.csv", index_col=0)
    shown = report.copy()
    for column in ("precision", "recall", "f1-score"):
        shown[column] = [fmt(v) if not pd.isna(v) else "" for v in report[column]]
    shown["support"] = report["support"].astype(int).astype(str)
    return shown


def _figures(runs: list[RunResult]) -> list[Block]:
    blocks: list[Block] = [Heading("Training and validation curves", 3)]
    blocks += [
        Image(run.path / "curves.png", f"{run.experiment}: loss, accuracy, balanced accuracy, macro F1")
        for run in runs
        if (run.path / "curves.png").is_file()  # a run of test alone (an ensemble) has no training curves
    ]
    blocks.append(Heading("ROC curves", 3))
    blocks += [Image(run.path / "roc.png", f"{run.experiment}: one-vs-rest ROC per class") for run in runs]
    blocks.append(Heading("Confusion matrices and per-class recall", 3))
    blocks += [
        Image(run.path / "confusion_matrix.png", f"{run.experiment}: counts, row-normalised, recall per class")
        for run in runs
    ]
    blocks.append(Heading("Calibration", 3))
    blocks += [
        Image(run.path / "calibration.png", f"{run.experiment}: reliability diagram")
        for run in runs
        if (run.path / "calibration.png").exists()
    ]
    return blocks


_PUBLISHED = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}


def _published(runs: list[RunResult]) -> list[Block]:
    """The runs beside the published results of the protocols they follow (``common/studies/anchors.yaml``)."""
    return published_blocks(
        runs,
        lambda run: {name: fmt(run.metrics.get(name)) for name in _PUBLISHED},
        _published_column,
        _PUBLISHED,
        "The published rows as their sources give them (ranges as text). ",
    )


def _published_column(result: dict[str, Any], protocol: dict[str, Any]) -> dict[str, str]:
    """A published result's values, numbers formatted and ranges as the anchors file writes them."""
    return {
        name: fmt(result[name]) if isinstance(result.get(name), float) else str(result.get(name, "–"))
        for name in _PUBLISHED
    }


def _better_model(runs: list[RunResult], better: RunResult | None) -> str:
    if better is None:
        return no_best_run(runs, _SELECTION_LABELS)
    label = _SELECTION_LABELS.get(better.monitor, better.monitor)
    score = fmt(better.validation_score)
    return f"**Better model: {better.experiment}**, chosen on validation {label} ({score}), not on test data" + (
        "; whether the test data support the choice is under Paired comparisons on the test set."
        if len(runs) > 1
        else "."
    )


def _gradcam(run: RunResult, which: str) -> list[Block]:
    blocks: list[Block] = [Heading(f"Grad-CAM examples of {which} ({run.experiment})", 3)]
    folder = run.path / "gradcam"
    for class_folder in sorted(folder.iterdir()) if folder.is_dir() else []:
        examples = sorted(class_folder.glob("correct_*.png"))[:1] + sorted(class_folder.glob("wrong_*.png"))[:1]
        if not examples:
            blocks.append(Paragraph(f"{class_folder.name}: no test image of this class."))
        blocks += [Image(path, f"{class_folder.name}: {path.stem.split('_')[0]}ly classified") for path in examples]
    return blocks


@dataclass(frozen=True)
class ClassificationReport:
    """The :class:`~common.studies.task_reports.TaskReport` of the classifier's runs (:data:`lesion_cls.TASK`)."""

    task: str = TASK
    title: str = "skin-lesion classification"
    headline_metrics: tuple[str, ...] = ("accuracy", "balanced_accuracy", "f1_macro", "auc_macro")
    metric_labels: dict[str, str] = field(
        default_factory=lambda: {
            "accuracy": "accuracy",
            "balanced_accuracy": "balanced accuracy (macro recall)",
            "f1_macro": "macro F1",
            "auc_macro": "macro AUC",
            "acc_bal_mean": "mean of accuracy and balanced accuracy",
        }
    )
    record_files: tuple[str, ...] = ("predictions.csv",)
    selection_statistics: dict[str, str] = field(
        default_factory=lambda: {
            "val/bal_acc": "balanced_accuracy",
            "val/acc": "accuracy",
            "val/acc_bal_mean": "acc_bal_mean",
        }
    )

    def scored_items(self, run: RunResult) -> ScoredItems | None:
        return _scored_items(run)

    def validation_units(self, run: RunResult) -> int | None:
        return _validation_lesions(run)

    def sections(self, runs: list[RunResult]) -> list[Block]:
        first, better = runs[0], best_run(runs)
        names = _class_names(first)
        split, resampled = _UNIT_WORDING.get(first.metrics.get("ci_unit", "lesion"), _UNIT_WORDING["lesion"])
        order = "in the fixed order" if is_isic(names) else f"({len(names)}, from the data)"
        intro = (
            f"Data: `{first.cfg('data.root')}`, {split}, seed "
            f"{first.cfg('data.split_seed')}; {first.metrics.get('n_images')} test images. Classes {order} "
            f"{', '.join(names)}. Each model was tested with the weights its `run.test_checkpoint` "
            'names (the best validation value of the metric in row "selected on validation", or the last epoch: row '
            '"tested weights").'
        )
        blocks: list[Block] = [
            Heading(
                "Skin-lesion classification (HAM10000 / ISIC 2018 Task 3)"
                if is_isic(names)
                else f"Image classification ({len(names)} classes)",
                2,
            ),
            Paragraph(intro),
            Heading("Model parameters", 3),
            Table(table({run.experiment: _parameters(run) for run in runs}), "parameter"),
            Heading("Overall metrics", 3),
            Paragraph(
                "Training and validation values are those of the selected epoch; test values are on the held-out "
                "test split, with their 95% confidence interval in brackets (percentile bootstrap over the test "
                f"{resampled}). Balanced accuracy is the mean per-class recall "
                "(the ISIC 2018 ranking metric); ECE is the expected calibration error over 15 confidence bins."
            ),
            Table(table({run.experiment: _overall(run) for run in runs}), "metric"),
            Paragraph(_better_model(runs, better)),
        ]
        for run in runs:
            blocks += [Heading(f"Per-class results: {run.experiment}", 3), Table(_per_class(run), "class")]
        gradcam = _gradcam(better, "the better model") if better else _gradcam(first, "the first run")
        return blocks + _published(runs) + _figures(runs) + gradcam


REPORT = register_report(ClassificationReport())
