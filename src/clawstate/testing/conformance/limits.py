"""Limits and bad input (keys, values, TTLs, namespace names and options)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from clawstate import ConfigError, InvalidRequest, Store
from clawstate.testing.fakes import FakeClock

from .helpers import TEN_YEARS, StoreFactory, assert_refused


class LimitsConformance:
    """Limits and bad input.

    Every refusal is an ``InvalidRequest`` naming the field, and changes nothing.
    """

    # -- limits and bad input --------------------------------------------------------------

    def test_key_of_900_utf8_bytes_accepted(self, store: Store) -> None:
        ns = store.namespace("lim")
        key = "€" * 300  # 900 bytes
        ns.put(key, 1)
        got = ns.get(key)
        assert got is not None and got.key == key
        edge = "x" * 1024
        ns.put(edge, 2)
        assert ns.get(edge) is not None

    def test_key_over_1024_utf8_bytes_refused(self, store: Store) -> None:
        ns = store.namespace("lim")
        key = "€" * 342  # 1026 bytes, only 342 characters
        err = assert_refused(store, "key", lambda: ns.put(key, 1))
        assert err.limit == 1024
        assert_refused(store, "key", lambda: ns.put("x" * 1025, 1))
        assert_refused(store, "key", lambda: ns.get(key))
        assert_refused(store, "key", lambda: ns.delete(key))
        assert_refused(store, "key", lambda: ns.get_many(["ok", key]))

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param("", id="empty"),
            pytest.param("a\x00b", id="nul"),
            pytest.param("\x00", id="only-nul"),
            pytest.param("\ud800", id="lone-surrogate"),
            pytest.param("ok\udfffok", id="embedded-surrogate"),
            pytest.param(1, id="int"),
            pytest.param(None, id="none"),
            pytest.param(b"bytes", id="bytes"),
            pytest.param(("a",), id="tuple"),
        ],
    )
    def test_bad_key_refused_everywhere(self, store: Store, bad: Any) -> None:
        ns = store.namespace("lim")
        ns.put("existing", 1)
        assert_refused(store, "key", lambda: ns.put(bad, 1))
        assert_refused(store, "key", lambda: ns.put(bad, 1, if_absent=True))
        assert_refused(store, "key", lambda: ns.get(bad))
        assert_refused(store, "key", lambda: ns.delete(bad))
        assert_refused(store, "key", lambda: ns.get_many([bad]))
        assert_refused(store, "key", lambda: ns.put_many([("fine", 1), (bad, 2)]))

        def in_tx() -> None:
            with store.transaction() as tx:
                tx.namespace("lim").put("fine", 1)
                tx.namespace("lim").put(bad, 2)

        assert_refused(store, "key", in_tx)

    def test_value_too_large_refused(self, open_store: StoreFactory) -> None:
        store = open_store(limits={"max_value_bytes": 1000})
        ns = store.namespace("lim")
        ns.put("small", "x" * 500)
        err = assert_refused(store, "value", lambda: ns.put("big", "x" * 2000))
        assert err.limit == 1000
        assert_refused(store, "value", lambda: ns.put("small", b"\x00" * 1001))
        assert_refused(store, "value", lambda: ns.put_many({"a": 1, "big": ["y" * 600] * 2}))
        got = ns.get("small")
        assert got is not None and got.value == "x" * 500

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param({1, 2}, id="set"),
            pytest.param(datetime.datetime(2024, 1, 1), id="datetime"),
            pytest.param({"when": datetime.date(2024, 1, 1)}, id="nested-date"),
            pytest.param({1: "int key"}, id="int-dict-key"),
            pytest.param(object(), id="object"),
            pytest.param(2**64, id="int-too-big"),
            pytest.param({"s": "\ud800"}, id="lone-surrogate-string"),
            pytest.param([frozenset()], id="frozenset-in-list"),
        ],
    )
    def test_non_json_value_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("lim")
        ns.put("k", "before")
        assert_refused(store, "value", lambda: ns.put("k", bad))
        assert_refused(store, "value", lambda: ns.put("new", bad))
        got = ns.get("k")
        assert got is not None and got.value == "before"

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param(-1, id="negative"),
            pytest.param(0, id="zero"),
            pytest.param(0.0, id="zero-float"),
            pytest.param(float("nan"), id="nan"),
            pytest.param(float("inf"), id="inf"),
            pytest.param(TEN_YEARS + 1, id="over-10-years"),
            pytest.param(True, id="bool"),
            pytest.param("60", id="str"),
        ],
    )
    def test_bad_ttl_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("lim")
        ns.put("k", 1)
        assert_refused(store, "ttl", lambda: ns.put("k", 2, ttl=bad))
        assert_refused(store, "ttl", lambda: ns.put_many({"a": 1}, ttl=bad))

        def in_tx() -> None:
            with store.transaction() as tx:
                tx.namespace("lim").put("a", 1, ttl=bad)

        assert_refused(store, "ttl", in_tx)

    def test_ttl_of_ten_years_accepted(self, store: Store, clock: FakeClock) -> None:
        item = store.namespace("lim").put("k", 1, ttl=TEN_YEARS)
        assert item.expires_at == clock() + TEN_YEARS

    @pytest.mark.parametrize("bad", [0, -3, True, False, 1.0, "1"])
    def test_bad_if_version_refused(self, store: Store, bad: Any) -> None:
        ns = store.namespace("lim")
        ns.put("k", 1)
        assert_refused(store, "if_version", lambda: ns.put("k", 2, if_version=bad))
        assert_refused(store, "if_version", lambda: ns.delete("k", if_version=bad))

    def test_unknown_namespace_option_refused(self, store: Store) -> None:
        with pytest.raises(InvalidRequest) as info:
            store.namespace("x", colour=1)
        assert "colour" in info.value.field
        assert "colour" in str(info.value)
        assert store.namespaces() == []

    def test_bad_namespace_option_value_refused(self, store: Store) -> None:
        with pytest.raises(InvalidRequest) as info:
            store.namespace("x", serializer="pickle")
        assert "serializer" in info.value.field

    def test_unknown_namespace_option_in_open_is_a_config_error(
        self, store_factory: StoreFactory
    ) -> None:
        with pytest.raises(ConfigError) as info:
            store_factory(namespaces={"x": {"colour": 1}})
        assert "colour" in info.value.field

    def test_unknown_limit_in_open_is_a_config_error(self, store_factory: StoreFactory) -> None:
        with pytest.raises(ConfigError) as info:
            store_factory(limits={"max_colours": 1})
        assert "max_colours" in info.value.field

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param("", id="empty"),
            pytest.param("_system", id="reserved-underscore"),
            pytest.param("a b", id="space"),
            pytest.param("a/b", id="slash"),
            pytest.param("-leading", id="leading-dash"),
            pytest.param("ü", id="non-ascii"),
            pytest.param("x" * 129, id="too-long"),
            pytest.param("a\x00", id="nul"),
            pytest.param(1, id="int"),
            pytest.param(None, id="none"),
            pytest.param(["x"], id="list"),
        ],
    )
    def test_bad_namespace_name_refused(self, store: Store, bad: Any) -> None:
        store.namespace("ok").put("k", 1)
        assert_refused(store, "namespace", lambda: store.namespace(bad))

        def in_tx() -> None:
            with store.transaction() as tx:
                tx.namespace(bad)

        assert_refused(store, "namespace", in_tx)

    def test_good_namespace_names_accepted(self, store: Store) -> None:
        for name in ["a", "A1", "carts", "app.v2:sessions-x_y", "9lives", "x" * 128]:
            store.namespace(name).put("k", name)
        assert sorted(store.namespaces()) == sorted(
            ["a", "A1", "carts", "app.v2:sessions-x_y", "9lives", "x" * 128]
        )
