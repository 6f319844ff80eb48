"""Helpers shared by the tests: the repository root, the real-data root, tiny-run CLI arguments, figure checks; for
the many-run tests a fake trainer (records when each configuration starts and ends), sweep files and commands for it,
and ``srun`` stand-ins for the SLURM templates in ``examples/slurm``."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    return Path(os.environ.get("MEDLIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def _quiet_run(runs_root: Path) -> list[str]:
    """Run-dir, W&B and console settings shared by the tiny CLI runs."""
    return [
        *("--run.root", str(runs_root), "--run.wandb", "off", "--trainer.max_epochs", "2"),
        *("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"),
    ]


def tiny_cls_args(data_root: Path, runs_root: Path, *extra: str) -> list[str]:
    """CLI arguments for a 2-epoch CPU run of the classifier on tiny data."""
    return [
        *("--config", str(REPO / "experiments" / "cls_ce.yaml")),
        *("--config", str(REPO / "experiments" / "demo" / "cls.yaml")),
        *("--data.root", str(data_root), "--data.image_size", "32", "--data.batch_size", "16"),
        *_quiet_run(runs_root),
        *("--outputs.gradcam_per_class", "1"),
        *extra,
    ]


def tiny_seg_args(data_root: Path, runs_root: Path, *extra: str) -> list[str]:
    """CLI arguments for a 2-epoch CPU run of the segmenter on tiny volumes."""
    return [
        *("--config", str(REPO / "experiments" / "seg_dice.yaml")),
        *("--config", str(REPO / "experiments" / "demo" / "seg.yaml")),
        *("--data.root", str(data_root), "--data.patch_size", "[16, 16, 16]", "--data.patches_per_volume", "2"),
        *("--model.channels", "[4, 8, 16]", "--model.strides", "[2, 2]"),
        *_quiet_run(runs_root),
        *extra,
    ]


def logged_test_metrics(run_dir: Path) -> dict[str, float]:
    """The ``test/<name>`` values the CSV logger recorded in ``logs/metrics.csv`` (the last test row)."""
    import pandas as pd

    log = pd.read_csv(run_dir / "logs" / "metrics.csv")
    test = log[[c for c in log.columns if c.startswith("test/")]].dropna(how="all")
    return {key.removeprefix("test/"): float(value) for key, value in test.iloc[-1].items()}


def assert_one_number(run_dir: Path, names: tuple[str, ...]) -> None:
    """Each logged ``test/<name>`` equals ``metrics.json``'s value (or its ``mean``), to float32 precision."""
    import json
    import math

    logged = logged_test_metrics(run_dir)
    written = json.loads((run_dir / "metrics.json").read_text())
    for name in names:
        value = written[name]["mean"] if isinstance(written[name], dict) else written[name]
        value = float("nan") if value is None else value
        assert math.isclose(logged[name], value, rel_tol=1e-6, abs_tol=1e-7) or (
            math.isnan(logged[name]) and math.isnan(value)
        ), (name, logged[name], value)


