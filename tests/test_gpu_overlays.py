"""The GPU overlays in ``experiments/gpu``: the command each one's header gives parses, the overlay's keys reach the
resolved configuration, the several-GPU files differ from the one-GPU files only where DDP needs it, the expected
memory agrees with docs/gpu.md, and each trains one CPU step (the classifier from a local weights file)."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from tests.helpers import REPO

GPU = REPO / "experiments" / "gpu"
OVERLAYS = {
    "ham10000_resnet50_1gpu.yaml": "lesion_cls",
    "ham10000_resnet50_ddp.yaml": "lesion_cls",
    "la_fullres_1gpu.yaml": "volume_seg",
    "la_fullres_ddp.yaml": "volume_seg",
}
DDP_PAIRS = {"ham10000_resnet50_ddp.yaml": "ham10000_resnet50_1gpu.yaml", "la_fullres_ddp.yaml": "la_fullres_1gpu.yaml"}
DDP_KEYS = {
    ("run", "experiment"),
    ("model", "lr"),
    ("model", "warmup_steps"),
    ("trainer", "devices"),
    ("trainer", "strategy"),
    ("trainer", "sync_batchnorm"),
    ("trainer", "max_steps"),
}
"""What a several-GPU overlay may change from its one-GPU twin: the devices, the strategy, the lr scaled for the
larger batch, and the step counts that follow from it."""
CPU_SIZED = [
    *("--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto"),
    *("--trainer.precision", "32-true", "--trainer.max_steps", "1", "--trainer.max_epochs", "1"),
    *("--trainer.limit_val_batches", "0", "--run.test_after_fit", "false", "--data.num_workers", "0"),
    *("--run.wandb", "off", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"),
]
"""One training step on the CPU in this process, no validation, no test: what the overlays train, not how long."""


def _header_command(name: str) -> list[str]:
    """The command in the overlay's first comment lines (``python -m TASK fit --config ... \\`` continued)."""
    lines = (GPU / name).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip("# ").startswith("python -m "))
    command = ""
    for line in lines[start:]:
        command += " " + line.lstrip("#").strip()
        if not command.endswith("\\"):
            break
        command = command.removesuffix("\\")
    return shlex.split(command)


def _configs(command: list[str]) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == "--config"]


def _main(task: str) -> Any:
    if task == "lesion_cls":
        from lesion_cls.__main__ import main
    else:
        from volume_seg.__main__ import main
    return main


