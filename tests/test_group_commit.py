"""Group commit: concurrent writers share commits, each is acknowledged after its own
commit, and one writer's failed condition fails only that writer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import pytest

import clawstate
from clawstate.backends._group_commit import GroupCommitter
from clawstate.backends.sqlite import SQLiteBackend


def test_waiting_writers_are_coalesced_and_failures_stay_with_their_caller() -> None:
    batches: list[list[int]] = []
    gate = threading.Event()

    def run_batch(jobs: list[int]) -> list[object]:
        if not batches:
            gate.wait(5)  # hold the first batch so the others queue up behind it
        batches.append(list(jobs))
        return [ValueError(f"job {j}") if j % 5 == 0 else j * 10 for j in jobs]

    committer: GroupCommitter[int, int] = GroupCommitter(run_batch)
    results: dict[int, object] = {}

    def submit(job: int) -> None:
        try:
            results[job] = committer.submit(job)
        except ValueError as exc:
            results[job] = exc

    first = threading.Thread(target=submit, args=(1,))
    first.start()
    time.sleep(0.05)
    others = [threading.Thread(target=submit, args=(j,)) for j in range(2, 22)]
    for t in others:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert batches[0] == [1]
    assert sum(len(b) for b in batches) == 21
    assert len(batches) < 21, f"no coalescing happened: {batches}"
    for j in range(1, 22):
        if j % 5 == 0:
            assert isinstance(results[j], ValueError) and str(results[j]) == f"job {j}"
        else:
            assert results[j] == j * 10


def test_batch_failure_fails_every_job_of_that_batch_only() -> None:
    calls = 0

    def run_batch(jobs: list[int]) -> list[object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("broken contract")
        return list(jobs)

    committer: GroupCommitter[int, int] = GroupCommitter(run_batch)
    with pytest.raises(RuntimeError):
        committer.submit(1)
    assert committer.submit(2) == 2


def _sqlite(tmp_path: Path) -> clawstate.Store:
    return clawstate.open(f"sqlite:///{tmp_path / 'gc.db'}", sweep_interval=0)


def test_threads_share_commits_and_a_failed_cas_fails_alone(tmp_path: Path) -> None:
    with _sqlite(tmp_path) as store:
        ns = store.namespace("g")
        for i in range(8):
            ns.put(f"k{i}", 0)
        errors: dict[int, Exception] = {}
        barrier = threading.Barrier(8)

        def writer(i: int) -> None:
            barrier.wait()
            for n in range(100):
                try:
                    # odd writers use a stale version every 10th write
                    stale = i % 2 == 1 and n % 10 == 0
                    cur = ns.get(f"k{i}")
                    assert cur is not None
                    ns.put(f"k{i}", n + 1, if_version=cur.version + (7 if stale else 0))
                except clawstate.VersionConflict as exc:
                    errors.setdefault(i, exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(errors) == {1, 3, 5, 7}
        for i in range(8):
            item = ns.get(f"k{i}")
            assert item is not None
            expected_writes = 100 if i % 2 == 0 else 90
            assert item.version == 1 + expected_writes
        backend = store.backend
        assert isinstance(backend, SQLiteBackend)
        stats = backend.stats()["group_commit"]
        assert stats["largest_batch"] > 1, stats
        assert store.check().ok


@pytest.mark.anyio
@pytest.mark.parametrize("batch_writes", [True, False])
async def test_async_tasks_are_group_committed(tmp_path: Path, batch_writes: bool) -> None:
    # With AsyncStore's own batching (the default, _batch.py) concurrent awaited puts
    # reach the backend as shared transactions, so it commits far fewer than 480 units;
    # without it the backend's group commit coalesces the units of the pool's threads.
    sync = clawstate.open(f"sqlite:///{tmp_path / 'a.db'}", sweep_interval=0)
    astore = clawstate.AsyncStore(sync, batch_writes=batch_writes)
    ns = astore.namespace("a")

    async def writer(i: int) -> None:
        for n in range(30):
            await ns.put(f"t{i}-{n}", {"n": n})

    async with anyio.create_task_group() as tg:
        for i in range(16):
            tg.start_soon(writer, i)
    assert await ns.count() == 480
    stats = (await astore.stats())["backends"]["default"]["group_commit"]
    if batch_writes:
        assert stats["jobs"] < 480 / 2, stats
    else:
        assert stats["largest_batch"] > 1, stats
    await astore.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _slow_committer(commit_seconds: float) -> GroupCommitter[int, int]:
    def run_batch(jobs: list[int]) -> list[object]:
        time.sleep(commit_seconds)  # an fsync or a round trip: the GIL is released
        return list(jobs)

    return GroupCommitter(run_batch)


def test_a_lone_writer_never_waits_to_gather() -> None:
    committer = _slow_committer(0.002)
    for i in range(20):
        assert committer.submit(i) == i
    assert committer.gathers == 0 and committer.batches == 20


def test_the_gather_window_fills_batches_when_commits_are_slow() -> None:
    """Without the window batches alternate between a straggler and the rest; with it
    a leader waits (at most half a commit) for the writers just acknowledged."""
    committer = _slow_committer(0.002)
    writers, per_writer = 6, 30
    barrier = threading.Barrier(writers)

    def writer(w: int) -> None:
        barrier.wait()
        for i in range(per_writer):
            assert committer.submit(w * 1000 + i) == w * 1000 + i

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stats = committer.stats()
    assert stats["jobs"] == writers * per_writer
    assert stats["gathers"] > 0
    assert stats["mean_batch"] > writers * 0.75, stats
    # Once the others are gone, a lone writer stops gathering within the history.
    before = committer.gathers
    for i in range(30):
        committer.submit(i)
    assert committer.gathers - before <= 8


def test_a_leader_does_not_wait_for_writers_that_never_come() -> None:
    """Writers that do not come back (a burst, then nothing) cost at most the window."""
    committer = _slow_committer(0.004)
    gate = threading.Barrier(4)

    def burst(w: int) -> None:
        gate.wait()
        committer.submit(w)

    for _ in range(3):  # build a history of batches of several writers
        threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    waits = _record_gather_waits(committer)
    gathers = committer.gathers
    assert committer.submit(99) == 99  # alone, though the history says four writers
    # It did wait for the others (the history said four) -- but only within the window:
    # every wait it asked for was at most the cap, and it committed alone.  How long the
    # lone writer's commit takes is measured by `make bench` (bench/group_commit.py).
    assert committer.gathers == gathers + 1
    assert waits and all(w is not None and 0 < w <= committer._gather_max for w in waits), waits
    assert committer._recent[-1] == 1, "the lone writer's batch held someone else"


class _RecordingCondition(threading.Condition):
    """A condition that records the timeout of every ``wait`` (None: forever)."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(timeout)


def _record_gather_waits(committer: GroupCommitter[int, int]) -> list[float | None]:
    """Make ``committer``'s leaders record how long each gather wait may last."""
    cond = _RecordingCondition(committer._lock)
    committer._arrived = cond
    return cond.waits
