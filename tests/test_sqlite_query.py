"""SQLite query compilation and declared indexes (issue 12): the SQL path answers
exactly as the Python evaluator over the same rows, with and without indexes; an
index declared after data exists serves once built, also across a kill; explain
names the index; encrypted values still answer (scan); expired rows never do."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clawstate
from _backends import child_env
from clawstate.backends.base import OP_PUT, Write, WriteUnit
from clawstate.backends.sqlite import SQLiteBackend
from clawstate.codec import Codec, CodecPolicy
from clawstate.errors import InvalidRequest
from clawstate.query import parse_query, run_query

ROOT = Path(__file__).resolve().parent.parent
CODEC = Codec(CodecPolicy())
NS = "q"

# -- data -------------------------------------------------------------------------------

_keys = st.sampled_from(["a", "b", "c", "é", "ü x", "0", "n"])
_strings = st.text(alphabet=st.sampled_from('aAbz é€😀\x7f~"\\\n'), max_size=4)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.5, -1.5, 2.0, 1e300, 2**62]),
    _strings,
)
_docs = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=8,
)
_values = st.dictionaries(_keys, _docs, max_size=5)
_paths = st.sampled_from(
    ["a", "b", "c", "a.b", "a.c", "é", "ü x", "b.é", "a.0", "0", "a.1.b", "b.0.0", "n"]
)


def _leaf(op: str) -> st.SearchStrategy[dict[str, Any]]:
    if op == "EQ":
        return st.builds(lambda p, v: {"EQ": {p: v}}, _paths, _scalars)
    if op == "IN":
        return st.builds(
            lambda p, v: {"IN": {p: v}}, _paths, st.lists(_scalars, min_size=1, max_size=3)
        )
    return st.builds(
        lambda p, v: {op: {p: v}},
        _paths,
        st.one_of(st.integers(-5, 5), st.sampled_from([0.5, 2.0, 1e300]), _strings),
    )


_leaves = st.one_of(*(_leaf(op) for op in ("EQ", "IN", "GT", "GTE", "LT", "LTE")))
_filters = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"AND": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"OR": xs}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=4,
)
_sorts = st.lists(
    st.builds(lambda p, o: {"key": p, "order": o}, _paths, st.sampled_from(["ASC", "DESC"])),
    max_size=2,
    unique_by=lambda entry: entry["key"],
)


def _backend(path: Path) -> SQLiteBackend:
    backend = SQLiteBackend(path)
    backend.start_background()  # what the facade does once it accepted the open
    return backend


def _decode(item: Any) -> Any:
    return CODEC.decode(item.namespace, item.key, item.value)


def _put(backend: SQLiteBackend, rows: dict[str, Any], ttl: dict[str, float] | None = None) -> None:
    writes = []
    for key, value in rows.items():
        data, doc = CODEC.encode_document(NS, key, value)
        expires = (ttl or {}).get(key)
        writes.append(Write(NS, key, OP_PUT, data, expires_at=expires, doc=doc))
    if writes:
        backend.write(WriteUnit(writes, time.time()))


def _pages(backend: SQLiteBackend, doc: dict[str, Any], now: float) -> Iterator[Any]:
    """Every page of the query, following tokens."""
    token = None
    while True:
        page = dict(doc.get("page") or {})
        if token:
            page["token"] = token
        q = parse_query({**doc, "page": page})
        result = backend.query(NS, q, _decode, now)
        yield result
        token = result.token
        if token is None:
            return


def _model_pages(rows: dict[str, Any], doc: dict[str, Any]) -> list[tuple[list[str], str | None]]:
    out = []
    token = None
    while True:
        page = dict(doc.get("page") or {})
        if token:
            page["token"] = token
        run = run_query(
            parse_query({**doc, "page": page}), [(k, v, k) for k, v in sorted(rows.items())]
        )
        out.append((run.items, run.token))
        token = run.token
        if token is None:
            return out


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteBackend]:
    backend = _backend(tmp_path_factory.mktemp("q") / "s.db")
    yield backend
    backend.close()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    rows=st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), _values, max_size=12),
    flt=st.one_of(st.none(), _filters),
    sort=_sorts,
    limit=st.integers(1, 5),
    indexed=st.lists(st.sampled_from(["a", "b", "a.b", "é", "ü x"]), max_size=2),
)
def test_sql_answers_as_the_evaluator(
    shared: SQLiteBackend,
    rows: dict[str, Any],
    flt: Any,
    sort: list[Any],
    limit: int,
    indexed: list[str],
) -> None:
    conn = shared._conn()
    conn.execute("DELETE FROM items")
    _put(shared, rows)
    if indexed:
        shared.ensure_index(NS, indexed)
    doc: dict[str, Any] = {"sort": sort, "page": {"limit": limit}}
    if flt is not None:
        doc["filter"] = flt
    expected = _model_pages(rows, doc)
    got = [([it.key for it in r.items], r.token) for r in _pages(shared, doc, time.time())]
    assert got == expected


def test_paths_and_operators_are_compiled_not_scanned(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "s.db")
    _put(backend, {f"k{i}": {"user": f"u{i % 3}", "total": i, "o": {"x": i}} for i in range(30)})
    for flt in (
        {"EQ": {"user": "u1"}},
        {"IN": {"total": [1, 2.0, "3", True]}},
        {"AND": [{"GT": {"total": 3}}, {"LTE": {"user": "u1"}}]},
        {"OR": [{"EQ": {"o.x": 4}}, {"EQ": {"o": None}}]},
    ):
        q = parse_query({"filter": flt, "sort": [{"key": "total", "order": "DESC"}]})
        plan = backend.query(NS, q, _decode, time.time()).plan
        assert plan.strategy == "sql", (flt, plan)
    # A digit segment is an array index or a key depending on the row: both tried.
    _put(backend, {"arr": {"o": [7, 8]}, "obj": {"o": {"0": 7}}, "str": {"o": {"0": "7"}}})
    q = parse_query({"filter": {"EQ": {"o.0": 7}}})
    result = backend.query(NS, q, _decode, time.time())
    assert result.plan.strategy == "sql" and [i.key for i in result.items] == ["arr", "obj"]
    # Beyond three digit segments: the Python path, and the plan says why.
    q = parse_query({"filter": {"EQ": {"o.0.1.2.3": 1}}})
    plan = backend.query(NS, q, _decode, time.time()).plan
    assert plan.strategy == "scan" and "digit segments" in plan.detail[0]
    backend.close()


def test_index_after_data_serves_and_explain_names_it(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "s.db")
    rows = {f"k{i:05d}": {"user": f"u{i % 500}", "total": i} for i in range(5000)}
    _put(backend, rows)
    q = parse_query({"filter": {"EQ": {"user": "u7"}}, "page": {"limit": 4}})
    before = backend.query(NS, q, _decode, time.time(), explain=True)
    assert before.plan.strategy == "sql" and before.plan.index is None
    seen: list[tuple[int, int]] = []
    names = backend.ensure_index(NS, ["user"], lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 5000) and seen[-1] == (5000, 5000)
    assert backend.ensure_index(NS, ["user"]) == names  # idempotent
    after = backend.query(NS, q, _decode, time.time(), explain=True)
    assert after.plan.strategy == "index" and after.plan.index == names[0]
    assert any(names[0] in line for line in after.plan.detail)
    assert [i.key for i in after.items] == [i.key for i in before.items]
    assert after.plan.rows_read == 5  # limit + 1, read through the index
    # A served query is never refused; an unserved one on a big namespace is.
    backend.query(NS, q, _decode, time.time(), max_scan=10)
    with pytest.raises(InvalidRequest) as err:
        backend.query(
            NS, parse_query({"filter": {"EQ": {"total": 3}}}), _decode, time.time(), max_scan=10
        )
    assert err.value.field == "query"
    # Key order, no index: a page whose matches lie within the bound still answers.
    dense = parse_query({"filter": {"GTE": {"total": 0}}, "page": {"limit": 3}})
    page = backend.query(NS, dense, _decode, time.time(), max_scan=10)
    assert [i.key for i in page.items] == ["k00000", "k00001", "k00002"]
    backend.close()


def test_keyed_index_reads_an_eq_page_in_key_order(tmp_path: Path) -> None:
    """The index holds (value, key): an EQ page without a sort reads exactly limit + 1
    entries in key order, with no sort step, however many rows share the value."""
    backend = _backend(tmp_path / "s.db")
    # Inserted against key order, so rowid order is not key order.
    rows = {
        f"k{i:05d}": {"user": "dense" if i % 4 else f"u{i % 7}", "n": i % 3} for i in range(3000)
    }
    _put(backend, dict(reversed(list(rows.items()))))
    names = backend.ensure_index(NS, ["user", "n"])
    now = time.time()
    for flt in (
        {"EQ": {"user": "dense"}},
        {"EQ": {"user": "u3"}},
        {"EQ": {"n": 2}},
        {"AND": [{"EQ": {"user": "dense"}}, {"EQ": {"n": 1}}]},
    ):
        q = parse_query({"filter": flt, "page": {"limit": 5}})
        got = backend.query(NS, q, _decode, now, explain=True)
        want = run_query(q, ((k, v, k) for k, v in sorted(rows.items())), key_ordered=True)
        assert [i.key for i in got.items] == want.items
        assert got.token == want.token
        assert got.plan.rows_read == 6 and got.plan.index in names
        assert not any("TEMP B-TREE" in line for line in got.plan.detail), got.plan.detail
        resumed = parse_query({"filter": flt, "page": {"limit": 5, "token": got.token}})
        nxt = backend.query(NS, resumed, _decode, now)
        assert [i.key for i in nxt.items] == run_query(
            parse_query({"filter": flt, "page": {"limit": 5, "token": want.token}}),
            ((k, v, k) for k, v in sorted(rows.items())),
        ).items
    backend.close()


def test_value_only_index_of_an_older_store_is_rebuilt_keyed(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "s.db")
    _put(backend, {f"k{i}": {"user": f"u{i % 3}"} for i in range(30)})
    (name,) = backend.ensure_index(NS, ["user"])
    old = name.removesuffix("_k")
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    # What an older clawstate left: the index on the value alone, under the old name.
    conn.execute(f'DROP INDEX "{name}"')
    conn.execute(f"""CREATE INDEX "{old}" ON items (json_extract(doc, '$."user"')) WHERE ns = 1""")
    conn.execute("UPDATE query_indexes SET name = ?", (old,))
    backend.close()
    backend = _backend(tmp_path / "s.db")
    q = parse_query({"filter": {"EQ": {"user": "u1"}}, "page": {"limit": 3}})
    served = backend.query(NS, q, _decode, time.time(), explain=True)
    assert served.plan.index == old  # still serves (through the probe)
    assert backend.ensure_index(NS, ["user"]) == [name]
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert name in indexes and old not in indexes
    assert conn.execute("SELECT name, state FROM query_indexes").fetchall() == [(name, "ready")]
    again = backend.query(NS, q, _decode, time.time(), explain=True)
    assert again.plan.index == name
    assert [i.key for i in again.items] == [i.key for i in served.items]
    conn.close()
    backend.close()


@pytest.mark.parametrize("bad", ["", "a..b", "a.0", 'a"b', "a\\b", "a\x00", "x" + ".y" * 40])
def test_hostile_index_paths_are_refused(tmp_path: Path, bad: str) -> None:
    backend = _backend(tmp_path / "s.db")
    with pytest.raises(InvalidRequest) as err:
        backend.ensure_index(NS, [bad])
    assert err.value.field == "indexes"
    with pytest.raises(InvalidRequest):
        backend.ensure_index(NS, "user")  # type: ignore[arg-type]
    backend.close()


def test_expired_rows_are_never_returned(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "s.db")
    now = time.time()
    _put(backend, {"a": {"u": 1}, "b": {"u": 1}, "c": {"u": 2}}, ttl={"a": now - 1, "c": now - 1})
    for indexed in (False, True):
        if indexed:
            backend.ensure_index(NS, ["u"])
        q = parse_query({"filter": {"IN": {"u": [1, 2]}}})
        assert [i.key for i in backend.query(NS, q, _decode, now).items] == ["b"]
        q = parse_query({"sort": [{"key": "u"}]})
        assert [i.key for i in backend.query(NS, q, _decode, now).items] == ["b"]
    backend.close()


def test_encrypted_namespace_still_answers_by_scan(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    options: dict[str, Any] = {
        "sweep_interval": 0,
        "keyring": f"file:{tmp_path / 'keys.json'}",
        "namespaces": {"vault": {"encrypt": True}},
    }
    with clawstate.open(f"sqlite:///{db}", **options) as store:
        vault = store.namespace("vault")
        for i in range(10):
            vault.put(f"k{i}", {"user": f"u{i % 2}", "n": i})
        page = vault.query(
            {"filter": {"EQ": {"user": "u1"}}, "sort": [{"key": "n", "order": "DESC"}]},
            explain=True,
        )
        assert [it.key for it in page.items] == ["k9", "k7", "k5", "k3", "k1"]
        assert page.plan is not None and page.plan.strategy == "scan"
    conn = sqlite3.connect(db)
    assert (
        conn.execute("SELECT COUNT(*) FROM items WHERE doc IS NOT NULL AND opaque = 2").fetchone()[
            0
        ]
        == 0
    )
    conn.close()


def _make_old_store(db: Path, n: int) -> dict[str, Any]:
    """A store whose rows predate the JSON copy (as an upgraded store's are)."""
    backend = _backend(db)
    rows = {f"k{i:06d}": {"user": f"u{i % 2000}", "total": i} for i in range(n)}
    for start in range(0, n, 5000):
        _put(backend, dict(list(rows.items())[start : start + 5000]))
    backend.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE items SET doc = NULL, opaque = NULL")
    conn.commit()
    conn.close()
    return rows


def test_an_upgraded_store_is_backfilled_and_answers_meanwhile(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    rows = _make_old_store(db, 3000)
    backend = _backend(db)
    q = parse_query({"filter": {"EQ": {"user": "u3"}}, "page": {"limit": 5}})
    expected = _model_pages(rows, {"filter": {"EQ": {"user": "u3"}}, "page": {"limit": 5}})[0][0]
    first = backend.query(NS, q, _decode, time.time())
    assert [i.key for i in first.items] == expected  # scan or SQL: the same answer
    assert backend._maintenance is not None
    backend._maintenance.join(60)
    done = backend.query(NS, q, _decode, time.time())
    assert done.plan.strategy == "sql" and [i.key for i in done.items] == expected
    backend.close()


_KILLED_CHILD = """
import sys, time
from clawstate.backends.sqlite import SQLiteBackend
b = SQLiteBackend(sys.argv[1])
b._stop_maintenance()
# Slow the build down (a sleep every 1000 VM steps) so the kill lands inside it.
b._conn().set_progress_handler(lambda: time.sleep(0.002) or 0, 1000)
print("building", flush=True)
b.ensure_index("q", ["user"])
print("built", flush=True)
"""


def test_a_kill_during_the_index_build_leaves_a_sound_store(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    rows = _make_old_store(db, 20000)
    backend = _backend(db)  # backfill the documents first, so the build takes long
    assert backend._maintenance is not None
    backend._maintenance.join(120)
    backend.close()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, str(db)],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "building"
    time.sleep(0.5)
    assert child.poll() is None, "the build ended before the kill"
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    conn = sqlite3.connect(db)
    state = conn.execute("SELECT state FROM query_indexes").fetchall()
    conn.close()
    assert state == [("building",)]  # declared, its build rolled back with the kill
    doc = {"filter": {"EQ": {"user": "u42"}}, "page": {"limit": 7}}
    expected = _model_pages(rows, doc)
    backend = _backend(db)
    got = [([it.key for it in r.items], r.token) for r in _pages(backend, doc, time.time())]
    assert got == expected
    if backend._maintenance is not None:
        backend._maintenance.join(120)  # the next open finishes the index
    ready = backend.ready_indexes(backend._ns_id(NS) or 0)
    assert list(ready) == [("user",)]
    names = backend.ensure_index(NS, ["user"])
    q = parse_query(doc)
    result = backend.query(NS, q, _decode, time.time(), explain=True)
    assert result.plan.index == names[0]
    assert [it.key for it in result.items] == expected[0][0]
    backend.close()


def test_concurrent_openers_declare_the_same_index_once(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    first = _backend(db)
    _put(first, {f"k{i}": {"user": f"u{i % 7}"} for i in range(2000)})
    second = _backend(db)
    names: list[list[str]] = []
    errors: list[BaseException] = []

    def declare(backend: SQLiteBackend) -> None:
        try:
            names.append(backend.ensure_index(NS, ["user", "total"]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=declare, args=(b,)) for b in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and names[0] == names[1]
    conn = first._conn()
    assert conn.execute("SELECT COUNT(*), MIN(state) FROM query_indexes").fetchone() == (2, "ready")
    q = parse_query({"filter": {"EQ": {"user": "u3"}}, "page": {"limit": 3}})
    assert second.query(NS, q, _decode, time.time(), explain=True).plan.index == names[0][0]
    first.close()
    second.close()


def test_the_backfill_starts_only_once_the_facade_accepted_the_open(tmp_path: Path) -> None:
    """Constructing the backend writes nothing in the background (an open the facade
    then refuses, e.g. for a keyring that does not match, must change nothing); the
    facade starts the backfill once it accepted the open."""
    db = tmp_path / "s.db"
    _make_old_store(db, 500)

    def undocumented() -> int:
        conn = sqlite3.connect(db)
        try:
            return int(
                conn.execute("SELECT COUNT(*) FROM items WHERE opaque IS NULL").fetchone()[0]
            )
        finally:
            conn.close()

    before = undocumented()
    assert before == 500
    backend = SQLiteBackend(db)
    time.sleep(0.3)
    assert backend._maintenance is None and undocumented() == before
    backend.close()
    store = clawstate.open(f"sqlite:///{db}")
    maintenance = store.backend._maintenance  # type: ignore[attr-defined]
    assert maintenance is not None
    maintenance.join(60)
    store.close()
    assert undocumented() == 0
