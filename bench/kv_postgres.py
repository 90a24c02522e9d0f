"""Key/value on the PostgreSQL backend vs raw psycopg, against the same server, one run.

Systems (each behind the small adapter interface below):

* ``clawstate`` — ``clawstate.open("postgresql://…?schema=<fresh>")``, namespace ``b``;
  values go through its codec (msgpack, plus the jsonb document the backend derives for
  queries) — all timed.  Writes are durable when acknowledged (the server's
  ``synchronous_commit``), each with its change-log row, NOTIFY and version.
* raw ``psycopg`` — one autocommit connection per thread on a plain
  ``kv(key text PRIMARY KEY, value bytea, version, updated_at)`` table; values are
  ``json.dumps(value).encode()`` inside the timed loop (``json.loads`` on reads).
  This is the floor: one upsert statement, one commit.  ``+ change log`` also
  appends the row a change log needs, in the same transaction (context only).

Both live in fresh schemas of the server at ``CLAWSTATE_BENCH_POSTGRES_URL``
(default ``postgresql://root@127.0.0.1:5432/test``), dropped afterwards.  Without a
reachable server every case reports that it was skipped.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import clawstate

from .harness import (
    Case,
    Measurement,
    Peer,
    Sample,
    Settings,
    Table,
    comparison_table,
    fmt_int,
    interleave,
    threaded_sample,
    time_loop,
)
from .kv_sqlite import VALUE, cycle_shuffled, warm_keys

__all__ = ["CASES", "URL", "ClawPG", "RawPG"]

AREA = "kv_postgres"
URL = os.environ.get("CLAWSTATE_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
PREFILL_BATCH = 500


def _admin() -> Any:
    import psycopg

    return psycopg.connect(URL, autocommit=True, connect_timeout=3)


def _reachable() -> str | None:
    """None when the server answers, else why not."""
    try:
        with _admin() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure to reach the server
        return f"{type(exc).__name__}: {exc}"
    return None


def _skipped(title: str, why: str) -> list[Table]:
    return [
        Table(
            title,
            f"Skipped: PostgreSQL at `{URL}` is not reachable ({why}). Start it (CI: "
            "`pg_ctlcluster --skip-systemctl-redirect 15 main start`) or set "
            "`CLAWSTATE_BENCH_POSTGRES_URL`.",
            ["system"],
            [],
        )
    ]


# -- adapters ----------------------------------------------------------------------------


class KV(Protocol):
    name: str

    def prefill(self, keys: Sequence[str], value: Any) -> None: ...

    def put_each(self, keys: Sequence[str], value: Any) -> None: ...

    def get_each(self, keys: Sequence[str]) -> None: ...

    def for_thread(self) -> KV: ...

    def stats(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class ClawPG:
    """clawstate on PostgreSQL, in its own schema; thread-safe, shared by every thread."""

    def __init__(self) -> None:
        self.schema = f"clawbench_{uuid.uuid4().hex[:8]}"
        self.name = "clawstate"
        sep = "&" if "?" in URL else "?"
        self.store = clawstate.open(f"{URL}{sep}schema={self.schema}&pool_max=20", sweep_interval=0)
        self.ns = self.store.namespace("b")

    def prefill(self, keys: Sequence[str], value: Any) -> None:
        for start in range(0, len(keys), PREFILL_BATCH):
            self.ns.put_many([(k, value) for k in keys[start : start + PREFILL_BATCH]])

    def put_each(self, keys: Sequence[str], value: Any) -> None:
        put = self.ns.put
        for k in keys:
            put(k, value)

    def get_each(self, keys: Sequence[str]) -> None:
        get = self.ns.get
        for k in keys:
            get(k)

    def for_thread(self) -> KV:
        return self

    def stats(self) -> dict[str, float]:
        gc: dict[str, float] = self.store.backend.stats()["group_commit"]
        return gc

    def close(self) -> None:
        self.store.close()
        with _admin() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


class RawPG:
    """Hand-written psycopg: an autocommit upsert per put, a SELECT per get."""

    def __init__(self, changelog: bool = False, schema: str | None = None) -> None:
        import psycopg

        self.changelog = changelog
        self.name = "raw psycopg" + (" + change log" if changelog else "")
        self.owner = schema is None
        self.schema = schema or f"clawbench_raw_{uuid.uuid4().hex[:8]}"
        self.conn = psycopg.connect(URL, autocommit=True)
        s = f'"{self.schema}"'
        if self.owner:
            self.conn.execute(f"CREATE SCHEMA {s}")
            self.conn.execute(
                f"CREATE TABLE {s}.kv (key text PRIMARY KEY, value bytea NOT NULL, "
                "version integer NOT NULL, updated_at double precision NOT NULL)"
            )
            self.conn.execute(
                f"CREATE TABLE {s}.changes (seq bigserial PRIMARY KEY, key text NOT NULL, "
                "version integer NOT NULL, ts double precision NOT NULL)"
            )
        self.upsert = (
            f"INSERT INTO {s}.kv (key, value, version, updated_at) VALUES (%s, %s, 1, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "version = kv.version + 1, updated_at = excluded.updated_at"
        )
        self.log = f"INSERT INTO {s}.changes (key, version, ts) VALUES (%s, %s, %s)"
        self.select = f"SELECT value FROM {s}.kv WHERE key = %s"

    def prefill(self, keys: Sequence[str], value: Any) -> None:
        data = json.dumps(value).encode()
        t = time.time()
        with self.conn.transaction():
            self.conn.cursor().executemany(self.upsert, [(k, data, t) for k in keys])

    def put_each(self, keys: Sequence[str], value: Any) -> None:
        ex = self.conn.execute
        dumps = json.dumps
        now = time.time
        if not self.changelog:
            for k in keys:
                ex(self.upsert, (k, dumps(value).encode(), now()))
            return
        returning = self.upsert + " RETURNING version"
        for k in keys:
            t = now()
            with self.conn.transaction():
                row = ex(returning, (k, dumps(value).encode(), t)).fetchone()
                ex(self.log, (k, row[0] if row else 0, t))

    def get_each(self, keys: Sequence[str]) -> None:
        ex = self.conn.execute
        loads = json.loads
        for k in keys:
            row = ex(self.select, (k,)).fetchone()
            loads(row[0] if row else b"null")

    def for_thread(self) -> KV:
        """Another connection on the same table: one connection per thread."""
        return RawPG(self.changelog, self.schema)

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        if self.owner:
            self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self.conn.close()


@contextlib.contextmanager
def open_systems(factories: Sequence[Callable[[], KV]]) -> Iterator[list[KV]]:
    with contextlib.ExitStack() as stack:
        kvs: list[KV] = []
        for factory in factories:
            kv = factory()
            stack.callback(kv.close)
            kvs.append(kv)
        yield kvs


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
) -> Table:
    notes = list(peer_notes) or [""] * len(targets)
    peers = [Peer(ms[n], t, note) for n, t, note in zip(names[1:], targets, notes, strict=True)]
    return comparison_table(
        f"{case}: {title}", title, intro, ms[names[0]], peers, unit=unit, subject_note=subject_note
    )


# -- case 1: single durable puts ---------------------------------------------------------


def case_single_put(settings: Settings) -> list[Table]:
    title = "P1. PostgreSQL: durable single puts, one thread"
    why = _reachable()
    if why:
        return _skipped(title, why)
    n_warm = settings.n(2_000, 200)
    n_ops = settings.n(3_000, 100)
    keys = warm_keys(n_warm)
    with open_systems([ClawPG, RawPG, lambda: RawPG(changelog=True)]) as kvs:
        for kv in kvs:
            kv.prefill(keys, VALUE)
            kv.put_each(cycle_shuffled(keys, max(n_ops // 5, 50), 0), VALUE)  # warm-up
        seeds = iter(range(1, 1_000_000))

        def trial(kv: KV) -> Callable[[], Sample]:
            def run() -> Sample:
                ops = cycle_shuffled(keys, n_ops, next(seeds))
                return time_loop(len(ops), lambda: kv.put_each(ops, VALUE))

            return run

        names = [kv.name for kv in kvs]
        ms = interleave([(kv.name, trial(kv)) for kv in kvs], settings)
    return [
        _table(
            "pg_single_put",
            title,
            f"{fmt_int(n_ops)} `put`s per round overwriting random keys of a warm set of "
            f"{fmt_int(n_warm)}; every put is acknowledged after its COMMIT (server default "
            "`synchronous_commit = on`). clawstate: one autocommit statement per put (advance "
            "the log head, upsert item + jsonb document, append the change-log row, NOTIFY).",
            ms,
            names,
            [0.8, None],
            unit="put",
            peer_notes=["autocommit upsert", "upsert RETURNING + log insert, one transaction"],
        )
    ]


# -- case 2: point gets ------------------------------------------------------------------


def case_get(settings: Settings) -> list[Table]:
    title = "P2. PostgreSQL: point gets, warm, random keys"
    why = _reachable()
    if why:
        return _skipped(title, why)
    n_keys = settings.n(10_000, 300)
    n_ops = settings.n(20_000, 300)
    keys = warm_keys(n_keys)
    rng = random.Random(4)
    ops = [rng.choice(keys) for _ in range(n_ops)]
    with open_systems([ClawPG, RawPG]) as kvs:
        for kv in kvs:
            kv.prefill(keys, VALUE)
            kv.get_each(cycle_shuffled(keys, min(n_keys, 2_000), 7))  # warm
        names = [kv.name for kv in kvs]
        ms = interleave(
            [(kv.name, lambda kv=kv: time_loop(len(ops), lambda: kv.get_each(ops))) for kv in kvs],
            settings,
        )
    return [
        _table(
            "pg_get",
            title,
            f"{fmt_int(n_ops)} `get`s per round of random keys among {fmt_int(n_keys)}; both "
            "return the decoded dict (clawstate: pooled connection, msgpack; raw: one "
            "connection, `SELECT` + `json.loads`).",
            ms,
            names,
            [0.8],
            unit="get",
        )
    ]


# -- case 3: sixteen writer threads ------------------------------------------------------


def _threads_trial(
    kv: KV, threads: int, per_thread: int, own: list[list[str]]
) -> Callable[[], Sample]:
    seeds = iter(range(1, 1_000_000))

    def trial() -> Sample:
        seed = next(seeds)
        handles = [kv.for_thread() for _ in range(threads)]
        ops = [cycle_shuffled(own[t], per_thread, seed * 100 + t) for t in range(threads)]
        timed = [functools.partial(handles[t].put_each, ops[t], VALUE) for t in range(threads)]
        # the warm-up opens each thread's connection, untimed
        untimed = [
            functools.partial(handles[t].put_each, own[t][:5], VALUE) for t in range(threads)
        ]
        try:
            return threaded_sample(threads * per_thread, timed, warm=untimed, stats=kv.stats)
        finally:
            for h in handles:
                if h is not kv:
                    h.close()

    return trial


def case_concurrent_put(settings: Settings) -> list[Table]:
    title = "P3. PostgreSQL: 16 threads putting concurrently"
    why = _reachable()
    if why:
        return _skipped(title, why)
    threads = 16
    n_own = settings.n(200, 20)
    per_thread = settings.n(400, 20)
    own = [warm_keys(n_own, prefix=f"t{t}") for t in range(threads)]
    with open_systems([ClawPG, RawPG, lambda: RawPG(changelog=True)]) as kvs:
        for kv in kvs:
            kv.prefill([k for keys in own for k in keys], VALUE)
        names = [kv.name for kv in kvs]
        ms = interleave(
            [(kv.name, _threads_trial(kv, threads, per_thread, own)) for kv in kvs], settings
        )
    mean_batch = ms[names[0]].extra("mean_batch")
    return [
        _table(
            "pg_concurrent_put",
            title,
            f"{threads} threads × {fmt_int(per_thread)} `put`s per round, each thread "
            f"overwriting its own {fmt_int(n_own)} keys in random order. clawstate: one shared "
            "store, group commit (a batch = one statement, one round trip, one WAL flush); "
            "raw psycopg: one autocommit connection per thread, a commit per "
            "put (PostgreSQL's own WAL flushes coalesce across them). Time = first thread's "
            "start to last thread's end.",
            ms,
            names,
            [3.0, None],
            unit="put",
            subject_note=f"mean group-commit batch {mean_batch:.1f}",
            peer_notes=["16 connections", "16 connections, upsert + log per transaction"],
        )
    ]


CASES = [
    Case(AREA, "pg_single_put", "PostgreSQL: durable single puts", case_single_put),
    Case(AREA, "pg_get", "PostgreSQL: point gets", case_get),
    Case(AREA, "pg_concurrent_put", "PostgreSQL: 16 threads putting", case_concurrent_put),
]
