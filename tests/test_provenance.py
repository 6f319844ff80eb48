"""Provenance (common.provenance): the code version, package versions and the data split's fingerprint."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import torch

from common.provenance import code_version, data_fingerprint, package_versions, text_hash


def test_code_version_and_packages() -> None:
    version = code_version()
    assert re.fullmatch(r"[0-9a-f]{40}", version["code.commit"]) or version["code.commit"] == "unknown"
    assert version["code.dirty"] in (True, False, "unknown")
    packages = package_versions(("torch", "no-such-package-xyz"))
    assert set(packages) == {"packages.torch", "packages.no-such-package-xyz"}
    assert packages["packages.torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert packages["packages.no-such-package-xyz"] == "not installed"


def test_the_split_hash_is_the_assignment_not_the_file(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "case": ["a", "b", "c", "d"],
            "split": ["train", "train", "val", "test"],
            "image": ["/x/a", "/x/b", "/x/c", "/x/d"],
        }
    )
    frame.to_csv(tmp_path / "one.csv", index=False)
    moved = frame.assign(image=["/elsewhere/a", "/elsewhere/b", "/elsewhere/c", "/elsewhere/d"]).iloc[::-1]
    moved.to_csv(tmp_path / "moved.csv", index=False)  # another machine's paths, another row order
    frame.assign(split=["train", "val", "train", "test"]).to_csv(tmp_path / "other.csv", index=False)
    one = data_fingerprint(tmp_path / "one.csv", str(tmp_path))
    assert one["dataset.root"] == str(tmp_path.resolve())
    assert (one["dataset.n_train"], one["dataset.n_val"], one["dataset.n_test"]) == (2, 1, 1)
    assert re.fullmatch(r"[0-9a-f]{16}", one["dataset.split_hash"])
    assert data_fingerprint(tmp_path / "moved.csv", None)["dataset.split_hash"] == one["dataset.split_hash"]
    assert data_fingerprint(tmp_path / "other.csv", None)["dataset.split_hash"] != one["dataset.split_hash"]
    assert data_fingerprint(tmp_path / "absent.csv", None) == {"dataset.root": None}  # predict: no split
    # the test items alone: the same ids in another split assignment of train/val give the same test hash
    assert one["dataset.test_hash"] == text_hash("d")
    assert data_fingerprint(tmp_path / "other.csv", None)["dataset.test_hash"] == one["dataset.test_hash"]


def test_the_cpu_is_named_with_its_usable_cores() -> None:
    from common.provenance import cpu_description

    assert re.fullmatch(r".+, [0-9]+ cores", cpu_description())


def test_the_cpu_names_the_features_that_set_its_speed(tmp_path: Path) -> None:
    """Two machines both called ``AMD EPYC`` differ ~10x in bf16 steps per minute: the record must tell them apart."""
    from common.provenance import cpu_description

    cpuinfo = tmp_path / "cpuinfo"
    for flags, shown in (
        ("fpu sse avx2 fma", "(avx2)"),
        ("avx2 avx512f avx512_bf16 sse", "(avx2 avx512f avx512_bf16)"),
    ):
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n")
        assert cpu_description(cpuinfo).startswith(f"AMD EPYC {shown}, ")
    cpuinfo.write_text("model name\t: Some CPU\n")
    assert cpu_description(cpuinfo).startswith("Some CPU, ")
