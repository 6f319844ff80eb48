"""Claims on a folder's work: stale when the heartbeat stops or the process is gone, heartbeats refreshed while the
work runs and never written back over a takeover, and exclusive work taken over from a dead holder at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.studies.claims import WorkQueue


def test_a_claim_is_stale_when_its_heartbeat_stops_or_its_process_is_gone(tmp_path: Path) -> None:
    queue = WorkQueue(tmp_path, heartbeat=0.2, stale_after=30.0, label="me")
    with queue.locked():
        claim = queue.take("run000")
    assert queue.owns("run000") and not queue.is_stale(claim)
    assert queue.is_stale({**claim, "host": "elsewhere", "heartbeat": time.time() - 31.0})  # silent for too long
    assert not queue.is_stale({**claim, "host": "elsewhere", "pid": 999_999_999})  # another host: heartbeat only
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert queue.is_stale({**claim, "pid": dead.pid})  # this host, process gone: stale at once
    assert not queue.is_stale({**claim, "pid_namespace": "pid:[other]", "pid": dead.pid})  # another container

    before = queue.claim_of("run000")["heartbeat"]
    with queue.beating("run000"):
        time.sleep(0.7)
    assert queue.claim_of("run000")["heartbeat"] > before  # refreshed while the work ran

    other = WorkQueue(tmp_path, heartbeat=0.2, stale_after=30.0, label="other")
    assert not other.owns("run000")
    with other.locked():
        other.take("run000")  # taken over (as a worker does with a stale claim)
    with queue.beating("run000"):
        time.sleep(0.5)
    assert queue.claim_of("run000")["worker"] == "other"  # the old owner's heartbeat does not write it back
    with pytest.raises(Exception, match="must be longer than"):
        WorkQueue(tmp_path, heartbeat=5.0, stale_after=5.0)


def test_exclusive_waits_for_a_live_holder_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = WorkQueue(tmp_path, heartbeat=0.2, stale_after=60.0)
    with holder.locked():
        holder.take("evaluate")
    claim = json.loads((tmp_path / "claims" / "evaluate.json").read_text())
    (tmp_path / "claims" / "evaluate.json").write_text(json.dumps({**claim, "pid": dead.pid}))
    start = time.perf_counter()
    with WorkQueue(tmp_path, heartbeat=0.2, stale_after=60.0, label="next").exclusive("evaluate"):
        assert json.loads((tmp_path / "claims" / "evaluate.json").read_text())["worker"] == "next"
    assert time.perf_counter() - start < 5  # the dead holder was seen at once, not after 60 s
    assert not (tmp_path / "claims" / "evaluate.json").exists()  # released
