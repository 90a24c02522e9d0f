"""What the server tells callers and scrapers, and what it must not: bounded metric
labels, no store-wide figure for a tenant scoped to some namespaces, bounded SSE
heartbeats, and client disconnects counted as such (not as 500s).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from services import require_module

require_module("litestar")
httpx = require_module("httpx")

from litestar.testing import TestClient  # noqa: E402

import clawstate  # noqa: E402
from clawstate.errors import InvalidRequest  # noqa: E402
from clawstate.server.app import ServerSettings, create_app  # noqa: E402
from clawstate.server.auth import TokenStore  # noqa: E402
from clawstate.server.http import HEARTBEAT_MAX, HEARTBEAT_MIN, heartbeat_seconds  # noqa: E402
from clawstate.server.metrics import OTHER, Metrics  # noqa: E402
from clawstate.server.testing import ServerProcess  # noqa: E402
from clawstate.store import Store  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with clawstate.open(
        f"sqlite:///{tmp_path / 'state.db'}", keyring=f"file:{tmp_path / 'keys.json'}"
    ) as s:
        yield s


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def admin(store: Store) -> str:
    return TokenStore(store).create(["admin"])[0]


def _op_labels(text: str) -> set[str]:
    return set(re.findall(r'clawstate_store_operations_total\{namespace="([^"]*)"', text))


# -- metric labels are bounded ------------------------------------------------------------


class TestNamespaceLabels:
    def test_thousands_of_made_up_names_leave_metrics_small(self, store: Store, admin: str) -> None:
        store.namespace("carts").put("k", 1)
        with TestClient(create_app(store, ServerSettings(rate_limit=None))) as client:
            h = _auth(admin)
            client.get("/v1/namespaces/carts/items/k", headers=h)
            before = client.get("/metrics", headers=h).text
            for i in range(3000):
                r = client.get(f"/v1/namespaces/made-up-{i}/items/k", headers=h)
                assert r.status_code == 404
            for i in range(200):  # every read route, made-up names
                client.get(f"/v1/namespaces/x{i}/items", headers=h)
                client.get(f"/v1/namespaces/y{i}/count", headers=h)
                client.post(f"/v1/namespaces/z{i}/query", headers=h, json={})
                client.post(f"/v1/namespaces/w{i}/batch/get", headers=h, json={"keys": ["a"]})
                client.delete(f"/v1/namespaces/v{i}/items/k", headers=h)
            after = client.get("/metrics", headers=h).text
        labels = _op_labels(after)
        assert labels <= {"carts", OTHER}, sorted(labels)[:10]
        assert "carts" in labels and OTHER in labels
        assert len(after) - len(before) < 20_000, (len(before), len(after))

    def test_a_put_makes_its_namespace_a_label(self, store: Store, admin: str) -> None:
        with TestClient(create_app(store)) as client:
            h = _auth(admin)
            assert client.put("/v1/namespaces/fresh/items/k", headers=h, json=1).status_code in (
                200,
                201,
            )
            client.get("/v1/namespaces/fresh/items/k", headers=h)
            text = client.get("/metrics", headers=h).text
        assert 'clawstate_store_operations_total{namespace="fresh",op="get"}' in text

    def test_configured_and_existing_namespaces_are_known_at_start(self, store: Store) -> None:
        store.namespace("existing").put("k", 1)
        metrics = Metrics()
        metrics.refresh_namespaces(lambda: [*store.namespaces(), "configured", "_audit"])
        for name in ("existing", "configured"):
            metrics.store_op(name, "get")
        metrics.store_op("_audit", "get")
        metrics.store_op("nope", "get")
        assert _op_labels(metrics.render()[0].decode()) == {"existing", "configured", OTHER}

    def test_the_known_set_has_a_ceiling(self) -> None:
        metrics = Metrics()
        metrics.namespaces.limit = 50
        for i in range(500):
            metrics.store_op(f"n{i}", "put")  # even real creations stop at the ceiling
        assert len(_op_labels(metrics.render()[0].decode())) == 51


class TestMethodLabels:
    @pytest.mark.parametrize("method", ["FOO", "BREW", "get", "X" * 50, "PROPFIND"])
    def test_any_method_token_counts_as_other(self, method: str) -> None:
        metrics = Metrics()
        metrics.observe_request("unmatched", method, 405, 0.001)
        text = metrics.render()[0].decode()
        assert 'method="OTHER"' in text and method not in re.findall(r'method="([^"]*)"', text)


# -- a tenant learns nothing about other tenants' writes --------------------------------------

_VOLATILE = {"x-request-id", "date"}


def _snapshot(r: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in r.headers.items() if k.lower() not in _VOLATILE)
    return r.status_code, r.content, headers


class TestTenantsSeeOnlyTheirOwnPositions:
    """Tenant A (``ns:a1:*``) polls the change log; tenant B writes to b1 (and gets
    denied, which writes audit records).  Nothing A receives may change."""

    REQUESTS: ClassVar[list[str]] = [
        "/v1/changes?namespace=a1",
        "/v1/changes?namespace=a1&from_seq=0",
        "/v1/changes?namespace=a1&limit=0",
        "/v1/changes?namespace=a1&prefix=k",
        "/v1/changes?namespace=a1&from_seq=0&limit=1",
        "/v1/namespaces",
        "/v1/namespaces/a1/count",
        "/v1/namespaces/a1/items",
        "/v1/namespaces/a1/items/k1",
        "/v1/info",
    ]

    @pytest.fixture
    def tenants(self, store: Store, admin: str) -> Iterator[tuple[TestClient[Any], str, str]]:
        tokens = TokenStore(store)
        a = tokens.create(["ns:a1:rw"])[0]
        b = tokens.create(["ns:b1:rw"])[0]
        with TestClient(create_app(store)) as client:
            for i in range(3):
                client.put(f"/v1/namespaces/a1/items/k{i}", headers=_auth(a), json=i)
            yield client, a, b

    def _everything(self, client: TestClient[Any], a: str) -> list[Any]:
        h = _auth(a)
        out = [_snapshot(client.get(path, headers=h)) for path in self.REQUESTS]
        sse = client.get(
            "/v1/changes?namespace=a1&from_seq=0&timeout=0.2",
            headers={**h, "accept": "text/event-stream"},
        )
        out.append(_snapshot(sse))
        last = json.loads(client.get("/v1/changes?namespace=a1&from_seq=0", headers=h).content)
        resumed = client.get(
            "/v1/changes?namespace=a1&timeout=0.2",
            headers={**h, "accept": "text/event-stream", "last-event-id": str(last["last_seq"])},
        )
        out.append(_snapshot(resumed))
        return out

    def _other_tenant_busy(self, client: TestClient[Any], b: str, admin: str) -> None:
        for i in range(40):
            client.put(f"/v1/namespaces/b1/items/k{i}", headers=_auth(b), json=i)
        client.delete("/v1/namespaces/b1/items/k1", headers=_auth(b))
        client.get("/v1/namespaces/a1/items/k1", headers=_auth(b))  # 403: an audit record
        client.post("/v1/admin/tokens", headers=_auth(admin), json={"scopes": ["metrics"]})

    def test_other_tenants_writes_change_nothing_a_tenant_receives(
        self, tenants: tuple[TestClient[Any], str, str], admin: str
    ) -> None:
        client, a, b = tenants
        first = self._everything(client, a)
        self._other_tenant_busy(client, b, admin)
        second = self._everything(client, a)
        for path, x, y in zip([*self.REQUESTS, "sse", "sse-resume"], first, second, strict=True):
            assert x == y, path

    def test_positions_are_those_of_its_own_changes(
        self, tenants: tuple[TestClient[Any], str, str], admin: str
    ) -> None:
        client, a, b = tenants
        self._other_tenant_busy(client, b, admin)
        doc = client.get("/v1/changes?namespace=a1&from_seq=0", headers=_auth(a)).json()
        own = [c["seq"] for c in doc["changes"]]
        assert len(own) == 3 and doc["last_seq"] == own[-1]
        assert client.get("/v1/changes?namespace=a1", headers=_auth(a)).json() == {
            "changes": [],
            "last_seq": own[-1],
        }
        # a write of its own moves it, and it sees that write from the position it had
        client.put("/v1/namespaces/a1/items/new", headers=_auth(a), json=1)
        doc2 = client.get(f"/v1/changes?namespace=a1&from_seq={own[-1]}", headers=_auth(a)).json()
        assert [c["key"] for c in doc2["changes"]] == ["new"]
        assert doc2["last_seq"] == doc2["changes"][0]["seq"]

    def test_an_admin_still_gets_the_store_wide_position(
        self, tenants: tuple[TestClient[Any], str, str], admin: str, store: Store
    ) -> None:
        client, _, b = tenants
        self._other_tenant_busy(client, b, admin)
        doc = client.get("/v1/changes?namespace=a1&limit=0", headers=_auth(admin)).json()
        assert doc["last_seq"] == store.last_seq


# -- heartbeat bounds -----------------------------------------------------------------------


class TestHeartbeat:
    BAD: ClassVar[list[str]] = [
        *("0.001", "0", "-1", "0.999", "nan", "NaN", "inf", "-inf", "1e308", "3601"),
        *("x", "1,5", "1e-9", "+inf", "0x10"),
    ]
    GOOD: ClassVar[list[str]] = ["1", "1.0", "2.5", "3600", "15"]
    ROUTES: ClassVar[list[str]] = ["/v1/changes", "/v1/events", "/v1/events/subscribe"]

    @pytest.mark.parametrize("value", BAD)
    def test_refused_with_the_limits(self, value: str) -> None:
        with pytest.raises(InvalidRequest) as err:
            heartbeat_seconds(value, ServerSettings())
        assert err.value.field == "heartbeat"
        assert f"{HEARTBEAT_MIN:g}" in str(err.value) and f"{HEARTBEAT_MAX:g}" in str(err.value)

    @pytest.mark.parametrize("value", GOOD)
    def test_accepted_and_capped_by_the_server(self, value: str) -> None:
        assert heartbeat_seconds(value, ServerSettings(heartbeat=15.0)) == min(float(value), 15)

    def test_every_sse_route_refuses_them(self, store: Store, admin: str) -> None:
        with TestClient(create_app(store)) as client:
            for route in self.ROUTES:
                for value in self.BAD:
                    for accept in ("text/event-stream", "application/json"):
                        r = client.get(
                            f"{route}?heartbeat={value}&timeout=0",
                            headers={**_auth(admin), "accept": accept},
                        )
                        assert r.status_code == 400, (route, value, r.text)
                        assert "heartbeat" in r.json()["detail"], r.text
                r = client.get(
                    f"{route}?heartbeat=1&timeout=0",
                    headers={**_auth(admin), "accept": "text/event-stream"},
                )
                assert r.status_code == 200, (route, r.text)


# -- a client that leaves mid-body is not a server error ------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(extra_args=["--log-level", "info"]) as proc:
        yield proc


def _cut_body(server: ServerProcess, path: str, declared: int, sent: bytes) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.admin_token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n".encode()
            + sent
        )
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("declared", "sent"), [(100, b'{"a": '), (5000, b""), (1 << 20, b"[1, 2, 3" * 100)]
)
def test_a_client_disconnect_mid_body_is_a_499_not_a_500(
    server: ServerProcess, declared: int, sent: bytes
) -> None:
    route = "/v1/namespaces/{namespace}/items/{key}"
    for _ in range(3):
        _cut_body(server, "/v1/namespaces/cut/items/k", declared, sent)
    with server.admin() as http:
        deadline = time.monotonic() + 10
        while True:
            text = http.get("/metrics").text
            counted = re.findall(
                r'clawstate_http_requests_total\{method="PUT",route="'
                + re.escape(route)
                + r'",status="(\d+)"\} (\d+)',
                text,
            )
            by_status = {s: float(n) for s, n in counted}
            if by_status.get("499", 0) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert by_status.get("499", 0) >= 3, counted
        assert "500" not in by_status, counted
        assert http.get("/readyz").status_code == 200
    assert '"msg": "client disconnected"' in server.logs
    assert "unexpected error" not in server.logs
