"""Surface metrics: ours against medpy on LA-sized volumes, in the same run.

``python -m benchmarks.bench_surface_metrics`` prints, per volume, the seconds medpy needs for dc + jc + hd95 +
asd (four calls, each distance metric running its own distance transforms over the whole volume) and the seconds
:func:`volume_seg.metrics.binary_case_metrics` needs for the same four numbers, the speed-up ratio, and the
largest difference between the two results (which must be 0 up to rounding).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from medpy.metric import binary as medpy
from scipy.ndimage import binary_dilation, gaussian_filter

from volume_seg.metrics import binary_case_metrics


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


def _cases(shared: Path | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Real LA labels when available (prediction = label dilated and shifted), else generated blobs."""
    cases = []
    if shared is not None and shared.is_dir():
        import h5py

        for case in sorted(shared.iterdir())[:3]:
            if (case / "mri_norm2.h5").is_file():
                with h5py.File(case / "mri_norm2.h5") as h5:
                    label = h5["label"][()] > 0
                cases.append((f"LA {case.name[:8]}", np.roll(binary_dilation(label, iterations=2), 3, axis=0), label))
    if not cases:
        rng = np.random.default_rng(0)
        for i in range(3):
            noise = gaussian_filter(rng.normal(size=(200, 150, 88)), 12)
            label = noise > np.quantile(noise, 0.93)
            cases.append((f"blob {i}", np.roll(label, 4, axis=1), label))
    return cases


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data/la_uamt_h5"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"{'volume':<18}{'shape':<16}{'medpy s':>9}{'ours s':>9}{'speed-up':>10}{'max |diff|':>12}")
    ratios = []
    for name, pred, label in _cases(args.shared):
        for spacing in (None, (0.625, 0.625, 0.625)):
            t_ref, ref = _timed(lambda p=pred, la=label, s=spacing: _medpy(p, la, s), args.repeats)
            t_ours, ours = _timed(lambda p=pred, la=label, s=spacing: binary_case_metrics(p, la, s), args.repeats)
            diff = max(abs(ref[k] - ours[k]) for k in ref)
            ratios.append(t_ref / t_ours)
            label_name = name + (" mm" if spacing else " vox")
            print(
                f"{label_name:<18}{'x'.join(map(str, pred.shape)):<16}{t_ref:>9.3f}{t_ours:>9.3f}"
                f"{t_ref / t_ours:>9.1f}x{diff:>12.2e}"
            )
    print(f"geometric-mean speed-up over medpy: {np.exp(np.mean(np.log(ratios))):.1f}x")


if __name__ == "__main__":
    main()