def assert_png(path: Path, min_side: int = 50, min_std: float = 5.0) -> None:
    """``path`` is a PNG at least ``min_side`` pixels on each side whose grey levels vary (not a blank figure)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", path
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert min(pixels.shape) > min_side and pixels.std() > min_std, path


def capture_figures(monkeypatch: Any, module: Any) -> list[Any]:
    """Record the figures ``module`` saves (still written to disk by the real ``common.plots.save_figure``)."""
    import common.plots

    figures: list[Any] = []
    real = common.plots.save_figure

    def save(fig: Any, path: Path, *args: Any, **kwargs: Any) -> Path:
        figures.append(fig)
        return real(fig, path, *args, **kwargs)

    monkeypatch.setattr(module, "save_figure", save)
    return figures


# --- what an offline W&B run recorded ---


def _nest(target: dict[str, Any], item: Any) -> None:
    """Put one W&B update item (a ``key`` or a ``nested_key`` path, and its JSON value) into ``target``."""
    import json

    path = [item.key] if item.key else list(item.nested_key)
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = json.loads(item.value_json)


def _records(path: Path) -> list[Any]:
    """The records of a W&B transaction log (``run-<id>.wandb``): W&B's ``Record`` protobufs in the LevelDB log
    framing W&B writes (a 7-byte header ``:W&B``, then 32 KiB blocks of chunks: crc32 (4), length (2), type (1))."""
    import struct

    from wandb.proto import wandb_internal_pb2

    raw, block, pos = path.read_bytes(), 32768, 7
    assert raw[:4] == b":W&B", path
    chunks: list[bytes] = []
    records = []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        chunks.append(raw[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
    return records


def _finished_records(path: Path, wait_s: float = 120.0) -> list[Any]:
    """The records of a finished run: W&B's service may still be writing the log when ``run.finish()`` has returned
    in this process, so wait for its ``exit`` record (and a readable end)."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            records = _records(path)
        except Exception:  # a chunk being written
            records = []
        if any(record.WhichOneof("record_type") == "exit" for record in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


class WandbLog:
    """What one offline W&B run in ``<run_dir>/wandb/offline-run-*`` recorded, read from its transaction log.

    Attributes:
        config: Key → value of every config update (the latest value of each key).
        summary: Key → value of the run summary (nested values, e.g. a table's description, as dicts).
        history: Every logged step: key → value.
        artifacts: ``(name, type)`` of every artifact logged.
        files: The run's ``files/`` folder (media and table JSON files).
    """

    def __init__(self, run_dir: Path) -> None:
        (folder,) = sorted((run_dir / "wandb").glob("offline-run-*"))
        (log,) = folder.glob("run-*.wandb")
        self.files = folder / "files"
        self.config: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.artifacts: list[tuple[str, str]] = []
        records = _finished_records(log)
        assert records and records[-1].WhichOneof("record_type") == "exit", f"{log} is not a finished run's log"
        for record in records:
            kind = record.WhichOneof("record_type")
            if kind == "run":
                for item in record.run.config.update:
                    _nest(self.config, item)
            elif kind == "config":
                for item in record.config.update:
                    _nest(self.config, item)
            elif kind == "summary":
                for item in record.summary.update:
                    _nest(self.summary, item)
            elif kind == "history":
                step: dict[str, Any] = {}
                for item in record.history.item:
                    _nest(step, item)
                self.history.append(step)
            elif kind == "artifact":
                self.artifacts.append((record.artifact.name, record.artifact.type))

    def logged(self, key: str) -> dict[str, Any]:
        """The value of ``key`` in the one step that logged it."""
        (value,) = [step[key] for step in self.history if key in step]
        return value

    def table(self, key: str) -> tuple[list[str], list[list[Any]]]:
        """Columns and rows of the table logged as ``key``, read from the table file W&B wrote."""
        import json

        described = self.logged(key)
        assert described["_type"] == "table-file", described
        table = json.loads((self.files / described["path"]).read_text())
        assert len(table["data"]) == described["nrows"] and len(table["columns"]) == described["ncols"]
        return table["columns"], table["data"]

    def images(self, key: str) -> list[str]:
        """The captions of the images logged as ``key`` (one image or a list), one per image."""
        described = self.logged(key)
        if described["_type"] == "image-file":
            return [described.get("caption", "")]
        assert described["_type"] == "images/separated", described
        return list(described.get("captions") or [""] * described["count"])


# --- many-run tests: a fake trainer, sweep files, SLURM stand-ins ---

FAKE_TRAINER = """
import json, os, sys, time
from pathlib import Path
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
run_dir = Path(args["run.dir"])
x = float(args["model.x"])
events = Path(os.environ["FAKE_EVENTS"])
with events.open("a") as f:
    f.write(f"start {x} {os.getpid()}\\n")
run_dir.mkdir(parents=True)
time.sleep(float(os.environ.get("FAKE_SECONDS", "0")))
(run_dir / "config.yaml").write_text("model: {x: %s}\\n" % x)
(run_dir / "run_info.json").write_text(json.dumps({"monitor": "val/score", "monitor_mode": "max",
                                                   "task": "toy_regression", "report_module": "tests.toy_task.report"}))
(run_dir / "history.csv").write_text("epoch,train/loss,val/score\\n0,1.0,%r\\n" % (-(x - 0.3) ** 2))
(run_dir / "metrics.json").write_text(json.dumps({"mae": abs(x - 0.3), "rmse": abs(x - 0.3)}))
with events.open("a") as f:
    f.write(f"end {x} {os.getpid()}\\n")
"""
"""A training program for sweeps of ``model.x``: its sweep metric ``val/score`` is ``-(x - 0.3)²``; it appends
``start x pid`` and ``end x pid`` to ``$FAKE_EVENTS`` and sleeps ``$FAKE_SECONDS`` in between."""

TEMPLATES = REPO / "examples" / "slurm"
RECORD_SRUN = '#!/bin/sh\nprintf "%s\\n" "$@" > "$SRUN_RECORD"\n'
PASS_SRUN = '#!/bin/sh\nexec "$@"\n'


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def fake_sweep(tmp_path: Path, name: str = "grid", method: str = "grid", **extra: object) -> Path:
    """A sweep of :data:`FAKE_TRAINER` over ``model.x``: 6 grid values, or ``min``/``max`` for random and bayes."""
    program = tmp_path / "fake_train.py"
    program.write_text(FAKE_TRAINER)
    xs = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    parameters = {"model.x": {"values": xs}} if method == "grid" else {"model.x": {"min": 0.0, "max": 1.0}}
    spec = {
        "name": name,
        "program": str(program),
        "method": method,
        "metric": {"name": "val/score", "goal": "maximize"},
        "parameters": parameters,
        "command": ["${env}", "${interpreter}", "${program}", "${args}"],
        **extra,
    }
    return write_yaml(tmp_path / f"{name}.yaml", spec)


def sweep_command(sweep_file: Path, sweep_dir: Path, *args: str) -> list[str]:
    """``python -m common.studies.sweep`` on ``sweep_file`` in ``sweep_dir``, W&B off."""
    return [
        sys.executable,
        "-m",
        "common.studies.sweep",
        str(sweep_file),
        "--sweep-dir",
        str(sweep_dir),
        "--wandb",
        "off",
        *args,
    ]


def fake_env(tmp_path: Path, seconds: float = 0.0) -> dict[str, str]:
    """The environment of a sweep of :data:`FAKE_TRAINER`: events in ``tmp_path/events.txt``, each run ``seconds``."""
    events = tmp_path / "events.txt"
    return {**os.environ, "PYTHONPATH": str(REPO), "FAKE_EVENTS": str(events), "FAKE_SECONDS": str(seconds)}


def events(tmp_path: Path, kind: str) -> Counter:
    """How often each ``model.x`` was started (``kind="start"``) or ended (``"end"``)."""
    lines = (tmp_path / "events.txt").read_text().splitlines()
    return Counter(float(line.split()[1]) for line in lines if line.startswith(kind))


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a command that exited with status 2 and no traceback."""
    assert result.returncode == 2, result.stdout[-1500:] + result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def srun_env(tmp_path: Path, body: str) -> dict[str, str]:
    """An environment whose ``srun`` runs ``body`` (recording its arguments, or running them here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text(body)
    (bin_dir / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    return env | {"SRUN_RECORD": str(tmp_path / "srun.txt"), "PYTHON": sys.executable, "SLURM_SUBMIT_DIR": str(REPO)}


def recorded_srun(template: str, tmp_path: Path, **env: str) -> list[str]:
    """The arguments the template gives ``srun``."""
    result = subprocess.run(
        ["bash", str(TEMPLATES / template)], env=srun_env(tmp_path, RECORD_SRUN) | env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return (tmp_path / "srun.txt").read_text().splitlines()


def print_config(task: str, fit_args: list[str]) -> dict:
    """``python -m <task> fit <fit_args> --print_config``: every key and config file checked, nothing trained."""
    result = subprocess.run(
        [sys.executable, "-m", task, "fit", *fit_args, "--print_config"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return yaml.safe_load(result.stdout)


def run_with_stderr(main: Callable[[list[str]], Path | None], args: list[str]) -> tuple[Path, str]:
    """A run through a task's CLI in this process; its run dir and what it printed on stderr."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        run_dir = main(args)
    assert run_dir is not None
    return run_dir, stderr.getvalue()


def wandb_warnings(stderr: str) -> list[str]:
    """The ``warning: W&B ...`` lines a run printed."""
    return [line for line in stderr.splitlines() if line.startswith("warning: W&B")]


class HttpSite:
    """A folder served over HTTP with byte ranges; records each request's path and ``Range`` header."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str | None]] = []
        self.etags: dict[str, str] = {}  # file name -> ETag to send instead of the content's md5
        site = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                path = Path(self.translate_path(self.path))
                if not path.is_file():
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Length", str(path.stat().st_size))
                etag = site.etags.get(path.name) or hashlib.md5(path.read_bytes()).hexdigest()
                self.send_header("ETag", f'"{etag}"')
                self.end_headers()

            def do_GET(self) -> None:
                site.requests.append((self.path.split("?")[0], self.headers.get("Range")))
                path = Path(self.translate_path(self.path))
                if not path.is_file():
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                data = path.read_bytes()
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                if start >= len(data) and start:
                    self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    return
                self.send_response(HTTPStatus.PARTIAL_CONTENT if start else HTTPStatus.OK)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ranges_for(self, suffix: str) -> list[str | None]:
        return [header for path, header in self.requests if path.endswith(suffix)]


def fit_in_a_fresh_process(task: str, args: list[str], timeout: float = 900) -> Path:
    """``python -m <task> <args>`` as a user runs it, in its own process; the run dir of its last line.

    For tests whose settings must reach the Trainer exactly as given: in a long pytest process, a run has been seen
    to receive ``--trainer.limit_test_batches 1`` as ``1.0`` (all batches), a state left by earlier tests that is not
    yet pinned down."""
    result = subprocess.run(
        [sys.executable, "-m", task, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return Path(result.stdout.strip().splitlines()[-1].removeprefix("run_dir: "))
