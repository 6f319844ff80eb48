"""The generated report: every number comes from the runs' files; better/best chosen on validation data; the
paired comparisons of each task's runs."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from scipy import stats

from common.errors import MedlitError
from common.studies.anchors import ANCHORS
from common.studies.report import build_report, main
from common.studies.runs import latest_runs, load_run
from common.text import fmt, show, signed
from tests.helpers import tiny_cls_args, tiny_seg_args
from tests.toy_task.report import write_toy_run


@pytest.fixture(scope="module")
def report_runs(tiny_ham: Path, tiny_la: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lesion_cls.__main__ import main as cls_main
    from volume_seg.__main__ import main as seg_main

    root = tmp_path_factory.mktemp("report-runs")
    cls_main(["fit", *tiny_cls_args(tiny_ham, root, "--outputs.gradcam_per_class", "1")])
    cls_main(
        [
            "fit",
            *tiny_cls_args(
                tiny_ham,
                root,
                "--run.experiment",
                "cls_ce_focal",
                "--model.loss",
                "ce_focal",
                "--trainer.max_epochs",
                "1",
            ),
        ]
    )
    seg_main(["fit", *tiny_seg_args(tiny_la, root, "--run.experiment", "seg_bce", "--model.loss", "bce")])
    seg_main(["fit", *tiny_seg_args(tiny_la, root, "--trainer.max_epochs", "1")])
    return root


@pytest.fixture(scope="module")
def report(report_runs: Path) -> Path:
    md, _ = build_report(list(latest_runs(report_runs).values()), report_runs / "report")
    return md


def _numbers(value: object, out: set[str]) -> None:
    """Every number in a parsed file, as the report may print it."""
    if isinstance(value, dict):
        for v in value.values():
            _numbers(v, out)
    elif isinstance(value, list | tuple):
        for v in value:
            _numbers(v, out)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int | np.integer):
        out.add(str(int(value)))
    elif isinstance(value, float | np.floating) and math.isfinite(value):
        out.update({fmt(float(value), 2), fmt(float(value), 3), repr(float(value)), f"{float(value):g}"})
        if float(value).is_integer():
            out.add(str(int(value)))


def _source_numbers(root: Path) -> set[str]:
    allowed: set[str] = set()
    for run_dir in (d for e in root.iterdir() if e.name != "report" for d in e.iterdir()):
        _numbers(json.loads((run_dir / "metrics.json").read_text()), allowed)
        _numbers(json.loads((run_dir / "run_info.json").read_text()), allowed)
        _numbers(yaml.safe_load((run_dir / "config.yaml").read_text()), allowed)
        history = pd.read_csv(run_dir / "history.csv")
        _numbers(history.to_numpy().ravel().tolist(), allowed)
        _numbers((history["epoch"] + 1).tolist(), allowed)  # epochs are shown 1-based
        if (run_dir / "timing.json").exists():  # the "trained" row: epochs, fit minutes
            timing = json.loads((run_dir / "timing.json").read_text())
            _numbers(timing, allowed)
            allowed.add(f"{timing['fit_s'] / 60:.1f}")
        if (run_dir / "classification_report.csv").exists():
            _numbers(
                pd.read_csv(run_dir / "classification_report.csv").iloc[:, 1:].to_numpy().ravel().tolist(), allowed
            )
    return allowed


def _comparison_numbers(path: Path, allowed: set[str]) -> None:
    """The numbers of the report's comparisons.csv as the report prints them, and the method's constants (95%
    intervals, 2000 resamples, 1.96 standard errors, the 5% level, at least 10 units for a bootstrap test, 80%
    power of the minimum detectable difference)."""
    table = pd.read_csv(path)
    for column in ("value_a", "value_b", "delta", "ci_low", "ci_high", "mdd"):
        allowed.update(f"{abs(v):.3f}" for v in table[column].dropna())
    for column in ("p_value", "p_holm"):
        allowed.update(f"{v:{spec}}" for v in table[column].dropna() for spec in (".3g", ".2g"))
    allowed.update(str(int(n)) for n in table["n_units"])
    allowed.update({"1.96", "95", "2000", "0.05", "10", "80"})


@pytest.mark.e2e
def test_every_number_in_the_report_is_read_from_the_runs(report: Path, report_runs: Path) -> None:
    allowed = _source_numbers(report_runs)
    _comparison_numbers(report.parent / "comparisons.csv", allowed)
    text = report.read_text()
    body = "\n".join(
        line
        for line in text.splitlines()
        if not line.startswith(("Generated on", "![", "*", "[", "The validation margin"))
    )  # header with paths, figures; the validation margin is checked in test_validation_choice_is_tested
    body = re.sub(r"`[^`]*`", "", body)  # code spans: paths and names
    body = re.sub(r"\b(?:MEL|NV|BCC|AKIEC|BKL|DF|VASC|HD95|F1|AUC|ECE|ISIC|2018|3D|2D|Task 3|HAM10000)\b", "", body)
    body = re.sub(r"\b[a-z_]+\d+[a-z_]*\b", "", body)  # identifiers such as resnet10t, cls_ce
    scientific = re.findall(r"(?<![\w.])\d+(?:\.\d+)?e[-+]\d+", body)  # e.g. a learning rate of 1e-05
    body = re.sub(r"(?<![\w.])\d+(?:\.\d+)?e[-+]\d+", "", body)
    numbers = scientific + re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?!\w)", body)  # not 95th, 3D
    assert len(numbers) > 150
    stray = sorted({n for n in numbers if n not in allowed})
    assert not stray, f"numbers in the report that no run file holds: {stray}"


def _cells(text: str, label: str) -> list[str]:
    """The cells after the label of the first Markdown table row that starts with ``label``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def _renamed_copy(source: Path, tmp_path: Path, experiment: str, **info: str) -> Path:
    """A copy of a run dir under another experiment name, its ``run_info.json`` updated with ``info``."""
    copy = tmp_path / experiment / source.name
    shutil.copytree(source, copy)
    run_info = json.loads((copy / "run_info.json").read_text())
    (copy / "run_info.json").write_text(json.dumps({**run_info, "experiment": experiment, **info}))
    return copy


