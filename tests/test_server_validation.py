"""Input validation over HTTP and through the remote client — issue 10, items 7, 8
and 10.  The embedded API and the CLI are ``tests/test_validation.py``.

Every family below is sent to a server configured as in production (no test-control
switch) and must come back as a 400 problem naming the field — never a 500, never a
stream that closes without its ``end`` event — with nothing written: no item, no
change-log row, no event.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services import require_module

require_module("litestar")
httpx = require_module("httpx")

import msgspec  # noqa: E402

import clawstate  # noqa: E402
from clawstate import Event, InvalidRequest  # noqa: E402
from clawstate.server.testing import ServerProcess  # noqa: E402

H = "99999999999999999999"
INT64_MAX = 2**63 - 1
#: Integer parameters as text: beyond 64 bits, negative, not integers at all.
BAD_INT_TEXT = [
    H,
    str(2**63),
    str(2**63 + 1),
    "1" * 5000,
    "-1",
    "1.5",
    "abc",
    "true",
    "１",
    "0x10",
    "1_0",
    " 1",
    "+1",
    "nan",
    "1e3",  # a float's spelling, though 1000 is an integer: refused like "1.5"
    "1.0",
]
MP = {"content-type": "application/msgpack"}
SSE = {"accept": "text/event-stream"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One server for the module, as in production: no test-control switch, so writes
    go through the server's batching, as ``tests/test_server.py``'s server does."""
    with ServerProcess() as proc:
        yield proc


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.admin() as client:
        yield client


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _state(admin: httpx.Client) -> tuple[int, int]:
    """The change log's and the event log's ends: a refused request moves neither."""
    seq = admin.get("/v1/changes", params={"limit": 0}).json()["last_seq"]
    end = admin.get("/v1/events", params={"from_position": "end", "limit": 1}).json()["end"]
    return int(seq), int(end)


def refused(admin: httpx.Client, field: str, send: Callable[[], httpx.Response]) -> dict[str, Any]:
    """``send`` answers 400 with a problem naming ``field``, and changes nothing."""
    before = _state(admin)
    r = send()
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = r.json()
    assert doc["title"] == "InvalidRequest" and doc["field"] == field, doc
    assert len(r.content) < 2000, "the hostile input was echoed back whole"
    assert _state(admin) == before, "a refused request changed the store"
    return doc


@pytest.fixture(scope="module")
def seeded(admin: httpx.Client) -> None:
    assert admin.put("/v1/namespaces/val/items/k", json=1).status_code in (200, 201)
    r = admin.post("/v1/streams/val-s/events", json={"events": [{"type": "T", "data": {}}]})
    assert r.status_code == 200, r.text


# -- item 7: integers -----------------------------------------------------------------------

#: (id, method, path, where the integer goes, its name, the field the problem names)
INT_PARAMS: list[tuple[str, str, str, str, str, str]] = [
    ("changes.from_seq", "GET", "/v1/changes", "query", "from_seq", "from_seq"),
    ("changes.limit", "GET", "/v1/changes", "query", "limit", "limit"),
    ("changes-sse.from_seq", "SSE", "/v1/changes", "query", "from_seq", "from_seq"),
    ("changes-sse.last-event-id", "SSE", "/v1/changes", "header", "last-event-id", "last-event-id"),
    (
        "read.from_version",
        "GET",
        "/v1/streams/val-s/events",
        "query",
        "from_version",
        "from_version",
    ),
    ("read.limit", "GET", "/v1/streams/val-s/events", "query", "limit", "limit"),
    ("read_all.from_position", "GET", "/v1/events", "query", "from_position", "from_position"),
    ("read_all.limit", "GET", "/v1/events", "query", "limit", "limit"),
    ("events-sse.from_position", "SSE", "/v1/events", "query", "from_position", "from_position"),
    ("events-sse.last-event-id", "SSE", "/v1/events", "header", "last-event-id", "last-event-id"),
    (
        "subscribe.last-event-id",
        "SSE",
        "/v1/events/subscribe",
        "header",
        "last-event-id",
        "last-event-id",
    ),
    (
        "subscribe.from_position",
        "SSE",
        "/v1/events/subscribe",
        "query",
        "from_position",
        "from_position",
    ),
    ("put.if_version", "PUT", "/v1/namespaces/val/items/k", "query", "if_version", "if_version"),
    (
        "delete.if_version",
        "DELETE",
        "/v1/namespaces/val/items/k",
        "query",
        "if_version",
        "if_version",
    ),
    ("scan.limit", "GET", "/v1/namespaces/val/items", "query", "limit", "limit"),
]


