"""The cache across real processes: staleness after another process writes, and the
write-back loss window under SIGKILL.

Both tests print what they measured (``pytest -s`` shows it); docs/cache.md quotes them.
This file is also the child program: ``python tests/test_cache_processes.py writer …``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import clawstate
from clawstate.testing.conformance import scan_all

HERE = Path(__file__).resolve()


# -- children ------------------------------------------------------------------------------


def child_writer(url: str, count: int, pause: float) -> None:
    """Write ``k`` = 1..count (no cache), printing ``i commit_time`` after each commit."""
    with clawstate.open(url, sweep_interval=0) as store:
        ns = store.namespace("n")
        for i in range(1, count + 1):
            time.sleep(pause)
            ns.put("k", i)
            print(i, repr(time.time()), flush=True)


def child_write_back(url: str, delay: float) -> None:
    """Write-back puts of ``k<i>`` = i as fast as possible until killed; after each
    acknowledgement print ``i ack_time`` (the parent kills us mid-stream)."""
    store = clawstate.open(
        url,
        sweep_interval=0,
        namespaces={"*": {"cache": "write-back", "cache_flush_delay": delay}},
    )
    ns = store.namespace("n")
    out = sys.stdout
    i = 0
    while True:
        i += 1
        ns.put(f"k{i}", i)
        out.write(f"{i} {time.time()!r}\n")
        out.flush()
        if i % 50 == 0:
            time.sleep(0.001)  # a realistic writer, not a tight loop starving the flusher


# -- the tests -----------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent / "src")}
    return subprocess.Popen(
        [sys.executable, str(HERE), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("consistency", ["eventual", "strong"])
def test_write_in_another_process_stops_being_served_stale(
    tmp_path: Path, consistency: str
) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    reader = clawstate.open(
        url,
        sweep_interval=0,
        namespaces={
            "*": {"cache": "read-through", "cache_ttl": 3600, "cache_consistency": consistency}
        },
    )
    ns = reader.namespace("n")
    seen: dict[int, float] = {}
    stop = threading.Event()

    def poll() -> None:  # the reader process's app: reads all the time, from its cache
        while not stop.is_set():
            item = ns.get("k")
            if item is not None and item.value not in seen:
                seen[item.value] = time.time()

    poller = threading.Thread(target=poll)
    poller.start()
    child = _spawn("writer", url, "20", "0.05")
    try:
        out, err = child.communicate(timeout=60)
    finally:
        time.sleep(0.3)
        stop.set()
        poller.join(10)
    assert child.returncode == 0, err
    committed = {int(i): float(t) for i, t in (line.split() for line in out.splitlines())}
    hits = reader.stats()["cache"]["namespaces"]["n"]["l1"]["hits"]
    reader.close()
    assert hits > 100, "the reader must have been reading from its cache"
    assert 20 in seen, "the last write must become visible"
    delays = sorted(seen[i] - committed[i] for i in committed if i in seen)
    worst = delays[-1]
    print(f"\n[cache] {consistency}: stale-read window after a write in another process: "
          f"median {delays[len(delays) // 2] * 1000:.1f} ms, max {worst * 1000:.1f} ms "
          f"({len(delays)} writes)")  # fmt: skip
    assert worst < 2.0  # SQLite is polled every 50 ms; 2 s leaves room for a loaded box


def test_write_back_kill_loses_at_most_the_flush_window(tmp_path: Path) -> None:
    delay = 0.1
    losses: list[tuple[int, float]] = []
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/wb-{round_}.db"
        child = _spawn("write-back", url, str(delay))
        acks: dict[int, float] = {}
        assert child.stdout is not None
        started = time.monotonic()
        kill_after = 0.6 + 0.37 * round_  # kill at a different phase of the flush cycle
        for line in child.stdout:
            i, t = line.split()
            acks[int(i)] = float(t)
            if time.monotonic() - started > kill_after:
                break
        killed_at = time.time()
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
        for line in rest.splitlines():
            parts = line.split()
            if len(parts) == 2:
                acks[int(parts[0])] = float(parts[1])
        with clawstate.open(url, sweep_interval=0) as store:
            durable = {it.key for it in scan_all(store.namespace("n"))}
            n_durable = store.namespace("n").count()
        durable_ids = sorted(int(k[1:]) for k in durable)
        assert n_durable == len(durable_ids)
        assert len(acks) > 100
        # What survived is exactly a prefix of what was acknowledged: no holes.
        assert durable_ids == list(range(1, len(durable_ids) + 1))
        lost = [i for i in acks if i > len(durable_ids)]
        window = killed_at - acks[min(lost)] if lost else 0.0
        losses.append((len(lost), window))
    report = ", ".join(f"{n} writes / {w * 1000:.0f} ms" for n, w in losses)
    print(f"\n[cache] write-back (flush delay {delay * 1000:.0f} ms) loss under SIGKILL: {report}")
    # The loss window is the flush delay plus one commit (and the scheduler's slack).
    assert max(w for _, w in losses) < delay + 0.5


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        child_writer(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "write-back":
        child_write_back(sys.argv[2], float(sys.argv[3]))
