"""Generated 3D volumes in the LA (UA-MT h5) and MSD (NIfTI) layouts: the embedded default data.

``python -m volume_seg.synthetic --layout la --out data/generated/la_h5`` writes
``<out>/<CASE>/mri_norm2.h5`` (datasets ``image`` float32 and ``label`` uint8) with ``train.list`` and
``test.list``; ``--layout msd`` writes ``imagesTr/``, ``labelsTr/`` and ``dataset.json`` with spacing in the
NIfTI headers and two foreground classes. Each volume holds one smooth, irregular blob (the "atrium") in a
noisy background under a multiplicative bias field; the blob is brighter on average but overlaps the
background's intensities, so a small 3D U-Net segments it well but not perfectly. Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from common.errors import exit_on_error

__all__ = ["generate_la_h5", "generate_msd", "synthetic_case"]


def synthetic_case(
    shape: tuple[int, int, int], rng: np.random.Generator, num_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """One volume: ``image`` float32 (z-scored) and ``label`` uint8 in ``0 .. num_classes - 1``."""
    grid = np.indices(shape).astype(np.float64)
    center = [rng.uniform(0.35, 0.65) * s for s in shape]
    radii = [rng.uniform(0.16, 0.28) * s for s in shape]
    distance = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii, strict=True)))
    wobble = gaussian_filter(rng.normal(size=shape), sigma=min(shape) / 6)
    wobble /= wobble.std() + 1e-8
    blob = distance + 0.25 * wobble < 1.0
    label = blob.astype(np.uint8)
    if num_classes > 2:  # split the structure into parts along its first axis (anterior/posterior...)
        cuts = np.quantile(grid[0][blob], np.linspace(0, 1, num_classes)[1:-1]) if blob.any() else []
        label[blob] = 1 + np.searchsorted(np.asarray(cuts), grid[0][blob])
    texture = gaussian_filter(rng.normal(size=shape), sigma=1.0)
    image = 0.8 * rng.normal(size=shape) + 0.6 * texture / (texture.std() + 1e-8)
    image += label * rng.uniform(1.0, 1.6) + (label > 1) * 0.5
    field = gaussian_filter(rng.normal(size=shape), sigma=min(shape) / 3)
    image *= np.clip(1 + 0.25 * field / (field.std() + 1e-8), 0.5, 1.5)
    image = (image - image.mean()) / image.std()
    return image.astype(np.float32), label


def _case_names(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


def _unchanged(out: Path, settings: dict) -> bool:
    stamp = out / "generated.json"
    return stamp.exists() and json.loads(stamp.read_text()) == settings


def generate_la_h5(
    out: Path, n_train: int = 12, n_test: int = 6, shape: tuple[int, int, int] = (64, 64, 48), seed: int = 0
) -> Path:
    """LA layout: ``<out>/<CASE>/mri_norm2.h5`` plus ``train.list``/``test.list`` (reused if unchanged)."""
    out = Path(out)
    settings = {"layout": "la", "n_train": n_train, "n_test": n_test, "shape": list(shape), "seed": seed}
    if _unchanged(out, settings):
        return out
    rng = np.random.default_rng(seed)
    names = _case_names(n_train + n_test, "LA")
    for name in names:
        image, label = synthetic_case(shape, rng)
        (out / name).mkdir(parents=True, exist_ok=True)
        with h5py.File(out / name / "mri_norm2.h5", "w") as h5:
            h5.create_dataset("image", data=image, compression="gzip")
            h5.create_dataset("label", data=label, compression="gzip")
    (out / "train.list").write_text("\n".join(names[:n_train]) + "\n")
    (out / "test.list").write_text("\n".join(names[n_train:]) + "\n")
    (out / "generated.json").write_text(json.dumps(settings) + "\n")
    return out


def generate_msd(
    out: Path,
    n_cases: int = 16,
    shape: tuple[int, int, int] = (40, 48, 32),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.5),
    num_classes: int = 3,
    seed: int = 0,
) -> Path:
    """MSD layout: ``imagesTr/``, ``labelsTr/`` (NIfTI with spacing) and ``dataset.json``."""
    out = Path(out)
    settings = {
        "layout": "msd",
        "n_cases": n_cases,
        "shape": list(shape),
        "spacing": list(spacing),
        "num_classes": num_classes,
        "seed": seed,
    }
    if _unchanged(out, settings):
        return out
    rng = np.random.default_rng(seed)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    training = []
    for name in _case_names(n_cases, "case_"):
        image, label = synthetic_case(shape, rng, num_classes)
        scale = float(rng.choice([1.0, 200.0, 5e4]))  # real MSD intensity scales differ wildly between cases
        nib.save(nib.Nifti1Image((image * scale).astype(np.float32), affine), out / "imagesTr" / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), out / "labelsTr" / f"{name}.nii.gz")
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    labels = {"0": "background", **{str(c): f"part{c}" for c in range(1, num_classes)}}
    dataset = {
        "name": "synthetic",
        "modality": {"0": "MRI"},
        "labels": labels,
        "numTraining": n_cases,
        "training": training,
        "test": [],
    }
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    (out / "generated.json").write_text(json.dumps(settings) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m volume_seg.synthetic``."""
    parser = argparse.ArgumentParser(prog="python -m volume_seg.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=("la", "msd"), default="la")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--n-train", type=int, default=12, help="la: training cases")
    parser.add_argument("--n-test", type=int, default=6, help="la: test cases")
    parser.add_argument("--n-cases", type=int, default=16, help="msd: cases")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="volume shape X Y Z")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with exit_on_error():
        if args.layout == "la":
            out = generate_la_h5(
                args.out or Path("data/generated/la_h5"),
                args.n_train,
                args.n_test,
                tuple(args.shape or (64, 64, 48)),
                args.seed,
            )
        else:
            out = generate_msd(
                args.out or Path("data/generated/msd"), args.n_cases, tuple(args.shape or (40, 48, 32)), seed=args.seed
            )
    print(f"{out}: generated {args.layout} volumes")


if __name__ == "__main__":
    main()
