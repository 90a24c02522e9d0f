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
from typing import Any

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


def child_l2_reader(url: str, redis_url: str, delay: float) -> None:
    """A process with its own store (read-through, L2 ``redis_url``) on ``url`` whose
    backend reads take ``delay`` seconds, driven by lines on stdin:

    * ``get KEY`` -- read KEY, print one JSON line: the value and this process's counters;
    * ``until KEY JSON`` -- read KEY until its value is JSON (10 s at most), then print;
    * ``memo NAME X`` -- call a ``memoize(l2=redis_url, name=NAME)`` function on X, print.

    It prints ``ready`` once its store is open, so a parent can start several and then
    release them at the same moment."""
    import json

    from clawstate.backends.sqlite import SQLiteBackend
    from clawstate.config import load_config
    from clawstate.store import Store

    class Slow(SQLiteBackend):
        def get(self, namespace: str, key: str, now: float) -> Any:
            found = super().get(namespace, key, now)
            time.sleep(delay)  # a slow backend: the window in which a stampede would form
            return found

    policy = {"cache": "read-through", "cache_l2": redis_url, "cache_ttl": 60}
    config = load_config(env={}, url=url, sweep_interval=0, namespaces={"*": policy})
    store = Store(Slow(Path(url.removeprefix("sqlite:///"))), config)
    ns = store.namespace("n")
    computed = 0
    memos: dict[str, Any] = {}

    def compute(x: int) -> dict[str, int]:
        nonlocal computed
        computed += 1
        return {"x": x}

    def report(value: Any, **extra: Any) -> None:
        cache = store.stats()["cache"]
        mine = cache["namespaces"].get("n", {})
        l2_errors = sum(l2["errors"] for l2 in cache["l2"].values())
        doc = {"value": value, "backend_reads": mine.get("backend_reads", 0)}
        doc |= {"l2_hits": mine.get("l2", {}).get("hits", 0), "l2_errors": l2_errors, **extra}
        print(json.dumps(doc), flush=True)

    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split(maxsplit=2)
        if cmd == "get":
            item = ns.get(args[0])
            report(None if item is None else item.value)
        elif cmd == "until":
            want = json.loads(args[1])
            deadline = time.monotonic() + 10
            item = ns.get(args[0])
            while (item is None or item.value != want) and time.monotonic() < deadline:
                time.sleep(0.01)
                item = ns.get(args[0])
            report(None if item is None else item.value)
        elif cmd == "memo":
            if args[0] not in memos:
                memos[args[0]] = clawstate.memoize(ttl=30, l2=redis_url, name=args[0])(compute)
            memo = memos[args[0]]
            result = memo(int(args[1]))
            report(result, computed=computed, memo_l2_hits=memo.stats()["l2"]["hits"])
        else:
            break
    for memo in memos.values():
        memo.close()
    store.close()


