"""The plain PyTorch + timm loop on HAM10000, the reference a recipe is paired with on the same test lesions.

``python -m benchmarks.ham_plain_loop --data-root DIR --minutes M --seed S --split-seed 42 --out RUN_DIR`` trains a
timm ResNet-18 from scratch at the stored 150x200 size on every non-test image of the recipe's split (the recipe's
train and validation lesions: no hold-out, the last weights are tested) for ``M`` minutes of wall clock: batches of
32 drawn with probability proportional to 1/sqrt(class count), horizontal and vertical flips, a 180-degree rotation
(each with probability 0.5), brightness x U(0.9, 1.1) per channel, cross-entropy with label smoothing 0.1, AdamW
(lr 2e-3, weight decay 1e-4) with the lr on a cosine of elapsed/budget, bf16 autocast (float32 on a CPU without
bf16 instructions: :mod:`common.precision`). Test: the mean of the softmax of each image and its horizontal flip,
decided by argmax. The split is medlit's (:func:`lesion_cls.splits.read_labelled_table` with the recipe's fractions),
so the test images are the recipe's (``--hold-out`` leaves its validation lesions out of training, as the recipe does;
``--inner-split S`` tests on a development split of the non-test lesions instead: what an ablation may look at);
``RUN_DIR`` reads as a classifier test run (``predictions.csv``,
``metrics.json``, ``split.csv``, ``config.yaml``, ``run_info.json``, ``timing.json``, ``history.csv``) for
``python -m common.studies.results pair`` and ``record``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import timm
import torch
import yaml

from common.errors import MedlitError, exit_on_error
from common.files import unwritable_reason, write_json
from common.precision import precision_for_this_machine
from common.provenance import code_version, cpu_description, package_versions
from common.rundir import update_run_info
from lesion_cls import TASK
from lesion_cls.cache import build_pixel_cache
from lesion_cls.callbacks import summarize_predictions, write_test_files
from lesion_cls.labels import LabelledImages
from lesion_cls.splits import read_labelled_table, split_by_lesion
from lesion_cls.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["COMMAND", "EXPERIMENT", "class_draw_weights", "cosine_lr", "main"]

COMMAND = "python -m benchmarks.ham_plain_loop"
EXPERIMENT = "ham10000_plain_loop"
RECIPE = Path(__file__).resolve().parents[1] / "experiments" / "recipes" / "ham10000.yaml"
STORED_SIZE = (150, 200)
BATCH, LR, WEIGHT_DECAY, LABEL_SMOOTHING, LOG_EVERY = 32, 2e-3, 1e-4, 0.1, 50


def cosine_lr(elapsed_s: float, budget_s: float, peak: float = LR) -> float:
    """The learning rate after ``elapsed_s`` of a ``budget_s`` budget: ``peak`` down to 0 on a half cosine."""
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(elapsed_s / budget_s, 1.0)))


def class_draw_weights(labels: np.ndarray) -> np.ndarray:
    """Per-image draw weights ``1 / sqrt(n_c)``: class ``c`` is drawn in proportion to ``sqrt(n_c)``."""
    return 1.0 / np.sqrt(np.bincount(labels)[labels].astype(np.float64))


def _split(args: argparse.Namespace) -> LabelledImages:
    """The recipe's labelled images and split (its val and test fractions, ``--split-seed``), ``split`` ``train`` for
    every image trained on (the validation lesions too, unless ``--hold-out``). With ``--inner-split S`` the test
    images are dropped (never read) and the other lesions are split again with the same fractions and seed ``S``: a
    development split whose test images are training lesions of the outer split."""
    data = (yaml.safe_load(args.recipe.read_text()) or {}).get("data", {})
    fractions = (float(data.get("val_fraction", 0.15)), float(data.get("test_fraction", 0.15)))
    files = (args.data_root, "HAM10000_metadata.csv", "images", None, None)
    labelled = read_labelled_table(*files, *fractions, args.split_seed)
    table = labelled.table
    if args.inner_split is not None:
        table = table[table["split"] != "test"].reset_index(drop=True)
        table = table.assign(split=split_by_lesion(table, *fractions, args.inner_split))
    if not args.hold_out:  # the validation lesions are trained on: they are training images like the others
        table = table.assign(split=table["split"].replace("val", "train"))
    return replace(labelled, table=table)


def _as_input(pixels: np.ndarray, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """``uint8 [B, H, W, 3]`` cache rows as float ``[B, 3, H, W]`` in [0, 1] on ``device``."""
    return torch.from_numpy(np.asarray(pixels[rows])).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def _normalized(x: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(v, device=x.device).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return (x - mean) / std


def _augmented(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image: h-flip, v-flip, 180-degree rotation (each p = 0.5), brightness x U(0.9, 1.1) per channel."""
    n = x.shape[0]
    draws = torch.rand(n, 3, generator=generator).to(x.device) < 0.5
    changes = (lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.rot90(2, dims=(-2, -1)))
    for k, change in enumerate(changes):
        x = torch.where(draws[:, k].view(n, 1, 1, 1), change(x), x)
    brightness = torch.empty(n, 3, 1, 1).uniform_(0.9, 1.1, generator=generator).to(x.device)
    return (x * brightness).clamp_(0.0, 1.0)


