"""``python -m lesion_cls.download ham10000 --out DIR [--with-test]``: HAM10000 as the ISIC 2018 challenge
publishes it, every file verified.

- The ISIC 2018 Task 3 training set (= the 10,015 HAM10000 images, Tschandl et al., Sci. Data 2018) and its
  ground truth, from the challenge's public bucket (``isic-challenge-data.s3.amazonaws.com/2018``), and the
  challenge's lesion groupings (``ISIC2018_Task3_Training_LesionGroupings.csv``: each image's ``lesion_id``,
  needed to split by lesion). ``DIR`` then holds ``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,dx_type``)
  and ``images/<image_id>.jpg``: the layout ``--data.root DIR`` reads.
- ``--with-test``: also the 1,512 official test images and their ground truth (``test_images/``,
  ``ISIC2018_Task3_Test_GroundTruth.csv``; ``--data.test_csv`` / ``--data.test_image_dir``).

No checksum is published for these files; the bucket's own ones are verified instead: each download must have
the size the server announces and the ETag it sends (the md5 of the content, or of its parts for multipart
uploads, :func:`common.download.expect_s3_etag`); every member of each archive must pass its zip CRC-32; the
images, ground truth and groupings must name the same images. Interrupted downloads resume on the next call;
``DIR`` appears only once complete (``common.download``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd

from common.download import COMPLETE_MARK, expect_s3_etag, fetch, head, install_dataset
from common.errors import MedlitError, exit_on_error
from lesion_cls import CLASS_NAMES, DX_CODES

__all__ = ["ISIC_2018", "download_ham10000", "main"]

ISIC_2018 = "https://isic-challenge-data.s3.amazonaws.com/2018"
TRAIN_FILES = (
    "ISIC2018_Task3_Training_Input.zip",
    "ISIC2018_Task3_Training_GroundTruth.zip",
    "ISIC2018_Task3_Training_LesionGroupings.csv",
)
TEST_FILES = ("ISIC2018_Task3_Test_Input.zip", "ISIC2018_Task3_Test_GroundTruth.zip")


def _fetch_checked(base_url: str, name: str, folder: Path) -> Path:
    url = f"{base_url}/{name}"
    if (folder / name).is_file():  # checked when it was written (a rerun after a failed extraction)
        return folder / name
    size, etag = head(url)
    if not etag:
        raise MedlitError(f"{url}: the server sends no ETag, so the download cannot be verified")
    print(f"downloading {url} ({size / 1e6:.0f} MB)" if size else f"downloading {url}", flush=True)
    return fetch(url, folder / name, check=expect_s3_etag(etag, size))


def _unzip_checked(archive: Path, folder: Path, suffix: str) -> dict[str, Path]:
    """Every ``*suffix`` member of ``archive`` (its CRC-32 checked) written flat into ``folder``, by stem."""
    folder.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    try:
        with zipfile.ZipFile(archive) as zipped:
            bad = zipped.testzip()
            if bad is not None:
                raise MedlitError(f"{archive}: member {bad} fails its CRC-32 check")
            for member in zipped.infolist():
                name = Path(member.filename).name
                if member.is_dir() or not name.lower().endswith(suffix) or name.startswith("._"):
                    continue
                target = folder / name
                with zipped.open(member) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                found[target.stem] = target
    except zipfile.BadZipFile as error:
        raise MedlitError(f"{archive}: not a readable zip archive ({error})") from None
    if not found:
        raise MedlitError(f"{archive}: holds no {suffix} file")
    return found


def _one_hot_table(csv: Path) -> pd.DataFrame:
    table = pd.read_csv(csv)
    missing = [c for c in ("image", *CLASS_NAMES) if c not in table]
    if missing:
        raise MedlitError(f"{csv}: missing column(s) {', '.join(missing)}")
    return table


def _metadata(ground_truth: Path, groupings: Path, images: dict[str, Path]) -> pd.DataFrame:
    """``lesion_id,image_id,dx,dx_type`` for every image, checked to name the same images everywhere."""
    truth = _one_hot_table(ground_truth)
    groups = pd.read_csv(groupings)
    if not {"image", "lesion_id"} <= set(groups.columns):
        raise MedlitError(f"{groupings}: expected columns image, lesion_id (got {', '.join(groups.columns)})")
    names = [set(truth["image"]), set(groups["image"]), set(images)]
    if not names[0] == names[1] == names[2]:
        raise MedlitError(
            f"{ground_truth.name}, {groupings.name} and the images disagree: {len(names[0])}, {len(names[1])} and "
            f"{len(names[2])} images, {len(names[0] ^ names[2]) + len(names[0] ^ names[1])} not in all three"
        )
    dx = pd.Series(DX_CODES, index=CLASS_NAMES)[truth[list(CLASS_NAMES)].idxmax(axis=1)].to_numpy()
    table = pd.DataFrame({"image_id": truth["image"], "dx": dx}).merge(
        groups.rename(columns={"image": "image_id", "diagnosis_confirm_type": "dx_type"}), on="image_id"
    )
    columns = ["lesion_id", "image_id", "dx"] + (["dx_type"] if "dx_type" in table else [])
    return table[columns].sort_values("image_id", ignore_index=True)


def download_ham10000(out: Path, with_test: bool = False, base_url: str = ISIC_2018) -> Path:
    """Download, verify and lay out HAM10000 (and the ISIC 2018 test set with ``with_test``) in ``out``."""
    files = TRAIN_FILES + (TEST_FILES if with_test else ())
    description = {"dataset": "HAM10000 (ISIC 2018 Task 3)", "source": base_url, "files": list(files)}
    with install_dataset(out, description) as folder:
        if folder is None:
            had = json.loads((out / COMPLETE_MARK).read_text()).get("files", [])
            if not set(files) <= set(had):
                raise MedlitError(
                    f"{out} was downloaded without the test set; download into another --out with --with-test"
                )
            print(f"{out}: already downloaded")
            return out
        downloads = folder / ".downloads"
        got = {name: _fetch_checked(base_url, name, downloads) for name in files}
        unpacked = folder / ".unpacked"
        shutil.rmtree(unpacked, ignore_errors=True)  # a cut extraction starts again from the checked archives
        images = _unzip_checked(got[TRAIN_FILES[0]], unpacked / "images", ".jpg")
        (truth,) = _unzip_checked(got[TRAIN_FILES[1]], unpacked / "truth", ".csv").values()
        _metadata(truth, got[TRAIN_FILES[2]], images).to_csv(folder / "HAM10000_metadata.csv", index=False)
        if with_test:
            test_images = _unzip_checked(got[TEST_FILES[0]], unpacked / "test_images", ".jpg")
            (test_truth,) = _unzip_checked(got[TEST_FILES[1]], unpacked / "test_truth", ".csv").values()
            if set(_one_hot_table(test_truth)["image"]) != set(test_images):
                raise MedlitError(f"{test_truth.name} and {TEST_FILES[0]} name different images")
            shutil.copy(test_truth, folder / "ISIC2018_Task3_Test_GroundTruth.csv")
            shutil.rmtree(folder / "test_images", ignore_errors=True)
            (unpacked / "test_images").replace(folder / "test_images")
        shutil.rmtree(folder / "images", ignore_errors=True)
        (unpacked / "images").replace(folder / "images")
        shutil.rmtree(unpacked)
        shutil.rmtree(downloads)
    print(f"{out}: {len(images)} images (--data.root {out})" + (", test set in test_images/" if with_test else ""))
    return out


DATASETS = {"ham10000": download_ham10000}


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m lesion_cls.download``: one ``error:`` line and status 2 on a failed download."""
    parser = argparse.ArgumentParser(prog="python -m lesion_cls.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--out", type=Path, required=True, help="the dataset folder to create")
    parser.add_argument("--with-test", action="store_true", help="also the official ISIC 2018 test set")
    args = parser.parse_args(argv)
    with exit_on_error():
        DATASETS[args.dataset](args.out, with_test=args.with_test)


if __name__ == "__main__":
    main()
