"""The event store on PostgreSQL vs the ``eventsourcing`` library and raw ``psycopg``.

The PostgreSQL twin of :mod:`bench.events_sqlite` (same payload, plans, aggregates
and table shapes), every system against the same server in the same run.

Systems:

* ``clawstate`` — ``clawstate.open("postgresql://…?schema=<fresh>")``;
  ``store.events`` appends with an expected version, ``read_all`` pages,
  ``repository(…).load``.  Event payloads are encoded (msgspec JSON) inside the
  timed loop.  An append rides the backend's group commit, and a batch of appends
  to distinct streams is one autocommit statement (lock the ``head`` row, check
  the versions, number and insert the events, notify): one round trip and one WAL
  flush per batch, so concurrent appends of one process share both.
* ``eventsourcing recorder`` — ``eventsourcing`` 9's PostgreSQL application
  recorder (``insert_events`` of ``StoredEvent``\\s, ``select_notifications``),
  created through its ``Application`` with ``PERSISTENCE_MODULE=eventsourcing.postgres``
  in a fresh ``POSTGRES_SCHEMA``, and a pool of ``POSTGRES_POOL_SIZE=8`` connections
  (+ its default overflow of 10), so each of 8 writer threads holds its own.  Each
  ``insert_events`` is one pipelined transaction: ``LOCK TABLE … IN EXCLUSIVE
  MODE`` (its commit-order guarantee), ``NOTIFY``, ``INSERT … RETURNING
  notification_id``, ``COMMIT``.  Payloads are ``json.dumps(...).encode()`` in the
  timed loop (``json.loads`` on reads).  Its expected-version check is the
  ``(originator_id, originator_version)`` primary key.
* ``eventsourcing Application`` — the same library's ``Application`` and
  ``Aggregate`` (``@event`` methods, ``app.save``, ``app.repository.get``; with
  ``snapshotting_intervals`` for the snapshot case), same settings.
* raw ``psycopg`` — an ``events`` table shaped like clawstate's (``position bigint
  PRIMARY KEY``, unique ``(stream, version)`` and unique ``id`` indexes, ``data
  text``) plus a one-row ``head(pos)``; one autocommit connection per thread.  Each
  append is one transaction: ``BEGIN``, ``UPDATE head SET pos = pos + 1 RETURNING
  pos`` (the row lock that makes positions gap-free in commit order, as
  clawstate's head and eventsourcing's table lock do), ``SELECT MAX(version)``,
  the check, the ``INSERT``, ``COMMIT`` — five plain round trips, the
  straightforward hand-written floor.  ``json.dumps`` and ``uuid4`` run in its
  timed loop as clawstate's encoding and id run in its own.

Durability: the same for every system — the server's ``synchronous_commit``
(PostgreSQL's default ``on``: a COMMIT returns once its WAL is flushed); nobody
changes it per session.  Every system lives in a fresh schema of the server at
``CLAWSTATE_BENCH_POSTGRES_URL`` (default ``postgresql://root@127.0.0.1:5432/test``),
dropped at the end of the case.  Without a reachable server every case reports
that it was skipped.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import clawstate
from clawstate import ANY, Event

from . import events_sqlite as lite
from .events_sqlite import DATA, TYPE, Account, _fsync_bound, _plan, _table
from .harness import Case, Sample, Settings, Table, fmt_int, interleave, time_loop
from .kv_postgres import URL, _admin, _reachable, _skipped

__all__ = ["CASES"]

AREA = "events_postgres"

#: Streams (of 100 events) per commit when filling the log for the read case.
FILL_STREAMS = 10

#: Connections eventsourcing keeps open (``POSTGRES_POOL_SIZE``): one per writer thread.
ES_POOL = 8


def _new_schema(kind: str) -> str:
    return f"clawbench_ev_{kind}_{uuid.uuid4().hex[:8]}"


def _drop_schema(schema: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _synchronous_commit() -> str:
    with _admin() as conn:
        row = conn.execute("SHOW synchronous_commit").fetchone()
    return str(row[0]) if row else "?"


def _skip_all(titles: Sequence[str], why: str) -> list[Table]:
    return [t for title in titles for t in _skipped(title, why)]


# -- clawstate -----------------------------------------------------------------------------


class Claw(lite.Claw):
    """clawstate on PostgreSQL in its own schema; thread-safe, so every thread shares it."""

    def __init__(self) -> None:
        self.schema = _new_schema("claw")
        self.name = "clawstate"
        sep = "&" if "?" in URL else "?"
        self.store = clawstate.open(f"{URL}{sep}schema={self.schema}", sweep_interval=0)
        self.events = self.store.events

    def fill(self, n: int, per_stream: int = 100) -> None:
        """Streams of ``per_stream`` events, ten streams per commit (untimed set-up)."""
        appends: list[tuple[str, Sequence[Event], Any]] = [
            (f"fill-{start}", [Event(TYPE, DATA) for _ in range(min(per_stream, n - start))], ANY)
            for start in range(0, n, per_stream)
        ]
        for i in range(0, len(appends), FILL_STREAMS):
            self.events.append_many(appends[i : i + FILL_STREAMS])

    def stats(self) -> dict[str, float]:
        gc: dict[str, float] = self.store.backend.stats()["group_commit"]
        return gc

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            _drop_schema(self.schema)


# -- raw psycopg ----------------------------------------------------------------------------

_RAW_SCHEMA = (
    "CREATE TABLE {s}.head (id integer PRIMARY KEY, pos bigint NOT NULL)",
    "INSERT INTO {s}.head VALUES (1, 0)",
    'CREATE TABLE {s}.events (position bigint PRIMARY KEY, stream text COLLATE "C" NOT NULL, '
    "version bigint NOT NULL, id text NOT NULL, type text NOT NULL, data text NOT NULL, "
    "metadata text, recorded_at double precision NOT NULL)",
    "CREATE UNIQUE INDEX events_sv ON {s}.events (stream, version)",
    "CREATE UNIQUE INDEX events_id ON {s}.events (id)",
)


class Raw:
    """Hand-written psycopg doing clawstate's head lock, version check and insert."""

    def __init__(self) -> None:
        self.name = "raw psycopg"
        self.schema = _new_schema("raw")
        s = f'"{self.schema}"'
        with _admin() as conn:
            conn.execute(f"CREATE SCHEMA {s}")
            for stmt in _RAW_SCHEMA:
                conn.execute(stmt.format(s=s))
        self.bump = f"UPDATE {s}.head SET pos = pos + %s WHERE id = 1 RETURNING pos"
        self.version = f"SELECT MAX(version) FROM {s}.events WHERE stream = %s"
        self.insert = (
            f"INSERT INTO {s}.events (position, stream, version, id, type, data, metadata, "
            "recorded_at) VALUES (%s, %s, %s, %s, %s, %s, NULL, %s)"
        )
        self.page = (
            "SELECT position, stream, version, id, type, data, metadata, recorded_at "
            f"FROM {s}.events WHERE position > %s ORDER BY position LIMIT 1000"
        )
        self._idle: list[Any] = []
        self._conns: list[Any] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """An autocommit connection of its own for the calling thread (a minimal pool:
        the connections the warm-up opened are reused by every later round's threads)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            import psycopg

            conn = psycopg.connect(URL, autocommit=True)
            with self._lock:
                self._conns.append(conn)
        try:
            yield conn
        finally:
            with self._lock:
                self._idle.append(conn)

    def append_each(self, plan: Sequence[tuple[str, int]]) -> None:
        with self.connection() as conn:
            self._append_each(conn, plan)

    def _append_each(self, conn: Any, plan: Sequence[tuple[str, int]]) -> None:
        ex = conn.execute
        transaction = conn.transaction
        dumps = json.dumps
        new_id = uuid.uuid4
        now = time.time
        bump, version, insert = self.bump, self.version, self.insert
        for stream, expected in plan:
            data = dumps(DATA)
            eid = str(new_id())
            with transaction():
                pos = ex(bump, (1,)).fetchone()[0]
                current = ex(version, (stream,)).fetchone()[0] or 0
                if current != expected:
                    raise RuntimeError(f"{stream}: expected {expected}, found {current}")
                ex(insert, (pos, stream, current + 1, eid, TYPE, data, now()))

    def append_batches(self, streams: Sequence[str], k: int) -> None:
        with self.connection() as conn:
            self._append_batches(conn, streams, k)

    def _append_batches(self, conn: Any, streams: Sequence[str], k: int) -> None:
        ex = conn.execute
        cur = conn.cursor()
        dumps = json.dumps
        new_id = uuid.uuid4
        now = time.time
        for stream in streams:
            t = now()
            ids = [str(new_id()) for _ in range(k)]
            data = [dumps(DATA) for _ in range(k)]
            with conn.transaction():
                last = ex(self.bump, (k,)).fetchone()[0]
                if ex(self.version, (stream,)).fetchone()[0] is not None:
                    raise RuntimeError(f"{stream} exists")
                first = last - k + 1
                cur.executemany(
                    self.insert,
                    [(first + i, stream, i + 1, ids[i], TYPE, data[i], t) for i in range(k)],
                )

    def fill(self, n: int, per_stream: int = 100) -> None:
        with self.connection() as conn:
            self._fill(conn, n, per_stream)

    def _fill(self, conn: Any, n: int, per_stream: int) -> None:
        chunk = per_stream * FILL_STREAMS
        for base in range(0, n, chunk):
            k = min(chunk, n - base)
            t = time.time()
            with conn.transaction():
                first = conn.execute(self.bump, (k,)).fetchone()[0] - k + 1
                conn.cursor().executemany(
                    self.insert,
                    [
                        (first + v, f"fill-{base + v // per_stream * per_stream}",
                         v % per_stream + 1, str(uuid.uuid4()), TYPE, json.dumps(DATA), t)
                        for v in range(k)
                    ],
                )  # fmt: skip

    def project_all(self) -> int:
        with self.connection() as conn:
            return self._project_all(conn)

    def _project_all(self, conn: Any) -> int:
        ex = conn.execute
        loads = json.loads
        page = self.page
        counts: dict[str, int] = {}
        total = 0
        after = 0
        while True:
            rows = ex(page, (after,)).fetchall()
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
        try:
            for conn in self._conns:
                conn.close()
        finally:
            _drop_schema(self.schema)


# -- eventsourcing ------------------------------------------------------------------------


def _es_env(schema: str) -> dict[str, str]:
    """eventsourcing's PostgreSQL settings for ``URL``, in ``schema``."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(URL)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(info.get("dbname", "")),
        "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(info.get("port", "5432")),
        "POSTGRES_USER": str(info.get("user", "")),
        "POSTGRES_PASSWORD": str(info.get("password", "")),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(ES_POOL),
    }


