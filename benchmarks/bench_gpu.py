"""GPU readiness: does the real loader keep an accelerator busy? (the one script to run when a GPU is lent).

``python -m benchmarks.bench_gpu`` measures, on the first CUDA device (bf16 autocast):

- ResNet50 at 224x224 px (channels-last, batch 64): images per second of training steps fed by the project's
  HAM10000 datamodule with its default loader settings, against pure compute (the same batch, already on the
  device, stepped again and again);
- the LA U-Net (MONAI, 16-256 channels, 112x112x80 patches, batch 2, Dice+CE): seconds per training step fed by
  the project's LA datamodule against pure compute.

- with two or more visible devices, a 2-GPU DDP fit against a 1-GPU fit (ResNet50 as above, through the CLI a user
  runs: ``python -m lesion_cls fit --trainer.devices 2 --trainer.strategy ddp``, the same steps per process):
  images per second of each, and the speed-up (2.0 = perfect scaling). Skipped, and said so, with one device.

The ratio loader-fed / pure compute is the share of the accelerator's speed the input pipeline lets through (1.0
= the loader never starves it). About 3 minutes on a recent GPU (5 with the DDP part). ``--device cpu --steps 1
--warmup 1`` runs the same code on a CPU, the DDP part as 2 CPU processes (a check of the script, not a
measurement). Real data from ``../shared/data`` when present.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.datasets import ham_datamodule, la_datamodule
from benchmarks.results_file import record

COMMAND = "python -m benchmarks.bench_gpu"


def _endless(loader: Any) -> Iterator[dict[str, Any]]:
    """Batches of ``loader``, epoch after epoch (a small generated dataset has fewer batches than the steps)."""
    while True:
        yield from loader


def _train_step(net: torch.nn.Module, loss_fn: Callable, device: torch.device) -> Callable[[Any, Any], None]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step(image: torch.Tensor, target: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(net(image), target)
        loss.backward()
        optimizer.step()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _fed_and_pure(
    batches: Iterator[dict[str, Any]], train: Callable, device: torch.device, steps: int, warmup: int
) -> tuple[float, float]:
    """Seconds per step with each batch from the loader (copied to the device), and with one batch reused."""

    def to_device(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        image = batch["image"].to(device, non_blocking=True)
        if device.type == "cuda" and image.ndim == 4:  # 2D images: channels-last, as the network
            image = image.contiguous(memory_format=torch.channels_last)
        return image, batch["label"].to(device, non_blocking=True)

    fed = _timed(lambda: train(*to_device(next(batches))), steps, warmup, device)
    fixed = to_device(next(batches))
    pure = _timed(lambda: train(*fixed), steps, warmup, device)
    return fed, pure


def _resnet50(shared: Path, tmp: Path, device: torch.device, steps: int, warmup: int) -> str:
    import timm

    dm = ham_datamodule(shared, tmp, image_size=[224, 224], batch_size=64)
    dm.prepare_data()
    dm.setup("fit")
    net = timm.create_model("resnet50", num_classes=7).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    train = _train_step(net, torch.nn.functional.cross_entropy, device)
    batches = _endless(dm.train_dataloader())
    fed, pure = _fed_and_pure(batches, train, device, steps, warmup)
    return (
        f"ResNet50 224x224, batch 64, bf16: loader-fed {64 / fed:.0f} images/s, pure compute {64 / pure:.0f} "
        f"images/s, ratio {pure / fed:.2f}"
    )


def _unet(shared: Path, tmp: Path, device: torch.device, steps: int, warmup: int) -> str:
    from monai.networks.nets import UNet

    from volume_seg.losses import build_loss

    dm = la_datamodule(shared, tmp, patch_size=[112, 112, 80])
    dm.setup("fit")
    net = UNet(3, 1, 1, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2).to(device)
    train = _train_step(net, build_loss("dice_ce", 2), device)
    batches = _endless(dm.train_dataloader())
    fed, pure = _fed_and_pure(batches, train, device, steps, warmup)
    return (
        f"LA U-Net 16-256, 112x112x80 patches, batch 2, bf16: loader-fed {fed:.3f} s/step, pure compute "
        f"{pure:.3f} s/step, ratio {pure / fed:.2f}"
    )


def _fit_seconds(root: Path, runs: Path, devices: int, steps: int, accelerator: str, image_size: int) -> float:
    """Seconds of ``fit`` (timing.json) for ``steps`` training batches of 64 per process, on ``devices`` devices."""
    args = ["--config", "experiments/cls_ce.yaml", "--data.root", str(root), "--data.image_size", str(image_size)]
    args += ["--data.batch_size", "64", "--model.backbone", "resnet50", "--model.pretrained", "false"]
    args += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(steps), "--trainer.limit_val_batches"]
    args += ["1", "--trainer.num_sanity_val_steps", "0", "--trainer.accelerator", accelerator, "--trainer.devices"]
    args += [str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto", "--run.test_after_fit", "false"]
    args += ["--run.wandb", "off", "--run.dir", str(runs / f"devices{devices}"), "--trainer.enable_progress_bar"]
    args += ["false"] + (["--trainer.precision", "bf16-mixed"] if accelerator == "gpu" else [])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-m", "lesion_cls", "fit", *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the {devices}-device fit failed:\n{result.stderr[-3000:]}")
    return json.loads((runs / f"devices{devices}" / "timing.json").read_text())["fit_s"]


def _ddp(shared: Path, tmp: Path, device: torch.device, steps: int, warmup: int) -> str:
    """A 2-device DDP fit against a 1-device fit with the same steps per process (each process a batch of 64)."""
    from lesion_cls.synthetic import generate_ham10000

    visible = torch.cuda.device_count() if device.type == "cuda" else 2
    if visible < 2:
        return f"2-GPU DDP: skipped ({visible} device visible)"
    root = shared / "ham10000_200x150"
    if not (root / "HAM10000_metadata.csv").is_file():
        root = generate_ham10000(tmp / "ham_ddp", n_images=800, size_hw=(150, 200))
    accelerator, size = ("gpu", 224) if device.type == "cuda" else ("cpu", 32)
    _fit_seconds(root, tmp / "warmup", 1, warmup, accelerator, size)  # builds the pixel cache both fits then read
    one = _fit_seconds(root, tmp / "ddp", 1, steps, accelerator, size)
    two = _fit_seconds(root, tmp / "ddp", 2, steps, accelerator, size)
    return (
        f"ResNet50 {size}x{size} DDP fit through the CLI, {steps} steps x batch 64 per process: 1 device "
        f"{steps * 64 / one:.0f} images/s, 2 devices {2 * steps * 64 / two:.0f} images/s, speed-up {2 * one / two:.2f} "
        "(2.0 = perfect scaling; fit seconds include start-up)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing measured (run this on a GPU machine)")
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (script check only)"
    lines = [f"- device: {name}"]
    with tempfile.TemporaryDirectory() as tmp:
        for bench in (_resnet50, _unet, _ddp):
            line = bench(args.shared, Path(tmp), device, args.steps, args.warmup)
            print(line, flush=True)
            lines.append(f"- {line}")
    if device.type == "cuda":
        path = record("GPU readiness: loader-fed training against pure compute", lines, COMMAND)
        print(f"results: {path}")


if __name__ == "__main__":
    main()
