"""Members of an ensemble (``test``/``predict`` with ``--ensemble RUN_OR_CHECKPOINT ...``): found, checked, loaded.

A member is a run dir (its tested checkpoint, as ``run_info.json`` records it, else its best, else
``checkpoints/last.ckpt``) or a checkpoint file. Members must come from the task's model class and agree on the
settings the class names in ``ensemble_keys`` (classes, patch or image size: stored in the checkpoints); any other
mix is refused with one line naming the member. The ensemble itself is the task module built from the first
member's settings (``--model.*`` flags still apply, e.g. the decision rule), holding every member
(:meth:`~common.contracts.EnsembleModule.use_ensemble`), which averages their class probabilities.

These are members in one process. A task's ``<task>.ensemble`` module instead averages the probabilities that
finished test runs saved, and pools cross-validation's out-of-fold predictions (:mod:`common.studies.pooling`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn

from common.errors import MedlitError, first_line
from common.rundir import LAST_CHECKPOINT_STEM, read_run_info

__all__ = [
    "EnsembleMembers",
    "Member",
    "find_members",
    "load_members",
    "member_checkpoint",
    "stored_settings",
    "tested_weights_of",
]


@dataclass(frozen=True)
class Member:
    """One member: what was named on the command line, its checkpoint and the settings stored in it."""

    given: str
    checkpoint: Path
    model: dict[str, Any]
    data: dict[str, Any]

    def record(self) -> dict[str, str]:
        """What ``run_info.json`` lists for the member."""
        return {"given": self.given, "checkpoint": str(self.checkpoint)}


def member_checkpoint(entry: str) -> Path:
    """The checkpoint of a run dir or a checkpoint file; one error line when there is none."""
    path = Path(entry)
    if path.is_file():
        return path
    if not path.is_dir():
        raise MedlitError(f"--ensemble {entry}: no such run dir or checkpoint file")
    info = read_run_info(path)
    for key in ("tested_checkpoint", "best_checkpoint"):
        if info.get(key) and Path(info[key]).is_file():
            return Path(info[key])
    last = path / "checkpoints" / f"{LAST_CHECKPOINT_STEM}.ckpt"
    if last.is_file():
        return last
    raise MedlitError(f"--ensemble {entry}: a run dir without a checkpoint (no tested, best or last checkpoint)")


def stored_settings(label: str, checkpoint: Path, model_class: type[LightningModule]) -> tuple[dict, dict]:
    """The model and data settings a checkpoint stores, checked: a readable Lightning checkpoint saved by
    ``model_class`` (its stored settings are the class's init arguments). Errors start with ``label``."""
    try:
        stored = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        reason = first_line(err)[:160]
        raise MedlitError(
            f"{label}not a readable checkpoint ({reason}); was the file cut short while copying or saving?"
        ) from None
    if not isinstance(stored, dict) or "state_dict" not in stored:
        raise MedlitError(f"{label}not a Lightning checkpoint (no state_dict); give a .ckpt written by fit")
    model = dict(stored.get("hyper_parameters") or {})
    model.pop("_instantiator", None)
    accepted = set(inspect.signature(model_class.__init__).parameters) - {"self"}
    foreign = sorted(set(model) - accepted)
    if foreign:
        raise MedlitError(
            f"{label}trained with another task's model (settings {', '.join(foreign[:3])} are not "
            f"{model_class.__name__}'s)"
        )
    return model, dict(stored.get("datamodule_hyper_parameters") or {})


def _setting(member: Member, key: str) -> Any:
    scope, _, name = key.partition(".")
    return (member.model if scope == "model" else member.data).get(name)


def find_members(entries: Sequence[str], model_class: type[LightningModule]) -> list[Member]:
    """The members, checked: each from ``model_class`` (its stored settings are the class's init arguments) and
    agreeing with the first on every key of ``model_class.ensemble_keys``."""
    if not entries:
        raise MedlitError("--ensemble needs at least one run dir or checkpoint")
    members = []
    for entry in entries:
        checkpoint = member_checkpoint(entry)
        label = f"--ensemble {entry}: " + ("" if str(checkpoint) == entry else f"{checkpoint}: ")
        model, data = stored_settings(label, checkpoint, model_class)
        members.append(Member(entry, checkpoint, model, data))
    first = members[0]
    for member in members[1:]:
        for key in model_class.ensemble_keys:
            if _setting(member, key) != _setting(first, key):
                raise MedlitError(
                    f"--ensemble {member.given}: {key} is {_setting(member, key)}, but {_setting(first, key)} in "
                    f"{first.given}; an ensemble's members must agree on {', '.join(model_class.ensemble_keys)}"
                )
    return members


def load_members(members: Sequence[Member], model_class: type[LightningModule]) -> list[LightningModule]:
    """The members' modules, in evaluation mode, on the CPU (Lightning moves them with the ensemble)."""
    loaded = []
    for member in members:
        module = model_class.load_from_checkpoint(
            member.checkpoint, map_location="cpu", weights_only=True, **model_class.checkpoint_overrides
        )
        loaded.append(module.eval())
    return loaded


class EnsembleMembers(nn.Module):
    """An ensemble's member modules, and the mean of what each predicts.

    Together (the default), the members are submodules: Lightning moves them all to the accelerator with the
    ensemble. ``one_at_a_time`` keeps them in host memory outside the module tree (Lightning leaves them there),
    and :meth:`mean` moves each to the inputs' device for its turn and back after it. An accelerator then holds one
    member's weights at a time (as nnU-Net loads one fold's weights at a time), for members that do not fit
    together, at the price of copying each member to the device and back for every batch.
    """

    def __init__(self, modules: Sequence[nn.Module] = (), one_at_a_time: bool = False) -> None:
        super().__init__()
        self.together = nn.ModuleList([] if one_at_a_time else modules)
        self._on_host = list(modules) if one_at_a_time else []  # a plain list: not submodules, so not moved

    @property
    def one_at_a_time(self) -> bool:
        return bool(self._on_host)

    def __len__(self) -> int:
        return len(self.together) + len(self._on_host)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(list(self.together) + self._on_host)

    def member_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters of every member (in either mode)."""
        for member in self:
            yield from member.parameters()

    def mean(self, predict: Callable[[nn.Module], torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        """The mean of ``predict(member)`` over the members. One at a time, each member is moved to the device of
        ``batch`` and, when it is a floating tensor, to its dtype (Lightning's true-precision settings convert the
        inputs; mixed precision leaves them float32 and autocasts) for its turn, then back where it was."""
        if not len(self):
            raise ValueError("an ensemble without members")
        total: torch.Tensor | None = None
        for member in self:
            home = next(member.parameters()) if self.one_at_a_time else None
            device, dtype = (home.device, home.dtype) if home is not None else (None, None)
            if home is not None:
                member.to(device=batch.device, dtype=batch.dtype if batch.is_floating_point() else None)
            try:
                value = predict(member)
            finally:
                if home is not None:
                    member.to(device=device, dtype=dtype)
            total = value if total is None else total + value
        assert total is not None
        return total / len(self)


def tested_weights_of(module: LightningModule, ckpt_path: str | None) -> str:
    """What ``metrics.json`` says was tested: an ensemble of the module's members, the checkpoint, or the weights in
    memory."""
    members = len(getattr(module, "members", ()))
    return f"ensemble of {members} (run_info.json)" if members else ckpt_path or "current weights"
