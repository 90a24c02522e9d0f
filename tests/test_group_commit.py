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
async def test_async_tasks_are_group_committed(tmp_path: Path) -> None:
    astore = clawstate.open_async(f"sqlite:///{tmp_path / 'a.db'}", sweep_interval=0)
    ns = astore.namespace("a")

    async def writer(i: int) -> None:
        for n in range(30):
            await ns.put(f"t{i}-{n}", {"n": n})

    async with anyio.create_task_group() as tg:
        for i in range(16):
            tg.start_soon(writer, i)
    assert await ns.count() == 480
    stats = (await astore.stats())["backends"]["default"]["group_commit"]
    assert stats["largest_batch"] > 1, stats
    await astore.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
