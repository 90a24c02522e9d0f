"""The event store's SQLite specifics, and the refusal of backends without one.

* subscribers wake at once for this process's commits (by the notification, not the
  poll), and see other processes' commits by the 50 ms poll (its latency is measured
  by ``make bench``, bench/wakeups.py);
* a database created before the event store existed is migrated on open;
* event data is JSON text, queryable in place with SQLite's JSON functions;
* appends larger than one INSERT statement stay atomic when an id is taken;
* a backend without an event store (Redis) refuses ``store.events`` clearly.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import clawstate
from clawstate import Event, InvalidRequest
from clawstate.backends.base import Capabilities, Outcome, WriteUnit
from clawstate.backends.memory import MemoryBackend
from clawstate.backends.sqlite import SQLiteBackend
from clawstate.config import load_config
from clawstate.store import Store
from services import require_module

ROOT = Path(__file__).resolve().parent.parent


def _receive(store: clawstate.Store, n: int, start: threading.Event) -> list[int]:
    """The ``i`` of the first ``n`` events a subscriber at the end of the log receives."""
    out: list[int] = []
    sub = store.events.subscribe("end", timeout=60)
    start.set()
    for event in sub:
        out.append(event.data["i"])
        if len(out) == n:
            break
    sub.close()
    return out


def _store_polling_every(path: Path, poll_interval: float) -> clawstate.Store:
    """A store whose backend looks for other processes' commits every ``poll_interval``."""
    backend = SQLiteBackend(path, poll_interval=poll_interval)
    return Store(backend, load_config(None, url=f"sqlite:///{path}", sweep_interval=0))


def test_a_subscriber_sees_commits_of_another_process_by_polling(tmp_path: Path) -> None:
    """Another process's commits reach a waiting subscriber through the poll (no local
    commit happens meanwhile to wake it).  How soon (the 50 ms poll) is measured by
    ``make bench`` (bench/wakeups.py), not asserted here."""
    url = f"sqlite:///{tmp_path / 'wake.db'}"
    store = clawstate.open(url, sweep_interval=0)
    started = threading.Event()
    result: list[int] = []
    reader = threading.Thread(target=lambda: result.extend(_receive(store, 8, started)))
    reader.start()
    assert started.wait(10)
    code = (
        "import sys, time, clawstate\n"
        "s = clawstate.open(sys.argv[1], sweep_interval=0)\n"
        "for i in range(8):\n"
        "    time.sleep(0.05)\n"
        "    s.events.append('wake', [clawstate.Event('Ping', {'i': i})])\n"
    )
    subprocess.run([sys.executable, "-c", code, url], check=True, timeout=60)
    reader.join(30)
    store.close()
    assert not reader.is_alive() and result == list(range(8)), result


def test_a_subscriber_is_woken_at_once_by_a_commit_in_this_process(tmp_path: Path) -> None:
    """This process's commits wake the subscriber through the notification, not the poll:
    the poll is set to an hour, so nothing else could deliver within the test."""
    store = _store_polling_every(tmp_path / "wake.db", 3600.0)
    started = threading.Event()
    result: list[int] = []
    reader = threading.Thread(target=lambda: result.extend(_receive(store, 5, started)))
    reader.start()
    assert started.wait(10)
    for i in range(5):
        time.sleep(0.02)  # the subscriber is back waiting at the end of the log
        store.events.append("wake", [Event("Ping", {"i": i})])
    reader.join(30)
    store.close()
    assert not reader.is_alive(), "a local commit did not wake the subscriber"
    assert result == list(range(5)), result


def test_without_a_local_commit_the_poll_is_the_only_way_in(tmp_path: Path) -> None:
    """The control for the test above: with the poll at an hour, another process's
    commit does *not* wake a waiter, and a commit of this process then does — so the
    notification is what wakes waiters for local commits."""
    path = tmp_path / "wake.db"
    store = _store_polling_every(path, 3600.0)
    store.events.append("warm", [Event("Warm")])
    log = store.events._log
    after = store.events.last_position
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(log.wait_for_events(after, 3600.0)))
    waiter.start()
    code = (
        "import sys, clawstate\n"
        "s = clawstate.open(sys.argv[1], sweep_interval=0)\n"
        "s.events.append('wake', [clawstate.Event('Ping', {'i': 0})])\n"
    )
    subprocess.run([sys.executable, "-c", code, f"sqlite:///{path}"], check=True, timeout=60)
    waiter.join(0.5)  # a wait that load can only lengthen: this cannot pass by chance
    assert waiter.is_alive() and not woke, "another process's commit woke the waiter"
    assert store.events.last_position == after + 1  # committed, only not yet seen
    store.events.append("wake", [Event("Ping", {"i": 1})])
    waiter.join(30)
    assert woke == [True], "a local commit did not wake the waiter"
    store.close()


