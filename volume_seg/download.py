"""``python -m volume_seg.download la|hippocampus --out DIR``: the recipes' public datasets, every file verified.

- ``la``: the left-atrium volumes of the 2018 Atrial Segmentation Challenge as preprocessed by UA-MT (Yu et al.,
  MICCAI 2019; GitHub ``yulequan/UA-MT``, ``data/2018LA_Seg_Training Set``): 100 cases
  ``<CASE>/mri_norm2.h5``, the repository's ``train.list`` (80) and ``test.list`` (20), and the standard
  16-label protocol's ``labeled16.list`` (the first 16 training cases, as UA-MT takes them) and ``test20.list``.
  Each file is checked against the git object id the repository's tree lists for it (and, for files kept in
  Git LFS, against the LFS pointer's sha256). The case names and lists are committed in ``la_manifest.json``
  (package data): a folder that already holds the cases (a copy made without medlit) is used as it is, without
  contacting the network, and only missing cases are downloaded into it; every case on disk must open as HDF5
  with ``image`` and ``label`` of one shape, and lists already there must be the manifest's.
- ``hippocampus``: Medical Segmentation Decathlon Task04 (Antonelli et al., Nat. Commun. 2022), the archive
  MONAI's ``DecathlonDataset`` downloads, checked against MONAI's published md5; ``DIR`` then holds
  ``dataset.json``, ``imagesTr/``, ``labelsTr/`` and ``imagesTs/`` (``data.layout msd``).

Interrupted downloads resume on the next call; ``DIR`` appears only once complete (``common.download``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import urllib.parse
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import h5py

from common.download import COMPLETE_MARK, expect_hash, fetch, install_dataset, read_url
from common.errors import MedlitError, exit_on_error

__all__ = ["LaManifest", "download_hippocampus", "download_la", "main", "read_la_manifest"]

LA_REPO = "yulequan/UA-MT"
LA_REF = "master"
LA_FOLDER = "data/2018LA_Seg_Training Set"
GITHUB_API = "https://api.github.com"
GITHUB_RAW = "https://raw.githubusercontent.com"
GITHUB_LFS = "https://media.githubusercontent.com/media"
LABELED = 16  # the standard semi-supervised LA protocol: the first 16 of train.list are labelled
LA_FILE = "mri_norm2.h5"


@dataclass(frozen=True)
class LaManifest:
    """The UA-MT release's case lists, committed so that a copy on disk is recognised without the network."""

    train: list[str]
    test: list[str]
    source: str

    @property
    def cases(self) -> list[str]:
        return self.train + self.test

    def lists(self) -> dict[str, list[str]]:
        """The list files a medlit LA folder holds, by name."""
        return _la_lists(self.train, self.test)


def _la_lists(train: list[str], test: list[str]) -> dict[str, list[str]]:
    return {"train.list": train, "test.list": test, "labeled16.list": train[:LABELED], "test20.list": test}


def read_la_manifest() -> LaManifest:
    """The committed manifest (``volume_seg/la_manifest.json``), the same in a clone and an installed wheel."""
    data = json.loads(resources.files("volume_seg").joinpath("la_manifest.json").read_text())
    return LaManifest(data["train.list"], data["test.list"], f"{data['source']} @ {data['commit']}")


def _lfs_pointer(path: Path) -> tuple[str, int] | None:
    """``(sha256, size)`` when ``path`` is a Git LFS pointer instead of the file itself."""
    if path.stat().st_size > 1024:
        return None
    text = path.read_bytes().decode("utf-8", errors="replace")
    if not text.startswith("version https://git-lfs"):
        return None
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    return fields["oid"].removeprefix("sha256:"), int(fields["size"])


def _fetch_la_file(raw_url: str, lfs_url: str, entry: dict, dest: Path) -> None:
    """The git blob first (kept as ``.git-blob``: the file itself, or a Git LFS pointer to it), checked against
    the tree's object id; for a pointer, the content it names, checked against its sha256 (with its own
    ``.part``, so a cut LFS download resumes too)."""
    blob = fetch(
        raw_url, dest.with_name(dest.name + ".git-blob"), check=expect_hash(entry["sha"], "git-blob", entry["size"])
    )
    pointer = _lfs_pointer(blob)
    if pointer is None:
        blob.replace(dest)
        return
    fetch(lfs_url, dest, check=expect_hash(pointer[0], "sha256", pointer[1]))
    blob.unlink()


