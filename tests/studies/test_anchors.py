"""Published results: the anchors file as package data, the protocols a run follows, the table beside them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import yaml

from common.studies.anchors import ANCHORS, published_blocks, published_protocols
from common.studies.runs import load_run
from common.studies.task_reports import Heading, Paragraph, Table
from tests.helpers import REPO
from tests.toy_task.report import write_toy_run


def test_anchors_are_package_data_of_common_studies() -> None:
    """Found through importlib.resources (as in an installed wheel), not by a path relative to a clone."""
    assert resources.files("common.studies") / "anchors.yaml" == ANCHORS
    protocols = yaml.safe_load(ANCHORS.read_text())
    assert {"la16", "ham10000_lesion_holdout"} <= set(protocols)
    assert all({"task", "title", "match", "results"} <= set(p) for p in protocols.values())


def test_anchors_are_found_when_the_package_is_not_a_folder(tmp_path: Path) -> None:
    """``common`` imported from a zip archive (no file of it on disk): the anchors are read all the same."""
    archive = tmp_path / "medlit.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((REPO / "common").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zipped.write(path, path.relative_to(REPO).as_posix())
    script = (
        "import yaml, common.studies.anchors as a; "
        "assert '.zip' in a.__file__, a.__file__; "
        "print(sorted(yaml.safe_load(a.ANCHORS.read_text())))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(archive), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert result.stdout.strip() == "['ham10000_lesion_holdout', 'la16']"


def _anchors(tmp_path: Path) -> Path:
    """A toy anchors file: one protocol of the toy task for SGD runs with 1 to 5 validation units."""
    protocols = {
        "toy_sgd": {
            "task": "toy_regression",
            "title": "toy regression with SGD",
            "match": {"model.optimizer": "sgd", "model.lists": "/elsewhere/train.list", "data.unset": None},
            "match_metrics": {"n_val_units": [1, 5]},
            "results": [
                {"method": "z baseline", "mae": 0.5, "source": "paper B"},
                {"method": "a baseline", "mae": "0.4-0.6", "source": "paper A"},
                {"method": "y baseline", "mae": 0.25, "source": "paper B"},
            ],
        },
        "other_task": {"task": "segmentation", "title": "other", "match": {}, "results": []},
    }
    path = tmp_path / "anchors.yaml"
    path.write_text(yaml.safe_dump(protocols, sort_keys=False))
    return path


def _run(tmp_path: Path, name: str, optimizer: str = "sgd", n_val_units: int = 3):
    run_dir = write_toy_run(tmp_path / name / "r", 0.3, 0.3, n_val_units=n_val_units)
    lists = "train.list"  # a list file matches by its name, wherever it is
    (run_dir / "config.yaml").write_text(f"model: {{optimizer: {optimizer}, lists: /data/{lists}}}\n")
    return load_run(run_dir)


def test_a_protocol_applies_to_the_runs_whose_configuration_and_metrics_match(tmp_path: Path) -> None:
    anchors = _anchors(tmp_path)
    sgd, adam, big = _run(tmp_path, "sgd"), _run(tmp_path, "adam", "adam"), _run(tmp_path, "big", n_val_units=9)
    found = published_protocols([sgd, adam, big], anchors)
    assert [(p["title"], [r.experiment for r in runs]) for p, runs in found] == [("toy regression with SGD", ["sgd"])]
    assert published_protocols([adam], anchors) == [] and published_protocols([], anchors) == []
    assert published_protocols([sgd], tmp_path / "missing.yaml") == []


def test_published_blocks_set_the_runs_beside_the_published_rows(tmp_path: Path) -> None:
    anchors = _anchors(tmp_path)
    runs = [_run(tmp_path, "sgd")]
    blocks = published_blocks(
        runs,
        lambda run: {"mae": f"{run.metrics['mae']:.3f}"},
        lambda result, protocol: {"mae": str(result["mae"]) + f" ({protocol['task']})"},
        {"mae": "MAE"},
        "Published: ",
        path=anchors,
    )
    heading, note, table = blocks
    assert heading == Heading("Against published results: toy regression with SGD", 3)
    assert note == Paragraph("Published: z baseline: paper B; a baseline: paper A; y baseline: paper B")
    assert isinstance(table, Table) and table.index_header == "metric"
    assert table.frame.to_dict("index") == {
        "MAE": {
            "medlit sgd": "0.300",
            "z baseline": "0.5 (toy_regression)",
            "a baseline": "0.4-0.6 (toy_regression)",
            "y baseline": "0.25 (toy_regression)",
        }
    }
    ordered = published_blocks(runs, lambda r: {}, lambda r, p: {}, {}, "", sorted_sources=True, path=anchors)
    assert ordered[1] == Paragraph("a baseline: paper A; y baseline: paper B; z baseline: paper B")
