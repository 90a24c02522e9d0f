"""The backend seam (issue #11, section 3): one constructor, ``create=False`` on every
backend, indexes asked for by the facade, the codec handing PostgreSQL its documents.

* ``create=False`` (the CLI's read commands): a fresh PostgreSQL schema or Redis prefix
  gives "no store at …" and afterwards holds nothing — no schema, no table, no key.
* ``[namespaces."*"] indexes`` reach the backend: the facade asks when it opens a
  namespace (before, only named ``[namespaces.<name>]`` tables were read, by the
  PostgreSQL backend itself).
* the ``jsonb`` copy built from the document the codec handed over equals the one
  decoded from the bytes, and an encrypted value never gets one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import clawstate
from _backends import (
    DEFAULT_OPTIONS,
    Prefixes,
    pg,
    pg_admin,
    pg_url,
    prefixes,
    raw,
    redis_url,
    schemas,
)
from clawstate import ConfigError
from clawstate.backends.base import NO_DOCUMENT, BackendOptions
from clawstate.codec import Codec, CodecPolicy, stored_form
from clawstate.config import parse_url
from clawstate.keyring import Keyring

if TYPE_CHECKING:
    import redis

__all__ = ["pg", "prefixes", "raw", "schemas"]  # fixtures, re-exported for pytest


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "clawstate.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _schema_objects(schema: str) -> tuple[int, int]:
    """``(schemas named schema, tables in it)`` per information_schema."""
    with pg_admin() as conn:
        schemata = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone()
    assert schemata is not None and tables is not None
    return int(schemata[0]), int(tables[0])


def _keys(client: redis.Redis, prefix: str) -> list[bytes]:
    pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix) + "*"
    return list(client.scan_iter(match=pattern, count=1000))


@pytest.fixture
def open_pg(schemas: Callable[[], str]) -> Iterator[Callable[..., clawstate.Store]]:
    opened: list[clawstate.Store] = []

    def factory(schema: str | None = None, **options: Any) -> clawstate.Store:
        store = clawstate.open(pg_url(schema or schemas()), **{**DEFAULT_OPTIONS, **options})
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


# -- create=False --------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["get", "ns", "k"], ["scan", "ns"], ["stats"]])
def test_pg_read_command_on_a_fresh_schema_creates_nothing(
    command: list[str], schemas: Callable[[], str], tmp_path: Path
) -> None:
    schema = schemas()
    out = _cli(["--url", pg_url(schema), *command], tmp_path)
    assert out.returncode != 0, out.stdout
    assert "no store at" in out.stderr and schema in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert _schema_objects(schema) == (0, 0)
    assert list(tmp_path.iterdir()) == []  # no keyring, no directory either


def test_pg_embedded_open_with_create_false(
    schemas: Callable[[], str], open_pg: Callable[..., clawstate.Store]
) -> None:
    schema = schemas()
    with pytest.raises(ConfigError) as err:
        clawstate.open(pg_url(schema), create=False, **DEFAULT_OPTIONS)
    assert err.value.field == "store.url" and "no store at" in str(err.value)
    assert _schema_objects(schema) == (0, 0)
    # A schema that exists but holds no store is refused too, and left as it was.
    with pg_admin() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    with pytest.raises(ConfigError, match="no store at"):
        clawstate.open(pg_url(schema), create=False, **DEFAULT_OPTIONS)
    assert _schema_objects(schema) == (1, 0)
    # Once a store is there, create=False opens it and reads.
    open_pg(schema).namespace("ns").put("k", {"v": 1})
    reader = open_pg(schema, create=False)
    item = reader.namespace("ns").get("k")
    assert item is not None and item.value == {"v": 1}


def test_redis_read_command_on_a_fresh_prefix_writes_no_key(
    prefixes: Prefixes, raw: redis.Redis, tmp_path: Path
) -> None:
    prefix = prefixes.new()
    out = _cli(["--url", redis_url(prefix), "get", "ns", "k"], tmp_path)
    assert out.returncode != 0, out.stdout
    assert "no store at" in out.stderr and prefix in out.stderr, out.stderr
    assert _keys(raw, prefix) == []
    with pytest.raises(ConfigError) as err:
        clawstate.open(redis_url(prefix), create=False, **DEFAULT_OPTIONS)
    assert err.value.field == "store.url" and "no store at" in str(err.value)
    assert _keys(raw, prefix) == []
    with clawstate.open(redis_url(prefix), **DEFAULT_OPTIONS) as store:
        store.namespace("ns").put("k", "v")
    with clawstate.open(redis_url(prefix), create=False, **DEFAULT_OPTIONS) as reader:
        item = reader.namespace("ns").get("k")
        assert item is not None and item.value == "v"


def test_every_scheme_is_built_by_from_url_with_one_options_type(tmp_path: Path) -> None:
    from clawstate._open import BACKENDS, backend_class

    assert set(BACKENDS) == {"memory", "sqlite", "postgresql", "redis", "rediss"}
    for scheme in BACKENDS:
        assert callable(backend_class(scheme).from_url)
    with pytest.raises(ConfigError, match="does not name a storage backend"):
        backend_class("http")
    path = tmp_path / "missing" / "x.db"
    with pytest.raises(ConfigError, match="no store at"):
        backend_class("sqlite").from_url(
            parse_url(f"sqlite:///{path}"), BackendOptions(create=False)
        )
    assert not path.parent.exists()
    backend = backend_class("sqlite").from_url(
        parse_url(f"sqlite:///{path}"), BackendOptions(durability="power")
    )
    try:
        assert backend.stats()["durability"] == "power"
    finally:
        backend.close()


# -- indexes from the facade ---------------------------------------------------------------


def _index_names(schema: str) -> list[str]:
    with pg_admin() as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE 'items_q%%'",
            (schema,),
        ).fetchall()
    return sorted(str(r[0]) for r in rows)


def test_indexes_under_the_default_namespace_table_are_created(
    open_pg: Callable[..., clawstate.Store], schemas: Callable[[], str]
) -> None:
    schema = schemas()
    store = open_pg(schema, namespaces={"*": {"indexes": ["status", "customer.id"]}})
    assert _index_names(schema) == []  # nothing before a namespace is opened
    orders = store.namespace("orders")
    names = _index_names(schema)
    assert len(names) == 2
    assert sorted(store.backend.ensure_index("orders", ["status", "customer.id"])) == names
    store.namespace("invoices")
    assert len(_index_names(schema)) == 4  # every namespace gets the "*" policy's indexes
    orders.put("o1", {"status": "open", "customer": {"id": 3}})
    found = orders.query({"filter": {"EQ": {"customer.id": 3}}}).items
    assert [it.key for it in found] == ["o1"]


def test_named_namespace_indexes_apply_and_others_get_none(
    open_pg: Callable[..., clawstate.Store], schemas: Callable[[], str]
) -> None:
    schema = schemas()
    store = open_pg(schema, namespaces={"orders": {"indexes": ["status"]}})
    store.namespace("plain")
    assert _index_names(schema) == []
    store.namespace("orders")
    assert len(_index_names(schema)) == 1


# memory indexes: tests/test_indexes_redis_memory.py; SQLite: tests/test_sqlite_query.py
def test_sqlite_builds_the_declared_indexes(tmp_path: Path) -> None:
    with clawstate.open(
        f"sqlite:///{tmp_path}/s.db", namespaces={"*": {"indexes": ["a.b"]}}, **DEFAULT_OPTIONS
    ) as store:
        ns = store.namespace("n")  # the facade asked: the index is built
        ns.put("k", {"a": {"b": 1}})
        assert len(store.backend.ensure_index("n", ["a.b"])) == 1
        assert [it.key for it in ns.query({"filter": {"EQ": {"a.b": 1}}}).items] == ["k"]


# -- the codec hands PostgreSQL its documents ----------------------------------------------


DOCS: list[Any] = [
    {"name": "widget", "tags": ["a", "b"], "price": 12.5, "owner": {"id": 17}},
    {"nested": [1, 2.5, None, True, {"x": "ü"}]},
    "text",
    0,
    None,
    [],
    {"blob": b"\x00\x01"},  # nested bytes: JSON would turn them into text -> opaque
    {"nul": "a\x00b"},  # jsonb cannot hold NUL -> opaque
    {"big": "x" * 10_000},  # compressed
]


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
def test_document_handed_over_equals_the_one_decoded_from_bytes(serializer: str) -> None:
    from clawstate.backends.postgres import value_doc, write_doc

    codec = Codec(CodecPolicy(serializer=serializer, compress_above=1000))  # type: ignore[arg-type]
    for value in DOCS:
        if serializer == "json" and isinstance(value, dict) and "blob" in value:
            continue  # the json serializer refuses nested bytes
        data, doc = codec.encode_document("n", "k", value)
        assert doc is value
        assert write_doc(data, doc, codec) == value_doc(data, codec), value
    data, doc = codec.encode_document("n", "k", b"raw bytes")
    assert doc is NO_DOCUMENT and stored_form(data) == ("raw", False, False)


def test_an_encrypted_value_never_gets_a_document() -> None:
    from clawstate.backends.postgres import OPAQUE_ENCRYPTED, write_doc

    keyring = Keyring.generate()
    codec = Codec(CodecPolicy(encrypt=True), keyring)
    data, doc = codec.encode_document("n", "k", {"card": "4111"})
    assert doc is NO_DOCUMENT
    assert stored_form(data) == ("msgpack", False, True)
    # Even if a writer handed one over, the stored header decides.
    assert write_doc(data, {"card": "4111"}, codec) == (None, OPAQUE_ENCRYPTED)


def test_pg_rows_keep_documents_only_for_plaintext(
    open_pg: Callable[..., clawstate.Store], schemas: Callable[[], str], tmp_path: Path
) -> None:
    schema = schemas()
    store = open_pg(
        schema,
        namespaces={"secret": {"encrypt": True}, "wb": {"cache": "write-back"}},
        keyring=f"file:{tmp_path / 'keys.json'}",
    )
    store.namespace("plain").put_many([(f"k{i}", v) for i, v in enumerate(DOCS)])
    store.namespace("plain").put("one", {"a": 1})
    store.namespace("secret").put_many([("c1", {"cvv": "123"}), ("c2", {"cvv": "456"})])
    store.namespace("secret").put("c3", {"cvv": "789"})
    store.namespace("wb").put("w", {"a": 2})
    store.flush()
    with pg_admin() as conn:
        rows = conn.execute(
            f'SELECT n.name, i.key, i.doc IS NULL, i.opaque FROM "{schema}".items i '
            f'JOIN "{schema}".namespaces n ON n.id = i.ns ORDER BY n.name, i.key'
        ).fetchall()
    secret = [r for r in rows if r[0] == "secret"]
    assert len(secret) == 3 and all(r[2] and r[3] == 2 for r in secret)
    plain = {r[1]: (r[2], r[3]) for r in rows if r[0] == "plain"}
    assert plain["one"] == (False, 0) and plain["k6"] == (True, 1) and plain["k7"] == (True, 1)
    problems, _ = store.backend.check()
    assert problems == []  # check() recomputes every document from the bytes
