"""Sliding-window inference on LA test volumes: time per case and Dice for each overlap and blending.

``python -m benchmarks.bench_sliding_window [--ckpt PATH] [--cases N]`` evaluates a trained LA segmenter on the
first ``N`` cases of ``test20.list`` (``../shared/data``) with MONAI's sliding-window inferer at overlap
0.25 / 0.5 / 0.75, gaussian and constant blending, and at the dense stride of the UA-MT test code (18, 18, 4
voxels, constant blending): the reference, since it sees every voxel in the most windows. It prints seconds per
case (inference only, the model's precision) and mean Dice, and the Dice difference to the dense setting in
points (1 point = 0.01).

Then the whole test stage (inference, scoring, NIfTI masks, overlays and 3D views) through ``Trainer.test``, with
the outputs scored in the main process and in worker processes (``outputs.eval_workers``).

Without ``--ckpt`` it trains a model once through the CLI (``--train-minutes``, the la16-like settings below)
under ``runs/bench/sliding_window_model`` and reuses it on later runs. Without ``../shared/data`` it uses
generated LA-layout volumes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from benchmarks.results_file import record
from common.loaders import available_cpus

COMMAND = "python -m benchmarks.bench_sliding_window"
MODEL_DIR = Path("runs/bench/sliding_window_model")
DENSE_STRIDE = (18, 18, 4)  # UA-MT's test_all_case stride for 112x112x80 windows


def _overlap_for_stride(roi: Sequence[int], stride: Sequence[int]) -> list[float]:
    # MONAI's scan interval is int(roi * (1 - overlap)); half a voxel of slack keeps float error off the floor
    return [1.0 - (s + 0.5) / r for r, s in zip(roi, stride, strict=True)]


def _data_root(shared: Path, tmp: Path) -> tuple[Path, dict[str, str]]:
    from volume_seg.synthetic import generate_la_h5

    root = shared / "la_uamt_h5"
    if (root / "labeled16.list").is_file():
        return root, {"train_list": "labeled16.list", "test_list": "test20.list"}
    return generate_la_h5(tmp / "la", n_train=8, n_test=4, shape=(160, 160, 96)), {}


def _train(root: Path, lists: dict[str, str], minutes: float) -> Path:
    """A checkpoint of a briefly trained model (reused when a previous run of this benchmark left one)."""
    from volume_seg.__main__ import main as volume_seg_main

    found = sorted(MODEL_DIR.glob(f"{root.name}/*/checkpoints/best*.ckpt"))
    if found:
        return found[-1]
    args = ["fit", "--config", "experiments/seg_dice.yaml", "--data.root", str(root)]
    args += [f"--data.{key}={value}" for key, value in lists.items()]
    args += ["--run.root", str(MODEL_DIR), "--run.experiment", root.name, "--run.test_after_fit", "false"]
    args += ["--model.loss", "dice_ce", "--model.lr", "0.001", "--data.sampling", "foreground"]
    args += ["--data.augment", "rotflip", "--trainer.precision", "bf16-mixed", "--trainer.max_epochs", "1000"]
    args += ["--trainer.max_time", f"00:00:{int(minutes):02d}:{int(60 * (minutes % 1)):02d}", "--run.wandb", "off"]
    run_dir = volume_seg_main(args)
    return sorted((Path(run_dir) / "checkpoints").glob("best*.ckpt"))[-1]


def _test_datamodule(root: Path, lists: dict[str, str], roi: Sequence[int]) -> Any:
    """The LA datamodule whose test split the benchmark evaluates (main-process loading)."""
    from volume_seg.data import VolumeDataModule

    return VolumeDataModule(root=str(root), layout="la_h5", patch_size=list(roi), num_workers=0, **lists)


def _cases(root: Path, lists: dict[str, str], roi: Sequence[int], n: int) -> list[dict[str, Any]]:

    dm = _test_datamodule(root, lists, roi)
    dm.setup("test")
    return [dm.test_dataset[i] for i in range(min(n, len(dm.test_dataset)))]


def _settings(roi: Sequence[int]) -> list[tuple[str, Any, str]]:
    grid = [(f"overlap {o}, {mode}", o, mode) for o in (0.25, 0.5, 0.75) for mode in ("gaussian", "constant")]
    dense = f"UA-MT stride {DENSE_STRIDE}, constant"
    return [*grid, (dense, _overlap_for_stride(roi, DENSE_STRIDE), "constant")]


def _evaluate(model: Any, cases: list[dict[str, Any]], overlap: Any, mode: str, bf16: bool) -> tuple[float, float, int]:
    """Seconds per case, mean Dice, windows per case."""
    from volume_seg.metrics import mean_foreground_dice

    hp = model.hparams
    seconds, dice, windows = [], [], []
    calls = {"n": 0}

    def predictor(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += len(x)
        return model(x)

    for case in cases:
        calls["n"] = 0
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = sliding_window_inference(
                case["image"][None], list(hp.roi_size), hp.sw_batch_size, predictor, overlap=overlap, mode=mode
            )
            mask = model.to_mask(model.probabilities(logits))
        seconds.append(time.perf_counter() - start)
        windows.append(calls["n"])
        dice.append(mean_foreground_dice(mask[0, 0].numpy(), case["label"][0].numpy(), model.num_classes))
    return float(np.mean(seconds)), float(np.mean(dice)), int(np.mean(windows))


def _window_table(model: Any, cases: list[dict[str, Any]], bf16: bool) -> list[str]:
    settings = _settings(model.hparams.roi_size)
    rows = [(name, *_evaluate(model, cases, overlap, mode, bf16)) for name, overlap, mode in settings]
    dense_dice = rows[-1][2]
    lines = ["| setting | windows/case | s/case | Dice | Dice - dense (points) |", "|---|---|---|---|---|"]
    for name, seconds, dice, windows in rows:
        lines.append(f"| {name} | {windows} | {seconds:.2f} | {dice:.4f} | {100 * (dice - dense_dice):+.2f} |")
        print(lines[-1], flush=True)
    return lines


def _test_stage(ckpt: Path, root: Path, lists: dict[str, str], n: int, precision: str, tmp: Path) -> list[str]:
    """Seconds per case of ``Trainer.test`` with the outputs written inline and by 1 and 2 worker processes."""
    from lightning.pytorch import Trainer

    from volume_seg.callbacks import SegmentationOutputs
    from volume_seg.model import VolumeSegmenter

    model = VolumeSegmenter.load_from_checkpoint(ckpt, map_location="cpu")
    test_cases = [line for line in (root / lists["test_list"]).read_text().split() if line][:n] if lists else None
    if test_cases:
        (tmp / "test_subset.list").write_text("\n".join(test_cases) + "\n")
        lists = {**lists, "test_list": str(tmp / "test_subset.list")}
    lines = []
    for workers in (0, 1, 2):
        dm = _test_datamodule(root, lists, model.hparams.roi_size)
        outputs = SegmentationOutputs(eval_workers=workers)
        trainer = Trainer(
            accelerator="cpu", precision=precision, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[outputs],
            default_root_dir=str(tmp / f"test_stage_{workers}"),
        )  # fmt: skip
        start = time.perf_counter()
        trainer.test(model, datamodule=dm, verbose=False)
        per_case = (time.perf_counter() - start) / len(dm.test_dataset)
        lines.append(f"test stage, eval_workers={workers}: {per_case:.2f} s/case over {len(dm.test_dataset)} cases")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--ckpt", type=Path, help="a trained volume_seg checkpoint (default: train one)")
    parser.add_argument("--cases", type=int, default=4, help="test cases to evaluate")
    parser.add_argument("--train-minutes", type=float, default=3.0)
    parser.add_argument("--precision", default="bf16-mixed", choices=["32-true", "bf16-mixed"])
    args = parser.parse_args(argv)
    from volume_seg.model import VolumeSegmenter

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        root, lists = _data_root(args.shared, tmp)
        ckpt = args.ckpt or _train(root, lists, args.train_minutes)
        model = VolumeSegmenter.load_from_checkpoint(ckpt, map_location="cpu").eval()
        cases = _cases(root, lists, model.hparams.roi_size, args.cases)
        bf16 = args.precision == "bf16-mixed"
        head = [
            f"- checkpoint `{ckpt}`; {len(cases)} test case(s) of {root}; {args.precision}; window "
            f"{list(model.hparams.roi_size)}, sw_batch_size {model.hparams.sw_batch_size}; {available_cpus()} cores, "
            f"torch threads {torch.get_num_threads()}",
            "",
        ]
        print(head[0], flush=True)
        lines = [*head, *_window_table(model, cases, bf16), ""]
        lines += [f"- {line}" for line in _test_stage(ckpt, root, lists, args.cases, args.precision, tmp)]
    path = record("Sliding-window inference: overlap and blending (LA test cases)", lines, COMMAND)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
