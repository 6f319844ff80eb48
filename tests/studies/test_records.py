"""Results records (common.studies.records, .against, .results): a record re-reads and re-scores to its run's
numbers, pairs as its run dir does, refuses what cannot be paired, and every generated table is what the records give.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from common.errors import MedlitError
from common.studies.against import pair_over_seeds, pair_with_reference, pairing_refusal
from common.studies.paired import BOOTSTRAP_TEST, SEEDS_TEST, compare_runs
from common.studies.records import RECORD_FILE, find_records, load_record, write_record
from common.studies.results import README_MARKERS, main, write_tables
from common.studies.runs import load_run
from tests.helpers import REPO, tiny_cls_args, tiny_seg_args
from tests.toy_task.report import write_toy_run

rng = np.random.default_rng(4)
IDS = [f"s{i:02d}" for i in range(30)]
ERRORS_A, ERRORS_B = rng.normal(0.0, 1.0, 30), rng.normal(0.3, 1.0, 30)


def _toy(run_dir: Path, errors: np.ndarray, ids: list[str] = IDS, **metrics: object) -> Path:
    items = {"item": ids, "unit": ids, "error": list(errors)}
    return write_toy_run(run_dir, float(np.abs(errors).mean()), 0.5, items, **metrics)


def test_a_record_reads_as_its_run_and_pairs_as_its_run_dir(tmp_path: Path) -> None:
    run_a, run_b = _toy(tmp_path / "a" / "r", ERRORS_A), _toy(tmp_path / "b" / "r", ERRORS_B)
    record_a = write_record(run_a, tmp_path / "results" / "toy" / "a", "toy", "a", note="the first")
    record_b = write_record(run_b, tmp_path / "results" / "toy" / "b", "toy", "b")
    assert record_a.run.metrics == load_run(run_a).metrics and record_a.label == "toy/a"
    assert record_a.info["metrics"]["mae"]["value"] == pytest.approx(np.abs(ERRORS_A).mean())
    assert set(record_a.info["checksums"]) == {
        "config.yaml",
        "history.csv",
        "items.csv",
        "metrics.json",
        "run_info.json",
    }
    # against itself: no difference, p = 1
    itself = pair_with_reference(load_run(run_a), "run a", record_a, n_resamples=500)
    boot = itself[itself["test"] == "paired bootstrap"].iloc[0]
    assert boot["delta"] == 0 and boot["p_value"] == 1.0 and boot["mdd"] == 0
    # two records pair as the two run dirs they came from
    from_records, _ = compare_runs([("a", record_a.run), ("b", record_b.run)], n_resamples=500)
    from_runs, _ = compare_runs([("a", load_run(run_a)), ("b", load_run(run_b))], n_resamples=500)
    pd.testing.assert_frame_equal(from_records, from_runs)
    assert [r.label for r in find_records(tmp_path / "results")] == ["toy/a", "toy/b"]
    typed = write_toy_run(tmp_path / "c" / "r", 0.3, 0.4, {"item": ["a"], "unit": ["a"], "error": [0.3]}, info={
        "argv": ["/clone/volume_seg/__main__.py", "fit", "--config", "x.yaml"],
        "resumes": [{"argv": ["/clone/volume_seg/__main__.py", "fit", "--ckpt_path", "last"]}],
    })  # fmt: skip
    commands = write_record(typed, tmp_path / "results" / "toy" / "c", "toy", "c").info["commands"]
    assert commands == ["python -m volume_seg fit --config x.yaml", "python -m volume_seg fit --ckpt_path last"]


def test_what_cannot_be_paired_is_refused_with_one_line(tmp_path: Path) -> None:
    record = write_record(_toy(tmp_path / "a" / "r", ERRORS_A), tmp_path / "rec", "toy", "a")
    other_items = load_run(_toy(tmp_path / "c" / "r", ERRORS_B, ids=[f"x{i}" for i in range(30)]))
    assert pairing_refusal(other_items, "c", record) == (
        "c (30 samples) and toy/a (30 samples) were not tested on the same items (0 in common): they cannot be paired"
    )
    other_unit = load_run(_toy(tmp_path / "d" / "r", ERRORS_B, units={"mae": "mm"}))
    assert pairing_refusal(other_unit, "d", record) == ("d gives mae in mm and toy/a in no stated unit: not comparable")
    classes = _toy(tmp_path / "e" / "r", ERRORS_B)
    (classes / "config.yaml").write_text("data: {class_names: [background, atrium]}\n")
    assert pairing_refusal(load_run(classes), "e", record) == (
        "e has the classes ['background', 'atrium'] and toy/a None: not the same task"
    )
    with pytest.raises(MedlitError, match="cannot be paired"):
        pair_with_reference(other_items, "c", record)


def test_a_changed_truncated_or_newer_record_and_a_run_without_items_are_one_line(tmp_path: Path) -> None:
    record = write_record(_toy(tmp_path / "a" / "r", ERRORS_A), tmp_path / "rec", "toy", "a").path
    (record / "items.csv").write_text((record / "items.csv").read_text()[:-20])
    with pytest.raises(MedlitError) as error:
        load_record(record)
    assert str(error.value) == (
        f"{record / 'items.csv'}: differs from its checksum in record.json (edited or truncated); restore it from git"
    )
    info = json.loads((record / RECORD_FILE).read_text())
    (record / RECORD_FILE).write_text(json.dumps(info | {"format": 99}))
    with pytest.raises(MedlitError, match="format 99 is newer than this medlit reads"):
        load_record(record)
    (record / RECORD_FILE).write_text('{"format": 1, "checks')
    with pytest.raises(MedlitError, match="record.json: not valid JSON"):
        load_record(record)
    bare = write_toy_run(tmp_path / "b" / "r", 0.3, 0.4)  # no items.csv
    with pytest.raises(MedlitError, match="no items.csv \\(the per-item scores a record keeps for pairing\\)"):
        write_record(bare, tmp_path / "rec2", "toy", "b")
    with pytest.raises(MedlitError, match="exists and is not empty"):
        write_record(_toy(tmp_path / "c" / "r", ERRORS_B), record, "toy", "a")


def test_the_report_pairs_each_run_with_the_records_of_its_test_items(tmp_path: Path) -> None:
    from common.studies.report import build_report

    reference = write_record(_toy(tmp_path / "ref" / "r", ERRORS_A), tmp_path / "results" / "toy" / "ref", "toy", "ref")
    same = load_run(_toy(tmp_path / "same" / "r", ERRORS_B))
    other = load_run(_toy(tmp_path / "other" / "r", ERRORS_B, ids=[f"x{i}" for i in range(30)]))
    md, _ = build_report([same, other], tmp_path / "report", references=find_records(tmp_path / "results"))
    text = md.read_text()
    section = text[text.index("### Against the recorded references") :]
    rows = [line for line in section.splitlines() if line.startswith("| toy/ref |")]
    assert [row.split(" | ")[1] for row in rows] == ["same", "same"]  # the paired bootstrap and Wilcoxon rows
    delta = np.abs(ERRORS_B).mean() - np.abs(ERRORS_A).mean()
    assert f"{delta:+.3f}" in rows[0] and reference.label == "toy/ref"
    md, _ = build_report([same, other], tmp_path / "report2")  # no records: no section
    assert "Against the recorded references" not in md.read_text()


def test_tables_are_generated_from_the_records_and_checked(tmp_path: Path) -> None:
    device = {"device.name": "cpu", "device.cpu": "AMD EPYC (avx2), 2 cores", "device.precision": "32-true"}
    run = _toy(tmp_path / "a" / "r", ERRORS_A, info={"provenance": device})
    write_record(run, tmp_path / "results" / "toy" / "a", "toy", "a")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{README_MARKERS[0]}\nold\n{README_MARKERS[1]}\nafter\n")
    page = tmp_path / "docs" / "results.md"
    assert write_tables(tmp_path / "results", page, readme, check=True) == [str(page), str(readme)]
    assert write_tables(tmp_path / "results", page, readme) == []
    assert write_tables(tmp_path / "results", page, readme, check=True) == []
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{README_MARKERS[1]}\nafter\n") and "old" not in text
    mae = f"{np.abs(ERRORS_A).mean():.3f}"
    assert f"| [`a`](results/toy/a) | {mae} |" in text and "**toy**" in text
    assert "* command: `" in page.read_text()
    # where it ran: the budget of a time-limited record means nothing without the device (the README links to it)
    assert "| AMD EPYC (avx2), 2 cores, 32-true |" in page.read_text()
    assert "[docs/results.md](docs/results.md#toy)" in text
    readme.write_text(text.replace(mae, "0.123"))
    assert write_tables(tmp_path / "results", page, readme, check=True) == [str(readme)]


def test_the_committed_tables_are_what_the_committed_records_give() -> None:
    """Every results number of README.md's block and docs/results.md is its record's (``tables --check``)."""
    assert write_tables(REPO / "results", REPO / "docs" / "results.md", REPO / "README.md", check=True) == []
    for record in find_records(REPO / "results"):
        assert record.info["provenance"].get("code.commit", "unknown") != "unknown", record.label


@pytest.mark.e2e
def test_a_classification_record_re_scores_with_sklearn_and_pairs_through_the_cli(
    tiny_ham: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lesion_cls import CLASS_NAMES
    from lesion_cls.__main__ import main as cls_main

    run_dir = cls_main(["fit", *tiny_cls_args(tiny_ham, tmp_path / "runs", "--outputs.gradcam_per_class", "0")])
    main(["record", str(run_dir), "--benchmark", "tiny", "--name", "cls", "--root", str(tmp_path / "results")])
    record = load_record(tmp_path / "results" / "tiny" / "cls")
    predictions = pd.read_csv(record.path / "predictions.csv")
    target = predictions["label"].map(CLASS_NAMES.index).to_numpy()
    probs = predictions[list(CLASS_NAMES)].to_numpy()
    present = sorted(set(target))
    expected = {
        "accuracy": accuracy_score(target, probs.argmax(axis=1)),
        "balanced_accuracy": balanced_accuracy_score(target, probs.argmax(axis=1)),
        "f1_macro": f1_score(target, probs.argmax(axis=1), average="macro", zero_division=0),
    }
    for name, value in expected.items():
        assert record.info["metrics"][name]["value"] == pytest.approx(value, abs=1e-5), name
    if len(present) == 7:
        auc = roc_auc_score(target, probs, multi_class="ovr", average="macro")
        assert record.info["metrics"]["auc_macro"]["value"] == pytest.approx(auc, abs=1e-5)
    split = pd.read_csv(record.path / "split.csv")
    assert list(split.columns) == ["image_id", "lesion_id", "split"] and "train" not in set(split["split"])
    prov = record.info["provenance"]
    assert {"code.commit", "packages.torch", "device.name", "device.precision"} <= set(prov)
    assert record.info["data"]["n_train"] > 0 and record.info["steps"] > 0 and record.info["wall_time_s"]["fit"] > 0
    capsys.readouterr()
    main(["pair", str(run_dir), "--against", str(record.path), "--resamples", "200"])
    printed = capsys.readouterr().out
    assert f"{run_dir} against tiny/cls" in printed and "| +0.000 |" in printed
    with pytest.raises(SystemExit) as exit_info:
        main(["pair", str(run_dir), "--against", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "not a results record (record.json missing) nor a tested run dir" in capsys.readouterr().err


@pytest.mark.e2e
def test_a_segmentation_record_keeps_the_per_case_medpy_values(tiny_la: Path, tmp_path: Path) -> None:
    from volume_seg.__main__ import main as seg_main

    run_dir = seg_main(["fit", *tiny_seg_args(tiny_la, tmp_path / "runs", "--outputs.views_3d", "false")])
    record = write_record(run_dir, tmp_path / "rec", "tiny", "seg")
    per_case = pd.read_csv(record.path / "metrics_per_case.csv")
    for name in ("dice", "jaccard"):
        assert record.info["metrics"][name]["value"] == pytest.approx(
            per_case[name].mean(), abs=1e-6
        )  # the file has 6 decimals
    assert record.info["metrics"]["hd95"]["unit"] == json.loads((run_dir / "metrics.json").read_text())["units"]["hd95"]
    assert sorted(pd.read_csv(record.path / "split.csv").columns) == ["case", "split"]


def test_intervals_prints_the_percentile_and_bca_interval_of_a_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from common.intervals import bca_intervals
    from common.stats import bootstrap_intervals

    record = write_record(_toy(tmp_path / "a" / "r", ERRORS_A), tmp_path / "rec", "toy", "a")
    main(["intervals", str(record.path), "--resamples", "300"])
    printed = capsys.readouterr().out
    items = record.run.scored_items()
    (low, high), (b_low, b_high) = (
        bootstrap_intervals(items, 300)["mae"]["ci95"],
        bca_intervals(items, 300)["mae"]["ci95"],
    )
    assert printed.startswith(f"{record.path}: 30 samples, 300 resamples of the units (seed 0)")
    assert f"| MAE | {np.abs(ERRORS_A).mean():.3f} | {low:.3f}-{high:.3f} | {b_low:.3f}-{b_high:.3f} |" in printed


def test_runs_pair_with_their_references_seed_by_seed_then_over_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three seeds of B against three of A: each pair's paired bootstrap on its items, then the paired t over the
    seeds of the per-seed values (scipy's ``ttest_rel``), from run dirs and records alike."""
    draws = np.random.default_rng(7)
    refs, runs = [], []
    for seed in range(3):
        errors = draws.normal(0.0, 1.0, len(IDS))
        refs.append(_toy(tmp_path / f"a{seed}" / "r", errors))
        runs.append(_toy(tmp_path / f"b{seed}" / "r", 0.8 * errors + draws.normal(0.0, 0.1, len(IDS))))
    record = write_record(refs[0], tmp_path / "results" / "toy" / "a0", "toy", "a0")
    pairs = [((f"b{s}", load_run(runs[s])), (f"a{s}", load_run(refs[s]))) for s in range(3)]
    pairs[0] = (pairs[0][0], (record.label, record.run))
    table = pair_over_seeds(pairs, n_resamples=300)
    per_seed = table[(table["test"] == BOOTSTRAP_TEST) & (table["metric"] == "mae")]
    assert len(per_seed) == 3 and list(per_seed["run_a"]) == ["toy/a0", "a1", "a2"]
    mae_a = [load_run(r).headline()["mae"] for r in refs]
    mae_b = [load_run(r).headline()["mae"] for r in runs]
    np.testing.assert_allclose(per_seed["delta"], np.subtract(mae_b, mae_a))
    over = table[(table["test"] == SEEDS_TEST) & (table["metric"] == "mae")].iloc[0]
    assert over["delta"] == pytest.approx(np.mean(np.subtract(mae_b, mae_a))) and over["n_units"] == 3
    assert over["p_value"] == pytest.approx(stats.ttest_rel(mae_b, mae_a).pvalue)
    main(["pair", *map(str, runs), "--against", str(record.path), *map(str, refs[1:]), "--resamples", "200"])
    assert "paired t over seeds" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["pair", *map(str, runs[:2]), "--against", *map(str, refs)])
    assert exit_info.value.code == 2
    expected = "error: pair: 2 run(s) and 3 reference(s); give one reference per run, in the same (seed) order"
    assert capsys.readouterr().err.strip() == expected
