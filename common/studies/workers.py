"""Local worker processes: N copies of a sweep or cross-validation command started at once on this machine (one GPU
each with ``--devices``), and children that die with their worker.

The workers share their dir through claims (:mod:`common.studies.claims`); workers on other machines join by
running the same command on the same dir.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["die_with_parent", "start_local_workers", "start_workers", "without_options"]


def start_local_workers(module: str, argv: Sequence[str], args: argparse.Namespace) -> int:
    """Start ``args.workers`` copies of ``python -m <module> <argv>`` on this machine (``--devices``: one GPU
    each); returns the worst exit status."""
    devices = [d for d in (args.devices or "").split(",") if d]
    workers = args.workers if args.workers > 1 else max(len(devices), 1)
    command = [sys.executable, "-m", module, *without_options(argv, ("--workers", "--devices", "--worker-label"))]
    return start_workers(command, workers, devices)


def die_with_parent() -> None:
    """``preexec_fn`` for a child that must not outlive its worker (Linux: the kernel sends SIGKILL when the
    parent dies, e.g. a worker killed with ``kill -9``, so that an orphan never writes into reclaimed work)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the heartbeat still marks the work stale
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks (macOS)
        return os.cpu_count() or 1


def without_options(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """``argv`` without the options ``names`` and their values (``--name value`` or ``--name=value``)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in names:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


def start_workers(command: Sequence[str], workers: int, devices: Sequence[str] = ()) -> int:
    """Run ``workers`` copies of ``command`` at once; returns the worst exit status.

    Each copy gets ``--worker-label w<i>``, its share of the cores as ``OMP_NUM_THREADS`` (unless set), and, with
    ``devices``, one of them as ``CUDA_VISIBLE_DEVICES`` (round robin). Each output line is prefixed with the
    worker's label. Stopping this process stops the workers.
    """
    processes = []
    # the workers share this machine's cores: each one's torch threads get their share, not all of them (N
    # processes with a thread per core each spin against one another: 4 runs on 2 cores took 2.2x as long)
    threads = str(max(1, _cores() // workers))
    for i in range(workers):
        env = {"OMP_NUM_THREADS": threads, **os.environ, "PYTHONUNBUFFERED": "1"}
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = str(devices[i % len(devices)])
        process = subprocess.Popen(
            [*command, "--worker-label", f"w{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            preexec_fn=die_with_parent,
        )
        processes.append(process)

    def relay(i: int, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(f"[w{i}] {line}")
        sys.stdout.flush()

    threads = [threading.Thread(target=relay, args=(i, p), daemon=True) for i, p in enumerate(processes)]
    for thread in threads:
        thread.start()

    def stop(signum: int, _frame: Any) -> None:
        for process in processes:
            process.terminate()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        codes = [process.wait() for process in processes]
    finally:
        signal.signal(signal.SIGTERM, previous)
        for process in processes:
            if process.poll() is None:
                process.kill()
    for thread in threads:
        thread.join()
    return max(codes, key=lambda c: (c != 0, abs(c)))
