"""Leases across real processes, on SQLite, PostgreSQL and Redis (db 11).

* A holder SIGKILLed mid-lease: once its lease expires the next holder gets a higher
  token, and the dead holder's lease cannot be released or renewed over the new one.
* A holder paused (SIGSTOP) past its lease while another takes the lock: after
  SIGCONT its next fenced write is refused by the storage, and the new holder's
  value stands.
* Mutual exclusion: 8 processes take the lock in turn and log entering and leaving
  their critical section to one ``O_APPEND`` file; no two sections overlap, and a
  counter incremented without version checks loses no increment.  A short run is in
  the normal suite, a long one under ``slow``.

The children are ``tests/crash/lock_worker.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import clawstate
from _backends import (
    ROOT,
    child_env,
    drop_prefix,
    drop_schema,
    new_prefix,
    new_schema,
    pg_probe,
    pg_url,
    redis_client,
)
from services import REDIS_URL, require

WORKER = ROOT / "tests" / "crash" / "lock_worker.py"
REDIS_DB = 11


def _redis_url(prefix: str) -> str:
    head = REDIS_URL.split("?", 1)[0]
    scheme, _, rest = head.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/{REDIS_DB}?prefix={prefix}"


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store every child process of the test opens."""
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/locks.db"
    elif kind == "postgresql":
        require("postgresql", pg_probe)
        schema = new_schema("cs_locks")
        yield pg_url(schema)
        drop_schema(schema)
    else:
        require("redis", lambda: redis_client().ping())
        prefix = new_prefix()
        yield _redis_url(prefix)
        import redis

        client = redis.Redis.from_url(_redis_url(prefix).split("?")[0])
        drop_prefix(client, prefix)
        client.close()


def _start(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, *args],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if not line:
        child.kill()
        child.wait()
        raise AssertionError(f"the lock worker said nothing (exit {child.returncode})")
    return line


def _reap(*children: subprocess.Popen[str]) -> None:
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_killed_holder_lease_expires_to_a_higher_token(url: str) -> None:
    ttl = 3.0
    child = _start(url, "hold", "job", str(ttl))
    try:
        held = _line(child)
        assert held.startswith("held ")
        dead_token = int(held.split()[1])
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        _reap(child)
    store = clawstate.open(url, sweep_interval=0)
    try:
        dead = store.locks.get("job")
        assert dead is not None and dead.token == dead_token  # still held: not expired yet
        start = time.monotonic()
        lease = store.locks.acquire("job", ttl=30, wait=10)
        assert time.monotonic() - start < 10
        assert lease.token > dead_token
        # the dead holder's lease can neither free nor extend the new one
        assert store.locks.release(dead) is False
        with pytest.raises(clawstate.FencingError):
            store.locks.renew(dead)
        with pytest.raises(clawstate.FencingError):
            store.namespace("out").put("k", "late write", fence=dead)
        store.namespace("out").put("k", "new holder", fence=lease)
        assert store.locks.get("job") == lease
        item = store.namespace("out").get("k")
        assert item is not None and item.value == "new holder"
    finally:
        store.close()


def test_paused_holder_is_fenced_after_resuming(url: str) -> None:
    ttl = 1.0
    child = _start(url, "pause", "job", str(ttl))
    store = clawstate.open(url, sweep_interval=0)
    try:
        stale = int(_line(child).split()[1])
        _, status = os.waitpid(child.pid, os.WUNTRACED)  # it stopped itself
        assert os.WIFSTOPPED(status)
        try:
            lease = store.locks.acquire("job", ttl=30, wait=10)  # once the paused lease expires
            assert lease.token > stale
            store.namespace("out").put("k", {"by": "new holder"}, fence=lease)
        finally:
            os.kill(child.pid, signal.SIGCONT)
        assert _line(child) == f"fenced {stale} {lease.token}"
        assert child.wait(timeout=30) == 0
        item = store.namespace("out").get("k")
        assert item is not None and item.value == {"by": "new holder"}
        assert store.locks.get("job") == lease
    finally:
        _reap(child)
        store.close()


def _mutual_exclusion(url: str, tmp_path: Path, procs: int, rounds: int) -> None:
    log = tmp_path / "sections.log"
    children = [_start(url, "mutex", "critical", str(rounds), str(log)) for _ in range(procs)]
    try:
        for child in children:
            assert _line(child) == "ready"
        for child in children:
            assert child.wait(timeout=600) == 0
    finally:
        _reap(*children)
    inside: str | None = None
    overlaps = entered = 0
    for line in log.read_text().splitlines():
        what, pid = line.split()
        if what == "enter":
            entered += 1
            if inside is not None:
                overlaps += 1
            inside = pid
        else:
            assert inside == pid, f"{pid} left a section {inside} was in"
            inside = None
    assert overlaps == 0
    assert entered == procs * rounds
    store = clawstate.open(url, sweep_interval=0)
    try:
        counter = store.namespace("out").get("counter")
        assert counter is not None and counter.value == procs * rounds  # no lost increment
        assert store.locks.get("critical") is None  # every lease released
    finally:
        store.close()


def test_mutual_exclusion_8_processes(url: str, tmp_path: Path) -> None:
    _mutual_exclusion(url, tmp_path, procs=8, rounds=8)


@pytest.mark.slow
def test_mutual_exclusion_8_processes_long(url: str, tmp_path: Path) -> None:
    _mutual_exclusion(url, tmp_path, procs=8, rounds=500)
