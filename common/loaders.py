"""Data-loading pieces every task uses: the cores a run may use, and evaluation without repeated samples.

Lightning's distributed sampler pads the validation and test sets so that every process gets the same number
of batches, which counts some samples twice in the metrics. :func:`evaluation_sampler` gives each process a
disjoint share instead (uneven by at most one sample), so metrics synced across processes count every sample
once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler, Sampler

__all__ = ["UnrepeatedDistributedSampler", "available_cpus", "default_workers", "evaluation_sampler"]


def available_cpus() -> int:
    """CPU cores this process may use (its affinity mask, e.g. a SLURM or container allocation), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity masks (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def default_workers(processes: int = 1, most: int = 8) -> int:
    """Loader worker processes per training process when none are configured: the cores this process may use,
    shared among the training processes of the machine, at most ``most``.

    On the 2-core reference machine this is 2, which ``benchmarks/bench_step.py`` measured as the fastest
    (HAM10000 150x200 resnet18 fp32: 1.52, 1.48, 1.40 s per step with 0, 1, 2 workers) and
    ``benchmarks/bench_loader.py`` as waiting for data under 1 % of a step.
    """
    return max(1, min(most, available_cpus() // max(1, processes)))


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
