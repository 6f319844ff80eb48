"""Dataset downloads against a local HTTP server: checksums, resumed and redone downloads, never a half dataset."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from common.download import COMPLETE_MARK
from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.data import HAM10000DataModule
from lesion_cls.download import TEST_FILES, TRAIN_FILES, download_ham10000
from tests.helpers import HttpSite
from volume_seg.download import LA_FOLDER, download_hippocampus, download_la
from volume_seg.io import discover_cases

TRAIN, TEST = ["CASEA", "CASEB", "CASEC"], ["CASET"]
COMMIT = "c0ffee" * 6 + "1234"  # what the branch resolves to: every file is read at this commit


def _h5_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5["image"] = rng.normal(size=(12, 10, 8)).astype(np.float32)
        h5["label"] = (rng.random((12, 10, 8)) > 0.7).astype(np.uint8)
    return buffer.getvalue()


def _git_sha(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def _publish_la(site: HttpSite, wrong_sha_for: str | None = None, lfs_for: str | None = None) -> dict[str, bytes]:
    """The repository as GitHub serves it: the tree listing (API), raw files, LFS media."""
    raw = site.root / "raw" / "yulequan" / "UA-MT" / COMMIT
    files, tree = {}, []
    for seed, case in enumerate(TRAIN + TEST):
        data = _h5_bytes(seed)
        files[case] = data
        served = data
        if case == lfs_for:
            oid = hashlib.sha256(data).hexdigest()
            served = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()
            media = site.root / "media" / "yulequan" / "UA-MT" / COMMIT / LA_FOLDER / case / "mri_norm2.h5"
            media.parent.mkdir(parents=True)
            media.write_bytes(data)
        path = raw / LA_FOLDER / case / "mri_norm2.h5"
        path.parent.mkdir(parents=True)
        path.write_bytes(served)
        sha = "0" * 40 if case == wrong_sha_for else _git_sha(served)
        tree.append({"path": f"{LA_FOLDER}/{case}/mri_norm2.h5", "type": "blob", "sha": sha, "size": len(served)})
    (raw / "data" / "train.list").write_text("\n".join(TRAIN) + "\n")
    (raw / "data" / "test.list").write_text("\n".join(TEST) + "\n")
    listing = site.root / "api" / "repos" / "yulequan" / "UA-MT" / "git" / "trees" / COMMIT
    listing.parent.mkdir(parents=True)
    commit = site.root / "api" / "repos" / "yulequan" / "UA-MT" / "commits" / "master"
    commit.parent.mkdir(parents=True)
    commit.write_text(json.dumps({"sha": COMMIT}))
    listing.write_text(json.dumps({"tree": [{"path": "data", "type": "tree"}, *tree]}))
    return files


def _la(site: HttpSite, out: Path) -> Path:
    return download_la(out, api=f"{site.url}/api", raw=f"{site.url}/raw", lfs=f"{site.url}/media")


def test_la_download_is_complete_and_verified(site: HttpSite, tmp_path: Path) -> None:
    files = _publish_la(site)
    out = _la(site, tmp_path / "LA")
    for case, data in files.items():
        assert (out / case / "mri_norm2.h5").read_bytes() == data
    assert (out / "train.list").read_text().split() == TRAIN
    assert (out / "labeled16.list").read_text().split() == TRAIN[:16]
    assert (out / "test20.list").read_text().split() == TEST
    assert json.loads((out / COMPLETE_MARK).read_text())["layout"] == "la_h5"
    assert not (tmp_path / "LA.partial").exists() and not list(out.rglob("*.part"))
    layout, records = discover_cases(out)
    assert layout == "la_h5" and sorted(r["case"] for r in records) == sorted(TRAIN + TEST)
    requests = len(site.requests)
    _la(site, out)  # already there: the network is not contacted (it may be unreachable)
    assert site.requests[requests:] == []


def test_la_download_resumes_a_cut_file(site: HttpSite, tmp_path: Path) -> None:
    files = _publish_la(site)
    part = tmp_path / "LA.partial" / "CASEB" / "mri_norm2.h5.git-blob.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(files["CASEB"][:1000])
    out = _la(site, tmp_path / "LA")
    assert (out / "CASEB" / "mri_norm2.h5").read_bytes() == files["CASEB"]
    assert site.ranges_for("CASEB/mri_norm2.h5") == ["bytes=1000-"]  # only the rest was requested
    assert site.ranges_for("CASEA/mri_norm2.h5") == [None]


def test_la_download_redoes_a_corrupt_part(site: HttpSite, tmp_path: Path) -> None:
    files = _publish_la(site)
    part = tmp_path / "LA.partial" / "CASEA" / "mri_norm2.h5.git-blob.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # stale bytes: resuming gives the right size but the wrong checksum
    out = _la(site, tmp_path / "LA")
    assert (out / "CASEA" / "mri_norm2.h5").read_bytes() == files["CASEA"]
    assert site.ranges_for("CASEA/mri_norm2.h5") == ["bytes=1000-", None]


def test_la_download_refuses_a_file_that_never_matches(site: HttpSite, tmp_path: Path) -> None:
    _publish_la(site, wrong_sha_for="CASEC")
    with pytest.raises(
        MedlitError, match=r"CASEC/mri_norm2.h5: git-blob [0-9a-f]{40} does not match the published 0{40}"
    ):
        _la(site, tmp_path / "LA")
    assert not (tmp_path / "LA").exists()  # never a half dataset
    partial = tmp_path / "LA.partial"
    assert (partial / "CASEA" / "mri_norm2.h5").is_file() and not list(partial.rglob("*.part"))
    assert len(site.ranges_for("CASEC/mri_norm2.h5")) == 2  # downloaded twice, then refused


def test_la_download_follows_lfs_pointers_and_resumes_them(site: HttpSite, tmp_path: Path) -> None:
    files = _publish_la(site, lfs_for="CASET")
    part = tmp_path / "LA.partial" / "CASET" / "mri_norm2.h5.part"  # a cut download of the LFS content
    part.parent.mkdir(parents=True)
    part.write_bytes(files["CASET"][:700])
    out = _la(site, tmp_path / "LA")
    assert (out / "CASET" / "mri_norm2.h5").read_bytes() == files["CASET"]
    media = f"media/yulequan/UA-MT/{COMMIT}/" + LA_FOLDER.replace(" ", "%20") + "/CASET/mri_norm2.h5"
    assert site.ranges_for(media) == ["bytes=700-"]
    assert not list(out.rglob("*.git-blob"))


def test_download_never_overwrites_other_folders(site: HttpSite, tmp_path: Path) -> None:
    _publish_la(site)
    (tmp_path / "a_file").write_text("keep")
    with pytest.raises(MedlitError, match="a_file is a file; --out names the dataset folder to create"):
        _la(site, tmp_path / "a_file")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(MedlitError, match="mine exists and is not a dataset downloaded by medlit"):
        _la(site, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def _nifti_bytes(array: np.ndarray) -> bytes:
    image = nib.Nifti1Image(array, np.eye(4))
    return image.to_bytes()


def _publish_msd(site: HttpSite) -> tuple[str, str]:
    """A small Task04 archive (with the macOS ``._`` files the real one ships) and its md5."""
    rng = np.random.default_rng(0)
    members = {"Task04_Hippocampus/dataset.json": b""}
    training = []
    for n in (1, 2, 3):
        name = f"hippocampus_{n:03d}.nii.gz"
        members[f"Task04_Hippocampus/imagesTr/{name}"] = _nifti_bytes(rng.random((10, 12, 8)).astype(np.float32))
        members[f"Task04_Hippocampus/labelsTr/{name}"] = _nifti_bytes(rng.integers(0, 3, (10, 12, 8), np.uint8))
        members[f"Task04_Hippocampus/imagesTr/._{name}"] = b"resource fork"
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    members["Task04_Hippocampus/dataset.json"] = json.dumps({"training": training, "numTraining": 3}).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = site.root / "msd" / "Task04_Hippocampus.tar"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(buffer.getvalue())
    return f"{site.url}/msd/Task04_Hippocampus.tar", hashlib.md5(buffer.getvalue()).hexdigest()


def test_hippocampus_download_unpacks_a_checked_archive(site: HttpSite, tmp_path: Path) -> None:
    url, md5 = _publish_msd(site)
    out = download_hippocampus(tmp_path / "hippocampus", url=url, md5=md5)
    assert sorted(p.name for p in out.iterdir()) == sorted([COMPLETE_MARK, "dataset.json", "imagesTr", "labelsTr"])
    assert not list(out.rglob("._*"))
    layout, records = discover_cases(out)
    assert layout == "msd" and len(records) == 3


def test_hippocampus_download_with_a_wrong_checksum_leaves_nothing(site: HttpSite, tmp_path: Path) -> None:
    url, _ = _publish_msd(site)
    with pytest.raises(MedlitError, match="md5 [0-9a-f]{32} does not match the published " + "f" * 32):
        download_hippocampus(tmp_path / "hippocampus", url=url, md5="f" * 32)
    assert not (tmp_path / "hippocampus").exists()


# --- HAM10000 from the ISIC 2018 bucket -------------------------------------------------------------------------
HAM_IMAGES = {
    "ISIC_0000001": ("HAM_1", "MEL"),
    "ISIC_0000002": ("HAM_1", "MEL"),
    "ISIC_0000003": ("HAM_2", "NV"),
    "ISIC_0000004": ("HAM_3", "BCC"),
    "ISIC_0000005": ("HAM_4", "VASC"),
}


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (15, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _one_hot(images: dict[str, str]) -> bytes:
    rows = ["image," + ",".join(CLASS_NAMES)]
    rows += [f"{image}," + ",".join("1.0" if c == dx else "0.0" for c in CLASS_NAMES) for image, dx in images.items()]
    return ("\n".join(rows) + "\n").encode()


def _publish_isic(site: HttpSite, groupings_skip: str | None = None, padding: int = 0) -> None:
    """The bucket's training (and test) files; ``padding`` bytes of an extra member make the image zip large
    enough for a multipart ETag."""
    folder = site.root / "2018"
    folder.mkdir(parents=True)
    members = {f"ISIC2018_Task3_Training_Input/{i}.jpg": _jpeg(n) for n, i in enumerate(HAM_IMAGES)}
    members["ISIC2018_Task3_Training_Input/LICENSE.txt"] = b"CC BY-NC 4.0" + bytes(padding)
    (folder / TRAIN_FILES[0]).write_bytes(_zip(members))
    truth = _one_hot({i: dx for i, (_, dx) in HAM_IMAGES.items()})
    (folder / TRAIN_FILES[1]).write_bytes(_zip({"ISIC2018_Task3_Training_GroundTruth.csv": truth}))
    groups = ["image,lesion_id,diagnosis_confirm_type"]
    groups += [f"{i},{lesion},histopathology" for i, (lesion, _) in HAM_IMAGES.items() if i != groupings_skip]
    (folder / TRAIN_FILES[2]).write_text("\n".join(groups) + "\n")
    test = {"ISIC_0034524": "NV", "ISIC_0034525": "DF"}
    (folder / TEST_FILES[0]).write_bytes(_zip({f"ISIC2018_Task3_Test_Input/{i}.jpg": _jpeg(9) for i in test}))
    (folder / TEST_FILES[1]).write_bytes(_zip({"ISIC2018_Task3_Test_GroundTruth.csv": _one_hot(test)}))


def test_ham10000_download_is_complete_and_reads_as_a_dataset(site: HttpSite, tmp_path: Path) -> None:
    _publish_isic(site)
    out = download_ham10000(tmp_path / "HAM", with_test=True, base_url=f"{site.url}/2018")
    meta = pd.read_csv(out / "HAM10000_metadata.csv")
    assert meta["image_id"].tolist() == sorted(HAM_IMAGES)
    assert meta["lesion_id"].tolist() == [HAM_IMAGES[i][0] for i in meta["image_id"]]
    assert meta["dx"].tolist() == [HAM_IMAGES[i][1].lower() for i in meta["image_id"]]
    assert sorted(p.stem for p in (out / "images").iterdir()) == sorted(HAM_IMAGES)  # no LICENSE.txt
    assert sorted(p.stem for p in (out / "test_images").iterdir()) == ["ISIC_0034524", "ISIC_0034525"]
    assert not (tmp_path / "HAM.partial").exists() and (out / COMPLETE_MARK).is_file()
    data = HAM10000DataModule(
        root=str(out),
        test_csv=str(out / "ISIC2018_Task3_Test_GroundTruth.csv"),
        test_image_dir=str(out / "test_images"),
    )
    check = data.check_data(full=True)
    assert check.ok, check.render()
    requests = len(site.requests)
    download_ham10000(tmp_path / "HAM", with_test=True, base_url=f"{site.url}/2018")  # complete: nothing fetched
    assert len(site.requests) == requests


def test_ham10000_download_checks_multipart_etags(site: HttpSite, tmp_path: Path) -> None:
    """A multipart ETag (md5 of the 1 MiB parts' md5s) is verified; a wrong one refuses the file, twice fetched."""
    _publish_isic(site, padding=2_500_000)
    served = (site.root / "2018" / TRAIN_FILES[0]).read_bytes()
    parts = [served[i : i + (1 << 20)] for i in range(0, len(served), 1 << 20)]
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"
    site.etags[TRAIN_FILES[0]] = etag
    assert download_ham10000(tmp_path / "HAM", base_url=f"{site.url}/2018").is_dir()
    with pytest.raises(MedlitError, match="downloaded without the test set"):
        download_ham10000(tmp_path / "HAM", with_test=True, base_url=f"{site.url}/2018")
    site.etags[TRAIN_FILES[0]] = "0" * 32 + f"-{len(parts)}"
    with pytest.raises(MedlitError, match="no multipart md5 matches the server's ETag"):
        download_ham10000(tmp_path / "HAM2", base_url=f"{site.url}/2018")
    assert len([p for p, _ in site.requests if p.endswith(TRAIN_FILES[0])]) == 3  # once, then twice refused
    assert not (tmp_path / "HAM2").exists()


def test_ham10000_download_refuses_bad_content(site: HttpSite, tmp_path: Path) -> None:
    """A wrong md5 ETag, a zip member failing its CRC and groupings missing an image each stop the download with
    the file named, and no dataset folder appears."""
    _publish_isic(site, groupings_skip="ISIC_0000004")
    base = f"{site.url}/2018"
    with pytest.raises(MedlitError, match="groupings|LesionGroupings.*disagree"):
        download_ham10000(tmp_path / "A", base_url=base)
    assert not (tmp_path / "A").exists()
    site.etags[TRAIN_FILES[1]] = "f" * 32
    with pytest.raises(MedlitError, match="does not match the server's ETag"):
        download_ham10000(tmp_path / "B", base_url=base)
    del site.etags[TRAIN_FILES[1]]
    archive = site.root / "2018" / TRAIN_FILES[0]
    data = bytearray(archive.read_bytes())
    start = data.index(b"\xff\xd8")  # inside the first stored JPEG: its CRC no longer matches
    data[start + 40] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(MedlitError, match="fails its CRC-32 check"):
        download_ham10000(tmp_path / "C", base_url=base)
    assert not (tmp_path / "C").exists()


def test_a_failed_download_from_the_command_line_is_one_error_line(
    site: HttpSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both tasks' ``python -m <task>.download``: the one error exit (``error: ...`` on stderr, status 2)."""
    import lesion_cls.download
    import volume_seg.download

    _publish_la(site)
    _publish_isic(site)
    monkeypatch.setitem(volume_seg.download.DATASETS, "la", lambda out: _la(site, out))
    monkeypatch.setitem(
        lesion_cls.download.DATASETS,
        "ham10000",
        lambda out, with_test: download_ham10000(out, with_test, base_url=f"{site.url}/2018"),
    )
    taken = tmp_path / "a_file"
    taken.write_text("keep")
    for main, dataset in ((volume_seg.download.main, "la"), (lesion_cls.download.main, "ham10000")):
        with pytest.raises(SystemExit) as exit_info:
            main([dataset, "--out", str(taken)])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.splitlines() == [
            f"error: {taken} is a file; --out names the dataset folder to create"
        ]
    assert taken.read_text() == "keep"
