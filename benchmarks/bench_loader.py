"""Data loading against training: the share of step time spent waiting for data, and the loader alone.

``python -m benchmarks.bench_loader`` runs, for HAM10000 at 150x200 (batch 32, resnet18 from scratch) and LA
patches (96x96x64, batch 2, a MONAI U-Net 16-128), a plain training loop (forward, backward, Adam) over the
project's own datamodule with its default loader settings, and measures how long each step waits in
``next(loader)`` against the whole step (goal: <= 5 %). It also times the loader alone (images or patches per
second, no model), and the classifier's augmentation per image in the workers against ``data.batch_augment``
(whole uint8 batches in the training process; on a GPU it runs there). Real data from ``../shared/data`` when
present, else generated data.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.datasets import ham_datamodule, la_datamodule
from benchmarks.results_file import record
from common.loaders import available_cpus

COMMAND = "python -m benchmarks.bench_loader"


def _waiting_share(loader: Any, step: Callable[[Any], None], steps: int, warmup: int = 3) -> tuple[float, float]:
    """Seconds per step and the share of it spent waiting for the next batch."""
    iterator: Iterator = iter(loader)
    for _ in range(warmup):
        step(next(iterator))
    waited = total = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(iterator)
        got = time.perf_counter()
        step(batch)
        waited += got - start
        total += time.perf_counter() - start
    return total / steps, waited / total


def _loader_alone(loader: Any, batches: int) -> float:
    """Samples per second of the loader with no model."""
    iterator = iter(loader)
    next(iterator)
    start, samples = time.perf_counter(), 0
    for _ in range(batches):
        batch = next(iterator)
        samples += len(batch["image"])
    return samples / (time.perf_counter() - start)


def _train_step(net: torch.nn.Module, loss_fn: Callable, target_key: str) -> Callable[[Any], None]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(batch: dict[str, Any]) -> None:
        optimizer.zero_grad()
        loss_fn(net(batch["image"]), batch[target_key]).backward()
        optimizer.step()

    return step


def _ham(shared: Path, tmp: Path, steps: int) -> list[str]:
    import timm

    dm = ham_datamodule(shared, tmp)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    alone = _loader_alone(loader, 20)
    net = timm.create_model("resnet18", num_classes=7)
    seconds, share = _waiting_share(loader, _train_step(net, torch.nn.functional.cross_entropy, "label"), steps)
    return [
        f"HAM10000 150x200, batch 32, {loader.num_workers} worker(s): loader alone {alone:.0f} images/s; resnet18 "
        f"step {seconds:.3f} s, waiting for data {100 * share:.1f} % of it"
    ]


def _augmented_alone(loader: Any, augment: Callable[[torch.Tensor], torch.Tensor] | None, batches: int) -> float:
    """Images per second out of the loader and, when given, the batch augmentation in this process."""
    iterator = iter(loader)
    next(iterator)
    start, samples = time.perf_counter(), 0
    for _ in range(batches):
        images = next(iterator)["image"]
        if augment is not None:
            images = augment(images)
        samples += len(images)
    return samples / (time.perf_counter() - start)


def _ham_batch_augment(shared: Path, tmp: Path, steps: int) -> list[str]:
    """The same augmentation per image in the loader workers (torchvision) and on whole uint8 batches in the
    training process (``data.batch_augment``, :class:`~lesion_cls.transforms.BatchAugment`), measured in the same
    run."""
    rates = {}
    for batch_augment in (False, True):
        dm = ham_datamodule(shared, tmp, batch_augment=batch_augment)
        dm.prepare_data()
        dm.setup("fit")
        rates[batch_augment] = _augmented_alone(dm.train_dataloader(), dm.batch_augmenter, 20)
    return [
        f"HAM10000 150x200 augmentation, batch 32: per image in the workers {rates[False]:.0f} images/s, on the "
        f"batch in the training process (CPU) {rates[True]:.0f} images/s, ratio {rates[True] / rates[False]:.2f}"
    ]


def _la(shared: Path, tmp: Path, steps: int) -> list[str]:
    from monai.networks.nets import UNet

    from volume_seg.losses import build_loss

    dm = la_datamodule(shared, tmp)
    dm.setup("fit")
    loader = dm.train_dataloader()
    alone = _loader_alone(loader, 20)
    net = UNet(3, 1, 1, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)
    seconds, share = _waiting_share(loader, _train_step(net, build_loss("dice_ce", 2), "label"), steps)
    return [
        f"LA patches 96x96x64, batch 2, {loader.num_workers} worker(s): loader alone {alone:.1f} patches/s; U-Net "
        f"16-128 step {seconds:.3f} s, waiting for data {100 * share:.1f} % of it"
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    lines = [f"- {available_cpus()} cores; torch threads {torch.get_num_threads()}"]
    with tempfile.TemporaryDirectory() as tmp:
        for bench in (_ham, _ham_batch_augment, _la):
            for line in bench(args.shared, Path(tmp), args.steps):
                print(line, flush=True)
                lines.append(f"- {line}")
    path = record("Data loading against training (default loader settings)", lines, COMMAND)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
