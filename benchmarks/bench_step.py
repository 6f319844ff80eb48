"""Training-step throughput: the project's module through Lightning's Trainer against a plain PyTorch loop.

``python -m benchmarks.bench_step`` trains, for each task and precision (fp32, bf16-mixed), the same network on
the same loader (the project's datamodule with its default settings) for ``--steps`` timed steps after a
warm-up: once with ``Trainer.fit`` on the project's LightningModule (its ``training_step``: loss, logging,
metrics), once with a plain loop (forward, loss, backward, Adam; ``torch.autocast`` for bf16). It prints seconds
per step and the ratio plain/Lightning (1.0 = as fast as the plain loop; goal >= 0.95). HAM10000 at 150x200,
batch 32, resnet18 from scratch; LA patches 96x96x64, batch 2, MONAI U-Net 16-128 with Dice+CE.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer

from benchmarks.datasets import ham_datamodule, la_datamodule
from benchmarks.results_file import record

COMMAND = "python -m benchmarks.bench_step"


class _StepClock(Callback):
    """Time from the end of the warm-up steps to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_end(self, trainer: Trainer, *_: Any) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def _lightning(module: LightningModule, dm: LightningDataModule, steps: int, warmup: int, precision: str) -> float:
    clock = _StepClock(warmup)
    trainer = Trainer(
        max_steps=warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision=precision,
        callbacks=[clock],
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, datamodule=dm)
    return (clock.end - clock.start) / steps


def _plain(
    net: torch.nn.Module, loss_fn: Callable, loader: Any, target: str, steps: int, warmup: int, bf16: bool
) -> float:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    iterator = iter(loader)
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        batch = next(iterator)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(net(batch["image"]), batch[target])
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def _ham(shared: Path, tmp: Path, **loader: Any) -> tuple[Callable[[], LightningModule], LightningDataModule, str]:
    from lesion_cls.model import LesionClassifier

    return (lambda: LesionClassifier(backbone="resnet18")), ham_datamodule(shared, tmp, **loader), "label"


def _la(shared: Path, tmp: Path, **loader: Any) -> tuple[Callable[[], LightningModule], LightningDataModule, str]:
    from volume_seg.model import VolumeSegmenter

    def module() -> LightningModule:
        return VolumeSegmenter(channels=[16, 32, 64, 128], strides=[2, 2, 2], loss="dice_ce", roi_size=[96, 96, 64])

    return module, la_datamodule(shared, tmp, **loader), "label"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=["ham", "la"], choices=["ham", "la"])
    parser.add_argument("--workers", type=int, default=None, help="data.num_workers (default: the datamodule's)")
    args = parser.parse_args(argv)
    lines = [
        "| task | precision | Lightning s/step | plain loop s/step | plain/Lightning |",
        "|---|---|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        benches = {"ham": ("HAM10000 150x200 resnet18", _ham), "la": ("LA 96x96x64 U-Net", _la)}
        for name, build in (benches[task] for task in args.tasks):
            loader = {} if args.workers is None else {"num_workers": args.workers}
            make_module, dm, target = build(args.shared, Path(tmp), **loader)
            dm.prepare_data()
            dm.setup("fit")
            for precision in ("32-true", "bf16-mixed"):
                torch.manual_seed(0)
                module = make_module()
                net, loss_fn = copy.deepcopy(module.net), copy.deepcopy(module.criterion)
                lightning_s = _lightning(module, dm, args.steps, args.warmup, precision)
                plain_s = _plain(
                    net, loss_fn, dm.train_dataloader(), target, args.steps, args.warmup, precision != "32-true"
                )
                lines.append(
                    f"| {name} | {precision} | {lightning_s:.3f} | {plain_s:.3f} | {plain_s / lightning_s:.2f} |"
                )
                print(lines[-1], flush=True)
    path = record("Training step: Lightning module against a plain loop", lines, COMMAND)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