def _leaves(tree: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {(section, key): value for section, values in tree.items() for key, value in values.items()}


def _expected_memory_gib(text: str) -> float:
    match = re.search(r"EXPECTED GPU MEMORY: about ([\d.]+) GiB", text)
    assert match, "no 'EXPECTED GPU MEMORY: about N GiB' line"
    return float(match.group(1))


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_header_command_composes_the_overlay_after_its_recipe(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The documented command names the task, a recipe and then this overlay; resolved with --print_config, every
    key of the overlay has the overlay's value (none renamed, dropped or overridden by the recipe)."""
    command = _header_command(name)
    task = OVERLAYS[name]
    assert command[:4] == ["python", "-m", task, "fit"], command
    configs = _configs(command)
    assert configs[-1] == f"experiments/gpu/{name}" and configs[0].startswith("experiments/recipes/"), configs
    args = [word for config in configs for word in ("--config", str(REPO / config))]
    with pytest.raises(SystemExit) as exit_info:
        _main(task)(["fit", *args, "--data.root", "unused", "--print_config"])
    assert exit_info.value.code == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    for (section, key), value in _leaves(yaml.safe_load((GPU / name).read_text())).items():
        assert resolved[section][key] == value, f"{section}.{key}"


@pytest.mark.parametrize("ddp", sorted(DDP_PAIRS))
def test_ddp_overlay_is_its_one_gpu_twin_with_scaled_lr(ddp: str) -> None:
    """Several GPUs change only the DDP keys; the lr grows with the square root of the devices (the scaling the
    header states), the budget keeps the images or patches seen, and the experiment gets its own name."""
    several = _leaves(yaml.safe_load((GPU / ddp).read_text()))
    one = _leaves(yaml.safe_load((GPU / DDP_PAIRS[ddp]).read_text()))
    recipe = yaml.safe_load((REPO / _configs(_header_command(ddp))[0]).read_text())
    changed = {key for key in one.keys() | several.keys() if one.get(key) != several.get(key)}
    assert changed <= DDP_KEYS, changed - DDP_KEYS
    devices = several[("trainer", "devices")]
    assert devices > 1 and several[("trainer", "strategy")] == "ddp" and one[("trainer", "devices")] == 1
    one_lr = one.get(("model", "lr"), recipe["model"]["lr"])
    assert several[("model", "lr")] == pytest.approx(one_lr * math.sqrt(devices))
    if ("trainer", "max_steps") in one:
        assert several[("trainer", "max_steps")] * devices == one[("trainer", "max_steps")]
    else:
        assert several[("trainer", "max_epochs")] == one[("trainer", "max_epochs")]
    assert several[("run", "experiment")] != one[("run", "experiment")]


def test_expected_memory_agrees_with_docs_page() -> None:
    """Each overlay's EXPECTED GPU MEMORY line gives the number in its row of docs/gpu.md's overlay table, and
    every overlay has a row."""
    rows = {}
    for line in (REPO / "docs" / "gpu.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        found = re.fullmatch(r"`experiments/gpu/(\w+\.yaml)`", cells[0]) if line.startswith("|") else None
        if found:
            rows[found.group(1)] = next(float(m.group(1)) for c in cells if (m := re.search(r"([\d.]+) GiB", c)))
    assert set(rows) == set(OVERLAYS)
    for name in OVERLAYS:
        assert _expected_memory_gib((GPU / name).read_text()) == rows[name], name


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A timm ResNet50 state dict with ImageNet's 1000-class head and random weights, saved with ``torch.save``:
    a stand-in for downloaded weights."""
    import timm

    torch.manual_seed(1234)
    state = {
        key: value.contiguous() for key, value in timm.create_model("resnet50", num_classes=1000).state_dict().items()
    }
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["ham10000_resnet50_1gpu.yaml", "ham10000_resnet50_ddp.yaml"])
def test_classifier_overlay_trains_one_cpu_step_from_local_weights(
    name: str, tiny_ham: Path, resnet50_file: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    """One step at 32 px from a local ResNet50 file: the trained backbone is the file's weights moved by at most one
    Adam step (lr), far less than two random initialisations differ; the 1000-class head is replaced by one output
    per class of the data."""
    weights, state = resnet50_file
    configs = [word for config in _configs(_header_command(name)) for word in ("--config", str(REPO / config))]
    extra = ["--data.root", str(tiny_ham), "--run.root", str(tmp_path / "runs"), "--data.image_size", "32"]
    extra += ["--data.batch_size", "4", "--model.pretrained_file", str(weights), *CPU_SIZED]
    run_dir = _main("lesion_cls")(["fit", *configs, *extra])
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 1 and checkpoint["hyper_parameters"]["backbone"] == "resnet50"
    lr = yaml.safe_load((GPU / name).read_text())["model"]["lr"]
    trained = checkpoint["state_dict"]
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer4.2.conv3.weight"):
        moved = (trained[f"net.{key}"].float() - state[key]).abs().max().item()
        assert moved <= lr * 1.01 and state[key].std().item() > 10 * lr, (key, moved)
    classes = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")["dx"].nunique()
    assert trained["net.fc.weight"].shape == (classes, 2048)


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["la_fullres_1gpu.yaml", "la_fullres_ddp.yaml"])
def test_segmenter_overlay_trains_one_cpu_step(name: str, tiny_la: Path, tmp_path: Path) -> None:
    """One step of the overlay's network (the recipe's 16-256-channel U-Net) on 32^3 patches of tiny volumes; the
    run records the overlay's sliding-window settings and the CPU overrides."""
    configs = [word for config in _configs(_header_command(name)) for word in ("--config", str(REPO / config))]
    extra = ["--data.root", str(tiny_la), "--run.root", str(tmp_path / "runs"), "--data.train_list", "train.list"]
    extra += ["--data.test_list", "test.list", "--data.patch_size", "[32, 32, 32]", "--data.batch_size", "2"]
    extra += ["--trainer.check_val_every_n_epoch", "1"]  # the last checkpoint is written after the first epoch
    run_dir = _main("volume_seg")(["fit", *configs, *extra, *CPU_SIZED])
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 1
    overlay = yaml.safe_load((GPU / name).read_text())
    hparams = checkpoint["hyper_parameters"]
    assert list(hparams["channels"]) == [16, 32, 64, 128, 256] and list(hparams["roi_size"]) == [32, 32, 32]
    assert hparams["sw_batch_size"] == overlay["model"]["sw_batch_size"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["trainer"]["precision"] == "32-true" and config["trainer"]["max_steps"] == 1