def _train(net: torch.nn.Module, pixels: np.ndarray, rows: np.ndarray, labels: np.ndarray, **run: Any) -> dict:
    """Train until ``run["budget_s"]`` of wall clock is spent; the log rows, steps and seconds."""
    device, budget_s, bf16 = run["device"], run["budget_s"], run["bf16"]
    generator = torch.Generator().manual_seed(run["seed"])
    weights = torch.as_tensor(class_draw_weights(labels))
    targets = torch.as_tensor(labels, dtype=torch.long)
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    net.train()
    history, steps, window, loss_sum = [], 0, 0, torch.zeros((), device=device)
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget_s:
        lr = cosine_lr(elapsed, budget_s)
        for group in optimizer.param_groups:
            group["lr"] = lr
        drawn = torch.multinomial(weights, BATCH, replacement=True, generator=generator)
        x = _normalized(_augmented(_as_input(pixels, rows[drawn.numpy()], device), generator))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(net(x), targets[drawn].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps, window, loss_sum = steps + 1, window + 1, loss_sum + loss.detach().float()
        if steps % LOG_EVERY == 0 or time.perf_counter() - start >= budget_s:  # the mean loss since the last row
            row = {"epoch": steps * BATCH // len(rows), "step": steps, "train/loss": float(loss_sum) / window}
            row |= {"lr": lr, "elapsed_s": round(time.perf_counter() - start, 2)}
            history.append(row)
            print(f"step {steps}: {row['elapsed_s']:.0f} s, loss {row['train/loss']:.4f}, lr {lr:.2e}", flush=True)
            window, loss_sum = 0, torch.zeros((), device=device)
    return {"history": history, "steps": steps, "fit_s": time.perf_counter() - start}


@torch.inference_mode()
def _predict(net: torch.nn.Module, pixels: np.ndarray, rows: np.ndarray, device: torch.device, bf16: bool) -> Any:
    """Softmax probabilities, the mean over each image and its horizontal flip."""
    net.eval()
    probs = []
    for chunk in np.array_split(rows, max(1, math.ceil(len(rows) / 64))):
        x = _normalized(_as_input(pixels, chunk, device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = torch.stack([net(x), net(x.flip(-1))]).float()
        probs.append(logits.softmax(-1).mean(0).cpu())
    return torch.cat(probs).double().numpy()


def _max_time(seconds: float) -> str:
    """``DD:HH:MM:SS`` as Lightning's ``trainer.max_time`` (what the report reads as the budget)."""
    s = round(seconds)
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _config(args: argparse.Namespace, precision: str, loop: dict) -> dict:
    """``config.yaml`` in the keys of a medlit classifier run (for the report's parameter table) and ``loop``."""
    return {
        "seed_everything": args.seed,
        "trainer": {"precision": precision, "max_time": _max_time(args.minutes * 60)},
        "model": {
            "backbone": "resnet18",
            "pretrained": False,
            "loss": "ce",
            "label_smoothing": LABEL_SMOOTHING,
            "optimizer": "adamw",
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "scheduler": "cosine over the time budget, no warm-up",
            "tta_flips": "horizontal (mean of 2 softmaxes)",
        },
        "data": {
            "root": str(args.data_root),
            "split_seed": args.split_seed,
            "inner_split_seed": args.inner_split,
            "recipe": str(args.recipe),
            "validation": (
                "held out and not used: the recipe's train lesions alone are trained on"
                if args.hold_out
                else "none: the recipe's train and validation lesions are both trained on"
            ),
            "image_size": list(args.image_size),
            "batch_size": BATCH,
            "class_balance": 0.5,
            "augment": "h-flip, v-flip, 180-degree rotation (p 0.5 each), brightness x U(0.9, 1.1) per channel",
            "normalize": "imagenet",
        },
        "loop": loop,
    }


def _write_run_dir(args: argparse.Namespace, data: LabelledImages, probs: np.ndarray, run: dict) -> dict:
    """The test files (medlit's writers), ``split.csv``, ``config.yaml``, ``history.csv``, ``timing.json`` and
    ``run_info.json``; returns the metrics."""
    out, table = args.out, data.table
    test = table[table["split"] == "test"]
    target = np.array(test["label"], dtype=np.int64)
    losses = -np.log(np.clip(probs[np.arange(len(target)), target], 1e-12, None))
    summary = summarize_predictions(probs, target, losses, "last weights (in memory, not saved)", data.class_names)
    files = (test["image_id"].tolist(), test["lesion_id"].tolist(), probs, target, summary, not args.no_figures)
    metrics = write_test_files(out, *files, class_names=data.class_names, unit=data.unit_of_test)
    split = table[["image_id", "lesion_id", "label", "split"]].copy()
    split.insert(3, "class", [data.class_names[i] for i in split["label"]])
    split.to_csv(out / "split.csv", index=False)
    history = pd.DataFrame(run["history"])
    history.to_csv(out / "history.csv", index=False)
    (out / "logs").mkdir(exist_ok=True)  # Lightning's CSV log: steps from 0 (what a record counts its steps from)
    history.assign(step=history["step"] - 1).to_csv(out / "logs" / "metrics.csv", index=False)
    timing = {k: round(run[k], 3) for k in ("fit_s", "test_s")} | {"epochs": run["loop"]["epochs"]}
    write_json(out / "timing.json", timing | {"steps": run["steps"], "devices": 1, "accelerator": run["accelerator"]})
    (out / "config.yaml").write_text(yaml.safe_dump(_config(args, run["precision"], run["loop"]), sort_keys=False))
    return metrics


def _run_info(args: argparse.Namespace, argv: list[str], net: torch.nn.Module, run: dict) -> dict:
    """``run_info.json``: what a record and the report read (task, monitor, parameters, command, provenance)."""
    device = run["device"]
    device_keys = {
        "device.accelerator": run["accelerator"],
        "device.name": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "device.cpu": cpu_description(),
        "device.count": 1,
        "device.nodes": 1,
        "device.precision": run["precision"],
    }
    return {
        "experiment": EXPERIMENT,
        "task": TASK,
        "report_module": "lesion_cls.report",
        "subcommand": "fit",
        "model_class": "timm resnet18 (benchmarks.ham_plain_loop)",
        "monitor": "none",  # nothing is selected on validation: the last weights are tested
        "monitor_mode": "max",
        "parameters": sum(p.numel() for p in net.parameters()),
        "trainable_parameters": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "started": run["started"],
        "argv": [COMMAND, *argv],
        "provenance": {**code_version(), **package_versions(), **device_keys},
        "fit_finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "test_checkpoint": "last",
        "tested_checkpoint": "",
        "loop": run["loop"],
    }


def _precision(asked: str, device: torch.device) -> str:
    """The precision to run with: bf16 autocast falls back to float32 on a CPU that emulates bf16 (one warning)."""
    precision, warning = precision_for_this_machine(asked, "cpu" if device.type == "cpu" else "gpu")
    if warning:
        print(warning.replace("trainer.precision", "--precision"), file=sys.stderr)
    return str(precision)


def _check(args: argparse.Namespace) -> None:
    if not args.minutes > 0:
        raise MedlitError(f"--minutes {args.minutes}: the training budget must be longer than zero")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise MedlitError(f"{args.out}: exists and is not empty; choose a new --out folder (nothing is overwritten)")
    reason = unwritable_reason(args.out)
    if reason:
        raise MedlitError(f"{args.out}: {reason}; choose another --out folder")
    if not args.recipe.is_file():
        raise MedlitError(f"--recipe {args.recipe}: no such file (the recipe whose split is used)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, required=True, help="a HAM10000 folder (metadata CSV, images/)")
    parser.add_argument("--minutes", type=float, required=True, help="the training budget in wall-clock minutes")
    parser.add_argument("--seed", type=int, default=42, help="the training seed (initialisation, draws)")
    parser.add_argument("--split-seed", type=int, default=42, help="the lesion split's seed (data.split_seed)")
    parser.add_argument("--out", type=Path, required=True, help="the run dir to write (new or empty)")
    parser.add_argument("--hold-out", action="store_true", help="leave the validation lesions out, as the recipe")
    parser.add_argument(
        "--inner-split",
        type=int,
        metavar="SEED",
        help="a development split: drop the test lesions, split the rest again with this seed, test on its test part",
    )
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="the recipe whose val/test fractions split")
    parser.add_argument("--precision", choices=("bf16-mixed", "32-true"), default="bf16-mixed")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    parser.add_argument("--image-size", type=int, nargs=2, default=STORED_SIZE, metavar=("H", "W"), help="for tests")
    parser.add_argument("--no-figures", action="store_true", help="skip the ROC, confusion and calibration PNGs")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    with exit_on_error():
        _check(args)
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(auto if args.device == "auto" else args.device)
        precision = _precision(args.precision, device)
        data = _split(args)
        cache = Path(os.environ.get("MEDLIT_CACHE", Path.home() / ".cache" / "medlit"))
        size = (int(args.image_size[0]), int(args.image_size[1]))
        pixels = np.load(build_pixel_cache(data.table["path"].tolist(), size, cache), mmap_mode="r")
        split = data.table["split"].to_numpy()
        train_rows, test_rows = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
        torch.manual_seed(args.seed)
        net = timm.create_model("resnet18", pretrained=False, num_classes=len(data.class_names)).to(device)
        args.out.mkdir(parents=True, exist_ok=True)
        started, bf16 = time.strftime("%Y-%m-%d %H:%M:%S"), precision.startswith("bf16")
        labels = data.table["label"].to_numpy()[train_rows]
        settings = {"device": device, "budget_s": args.minutes * 60, "bf16": bf16, "seed": args.seed}
        run = _train(net, pixels, train_rows, labels, **settings)
        test_start = time.perf_counter()
        probs = _predict(net, pixels, test_rows, device, bf16)
        accelerator = "CUDAAccelerator" if device.type == "cuda" else "CPUAccelerator"
        run |= {"test_s": time.perf_counter() - test_start, "device": device, "accelerator": accelerator}
        epochs = round(run["steps"] * BATCH / len(train_rows), 2)
        loop = {"command": " ".join([COMMAND, *argv]), "minutes": args.minutes, "seed": args.seed}
        loop |= {"train_images": len(train_rows), "test_images": len(test_rows)}
        loop |= {"steps": run["steps"], "epochs": epochs, "device": str(device), "precision_asked": args.precision}
        loop |= {"precision": precision, "fit_s": round(run["fit_s"], 1), "test_s": round(run["test_s"], 1)}
        loop |= {"steps_per_minute": round(run["steps"] / (run["fit_s"] / 60), 1)}
        run |= {"loop": loop, "precision": precision, "started": started}
        metrics = _write_run_dir(args, data, probs, run)
        update_run_info(args.out, **_run_info(args, argv, net, run))
    print(
        f"{run['steps']} steps in {run['fit_s'] / 60:.1f} min ({loop['steps_per_minute']} per minute, {precision} on "
        f"{device}); test on {len(test_rows)} images: accuracy {metrics['accuracy']:.4f}, balanced accuracy "
        f"{metrics['balanced_accuracy']:.4f}; run dir {args.out}"
    )


if __name__ == "__main__":
    main()
