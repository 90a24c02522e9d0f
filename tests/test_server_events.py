"""The event store over HTTP: ``store.events`` through the remote client, and its routes.

One test-control server (like ``test_server_conformance.py``) serves the module; each
test gets a fresh server-side store through ``ServerProcess.store_factory`` and the
remote client on it.  Errors are compared with what the same call raises in-process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services import require_module

require_module("litestar")
httpx = require_module("httpx")

import clawstate  # noqa: E402
from clawstate import (  # noqa: E402
    NO_STREAM,
    AppendResult,
    Event,
    Forbidden,
    InvalidRequest,
    RecordedEvent,
    WrongExpectedVersion,
)
from clawstate.events import EventFilter  # noqa: E402
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
    factory = server.store_factory(opened, defaults=DEFAULTS)
    yield factory()
    for store, sid in opened:
        store.close()
        server.drop_test_store(sid)


@pytest.fixture
async def aremote(server: ServerProcess, anyio_backend: str) -> AsyncIterator[Any]:
    opened: list[Any] = []
    factory = server.store_factory(opened, asynchronous=True, defaults=DEFAULTS)
    yield factory()
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


def _placed(n: int) -> Event:
    return Event("OrderPlaced", {"n": n}, {"correlation_id": "c1"})


def test_append_read_and_read_all_round_trip(remote: Any) -> None:
    events = remote.events
    first = events.append("orders-1", [_placed(1), _placed(2)], expected_version=NO_STREAM)
    assert first == AppendResult(2, 2)
    assert events.append("carts-1", [Event("CartOpened")]) == AppendResult(1, 3)
    assert events.append("orders-1", [_placed(3)], expected_version=2) == AppendResult(3, 4)

    got = events.read("orders-1")
    assert all(type(e) is RecordedEvent for e in got)
    assert [(e.version, e.position, e.data["n"]) for e in got] == [(1, 1, 1), (2, 2, 2), (3, 4, 3)]
    assert got[0].metadata == {"correlation_id": "c1"} and got[0].stream == "orders-1"
    assert [e.version for e in events.read("orders-1", 2)] == [2, 3]
    assert [e.version for e in events.read("orders-1", backwards=True, limit=2)] == [3, 2]
    assert events.read("no-such-stream") == []

    assert [e.position for e in events.read_all()] == [1, 2, 3, 4]
    assert [e.position for e in events.read_all(2, limit=1)] == [3]
    only = events.read_all(0, filter=EventFilter("orders-"))
    assert [e.stream for e in only] == ["orders-1"] * 3
    typed = events.read_all(0, filter=EventFilter(types=("CartOpened",)))
    assert [e.type for e in typed] == ["CartOpened"]


def test_stream_names_travel_percent_encoded(remote: Any) -> None:
    name = "tenant/a.b c-ü"
    remote.events.append(name, [_placed(1)])
    assert [e.stream for e in remote.events.read(name)] == [name]


def test_wrong_expected_version_round_trips_with_its_fields(
    remote: Any, local: clawstate.Store
) -> None:
    for store in (remote, local):
        store.events.append("orders-1", [_placed(1), _placed(2)])
    caught: list[WrongExpectedVersion] = []
    for store in (remote, local):
        for expected in (5, NO_STREAM):
            with pytest.raises(WrongExpectedVersion) as info:
                store.events.append("orders-1", [_placed(3)], expected_version=expected)
            caught.append(info.value)
    over_http, in_process = caught[:2], caught[2:]
    for a, b in zip(over_http, in_process, strict=True):
        assert (a.stream, a.expected, a.actual) == (b.stream, b.expected, b.actual)
        assert str(a) == str(b)
    assert over_http[0].stream == "orders-1" and over_http[0].expected == 5
    assert over_http[0].actual == 2
    assert [e.version for e in remote.events.read("orders-1")] == [1, 2]  # nothing written


def test_same_ids_again_return_the_first_result(remote: Any) -> None:
    batch = [_placed(1), _placed(2)]
    first = remote.events.append("orders-1", batch, expected_version=NO_STREAM)
    again = remote.events.append("orders-1", batch, expected_version=NO_STREAM)
    assert again == first
    assert len(remote.events.read("orders-1")) == 2


def test_bad_requests_are_refused_naming_the_field(remote: Any, local: clawstate.Store) -> None:
    cases: list[tuple[Any, ...]] = [
        ("orders-1", [Event("X", {"b": b"bytes"})], {}),
        ("orders-1", [], {}),
        ("orders-1", [_placed(1)], {"expected_version": -1}),
        ("orders-1", [_placed(1)], {"expected_version": "sometimes"}),
        ("", [_placed(1)], {}),
        ("orders-1", [{"type": "X"}], {}),
    ]
    for stream, events, kwargs in cases:
        fields = []
        for store in (remote, local):
            with pytest.raises(InvalidRequest) as info:
                store.events.append(stream, events, **kwargs)
            fields.append(info.value.field)
        assert fields[0] == fields[1], (stream, events, kwargs, fields)
    with pytest.raises(InvalidRequest) as info:
        remote.events.read_all(0, limit=0)
    assert info.value.field == "limit"
    with pytest.raises(InvalidRequest) as info:
        remote.events.read_all("end")  # only subscribe takes "end", as in-process
    assert info.value.field == "from_position"
    assert remote.events.read_all() == []


def test_subscribe_catches_up_then_goes_live(remote: Any) -> None:
    remote.events.append("orders-1", [_placed(1), _placed(2)])
    sub = remote.events.subscribe(0, timeout=10)
    assert [next(sub).position, next(sub).position] == [1, 2]

    def later() -> None:
        time.sleep(0.3)
        remote.events.append("orders-2", [_placed(3)])

    writer = threading.Thread(target=later)
    writer.start()
    live = next(sub)
    writer.join()
    assert (live.stream, live.position, live.data) == ("orders-2", 3, {"n": 3})
    assert sub.position == 3
    sub.close()

    ended = remote.events.subscribe("end", timeout=0.3)
    assert list(ended) == [] and ended.position == 3
    filtered = remote.events.subscribe(0, filter=EventFilter("orders-2"), timeout=0.3)
    assert [e.position for e in filtered] == [3]
    assert filtered.poll() == []


def test_sse_ids_are_positions_and_last_event_id_resumes(server: ServerProcess) -> None:
    with server.admin() as http:
        for _ in range(3):
            r = http.post("/v1/streams/sse-1/events", json={"events": [{"type": "T", "data": {}}]})
            assert r.status_code == 200, r.text
        r = http.get("/v1/streams/sse-1/events")
        positions = [int(e["position"]) for e in r.json()["events"]]
        # Last-Event-ID wins over from_position: a reconnecting EventSource resumes.
        headers = {"accept": "text/event-stream", "last-event-id": str(positions[0])}
        with http.stream(
            "GET",
            "/v1/events/subscribe?timeout=0.3&stream_prefix=sse-&from_position=0",
            headers=headers,
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            body = "".join(resp.iter_text())
    ids = [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
    assert ids == positions[1:]
    assert body.count("event: event\n") == 2 and "event: end" in body


def test_scopes_guard_the_event_routes(server: ServerProcess) -> None:
    reader = _token(server, "events:orders-*:read")
    writer = _token(server, "events:orders-*:rw")
    other = _token(server, "events:carts-*:write", "ns:*:rw")
    everything = _token(server, "events:*:read")
    body = {"events": [{"type": "T", "data": {}}]}
    with httpx.Client(base_url=server.url, timeout=30) as http:

        def status(token: str, method: str, path: str) -> int:
            r = http.request(
                method,
                path,
                headers={"authorization": f"Bearer {token}"},
                json=body if method == "POST" else None,
            )
            return r.status_code

        stream = "/v1/streams/orders-9/events"
        assert status(reader, "POST", stream) == 403
        assert status(other, "POST", stream) == 403
        assert status(writer, "POST", stream) == 200
        assert status(reader, "GET", stream) == 200
        assert status(other, "GET", stream) == 403
        # the refusal is the same for an absent stream
        assert status(reader, "POST", "/v1/streams/orders-absent/events") == 403
        for path in ("/v1/events", "/v1/events/subscribe"):
            assert status(reader, "GET", path) == 403
            assert status(everything, "GET", path) == 200
        assert status(everything, "POST", stream) == 403
        assert status("cst_fedcba9876543210_" + "B" * 43, "GET", stream) == 401

    with clawstate.open(server.url, token=reader) as store:
        assert [e.stream for e in store.events.read("orders-9")] == ["orders-9"]
        with pytest.raises(Forbidden):
            store.events.append("orders-9", [Event("T")])


def test_openapi_declares_the_event_routes(server: ServerProcess) -> None:
    doc = httpx.get(server.url + "/openapi.json").json()
    ops = {
        op["operationId"]: op
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    for name, codes in {
        "appendEvents": {"200", "400", "401", "403", "409", "413", "415", "429", "500", "503"},
        "readStream": {"200", "400", "401", "403", "429", "500", "503"},
        "readAll": {"200", "400", "401", "403", "429", "500", "503"},
        "subscribeEvents": {"200", "400", "401", "403", "429", "500", "503"},
    }.items():
        assert codes <= set(ops[name]["responses"]), name
    assert "text/event-stream" in ops["subscribeEvents"]["responses"]["200"]["content"]
    assert "requestBody" in ops["appendEvents"]


@pytest.mark.anyio
async def test_async_client_append_read_subscribe(aremote: Any) -> None:
    events = aremote.events
    assert await events.append("orders-1", [_placed(1)], expected_version=NO_STREAM) == (
        AppendResult(1, 1)
    )
    with pytest.raises(WrongExpectedVersion) as info:
        await events.append("orders-1", [_placed(2)], expected_version=NO_STREAM)
    assert (info.value.stream, info.value.actual) == ("orders-1", 1)
    assert [e.data for e in await events.read("orders-1")] == [{"n": 1}]
    assert [e.position for e in await events.read_all()] == [1]
    sub = events.subscribe(0, timeout=0.3)
    assert [e.position async for e in sub] == [1]
