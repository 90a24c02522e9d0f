"""The event store's SQLite specifics, and the refusal of backends without one.

* subscribers wake within 100 ms of a commit — at once for this process's
  commits, by a 50 ms poll for other processes';
* a database created before the event store existed is migrated on open;
* event data is JSON text, queryable in place with SQLite's JSON functions;
* appends larger than one INSERT statement stay atomic when an id is taken;
* a backend without an event store (Redis) refuses ``store.events`` clearly.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import clawstate
from clawstate import Event, InvalidRequest
from clawstate.backends.base import Capabilities
from clawstate.backends.memory import MemoryBackend
from clawstate.config import load_config
from clawstate.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _latencies(store: clawstate.Store, n: int, start: threading.Event) -> list[float]:
    """Receive ``n`` events whose data carries the sender's clock just before it
    appended; the latency is receive time minus that (an upper bound)."""
    out: list[float] = []
    sub = store.events.subscribe("end", timeout=10)
    start.set()
    for event in sub:
        out.append(time.time() - event.data["sent"])
        if len(out) == n:
            break
    sub.close()
    return out


def test_subscriber_wakes_within_100ms_of_a_commit_in_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wake.db'}"
    store = clawstate.open(url, sweep_interval=0)
    started = threading.Event()
    result: list[float] = []
    reader = threading.Thread(target=lambda: result.extend(_latencies(store, 8, started)))
    reader.start()
    assert started.wait(10)
    code = (
        "import sys, time, clawstate\n"
        "s = clawstate.open(sys.argv[1], sweep_interval=0)\n"
        "for i in range(8):\n"
        "    time.sleep(0.13)\n"
        "    s.events.append('wake', [clawstate.Event('Ping', {'sent': time.time()})])\n"
    )
    subprocess.run([sys.executable, "-c", code, url], check=True, timeout=60)
    reader.join(15)
    store.close()
    assert len(result) == 8
    # The poll is 50 ms; allow scheduling noise on a busy machine for one outlier.
    assert statistics.median(result) < 0.1, result
    assert sorted(result)[-2] < 0.1, result


def test_subscriber_wakes_at_once_for_a_commit_in_this_process(tmp_path: Path) -> None:
    store = clawstate.open(f"sqlite:///{tmp_path / 'wake.db'}", sweep_interval=0)
    started = threading.Event()
    result: list[float] = []
    reader = threading.Thread(target=lambda: result.extend(_latencies(store, 5, started)))
    reader.start()
    assert started.wait(10)
    for _ in range(5):
        time.sleep(0.08)
        store.events.append("wake", [Event("Ping", {"sent": time.time()})])
    reader.join(15)
    store.close()
    assert len(result) == 5
    assert statistics.median(result) < 0.02, result


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

    store = Store(NoEvents(), load_config(None, url="memory://", sweep_interval=0))
    with pytest.raises(InvalidRequest) as info:
        store.events.append("s", [Event("A")])
    assert info.value.field == "events"
    assert "the redis backend has no event store" in str(info.value)
    with pytest.raises(InvalidRequest), store.transaction() as tx:
        tx.events.append("s", [Event("A")])
    assert store.backend.write is not None  # nothing reached the backend
    assert "events" not in store.stats()
    store.close()


def test_the_redis_backend_declares_no_event_store() -> None:
    redis_backend = pytest.importorskip("clawstate.backends.redis")
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
