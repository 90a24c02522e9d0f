"""The event store on SQLite vs the ``eventsourcing`` library and raw ``sqlite3``.

Systems:

* ``clawstate`` — ``clawstate.open("sqlite:///…", durability=…)``; ``store.events``
  appends with an expected version, ``read_all`` pages, ``repository(…).load``.
  Event payloads are encoded (msgspec JSON) inside the timed loop.
* ``eventsourcing recorder`` — ``eventsourcing`` 9's SQLite application recorder
  (``insert_events`` of ``StoredEvent``\\s, ``select_notifications``), created
  through its ``Application`` with ``PERSISTENCE_MODULE=eventsourcing.sqlite``
  and its defaults: WAL, ``synchronous`` left at SQLite's ``FULL``.  Payloads are
  ``json.dumps(...).encode()`` in the timed loop (``json.loads`` on reads).  Its
  expected-version check is the ``(originator_id, originator_version)`` primary
  key.
* ``eventsourcing Application`` — the same library's ``Application`` and
  ``Aggregate`` (``@event`` methods, ``app.save``, ``app.repository.get``; with
  ``snapshotting_intervals`` for the snapshot case).
* raw ``sqlite3`` — one ``events`` table shaped like clawstate's (position
  ``INTEGER PRIMARY KEY``, unique ``(stream, version)`` and unique ``id``
  indexes), WAL, clawstate's cache/mmap pragmas; each append is ``BEGIN
  IMMEDIATE``, ``SELECT MAX(version)``, the check, the ``INSERT``, ``COMMIT`` —
  the floor a clawstate append is measured against.  ``json.dumps`` and
  ``uuid4`` run in its timed loop as clawstate's encoding and id run in its own.

Durability: ``eventsourcing`` leaves SQLite at ``synchronous=FULL``, so it is
compared with clawstate's ``power`` mode (``FULL``); the default ``process``
mode (``NORMAL``) is compared with raw sqlite3 at ``NORMAL``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import clawstate
from clawstate import Event
from clawstate.events import Aggregate as ClawAggregate
from clawstate.events import applies

from .harness import (
    Case,
    Measurement,
    Peer,
    Sample,
    Settings,
    Table,
    comparison_table,
    fmt_int,
    fresh_dir,
    interleave,
    threaded_sample,
    time_loop,
)

__all__ = ["CASES", "DATA"]

AREA = "events_sqlite"

#: The event payload every system appends (~140 bytes of JSON).
DATA: dict[str, Any] = {
    "amount": 4250,
    "currency": "EUR",
    "account": "acc-000042",
    "note": "monthly transfer",
    "tags": ["salary", "auto"],
}
TYPE = "Deposited"


# -- clawstate -----------------------------------------------------------------------------


class Account(ClawAggregate):
    """The aggregate of the load case (same behaviour as :class:`ESAccount`)."""

    stream_prefix = "acct-"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.balance = 0
        self.deposits = 0

    @applies("Opened")
    def _opened(self, data: dict[str, Any]) -> None:
        self.owner = data["owner"]

    @applies(TYPE)
    def _deposited(self, data: dict[str, Any]) -> None:
        self.balance += data["amount"]
        self.deposits += 1


class Claw:
    """clawstate on SQLite; thread-safe, so every thread shares it."""

    def __init__(self, path: Path, durability: str = "process") -> None:
        self.name = f"clawstate ({durability})"
        self.store = clawstate.open(
            f"sqlite:///{path / 'state.db'}", sweep_interval=0, durability=durability
        )
        self.events = self.store.events

    def append_each(self, plan: Sequence[tuple[str, int]]) -> None:
        append = self.events.append
        for stream, expected in plan:
            append(stream, [Event(TYPE, DATA)], expected_version=expected)

    def append_batches(self, streams: Sequence[str], k: int) -> None:
        append = self.events.append
        for stream in streams:
            append(stream, [Event(TYPE, DATA) for _ in range(k)], expected_version=0)

    def fill(self, n: int, per_stream: int = 100) -> None:
        for start in range(0, n, per_stream):
            self.events.append(
                f"fill-{start}", [Event(TYPE, DATA) for _ in range(min(per_stream, n - start))]
            )

    def project_all(self) -> int:
        counts: dict[str, int] = {}
        total = 0
        after = 0
        read_all = self.events.read_all
        while True:
            page = read_all(after, 1000)
            for e in page:
                counts[e.type] = counts.get(e.type, 0) + 1
                total += e.data["amount"]
            if len(page) < 1000:
                return total
            after = page[-1].position

    def stats(self) -> dict[str, float]:
        gc: dict[str, float] = self.store.stats()["backends"]["default"]["group_commit"]
        return gc

    def close(self) -> None:
        self.store.close()


# -- raw sqlite3 ----------------------------------------------------------------------------

_RAW_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, "
    "version INTEGER NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, "
    "metadata TEXT, recorded_at REAL NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_sv ON events (stream, version)",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events (id)",
)
_RAW_INSERT = (
    "INSERT INTO events (stream, version, id, type, data, metadata, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, NULL, ?)"
)
_RAW_VERSION = "SELECT MAX(version) FROM events WHERE stream = ?"


class Raw:
    """Hand-written ``sqlite3`` doing clawstate's inserts and version check."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.name = f"raw sqlite3 {synchronous}"
        self.conn = sqlite3.connect(
            str(path / "raw.db"), isolation_level=None, check_same_thread=False, timeout=60.0
        )
        c = self.conn
        c.execute("PRAGMA journal_mode = WAL")
        c.execute(f"PRAGMA synchronous = {synchronous}")
        c.execute("PRAGMA cache_size = -65536")
        c.execute("PRAGMA mmap_size = 268435456")
        for stmt in _RAW_SCHEMA:
            c.execute(stmt)

    def append_each(self, plan: Sequence[tuple[str, int]]) -> None:
        ex = self.conn.execute
        dumps = json.dumps
        new_id = uuid.uuid4
        now = time.time
        for stream, expected in plan:
            data = dumps(DATA)
            eid = str(new_id())
            ex("BEGIN IMMEDIATE")
            current = ex(_RAW_VERSION, (stream,)).fetchone()[0] or 0
            if current != expected:
                ex("ROLLBACK")
                raise RuntimeError(f"{stream}: expected {expected}, found {current}")
            ex(_RAW_INSERT, (stream, current + 1, eid, TYPE, data, now()))
            ex("COMMIT")

    def append_batches(self, streams: Sequence[str], k: int) -> None:
        ex = self.conn.execute
        many = self.conn.executemany
        dumps = json.dumps
        new_id = uuid.uuid4
        now = time.time
        for stream in streams:
            t = now()
            rows = [(stream, v, str(new_id()), TYPE, dumps(DATA), t) for v in range(1, k + 1)]
            ex("BEGIN IMMEDIATE")
            if ex(_RAW_VERSION, (stream,)).fetchone()[0] is not None:
                ex("ROLLBACK")
                raise RuntimeError(f"{stream} exists")
            many(_RAW_INSERT, rows)
            ex("COMMIT")

    def fill(self, n: int, per_stream: int = 100) -> None:
        ex = self.conn.execute
        for start in range(0, n, per_stream):
            t = time.time()
            rows = [
                (f"fill-{start}", v + 1, str(uuid.uuid4()), TYPE, json.dumps(DATA), t)
                for v in range(min(per_stream, n - start))
            ]
            ex("BEGIN IMMEDIATE")
            self.conn.executemany(_RAW_INSERT, rows)
            ex("COMMIT")

    def project_all(self) -> int:
        ex = self.conn.execute
        loads = json.loads
        counts: dict[str, int] = {}
        total = 0
        after = 0
        while True:
            rows = ex(
                "SELECT position, stream, version, id, type, data, metadata, recorded_at "
                "FROM events WHERE position > ? ORDER BY position LIMIT 1000",
                (after,),
            ).fetchall()
            for r in rows:
                data = loads(r[5])
                counts[r[4]] = counts.get(r[4], 0) + 1
                total += data["amount"]
            if len(rows) < 1000:
                return total
            after = rows[-1][0]

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.conn.close()