@pytest.mark.e2e
def test_tables_match_metrics_json(report: Path, report_runs: Path) -> None:
    text = report.read_text()
    runs = latest_runs(report_runs)

    header = next(line for line in text.splitlines() if line.startswith("| metric | cls_ce"))
    order = [c.strip() for c in header.strip("|").split("|")][1:]
    accuracy = _cells(text, "test accuracy")
    for name, cell in zip(order, accuracy, strict=True):
        low, high = runs[name].metrics["ci95"]["accuracy"]
        assert cell == f"{fmt(runs[name].metrics['accuracy'])} ({fmt(low)}-{fmt(high)})"
    seg_header = next(line for line in text.splitlines() if line.startswith("| metric | seg_"))
    seg_order = [c.strip() for c in seg_header.strip("|").split("|")][1:]
    for name, cell in zip(seg_order, _cells(text, "test Dice"), strict=True):
        dice = runs[name].metrics["dice"]
        low, high = dice["ci95"]
        assert cell == f"{fmt(dice['mean'])} ({fmt(low)}-{fmt(high)}) ± {fmt(dice['std'])}"
    unit = runs[seg_order[0]].metrics["distance_unit"]
    assert f"test HD95 ({unit})" in text


@pytest.mark.e2e
def test_better_and_best_are_chosen_on_validation(report: Path, report_runs: Path) -> None:
    runs = latest_runs(report_runs)
    text = report.read_text()
    cls = {n: pd.read_csv(r.path / "history.csv")["val/bal_acc"].max() for n, r in runs.items() if n.startswith("cls")}
    seg = {n: pd.read_csv(r.path / "history.csv")["val/dice"].max() for n, r in runs.items() if n.startswith("seg")}
    better, best = max(cls, key=cls.get), max(seg, key=seg.get)
    assert f"**Better model: {better}**, chosen on validation balanced accuracy ({fmt(cls[better])})" in text
    assert f"**Best configuration: {best}**, chosen on validation Dice ({fmt(seg[best])})" in text
    assert f"Grad-CAM examples of the better model ({better})" in text


@pytest.mark.e2e
def test_every_headline_metric_has_its_interval_in_metrics_json(report_runs: Path) -> None:
    """``ci95`` beside every headline value, how it was made, and the value inside its interval; the classifier
    resamples lesions (split.csv), the segmenter cases, and the classifier's per-class recall has one too."""
    for name, run in latest_runs(report_runs).items():
        m = run.metrics
        assert m["ci_resamples"] == 2000 and m["ci_seed"] == 0 and "percentile bootstrap" in m["ci_method"]
        for metric in run.report.headline_metrics:
            low, high = m["ci95"][metric]
            value = m[metric]["mean"] if isinstance(m[metric], dict) else m[metric]
            assert low <= value <= high, (name, metric)
        if name.startswith("cls"):
            split = pd.read_csv(run.path / "split.csv")
            assert m["ci_unit"] == "lesion"
            assert m["n_units"] == split.loc[split["split"] == "test", "lesion_id"].nunique() < m["n_images"]
            assert all("recall_ci95" in row for row in m["per_class"].values() if row["support"])
        else:
            assert m["ci_unit"] == "case" and m["n_units"] == m["n_cases"]
            assert m["dice"]["ci95"] == m["ci95"]["dice"]
            assert "ci95" in next(iter(m["per_class"].values()))["hd95"]


