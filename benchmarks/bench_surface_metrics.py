"""Surface metrics: ours against medpy on real LA test labels, in the same run.

``python -m benchmarks.bench_surface_metrics`` takes the first ``--cases`` labels of the LA test list (real data
from ``../shared/data`` when present, else generated blobs) and two kinds of prediction for each, as a
model produces them: the label dilated by 2 voxels and shifted by 3, and the same plus two small false-positive
blobs near opposite corners of the volume (which make a bounding box of both masks the whole volume). For each,
in voxels and with 0.625 mm spacing, it times medpy's four calls (``dc``, ``jc``, ``hd95``, ``asd``) and
:func:`volume_seg.metrics.binary_case_metrics` (the same four numbers), and prints the speed-up and the largest
difference of the results (must be <= 1e-9). Best of ``--repeats`` timings each.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from medpy.metric import binary as medpy
from scipy.ndimage import binary_dilation, gaussian_filter

from benchmarks.results_file import record
from volume_seg.metrics import binary_case_metrics

NAMES = ("dice", "jaccard", "hd95", "asd")


def _timed(fn: Callable[[], dict], repeats: int) -> tuple[float, dict]:
    best, result = float("inf"), {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _medpy(pred: np.ndarray, label: np.ndarray, spacing: tuple | None) -> dict:
    return {
        "dice": medpy.dc(pred, label),
        "jaccard": medpy.jc(pred, label),
        "hd95": medpy.hd95(pred, label, spacing),
        "asd": medpy.asd(pred, label, spacing),
    }


def _labels(shared: Path, n: int) -> list[tuple[str, np.ndarray]]:
    """Real LA test labels when available, else generated blobs of LA size."""
    if (shared / "test20.list").is_file():
        import h5py

        labels = []
        for case in (shared / "test20.list").read_text().split()[:n]:
            with h5py.File(shared / case / "mri_norm2.h5") as h5:
                labels.append((case[:8], h5["label"][()] > 0))
        return labels
    rng = np.random.default_rng(0)
    labels = []
    for i in range(n):
        noise = gaussian_filter(rng.normal(size=(200, 150, 88)), 12)
        labels.append((f"blob{i}", noise > np.quantile(noise, 0.93)))
    return labels


def _predictions(label: np.ndarray) -> dict[str, np.ndarray]:
    shifted = np.roll(binary_dilation(label, iterations=2), 3, axis=0)
    blobs = shifted.copy()
    blobs[2:6, 2:6, 2:6] = True
    blobs[-7:-3, -7:-3, -7:-3] = True
    return {"shifted": shifted, "shifted+blobs": blobs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data/la_uamt_h5"))
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    lines = [
        "| case | prediction | unit | medpy s | ours s | speed-up | max abs diff |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    ratios, diffs = [], []
    for name, label in _labels(args.shared, args.cases):
        for kind, pred in _predictions(label).items():
            for spacing in (None, (0.625, 0.625, 0.625)):
                t_ref, ref = _timed(lambda p=pred, la=label, s=spacing: _medpy(p, la, s), args.repeats)
                t_ours, ours = _timed(lambda p=pred, la=label, s=spacing: binary_case_metrics(p, la, s), args.repeats)
                diff = max(abs(ref[k] - ours[k]) for k in NAMES)
                ratios.append(t_ref / t_ours)
                diffs.append(diff)
                unit = "mm" if spacing else "voxels"
                lines.append(
                    f"| {name} | {kind} | {unit} | {t_ref:.3f} | {t_ours:.4f} | {t_ref / t_ours:.1f}x | {diff:.1e} |"
                )
                print(lines[-1], flush=True)
    summary = (
        f"geometric-mean speed-up over medpy's four calls: {np.exp(np.mean(np.log(ratios))):.1f}x "
        f"(min {min(ratios):.1f}x) over {len(ratios)} volume/prediction/unit combinations; "
        f"largest difference {max(diffs):.1e}"
    )
    print(summary)
    path = record("Surface metrics against medpy", [*lines, "", summary], "python -m benchmarks.bench_surface_metrics")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