def _send(
    client: httpx.Client, method: str, path: str, where: str, name: str, text: str
) -> httpx.Response:
    params = {name: text} if where == "query" else {}
    headers = {name: text} if where == "header" else {}
    if method == "SSE":
        params.setdefault("timeout", "0.2")
        return client.get(path, params=params, headers={**SSE, **headers})
    if method == "PUT":
        return client.put(path, params=params, headers=headers, json=2)
    return client.request(method, path, params=params, headers=headers)


class TestIntegerParameters:
    """Item 7 over HTTP: every integer in a query parameter or header, out of 64 bits or
    not an integer at all, is a 400 naming it — before any SSE stream starts."""

    @pytest.mark.parametrize(
        ("method", "path", "where", "name", "field", "text"),
        [
            pytest.param(*p[1:], text, id=f"{p[0]}-{i}")
            for p in INT_PARAMS
            for i, text in enumerate(BAD_INT_TEXT)
            # a header value is ASCII and has no edge whitespace (HTTP strips it)
            if p[3] == "query" or (text.isascii() and text == text.strip())
        ],
    )
    def test_refused_with_the_field(
        self,
        admin: httpx.Client,
        seeded: None,
        method: str,
        path: str,
        where: str,
        name: str,
        field: str,
        text: str,
    ) -> None:
        refused(admin, field, lambda: _send(admin, method, path, where, name, text))

    @pytest.mark.parametrize(
        ("path", "header"),
        [
            ("/v1/changes", "last-event-id"),
            ("/v1/events", "last-event-id"),
            ("/v1/events/subscribe", "last-event-id"),
        ],
    )
    def test_sse_at_the_largest_position_ends_with_its_end_event(
        self, admin: httpx.Client, seeded: None, path: str, header: str
    ) -> None:
        """The bound itself is accepted, and the stream closes properly (an overflow
        used to kill it without the ``end`` event)."""
        r = admin.get(path, params={"timeout": "0.2"}, headers={**SSE, header: str(INT64_MAX)})
        assert r.status_code == 200, r.text
        assert "event: end" in r.text

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"events": [{"type": "T"}], "expected_version": 2**63 - 1}, "expected_version"),
            ({"events": [{"type": "T"}], "expected_version": 2**64 - 1}, "expected_version"),
            ({"events": [{"type": "T"}], "expected_version": -1}, "expected_version"),
            ({"events": [{"type": "T"}], "expected_version": True}, "expected_version"),
            ({"events": [{"type": "T"}], "expected_version": 1.5}, "expected_version"),
            ({"events": [{"type": "T"}], "expected_version": "5"}, "expected_version"),
            ({"events": [{"type": "T", "schema_version": 2**63 + 1}]}, "events[0].schema_version"),
            ({"events": [{"type": "T", "schema_version": 2**31}]}, "events[0].schema_version"),
            ({"events": [{"type": "T", "schema_version": 0}]}, "events[0].schema_version"),
        ],
        ids=lambda v: str(v)[:60] if isinstance(v, dict) else v,
    )
    @pytest.mark.parametrize("encoding", ["json", "msgpack"])
    def test_append_body_integers(
        self, admin: httpx.Client, seeded: None, body: dict[str, Any], field: str, encoding: str
    ) -> None:
        if encoding == "json":
            send = lambda: admin.post("/v1/streams/val-s/events", json=body)  # noqa: E731
        else:
            if any(isinstance(v, int) and v >= 2**64 for v in _ints(body)):
                pytest.skip("msgpack has no integers past 64 bits")  # inapplicable: msgpack
            data = msgspec.msgpack.encode(body)
            send = lambda: admin.post("/v1/streams/val-s/events", content=data, headers=MP)  # noqa: E731
        refused(admin, field, send)

    @pytest.mark.parametrize(
        "bad", [2**63, 2**64 + 1, -1, 0, True, 1.5, "1"], ids=lambda v: repr(v)[:20]
    )
    def test_transaction_if_version(self, admin: httpx.Client, seeded: None, bad: Any) -> None:
        for op in ("put", "delete"):
            write: dict[str, Any] = {"op": op, "namespace": "val", "key": "k", "if_version": bad}
            if op == "put":
                write["value"] = 2
            refused(
                admin,
                "if_version",
                lambda w=write: admin.post("/v1/transactions", json={"writes": [w]}),
            )


