"""Scans and queries: ordered, paged reads whose cursors and tokens are refused out of context."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from clawstate import Namespace, Store

from .helpers import UNICODE_KEYS, _utf8, assert_refused, scan_all


class ScanQueryConformance:
    """``scan`` (prefixes, cursors, UTF-8 byte order) and ``query`` (filters, sorting, paging)."""

    # -- scan -----------------------------------------------------------------------------

    def test_scan_prefix(self, store: Store) -> None:
        ns = store.namespace("s")
        ns.put_many({"a1": 1, "b1": 2, "a2": 3, "ab": 4, "a": 5, "B": 6})
        assert [it.key for it in ns.scan(prefix="a").items] == ["a", "a1", "a2", "ab"]
        assert [it.key for it in ns.scan(prefix="b").items] == ["b1"]
        assert [it.key for it in ns.scan(prefix="zz").items] == []
        assert [it.key for it in ns.scan().items] == ["B", "a", "a1", "a2", "ab", "b1"]
        values = {it.key: it.value for it in ns.scan(prefix="a").items}
        assert values == {"a": 5, "a1": 1, "a2": 3, "ab": 4}

    def test_scan_items_carry_metadata(self, store: Store) -> None:
        ns = store.namespace("s")
        put = ns.put("k", {"v": 1})
        (item,) = ns.scan().items
        assert item == put

    def test_scan_limit_and_last_page_cursor(self, store: Store) -> None:
        ns = store.namespace("s")
        ns.put_many({f"k{i}": i for i in range(4)})
        first = ns.scan(limit=2)
        assert [it.key for it in first.items] == ["k0", "k1"]
        assert first.cursor is not None
        second = ns.scan(limit=2, cursor=first.cursor)
        assert [it.key for it in second.items] == ["k2", "k3"]
        assert second.cursor is None
        assert ns.scan(limit=10).cursor is None

    def test_scan_empty_namespace(self, store: Store) -> None:
        page = store.namespace("empty").scan()
        assert page.items == [] and page.cursor is None
        assert len(page) == 0

    def test_scan_paging_visits_every_key_once_in_utf8_order(self, store: Store) -> None:
        ns = store.namespace("s")
        ns.put_many({k: i for i, k in enumerate(UNICODE_KEYS)})
        expected = sorted(UNICODE_KEYS, key=_utf8)
        for limit in (1, 3, 7, len(UNICODE_KEYS), 1000):
            seen = [it.key for it in scan_all(ns, limit=limit)]
            assert seen == expected, limit

    def test_scan_prefix_paging_with_non_ascii(self, store: Store) -> None:
        ns = store.namespace("s")
        keys = [f"ü{c}" for c in "aé€😀z"] + ["u", "v", "ü", "üü", "ý"]
        ns.put_many({k: 1 for k in keys})
        got = [it.key for it in scan_all(ns, prefix="ü", limit=2)]
        assert got == sorted([k for k in keys if k.startswith("ü")], key=_utf8)

    def test_scan_prefix_at_top_of_unicode(self, store: Store) -> None:
        ns = store.namespace("s")
        top = "\U0010ffff"
        ns.put_many({top: 1, top + "a": 2, top + top: 3, "\uffff": 4, "a": 5})
        assert [it.key for it in scan_all(ns, prefix=top, limit=1)] == [
            top,
            top + "a",
            top + top,
        ]

    def test_scan_is_stable_under_concurrent_inserts_and_deletes(self, store: Store) -> None:
        ns = store.namespace("s")
        ns.put_many({f"k{i:02d}": i for i in range(20)})
        first = ns.scan(limit=5)
        assert [it.key for it in first.items] == [f"k{i:02d}" for i in range(5)]
        # Between pages: insert before and after the cursor, delete before and after it.
        ns.put("k02x", "before cursor")
        ns.put("k10x", "after cursor")
        ns.delete("k01")
        ns.delete("k07")
        ns.put("k04", "rewritten at the cursor")
        seen = [it.key for it in first.items]
        cursor = first.cursor
        while cursor is not None:
            page = ns.scan(limit=5, cursor=cursor)
            seen.extend(it.key for it in page.items)
            cursor = page.cursor
        assert len(seen) == len(set(seen)), "a key was visited twice"
        survivors = {f"k{i:02d}" for i in range(20)} - {"k07"}
        assert survivors <= set(seen), "a key that existed throughout was skipped"
        assert "k07" not in seen and "k10x" in seen and "k02x" not in seen

    def test_scan_cursor_from_another_prefix_refused(self, store: Store) -> None:
        ns = store.namespace("s")
        ns.put_many({f"a{i}": i for i in range(5)} | {f"b{i}": i for i in range(5)})
        page = ns.scan(prefix="a", limit=2)
        assert page.cursor is not None
        cursor = page.cursor
        assert_refused(store, "cursor", lambda: ns.scan(prefix="b", limit=2, cursor=cursor))
        assert_refused(store, "cursor", lambda: ns.scan(limit=2, cursor=cursor))

    @pytest.mark.parametrize("bad", ["!!!", "not-a-cursor", "AAAA", "é", "", 12])
    def test_scan_bad_cursor_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("s")
        ns.put("k", 1)
        assert_refused(store, "cursor", lambda: ns.scan(cursor=bad))

    @pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10", 10**9])
    def test_scan_bad_limit_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("s")
        ns.put("k", 1)
        assert_refused(store, "limit", lambda: ns.scan(limit=bad))

    @pytest.mark.parametrize("bad", ["a\x00", 5, None, "\ud800"])
    def test_scan_bad_prefix_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("s")
        ns.put("k", 1)
        assert_refused(store, "prefix", lambda: ns.scan(prefix=bad))

    # -- query ----------------------------------------------------------------------------

    ORDERS: ClassVar[dict[str, Any]] = {
        "o1": {"status": "open", "total": 30, "customer": {"tier": "gold", "city": "Oslo"}},
        "o2": {"status": "closed", "total": 10, "customer": {"tier": "silver", "city": "Bergen"}},
        "o3": {"status": "open", "total": 20, "customer": {"tier": "silver", "city": "Oslo"}},
        "o4": {"status": "open", "total": 50, "customer": {"tier": "gold", "city": "Tromsø"}},
        "o5": {"status": "void", "total": 20, "customer": {"tier": "bronze", "city": "Bergen"}},
        "o6": {"status": "open", "total": 5.5, "customer": {"city": "Oslo"}},
    }

    def _orders(self, store: Store) -> Namespace:
        ns = store.namespace("orders")
        ns.put_many(self.ORDERS)
        return ns

    @staticmethod
    def _keys(ns: Namespace, query: dict[str, Any]) -> list[str]:
        return [it.key for it in ns.query(query).items]

    def test_query_eq(self, store: Store) -> None:
        ns = self._orders(store)
        assert self._keys(ns, {"filter": {"EQ": {"status": "open"}}}) == ["o1", "o3", "o4", "o6"]
        items = ns.query({"filter": {"EQ": {"status": "closed"}}}).items
        assert [(it.key, it.value, it.version) for it in items] == [("o2", self.ORDERS["o2"], 1)]

    def test_query_eq_on_nested_path(self, store: Store) -> None:
        ns = self._orders(store)
        assert self._keys(ns, {"filter": {"EQ": {"customer.tier": "gold"}}}) == ["o1", "o4"]
        assert self._keys(ns, {"filter": {"EQ": {"customer.city": "Tromsø"}}}) == ["o4"]
        assert self._keys(ns, {"filter": {"EQ": {"customer.missing": "x"}}}) == []

    def test_query_in(self, store: Store) -> None:
        ns = self._orders(store)
        query = {"filter": {"IN": {"customer.tier": ["silver", "bronze"]}}}
        assert self._keys(ns, query) == ["o2", "o3", "o5"]

    def test_query_and_or(self, store: Store) -> None:
        ns = self._orders(store)
        both = {"filter": {"AND": [{"EQ": {"status": "open"}}, {"EQ": {"customer.city": "Oslo"}}]}}
        assert self._keys(ns, both) == ["o1", "o3", "o6"]
        either = {"filter": {"OR": [{"EQ": {"status": "void"}}, {"EQ": {"customer.tier": "gold"}}]}}
        assert self._keys(ns, either) == ["o1", "o4", "o5"]
        nested = {
            "filter": {
                "AND": [
                    {"OR": [{"EQ": {"status": "open"}}, {"EQ": {"status": "closed"}}]},
                    {"GT": {"total": 15}},
                ]
            }
        }
        assert self._keys(ns, nested) == ["o1", "o3", "o4"]

    @pytest.mark.parametrize(
        ("op", "operand", "expected"),
        [
            ("GT", 20, ["o1", "o4"]),
            ("GTE", 20, ["o1", "o3", "o4", "o5"]),
            ("LT", 20, ["o2", "o6"]),
            ("LTE", 20, ["o2", "o3", "o5", "o6"]),
            ("GT", 5.5, ["o1", "o2", "o3", "o4", "o5"]),
        ],
    )
    def test_query_range(self, store: Store, op: str, operand: float, expected: list[str]) -> None:
        ns = self._orders(store)
        assert self._keys(ns, {"filter": {op: {"total": operand}}}) == expected

    def test_query_range_on_strings(self, store: Store) -> None:
        ns = self._orders(store)
        assert self._keys(ns, {"filter": {"GTE": {"customer.city": "Oslo"}}}) == [
            "o1",
            "o3",
            "o4",
            "o6",
        ]
        assert self._keys(ns, {"filter": {"LT": {"customer.city": "Oslo"}}}) == ["o2", "o5"]

    def test_query_sort_asc_and_desc(self, store: Store) -> None:
        ns = self._orders(store)
        asc = {"sort": [{"key": "total", "order": "ASC"}]}
        assert self._keys(ns, asc) == ["o6", "o2", "o3", "o5", "o1", "o4"]
        desc = {"sort": [{"key": "total", "order": "DESC"}]}
        # Ties (o3, o5 at 20) break by key ascending whatever the order.
        assert self._keys(ns, desc) == ["o4", "o1", "o3", "o5", "o2", "o6"]
        default = {"sort": [{"key": "total"}]}
        assert self._keys(ns, default) == self._keys(ns, asc)

    def test_query_sort_by_nested_path_with_filter(self, store: Store) -> None:
        ns = self._orders(store)
        query = {
            "filter": {"EQ": {"status": "open"}},
            "sort": [{"key": "customer.city", "order": "DESC"}, {"key": "total"}],
        }
        assert self._keys(ns, query) == ["o4", "o6", "o3", "o1"]

    def test_query_without_filter_returns_all_in_key_order(self, store: Store) -> None:
        ns = self._orders(store)
        assert self._keys(ns, {}) == sorted(self.ORDERS)

    def test_query_paging_with_tokens(self, store: Store) -> None:
        ns = self._orders(store)
        base: dict[str, Any] = {"sort": [{"key": "total", "order": "DESC"}]}
        full = self._keys(ns, base)
        seen: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            page_spec: dict[str, Any] = {"limit": 2}
            if token is not None:
                page_spec["token"] = token
            page = ns.query({**base, "page": page_spec})
            assert len(page.items) <= 2
            seen.extend(it.key for it in page.items)
            pages += 1
            token = page.cursor
            if token is None:
                break
            assert pages < 10
        assert seen == full
        assert pages in (3, 4)

    def test_query_page_limit(self, store: Store) -> None:
        ns = self._orders(store)
        page = ns.query({"page": {"limit": 4}})
        assert [it.key for it in page.items] == ["o1", "o2", "o3", "o4"]
        assert page.cursor is not None

    def test_query_token_from_another_query_refused(self, store: Store) -> None:
        ns = self._orders(store)
        page = ns.query({"filter": {"EQ": {"status": "open"}}, "page": {"limit": 1}})
        assert page.cursor is not None
        token = page.cursor
        err = assert_refused(
            store,
            "query",
            lambda: ns.query({"filter": {"EQ": {"status": "void"}}, "page": {"token": token}}),
            prefix=True,
        )
        assert err.field.startswith("query.page")

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param({"filter": {"NOPE": {"a": 1}}}, id="unknown-operator"),
            pytest.param({"filter": {"EQ": {"a": 1, "b": 2}}}, id="two-keys"),
            pytest.param({"filter": {"EQ": {"a": [1]}}}, id="non-scalar-eq"),
            pytest.param({"filter": {"IN": {"a": []}}}, id="empty-in"),
            pytest.param({"filter": {"AND": []}}, id="empty-and"),
            pytest.param({"filter": {"GT": {"a": None}}}, id="null-range"),
            pytest.param({"sort": [{"key": "a", "order": "UP"}]}, id="bad-order"),
            pytest.param({"page": {"limit": 0}}, id="zero-limit"),
            pytest.param({"page": {"limit": 10**9}}, id="huge-limit"),
            pytest.param({"page": {"token": "garbage!"}}, id="bad-token"),
            pytest.param({"where": {}}, id="unknown-field"),
            pytest.param([], id="not-an-object"),
            pytest.param("{not json", id="bad-json-text"),
            pytest.param({"filter": {"EQ": {"a..b": 1}}}, id="empty-path-segment"),
        ],
    )
    def test_query_invalid_refused(self, store: Store, bad: Any) -> None:
        ns = self._orders(store)
        assert_refused(store, "query", lambda: ns.query(bad), prefix=True)

    def test_query_too_deep_refused(self, store: Store) -> None:
        ns = self._orders(store)
        node: dict[str, Any] = {"EQ": {"status": "open"}}
        for _ in range(40):
            node = {"AND": [node]}
        err = assert_refused(store, "query", lambda: ns.query({"filter": node}), prefix=True)
        assert err.limit is not None

    def test_query_accepts_json_text(self, store: Store) -> None:
        ns = self._orders(store)
        page = ns.query('{"filter": {"EQ": {"status": "void"}}}')
        assert [it.key for it in page.items] == ["o5"]