def _es_app(cls: type[Any], schema: str) -> Any:
    """An eventsourcing application whose tables live in the new ``schema``."""
    with _admin() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        return cls(env=_es_env(schema))
    except BaseException:
        _drop_schema(schema)
        raise


class ESRecorder(lite.ESRecorder):
    """eventsourcing's PostgreSQL application recorder (its lowest-level write/read API)."""

    TOPIC = "bench.events_postgres:Deposited"

    def __init__(self) -> None:
        _, bank, _ = lite._es_classes()
        self.name = "eventsourcing recorder"
        self.schema = _new_schema("es")
        self.app = _es_app(bank, self.schema)
        self.recorder = self.app.recorder
        self.ids: dict[str, uuid.UUID] = {}

    def fill(self, n: int, per_stream: int = 100) -> None:
        """Streams of ``per_stream`` events, ten streams per commit (untimed set-up)."""
        from eventsourcing.persistence import StoredEvent

        chunk = per_stream * FILL_STREAMS
        for base in range(0, n, chunk):
            oids = [uuid.uuid4() for _ in range(FILL_STREAMS)]
            self.recorder.insert_events(
                [
                    StoredEvent(
                        oids[v // per_stream],
                        v % per_stream + 1,
                        self.TOPIC,
                        json.dumps(DATA).encode(),
                    )
                    for v in range(min(chunk, n - base))
                ]
            )

    def close(self) -> None:
        try:
            self.app.close()
        finally:
            _drop_schema(self.schema)


class ESApp(lite.ESApp):
    """eventsourcing's Application + Aggregate API (``app.save`` / ``repository.get``)."""

    def __init__(self, snapshots: bool = False) -> None:
        account, bank, snapshotting = lite._es_classes()
        self.account = account
        self.name = "eventsourcing Application" + (" (snapshot every 50)" if snapshots else "")
        self.schema = _new_schema("esapp")
        self.app = _es_app(snapshotting if snapshots else bank, self.schema)
        self.aggs: dict[str, Any] = {}

    def close(self) -> None:
        try:
            self.app.close()
        finally:
            _drop_schema(self.schema)


# -- helpers --------------------------------------------------------------------------------


@contextlib.contextmanager
def open_systems(factories: Sequence[Callable[[], Any]]) -> Iterator[list[Any]]:
    """Each system in its own fresh schema for the whole case; closed, then dropped."""
    with contextlib.ExitStack() as stack:
        systems: list[Any] = []
        for factory in factories:
            system = factory()
            stack.callback(system.close)
            systems.append(system)
        yield systems


def _warm(systems: Sequence[Any]) -> None:
    """Open connections, prepare statements, create the tables' first pages."""
    for s in systems:
        if hasattr(s, "prepare"):
            s.prepare([f"warm-{i:06d}" for i in range(20)])
        s.append_each(_plan("warm", 20, 3))


class _Prefixed:
    """``system`` with every stream name prefixed: a warm-up round's streams differ from
    the measured rounds' (whose trial numbers its rounds from 1 too)."""

    def __init__(self, system: Any, prefix: str) -> None:
        self.system = system
        self.prefix = prefix
        if hasattr(system, "prepare"):
            self.prepare = lambda streams: system.prepare([prefix + s for s in streams])

    def append_each(self, plan: Sequence[tuple[str, int]]) -> None:
        self.system.append_each([(self.prefix + s, e) for s, e in plan])

    def stats(self) -> dict[str, float]:
        stats: dict[str, float] = self.system.stats()
        return stats


def _durability(sync: str) -> str:
    return (
        f"Same durability for every system: the server's `synchronous_commit = {sync}`"
        + (
            " (PostgreSQL's default: a COMMIT returns once its WAL is flushed)"
            if sync == "on"
            else ""
        )
        + "."
    )


# -- case 1: single appends, one writer ------------------------------------------------------

E1 = "E1. PostgreSQL: single appends with an expected-version check, one writer"


def case_single_append(settings: Settings) -> list[Table]:
    why = _reachable()
    if why:
        return _skip_all([E1], why)
    streams = settings.n(40, 10)
    run_settings = _fsync_bound(settings)
    sync = _synchronous_commit()
    with open_systems([Claw, ESRecorder, ESApp, Raw]) as systems:
        _warm(systems)
        names = [s.name for s in systems]
        ms = interleave(
            [(s.name, lite._single_trial(s, streams, 5)) for s in systems], run_settings
        )
    return [
        _table(
            "pg_single_append",
            E1,
            f"{fmt_int(streams)} new streams × 5 events per round, one append (one event, one "
            "commit) at a time with the expected version (first `NO_STREAM`, then 1…4), "
            "passes interleaved across the streams. "
            + _durability(sync)
            + f" One commit = one WAL flush, so {run_settings.rounds} short interleaved "
            f"rounds, headline = the {run_settings.stat} round (flush latency on this shared "
            "disk swings with other jobs' I/O).",
            ms,
            names,
            [2.0, 2.0, None],
            unit="append",
            peer_notes=[
                "insert_events: LOCK TABLE · NOTIFY · INSERT, pipelined",
                "app.save(aggregate)",
                "BEGIN · UPDATE head · SELECT MAX(version) · INSERT · COMMIT",
            ],
        )
    ]


# -- case 2: eight concurrent writers ---------------------------------------------------------

E2 = "E2. PostgreSQL: 8 concurrent writers, single appends"


def case_concurrent_append(settings: Settings) -> list[Table]:
    why = _reachable()
    if why:
        return _skip_all([E2], why)
    threads = 8
    per_thread = settings.n(60, 10)
    run_settings = _fsync_bound(settings)
    sync = _synchronous_commit()
    with open_systems([Claw, ESRecorder, Raw]) as systems:
        for s in systems:  # every thread's connection opened, statements prepared
            _warm([s])
            lite._concurrent_trial(_Prefixed(s, "w"), threads, 10)()
        names = [s.name for s in systems]
        ms = interleave(
            [(s.name, lite._concurrent_trial(s, threads, per_thread)) for s in systems],
            run_settings,
        )
    m = ms[names[0]]
    return [
        _table(
            "pg_concurrent_append",
            E2,
            f"{threads} threads × {fmt_int(per_thread)} appends per round, each thread on its "
            "own new streams (5 events each, expected version checked); clawstate shares one "
            "store (group commit: one transaction and one WAL flush per batch); "
            f"eventsourcing's recorder has a pool of {ES_POOL} connections, one per thread, "
            "and commits every append; raw psycopg: one connection per thread, a "
            "transaction per append. "
            + _durability(sync)
            + f" Time = first thread's start to last thread's end. {run_settings.rounds} "
            f"short interleaved rounds, headline = the {run_settings.stat} round.",
            ms,
            names,
            [5.0, None],
            unit="append",
            subject_note=f"mean group-commit batch {m.extra('mean_batch'):.1f}",
            peer_notes=[
                f"insert_events from {threads} threads",
                f"{threads} connections, UPDATE head serialises them",
            ],
        )
    ]


# -- case 3: batched appends --------------------------------------------------------------------

E3 = "E3. PostgreSQL: batched appends, 5 events per call"


def case_batched_append(settings: Settings) -> list[Table]:
    why = _reachable()
    if why:
        return _skip_all([E3], why)
    streams = settings.n(100, 20)
    k = 5
    sync = _synchronous_commit()
    with open_systems([Claw, ESRecorder, Raw]) as systems:
        for s in systems:
            if hasattr(s, "prepare"):
                s.prepare([f"warm-{i}" for i in range(20)])
            s.append_batches([f"warm-{i}" for i in range(20)], k)
        names = [s.name for s in systems]

        def trial(s: Any) -> Callable[[], Sample]:
            rounds = iter(range(1, 1_000_000))

            def run() -> Sample:
                streams_ = [f"b{next(rounds)}-{i:06d}" for i in range(streams)]
                if hasattr(s, "prepare"):
                    s.prepare(streams_)
                return time_loop(streams * k, lambda: s.append_batches(streams_, k))

            return run

        ms = interleave([(s.name, trial(s)) for s in systems], settings)
    return [
        _table(
            "pg_batched_append",
            E3,
            f"{fmt_int(streams)} new streams per round, each created by one append of {k} "
            "events (`NO_STREAM`), one writer; eventsourcing: one `insert_events` of the "
            f"{k}; raw psycopg: one transaction (head, version check, `executemany` of the "
            f"{k} rows). " + _durability(sync),
            ms,
            names,
            [None, None],
            unit="event",
            peer_notes=["insert_events of 5", "executemany"],
        )
    ]


# -- case 4: read_all with a trivial projection -------------------------------------------------

E4 = "E4. PostgreSQL: reading the global log"


def case_read_all(settings: Settings) -> list[Table]:
    why = _reachable()
    if why:
        return _skip_all([E4], why)
    n = settings.n(100_000, 2_000)
    with open_systems([Claw, ESRecorder, Raw]) as systems:
        names, ms = lite.fill_and_project(systems, n, settings)
    return [
        _table(
            "pg_read_all",
            f"{E4}: {fmt_int(n)} events with a trivial projection",
            f"The whole log of {fmt_int(n)} events (streams of 100), in global order, in pages "
            "of 1,000; the projection counts events per type and sums one field of the "
            "decoded data. clawstate: `read_all` (RecordedEvent objects, data decoded); "
            "eventsourcing: `select_notifications` + `json.loads`; raw: `SELECT … WHERE "
            "position > %s ORDER BY position LIMIT 1000` + `json.loads`, one connection.",
            ms,
            names,
            [None, None],
            unit="event",
            peer_notes=["select_notifications", "SELECT + json.loads"],
        )
    ]


# -- case 5: loading aggregates -----------------------------------------------------------------

E5 = "E5{}. PostgreSQL: loading"

#: Aggregates per eventsourcing ``app.save(*aggregates)`` call in the set-up.
SAVE_CHUNK = 10


def _save_concurrently(save: Callable[[Any], object], items: Sequence[Any]) -> None:
    """The untimed set-up: save from 8 threads, so commits share WAL flushes."""
    with ThreadPoolExecutor(8) as pool:
        for _ in pool.map(save, items):
            pass


class _ClawLoader(lite._ClawLoader):
    """One store for both tables: saved through a ``snapshot_every=50`` repository (the
    events, plus a snapshot at version 100); :meth:`use` picks the repository that
    loads — without ``snapshot_every`` a load reads the events only."""

    def __init__(self) -> None:
        self.schema = _new_schema("load")
        sep = "&" if "?" in URL else "?"
        self.store = clawstate.open(f"{URL}{sep}schema={self.schema}", sweep_interval=0)
        self.use(50)
        self.ids: list[str] = []

    def use(self, every: int | None) -> None:
        self.name = "clawstate" + (" snapshot every 50" if every else "")
        self.repo = self.store.events.repository(Account, snapshot_every=every)

    def setup(self, n: int, k: int) -> None:
        accounts = []
        for i in range(n):
            acct = Account(f"a{i:05d}")
            acct.record("Opened", {"owner": f"o{i}"})
            for _ in range(k - 1):
                acct.record(TYPE, DATA)
            accounts.append(acct)
        _save_concurrently(self.repo.save, accounts)
        self.ids = [a.id for a in accounts]

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            _drop_schema(self.schema)


class _ESLoader(lite._ESLoader):
    def __init__(self, snapshots: bool) -> None:
        self.inner = ESApp(snapshots)
        self.name = self.inner.name
        self.ids: list[Any] = []

    def setup(self, n: int, k: int) -> None:
        accounts = []
        for i in range(n):
            acct = self.inner.account(f"o{i}")
            for _ in range(k - 1):
                acct.deposit(**DATA)
            accounts.append(acct)
        chunks = [accounts[i : i + SAVE_CHUNK] for i in range(0, n, SAVE_CHUNK)]
        _save_concurrently(lambda chunk: self.inner.app.save(*chunk), chunks)
        self.ids = [a.id for a in accounts]


def case_load_aggregates(settings: Settings) -> list[Table]:
    why = _reachable()
    if why:
        return _skip_all([E5.format("a"), E5.format("b")], why)
    n_aggs = settings.n(1_000, 20)
    n_events = 100
    tables: list[Table] = []
    with open_systems([_ClawLoader]) as (claw,):
        claw.setup(n_aggs, n_events)
        for snapshots in (False, True):
            claw.use(50 if snapshots else None)
            with open_systems([functools.partial(_ESLoader, snapshots=snapshots)]) as (es,):
                es.setup(n_aggs, n_events)
                systems = [claw, es]
                for s in systems:
                    s.load_all()  # warm
                names = [s.name for s in systems]
                ms = interleave(
                    [(s.name, (lambda s=s: time_loop(n_aggs, s.load_all))) for s in systems],
                    settings,
                )
            label = "with a snapshot every 50 events" if snapshots else "without snapshots"
            tables.append(
                _table(
                    "pg_load_aggregates",
                    E5.format("ab"[len(tables)])
                    + f" {fmt_int(n_aggs)} aggregates of {n_events} events, {label}",
                    f"Each aggregate: an `Opened` event and {n_events - 1} `{TYPE}` events, "
                    "saved in one append (set-up from 8 threads). A round loads every "
                    "aggregate once by id, one thread (clawstate `repository(Account"
                    + (", snapshot_every=50" if snapshots else "")
                    + ").load`; eventsourcing `app.repository.get`"
                    + (" with `snapshotting_intervals = {Account: 50}`" if snapshots else "")
                    + "); the state is replayed through the apply-methods. clawstate's store, "
                    "saved once with a snapshot every 50 events, serves both tables (a load "
                    "without `snapshot_every` reads no snapshot); eventsourcing has a fresh "
                    "schema per table.",
                    ms,
                    names,
                    [None],
                    unit="load",
                )
            )
    return tables


CASES = [
    Case(
        AREA,
        "pg_single_append",
        "PostgreSQL: event appends with an expected version, one writer",
        case_single_append,
    ),
    Case(
        AREA,
        "pg_concurrent_append",
        "PostgreSQL: 8 concurrent event writers",
        case_concurrent_append,
    ),
    Case(AREA, "pg_batched_append", "PostgreSQL: batched event appends", case_batched_append),
    Case(AREA, "pg_read_all", "PostgreSQL: reading the global log", case_read_all),
    Case(AREA, "pg_load_aggregates", "PostgreSQL: loading aggregates", case_load_aggregates),
]
