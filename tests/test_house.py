"""The house rules: ``common/`` knows no task, functions stay short, and a third task plugs in unchanged."""

from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from common.contracts import TaskDataModule, TaskModule, check_contract
from common.entry import run_cli
from common.errors import MedlitError
from common.studies.report import build_report
from common.studies.runs import latest_runs
from common.studies.task_reports import report_for
from tests.helpers import REPO
from tests.toy_task.callbacks import ToyOutputs
from tests.toy_task.data import ToyDataModule
from tests.toy_task.model import ToyRegressor

TASK_WORDS = re.compile(
    r"lesion_cls|volume_seg|gradcam|views3d|classification_report|balanced_accuracy|bal_acc|"
    r"\bdice\b|\bhd95\b|\basd\b|\bjaccard\b|auc_macro|distance_unit|\bclassification\b|\bsegmentation\b|HAM10000",
    re.IGNORECASE,
)
PACKAGES = ("common", "lesion_cls", "volume_seg")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, kinds) and n.body and _is_str(n.body[0])}
    # attribute docstrings: a string statement right after an assignment
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for before, statement in itertools.pairwise(body):
                if isinstance(before, ast.Assign | ast.AnnAssign) and _is_str(statement):
                    docs.add(id(statement.value))
    return docs


def _is_str(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def test_common_names_no_task_outside_docstrings() -> None:
    found = []
    for path in sorted((REPO / "common").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docs = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                found += [f"{path.name}:{node.lineno} imports {m}" for m in modules if TASK_WORDS.search(m)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                if TASK_WORDS.search(node.value):
                    found.append(f"{path.name}:{node.lineno} {node.value[:60]!r}")
            elif isinstance(node, ast.Name | ast.Attribute):
                name = node.id if isinstance(node, ast.Name) else node.attr
                if TASK_WORDS.search(name):
                    found.append(f"{path.name}:{node.lineno} names {name}")
    assert not found, found


def test_the_rule_above_would_catch_a_task_name() -> None:
    tree = ast.parse('"""Docstrings may say balanced_accuracy."""\nKEY = "balanced_accuracy"\n')
    docs = _docstring_nodes(tree)
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in docs]
    assert strings == ["balanced_accuracy"] and TASK_WORDS.search(strings[0])


def test_no_function_over_60_lines() -> None:
    long = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                    long.append(f"{path.relative_to(REPO)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def _modules() -> dict[str, Path]:
    """Every module of our packages by dotted name (``common.studies.sweep``); a package by its own name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports_of(source: str, module: str) -> set[str]:
    """The modules of our packages that ``source`` imports anywhere (also under ``TYPE_CHECKING`` or in a function)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else ".".join([*module.split(".")[: -node.level], node.module])
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle of ``graph`` (module -> imported modules), each as the path that closes it."""
    circles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return circles


def test_no_import_circles() -> None:
    graph = {}
    for name, path in _modules().items():
        graph[name] = {m for m in _imports_of(path.read_text(), name) if m != name}
    graph = {name: {m for m in imported if m in graph} for name, imported in graph.items()}
    assert len(graph) > 40 and graph["common.cli"], graph  # the scan found the modules and their imports
    assert not _import_circles(graph), _import_circles(graph)


def _one_run_imports_of_studies(modules: dict[str, Path]) -> list[str]:
    """``module imports studies-module`` for every one-run piece of ``common`` that imports ``common.studies``."""
    return [
        f"{name} imports {imported}"
        for name, path in modules.items()
        if name.startswith("common") and not name.startswith("common.studies")
        for imported in sorted(_imports_of(path.read_text(), name))
        if imported.startswith("common.studies")
    ]


def test_one_run_pieces_never_import_the_studies() -> None:
    modules = _modules()
    assert "common.cli" in modules and "common.studies.sweep" in modules  # the scan sees both halves
    assert not _one_run_imports_of_studies(modules), _one_run_imports_of_studies(modules)


def test_the_studies_rule_would_catch_a_reverse_import(tmp_path: Path) -> None:
    (tmp_path / "cli.py").write_text("def f():\n    from common.studies.report import build_report\n")
    assert _one_run_imports_of_studies({"common.cli": tmp_path / "cli.py"}) == [
        "common.cli imports common.studies.report",
        "common.cli imports common.studies.report.build_report",
    ]


MAX_MODULE_LINES = 400
"""A module that grows past this is two modules (the house aims at about 300)."""


def test_no_module_over_400_lines() -> None:
    long = {
        name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_the_circle_rule_would_catch_a_circle() -> None:
    only_for_types = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from {} import Y\n"
    assert _imports_of(only_for_types.format("a.y"), "a.x") == set()  # `a` is not one of our packages
    graph = {
        "common.x": _imports_of(only_for_types.format("common.y"), "common.x"),
        "common.y": _imports_of("def f():\n    import common.x\n", "common.y"),
    }
    graph = {name: {m for m in imported if m in graph} for name, imported in graph.items()}
    assert _import_circles(graph) == [["common.x", "common.y", "common.x"]]


def test_the_tasks_satisfy_the_contracts() -> None:
    from lesion_cls.data import HAM10000DataModule
    from lesion_cls.model import LesionClassifier
    from volume_seg.data import VolumeDataModule
    from volume_seg.model import VolumeSegmenter

    for module, datamodule in ((LesionClassifier, HAM10000DataModule), (VolumeSegmenter, VolumeDataModule)):
        check_contract(module, TaskModule, "model class")
        check_contract(datamodule, TaskDataModule, "datamodule class")
        # the report module a run records (run_info.json) registers a report under the task the module declares
        report = report_for(module.task, f"{module.__module__.split('.')[0]}.report")
        assert report.task == module.task and set(report.headline_metrics) <= set(report.metric_labels)


def test_a_missing_contract_member_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare_module = type("BareModule", (), {"monitor": "val/x"})
    with pytest.raises(MedlitError, match=r"does not satisfy TaskModule; missing 'task', 'monitor_mode', 'metric"):
        check_contract(bare_module, TaskModule, "model class")
    # a misspelt flag is an error at start, not a silent default
    bare_data = type("BareData", (), {"has_test_date": True, "split_table": lambda self: None})
    with pytest.raises(SystemExit) as exit_info:
        run_cli(ToyRegressor, bare_data, ToyOutputs, args=["fit", "--run.root", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing 'has_test_data'" in err[0]
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.smoke
def test_a_third_task_runs_through_the_cli_and_the_report(tmp_path: Path) -> None:
    args = [
        *("--run.root", str(tmp_path / "runs"), "--run.wandb", "off", "--run.experiment", "toy"),
        *("--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false"),
        *("--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1"),
    ]
    run_dir = run_cli(
        ToyRegressor, ToyDataModule, ToyOutputs, report_module="tests.toy_task.report", args=["fit", *args]
    )
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["task"] == "toy_regression" and info["report_module"] == "tests.toy_task.report"
    assert info["monitor"] == "val/mae" and info["best_checkpoint"].endswith(".ckpt")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) == 3 and history["val/mae"].notna().all()
    assert pd.read_csv(run_dir / "split.csv")["split"].value_counts().to_dict() == {"train": 120, "val": 40, "test": 40}
    run = latest_runs(tmp_path / "runs")["toy"]
    assert run.task == "toy_regression" and run.headline() == {"mae": metrics["mae"], "rmse": metrics["rmse"]}
    assert run.unit("mae") == "y units"
    md, html = build_report([run], tmp_path / "report")
    text = md.read_text()
    assert text.startswith("# medlit: toy regression") and "## Toy regression" in text
    assert "| optimizer | sgd |" in text and f"| mae | {metrics['mae']:.3f} |" in text
    assert "**Best toy run: toy**, chosen on validation MAE" in text
    assert "data:image/png;base64," in html.read_text()


def test_an_error_raised_in_a_loader_worker_is_found_unwrapped() -> None:
    from torch.utils.data import DataLoader, Dataset

    from common.errors import find_medlit_error

    class Broken(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> int:
            raise MedlitError("/data/case_7.nii.gz: image holds 3 NaN/Inf voxel(s)")

    with pytest.raises(Exception) as raised:
        next(iter(DataLoader(Broken(), num_workers=1)))
    found = find_medlit_error(raised.value)
    assert found is not None and str(found) == "/data/case_7.nii.gz: image holds 3 NaN/Inf voxel(s)"
    wrapped = RuntimeError("applying transform")
    wrapped.__cause__ = MedlitError("x.h5: no 'label' dataset")
    assert str(find_medlit_error(wrapped)) == "x.h5: no 'label' dataset"
    assert find_medlit_error(ValueError("a bug")) is None  # a bug keeps its traceback
