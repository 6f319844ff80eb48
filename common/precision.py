"""bf16 where the CPU has no bf16 instructions.

The real-data recipes ask for ``bf16-mixed``: on GPUs and on CPUs with AVX-512 BF16 or AMX it makes convolutions
faster. A CPU without them (AVX2 only, e.g. AMD Zen 1-3, older Intel) emulates bf16: one training step of the
hippocampus U-Net took 8.2 s in bf16 autocast against 0.72 s in float32 on an AVX2 EPYC, so a time-budgeted recipe
would train a tenth of its steps. There the CLI runs the recipe in ``32-true`` and says so in one warning line; the
run's ``config.yaml`` and the W&B config record the precision it ran with.
"""

from __future__ import annotations

import torch

__all__ = ["cpu_has_bf16", "precision_for_this_machine"]


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def _runs_on_cpu(accelerator: object) -> bool:
    if accelerator == "cpu":
        return True
    if accelerator not in (None, "auto"):
        return False  # a GPU (or another device) was asked for
    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def precision_for_this_machine(precision: object, accelerator: object) -> tuple[object, str | None]:
    """``(precision to run with, warning line or None)``: a bf16 precision on a CPU without bf16 instructions
    becomes ``32-true``; anything else is kept."""
    if not str(precision).startswith("bf16") or not _runs_on_cpu(accelerator) or cpu_has_bf16():
        return precision, None
    return "32-true", (
        f"warning: trainer.precision {precision}: this CPU has no bf16 instructions (AVX-512 BF16 or AMX) and "
        "emulates bf16 about 10x slower than float32; this run uses 32-true"
    )
