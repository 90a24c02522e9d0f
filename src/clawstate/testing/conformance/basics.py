"""Basic reads and writes: what every store does before versions, TTLs or logs matter."""

from __future__ import annotations

from typing import Any

import pytest

from clawstate import Store, VersionConflict
from clawstate.testing.fakes import FakeClock

from .helpers import all_changes, assert_refused, snapshot


class BasicsConformance:
    """Round trips, namespaces, ``get``/``get_many``, ``put_many``, ``delete`` and ``count``."""

    # -- round trips --------------------------------------------------------------------

    @pytest.mark.parametrize(
        "value",
        [
            {"items": [1, 2, 3], "total": 9.5, "open": True, "note": None},
            {"a": {"b": {"c": {"d": [{"e": "deep"}]}}}},
            [1, "two", 3.0, None, False, {"x": []}],
            {},
            [],
            "",
            "plain text",
            0,
            -1,
            2**63 - 1,
            -(2**63),
            3.14159,
            -0.5,
            True,
            False,
            None,
        ],
        ids=lambda v: type(v).__name__ + ":" + repr(v)[:20],
    )
    def test_put_get_round_trip(self, store: Store, value: Any) -> None:
        ns = store.namespace("rt")
        put = ns.put("k", value)
        got = ns.get("k")
        assert got is not None
        assert got.value == value
        assert type(got.value) is type(value)
        assert put.value == value
        assert (got.key, got.namespace, got.version, got.etag) == ("k", "rt", 1, put.etag)

    def test_put_get_unicode_value_and_key(self, store: Store) -> None:
        ns = store.namespace("rt")
        value = {"名前": "Zoë 😀", "emoji": "🎉" * 10, "mixed": "a\u0000b\ttab"}
        ns.put("ключ-😀", value)
        got = ns.get("ключ-😀")
        assert got is not None and got.value == value

    def test_put_get_bytes_value(self, store: Store) -> None:
        ns = store.namespace("rt")
        raw = bytes(range(256)) * 4
        ns.put("blob", raw)
        got = ns.get("blob")
        assert got is not None
        assert got.value == raw and isinstance(got.value, bytes)
        ns.put("empty", b"")
        empty = ns.get("empty")
        assert empty is not None and empty.value == b""

    def test_none_value_is_not_a_missing_key(self, store: Store) -> None:
        ns = store.namespace("rt")
        ns.put("null", None)
        got = ns.get("null")
        assert got is not None and got.value is None
        assert ns.count() == 1

    def test_large_value_round_trips(self, store: Store) -> None:
        ns = store.namespace("rt")
        value = {"rows": [{"i": i, "text": f"row {i} " * 5} for i in range(2000)]}
        ns.put("big", value)
        got = ns.get("big")
        assert got is not None and got.value == value

    def test_namespaces_are_separate(self, store: Store) -> None:
        a, b = store.namespace("a"), store.namespace("b")
        a.put("k", "in a")
        b.put("k", "in b")
        ga, gb = a.get("k"), b.get("k")
        assert ga is not None and gb is not None
        assert (ga.value, gb.value) == ("in a", "in b")
        assert (ga.version, gb.version) == (1, 1)
        a.delete("k")
        assert a.get("k") is None
        assert b.get("k") is not None
        assert set(store.namespaces()) >= {"a", "b"}

    def test_namespace_handle_is_reused(self, store: Store) -> None:
        assert store.namespace("same") is store.namespace("same")

    # -- get / get_many ------------------------------------------------------------------

    def test_get_missing_is_none(self, store: Store) -> None:
        ns = store.namespace("g")
        assert ns.get("nope") is None
        ns.put("other", 1)
        assert ns.get("nope") is None

    def test_get_in_never_written_namespace_is_none(self, store: Store) -> None:
        assert store.namespace("never").get("k") is None
        assert store.namespace("never").count() == 0

    def test_get_many_omits_missing_keys(self, store: Store) -> None:
        ns = store.namespace("g")
        ns.put("a", 1)
        ns.put("c", 3)
        got = ns.get_many(["a", "b", "c", "d"])
        assert sorted(got) == ["a", "c"]
        assert got["a"].value == 1 and got["c"].value == 3
        assert got["a"].key == "a" and got["a"].version == 1

    def test_get_many_with_duplicate_keys(self, store: Store) -> None:
        ns = store.namespace("g")
        ns.put("a", 1)
        got = ns.get_many(["a", "a", "missing", "a"])
        assert list(got) == ["a"]
        assert got["a"].value == 1

    def test_get_many_empty(self, store: Store) -> None:
        ns = store.namespace("g")
        assert ns.get_many([]) == {}
        ns.put("a", 1)
        assert ns.get_many([]) == {}

    def test_get_many_accepts_any_iterable(self, store: Store) -> None:
        ns = store.namespace("g")
        ns.put_many({"a": 1, "b": 2})
        assert sorted(ns.get_many(k for k in "ab")) == ["a", "b"]

    def test_get_many_matches_get(self, store: Store) -> None:
        ns = store.namespace("g")
        for i in range(30):
            ns.put(f"k{i}", {"i": i})
        many = ns.get_many([f"k{i}" for i in range(0, 40, 3)])
        for key, item in many.items():
            assert ns.get(key) == item
        assert len(many) == 10

    # -- put_many --------------------------------------------------------------------

    def test_put_many_writes_all(self, store: Store) -> None:
        ns = store.namespace("pm")
        ns.put("b", "old")
        items = ns.put_many({"a": 1, "b": 2, "c": 3})
        assert [(it.key, it.value, it.version) for it in items] == [
            ("a", 1, 1),
            ("b", 2, 2),
            ("c", 3, 1),
        ]
        assert {k: v.value for k, v in ns.get_many(["a", "b", "c"]).items()} == {
            "a": 1,
            "b": 2,
            "c": 3,
        }

    def test_put_many_accepts_pairs(self, store: Store) -> None:
        ns = store.namespace("pm")
        items = ns.put_many([("x", 1), ("y", 2)])
        assert [it.key for it in items] == ["x", "y"]

    def test_put_many_is_one_atomic_commit(self, store: Store) -> None:
        ns = store.namespace("pm")
        before = store.last_seq
        ns.put_many({f"k{i}": i for i in range(10)})
        changes = all_changes(store, "pm")
        assert [c.seq for c in changes] == list(range(before + 1, before + 11))
        assert store.last_seq == before + 10

    def test_put_many_empty(self, store: Store) -> None:
        ns = store.namespace("pm")
        assert ns.put_many({}) == []
        assert store.last_seq == 0

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param(("ok2", {1, 2}), id="set-value"),
            pytest.param(("", 1), id="empty-key"),
            pytest.param(("a\x00b", 1), id="nul-key"),
        ],
    )
    def test_put_many_with_a_bad_item_writes_nothing(
        self, store: Store, bad: tuple[str, Any]
    ) -> None:
        ns = store.namespace("pm")
        ns.put("ok1", "before")
        field = "value" if bad[0] == "ok2" else "key"
        assert_refused(store, field, lambda: ns.put_many([("ok1", "after"), bad, ("ok3", 3)]))
        got = ns.get("ok1")
        assert got is not None and (got.value, got.version) == ("before", 1)
        assert ns.get("ok3") is None

    def test_put_many_with_ttl(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("pm")
        items = ns.put_many({"a": 1, "b": 2}, ttl=30)
        assert all(it.expires_at == clock() + 30 for it in items)
        clock.advance(30)
        assert ns.get_many(["a", "b"]) == {}

    # -- delete --------------------------------------------------------------------------

    def test_delete_returns_true_then_false(self, store: Store) -> None:
        ns = store.namespace("d")
        ns.put("k", 1)
        assert ns.delete("k") is True
        assert ns.get("k") is None
        assert ns.delete("k") is False
        assert ns.delete("never") is False

    def test_delete_of_missing_key_writes_no_change(self, store: Store) -> None:
        ns = store.namespace("d")
        ns.put("k", 1)
        seq = store.last_seq
        assert ns.delete("other") is False
        assert store.last_seq == seq

    def test_delete_logs_a_delete_change_with_the_last_version(self, store: Store) -> None:
        ns = store.namespace("d")
        ns.put("k", 1)
        ns.put("k", 2)
        ns.delete("k")
        last = all_changes(store, "d")[-1]
        assert (last.op, last.key, last.version, last.namespace) == ("delete", "k", 2, "d")

    def test_delete_with_right_if_version(self, store: Store) -> None:
        ns = store.namespace("d")
        ns.put("k", 1)
        ns.put("k", 2)
        assert ns.delete("k", if_version=2) is True
        assert ns.get("k") is None

    def test_delete_with_wrong_if_version_conflicts(self, store: Store) -> None:
        ns = store.namespace("d")
        ns.put("k", 1)
        before = snapshot(store)
        with pytest.raises(VersionConflict) as info:
            ns.delete("k", if_version=5)
        assert (info.value.key, info.value.expected, info.value.actual) == ("k", 5, 1)
        assert snapshot(store) == before
        assert ns.get("k") is not None

    def test_delete_missing_with_if_version_conflicts(self, store: Store) -> None:
        ns = store.namespace("d")
        with pytest.raises(VersionConflict) as info:
            ns.delete("k", if_version=1)
        assert info.value.actual is None

    def test_count(self, store: Store) -> None:
        ns = store.namespace("c")
        assert ns.count() == 0
        ns.put_many({f"k{i}": i for i in range(7)})
        ns.delete("k3")
        assert ns.count() == 6
        store.namespace("other").put("x", 1)
        assert ns.count() == 6
