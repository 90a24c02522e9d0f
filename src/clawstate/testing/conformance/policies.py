"""Codec policies per namespace round-trip on every backend.

Encryption, the serializer and compression are the codec's job, so every backend
must store their bytes faithfully.
"""

from __future__ import annotations

import time
from typing import Any

from clawstate import Store

from .helpers import StoreFactory, assert_refused, scan_all


class CodecPolicyConformance:
    """Namespace codec policies: encryption, the JSON serializer, compression, options in code."""

    # -- codec policies -------------------------------------------------------------------

    def test_encrypted_namespace_round_trips(self, open_store: StoreFactory, tmp_path: Any) -> None:
        store = open_store(
            namespaces={"secret": {"encrypt": True}}, keyring=f"file:{tmp_path}/keys.json"
        )
        secret = store.namespace("secret")
        value = {"card": "4111-1111-1111-1111", "cvv": "123", "n": [1, 2]}
        secret.put("c1", value)
        secret.put("blob", b"\x00secret bytes\xff")
        got = secret.get("c1")
        blob = secret.get("blob")
        assert got is not None and got.value == value
        assert blob is not None and blob.value == b"\x00secret bytes\xff"
        assert [it.key for it in scan_all(secret)] == ["blob", "c1"]
        page = secret.query({"filter": {"EQ": {"cvv": "123"}}})
        assert [it.key for it in page.items] == ["c1"]
        backend = getattr(store, "backend", None)
        raw_get = getattr(backend, "get", None)
        if raw_get is not None:  # stores that expose their backend: check the bytes
            stored = raw_get("secret", "c1", time.time())
            assert stored is not None
            assert b"4111" not in stored.value and b"card" not in stored.value

    def test_plain_namespace_beside_encrypted_one(
        self, open_store: StoreFactory, tmp_path: Any
    ) -> None:
        store = open_store(
            namespaces={"secret": {"encrypt": True}}, keyring=f"file:{tmp_path}/keys.json"
        )
        store.namespace("secret").put("k", "hidden")
        store.namespace("plain").put("k", "visible")
        plain = store.namespace("plain").get("k")
        hidden = store.namespace("secret").get("k")
        assert plain is not None and plain.value == "visible"
        assert hidden is not None and hidden.value == "hidden"

    def test_json_serializer_namespace_round_trips(self, open_store: StoreFactory) -> None:
        store = open_store(namespaces={"docs": {"serializer": "json"}})
        docs = store.namespace("docs")
        value = {"title": "Zoë", "tags": ["a", "b"], "n": 1.5, "ok": True, "none": None}
        docs.put("d1", value)
        docs.put("raw", b"top-level bytes are stored raw")
        got = docs.get("d1")
        raw = docs.get("raw")
        assert got is not None and got.value == value
        assert raw is not None and raw.value == b"top-level bytes are stored raw"
        assert_refused(store, "value", lambda: docs.put("bad", {"b": b"nested bytes"}))
        assert_refused(store, "value", lambda: docs.put("bad", {"x": float("nan")}))

    def test_compressed_namespace_round_trips(self, open_store: StoreFactory) -> None:
        store = open_store(
            limits={"max_value_bytes": 100_000}, namespaces={"z": {"compress_above": 64}}
        )
        z = store.namespace("z")
        big = {"text": "lorem ipsum dolor sit amet " * 2000}  # ~54 KB, compresses well
        small = {"t": "tiny"}
        z.put("big", big)
        z.put("small", small)
        got_big, got_small = z.get("big"), z.get("small")
        assert got_big is not None and got_big.value == big
        assert got_small is not None and got_small.value == small
        page = z.query({"filter": {"EQ": {"t": "tiny"}}})
        assert [it.key for it in page.items] == ["small"]

    def test_namespace_options_in_code(self, store: Store) -> None:
        ns = store.namespace("inline", serializer="json", compress_above=16)
        ns.put("k", {"long": "abc" * 100})
        got = store.namespace("inline").get("k")
        assert got is not None and got.value == {"long": "abc" * 100}
