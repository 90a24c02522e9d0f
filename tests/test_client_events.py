"""The event store's remote face, beyond append/read/subscribe: every route the client
needs for ``EventStoreConformance`` over HTTP, its scopes and its refusals.

One test-control server serves the module (as in ``test_server_events.py``); each test
gets a fresh server-side store.  Results and errors are compared with what the same
call gives in-process where the two can be put side by side.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services import require_module

require_module("litestar")
httpx = require_module("httpx")

import msgspec  # noqa: E402

import clawstate  # noqa: E402
from clawstate import (  # noqa: E402
    ANY,
    NO_STREAM,
    AppendResult,
    Event,
    Forbidden,
    InvalidRequest,
    WrongExpectedVersion,
)
from clawstate.events import EventFilter  # noqa: E402
from clawstate.events.projections import EventCounts  # noqa: E402
from clawstate.server.testing import ServerProcess  # noqa: E402

DEFAULTS: dict[str, Any] = {"sweep_interval": 0}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(test_control=True, extra_args=["--rate-limit", "0"]) as proc:
        yield proc
        assert proc.stop() == 0, proc.logs


@pytest.fixture
def remote(server: ServerProcess) -> Iterator[Any]:
    opened: list[Any] = []
    yield server.store_factory(opened, defaults=DEFAULTS)()
    for store, sid in opened:
        store.close()
        server.drop_test_store(sid)


@pytest.fixture
async def aremote(server: ServerProcess, anyio_backend: str) -> AsyncIterator[Any]:
    opened: list[Any] = []
    yield server.store_factory(opened, asynchronous=True, defaults=DEFAULTS)()
    for astore, sid in opened:
        await astore.close()
        server.drop_test_store(sid)


@pytest.fixture
def local() -> Iterator[clawstate.Store]:
    with clawstate.open("memory://", sweep_interval=0) as store:
        yield store


def _token(server: ServerProcess, *scopes: str) -> str:
    with server.admin() as http:
        r = http.post("/v1/admin/tokens", json={"scopes": list(scopes)})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def _ev(n: int) -> Event:
    return Event("Placed", {"n": n})


# -- the client package keeps its public names ----------------------------------------------


def test_client_names_and_no_dead_connect() -> None:
    import clawstate.client as client

    for name in client.__all__:
        assert getattr(client, name) is not None, name
    assert not hasattr(client, "connect") and not hasattr(client, "connect_async")
    assert client.RemoteEvents.__module__ == "clawstate.client._events"


# -- append_many, stream metadata, delete_stream, last_position, stats ---------------------


def test_append_many_is_atomic_and_answers_as_in_process(
    remote: Any, local: clawstate.Store
) -> None:
    for store in (remote, local):
        events = store.events
        got = events.append_many(
            [("a", [_ev(1), _ev(2)], NO_STREAM), ("b", [_ev(3)], NO_STREAM), ("a", [_ev(4)], 2)]
        )
        assert got == [AppendResult(2, 2), AppendResult(1, 3), AppendResult(3, 4)]
        assert events.append_many([]) == []
    caught = []
    for store in (remote, local):
        with pytest.raises(WrongExpectedVersion) as info:
            store.events.append_many([("c", [_ev(5)], NO_STREAM), ("b", [_ev(6)], 7)])
        caught.append(info.value)
        assert store.events.read("c") == []  # nothing of the failed batch was written
    assert [(e.stream, e.expected, e.actual) for e in caught] == [("b", 7, 1)] * 2
    for bad, field in [
        ([("c", [_ev(1)])], "appends[0]"),
        ("abc", "appends"),
        ([("c", [Event("")], ANY)], "events[0].type"),
        ([("", [_ev(1)], ANY)], "stream"),
        ([("c", [_ev(1)], -1)], "expected_version"),
    ]:
        fields = []
        for store in (remote, local):
            with pytest.raises(InvalidRequest) as err:
                store.events.append_many(bad)
            fields.append(err.value.field)
        assert fields == [field, field], (bad, fields)


def test_append_many_limit_is_the_servers(server: ServerProcess) -> None:
    opened: list[Any] = []
    store = server.store_factory(opened, defaults={**DEFAULTS, "limits": {"max_batch": 3}})()
    try:
        with pytest.raises(InvalidRequest) as info:
            store.events.append_many([(f"s{i}", [_ev(i)], ANY) for i in range(4)])
        assert info.value.field == "appends" and info.value.limit == 3
        assert store.events.last_position == 0
    finally:
        for s, sid in opened:
            s.close()
            server.drop_test_store(sid)


def test_stream_metadata_and_delete_stream(remote: Any, local: clawstate.Store) -> None:
    for store in (remote, local):
        events = store.events
        events.append("s", [_ev(i) for i in range(1, 6)])
        meta = events.set_stream_metadata("s", max_count=2)
        assert (meta.stream, meta.version, meta.max_count) == ("s", 5, 2)
        assert [e.version for e in events.read("s")] == [4, 5]
        assert events.stream_metadata("s").max_count == 2
        assert events.stream_metadata("nope").version == 0
        with pytest.raises(WrongExpectedVersion):
            events.set_stream_metadata("s", max_count=1, expected_version=3)
        with pytest.raises(WrongExpectedVersion):
            events.delete_stream("s", expected_version=4)
        assert events.delete_stream("s", expected_version=5) == AppendResult(6, 6)
        assert events.read("s") == [] and events.stream_metadata("s").deleted
        assert events.last_position == 6
    assert remote.events.stream_metadata("s") == local.events.stream_metadata("s")


def test_stream_settings_merge_and_none_clears(remote: Any, local: clawstate.Store) -> None:
    got = []
    for store in (remote, local):
        events = store.events
        events.append("s", [_ev(i) for i in range(1, 6)])
        events.set_stream_metadata("s", max_count=3)
        events.set_stream_metadata("s", truncate_before=2)  # max_count stays
        kept = events.stream_metadata("s")
        cleared = events.set_stream_metadata("s", max_count=None)
        got.append((kept, cleared, [e.version for e in events.read("s")]))
    assert got[0] == got[1]
    kept, cleared, versions = got[0]
    assert (kept.max_count, kept.truncate_before) == (3, 2)
    assert (cleared.max_count, cleared.truncate_before) == (None, 2)
    assert versions == [2, 3, 4, 5]


def test_bad_stream_settings_are_refused_naming_the_field(
    remote: Any, local: clawstate.Store
) -> None:
    cases: list[dict[str, Any]] = [
        {"max_age": 0},
        {"max_age": float("nan")},
        {"max_age": "1h"},
        {"max_count": 0},
        {"max_count": 2**70},
        {"truncate_before": 1.5},
        {"expected_version": "x"},
        {"expected_version": 2**63},
    ]
    for kwargs in cases:
        fields = []
        for store in (remote, local):
            with pytest.raises(InvalidRequest) as info:
                store.events.set_stream_metadata("s", **kwargs)
            fields.append(info.value.field)
        assert fields[0] == fields[1] == next(iter(kwargs)), (kwargs, fields)
    assert remote.events.last_position == 0


def test_stats_and_last_position(remote: Any) -> None:
    events = remote.events
    assert events.last_position == 0
    events.append("s", [_ev(1), _ev(2)])
    stats = events.stats()
    assert (stats["last_position"], stats["events"]) == (2, 2)
    assert stats["projections"] == {} and stats["subscriptions"] == {}
    assert events.last_position == 2


# -- the long poll a remote wait rides on ---------------------------------------------------


def test_a_waiting_poll_wakes_on_the_next_event(remote: Any) -> None:
    log = remote.events._log
    remote.events.append("s", [_ev(1)])
    assert log.wait_for_events(0, 5) is True  # already there: at once
    assert log.wait_for_events(1, 0.2) is False  # nothing comes: the wait ends

    def later() -> None:
        time.sleep(0.2)
        remote.events.append("s", [_ev(2)])

    t = threading.Thread(target=later)
    t.start()
    started = time.monotonic()
    assert log.wait_for_events(1, 20) is True
    assert time.monotonic() - started < 10, "the long poll did not wake on the append"
    t.join()


# -- snapshots -------------------------------------------------------------------------------


def test_snapshots_save_load_delete(remote: Any, local: clawstate.Store) -> None:
    for store in (remote, local):
        snaps = store.events.snapshots
        assert snaps.load("s") is None
        saved = snaps.save("s", 3, {"items": ["a"], "b": b"\x00raw"}, schema=2)
        got = snaps.load("s")
        assert got is not None and got == saved
        assert (got.version, got.state, got.schema) == (3, {"items": ["a"], "b": b"\x00raw"}, 2)
        assert snaps.delete("s") is True and snaps.delete("s") is False
        for field, call in [
            ("version", lambda s=snaps: s.save("s", 0, {})),
            ("schema", lambda s=snaps: s.save("s", 1, {}, schema=True)),
            ("stream", lambda s=snaps: s.save("", 1, {})),
        ]:
            with pytest.raises(InvalidRequest) as info:
                call()
            assert info.value.field == field


# -- durable subscriptions -----------------------------------------------------------------------


def test_durable_subscription_checkpoint_lives_on_the_server(
    remote: Any, server: ServerProcess
) -> None:
    events = remote.events
    events.append("s", [_ev(i) for i in range(5)])
    sub = events.subscribe(name="mailer", timeout=0.2, checkpoint_every=2)
    assert sub.durable and [next(sub).position for _ in range(3)] == [1, 2, 3]
    # Events 1-2 are processed and saved; 3 was handed out, not yet processed.
    assert events.stats()["subscriptions"]["mailer"]["position"] == 2
    sub.commit()
    assert events.stats()["subscriptions"]["mailer"]["position"] == 3
    sub.close()
    again = events.subscribe(name="mailer", timeout=0.2)
    assert [e.position for e in again] == [4, 5]
    assert events.stats()["subscriptions"]["mailer"]["position"] == 5
    # A filtered durable subscription moves past events it does not want.
    events.append("other", [_ev(6)])
    flt = events.subscribe(name="only-s", filter=EventFilter("s"), timeout=0.2)
    assert [e.position for e in flt] == [1, 2, 3, 4, 5]
    assert events.stats()["subscriptions"]["only-s"]["position"] == 6


def test_subscription_reset_route(remote: Any, server: ServerProcess) -> None:
    """``PUT /v1/subscriptions/{name}`` is ``reset_subscription``: at most the log's end,
    refused (409) while a consumer holds the name's lease."""
    remote.events.append("s", [_ev(1), _ev(2)])
    sid = remote._settings.headers["clawstate-test-store"]
    with server.admin() as http:

        def put(name: str, body: Any) -> httpx.Response:
            return http.put(
                f"/v1/subscriptions/{name}", json=body, headers={"clawstate-test-store": sid}
            )

        for position in (5, -1, 2**64, "1", None):
            r = put("n", {"position": position})
            assert r.status_code == 400 and r.json()["field"] == "position", r.text
        assert put("n", {"position": 1}).json()["item"]["value"]["position"] == 1
        sub = remote.events.subscribe(name="n", timeout=0.2)
        assert [e.position for e in sub] == [2]
        assert put("n", {"position": 0}).status_code == 409  # leased
        sub.close()
        assert put("n", {"position": 0}).status_code == 200
    assert [e.position for e in remote.events.subscribe(name="n", timeout=0.2)] == [1, 2]


