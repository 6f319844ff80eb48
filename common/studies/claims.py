"""Many processes, one folder of work: claims with heartbeats, under the folder's lock.

Any number of workers - on one machine, or on many machines sharing a filesystem (SLURM array tasks) - work on
the same sweep or cross-validation dir. A unit of work (a sweep configuration, a fold, the evaluation after the
folds) is claimed under a file lock (``.lock``, ``fcntl`` locks through the :mod:`filelock` package, which NFS
and Lustre honour): the claim is a JSON file ``claims/<key>.json`` naming the host, pid and worker, with a
heartbeat refreshed every ``heartbeat`` seconds while the work runs. A claim whose heartbeat is older than
``stale_after`` seconds (or whose process is gone, when it ran on this host) is stale: its worker died, and the
work goes back to the queue.

Clocks: the heartbeat is the writer's wall clock, read by other hosts. Keep ``stale_after`` well above the
heartbeat and above the clock skew between nodes (NTP keeps it under a second; the defaults are 30 s and 180 s).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from common.errors import MedlitError
from common.files import write_json

__all__ = ["HEARTBEAT_S", "LOCK_TIMEOUT_S", "STALE_AFTER_S", "WorkQueue", "WorkerOptions", "add_worker_arguments"]

HEARTBEAT_S = 30.0
"""How often a worker refreshes the heartbeat of the work it holds (seconds)."""
STALE_AFTER_S = 180.0
"""A claim with no heartbeat for this long belongs to a dead worker (seconds)."""
LOCK_TIMEOUT_S = 600.0
"""How long a worker waits for the folder's lock before saying which file holds it up."""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkQueue:
    """Claims on the units of work of one folder, shared by every worker that opens it.

    Args:
        folder: The sweep or cross-validation dir (``.lock`` and ``claims/`` are written there).
        heartbeat: Seconds between heartbeats of held work.
        stale_after: Seconds without a heartbeat after which a claim is taken to be dead.
        label: A name for this worker in claims and logs (default ``<host>:<pid>``).
    """

    def __init__(
        self, folder: Path, heartbeat: float = HEARTBEAT_S, stale_after: float = STALE_AFTER_S, label: str = ""
    ) -> None:
        if stale_after <= heartbeat:
            raise MedlitError(f"--stale-after ({stale_after:g} s) must be longer than --heartbeat ({heartbeat:g} s)")
        self.folder = folder
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.label = label or f"{self.host}:{self.pid}"
        self.token = uuid.uuid4().hex[:8]  # tells two workers apart when a pid is reused
        self._lock = FileLock(str(folder / ".lock"), timeout=LOCK_TIMEOUT_S)

    # --- the lock ------------------------------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock (short critical sections: read, decide, write)."""
        try:
            with self._lock:
                yield
        except Timeout:
            raise MedlitError(
                f"{self.folder / '.lock'}: held by another worker for over {LOCK_TIMEOUT_S:g} s; is a worker stuck?"
            ) from None

    # --- claims --------------------------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.folder / "claims" / f"{key}.json"

    def claim_of(self, key: str) -> dict[str, Any] | None:
        """The claim on ``key``, if any."""
        try:
            return json.loads(self._path(key).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"key": key, "heartbeat": 0.0}  # unreadable: treated as stale

    def claims(self) -> dict[str, dict[str, Any]]:
        """Every claim in the folder, by key."""
        folder = self.folder / "claims"
        paths = folder.glob("*.json") if folder.is_dir() else []
        keys = sorted(p.stem for p in paths if not p.name.startswith("."))  # not another writer's temporary file
        return {k: c for k in keys if (c := self.claim_of(k)) is not None}

    def is_stale(self, claim: dict[str, Any]) -> bool:
        """True when the claim's worker is dead: no heartbeat for ``stale_after`` s, or its process is gone."""
        if time.time() - float(claim.get("heartbeat", 0.0)) > self.stale_after:
            return True
        same_host = claim.get("host") == self.host and claim.get("pid_namespace") == _pid_namespace()
        return bool(same_host and claim.get("pid") and not _pid_alive(int(claim["pid"])))

    def owns(self, key: str) -> bool:
        """Whether this worker still holds ``key`` (another may have taken it over as stale)."""
        claim = self.claim_of(key)
        return bool(claim and claim.get("token") == self.token)

    def take(self, key: str, **info: Any) -> dict[str, Any]:
        """Claim ``key`` (call under :meth:`locked`, after checking it is free)."""
        claim = {
            "key": key,
            "worker": self.label,
            "host": self.host,
            "pid": self.pid,
            "pid_namespace": _pid_namespace(),
            "token": self.token,
            "claimed": time.time(),
            "heartbeat": time.time(),
            **info,
        }
        write_json(self._path(key), claim)
        return claim

    def release(self, key: str) -> None:
        """Drop the claim on ``key`` (call under :meth:`locked`)."""
        self._path(key).unlink(missing_ok=True)

    @contextmanager
    def beating(self, key: str) -> Iterator[None]:
        """Refresh the heartbeat of ``key`` every ``heartbeat`` s while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat):
                with self.locked():  # a claim taken over as stale is not written back
                    claim = self.claim_of(key)
                    if not claim or claim.get("token") != self.token:
                        return
                    write_json(self._path(key), {**claim, "heartbeat": time.time()})

        thread = threading.Thread(target=beat, name=f"heartbeat-{key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    @contextmanager
    def exclusive(self, key: str, poll: float | None = None) -> Iterator[None]:
        """Hold ``key`` for the block: wait while a live worker holds it, take it over when that worker died."""
        poll = poll or min(self.heartbeat, 5.0)
        announced = False
        while True:
            with self.locked():
                claim = self.claim_of(key)
                if claim is None or self.is_stale(claim):
                    self.take(key)
                    break
            if not announced:
                print(f"[{self.label}] waiting for {key}, held by {claim.get('worker')}", flush=True)
                announced = True
            time.sleep(poll)
        try:
            with self.beating(key):
                yield
        finally:
            with self.locked():
                if self.owns(key):
                    self.release(key)


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker behaves: its heartbeat, when it takes others for dead, its name, and whether it waits for the
    work other workers hold (to take over a dead one's) or stops when nothing is left to claim."""

    heartbeat: float = HEARTBEAT_S
    stale_after: float = STALE_AFTER_S
    label: str = ""
    wait: bool = True

    def queue(self, folder: Path) -> WorkQueue:
        """The work queue of ``folder`` as this worker sees it."""
        return WorkQueue(folder, self.heartbeat, self.stale_after, self.label)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> WorkerOptions:
        """From the options :func:`add_worker_arguments` adds."""
        return cls(args.heartbeat, args.stale_after, args.worker_label, not args.no_wait)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker options of ``common.studies.sweep`` and ``common.studies.cv``."""
    group = parser.add_argument_group("workers (several processes or machines on one dir)")
    group.add_argument(
        "--workers",
        type=_at_least_one,
        default=1,
        help="start this many workers on this machine (default 1); workers on other machines join by running the "
        "same command on the same dir",
    )
    group.add_argument(
        "--devices",
        default=None,
        help="GPUs for the local workers, e.g. 0,1,2,3: worker i sees device i (round robin); --workers defaults to "
        "their number",
    )
    group.add_argument(
        "--heartbeat", type=float, default=HEARTBEAT_S, help=f"seconds between heartbeats (default {HEARTBEAT_S:g})"
    )
    group.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER_S,
        help="seconds without a heartbeat after which a worker is taken for dead and its work is redone (default "
        f"{STALE_AFTER_S:g})",
    )
    group.add_argument("--worker-label", default="", help="this worker's name in index and claims (default host:pid)")
    group.add_argument(
        "--no-wait",
        action="store_true",
        help="stop when nothing is left to claim instead of waiting for the other workers (frees a GPU; a dead "
        "worker's run is then redone by the next worker started)",
    )