# -- eventsourcing ------------------------------------------------------------------------


@functools.cache
def _es_classes() -> tuple[type[Any], type[Any], type[Any]]:
    """The eventsourcing Application and Aggregate classes (imported lazily: the
    library is a dev extra, needed only to run this area)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class ESAccount(Aggregate):  # type: ignore[misc]
        @event("Opened")  # type: ignore[misc]
        def __init__(self, owner: str) -> None:
            self.owner = owner
            self.balance = 0
            self.deposits = 0

        @event(TYPE)  # type: ignore[misc]
        def deposit(
            self, amount: int, currency: str, account: str, note: str, tags: list[str]
        ) -> None:
            self.balance += amount
            self.deposits += 1

    class Bank(Application):  # type: ignore[misc]
        pass

    class SnapshottingBank(Application):  # type: ignore[misc]
        snapshotting_intervals: ClassVar[dict[type[Any], int]] = {ESAccount: 50}

    return ESAccount, Bank, SnapshottingBank


def _es_env(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path / "es.db")}


def _es_patience(app: Any) -> None:
    """Let writers queue for 60 s instead of the pool's 5 s: under 8 threads on a busy
    disk a writer can wait longer than that for its turn (its speed is unchanged)."""
    app.recorder.datastore.pool.pool_timeout = 60.0


class ESRecorder:
    """eventsourcing's SQLite application recorder (its lowest-level write/read API)."""

    TOPIC = "bench.events_sqlite:Deposited"

    def __init__(self, path: Path) -> None:
        _, bank, _ = _es_classes()
        self.name = "eventsourcing recorder"
        self.app = bank(env=_es_env(path))
        _es_patience(self.app)
        self.recorder = self.app.recorder
        self.ids: dict[str, uuid.UUID] = {}

    def prepare(self, streams: Sequence[str]) -> None:
        """Stream names -> originator UUIDs, outside the timed loop."""
        for s in streams:
            self.ids[s] = uuid.uuid5(uuid.NAMESPACE_URL, s)

    def append_each(self, plan: Sequence[tuple[str, int]]) -> None:
        from eventsourcing.persistence import StoredEvent

        insert = self.recorder.insert_events
        dumps = json.dumps
        ids = self.ids
        topic = self.TOPIC
        for stream, expected in plan:
            insert([StoredEvent(ids[stream], expected + 1, topic, dumps(DATA).encode())])

    def append_batches(self, streams: Sequence[str], k: int) -> None:
        from eventsourcing.persistence import StoredEvent

        insert = self.recorder.insert_events
        dumps = json.dumps
        for stream in streams:
            oid = self.ids[stream]
            insert([StoredEvent(oid, v, self.TOPIC, dumps(DATA).encode()) for v in range(1, k + 1)])

    def fill(self, n: int, per_stream: int = 100) -> None:
        from eventsourcing.persistence import StoredEvent

        for start in range(0, n, per_stream):
            oid = uuid.uuid4()
            self.recorder.insert_events(
                [
                    StoredEvent(oid, v + 1, self.TOPIC, json.dumps(DATA).encode())
                    for v in range(min(per_stream, n - start))
                ]
            )

    def project_all(self) -> int:
        select = self.recorder.select_notifications
        loads = json.loads
        counts: dict[str, int] = {}
        total = 0
        start = 1
        while True:
            page = select(start, 1000)
            for n in page:
                data = loads(n.state)
                counts[n.topic] = counts.get(n.topic, 0) + 1
                total += data["amount"]
            if len(page) < 1000:
                return total
            start = page[-1].id + 1

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.app.close()


