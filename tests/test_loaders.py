"""Evaluation loaders: every sample on exactly one process, so metrics synced across processes count it once."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader

from common.loaders import UnrepeatedDistributedSampler, available_cpus, evaluation_sampler


@pytest.mark.parametrize(("size", "world"), [(7, 2), (3, 2), (10, 3), (1, 4), (0, 2)])
def test_unrepeated_shares_are_disjoint_and_complete(size: int, world: int) -> None:
    shares = [list(UnrepeatedDistributedSampler(range(size), world, rank)) for rank in range(world)]
    flat = [i for share in shares for i in share]
    assert sorted(flat) == list(range(size))  # each sample exactly once: no padding repeats
    assert [len(UnrepeatedDistributedSampler(range(size), world, r)) for r in range(world)] == list(map(len, shares))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_lightning_keeps_the_sampler_and_one_process_needs_none() -> None:
    from torch.utils.data import DistributedSampler

    assert isinstance(UnrepeatedDistributedSampler(range(5), 2, 0), DistributedSampler)  # Lightning leaves it
    assert evaluation_sampler(range(5)) is None  # no process group: plain order
    loader = DataLoader(range(5), batch_size=2, sampler=evaluation_sampler(range(5)))
    assert [x.tolist() for x in loader] == [[0, 1], [2, 3], [4]]


def test_available_cpus_follows_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SLURM or container allocation (the affinity mask), not the machine's core count; at least 1."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 7}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert available_cpus() == 3

    def no_masks(pid: int) -> set[int]:
        raise AttributeError("no affinity masks here")

    monkeypatch.setattr(os, "sched_getaffinity", no_masks, raising=False)
    assert available_cpus() == 64
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert available_cpus() == 1


def test_default_workers_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import common.loaders
    from common.loaders import default_workers, loader_workers

    monkeypatch.setattr(common.loaders, "available_cpus", lambda: 12)
    assert default_workers() == 8  # at most 8
    assert default_workers(processes=4) == 3  # 12 cores shared by 4 training processes
    assert default_workers(processes=24) == 1  # never 0: one worker per process at least
    assert default_workers(processes=2, most=4) == 4
    assert loader_workers(None, SimpleNamespace(num_devices=2)) == 6 and loader_workers(None, None) == 8
    assert loader_workers(0, SimpleNamespace(num_devices=2)) == 0  # data.num_workers wins, also 0
