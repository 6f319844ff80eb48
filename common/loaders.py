"""Data-loading pieces every task uses: the cores a run may use, worker counts, the training and evaluation
loaders, and evaluation without repeated samples.

Lightning's distributed sampler pads the validation and test sets so that every process gets the same number
of batches, which counts some samples twice in the metrics. :func:`evaluation_sampler` gives each process a
disjoint share instead (uneven by at most one sample), so metrics synced across processes count every sample
once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from common.errors import MedlitError

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

__all__ = [
    "UnrepeatedDistributedSampler",
    "available_cpus",
    "default_workers",
    "evaluation_loader",
    "evaluation_sampler",
    "loader_workers",
    "training_loader",
]


def available_cpus() -> int:
    """CPU cores this process may use (its affinity mask, e.g. a SLURM or container allocation), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity masks (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def default_workers(processes: int = 1, most: int = 8) -> int:
    """Loader worker processes per training process when none are configured: the cores this process may use,
    shared among the training processes of the machine, at most ``most``.

    ``benchmarks/bench_step.py`` and ``benchmarks/bench_loader.py`` measure the choice on a machine.
    """
    return max(1, min(most, available_cpus() // max(1, processes)))


def loader_workers(configured: int | None, trainer: Trainer | None) -> int:
    """Worker processes of a loader: ``configured`` (a ``data.num_workers`` value) when set, else
    :func:`default_workers` shared among the trainer's processes on this machine."""
    if configured is not None:
        return int(configured)
    return default_workers(trainer.num_devices if trainer is not None else 1)


def training_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    sampler: Sampler | None = None,
    drop_last: bool = False,
    loader_class: type[DataLoader] = DataLoader,
) -> DataLoader:
    """The training loader: shuffled unless a ``sampler`` draws the items, workers kept across epochs.

    ``loader_class``: a :class:`~torch.utils.data.DataLoader` subclass, e.g. MONAI's, which seeds the random
    transforms of every worker from torch's seed (a run is then repeatable with its seed).
    """
    return loader_class(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
    )


def evaluation_loader(
    dataset: Dataset | None, batch_size: int, workers: int, loader_class: type[DataLoader] = DataLoader
) -> DataLoader:
    """A validation/test/predict loader: in order, every item once, also across processes
    (:func:`evaluation_sampler`), so metrics count each item once (``loader_class`` as in :func:`training_loader`).

    Raises:
        MedlitError: ``dataset`` is ``None`` (the datamodule was not set up for this stage).
    """
    if dataset is None:
        raise MedlitError("the datamodule has not been set up for this stage")
    return loader_class(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=evaluation_sampler(dataset),
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


class UnrepeatedDistributedSampler(DistributedSampler):
    """Samples ``rank, rank + world, rank + 2 world, ...`` in order: every sample on exactly one process.

    A :class:`~torch.utils.data.DistributedSampler`, so Lightning keeps it instead of installing its own
    padding one.
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def evaluation_sampler(dataset: Sized) -> Sampler | None:
    """The sampler of a validation/test/predict loader: ``None`` (in order) in one process, else an
    :class:`UnrepeatedDistributedSampler` over the running process group (``None``, i.e. Lightning's padded
    sampler, when there are fewer samples than processes)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    world = torch.distributed.get_world_size()
    if world == 1 or len(dataset) < world:
        # fewer samples than processes: an empty share would stall the others; Lightning's padded sampler
        # gives every process one, and the outputs callbacks drop the repeats
        return None
    return UnrepeatedDistributedSampler(dataset, world, torch.distributed.get_rank())
