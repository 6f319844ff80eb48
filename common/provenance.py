"""Where a run's numbers come from: the code version, the package versions, the device and a fingerprint of the data
split, recorded in ``run_info.json`` (``provenance``) and in the W&B config, and read back by the results records
(:mod:`common.studies.records`).

* ``code.commit`` and ``code.dirty``: the git commit of the code and whether tracked files had changes
  (``unknown`` outside a git checkout);
* ``packages.<name>``: the versions of :data:`PACKAGES`;
* ``device.accelerator``, ``device.name``, ``device.cpu`` (model and usable cores), ``device.count``,
  ``device.nodes``, ``device.precision``;
* ``dataset.root`` (the data root, absolute), ``dataset.n_<split>`` (items per split of ``split.csv``),
  ``dataset.split_hash`` (a hash of which item is in which split: ``split.csv``'s first column, ``split`` and ``fold``
  when it has one, sorted; the same split gives the same hash on any machine) and ``dataset.test_hash`` (a hash of
  the sorted test item ids: two runs with the same one were tested on the same items).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

__all__ = [
    "PACKAGES",
    "code_version",
    "cpu_description",
    "data_fingerprint",
    "device_description",
    "package_versions",
    "text_hash",
]

PACKAGES = ("torch", "lightning", "monai", "timm", "torchmetrics", "numpy", "wandb")
"""The packages whose versions the config records (``packages.<name>``; ``not installed`` when absent)."""
_REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """``code.commit`` (the checkout's commit) and ``code.dirty`` (tracked files changed; untracked ones, such as
    run dirs, do not count); ``unknown`` when the code is not a git checkout or git is missing."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"code.commit": "unknown", "code.dirty": "unknown"}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"code.commit": commit, "code.dirty": bool(status) if status is not None else "unknown"}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``packages.<name>``: each package's installed version (its distribution's, else the imported module's
    ``__version__``: a package put on the path without pip has no distribution metadata)."""
    versions = {}
    for name in names:
        try:
            versions[f"packages.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            module = sys.modules.get(name.replace("-", "_"))
            versions[f"packages.{name}"] = str(getattr(module, "__version__", "not installed"))
    return versions


def device_description(trainer: Trainer) -> dict[str, Any]:
    """``device.*``: the accelerator, the device's name (the GPU's, or ``cpu``), devices per node, nodes, precision."""
    import torch

    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {
        "device.accelerator": type(trainer.accelerator).__name__,
        "device.name": name,
        "device.cpu": cpu_description(),
        "device.count": trainer.num_devices,
        "device.nodes": trainer.num_nodes,
        "device.precision": str(trainer.precision),
    }


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
"""CPU features that change how many steps a time budget buys (bf16 is emulated, ~10x slower, without the last two)."""


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name, the :data:`SPEED_FLAGS` it has and how many cores this process may use
    (``AMD EPYC (avx2 avx512f avx512_bf16), 2 cores``): a time-budgeted run's numbers depend on all three."""
    model, flags = platform.processor() or "unknown CPU", ""
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        model = names[0] if names else model
        present = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
        flags = " ".join(flag for flag in SPEED_FLAGS if flag in present)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}{f' ({flags})' if flags else ''}, {cores} cores"


def data_fingerprint(split_csv: Path, root: str | None) -> dict[str, Any]:
    """``dataset.*``: the data root, items per split and the hash of the split assignment (module docstring)."""
    fingerprint: dict[str, Any] = {"dataset.root": str(Path(root).resolve()) if root else None}
    if not split_csv.is_file():
        return fingerprint
    split = pd.read_csv(split_csv, dtype=str, keep_default_na=False)
    if "split" not in split:
        return fingerprint
    for name, count in split["split"].value_counts().sort_index().items():
        fingerprint[f"dataset.n_{name}"] = int(count)
    columns = [split.columns[0], "split", *(["fold"] if "fold" in split else [])]
    rows = sorted(",".join(row) for row in split[columns].itertuples(index=False, name=None))
    fingerprint["dataset.split_hash"] = text_hash("\n".join(rows))
    fingerprint["dataset.test_hash"] = text_hash("\n".join(sorted(split.loc[split["split"] == "test", columns[0]])))
    return fingerprint


def text_hash(text: str) -> str:
    """The first 16 hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