# -- projections run here, against the remote store ----------------------------------------------


def test_projection_runner_status_and_reset(remote: Any) -> None:
    events = remote.events
    events.append("a", [Event("X"), Event("Y")])
    events.append("b", [Event("X")])
    runner = events.projection_runner([EventCounts()], batch=2)
    assert runner.run_until_idle() == 3
    counts = {it.key: it.value for it in remote.namespace("event-counts").scan().items}
    assert counts == {"X": 2, "Y": 1}
    [status] = events.projection_status()
    assert (status.name, status.position, status.lag_events, status.events) == (
        "event-counts",
        3,
        0,
        3,
    )
    assert events.stats()["projections"]["event-counts"]["position"] == 3
    assert runner.reset("event-counts") == 2
    assert events.projection_status() == []
    assert runner.run_until_idle() == 3


# -- scopes: every new route guarded; another tenant's stream refused alike --------------------


def test_scopes_guard_the_new_routes(server: ServerProcess) -> None:
    reader = _token(server, "events:orders-*:read")
    writer = _token(server, "events:orders-*:rw")
    everything = _token(server, "events:*:read")
    with server.admin() as http:
        r = http.post("/v1/streams/carts-1/events", json={"events": [{"type": "T", "data": {}}]})
        assert r.status_code == 200, r.text

    def call(token: str, method: str, path: str, body: Any = None) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            return http.request(
                method, path, headers={"authorization": f"Bearer {token}"}, json=body
            )

    def denials() -> float:
        with server.admin() as http:
            text = http.get("/metrics").text
        match = re.search(r'^clawstate_denied_requests_total\{status="403"\} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0

    one = {"type": "T", "data": {}}
    batch_mine = {"appends": [{"stream": "orders-1", "events": [one]}]}
    counted = denials()
    denied: list[httpx.Response] = []
    for stream in ("carts-1", "carts-absent"):  # one exists, one does not: same answer
        batch = {
            "appends": [
                {"stream": "orders-1", "events": [one]},
                {"stream": stream, "events": [one]},
            ]
        }
        denied.append(call(writer, "POST", "/v1/events/batch", batch))
        denied.append(call(writer, "GET", f"/v1/streams/{stream}/metadata"))
        denied.append(call(writer, "PUT", f"/v1/streams/{stream}/metadata", {"max_count": 1}))
        denied.append(call(writer, "DELETE", f"/v1/streams/{stream}"))
        denied.append(call(writer, "GET", f"/v1/streams/{stream}/snapshot"))
        denied.append(
            call(writer, "PUT", f"/v1/streams/{stream}/snapshot", {"version": 1, "state": {}})
        )
        denied.append(call(writer, "DELETE", f"/v1/streams/{stream}/snapshot"))
    assert {r.status_code for r in denied} == {403}
    # Each refusal went through the one denial path (counted and audited), none skipped it.
    assert denials() - counted == len(denied)
    half = len(denied) // 2
    for a, b in zip(denied[:half], denied[half:], strict=True):
        doc_a, doc_b = a.json(), b.json()
        doc_a.pop("instance", None), doc_b.pop("instance", None)
        doc_a.pop("request_id", None), doc_b.pop("request_id", None)
        assert doc_a == doc_b, "the refusal tells an existing stream from an absent one"
        assert "carts" not in a.text
    assert call(writer, "POST", "/v1/events/batch", batch_mine).status_code == 200
    assert call(reader, "POST", "/v1/events/batch", batch_mine).status_code == 403
    assert call(reader, "GET", "/v1/streams/orders-1/metadata").status_code == 200
    assert call(reader, "PUT", "/v1/streams/orders-1/metadata", {}).status_code == 403
    assert call(reader, "DELETE", "/v1/streams/orders-1").status_code == 403
    assert call(reader, "GET", "/v1/streams/orders-1/snapshot").status_code == 200
    # A system stream name is the admin's, whatever the glob says.
    star = _token(server, "events:*:rw")
    assert call(star, "GET", "/v1/streams/_secret/metadata").status_code == 403
    assert (
        call(
            star, "POST", "/v1/events/batch", {"appends": [{"stream": "_x", "events": [one]}]}
        ).status_code
        == 403
    )
    # The whole-log routes: events:*:read.
    for path in (
        "/v1/streams",
        "/v1/events/position",
        "/v1/events/stats",
        "/v1/subscriptions",
        "/v1/subscriptions/mailer",
        "/v1/projections",
        "/v1/projections/p",
    ):
        assert call(reader, "GET", path).status_code == 403, path
        assert call(everything, "GET", path).status_code == 200, path
    assert call(reader, "PUT", "/v1/subscriptions/m", {"position": 0}).status_code == 403
    assert call(everything, "PUT", "/v1/subscriptions/m", {"position": 0}).status_code == 200
    assert call(reader, "DELETE", "/v1/projections/p").status_code == 403
    with clawstate.open(server.url, token=reader) as store:
        with pytest.raises(Forbidden):
            store.events.append_many(
                [("orders-1", [Event("T")], ANY), ("carts-1", [Event("T")], ANY)]
            )
        with pytest.raises(Forbidden):
            _ = store.events.last_position


# -- hostile input: every refusal names its field, none is a 500 ---------------------------------


def test_hostile_bodies_and_parameters(server: ServerProcess) -> None:
    big = "9" * 40
    one = '{"type": "T", "data": {}}'
    pack = msgspec.msgpack.encode
    mp = "application/msgpack"

    def raw(
        method: str, path: str, body: str | bytes | None = None, ctype: str = "application/json"
    ) -> httpx.Response:
        with server.admin() as http:
            headers = {"content-type": ctype} if body is not None else {}
            return http.request(method, path, content=body, headers=headers)

    def batch(append: str) -> str:
        return '{"appends": [' + append + "]}"

    cases: list[tuple[str, str, str | bytes | None, str, str]] = [
        ("POST", "/v1/events/batch", batch('{"stream": "s", "events": []}'), "", "events"),
        (
            "POST",
            "/v1/events/batch",
            batch('{"stream": "s", "events": [' + one + '], "expected_version": ' + big + "}"),
            "",
            "expected_version",
        ),
        ("POST", "/v1/events/batch", batch('{"stream": 7, "events": []}'), "", "appends[0]"),
        ("POST", "/v1/events/batch", '{"appends": {"a": 1}}', "", "appends"),
        ("POST", "/v1/events/batch", '{"appends": [], "extra": 1}', "", "extra"),
        ("PUT", "/v1/streams/s/metadata", '{"max_count": ' + big + "}", "", "max_count"),
        ("PUT", "/v1/streams/s/metadata", pack({"max_age": float("nan")}), mp, "max_age"),
        ("PUT", "/v1/streams/s/metadata", '{"colour": 1}', "", "colour"),
        ("PUT", "/v1/streams/s/metadata", "[1, 2]", "", "metadata"),
        ("DELETE", "/v1/streams/s?expected_version=" + big, None, "", "expected_version"),
        ("DELETE", "/v1/streams/s?expected_version=nan", None, "", "expected_version"),
        ("DELETE", "/v1/streams/s?expected_version=-1", None, "", "expected_version"),
        ("PUT", "/v1/streams/s/snapshot", '{"version": ' + big + ', "state": {}}', "", "v"),
        (
            "PUT",
            "/v1/streams/s/snapshot",
            pack({"version": 1, "state": {"x": float("nan")}}),
            mp,
            "value",
        ),
        ("PUT", "/v1/subscriptions/m", '{"position": ' + big + "}", "", "position"),
        ("PUT", "/v1/subscriptions/m", pack({"position": float("nan")}), mp, "position"),
        ("PUT", "/v1/subscriptions/" + "n" * 300, '{"position": 0}', "", "name"),
        ("DELETE", "/v1/projections/p?if_version=" + big, None, "", "if_version"),
        ("GET", "/v1/events?wait=nan", None, "", "wait"),
        ("GET", "/v1/events?wait=1e999", None, "", "wait"),
        ("GET", "/v1/events?wait=61", None, "", "wait"),
    ]
    with server.admin() as http:
        before = http.get("/v1/events/position").json()
    for method, path, body, ctype, field in cases:
        r = raw(method, path, body, ctype or "application/json")
        assert r.status_code == 400, (path, field, r.status_code, r.text)
        doc = r.json()
        assert str(doc.get("field", "")).startswith(field) or field in r.text, (field, r.text)
    with server.admin() as http:
        assert http.get("/v1/events/position").json() == before  # nothing written


# -- the async face --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_face(aremote: Any) -> None:
    events = aremote.events
    got = await events.append_many([("a", [_ev(1)], NO_STREAM), ("b", [_ev(2)], NO_STREAM)])
    assert got == [AppendResult(1, 1), AppendResult(1, 2)]
    assert await events.last_position() == 2
    meta = await events.set_stream_metadata("a", max_count=5)
    assert (await events.stream_metadata("a")) == meta and meta.max_count == 5
    with pytest.raises(InvalidRequest) as info:
        await events.set_stream_metadata("a", colour=1)
    assert info.value.field == "colour"
    assert await events.delete_stream("b") == AppendResult(2, 3)
    await events.snapshots.save("a", 1, {"n": 1})
    snap = await events.snapshots.load("a")
    assert snap is not None and snap.state == {"n": 1}
    stats = await events.stats()
    assert stats["last_position"] == 3
    assert await events.projection_status() == []
    async with events.subscribe(0, timeout=0.2) as plain:
        assert [e.position async for e in plain] == [1, 2, 3]
    async with aremote.transaction() as tx:
        tx.events.append("c", [_ev(4)])  # buffered when called: awaiting is optional
        await tx.namespace("n").put("k", 1)
    assert tx.appended == [AppendResult(1, 4)]


@pytest.mark.anyio
async def test_async_durable_subscription_and_runner(aremote: Any) -> None:
    events = aremote.events
    await events.append_many([("a", [_ev(1)], NO_STREAM), ("b", [_ev(2)], NO_STREAM)])
    async with events.subscribe(name="async-n", timeout=0.2) as sub:
        assert [e.position async for e in sub] == [1, 2]
    assert (await events.stats())["subscriptions"]["async-n"]["position"] == 2
    runner = events.projection_runner([EventCounts()])
    assert await runner.run_until_idle() == 2
    [status] = await events.projection_status()
    assert (status.name, status.position) == ("event-counts", 2)


def test_problem_documents_are_json(server: ServerProcess) -> None:
    """A refusal on the new routes is a problem document naming the field (as the old)."""
    with server.admin() as http:
        r = http.put("/v1/streams/s/metadata", json={"max_count": 0})
    assert r.status_code == 400
    doc = json.loads(r.text)
    assert (doc["title"], doc["field"]) == ("InvalidRequest", "max_count")


# -- tx.events: appends committed with state writes in one HTTP transaction ------------------


def test_tx_events_commit_with_the_writes_or_not_at_all(remote: Any) -> None:
    with remote.transaction() as tx:
        tx.namespace("orders").put("o1", {"status": "placed"})
        tx.events.append("order-1", [_ev(1)], expected_version=NO_STREAM)
        tx.events.append("outbox", [Event("Notify")])
    assert tx.appended == [AppendResult(1, 1), AppendResult(1, 2)]
    assert len(tx.result) == 1 and not isinstance(tx.result[0], bool)
    with pytest.raises(WrongExpectedVersion), remote.transaction() as tx:
        tx.namespace("orders").put("o1", {"status": "paid"})
        tx.events.append("order-1", [_ev(2)], expected_version=NO_STREAM)
    item = remote.namespace("orders").get("o1")
    assert item is not None and item.value == {"status": "placed"}
    assert remote.events.last_position == 2
    with remote.transaction() as tx:
        tx.events.set_stream_metadata("order-1", max_count=1)
        tx.namespace("orders").put("o3", 1)
    assert tx.appended == [AppendResult(1, 0)]
    assert remote.events.stream_metadata("order-1").max_count == 1
    # The transaction's own writes read back inside it, as in-process.
    with remote.transaction() as tx:
        txns = tx.namespace("orders")
        txns.put("o2", {"n": 1}, ttl=60)
        got = txns.get("o2")
        assert got is not None and (got.value, got.version) == ({"n": 1}, 0)
        txns.delete("o1")
        assert txns.get("o1") is None
        tx.rollback()
    assert remote.namespace("orders").get("o1") is not None


def test_tx_scopes_cover_streams_and_event_namespaces(server: ServerProcess) -> None:
    ns_only = _token(server, "ns:orders:rw")
    both = _token(server, "ns:orders:rw", "events:order-*:write")
    reader_all = _token(server, "events:*:read", "ns:view:rw")

    def tx(token: str, body: dict[str, Any]) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            return http.post(
                "/v1/transactions", json=body, headers={"authorization": f"Bearer {token}"}
            )

    put = {"op": "put", "namespace": "orders", "key": "k", "value": 1}
    append = {"stream": "order-9", "events": [{"type": "T", "data": {}}]}
    other = {"stream": "carts-9", "events": [{"type": "T", "data": {}}]}
    assert tx(ns_only, {"writes": [put], "events": [append]}).status_code == 403
    r = tx(both, {"writes": [put], "events": [append]})
    assert r.status_code == 200, r.text
    assert [a["version"] for a in r.json()["appended"]] == [1]
    assert tx(both, {"writes": [put], "events": [append, other]}).status_code == 403
    snap = {"version": 1, "state": {}}
    snap_write = {"op": "put", "namespace": "_snapshots", "key": "order-9", "value": snap}
    assert tx(both, {"writes": [snap_write]}).status_code == 200
    assert tx(reader_all, {"writes": [snap_write]}).status_code == 403
    cp = {"op": "put", "namespace": "_projections", "key": "p", "value": {"position": 0}}
    view = {"op": "put", "namespace": "view", "key": "k", "value": 1}
    assert tx(both, {"writes": [cp]}).status_code == 403
    assert tx(reader_all, {"writes": [view, cp]}).status_code == 200
    for ns in ("_tokens", "_audit", "_other"):
        w = {"op": "put", "namespace": ns, "key": "k", "value": {}}
        assert tx(reader_all, {"writes": [w]}).status_code == 403, ns
    lease = {"position": 0, "updated_at": 1.0, "owner": "me", "lease_until": 2.0}
    sub = {"op": "put", "namespace": "_subscriptions", "key": "s", "value": lease}
    assert tx(both, {"writes": [sub]}).status_code == 403
    assert tx(reader_all, {"writes": [sub]}).status_code == 200
    # Values of the event store's namespaces are checked, not stored blindly.
    with server.admin() as http:
        for write, field in [
            ({**cp, "value": {"position": "x"}}, "writes[0].value.position"),
            ({**cp, "value": {"position": 2**70}}, "writes[0].value.position"),
            ({**cp, "value": [1]}, "writes[0].value"),
            ({**snap_write, "value": {"version": 0, "state": {}}}, "version"),
            ({**snap_write, "value": {"version": 1}}, "writes[0].value"),
            ({**snap_write, "value": {"version": 1, "state": {}, "x": 1}}, "writes[0].value"),
            ({"op": "delete", "namespace": "_snapshots", "key": "s"}, "writes[0].op"),
            ({**sub, "value": {**lease, "position": -1}}, "writes[0].value.position"),
            ({**sub, "value": {**lease, "owner": 7}}, "writes[0].value.owner"),
            ({**sub, "value": {**lease, "lease_until": "soon"}}, "writes[0].value.lease_until"),
            ({**sub, "value": {**lease, "extra": 1}}, "writes[0].value"),
            ({**snap_write, "key": 7}, "writes[0].key"),
        ]:
            r = http.post("/v1/transactions", json={"writes": [write]})
            assert r.status_code == 400, (write, r.text)
            assert r.json()["field"] == field, (write, r.text)
        r = http.post("/v1/transactions", json={"writes": [], "events": [{**append, "stream": 7}]})
        assert r.status_code == 400 and r.json()["field"] == "events[0].stream", r.text


def test_repository_snapshots_commit_with_their_events(remote: Any) -> None:
    from clawstate.testing.events import Cart

    repo = remote.events.repository(Cart, snapshot_every=2)
    cart = Cart.create("c")
    cart.add("a")
    assert repo.save(cart) == AppendResult(2, 2)
    snap = remote.events.snapshots.load("cart-c")
    assert snap is not None and snap.version == 2 and snap.state["items"] == ["a"]
    assert repo.load("c").items == ["a"]


def test_openapi_declares_the_new_event_routes(server: ServerProcess) -> None:
    doc = httpx.get(server.url + "/openapi.json").json()
    ops = {
        op["operationId"]: op
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    for name in (
        "appendMany",
        "listStreams",
        "streamMetadata",
        "setStreamMetadata",
        "deleteStream",
        "loadSnapshot",
        "saveSnapshot",
        "deleteSnapshot",
        "lastPosition",
        "eventStats",
        "subscriptionStatus",
        "subscriptionCheckpoint",
        "saveSubscriptionCheckpoint",
        "projectionStatus",
        "projectionCheckpoint",
        "deleteProjectionCheckpoint",
    ):
        assert {"200", "400", "401", "403"} <= set(ops[name]["responses"]), name
    assert {"409"} <= set(ops["appendMany"]["responses"])
    assert "requestBody" in ops["appendMany"] and "requestBody" in ops["saveSnapshot"]
    tx_body = ops["transaction"]["requestBody"]["content"]["application/json"]["schema"]
    assert "events" in tx_body["properties"]  # tx.events travels in the transaction
    ok = json.dumps(ops["transaction"]["responses"]["200"])
    ref = ok.split('"$ref": "#/components/schemas/')[1].split('"')[0]
    assert "appended" in doc["components"]["schemas"][ref]["properties"]


def test_event_tx_in_process(local: clawstate.Store) -> None:
    """The transaction body's event parts, run against an in-process store: what the
    route replays (writes, then appends, one commit) and what it lets each token do."""
    from clawstate.server.auth import Principal, parse_scope
    from clawstate.server.event_tx import TxBody, check_tx, run_event_tx, tx_allowed

    def body(doc: dict[str, Any]) -> TxBody:
        parsed = msgspec.convert(doc, TxBody)
        check_tx(parsed, 1024)
        return parsed

    def who(*scopes: str) -> Principal:
        return Principal("t", [parse_scope(s) for s in scopes], None)

    one = {"type": "T", "data": {"n": 1}}
    b = body(
        {
            "writes": [
                {"op": "put", "namespace": "orders", "key": "o1", "value": {"s": 1}},
                {
                    "op": "put",
                    "namespace": "_snapshots",
                    "key": "order-1",
                    "value": {"version": 1, "state": {"s": 1}},
                },
                {"op": "put", "namespace": "_projections", "key": "p", "value": {"position": 0}},
            ],
            "events": [{"stream": "order-1", "events": [one], "expected_version": "no_stream"}],
        }
    )
    assert not tx_allowed(None, b)
    assert not tx_allowed(who("ns:orders:write", "events:order-*:write"), b)  # no events:*:read
    assert not tx_allowed(who("ns:orders:write", "events:*:read"), b)  # no stream write
    assert tx_allowed(who("ns:orders:write", "events:*:read", "events:order-*:write"), b)
    assert tx_allowed(who("admin"), b)
    result, appended = run_event_tx(local, b, None)
    assert appended == [AppendResult(1, 1)] and len(result) == 3  # one entry per write
    snap = local.events.snapshots.load("order-1")
    assert snap is not None and (snap.version, snap.state) == (1, {"s": 1})
    item = local._system_namespace("_projections").get("p")
    assert item is not None and item.value == {"position": 0}
    again = body({"writes": [], "events": [{"stream": "order-1", "events": [one]}]})
    assert run_event_tx(local, b, None)[1] == appended  # the same event ids: a retry
    late = body(
        {
            "writes": [{"op": "put", "namespace": "orders", "key": "o2", "value": 1}],
            "events": [{"stream": "order-1", "events": [one], "expected_version": 0}],
        }
    )
    with pytest.raises(WrongExpectedVersion):
        run_event_tx(local, late, None)
    assert local.namespace("orders").get("o2") is None  # refused whole
    assert run_event_tx(local, again, None)[1] == [AppendResult(2, 2)]
    meta = body({"writes": [], "events": [{"stream": "order-1", "metadata": {"max_count": 1}}]})
    assert run_event_tx(local, meta, None)[1] == [AppendResult(2, 0)]
    assert local.events.stream_metadata("order-1").max_count == 1
    for doc, field in [
        ({"stream": "s", "events": [one], "metadata": {}}, "events[0]"),
        ({"stream": "s"}, "events[0]"),
        ({"stream": "s", "metadata": {"colour": 1}}, "events[0].metadata.colour"),
    ]:
        with pytest.raises(InvalidRequest) as info:
            body({"writes": [], "events": [doc]})
        assert info.value.field == field


# -- the rest of the remote face the event store's helpers lean on --------------------------


def test_namespace_update_retries_racing_writers(remote: Any) -> None:
    ns = remote.namespace("counters")

    def bump() -> None:
        for _ in range(5):
            ns.update("n", lambda v: v + 1, default=0, retries=200)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    item = ns.get("n")
    assert item is not None and item.value == 20 and item.version == 20
    with pytest.raises(InvalidRequest) as info:
        ns.update("n", lambda v: v, retries=-1)
    assert info.value.field == "retries"


@pytest.mark.anyio
async def test_async_namespace_update(aremote: Any) -> None:
    ns = aremote.namespace("counters")

    async def plus_one(v: int) -> int:
        return v + 1

    assert (await ns.update("n", plus_one, default=0)).value == 1
    assert (await ns.update("n", lambda v: v * 10)).value == 10
