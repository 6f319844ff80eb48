"""What the processes of a distributed run share: every rank's objects, and the name of an external job."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch

__all__ = ["agreed_by_ranks", "external_job_id", "gather_objects"]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` when not distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def external_job_id() -> str | None:
    """A name shared by all processes of a job started by SLURM or torchrun with more than one process."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        return f"slurm-{os.environ['SLURM_JOB_ID']}-{os.environ.get('SLURM_STEP_ID', '0')}"
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if run_id != "none" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"torchrun-{run_id}"
    return None


def agreed_by_ranks(key: str, make: Callable[[], str]) -> str | None:
    """Rank 0's ``make()``, seen by every rank of a torchrun job, before the process group exists.

    torchrun with a static rendezvous (``--node-rank``, ``--master-addr``) names no run id, and each node would pick
    its own time-stamped run dir; its agent serves a key-value store at ``MASTER_ADDR:MASTER_PORT`` that all ranks
    can read. ``None`` outside torchrun, or with a single process.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    store = torch.distributed.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timedelta(minutes=10)
    )
    key = f"medlit/{key}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if int(os.environ.get("RANK", "0")) == 0:
        store.set(key, make())
    return store.get(key).decode()
