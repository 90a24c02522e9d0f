"""Leases: uncontended acquire + release, clawstate vs each backend's usual lock.

One thread takes and releases one lock name over and over (nobody else wants it):
the cost of the lock itself.  Each pair below is measured in the same run, rounds
interleaved (``bench.harness.interleave``).

* **Redis** — ``store.locks.acquire(name)`` + ``release(lease)`` on the Redis backend
  vs redis-py's ``Lock`` (``SET NX PX`` to acquire, a Lua compare-and-delete to
  release), same server, database 11 (``CLAWSTATE_BENCH_LOCKS_REDIS_URL``).  Target
  ≥ 0.8×.  Both are one round trip each way; clawstate's acquire also bumps the fence
  row (the fencing token) and logs both writes to the change log, in one script.
* **SQLite** — the SQLite backend (``durability = "process"``, the default) vs the
  ``filelock`` package's ``FileLock`` (``flock`` on a lock file), both in a temp dir.
  Target ≥ 1×.  ``filelock`` is a local advisory lock: no token, no expiry, nothing
  survives the process; clawstate's is a durable lease with a fencing token, visible
  to every process and server of the store.
* **PostgreSQL** — the PostgreSQL backend vs raw ``SELECT pg_advisory_lock(k)`` +
  ``SELECT pg_advisory_unlock(k)`` on an autocommit psycopg connection (two round
  trips), same server (``CLAWSTATE_BENCH_POSTGRES_URL``).  Target ≥ 0.8×.  An
  advisory lock is a session lock: it writes nothing, so it commits nothing; each of
  clawstate's acquire and release is a durable transaction (a WAL flush each, with
  ``synchronous_commit = on``), because a fencing token must never be granted twice
  (a lost commit would hand the next holder a token already in use).

A table per backend says so when its server is unreachable or ``filelock`` is
missing, instead of figures.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

import clawstate

from .harness import Case, Peer, Sample, Settings, Table, comparison_table, interleave, time_loop

__all__ = ["CASES"]

AREA = "locks"
REDIS_URL = os.environ.get("CLAWSTATE_BENCH_LOCKS_REDIS_URL", "redis://127.0.0.1:6379/11")
PG_URL = os.environ.get("CLAWSTATE_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
NAME = "nightly-report"


def _skip(title: str, why: str) -> list[Table]:
    return [Table(title, f"Not measured: {why}.", ["system", "result"], [["clawstate", "—"]])]


def _claw_loop(store: Any, n: int) -> Callable[[], object]:
    locks = store.locks

    def loop() -> None:
        for _ in range(n):
            locks.release(locks.acquire(NAME, ttl=30))

    return loop


def _trials(
    n: int, systems: list[tuple[str, Callable[[], object]]], settings: Settings
) -> dict[str, Any]:
    for _, loop in systems:  # warm: connections, prepared statements, scripts loaded
        loop()

    def trial(loop: Callable[[], object]) -> Callable[[], Sample]:
        return lambda: time_loop(n, loop)

    return interleave([(name, trial(loop)) for name, loop in systems], settings)


# -- Redis --------------------------------------------------------------------------------


def case_redis(settings: Settings) -> list[Table]:
    title = "L1. Redis: uncontended lock acquire + release"
    try:
        import redis
    except ImportError:
        return _skip(title, "redis-py is not installed")
    prefix = f"clawbench:locks:{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        return _skip(title, f"Redis is not reachable at `{REDIS_URL}` ({type(exc).__name__})")
    n = settings.n(4_000, 50)
    sep = "&" if "?" in REDIS_URL else "?"
    store = clawstate.open(f"{REDIS_URL}{sep}prefix={prefix}", sweep_interval=0)
    try:
        lock = client.lock(prefix + "peer:" + NAME, timeout=30)

        def peer() -> None:
            for _ in range(n):
                lock.acquire(blocking=False)
                lock.release()

        ms = _trials(
            n, [("clawstate (redis)", _claw_loop(store, n)), ("redis-py Lock", peer)], settings
        )
    finally:
        store.close()
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
        client.close()
    return [
        comparison_table(
            "locks.redis",
            title,
            f"{n:,} acquire + release pairs per round, one thread, one lock name, Redis at "
            f"`{REDIS_URL}`.",
            ms["clawstate (redis)"],
            [Peer(ms["redis-py Lock"], 0.8, "SET NX PX + Lua compare-and-delete")],
            unit="pair",
            subject_note="one EVALSHA each: lock row + fence row (token) + change log",
        )
    ]


# -- SQLite -------------------------------------------------------------------------------


def case_sqlite(settings: Settings) -> list[Table]:
    title = "L2. SQLite: uncontended lock acquire + release"
    try:
        import filelock
    except ImportError:
        return _skip(title, "the filelock package is not installed (`pip install filelock`)")
    n = settings.n(4_000, 50)
    with tempfile.TemporaryDirectory(prefix="clawbench-locks-", dir=settings.tmpdir) as tmp:
        store = clawstate.open(f"sqlite:///{tmp}/locks.db", sweep_interval=0)
        try:
            flock = filelock.FileLock(os.path.join(tmp, NAME + ".lock"))

            def peer() -> None:
                for _ in range(n):
                    flock.acquire()
                    flock.release()

            ms = _trials(
                n, [("clawstate (sqlite)", _claw_loop(store, n)), ("filelock", peer)], settings
            )
        finally:
            store.close()
    return [
        comparison_table(
            "locks.sqlite",
            title,
            f"{n:,} acquire + release pairs per round, one thread, one lock name, a fresh "
            'SQLite store (WAL, `durability = "process"`) and a lock file in the same temp dir.',
            ms["clawstate (sqlite)"],
            [Peer(ms["filelock"], 1.0, "FileLock: flock on a lock file")],
            unit="pair",
            subject_note="two transactions: acquire writes lock + fence rows, release deletes",
        )
    ]


# -- PostgreSQL ---------------------------------------------------------------------------


def case_postgres(settings: Settings) -> list[Table]:
    title = "L3. PostgreSQL: uncontended lock acquire + release"
    try:
        import psycopg
    except ImportError:
        return _skip(title, "psycopg is not installed")
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        return _skip(title, f"PostgreSQL is not reachable at `{PG_URL}` ({type(exc).__name__})")
    n = settings.n(1_500, 30)
    schema = f"clawbench_locks_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in PG_URL else "?"
    store = clawstate.open(f"{PG_URL}{sep}schema={schema}", sweep_interval=0)
    try:
        sync = admin.execute("SHOW synchronous_commit").fetchone()
        key = 7_000_001

        def peer() -> None:
            for _ in range(n):
                admin.execute("SELECT pg_advisory_lock(%s)", (key,))
                admin.execute("SELECT pg_advisory_unlock(%s)", (key,))

        ms = _trials(
            n,
            [("clawstate (postgresql)", _claw_loop(store, n)), ("pg_advisory_lock", peer)],
            settings,
        )
    finally:
        store.close()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
    return [
        comparison_table(
            "locks.postgres",
            title,
            f"{n:,} acquire + release pairs per round, one thread, one lock name, PostgreSQL "
            f"at `{PG_URL}` (synchronous_commit = {sync[0] if sync else '?'}).",
            ms["clawstate (postgresql)"],
            [Peer(ms["pg_advisory_lock"], 0.8, "SELECT pg_advisory_lock + pg_advisory_unlock")],
            unit="pair",
            subject_note="two durable transactions (a WAL flush each)",
            notes=[
                "An advisory lock commits nothing and lives as long as its session: no token, "
                "no expiry, lost with the connection. A lease's grant must be durable, or a "
                "crash could hand the same fencing token to two holders."
            ],
        )
    ]


CASES = [
    Case(AREA, "redis", "Locks: Redis acquire + release vs redis-py Lock", case_redis),
    Case(AREA, "sqlite", "Locks: SQLite acquire + release vs filelock", case_sqlite),
    Case(
        AREA, "postgres", "Locks: PostgreSQL acquire + release vs pg_advisory_lock", case_postgres
    ),
]
