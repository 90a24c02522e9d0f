"""State machines: transitions per second, one thread, clawstate vs a library + SQL by hand.

The peer is the `transitions` package (pytransitions), the more used of the two Python
FSM libraries the issue names: it ranks about 2,700th among PyPI's most downloaded
packages, ``python-statemachine`` about 4,600th.  A state machine library keeps the
state in memory only, so the peer persists each transition itself, the way an
application does it by hand:

1. ``SELECT state, version`` of the instance (another process may have moved it — the
   same read clawstate's ``fire`` does);
2. put that state on the model and ``trigger`` the event (the library checks the
   transition; an illegal event raises ``MachineError``);
3. ``UPDATE`` the state row ``WHERE id = ? AND version = ?`` (optimistic concurrency,
   as ``fire`` does) and ``INSERT`` a history row (event, source, target, payload, time);
4. one ``COMMIT``.

Same durability on both sides:

* **SQLite** — the peer's connection runs WAL with ``synchronous = NORMAL``, which is
  what clawstate's default ``durability = "process"`` does: a transition survives a
  killed process once acknowledged.  Target ≥ 3×.
* **PostgreSQL** — the peer uses one psycopg connection (a transaction per
  transition, four round trips); clawstate the PostgreSQL backend; same server,
  same ``synchronous_commit``.  Ratio reported.

clawstate's ``fire`` does more in its one transaction than the peer: it appends an
event to the instance's stream (the history, with the stream's own expected version),
puts the projection row (indexed on ``state``, change-logged so ``watch`` sees it) and
would cancel/arm timeout timers and record outbox actions (this machine has none, to
compare the same work).  ``N`` instances are fired round robin so the rows are not all
one hot row.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

import clawstate

from .harness import Case, Peer, Sample, Settings, Table, comparison_table, fresh_dir, interleave

__all__ = ["CASES"]

AREA = "machines"
PG_URL = os.environ.get("CLAWSTATE_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
#: A cycle, so any number of transitions can be fired at each instance.
STATES = ["open", "paid", "shipped"]
CYCLE = [("pay", "open", "paid"), ("ship", "paid", "shipped"), ("reopen", "shipped", "open")]
DEFINITION: dict[str, Any] = {
    "initial": "open",
    "states": STATES,
    "final": [],
    "transitions": [{"event": e, "from": s, "to": t} for e, s, t in CYCLE],
}
PAYLOAD = {"by": "bench", "note": "a small payload"}
INSTANCES = 100


def _skip(title: str, why: str) -> list[Table]:
    return [Table(title, f"Not measured: {why}.", ["system", "result"], [["clawstate", "—"]])]


def _schedule(n: int) -> list[tuple[str, str]]:
    """``n`` (instance id, event) pairs, round robin over the instances, each legal
    given the ones before it (every instance walks the cycle)."""
    out: list[tuple[str, str]] = []
    step = [0] * INSTANCES
    for i in range(n):
        k = i % INSTANCES
        out.append((f"o{k}", CYCLE[step[k] % len(CYCLE)][0]))
        step[k] += 1
    return out


def _claw_trial(store: Any, n: int) -> Callable[[], Sample]:
    """Fresh machine per round (so each round starts from ``open``)."""
    from .harness import time_loop

    def trial() -> Sample:
        m = store.machine(f"order{uuid.uuid4().hex[:8]}", DEFINITION)
        for k in range(INSTANCES):
            m.create(f"o{k}", data={"total": k})
        fire = m.fire
        plan = _schedule(n)

        def loop() -> None:
            for id, event in plan:
                fire(id, event, PAYLOAD)

        return time_loop(n, loop)

    return trial


class _Model:
    """The application object the library drives."""

    state: str


def _library() -> tuple[Any, _Model]:
    from transitions import Machine

    model = _Model()
    machine = Machine(
        model=model,
        states=STATES,
        transitions=[{"trigger": e, "source": s, "dest": t} for e, s, t in CYCLE],
        initial="open",
        auto_transitions=False,
    )
    return machine, model


_SQLITE_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, state TEXT NOT NULL, "
    "data TEXT, version INTEGER NOT NULL, updated_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS instances_state ON instances (state, id)",
    "CREATE TABLE IF NOT EXISTS history (id TEXT NOT NULL, version INTEGER NOT NULL, "
    "event TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL, payload TEXT, "
    "at REAL NOT NULL, PRIMARY KEY (id, version))",
]


def _peer_step(
    machine: Any, model: _Model, cur: Any, id: str, event: str, mark: str, conflict: type
) -> None:
    """One transition by hand: read, check with the library, write state + history."""
    cur.execute(f"SELECT state, version FROM instances WHERE id = {mark}", (id,))
    state, version = cur.fetchone()
    machine.set_state(state, model)
    model.trigger(event)  # type: ignore[attr-defined]  # MachineError when illegal
    now = time.time()
    cur.execute(
        f"UPDATE instances SET state = {mark}, version = {mark}, updated_at = {mark} "
        f"WHERE id = {mark} AND version = {mark}",
        (model.state, version + 1, now, id, version),
    )
    if cur.rowcount != 1:
        raise conflict(f"instance {id} moved")
    cur.execute(
        f"INSERT INTO history VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark}, {mark})",
        (id, version + 1, event, state, model.state, json.dumps(PAYLOAD), now),
    )


def _sqlite_peer_trial(path: str, n: int) -> Callable[[], Sample]:
    from .harness import time_loop

    def trial() -> Sample:
        if os.path.exists(path):
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for ddl in _SQLITE_SCHEMA:
            conn.execute(ddl)
        now = time.time()
        conn.executemany(
            "INSERT INTO instances VALUES (?, 'open', ?, 1, ?)",
            [(f"o{k}", json.dumps({"total": k}), now) for k in range(INSTANCES)],
        )
        conn.commit()
        machine, model = _library()
        cur = conn.cursor()
        plan = _schedule(n)

        def loop() -> None:
            for id, event in plan:
                _peer_step(machine, model, cur, id, event, "?", RuntimeError)
                conn.commit()

        try:
            return time_loop(n, loop)
        finally:
            conn.close()

    return trial


def case_sqlite(settings: Settings) -> list[Table]:
    title = "M1. State machine transitions, one thread: SQLite"
    try:
        import transitions  # noqa: F401
    except ImportError:
        return _skip(title, "the transitions package is not installed (`pip install transitions`)")
    n = settings.n(3_000, 60)
    with fresh_dir(settings, "machines") as tmp:
        store = clawstate.open(f"sqlite:///{tmp}/claw.db", sweep_interval=0)
        try:
            ms = interleave(
                [
                    ("clawstate", _claw_trial(store, n)),
                    ("transitions + sqlite3", _sqlite_peer_trial(str(tmp / "peer.db"), n)),
                ],
                settings,
            )
        finally:
            store.close()
    return [
        comparison_table(
            "machines.sqlite",
            title,
            f"{n:,} transitions per round over {INSTANCES} instances (round robin), one "
            'thread; clawstate `machine.fire` on SQLite (WAL, `durability = "process"`) vs '
            "`transitions` + sqlite3 by hand (WAL, synchronous = NORMAL): read the state, "
            "check the event with the library, update the state row with a version check, "
            "insert a history row, one commit.",
            ms["clawstate"],
            [Peer(ms["transitions + sqlite3"], 3.0, "state row + history row, one commit")],
            unit="transition",
            subject_note="one transaction: stream append + projection row + change log",
        )
    ]


def case_postgres(settings: Settings) -> list[Table]:
    title = "M2. State machine transitions, one thread: PostgreSQL"
    try:
        import psycopg
        import transitions  # noqa: F401
    except ImportError as exc:
        return _skip(title, f"{exc.name} is not installed")
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        return _skip(title, f"PostgreSQL is not reachable at `{PG_URL}` ({type(exc).__name__})")
    n = settings.n(1_500, 30)
    tag = uuid.uuid4().hex[:8]
    schema = f"clawbench_machines_{tag}"
    peer_schema = f"clawbench_machines_peer_{tag}"
    sep = "&" if "?" in PG_URL else "?"
    store = clawstate.open(f"{PG_URL}{sep}schema={schema}", sweep_interval=0)
    conn = psycopg.connect(PG_URL, connect_timeout=3)
    try:
        sync = admin.execute("SHOW synchronous_commit").fetchone()
        admin.execute(f'CREATE SCHEMA "{peer_schema}"')
        conn.execute(f'SET search_path TO "{peer_schema}"')
        conn.commit()

        def peer_trial() -> Sample:
            from .harness import time_loop

            with conn.cursor() as cur:
                cur.execute("DROP TABLE IF EXISTS instances, history")
                for ddl in _SQLITE_SCHEMA:
                    cur.execute(ddl.replace("REAL", "DOUBLE PRECISION"))
                now = time.time()
                cur.executemany(
                    "INSERT INTO instances VALUES (%s, 'open', %s, 1, %s)",
                    [(f"o{k}", json.dumps({"total": k}), now) for k in range(INSTANCES)],
                )
            conn.commit()
            machine, model = _library()
            plan = _schedule(n)

            def loop() -> None:
                with conn.cursor() as cur:
                    for id, event in plan:
                        _peer_step(machine, model, cur, id, event, "%s", RuntimeError)
                        conn.commit()

            return time_loop(n, loop)

        ms = interleave(
            [("clawstate", _claw_trial(store, n)), ("transitions + psycopg", peer_trial)], settings
        )
    finally:
        store.close()
        conn.close()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.execute(f'DROP SCHEMA IF EXISTS "{peer_schema}" CASCADE')
        admin.close()
    return [
        comparison_table(
            "machines.postgres",
            title,
            f"{n:,} transitions per round over {INSTANCES} instances (round robin), one "
            f"thread, PostgreSQL at `{PG_URL}` (synchronous_commit = "
            f"{sync[0] if sync else '?'}); clawstate `machine.fire` vs `transitions` + "
            "psycopg by hand (SELECT, UPDATE with a version check, INSERT history, COMMIT).",
            ms["clawstate"],
            [Peer(ms["transitions + psycopg"], None, "state row + history row, one commit")],
            unit="transition",
            subject_note="one transaction: stream append + projection row + change log",
        )
    ]


CASES = [
    Case(AREA, "sqlite", "Machines: SQLite transitions/s vs transitions + sqlite3", case_sqlite),
    Case(
        AREA,
        "postgres",
        "Machines: PostgreSQL transitions/s vs transitions + psycopg",
        case_postgres,
    ),
]