def _case_list(raw: str, name: str) -> list[str]:
    return [line.strip() for line in read_url(f"{raw}/{name}").decode().splitlines() if line.strip()]


def _published_tree(api: str, raw: str, ref: str) -> tuple[str, dict[str, dict], str]:
    """``(commit, blobs by path, raw base URL)`` of ``ref`` (a branch resolved to one commit)."""
    commit_url = f"{api}/repos/{LA_REPO}/commits/{ref}"
    try:
        commit = str(json.loads(read_url(commit_url))["sha"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise MedlitError(f"{commit_url}: not a commit ({error})") from None
    tree_url = f"{api}/repos/{LA_REPO}/git/trees/{commit}?recursive=1"
    try:
        tree = json.loads(read_url(tree_url))
        blobs = {entry["path"]: entry for entry in tree["tree"] if entry.get("type") == "blob"}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise MedlitError(f"{tree_url}: not a git tree listing ({error})") from None
    return commit, blobs, f"{raw}/{LA_REPO}/{commit}"


def _fetch_cases(cases: list[str], folder: Path, published: tuple[str, dict[str, dict], str], lfs: str) -> None:
    """Each case of ``cases`` not yet in ``folder``, fetched and checked against the published tree."""
    commit, blobs, base = published
    for number, case in enumerate(cases, 1):
        path = f"{LA_FOLDER}/{case}/{LA_FILE}"
        if path not in blobs:
            raise MedlitError(f"{LA_REPO} @ {commit}: lists no {path} (named in the repository's case lists)")
        dest = folder / case / LA_FILE
        if not dest.exists():
            print(f"[{number}/{len(cases)}] {case}", flush=True)
            quoted = urllib.parse.quote(path)
            _fetch_la_file(f"{base}/{quoted}", f"{lfs}/{LA_REPO}/{commit}/{quoted}", blobs[path], dest)


def _check_la_volume(path: Path) -> None:
    """One line when ``path`` is not a readable HDF5 file with ``image`` and ``label`` of one shape."""
    try:
        with h5py.File(path, "r") as h5:
            shapes = {name: h5[name].shape for name in ("image", "label")}
    except (OSError, KeyError) as error:
        raise MedlitError(f"{path}: not an LA volume (HDF5 with datasets image and label): {error}") from None
    if shapes["image"] != shapes["label"] or len(shapes["image"]) != 3:
        raise MedlitError(f"{path}: image {shapes['image']} and label {shapes['label']} are not one 3D shape")


def _use_copy_on_disk(out: Path, manifest: LaManifest, fetch_missing) -> Path:
    """``out`` holds cases of the release already: check them, fetch only the missing, add the lists."""
    lists = manifest.lists()
    for name, cases in lists.items():  # before anything is fetched or written
        if (out / name).is_file() and (out / name).read_text().split() != cases:
            raise MedlitError(f"{out / name}: differs from {manifest.source}'s {name}; move it away to use {out}")
    missing = [case for case in manifest.cases if not (out / case / LA_FILE).is_file()]
    for case in manifest.cases:
        if case not in missing:
            _check_la_volume(out / case / LA_FILE)
    if missing:
        print(f"{out}: {len(manifest.cases) - len(missing)} cases on disk; downloading the {len(missing)} missing")
        fetch_missing(missing)
        for case in missing:
            _check_la_volume(out / case / LA_FILE)
    else:
        print(f"{out}: all {len(manifest.cases)} cases on disk (the network is not contacted)")
    for name, cases in lists.items():
        if not (out / name).is_file():
            (out / name).write_text("\n".join(cases) + "\n")
    return out


def download_la(
    out: Path,
    api: str = GITHUB_API,
    raw: str = GITHUB_RAW,
    lfs: str = GITHUB_LFS,
    ref: str = LA_REF,
    manifest: LaManifest | None = None,
) -> Path:
    """Download the UA-MT LA release into ``out`` (see the module docstring); returns ``out``.

    ``ref`` (a branch) is resolved to its commit first, so the listing and every file come from one commit. A
    completed download in ``out`` is used as it is, without contacting the network; so is a folder that holds
    every case of ``manifest`` (default: the committed one), and one that holds some gets only the missing.
    """
    if (out / COMPLETE_MARK).is_file():
        print(f"{out}: already downloaded")
        return out
    manifest = manifest or read_la_manifest()
    if out.is_dir() and any((out / case / LA_FILE).is_file() for case in manifest.cases):
        return _use_copy_on_disk(
            out, manifest, lambda missing: _fetch_cases(missing, out, _published_tree(api, raw, ref), lfs)
        )
    published = _published_tree(api, raw, ref)
    base = published[2]
    train, test = _case_list(base, "data/train.list"), _case_list(base, "data/test.list")
    description = {
        "dataset": "LA 2018 (UA-MT h5)",
        "source": f"github.com/{LA_REPO} @ {published[0]}",
        "layout": "la_h5",
    }
    with install_dataset(out, description) as folder:
        if folder is None:
            print(f"{out}: already downloaded")
            return out
        _fetch_cases(train + test, folder, published, lfs)
        for name, cases in _la_lists(train, test).items():
            (folder / name).write_text("\n".join(cases) + "\n")
    print(f"{out}: {len(train) + len(test)} cases; train.list {len(train)}, test.list {len(test)}, labeled16.list")
    return out


def download_hippocampus(out: Path, url: str | None = None, md5: str | None = None) -> Path:
    """Download and unpack MSD Task04 Hippocampus into ``out``; returns ``out``."""
    from monai.apps import DecathlonDataset
    from monai.apps.utils import extractall

    url = url or DecathlonDataset.resource["Task04_Hippocampus"]
    md5 = md5 or DecathlonDataset.md5["Task04_Hippocampus"]
    description = {"dataset": "MSD Task04 Hippocampus", "source": url, "md5": md5, "layout": "msd"}
    with install_dataset(out, description) as folder:
        if folder is None:
            print(f"{out}: already downloaded")
            return out
        print(f"downloading {url}", flush=True)
        archive = fetch(
            url, folder / ".archive" / Path(urllib.parse.urlparse(url).path).name, check=expect_hash(md5, "md5")
        )
        unpacked = folder / ".unpacked"
        shutil.rmtree(unpacked, ignore_errors=True)  # a cut extraction starts again from the checked archive
        extractall(str(archive), str(unpacked), has_base=False)
        tops = [p for p in unpacked.iterdir() if not p.name.startswith(".")]
        source = tops[0] if len(tops) == 1 and tops[0].is_dir() else unpacked
        if not (source / "dataset.json").is_file():
            raise MedlitError(f"{archive}: holds no dataset.json (not an MSD task archive)")
        for item in source.iterdir():
            if not item.name.startswith("._"):
                target = folder / item.name
                if target.is_dir():  # left by a move that was cut: the checked archive's copy replaces it
                    shutil.rmtree(target)
                item.replace(target)
        for stray in folder.rglob("._*"):  # macOS resource forks shipped inside the MSD archives
            stray.unlink()
        shutil.rmtree(unpacked)
        shutil.rmtree(folder / ".archive")
    cases = len(json.loads((out / "dataset.json").read_text())["training"])
    print(f"{out}: {cases} labelled cases (data.layout msd)")
    return out


DATASETS = {"la": download_la, "hippocampus": download_hippocampus}


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m volume_seg.download``: one ``error:`` line and status 2 on a failed download."""
    parser = argparse.ArgumentParser(prog="python -m volume_seg.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--out", type=Path, required=True, help="the dataset folder to create")
    args = parser.parse_args(argv)
    with exit_on_error():
        DATASETS[args.dataset](args.out)


if __name__ == "__main__":
    main()