def _ints(doc: Any) -> Iterator[Any]:
    if isinstance(doc, dict):
        for v in doc.values():
            yield from _ints(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _ints(v)
    else:
        yield doc


# -- item 8: non-finite floats and duplicate keys ------------------------------------------

#: Hostile JSON numbers as text (Python's json would read them as NaN / inf).
BAD_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e400"]
#: msgpack encodings of non-finite floats: float64 and float32 (msgspec writes float64)
BAD_MSGPACK_FLOATS = {
    "nan64": b"\xcb" + struct.pack(">d", float("nan")),
    "inf64": b"\xcb" + struct.pack(">d", float("inf")),
    "-inf64": b"\xcb" + struct.pack(">d", float("-inf")),
    "nan32": b"\xca" + struct.pack(">f", float("nan")),
    "inf32": b"\xca" + struct.pack(">f", float("inf")),
}
#: Where the hostile number sits: a JSON template and the same as raw msgpack.
JSON_SHAPES = {
    "top": "{x}",
    "list": '[1, "a", {x}]',
    "map-value": '{{"a": 1, "b": {x}}}',
    "nested": '{{"a": [{{"b": [0, {x}]}}]}}',
}


def _fixstr(s: str) -> bytes:
    raw = s.encode()
    return bytes([0xA0 | len(raw)]) + raw


MSGPACK_SHAPES: dict[str, Callable[[bytes], bytes]] = {
    "top": lambda x: x,
    "list": lambda x: b"\x93\x01" + _fixstr("a") + x,
    "map-value": lambda x: b"\x82" + _fixstr("a") + b"\x01" + _fixstr("b") + x,
    "nested": lambda x: b"\x81" + _fixstr("a") + b"\x91\x81" + _fixstr("b") + b"\x92\x00" + x,
    "map-key": lambda x: b"\x81" + x + b"\x01",
}

#: (id, build the request from raw value bytes, the field) for every body carrying a value
ValueSend = Callable[[httpx.Client, bytes, str], httpx.Response]


def _ctype(encoding: str) -> dict[str, str]:
    return {"content-type": "application/json" if encoding == "json" else "application/msgpack"}


def _wrap(encoding: str, template_json: str, template_mp: bytes, value: bytes) -> bytes:
    """``value`` (raw JSON text or msgpack bytes) spliced into a body."""
    if encoding == "json":
        return template_json.encode().replace(b"@", value)
    return template_mp.replace(b"@@", value)


#: (id, the field a body that does not parse is refused with, the field a value the
#: store refuses is refused with, build the request from the raw value bytes)
VALUE_BODIES: list[tuple[str, str, str, Callable[[str, bytes], tuple[str, str, bytes]]]] = [
    ("put", "value", "value", lambda enc, v: ("PUT", f"/v1/namespaces/val/items/{_uid()}", v)),
    (
        "batch-put",
        "items",
        "value",
        lambda enc, v: (
            "POST",
            "/v1/namespaces/val/batch/put",
            _wrap(
                enc,
                '{"items": [["ok", 1], ["bad", @]]}',
                b"\x81\xa5items\x92\x92\xa2ok\x01\x92\xa3bad@@",
                v,
            ),
        ),
    ),
    (
        "transaction",
        "transaction",
        "value",
        lambda enc, v: (
            "POST",
            "/v1/transactions",
            _wrap(
                enc,
                '{"writes": [{"op": "put", "namespace": "val", "key": "t", "value": @}]}',
                b"\x81\xa6writes\x91\x84\xa2op\xa3put\xa9namespace\xa3val\xa3key\xa1t\xa5value@@",
                v,
            ),
        ),
    ),
    (
        "append.data",
        "events",
        "events[0].data",
        lambda enc, v: (
            "POST",
            "/v1/streams/val-s/events",
            _wrap(
                enc,
                '{"events": [{"type": "T", "data": {"x": @}}]}',
                b"\x81\xa6events\x91\x82\xa4type\xa1T\xa4data\x81\xa1x@@",
                v,
            ),
        ),
    ),
    (
        "append.metadata",
        "events",
        "events[0].metadata",
        lambda enc, v: (
            "POST",
            "/v1/streams/val-s/events",
            _wrap(
                enc,
                '{"events": [{"type": "T", "metadata": {"x": @}}]}',
                b"\x81\xa6events\x91\x82\xa4type\xa1T\xa8metadata\x81\xa1x@@",
                v,
            ),
        ),
    ),
]


class TestNonFiniteFloats:
    """Item 8 over HTTP: NaN and infinities are refused in every body that carries a
    value, JSON (where they are not even JSON) or msgpack (where they were stored and
    came back as null to JSON readers)."""

    @pytest.mark.parametrize("number", BAD_JSON_NUMBERS)
    @pytest.mark.parametrize("shape", list(JSON_SHAPES))
    @pytest.mark.parametrize(
        ("build", "field"), [pytest.param(b, f, id=i) for i, f, _, b in VALUE_BODIES]
    )
    def test_json_bodies(
        self, admin: httpx.Client, seeded: None, build: Any, field: str, shape: str, number: str
    ) -> None:
        value = JSON_SHAPES[shape].format(x=number).encode()
        method, path, body = build("json", value)
        doc = refused(
            admin, field, lambda: admin.request(method, path, content=body, headers=_ctype("json"))
        )
        assert "non-finite" in doc["detail"] or "NaN and Infinity are not JSON" in doc["detail"], (
            doc
        )

    @pytest.mark.parametrize("number", list(BAD_MSGPACK_FLOATS))
    @pytest.mark.parametrize("shape", list(MSGPACK_SHAPES))
    @pytest.mark.parametrize(
        ("build", "field"), [pytest.param(b, f, id=i) for i, _, f, b in VALUE_BODIES]
    )
    def test_msgpack_bodies(
        self, admin: httpx.Client, seeded: None, build: Any, field: str, shape: str, number: str
    ) -> None:
        value = MSGPACK_SHAPES[shape](BAD_MSGPACK_FLOATS[number])
        method, path, body = build("msgpack", value)
        refused(admin, field, lambda: admin.request(method, path, content=body, headers=MP))

    def test_finite_floats_round_trip_on_both_encodings(self, admin: httpx.Client) -> None:
        value = {"a": [0.1, -0.0, 1e308, 5e-324], "b": 1.5}
        key = _uid()
        assert admin.put(f"/v1/namespaces/val/items/{key}", json=value).status_code == 201
        assert admin.get(f"/v1/namespaces/val/items/{key}").json()["value"] == value
        got = admin.get(
            f"/v1/namespaces/val/items/{key}", headers={"accept": "application/msgpack"}
        )
        assert msgspec.msgpack.decode(got.content)["value"] == value


#: Maps with one key twice, as msgpack: canonical, and with non-canonical encodings
#: (map16 headers, str8 keys) that defeat the re-encoding fast path.
DUP_MSGPACK = {
    "fixmap": b"\x82\xa1a\x01\xa1a\x02",
    "same-value": b"\x82\xa1a\x01\xa1a\x01",
    "map16": b"\xde\x00\x02\xa1a\x01\xa1a\x02",
    "str8-vs-fixstr": b"\x82\xa1a\x01\xd9\x01a\x02",
    "nested-in-list": b"\x92\x01\x82\xa1b\x01\xa1b\x02",
    "nested-in-map": b"\x81\xa1o\x82\xa1k\x01\xa1k\x02",
    "third-of-three": b"\x83\xa1x\x01\xa1y\x02\xa1x\x03",
}
#: Maps without duplicates in non-canonical encodings: the slow path must accept them.
NO_DUP_MSGPACK = {
    "map16": (b"\xde\x00\x02\xa1a\x01\xa1b\x02", {"a": 1, "b": 2}),
    "str8": (b"\x82\xd9\x01a\x01\xd9\x01b\x02", {"a": 1, "b": 2}),
    "int64": (b"\x81\xa1a\xd3" + (5).to_bytes(8, "big"), {"a": 5}),
    "float32": (b"\x81\xa1a\xca" + struct.pack(">f", 1.5), {"a": 1.5}),
    "array16": (b"\x81\xa1a\xdc\x00\x02\x01\x02", {"a": [1, 2]}),
}
DUP_JSON = {
    "top": '{"a": 1, "a": 2}',
    "same-value": '{"a": 1, "a": 1}',
    "nested": '[{"x": {"b": 1, "b": 2}}]',
    "escaped": '{"a": 1, "\\u0061": 2}',
}


class TestDuplicateKeys:
    """Item 8: a map with one key twice is refused in JSON and msgpack bodies alike
    (msgspec kept the last value of a msgpack map silently)."""

    @pytest.mark.parametrize("name", list(DUP_MSGPACK))
    @pytest.mark.parametrize(
        ("build", "field"), [pytest.param(b, f, id=i) for i, f, _, b in VALUE_BODIES]
    )
    def test_msgpack(
        self, admin: httpx.Client, seeded: None, build: Any, field: str, name: str
    ) -> None:
        method, path, body = build("msgpack", DUP_MSGPACK[name])
        doc = refused(admin, field, lambda: admin.request(method, path, content=body, headers=MP))
        assert "duplicate map key" in doc["detail"], doc

    @pytest.mark.parametrize("name", list(DUP_JSON))
    @pytest.mark.parametrize(
        ("build", "field"), [pytest.param(b, f, id=i) for i, f, _, b in VALUE_BODIES]
    )
    def test_json(
        self, admin: httpx.Client, seeded: None, build: Any, field: str, name: str
    ) -> None:
        method, path, body = build("json", DUP_JSON[name].encode())
        headers = _ctype("json")
        doc = refused(
            admin, field, lambda: admin.request(method, path, content=body, headers=headers)
        )
        assert "duplicate object name" in doc["detail"], doc

    @pytest.mark.parametrize("name", list(NO_DUP_MSGPACK))
    def test_non_canonical_msgpack_without_duplicates_is_accepted(
        self, admin: httpx.Client, name: str
    ) -> None:
        body, value = NO_DUP_MSGPACK[name]
        key = _uid()
        r = admin.put(f"/v1/namespaces/val/items/{key}", content=body, headers=MP)
        assert r.status_code == 201, r.text
        assert admin.get(f"/v1/namespaces/val/items/{key}").json()["value"] == value

    def test_duplicate_keys_in_query_and_batch_bodies(self, admin: httpx.Client) -> None:
        refused(
            admin,
            "query",
            lambda: admin.post(
                "/v1/namespaces/val/query", content=b"\x82\xa4page\x80\xa4page\x80", headers=MP
            ),
        )
        refused(
            admin,
            "keys",
            lambda: admin.post(
                "/v1/namespaces/val/batch/get",
                content=b"\x82\xa4keys\x90\xa4keys\x91\xa1k",
                headers=MP,
            ),
        )


# -- item 10: shapes ----------------------------------------------------------------------------


class TestBodyShapes:
    """Item 10 over HTTP: wrong shapes in batch and transaction bodies are 400s naming
    the field; a delete carrying fields it does not take is refused, not ignored."""

    @pytest.mark.parametrize("keys", ["abc", None, 5, {"k": 1}, [5], [None], [["k"]]], ids=repr)
    def test_batch_get_keys(self, admin: httpx.Client, seeded: None, keys: Any) -> None:
        field = "key" if isinstance(keys, list) else "keys"
        refused(
            admin, field, lambda: admin.post("/v1/namespaces/val/batch/get", json={"keys": keys})
        )

    @pytest.mark.parametrize(
        "items",
        ["ab", None, 5, [["a", 1, 2]], [["a"]], [[]], ["ab"], [None], [{"a": 1}], {"a": 1}],
        ids=repr,
    )
    def test_batch_put_items(self, admin: httpx.Client, seeded: None, items: Any) -> None:
        field = "items[0]" if isinstance(items, list) else "items"  # as put_many names it
        refused(
            admin, field, lambda: admin.post("/v1/namespaces/val/batch/put", json={"items": items})
        )

    @pytest.mark.parametrize("name", ["value", "ttl", "if_absent"])
    @pytest.mark.parametrize("given", [None, False, 0, 5, "x", {"a": 1}], ids=repr)
    def test_a_delete_takes_no_value_ttl_or_if_absent(
        self, admin: httpx.Client, seeded: None, name: str, given: Any
    ) -> None:
        writes = [
            {"op": "put", "namespace": "val", "key": "tx1", "value": 1},
            {"op": "delete", "namespace": "val", "key": "k", name: given},
        ]
        refused(
            admin,
            f"writes[1].{name}",
            lambda: admin.post("/v1/transactions", json={"writes": writes}),
        )
        assert admin.get("/v1/namespaces/val/items/k").status_code == 200  # not deleted

    def test_a_put_needs_a_value(self, admin: httpx.Client, seeded: None) -> None:
        writes = [{"op": "put", "namespace": "val", "key": "tx2"}]
        refused(
            admin,
            "writes[0].value",
            lambda: admin.post("/v1/transactions", json={"writes": writes}),
        )

    @pytest.mark.parametrize("flag", ["yes", "true", "false", "", 1, 0, None, [], 1.0], ids=repr)
    def test_if_absent_must_be_a_bool(self, admin: httpx.Client, seeded: None, flag: Any) -> None:
        writes = [{"op": "put", "namespace": "val", "key": "k", "value": 2, "if_absent": flag}]
        refused(admin, "if_absent", lambda: admin.post("/v1/transactions", json={"writes": writes}))
        got = admin.get("/v1/namespaces/val/items/k").json()
        assert got["value"] == 1  # "yes" used to be read as true, and a falsy one as false

    def test_well_formed_transactions_still_commit(self, admin: httpx.Client) -> None:
        key = _uid()
        writes = [
            {
                "op": "put",
                "namespace": "val",
                "key": key,
                "value": 1,
                "if_absent": True,
                "ttl": None,
            },
            {"op": "delete", "namespace": "val", "key": key, "if_version": None},
        ]
        r = admin.post("/v1/transactions", json={"writes": writes})
        assert r.status_code == 200, r.text
        assert r.json()["result"][1] is True


# -- the remote client ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def remote(server: ServerProcess, seeded: None) -> Iterator[Any]:
    store = clawstate.open(server.url, token=server.admin_token)
    yield store
    store.close()


class TestRemoteClient:
    """The remote client refuses what the embedded store refuses, with the same field,
    before sending anything."""

    @pytest.mark.parametrize(
        ("field", "call"),
        [
            ("keys", lambda s: s.namespace("val").get_many("abc")),
            ("keys", lambda s: s.namespace("val").get_many(None)),
            ("keys", lambda s: s.namespace("val").get_many(b"ab")),
            ("items[0]", lambda s: s.namespace("val").put_many([("a", 1, 2)])),
            ("items", lambda s: s.namespace("val").put_many("ab")),
            ("items", lambda s: s.namespace("val").put_many(None)),
            ("if_absent", lambda s: s.namespace("val").put("k", 2, if_absent="yes")),
            ("if_absent", lambda s: s.namespace("val").put("k", 2, if_absent=None)),
            ("value", lambda s: s.namespace("val").put("k", float("nan"))),
            ("value", lambda s: s.namespace("val").put("k", {"a": [float("inf")]})),
            ("value", lambda s: s.namespace("val").put_many({"k": -float("inf")})),
            ("from_seq", lambda s: s.watch(2**63, timeout=0)),
            ("from_seq", lambda s: s.watch(True, timeout=0)),
            ("if_version", lambda s: s.namespace("val").put("k", 2, if_version=2**63)),
            ("if_version", lambda s: s.namespace("val").delete("k", if_version=2**64)),
            ("from_version", lambda s: s.events.read("val-s", 2**63)),
            ("limit", lambda s: s.events.read("val-s", limit=2**63)),
            ("backwards", lambda s: s.events.read("val-s", backwards="no")),
            ("from_position", lambda s: s.events.read_all(2**63)),
            ("from_position", lambda s: s.events.subscribe(2**63, timeout=0)),
            (
                "expected_version",
                lambda s: s.events.append("val-s", [Event("T")], expected_version=2**63),
            ),
            (
                "events[0].schema_version",
                lambda s: s.events.append("val-s", [Event("T", schema_version=2**63)]),
            ),
            (
                "events[0].data",
                lambda s: s.events.append("val-s", [Event("T", {"x": float("nan")})]),
            ),
        ],
        ids=lambda v: v if isinstance(v, str) else "",
    )
    def test_refused_like_the_embedded_store(
        self, remote: Any, admin: httpx.Client, field: str, call: Callable[[Any], object]
    ) -> None:
        before = _state(admin)
        with pytest.raises(InvalidRequest) as info:
            call(remote)
        assert info.value.field == field, str(info.value)
        assert _state(admin) == before

    def test_transactions_refuse_sloppy_flags(self, remote: Any) -> None:
        with pytest.raises(InvalidRequest) as info, remote.transaction() as tx:
            tx.namespace("val").put("k", 2, if_absent="yes")
        assert info.value.field == "if_absent"
