"""Namespaces routed to several backends by configuration (issue 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import clawstate

ROOT = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "clawstate.toml"
    path.write_text(
        f"""
[store]
url = "sqlite:///main.db"
sweep_interval = 0

[backends.fast]
url = "memory://"

[backends.archive]
url = "sqlite:///archive.db"

[namespaces.sessions]
backend = "fast"

[namespaces.orders]
backend = "archive"
{extra}
""",
        encoding="utf-8",
    )
    return path


def test_namespaces_land_on_their_backends(tmp_path: Path) -> None:
    with clawstate.open(config=_config(tmp_path)) as store:
        assert set(store.backends) == {"default", "fast", "archive"}
        store.namespace("sessions").put("s1", {"user": 1})
        store.namespace("orders").put("o1", {"total": 9})
        store.namespace("config").put("c1", {"on": True})
        assert store.backends["fast"].namespaces() == ["sessions"]
        assert store.backends["archive"].namespaces() == ["orders"]
        assert store.backends["default"].namespaces() == ["config"]
        assert store.namespaces() == ["config", "orders", "sessions"]
        stats = store.stats()
        assert {n: e["backend"] for n, e in stats["namespaces"].items()} == {
            "config": "default",
            "orders": "archive",
            "sessions": "fast",
        }
        assert stats["namespaces"]["orders"]["items"] == 1
        assert stats["namespaces"]["orders"]["bytes"] > 0
        assert stats["backends"]["archive"]["path"].endswith("archive.db")
        assert store.check().ok
    # The relative sqlite paths resolved against the config file's directory.
    assert (tmp_path / "archive.db").exists() and (tmp_path / "main.db").exists()


def test_transaction_across_backends_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    with clawstate.open(config=_config(tmp_path)) as store:
        before = {name: b.last_seq() for name, b in store.backends.items()}
        with pytest.raises(clawstate.InvalidRequest) as err:
            with store.transaction() as tx:
                tx.namespace("orders").put("o1", {"total": 1})
                tx.namespace("sessions").put("s1", {"user": 1})
        assert err.value.field == "transaction"
        assert "archive" in str(err.value) and "fast" in str(err.value)
        assert {name: b.last_seq() for name, b in store.backends.items()} == before
        assert store.namespace("orders").get("o1") is None
        # Within one backend a transaction still spans namespaces.
        with store.transaction() as tx:
            tx.namespace("config").put("a", 1)
            tx.namespace("other").put("b", 2)
        assert [r.version for r in tx.result if isinstance(r, clawstate.Item)] == [1, 1]


def test_watch_names_one_backend(tmp_path: Path) -> None:
    with clawstate.open(config=_config(tmp_path)) as store:
        store.namespace("orders").put("o1", 1)
        store.namespace("config").put("c1", 1)
        with pytest.raises(clawstate.InvalidRequest) as err:
            store.watch(0)
        assert err.value.field == "backend"
        assert [c.key for c in store.watch(0, backend="archive", timeout=0)] == ["o1"]
        assert [c.key for c in store.watch(0, namespace="orders", timeout=0)] == ["o1"]
        assert [c.key for c in store.watch(0, backend="default", timeout=0)] == ["c1"]


def test_unknown_backend_in_a_namespace_is_a_config_error(tmp_path: Path) -> None:
    path = _config(tmp_path, '[namespaces.carts]\nbackend = "nowhere"\n')
    with pytest.raises(clawstate.ConfigError) as err:
        clawstate.open(config=path)
    assert err.value.field == "namespaces.carts.backend"
    assert "nowhere" in str(err.value)


def test_backends_given_to_open(tmp_path: Path) -> None:
    with clawstate.open(
        f"sqlite:///{tmp_path / 'a.db'}",
        sweep_interval=0,
        backends={"mem": "memory://"},
        namespaces={"hot": {"backend": "mem"}},
    ) as store:
        store.namespace("hot").put("k", 1)
        assert store.backends["mem"].namespaces() == ["hot"]
        assert store.backend.namespaces() == []


def test_cli_stats_shows_each_namespace_with_its_backend(tmp_path: Path) -> None:
    path = _config(tmp_path)
    with clawstate.open(config=path) as store:
        store.namespace("orders").put("o1", {"total": 9})
        store.namespace("config").put("c1", {"on": True})
    out = subprocess.run(
        [sys.executable, "-m", "clawstate.cli", "--config", str(path), "stats", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["namespaces"]["orders"]["backend"] == "archive"
    assert doc["namespaces"]["config"]["backend"] == "default"
    table = subprocess.run(
        [sys.executable, "-m", "clawstate.cli", "--config", str(path), "stats"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert table.returncode == 0, table.stderr
    assert "archive" in table.stdout and "orders" in table.stdout


def test_sessions_on_redis_orders_on_postgres_config_on_sqlite(tmp_path: Path) -> None:
    """The issue's example: each namespace on the storage that fits it."""
    import uuid

    from _backends import new_schema, pg_probe, pg_url, redis_client, redis_url
    from services import require

    require("postgresql", pg_probe)
    require("redis", lambda: redis_client().ping())
    tag = uuid.uuid4().hex[:8]
    schema = new_schema("cs_route")
    with clawstate.open(
        f"sqlite:///{tmp_path / 'config.db'}",
        sweep_interval=0,
        backends={
            "sessions": redis_url(f"cs-route-{tag}:"),
            "orders": pg_url(schema),
        },
        namespaces={"sessions": {"backend": "sessions"}, "orders": {"backend": "orders"}},
    ) as store:
        try:
            store.namespace("sessions").put("s1", {"user": 7}, ttl=60)
            store.namespace("orders").put("o1", {"status": "open", "total": 5})
            store.namespace("config").put("flags", {"beta": True})
            assert {name: b.name for name, b in store.backends.items()} == {
                "default": "sqlite",
                "sessions": "redis",
                "orders": "postgresql",
            }
            stats = store.stats()["namespaces"]
            assert stats["sessions"]["backend"] == "sessions" and stats["sessions"]["items"] == 1
            assert stats["orders"]["backend"] == "orders" and stats["orders"]["items"] == 1
            page = store.namespace("orders").query({"filter": {"EQ": {"status": "open"}}})
            assert [i.key for i in page.items] == ["o1"]
            with pytest.raises(clawstate.InvalidRequest):
                with store.transaction() as tx:
                    tx.namespace("orders").put("o2", {"total": 1})
                    tx.namespace("sessions").put("s2", {"user": 8})
            assert store.namespace("orders").get("o2") is None
            assert store.check().ok
        finally:
            _drop(store, schema, f"cs-route-{tag}:")


def _drop(store: clawstate.Store, schema: str, prefix: str) -> None:
    from _backends import drop_prefix, drop_schema, redis_client

    store.close()
    drop_schema(schema)
    client = redis_client()
    drop_prefix(client, prefix)
    client.close()
