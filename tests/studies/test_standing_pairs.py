"""The standing comparisons of results/comparisons.yaml: computed from the records when the tables are written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from common.errors import MedlitError
from common.studies.records import find_records, write_record
from common.studies.results import README_MARKERS, write_tables
from common.studies.runs import load_run
from common.studies.standing_pairs import COMPARISONS_FILE, read_standing_pairs, standing_pairs_block
from tests.toy_task.report import write_toy_run

IDS = [f"s{i:02d}" for i in range(30)]


def _records(root: Path, tmp_path: Path) -> tuple[list[float], list[float]]:
    """Two seeds of a reference A and a run B (B's errors smaller), recorded as toy/a0, toy/a1, toy/b0, toy/b1;
    their mean absolute errors."""
    draws = np.random.default_rng(3)
    mae_a, mae_b = [], []
    for seed in range(2):
        errors = draws.normal(0.0, 1.0, len(IDS))
        for name, values, out in (("a", errors, mae_a), ("b", 0.7 * errors, mae_b)):
            items = {"item": IDS, "unit": IDS, "error": list(values)}
            run = write_toy_run(tmp_path / f"{name}{seed}" / "r", float(np.abs(values).mean()), 0.5, items)
            write_record(run, root / "toy" / f"{name}{seed}", "toy", f"{name}{seed}")
            out.append(load_run(run).headline()["mae"])
    return mae_a, mae_b


def test_standing_comparisons_are_the_records_differences_per_seed_and_over_seeds(tmp_path: Path) -> None:
    root = tmp_path / "results"
    mae_a, mae_b = _records(root, tmp_path)
    (root / COMPARISONS_FILE).write_text(
        "- title: B minus A\n  runs: [toy/b0, toy/b1]\n  against: [toy/a0, toy/a1]\n  metrics: [mae]\n"
    )
    block = standing_pairs_block(root, find_records(root), n_resamples=300)
    rows = [line for line in block.splitlines() if line.startswith("| `b")]
    assert [row.split(" | ")[0] for row in rows] == ["| `b0` - `a0`", "| `b1` - `a1`"]
    for row, a, b in zip(rows, mae_a, mae_b, strict=True):
        assert row.split(" | ")[1].startswith(f"{b - a:+.3f} (") and "[±" in row
    # over the seeds: the t-interval of the two per-seed differences (scipy)
    differences = np.subtract(mae_b, mae_a)
    low, high = stats.t.interval(0.95, 1, loc=differences.mean(), scale=stats.sem(differences))
    over = next(line for line in block.splitlines() if line.startswith("| over the 2 seeds"))
    assert f"{differences.mean():+.3f} ({low:+.3f} to {high:+.3f})" in over

    readme = tmp_path / "README.md"
    readme.write_text(f"{README_MARKERS[0]}\n{README_MARKERS[1]}\n")
    write_tables(root, tmp_path / "results.md", readme)
    assert "## Standing comparisons" in (tmp_path / "results.md").read_text()
    # the README holds each comparison's last row: over the seeds
    summary = next(line for line in readme.read_text().splitlines() if line.startswith("- *B minus A*"))
    assert summary.endswith(f"over the 2 seeds, paired t: MAE {differences.mean():+.3f} ({low:+.3f} to {high:+.3f})")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- title: x\n  runs: [toy/b0]\n  against: [toy/a0, toy/a1]\n", "entry 1: 1 runs but 2 against; one per seed"),
        ("- title: x\n  runs: [toy/b0]\n  against: [toy/a0]\n  seeds: 2\n", "entry 1: unknown key 'seeds'"),
        ("- title: x\n  runs: toy/b0\n  against: [toy/a0]\n", "entry 1 (runs): a list of record names"),
        ("- title: x\n  runs: [toy/b9]\n  against: [toy/a0]\n", "entry 1: no record toy/b9 in"),
    ],
)
def test_a_malformed_entry_is_one_line_naming_the_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    root = tmp_path / "results"
    _records(root, tmp_path)
    (root / COMPARISONS_FILE).write_text(text)
    with pytest.raises(MedlitError) as err:
        read_standing_pairs(root)
        standing_pairs_block(root, find_records(root), n_resamples=50)
    assert str(err.value).startswith(f"{root / COMPARISONS_FILE}: ") and message in str(err.value)
    assert "\n" not in str(err.value)
