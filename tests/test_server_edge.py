"""The edge answers ``GET`` of one item itself (``Edge.fast_reads``); Litestar answers it
when tracing wraps the app.  Both must answer every request byte for byte alike —
success, 304, 404, 401, 403, 429, msgpack, a bad key — and count and audit it alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services import require_module

require_module("litestar")
require_module("httpx")

from litestar.testing import TestClient  # noqa: E402

import clawstate  # noqa: E402
from clawstate.server.app import ServerSettings, create_app  # noqa: E402
from clawstate.server.auth import TokenStore  # noqa: E402
from clawstate.store import Store  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with clawstate.open(
        f"sqlite:///{tmp_path / 'state.db'}", keyring=f"file:{tmp_path / 'keys.json'}"
    ) as s:
        s.namespace("carts").put("u1", {"total": 9})
        s.namespace("carts").put("a/b.c", "slash")
        s.namespace("other").put("k", 1)
        yield s


def _requests(store: Store) -> list[tuple[str, dict[str, str]]]:
    tokens = TokenStore(store)
    reader = "Bearer " + tokens.create(["ns:carts:read"])[0]
    slow = "Bearer " + tokens.create(["ns:carts:read"], rate=0.001)[0]
    etag = store.namespace("carts").get("u1").etag  # type: ignore[union-attr]
    item = "/v1/namespaces/carts/items/u1"
    return [
        (item, {"authorization": reader}),
        (item, {"authorization": reader, "accept": "application/msgpack"}),
        (item, {"authorization": reader, "if-none-match": f'"{etag}"'}),
        (item, {"authorization": reader, "if-none-match": '"nope"'}),
        ("/v1/namespaces/carts/items/a%2Fb%2Ec", {"authorization": reader}),
        ("/v1/namespaces/carts/items/missing", {"authorization": reader}),
        ("/v1/namespaces/carts/items/%FF", {"authorization": reader}),
        ("/v1/namespaces/-bad/items/k", {"authorization": reader}),
        ("/v1/namespaces/other/items/k", {"authorization": reader}),  # 403
        ("/v1/namespaces/_tokens/items/k", {"authorization": reader}),  # 403
        (item, {}),  # 401
        (item, {"authorization": "Bearer cst_nope"}),  # 401
        (item, {"authorization": slow}),  # 429: its bucket holds less than one request
        (item, {"authorization": reader, "clawstate-test-clock": "5"}),  # 400, field clock
    ]


def _answers(store: Store, fast: bool) -> list[tuple[int, dict[str, Any], bytes]]:
    app = create_app(store, ServerSettings(rate_limit=None))
    app.fast_reads = fast
    out: list[tuple[int, dict[str, Any], bytes]] = []
    with TestClient(app) as client:
        for path, headers in _requests(store):
            r = client.get(path, headers=headers)
            kept = {k: v for k, v in r.headers.items() if k not in ("x-request-id", "date")}
            out.append((r.status_code, kept, r.content))
        metrics = client.get(
            "/metrics",
            headers={"authorization": "Bearer " + TokenStore(store).create(["admin"])[0]},
        ).text
    route = 'method="GET",route="/v1/namespaces/{namespace}/items/{key}"'
    counted = sorted(
        line
        for line in metrics.splitlines()
        if line.startswith("clawstate_http_requests_total") and route in line
    )
    out.append((0, {"counted": counted}, b""))
    return out


def test_the_edge_answers_an_item_get_as_litestar_does(store: Store) -> None:
    fast = _answers(store, fast=True)
    slow = _answers(store, fast=False)
    statuses = [status for status, _, _ in fast[:-1]]
    assert statuses == [200, 200, 304, 200, 200, 404, 400, 403, 403, 403, 401, 401, 429, 400]
    for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert a == b, f"request {i}: {a!r} != {b!r}"
    assert fast[-1][1]["counted"], "the edge's answers are counted under the route template"


def test_an_app_wrapped_for_tracing_sees_every_item_get(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tracing, a middleware wraps Litestar: the edge must not answer around it."""
    from clawstate.server import tracing

    seen: list[str] = []

    def instrument(app: Any, *, force: bool = False) -> Any:
        async def traced(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope.get("path", ""))
            await app(scope, receive, send)

        return traced

    monkeypatch.setattr(tracing, "instrument", instrument)
    app = create_app(store)
    assert not app.fast_reads
    token = TokenStore(store).create(["ns:carts:read"])[0]
    with TestClient(app) as client:
        r = client.get(
            "/v1/namespaces/carts/items/u1", headers={"authorization": f"Bearer {token}"}
        )
    assert r.status_code == 200 and r.json()["value"] == {"total": 9}
    assert "/v1/namespaces/carts/items/u1" in seen


def _raw_request(
    client: TestClient[Any], app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, bytes]:
    """One request with ``headers`` exactly as given (the test client would join a
    repeated header into one value, as a proxy may not)."""
    body = b'{"value": 1}'
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), *headers],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
            "state": {},
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)

    client.blocking_portal.call(call)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize(
    "header",
    ["authorization", "if-match", "idempotency-key", "content-type", "clawstate-namespace-options"],
)
def test_a_security_header_given_twice_is_refused_not_resolved(store: Store, header: str) -> None:
    """Two ``Authorization`` headers (a valid token and another tenant's) must not
    resolve to "the last one wins": the request is refused, and nothing is written."""
    import json

    tokens = TokenStore(store)
    writer = "Bearer " + tokens.create(["ns:carts:rw"])[0]
    other = "Bearer " + tokens.create(["ns:other:rw"])[0]
    values = {
        "authorization": (other, writer),
        "if-match": ('"1"', '"2"'),
        "idempotency-key": ("a", "b"),
        "content-type": ("application/json", "application/msgpack"),
        "clawstate-namespace-options": ("{}", "{}"),
    }[header]
    app = create_app(store, ServerSettings(rate_limit=None))
    with TestClient(app) as client:
        for fast in (True, False):
            app.fast_reads = fast
            raw = [(header.encode(), v.encode()) for v in values]
            if header != "authorization":
                raw.append((b"authorization", writer.encode()))
            for method, path in (
                ("GET", "/v1/namespaces/carts/items/u1"),
                ("PUT", "/v1/namespaces/carts/items/twice"),
            ):
                status, body = _raw_request(client, app, method, path, raw)
                assert status == 400, (method, status, body)
                assert json.loads(body)["field"] == f"headers.{header}"
            # Once each, the same request is fine (the refusal is about the repeat).
            once = [(b"authorization", writer.encode())]
            assert _raw_request(client, app, "GET", "/v1/namespaces/carts/items/u1", once)[0] == 200
    assert store.namespace("carts").get("twice") is None