@pytest.mark.e2e
def test_comparisons_csv_pairs_runs_on_the_same_images_and_mcnemar_is_exact(report: Path, report_runs: Path) -> None:
    """comparisons.csv has the documented columns; its McNemar p-value equals one recomputed from the two runs'
    predictions.csv (exact binomial test on the discordant images) to 1e-9."""
    table = pd.read_csv(report.parent / "comparisons.csv")
    assert list(table.columns) == [
        "run_a", "run_b", "metric", "value_a", "value_b", "delta", "ci_low", "ci_high", "mdd", "p_value", "test",
        "n_units", "p_holm",
    ]  # fmt: skip
    runs = latest_runs(report_runs)
    row = table[(table["test"] == "exact McNemar")].iloc[0]
    a = pd.read_csv(runs[row["run_a"]].path / "predictions.csv")
    b = pd.read_csv(runs[row["run_b"]].path / "predictions.csv").set_index("image").loc[a["image"]].reset_index()
    classes = list(a.columns[1:8])
    right_a = a[classes].to_numpy().argmax(axis=1) == a["label"].map(classes.index).to_numpy()
    right_b = b[classes].to_numpy().argmax(axis=1) == b["label"].map(classes.index).to_numpy()
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    expected = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    assert abs(row["p_value"] - expected) < 1e-9
    assert row["delta"] == pytest.approx(right_b.mean() - right_a.mean())
    boot = table[(table["test"] == "paired bootstrap") & (table["metric"] == "accuracy")].iloc[0]
    assert boot["ci_low"] <= boot["delta"] <= boot["ci_high"]
    seg = table[table["run_a"].str.startswith("seg")]
    assert set(seg["test"]) == {"paired bootstrap", "Wilcoxon signed-rank"}
    assert set(seg["metric"]) == {"dice", "jaccard", "hd95", "asd"}
    assert seg.loc[seg["test"] == "paired bootstrap", "p_value"].isna().all()  # 3 test cases: too few to test
    finite = table["p_value"].notna()
    assert (table.loc[finite, "p_holm"] >= table.loc[finite, "p_value"]).all()


@pytest.mark.e2e
def test_validation_choice_is_tested_on_the_test_data(report: Path, report_runs: Path) -> None:
    text = report.read_text()
    assert "**The validation choice on the test data.**" in text
    assert "no detectable difference with 32 images / 29 lesions" in text or "the test data" in text
    assert "too few units to test the difference (3 cases" in text
    runs = latest_runs(report_runs)
    margin = abs(runs["seg_bce"].validation_score - runs["seg_dice"].validation_score)
    assert f"({fmt(margin)}) cannot be set against the validation noise: 2 validation cases are too few" in text
    assert "significant" not in text


@pytest.mark.e2e
def test_runs_on_different_test_images_are_not_paired(report_runs: Path, tmp_path: Path) -> None:
    source = latest_runs(report_runs)["cls_ce"].path
    copy = _renamed_copy(source, tmp_path, "cls_other_split")
    predictions = pd.read_csv(copy / "predictions.csv")
    predictions.iloc[:-1].to_csv(copy / "predictions.csv", index=False)  # one image fewer: another test set
    md, _ = build_report([load_run(source), load_run(copy)], tmp_path / "report")
    assert "were tested on different items: their numbers are not paired" in md.read_text()
    assert pd.read_csv(tmp_path / "report" / "comparisons.csv").empty


@pytest.mark.e2e
def test_runs_selected_on_different_metrics_name_no_better_model(report_runs: Path, tmp_path: Path) -> None:
    """Validation balanced accuracy of one run and accuracy of another are on different scales: the report says
    so instead of ranking them."""
    source = latest_runs(report_runs)["cls_ce"].path
    copy = _renamed_copy(source, tmp_path, "cls_on_acc", monitor="val/acc")
    md, _ = build_report([load_run(source), load_run(copy)], tmp_path / "report")
    text = md.read_text()
    assert "No run is named better" in text and "**Better model" not in text
    assert "(cls_ce on balanced accuracy, cls_on_acc on accuracy)" in text
    assert "Grad-CAM examples of the first run (cls_ce)" in text


