"""Classification data loading: the decoded-pixel cache against decoding JPEGs every epoch, in the same run.

``python -m benchmarks.bench_pixel_cache`` times one pass over the HAM10000 images (real ones from
``../shared/data`` when present, else generated) through :class:`lesion_cls.datasets.LesionImageDataset`, with and
without the cache, and prints images per second and the ratio. The one-off cost of building the cache is
printed too: it is paid once per image size and reused by every later run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results_file import record
from lesion_cls.cache import build_pixel_cache
from lesion_cls.datasets import LesionImageDataset
from lesion_cls.io import read_ham_metadata
from lesion_cls.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms

COMMAND = "python -m benchmarks.bench_pixel_cache"


def _pass(dataset: LesionImageDataset, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        dataset[i]
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("../shared/data/ham10000_200x150"))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if not (root / "HAM10000_metadata.csv").is_file():
            from lesion_cls.synthetic import generate_ham10000

            root = generate_ham10000(Path(tmp) / "ham", n_images=min(args.images, 600))
        table = read_ham_metadata(root / "HAM10000_metadata.csv", root / "images").iloc[: args.images]
        size = (args.size, args.size)
        start = time.perf_counter()
        cache = build_pixel_cache(table["path"].tolist(), size, Path(tmp) / "cache")
        build_s = time.perf_counter() - start
        n = len(table)
        lines = [f"{n} images at {args.size}x{args.size} from {root}, one process; cache built once in {build_s:.2f} s"]
        print(lines[0])
        for name, train in (("evaluation transforms", False), ("training transforms", True)):
            transform = build_transforms(train, size, IMAGENET_MEAN, IMAGENET_STD)
            cached = LesionImageDataset(table, size, transform, cache, np.arange(n))
            decoded = LesionImageDataset(table, size, transform)
            _pass(cached, min(n, 50))  # warm the page cache for both
            _pass(decoded, min(n, 50))
            t_decoded, t_cached = _pass(decoded, n), _pass(cached, n)
            lines.append(
                f"{name}: decode every epoch {n / t_decoded:6.0f} images/s, pixel cache {n / t_cached:6.0f} "
                f"images/s, speed-up {t_decoded / t_cached:5.2f}x"
            )
            print(lines[-1])
    path = record("Decoded-pixel cache against decoding every epoch", [f"- {line}" for line in lines], COMMAND)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
