"""Why the group committer has no writer thread: the inline leader measured against one.

DESIGN.md asks to "measure whether a lone writer should commit inline (no thread
hop) when nothing else is queued".  This case runs clawstate's SQLite backend twice
in the same run: with its own :class:`GroupCommitter` (the first waiting caller
leads and commits on its own thread), and with the committer swapped for the
textbook alternative — a queue drained by one dedicated writer thread, each
caller waiting on a future — at 1 and 8 writer threads, in both durability modes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import clawstate
from clawstate.backends.sqlite import SQLiteBackend

from .harness import Case, Peer, Settings, Table, comparison_table, fresh_dir, interleave, time_loop
from .kv_sqlite import VALUE

AREA = "group_commit"


class ThreadedCommitter:
    """The alternative: one writer thread drains a queue; callers block on futures."""

    def __init__(self, run_batch: Callable[[list[Any]], list[Any]], max_batch: int = 512) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Any, Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            results = self._run_batch([job for job, _ in batch])
            for (_, fut), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    def submit(self, job: Any) -> Any:
        fut: Future[Any] = Future()
        self._queue.put((job, fut))
        return fut.result()

    def stats(self) -> dict[str, float]:
        return {}

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(5)


def _open(path: Path, durability: str, threaded: bool) -> clawstate.Store:
    store = clawstate.open(f"sqlite:///{path}", sweep_interval=0, durability=durability)
    backend = store.backend
    assert isinstance(backend, SQLiteBackend)
    if threaded:
        backend._committer = ThreadedCommitter(backend._run_batch)  # type: ignore[assignment]
    return store


def _trial(store: clawstate.Store, threads: int, per_thread: int) -> Callable[[], Any]:
    ns = store.namespace("gc")
    counter = iter(range(10**9))

    def trial() -> Any:
        base = next(counter)

        def writer(t: int) -> None:
            for i in range(per_thread):
                ns.put(f"r{base}-t{t}-{i % 1000}", VALUE)

        def run() -> None:
            workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()

        return time_loop(threads * per_thread, run)

    return trial


def case_inline_vs_thread(settings: Settings) -> list[Table]:
    tables: list[Table] = []
    for durability in ("process", "power"):
        for threads in (1, 8):
            per_thread = settings.n(4000 if durability == "process" else 600, 50) // threads
            per_thread = max(per_thread, 10)
            with fresh_dir(settings, "gc") as tmp:
                inline = _open(tmp / "inline.db", durability, threaded=False)
                threaded = _open(tmp / "threaded.db", durability, threaded=True)
                try:
                    ms = interleave(
                        [
                            ("clawstate (inline leader)", _trial(inline, threads, per_thread)),
                            ("writer thread + futures", _trial(threaded, threads, per_thread)),
                        ],
                        settings,
                    )
                finally:
                    committer = threaded.backend._committer  # type: ignore[attr-defined]
                    committer.stop()
                    inline.close()
                    threaded.close()
            tables.append(
                comparison_table(
                    f"{AREA}.{durability}.{threads}",
                    f"Group commit design: {threads} writer thread(s), `{durability}` mode",
                    "The same SQLite backend and batch code; only the committer differs. "
                    "1 KiB values.",
                    ms["clawstate (inline leader)"],
                    [Peer(ms["writer thread + futures"], None, "the rejected design")],
                    unit="put",
                )
            )
    return tables


CASES = [
    Case(
        AREA,
        "inline_vs_thread",
        "Group commit: inline leader vs writer thread",
        case_inline_vs_thread,
    )
]