class ESApp:
    """eventsourcing's Application + Aggregate API (``app.save`` / ``repository.get``)."""

    def __init__(self, path: Path, snapshots: bool = False) -> None:
        account, bank, snapshotting = _es_classes()
        self.account = account
        self.name = "eventsourcing Application" + (" (snapshot every 50)" if snapshots else "")
        self.app = (snapshotting if snapshots else bank)(env=_es_env(path))
        _es_patience(self.app)
        self.aggs: dict[str, Any] = {}

    def append_each(self, plan: Sequence[tuple[str, int]]) -> None:
        save = self.app.save
        aggs = self.aggs
        for stream, expected in plan:
            if expected == 0:
                agg = aggs[stream] = self.account(stream)
            else:
                agg = aggs[stream]
                agg.deposit(**DATA)
            save(agg)

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.app.close()


# -- helpers --------------------------------------------------------------------------------


@contextlib.contextmanager
def open_systems(
    factories: Sequence[Callable[[Path], Any]], settings: Settings, label: str
) -> Iterator[list[Any]]:
    """Each system in its own fresh temp dir for the whole case; closed, then removed."""
    with contextlib.ExitStack() as stack:
        systems: list[Any] = []
        for factory in factories:
            path = stack.enter_context(fresh_dir(settings, label))
            system = factory(path)
            stack.callback(system.close)
            systems.append(system)
        yield systems