def test_a_database_from_before_the_event_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with clawstate.open(f"sqlite:///{path}", sweep_interval=0) as store:
        store.namespace("kv").put("k", {"v": 1})
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE events")
    conn.execute("DROP TABLE event_streams")
    conn.execute("UPDATE meta SET value = 1 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with clawstate.open(f"sqlite:///{path}", sweep_interval=0) as store:
        item = store.namespace("kv").get("k")
        assert item is not None and item.value == {"v": 1}
        assert store.events.append("s", [Event("A")]).position == 1
        assert store.check().ok


def test_event_data_is_json_queryable_in_place(tmp_path: Path) -> None:
    path = tmp_path / "json.db"
    with clawstate.open(f"sqlite:///{path}", sweep_interval=0) as store:
        store.events.append(
            "order-1", [Event("OrderPlaced", {"total": 42, "lines": [{"sku": "a"}]}, {"by": "u1"})]
        )
    conn = sqlite3.connect(path)
    row = conn.execute(
        "SELECT json_extract(data, '$.total'), json_extract(data, '$.lines[0].sku'), "
        "json_extract(metadata, '$.by') FROM events WHERE stream = 'order-1'"
    ).fetchone()
    conn.close()
    assert row == (42, "a", "u1")


def test_appends_beyond_one_statement_stay_atomic(tmp_path: Path) -> None:
    store = clawstate.open(
        f"sqlite:///{tmp_path / 'big.db'}", sweep_interval=0, limits={"max_batch": 5000}
    )
    taken = Event("Taken")
    store.events.append("other", [taken])
    batch = [Event("E", {"i": i}) for i in range(4500)]
    with pytest.raises(InvalidRequest) as info:
        store.events.append("big", [*batch, taken])
    assert info.value.field == "events[4500].id"
    assert store.events.last_position == 1 and store.events.read("big") == []
    result = store.events.append("big", batch)
    assert (result.version, result.position) == (4500, 4501)
    assert [e.version for e in store.events.read("big")] == list(range(1, 4501))
    assert store.check().ok
    store.close()


def test_a_backend_without_an_event_store_refuses_clearly() -> None:
    class NoEvents(MemoryBackend):
        name = "redis"
        capabilities = Capabilities(durable=False, multi_process=True)

        def __init__(self) -> None:
            super().__init__()
            self.units: list[WriteUnit] = []

        def write(self, unit: WriteUnit) -> list[Outcome]:
            self.units.append(unit)  # every unit that reaches the backend, to prove none did
            return super().write(unit)

    backend = NoEvents()
    store = Store(backend, load_config(None, url="memory://", sweep_interval=0))
    with pytest.raises(InvalidRequest) as info:
        store.events.append("s", [Event("A")])
    assert info.value.field == "events"
    assert "the redis backend has no event store" in str(info.value)
    with pytest.raises(InvalidRequest), store.transaction() as tx:
        tx.events.append("s", [Event("A")])
    assert backend.units == [], "a refused append reached the backend"
    assert backend.last_seq() == 0
    assert "events" not in store.stats()
    store.close()


def test_the_redis_backend_declares_no_event_store() -> None:
    redis_backend = require_module("clawstate.backends.redis")
    caps = redis_backend.RedisBackend.capabilities
    assert getattr(caps, "events", False) is False


def test_event_store_imports_stay_out_of_plain_clawstate() -> None:
    """``import clawstate`` gives the event types without loading the event store."""
    code = "import sys, clawstate; clawstate.Event('A'); print('clawstate.events' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )
    assert out.stdout.strip() == "False"