class L2Reader:
    """The parent's handle on one ``child_l2_reader`` process."""

    def __init__(self, url: str, redis_url: str, delay: float = 0.0) -> None:
        self.proc = _spawn("l2-reader", url, redis_url, str(delay), stdin=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line + self._stderr()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        import json

        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the reader process died: " + self._stderr()
        doc: dict[str, Any] = json.loads(line)
        return doc

    def ask(self, command: str) -> dict[str, Any]:
        self.send(command)
        return self.answer()

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# -- the tests -----------------------------------------------------------------------------


def _spawn(*args: str, stdin: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent / "src")}
    return subprocess.Popen(
        [sys.executable, str(HERE), *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
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
    history: list[int] = []  # each value the reader got that differs from the one before
    stop = threading.Event()

    def poll() -> None:  # the reader process's app: reads all the time, from its cache
        while not stop.is_set():
            item = ns.get("k")
            if item is not None and (not history or item.value != history[-1]):
                history.append(item.value)
                seen.setdefault(item.value, time.time())

    poller = threading.Thread(target=poll)
    poller.start()
    child = _spawn("writer", url, "20", "0.05")
    try:
        out, err = child.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while 20 not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        poller.join(10)
    assert child.returncode == 0, err
    committed = {int(i): float(t) for i, t in (line.split() for line in out.splitlines())}
    hits = reader.stats()["cache"]["namespaces"]["n"]["l1"]["hits"]
    reader.close()
    assert hits > 100, "the reader must have been reading from its cache"
    assert 20 in seen, "the last write must become visible"
    # Stale for a while, but never going back: once a newer value was served, an older
    # one never is again.
    assert history == sorted(set(history)), history
    delays = sorted(seen[i] - committed[i] for i in committed if i in seen)
    worst = delays[-1]
    print(f"\n[cache] {consistency}: stale-read window after a write in another process: "
          f"median {delays[len(delays) // 2] * 1000:.1f} ms, max {worst * 1000:.1f} ms "
          f"({len(delays)} writes)")  # fmt: skip
    # How long the window is (SQLite's 50 ms poll) is `make bench`'s cache "invalidation"
    # case (bench/cache_bench.py), not an assertion that a loaded machine could break.


def test_write_back_kill_loses_at_most_the_flush_window(tmp_path: Path) -> None:
    delay = 0.1
    losses: list[tuple[int, float]] = []
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/wb-{round_}.db"
        child = _spawn("write-back", url, str(delay))
        acks: dict[int, float] = {}
        assert child.stdout is not None
        started: float | None = None  # from the first ack: the child's start-up does not count
        kill_after = 0.6 + 0.37 * round_  # kill at a different phase of the flush cycle
        for line in child.stdout:
            i, t = line.split()
            acks[int(i)] = float(t)
            started = time.monotonic() if started is None else started
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
        # ... and the flusher had been at work: the kill came several flush delays in.
        assert durable_ids, "nothing was flushed before the kill"
        # Nothing that was never acknowledged (beyond the one put in flight) is there.
        assert len(durable_ids) <= max(acks) + 1
        lost = [i for i in acks if i > len(durable_ids)]
        window = killed_at - acks[min(lost)] if lost else 0.0
        losses.append((len(lost), window))
    report = ", ".join(f"{n} writes / {w * 1000:.0f} ms" for n, w in losses)
    print(f"\n[cache] write-back (flush delay {delay * 1000:.0f} ms) loss under SIGKILL: {report}")
    # The loss window (the flush delay plus one commit) is measured by `make bench`
    # (bench/wakeups.py: "write-back loss window"), not asserted on a loaded machine.


# -- the L2 (Redis) tier between real processes ---------------------------------------------


def _redis() -> None:
    from urllib.parse import urlsplit

    from services import REDIS_URL, require, tcp_probe

    parts = urlsplit(REDIS_URL)
    require("redis", tcp_probe(parts.hostname or "127.0.0.1", parts.port or 6379))


def _l2_store(url: str, cache: str = "read-through") -> clawstate.Store:
    from services import REDIS_URL

    policy = {"cache": cache, "cache_l2": REDIS_URL, "cache_ttl": 60}
    return clawstate.open(url, sweep_interval=0, namespaces={"*": policy})


def _purge(store: clawstate.Store) -> None:
    """Remove this store's keys from the shared Redis (its own prefix only)."""
    for l2 in store._cache._l2.values():  # type: ignore[union-attr]
        for key in l2._client.scan_iter(match=l2.prefix + b"*", count=1000):
            l2._client.unlink(key)


def test_l2_is_shared_between_processes(tmp_path: Path) -> None:
    """A value this process wrote is served to another process from Redis (its backend
    untouched), and a later write here reaches that process's reads."""
    from services import REDIS_URL

    _redis()
    url = f"sqlite:///{tmp_path}/l2.db"
    writer = _l2_store(url, "write-through")  # its puts fill Redis
    reader = L2Reader(url, REDIS_URL)
    try:
        writer.namespace("n").put("k", {"v": 1})
        got = reader.ask("get k")
        assert got["value"] == {"v": 1}
        assert (got["backend_reads"], got["l2_hits"]) == (0, 1), got
        writer.namespace("n").put("k", {"v": 2})
        assert reader.ask('until k {"v": 2}')["value"] == {"v": 2}
    finally:
        reader.close()
        _purge(writer)
        writer.close()


def test_l2_stampede_lock_across_processes(tmp_path: Path) -> None:
    """Four processes with slow backends miss one key at the same moment: the L2 lock
    lets one of them read the backend, and the others take its fill from Redis.

    A shared Redis that stalls past the client's timeout under load makes the tier step
    aside (by design): such an attempt is retried, up to three."""
    from services import REDIS_URL

    _redis()
    url = f"sqlite:///{tmp_path}/l2.db"
    seed = _l2_store(url)
    outcomes: list[list[int]] = []
    try:
        for attempt in range(3):
            key = f"k{attempt}"
            seed.namespace("n").put(key, "v")
            _purge(seed)  # the fill must come from one of the four, not from this put
            readers = [L2Reader(url, REDIS_URL, delay=0.3) for _ in range(4)]
            try:
                for r in readers:  # all are open and waiting: release them together
                    r.send(f"get {key}")
                answers = [r.answer() for r in readers]
            finally:
                for r in readers:
                    r.close()
            assert [a["value"] for a in answers] == ["v"] * 4, answers
            outcomes.append([a["backend_reads"] for a in answers])
            if sum(a["l2_errors"] for a in answers) == 0:
                assert sum(outcomes[-1]) == 1, outcomes
                return
        pytest.fail(f"Redis timed out in every attempt; backend reads per process: {outcomes}")
    finally:
        _purge(seed)
        seed.close()


def test_memoize_l2_shared_between_processes(tmp_path: Path) -> None:
    """A result memoized here is served to another process from Redis without running
    the function there; after an invalidation here, that process computes again."""
    from services import REDIS_URL

    _redis()
    name = f"test-memo-{os.getpid()}-{time.monotonic_ns()}"
    calls = 0

    def compute(x: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"x": x}

    here = clawstate.memoize(ttl=30, l2=REDIS_URL, name=name)(compute)
    other = L2Reader(f"sqlite:///{tmp_path}/unused.db", REDIS_URL)
    try:
        assert here(7) == {"x": 7} and calls == 1
        got = other.ask(f"memo {name} 7")
        assert got["value"] == {"x": 7}
        assert (got["computed"], got["memo_l2_hits"]) == (0, 1), got
        here.invalidate(7)
        other.send("quit")
        other.proc.wait(10)
        other = L2Reader(f"sqlite:///{tmp_path}/unused.db", REDIS_URL)  # a fresh L1
        got = other.ask(f"memo {name} 7")
        assert (got["value"], got["computed"]) == ({"x": 7}, 1), got
    finally:
        other.close()
        here.invalidate(7)
        here.close()


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        child_writer(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "write-back":
        child_write_back(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1] == "l2-reader":
        child_l2_reader(sys.argv[2], sys.argv[3], float(sys.argv[4]))
