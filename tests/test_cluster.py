"""The SLURM templates in examples/slurm: valid bash with sbatch headers, and the multi-node DDP template's command
one Lightning accepts (the sweep and cross-validation templates are tested with their runners in tests/studies)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TEMPLATES, print_config, recorded_srun


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.sbatch")))
def test_templates_are_valid_bash_with_sbatch_headers(template: str) -> None:
    text = (TEMPLATES / template).read_text()
    assert subprocess.run(["bash", "-n", str(TEMPLATES / template)]).returncode == 0
    assert text.startswith("#!/bin/bash\n") and "#SBATCH --job-name=" in text and "set -euo pipefail" in text


def test_the_ddp_template_starts_a_multi_node_fit_lightning_accepts(tmp_path: Path) -> None:
    args = recorded_srun("ddp_multinode.sbatch", tmp_path, SLURM_NNODES="2", SLURM_NTASKS_PER_NODE="4")
    assert args[:3] == [sys.executable, "-m", "volume_seg"] and args[3] == "fit"
    config = print_config("volume_seg", args[4:])
    trainer = config["trainer"]
    assert (trainer["num_nodes"], str(trainer["devices"]), trainer["strategy"]) == (2, "4", "ddp")
    assert config["data"]["root"] == "data/LA" and config["run"]["experiment"] == "la16"  # the recipe was read