@pytest.mark.e2e
def test_searched_decision_tau_is_reported_as_chosen_on_validation(report_runs: Path, tmp_path: Path) -> None:
    """``model.decision_tau: null`` searches τ on validation; the report shows the τ the test used (metrics.json),
    marked as chosen there, beside a run whose τ was a setting."""
    source = latest_runs(report_runs)["cls_ce"].path
    copy = _renamed_copy(source, tmp_path, "cls_searched")
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["model"]["decision_tau"] = None
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(json.dumps({**metrics, "decision_tau": -0.375}))
    md, _ = build_report([load_run(source), load_run(copy)], tmp_path / "report")
    text = md.read_text()
    cells = dict(zip(_cells(text, "parameter"), _cells(text, "decision τ"), strict=True))
    fixed = yaml.safe_load((source / "config.yaml").read_text())["model"]["decision_tau"]
    assert cells == {"cls_ce": show(fixed), "cls_searched": "-0.375 (chosen on validation)"}


@pytest.mark.e2e
def test_html_is_self_contained(report: Path) -> None:
    html = report.with_suffix(".html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for link in re.findall(r'<a href="([^"]+)"', html):
        assert (report.parent / link).is_file() and (report.parent / link).with_name("plotly.min.js").is_file()
    for link in re.findall(r"\]\(([^)]+)\)", report.read_text()):
        assert (report.parent / link).is_file(), link


@pytest.mark.slow
@pytest.mark.e2e
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (Debian package `chromium`)")
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--window-size=1280,2400",
            report.with_suffix(".html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1280) and pixels.std() > 20  # text, tables and figures, not a blank page
    shutil.copy(screenshot, report.parent / "report_screenshot.png")


@pytest.mark.e2e
def test_published_results_table_and_cross_run_figures(report_runs: Path, tmp_path: Path) -> None:
    """A run that follows a published protocol (common/studies/anchors.yaml) gets the comparison table: its own
    means from metrics.json beside the published rows as the file gives them; the per-case box plot and the
    learning curves are drawn into the report's figures."""
    source = latest_runs(report_runs)["seg_dice"].path
    run_dir = tmp_path / "la16" / source.name
    shutil.copytree(source, run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"].update(layout="la_h5", train_list="labeled16.list", test_list="/data/LA/test20.list")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    md, _ = build_report([load_run(run_dir)], tmp_path / "report")
    text = md.read_text()
    protocol = yaml.safe_load(ANCHORS.read_text())["la16"]
    assert f"### Against published results: {protocol['title']}" in text
    header = next(line for line in text.splitlines() if line.startswith("| metric | medlit seg_dice |"))
    methods = [c.strip() for c in header.strip("|").split("|")][2:]
    assert methods == [r["method"] for r in protocol["results"]]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for label, name, digits in (("Dice", "dice", 4), ("Jaccard", "jaccard", 4), ("HD95", "hd95", 2), ("ASD", "asd", 2)):
        line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        assert cells[0] == fmt(metrics[name]["mean"], digits)
        assert cells[1:] == [fmt(float(r[name]), digits) for r in protocol["results"]]
    defined = next(line for line in text.splitlines() if line.startswith("| cases with HD95 defined |"))
    assert f"| {metrics['hd95']['n_defined']}/{metrics['n_cases']} |" in defined
    for figure in ("segmentation_per_case.png", "segmentation_learning_curves.png"):
        pixels = np.asarray(Image.open(tmp_path / "report" / "figures" / figure).convert("L"), dtype=float)
        assert pixels.std() > 5.0, figure
    other, _ = build_report([load_run(source)], tmp_path / "other")
    assert "Against published results" not in other.read_text()  # train.list: no published protocol


@pytest.mark.e2e
def test_classification_published_results_table(report_runs: Path, tmp_path: Path) -> None:
    """A classification run on a 20 % lesion holdout of the real HAM10000 (its test-set size) is set beside the
    anchors file's rows (numbers formatted, ranges as written); generated data and the demo's 15 % split get no
    such table."""
    source = latest_runs(report_runs)["cls_ce"].path
    run_dir = tmp_path / "ham" / source.name
    shutil.copytree(source, run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"]["test_fraction"] = 0.2
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    generated = build_report([load_run(run_dir)], tmp_path / "generated")[0].read_text()
    assert "Against published results" not in generated  # 32 generated test images: not the real dataset
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, "n_images": 2003}))
    text = build_report([load_run(run_dir)], tmp_path / "report")[0].read_text()
    protocol = yaml.safe_load(ANCHORS.read_text())["ham10000_lesion_holdout"]
    assert protocol["task"] == "classification" and f"### Against published results: {protocol['title']}" in text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    line = next(line for line in text.splitlines() if line.startswith("| balanced accuracy |"))
    cells = [c.strip() for c in line.strip("|").split("|")][1:]
    expected = [r["balanced_accuracy"] for r in protocol["results"]]
    assert cells == [fmt(metrics["balanced_accuracy"]), *(fmt(v) if isinstance(v, float) else v for v in expected)]
    assert "Against published results" not in build_report([load_run(source)], tmp_path / "demo")[0].read_text()


def _toy_runs(tmp_path: Path, n_val_units: int) -> list:
    """Two toy runs on the same 12 samples: ``better`` (validation MAE 0.30) and ``worse`` (0.31), whose test
    errors differ from the better run's by noise of standard deviation 0.2."""
    errors = np.linspace(0.05, 0.6, 12)
    noisy = np.abs(errors + np.random.default_rng(0).normal(0, 0.2, 12))
    ids = [f"s{i}" for i in range(12)]
    runs = []
    for name, validation, values in (("better", 0.30, errors), ("worse", 0.31, noisy)):
        items = {"item": ids, "unit": ids, "error": list(values)}
        run_dir = write_toy_run(tmp_path / name / "r", float(values.mean()), validation, items, n_val_units=n_val_units)
        runs.append(load_run(run_dir))
    return runs


def test_comparisons_say_whether_the_test_data_support_the_validation_choice(tmp_path: Path) -> None:
    """Two runs on the same items: the validation choice set against the paired test difference, the validation
    margin against the noise rescaled to the validation units, the table, and comparisons.csv."""
    md, _ = build_report(_toy_runs(tmp_path, n_val_units=12), tmp_path / "report")
    text = md.read_text()
    table = pd.read_csv(md.parent / "comparisons.csv")
    assert list(zip(table["run_a"], table["run_b"], table["test"], strict=True)) == [
        ("better", "worse", "paired bootstrap"),
        ("better", "worse", "Wilcoxon signed-rank"),
    ]
    boot = table.iloc[0]
    assert "### Paired comparisons on the test set" in text
    assert (
        f"**The validation choice on the test data.** better vs worse: test MAE {signed(-boot['delta'])} "
        f"({signed(-boot['ci_high'])} to {signed(-boot['ci_low'])}), p = {boot['p_value']:.2g} "
        f"(Holm {boot['p_holm']:.2g}) - no detectable difference with 12 samples; a difference of {boot['mdd']:.3f} "
        "or more would be found with 80% power."
    ) in text
    assert boot["mdd"] > 0 and np.isnan(table.iloc[1]["mdd"])  # the exact test's row has none
    # noise: 1.96 x a standard error of about 0.2 / sqrt(12) over 12 validation units, far above the 0.01 margin
    assert "The validation margin of better over worse (0.010) is inside the validation noise (±0." in text
    assert "The choice could as well have gone the other way." in text
    assert (
        "| A | B | metric | A value | B value | B - A (95% CI) | detectable (80% power) | test | n | p | p (Holm) |"
        in text
    )


def test_too_few_validation_units_to_set_the_margin_against_the_noise(tmp_path: Path) -> None:
    md, _ = build_report(_toy_runs(tmp_path, n_val_units=4), tmp_path / "report")
    assert (
        "The validation margin of better over worse (0.010) cannot be set against the validation noise: 4 "
        "validation units are too few to estimate it."
    ) in md.read_text()


def test_one_run_has_no_comparisons_and_the_report_refuses_no_runs(tmp_path: Path) -> None:
    run = _toy_runs(tmp_path, 12)[0]
    md, _ = build_report([run], tmp_path / "report")
    assert md.read_text().startswith("# medlit: toy regression\n\nGenerated on ")
    assert "Paired comparisons" not in md.read_text() and pd.read_csv(md.parent / "comparisons.csv").empty
    with pytest.raises(MedlitError, match="no finished runs to report on"):
        build_report([], tmp_path / "empty")


def test_main_writes_the_report_of_the_newest_runs_and_exits_2_on_a_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _toy_runs(tmp_path / "runs", 12)
    main(["--root", str(tmp_path / "runs"), "--title", "toy study"])
    out = tmp_path / "runs" / "report"
    assert capsys.readouterr().out == f"report: {out / 'report.md'}\nreport: {out / 'report.html'}\n"
    assert (out / "report.md").read_text().startswith("# toy study\n")
    with pytest.raises(SystemExit) as exited:
        main(["--root", str(tmp_path / "missing")])
    assert exited.value.code == 2 and capsys.readouterr().err == f"error: {tmp_path / 'missing'}: no such runs folder\n"
