"""volume_seg.download with the LA release already on disk: the committed manifest, a complete copy used without
the network, only the missing cases fetched, and a changed file or list refused before anything is written."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from common.download import COMPLETE_MARK
from common.errors import MedlitError
from tests.helpers import REPO, HttpSite, shared_data_root
from tests.test_download import TEST, TRAIN, _publish_la
from volume_seg.download import LA_FILE, LABELED, LaManifest, read_la_manifest

SHARED_LA = shared_data_root() / "la_uamt_h5"
MANIFEST = LaManifest(TRAIN, TEST, "test @ c0ffee")


def _copy(out: Path, files: dict[str, bytes], cases: list[str]) -> None:
    for case in cases:
        (out / case).mkdir(parents=True)
        (out / case / LA_FILE).write_bytes(files[case])


def test_the_committed_manifest_is_ua_mts_release() -> None:
    manifest = read_la_manifest()
    assert len(manifest.train) == 80 and len(manifest.test) == 20
    assert not set(manifest.train) & set(manifest.test) and len(set(manifest.cases)) == 100
    assert manifest.lists()["labeled16.list"] == manifest.train[:LABELED]
    assert "yulequan/UA-MT @ " in manifest.source
    # package data: an installed wheel finds it as a clone does
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch.fnmatch("la_manifest.json", pattern) for pattern in package_data["volume_seg"])


@pytest.mark.real
def test_the_manifest_names_the_shared_copys_lists() -> None:
    if not SHARED_LA.is_dir():
        pytest.skip(f"{SHARED_LA} is not here")
    lists = read_la_manifest().lists()
    for name in ("labeled16.list", "test20.list"):
        assert (SHARED_LA / name).read_text().split() == lists[name]


def test_a_complete_copy_is_used_without_the_network(site: HttpSite, tmp_path: Path) -> None:
    files = _publish_la(site)
    out = tmp_path / "LA"
    _copy(out, files, TRAIN + TEST)
    (out / "train.list").write_text("\n".join(TRAIN) + "\n")  # a list already there and equal: kept
    (out / "notes.txt").write_text("mine")
    assert _la_with(site, out) == out
    assert site.requests == []
    assert (out / "labeled16.list").read_text().split() == TRAIN[:LABELED]
    assert (out / "test20.list").read_text().split() == TEST
    assert (out / "notes.txt").read_text() == "mine" and not (out / COMPLETE_MARK).exists()
    assert all((out / c / LA_FILE).read_bytes() == files[c] for c in TRAIN + TEST)


def test_only_the_missing_cases_are_fetched(site: HttpSite, tmp_path: Path) -> None:
    files = _publish_la(site)
    out = tmp_path / "LA"
    _copy(out, files, ["CASEA", "CASET"])
    _la_with(site, out)
    fetched = sorted({path.split("/")[-2] for path, _ in site.requests if path.endswith(LA_FILE)})
    assert fetched == ["CASEB", "CASEC"]
    assert all((out / c / LA_FILE).read_bytes() == files[c] for c in TRAIN + TEST)
    assert (out / "test.list").read_text().split() == TEST


def test_a_changed_file_or_list_is_refused_before_anything_is_written(site: HttpSite, tmp_path: Path) -> None:
    files = _publish_la(site)
    out = tmp_path / "LA"
    _copy(out, files, TRAIN + TEST)
    truncated = files["CASEB"][: len(files["CASEB"]) // 2]
    (out / "CASEB" / LA_FILE).write_bytes(truncated)
    with pytest.raises(MedlitError, match=r"CASEB/mri_norm2.h5: not an LA volume"):
        _la_with(site, out)
    assert not (out / "train.list").exists() and site.requests == []
    (out / "CASEB" / LA_FILE).write_bytes(files["CASEB"])
    (out / "test.list").write_text("CASEA\n")
    with pytest.raises(MedlitError, match=r"test.list: differs from test @ c0ffee's test.list"):
        _la_with(site, out)
    assert (out / "test.list").read_text() == "CASEA\n" and not (out / "train.list").exists()


def _la_with(site: HttpSite, out: Path) -> Path:
    from volume_seg.download import download_la

    return download_la(out, api=f"{site.url}/api", raw=f"{site.url}/raw", lfs=f"{site.url}/media", manifest=MANIFEST)
