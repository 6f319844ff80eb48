"""The CPU overlays for your own data (``experiments/cpu``): the README's commands with them resolve, they change
only what a CPU needs (no data path, no pretrained weights, a training cap) and their keys reach the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

CPU = REPO / "experiments" / "cpu"
SEEDS = {"cls.yaml": ("lesion_cls", "cls_ce.yaml"), "seg.yaml": ("volume_seg", "seg_dice.yaml")}


def _resolved(task: str, *args: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    if task == "lesion_cls":
        from lesion_cls.__main__ import main
    else:
        from volume_seg.__main__ import main
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_the_overlay_reaches_the_resolved_config_and_keeps_the_data_yours(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task, seed = SEEDS[name]
    overlay = yaml.safe_load((CPU / name).read_text())
    assert "root" not in overlay.get("data", {}) and "run" not in overlay  # your data, your run dirs
    assert overlay["trainer"]["max_time"] == "00:00:30:00"
    data = str(tmp_path / "my data")
    config = _resolved(
        task, "--config", f"experiments/{seed}", "--config", str(CPU / name), "--data.root", data, capsys=capsys
    )
    assert config["data"]["root"] == data
    for section, values in overlay.items():
        for key, value in values.items():
            assert config[section][key] == value, f"{section}.{key}"
    if task == "lesion_cls":
        assert config["model"]["pretrained"] is False  # nothing is downloaded on a machine without the network
