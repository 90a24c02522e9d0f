"""SIGKILL the process firing timers, again and again: every due timer's effect (a
counter row written through ``firing.tx``) is there exactly once at the end — never
lost, never doubled — with one worker and with two workers racing plus kills.

The workers are real processes (``python -c``) on one SQLite file; a killed worker's
claims lapse after ``claim_for`` (0.3 s here) and are taken over by the next one.
The long loops are ``@pytest.mark.slow``; a short version runs in the normal suite.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clawstate
from clawstate.testing.conformance.timers import SLOW_COUNT

WORKER = """
import sys, time, clawstate
store = clawstate.open(sys.argv[1], sweep_interval=0)
t = store.timers
while True:
    if t.fire_due(limit=int(sys.argv[2]), claim_for=0.3) == 0:
        if t.next_due() is None:
            break
        time.sleep(0.02)
store.close()
"""


def _spawn(url: str, batch: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, str(batch)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _run(tmp_path: Path, timers: int, kills: int, workers: int, seed: int) -> None:
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path / 'timers.db'}"
    store = clawstate.open(url, sweep_interval=0)
    try:
        for i in range(timers):
            store.timers.schedule(f"t{i:05}", handler=SLOW_COUNT, after=0)
        mid_run = 0
        for _ in range(kills):
            procs = [_spawn(url, rng.choice((1, 5, 20))) for _ in range(workers)]
            time.sleep(rng.uniform(0.2, 0.8))  # some firings committed, one in flight
            victim = rng.choice(procs)
            mid_run += victim.poll() is None and store.timers.next_due() is not None
            victim.send_signal(signal.SIGKILL)
            for p in procs:
                if p is not victim:
                    p.terminate()
            for p in procs:
                p.wait(30)
            if store.timers.next_due() is None:
                break
        assert mid_run >= 1  # at least one kill hit a worker with timers left to fire
        # the survivors' run: finish what is left (lapsed claims included)
        time.sleep(0.35)
        procs = [_spawn(url, 20) for _ in range(workers)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
        fired = {it.key: it.value for it in store.namespace("fired").scan("", timers + 1).items}
        assert store.timers.list().items == []
        assert len(fired) == timers
        doubled = {k: v for k, v in fired.items() if v != 1}
        assert doubled == {}
    finally:
        store.close()


def test_kill_mid_firing_short(tmp_path: Path) -> None:
    _run(tmp_path, timers=150, kills=3, workers=1, seed=1)


def test_two_workers_and_a_kill_short(tmp_path: Path) -> None:
    _run(tmp_path, timers=150, kills=2, workers=2, seed=2)


@pytest.mark.slow
def test_kill_mid_firing_loop(tmp_path: Path) -> None:
    _run(tmp_path, timers=2000, kills=25, workers=1, seed=3)


@pytest.mark.slow
def test_two_workers_and_kills_loop(tmp_path: Path) -> None:
    _run(tmp_path, timers=2000, kills=25, workers=2, seed=4)