def _plan(prefix: str, streams: int, per_stream: int) -> list[tuple[str, int]]:
    """``per_stream`` passes over ``streams`` streams: (stream, expected version)."""
    names = [f"{prefix}-{i:06d}" for i in range(streams)]
    return [(name, v) for v in range(per_stream) for name in names]


def _fsync_bound(settings: Settings) -> Settings:
    """Settings for the `power` cases: one fsync per commit makes a round's rate swing
    with every other job's disk I/O on a shared machine (20x seen here), so these
    cases run more, shorter interleaved rounds and report the median round."""
    if settings.quick:
        return settings
    return dataclasses.replace(settings, rounds=max(15, settings.rounds * 3), stat="median")


def _table(
    case: str,
    title: str,
    intro: str,
    ms: dict[str, Measurement],
    names: list[str],
    targets: list[float | None],
    *,
    unit: str,
    subject_note: str = "",
    peer_notes: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> Table:
    subject = ms[names[0]]
    peer_notes = list(peer_notes) or [""] * len(targets)
    peers = [
        Peer(ms[n], t, note) for n, t, note in zip(names[1:], targets, peer_notes, strict=True)
    ]
    return comparison_table(
        f"{case}: {title}",
        title,
        intro,
        subject,
        peers,
        unit=unit,
        subject_note=subject_note,
        notes=notes,
    )


# -- case 1: single appends, one writer ------------------------------------------------------


def _single_trial(system: Any, streams: int, per_stream: int) -> Callable[[], Sample]:
    rounds = iter(range(1, 1_000_000))

    def trial() -> Sample:
        plan = _plan(f"r{next(rounds)}", streams, per_stream)
        if hasattr(system, "prepare"):
            system.prepare(sorted({s for s, _ in plan}))
        return time_loop(len(plan), lambda: system.append_each(plan))

    return trial


def case_single_append(settings: Settings) -> list[Table]:
    tables: list[Table] = []
    # `power`: one fsync per append for every system, so N is scaled down (the
    # disk here takes ~0.2-1 ms per fsync): 100 streams x 5 per round, 15 rounds.
    power_streams = settings.n(100, 40)
    process_streams = settings.n(20_000, 200)
    plans: list[tuple[str, int, list[Callable[[Path], Any]], list[float | None], list[str]]] = [
        (
            "power",
            power_streams,
            [lambda p: Claw(p, "power"), ESRecorder, ESApp],
            [1.5, None],
            ["insert_events, synchronous=FULL", "app.save(aggregate): context"],
        ),
        (
            "process",
            process_streams,
            [lambda p: Claw(p, "process"), lambda p: Raw(p, "NORMAL")],
            [0.7],
            ["BEGIN IMMEDIATE · SELECT MAX(version) · INSERT · COMMIT"],
        ),
    ]
    for mode, streams, factories, targets, peer_notes in plans:
        run_settings = _fsync_bound(settings) if mode == "power" else settings
        with open_systems(factories, settings, "single") as systems:
            for s in systems:  # warm-up: open connections, create the tables' first pages
                if hasattr(s, "prepare"):
                    s.prepare([f"warm-{i:06d}" for i in range(20)])
                s.append_each(_plan("warm", 20, 2))
            names = [s.name for s in systems]
            ms = interleave([(s.name, _single_trial(s, streams, 5)) for s in systems], run_settings)
        sync = "FULL" if mode == "power" else "NORMAL"
        tables.append(
            _table(
                "single_append",
                f"E1{'ab'[len(tables)]}. Single appends with an expected-version check, one "
                f"writer, `{mode}`",
                f"{fmt_int(streams)} new streams × 5 events per round, one append (one event, "
                "one commit) at a time with the expected version (first `NO_STREAM`, then 1…4), "
                f"passes interleaved across the streams; WAL, `synchronous={sync}` for every "
                "system."
                + (
                    " Scaled down from 20,000 streams × 5: at one fsync per append the full "
                    "size takes minutes per system and round; instead "
                    f"{run_settings.rounds} short interleaved rounds, headline = the "
                    f"{run_settings.stat} round (fsync latency on this shared disk swings "
                    "with other jobs' I/O)."
                    if mode == "power"
                    else ""
                ),
                ms,
                names,
                targets,
                unit="append",
                peer_notes=peer_notes,
            )
        )
    return tables


# -- case 2: eight concurrent writers ---------------------------------------------------------


def _concurrent_trial(system: Any, threads: int, per_thread: int) -> Callable[[], Sample]:
    rounds = iter(range(1, 1_000_000))

    def trial() -> Sample:
        r = next(rounds)
        plans = [_plan(f"r{r}-t{t}", per_thread // 5, 5) for t in range(threads)]
        if hasattr(system, "prepare"):
            system.prepare(sorted({s for p in plans for s, _ in p}))
        work = [functools.partial(system.append_each, plans[t]) for t in range(threads)]
        return threaded_sample(sum(len(p) for p in plans), work, stats=system.stats)

    return trial


def case_concurrent_append(settings: Settings) -> list[Table]:
    threads = 8
    per_thread = settings.n(100, 20)
    run_settings = _fsync_bound(settings)
    with open_systems([lambda p: Claw(p, "power"), ESRecorder], settings, "conc") as systems:
        for s in systems:
            if hasattr(s, "prepare"):
                s.prepare([f"warm-{i:06d}" for i in range(20)])
            s.append_each(_plan("warm", 20, 2))
        names = [s.name for s in systems]
        ms = interleave(
            [(s.name, _concurrent_trial(s, threads, per_thread)) for s in systems], run_settings
        )
    m = ms[names[0]]
    return [
        _table(
            "concurrent_append",
            f"E2. {threads} concurrent writers, single appends, `power`",
            f"{threads} threads × {fmt_int(per_thread)} appends per round, each thread on its "
            "own new streams (5 events each, expected version checked); clawstate shares one "
            "store (group commit: one transaction and one fsync per batch); eventsourcing's "
            "recorder gives each thread a pooled connection and commits every append. "
            "`synchronous=FULL`. Time = first thread's start to last thread's end. "
            f"{run_settings.rounds} short interleaved rounds, headline = the "
            f"{run_settings.stat} round (fsync-bound: see E1a).",
            ms,
            names,
            [5.0],
            unit="append",
            subject_note=f"mean group-commit batch {m.extra('mean_batch'):.1f}",
            peer_notes=["insert_events from 8 threads"],
        )
    ]


# -- case 3: batched appends --------------------------------------------------------------------


def _batch_trial(system: Any, streams: int, k: int) -> Callable[[], Sample]:
    rounds = iter(range(1, 1_000_000))

    def trial() -> Sample:
        names = [f"b{next(rounds)}-{i:06d}" for i in range(streams)]
        return time_loop(streams * k, lambda: system.append_batches(names, k))

    return trial


def case_batched_append(settings: Settings) -> list[Table]:
    streams = settings.n(20_000, 200)
    k = 5
    with open_systems(
        [lambda p: Claw(p, "process"), lambda p: Raw(p)], settings, "batch"
    ) as systems:
        for s in systems:
            s.append_batches([f"warm-{i}" for i in range(20)], k)
        names = [s.name for s in systems]
        ms = interleave([(s.name, _batch_trial(s, streams, k)) for s in systems], settings)
    return [
        _table(
            "batched_append",
            f"E3. Batched appends: {k} events per call, `process`",
            f"{fmt_int(streams)} new streams per round, each created by one append of {k} "
            "events (`NO_STREAM`); raw sqlite3: `BEGIN IMMEDIATE`, the version check, "
            f"`executemany` of the {k} rows, `COMMIT`. `synchronous=NORMAL`.",
            ms,
            names,
            [0.7],
            unit="event",
            peer_notes=["executemany"],
        )
    ]


# -- case 4: read_all with a trivial projection -------------------------------------------------


def fill_and_project(
    systems: Sequence[Any], n: int, settings: Settings
) -> tuple[list[str], list[Any]]:
    """Fill every system's log with ``n`` events, check they project alike, then time
    ``project_all`` in interleaved rounds; returns the names and measurements."""
    expected = None
    for s in systems:
        s.fill(n)
        total = s.project_all()  # warm: every page read once
        assert expected is None or total == expected, (s.name, total, expected)
        expected = total
    ms = interleave(
        [(s.name, (lambda s=s: time_loop(n, s.project_all))) for s in systems], settings
    )
    return [s.name for s in systems], ms


def case_read_all(settings: Settings) -> list[Table]:
    n = settings.n(100_000, 2_000)
    factories: list[Callable[[Path], Any]] = [lambda p: Claw(p), ESRecorder, lambda p: Raw(p)]
    with open_systems(factories, settings, "readall") as systems:
        names, ms = fill_and_project(systems, n, settings)
    return [
        _table(
            "read_all",
            f"E4. Reading the global log: {fmt_int(n)} events with a trivial projection",
            f"The whole log of {fmt_int(n)} events (1,000 streams of 100), in global order, "
            "in pages of 1,000; the projection counts events per type and sums one field "
            "of the decoded data. clawstate: `read_all` (RecordedEvent objects, data decoded); "
            "eventsourcing: `select_notifications` + `json.loads`; raw: `SELECT … WHERE "
            "position > ? ORDER BY position LIMIT 1000` + `json.loads`.",
            ms,
            names,
            [2.0, 0.8],
            unit="event",
            peer_notes=["select_notifications", "SELECT + json.loads"],
        )
    ]


# -- case 5: loading aggregates -----------------------------------------------------------------


def case_load_aggregates(settings: Settings) -> list[Table]:
    n_aggs = settings.n(1_000, 30)
    n_events = 100
    tables: list[Table] = []
    for snapshots in (False, True):
        every = 50 if snapshots else None

        factories: list[Callable[[Path], Any]] = [
            functools.partial(_ClawLoader, every=every),
            functools.partial(_ESLoader, snapshots=snapshots),
        ]
        with open_systems(factories, settings, "load") as systems:
            for s in systems:
                s.setup(n_aggs, n_events)
                s.load_all()  # warm
            names = [s.name for s in systems]
            ms = interleave(
                [(s.name, (lambda s=s: time_loop(n_aggs, s.load_all))) for s in systems],
                settings,
            )
        label = "with a snapshot every 50 events" if snapshots else "without snapshots"
        tables.append(
            _table(
                "load_aggregates",
                f"E5{'ab'[len(tables)]}. Loading {fmt_int(n_aggs)} aggregates of {n_events} "
                f"events, {label}",
                f"Each aggregate: an `Opened` event and {n_events - 1} `{TYPE}` events, saved "
                "in one append. A round loads every aggregate once by id (clawstate "
                "`repository(Account"
                + (", snapshot_every=50" if snapshots else "")
                + ").load`; eventsourcing `app.repository.get`"
                + (" with `snapshotting_intervals = {Account: 50}`" if snapshots else "")
                + "); the state is replayed through the apply-methods.",
                ms,
                names,
                [3.0],
                unit="load",
            )
        )
    return tables


class _ClawLoader:
    def __init__(self, path: Path, every: int | None) -> None:
        self.name = "clawstate (process)" + (" snapshot every 50" if every else "")
        self.store = clawstate.open(f"sqlite:///{path / 'state.db'}", sweep_interval=0)
        self.repo = self.store.events.repository(Account, snapshot_every=every)
        self.ids: list[str] = []

    def setup(self, n: int, k: int) -> None:
        for i in range(n):
            acct = Account(f"a{i:05d}")
            acct.record("Opened", {"owner": f"o{i}"})
            for _ in range(k - 1):
                acct.record(TYPE, DATA)
            self.repo.save(acct)
            self.ids.append(acct.id)

    def load_all(self) -> None:
        load = self.repo.load
        for i in self.ids:
            acct = load(i)
            assert acct.deposits == 99

    def close(self) -> None:
        self.store.close()


class _ESLoader:
    def __init__(self, path: Path, snapshots: bool) -> None:
        self.inner = ESApp(path, snapshots)
        self.name = self.inner.name
        self.ids: list[Any] = []

    def setup(self, n: int, k: int) -> None:
        app = self.inner.app
        for i in range(n):
            acct = self.inner.account(f"o{i}")
            for _ in range(k - 1):
                acct.deposit(**DATA)
            app.save(acct)
            self.ids.append(acct.id)

    def load_all(self) -> None:
        get = self.inner.app.repository.get
        for i in self.ids:
            acct = get(i)
            assert acct.deposits == 99

    def close(self) -> None:
        self.inner.close()


CASES = [
    Case(
        AREA,
        "single_append",
        "Event appends with an expected version, one writer",
        case_single_append,
    ),
    Case(AREA, "concurrent_append", "8 concurrent event writers", case_concurrent_append),
    Case(AREA, "batched_append", "Batched event appends", case_batched_append),
    Case(AREA, "read_all", "Reading the global log", case_read_all),
    Case(AREA, "load_aggregates", "Loading aggregates", case_load_aggregates),
]
