"""Namespace policy is the server operator's, and the test-control switch is fenced.

Issue 10, item 1: the ``Clawstate-Namespace-Options`` header used to reach
``store.namespace(name, **options)``, so any token could store plaintext in a namespace
configured ``encrypt = true``, point ``cache_l2`` at any host (SSRF), burn CPU with
``compression_level = 22``, turn write-back on, lock the cache policy for everyone or
cause 500s.  Here every policy field — the real list, ``NamespacePolicy``'s fields —
is sent every way a client can (that header on every route, query parameters, body
fields, the Python client), with a read-only token and with the admin token, and the
server is checked afterwards: the stored bytes are still encrypted, acknowledged
writes are durable at once (no write-back), the policy reads as configured, and a
loopback listener given as ``cache_l2`` was never connected to.

Issue 10, fencing the test-control switch: ``/_test/*`` is 404 on a normal server and
test headers do nothing there; on a test-control server the start is logged loudly,
test headers are read only after authentication, and ``POST /_test/stores`` opens no
URL or path taken from its body.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services import require_module

require_module("litestar")
httpx = require_module("httpx")

import clawstate  # noqa: E402
from clawstate._wire import NAMESPACE_OPTIONS  # noqa: E402
from clawstate.config import NamespacePolicy  # noqa: E402
from clawstate.server.testing import ServerProcess  # noqa: E402

MARKER = "PLAINTEXT-MARKER-7d3e"
POLICY_FIELDS: tuple[str, ...] = NamespacePolicy.__struct_fields__


class Listener:
    """A TCP socket listening on 127.0.0.1 that nobody should ever connect to.

    The kernel completes a handshake into the accept queue whether or not we accept,
    so after the requests have been answered ``connections()`` sees every attempt."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.accepted = 0

    def connections(self) -> int:
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return self.accepted
            conn.close()
            self.accepted += 1

    def close(self) -> None:
        self.sock.close()


def hostile_value(field: str, listener: Listener) -> Any:
    """A valid value for ``field`` that differs from the configuration below and would
    hurt if a client could set it.  Fields without a special case get one from their
    default's type, so a field added later is covered without editing this test."""
    special: dict[str, Any] = {
        "serializer": "json",
        "compress_above": 1,
        "compression_level": 22,
        "encrypt": False,
        "backend": "elsewhere",
        "indexes": ["card"],
        "cache": "write-back",
        "cache_l2": listener.url,
        "cache_consistency": "strong",
    }
    if field in special:
        return special[field]
    default = getattr(NamespacePolicy(), field)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int | float):
        return 1
    if isinstance(default, tuple):
        return ["card"]
    return listener.url  # None or a string: the most dangerous kind of value


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clawstate.toml: ``secret`` encrypted, ``plain`` in JSON; the operator's policy."""
    root = tmp_path_factory.mktemp("policy")
    (root / "clawstate.toml").write_text(
        f"""
[store]
url = "sqlite:///{root}/state.db"
sweep_interval = 0

[keyring]
source = "file:{root}/keys.json"

[namespaces.secret]
encrypt = true

[namespaces.plain]
serializer = "json"
"""
    )
    return root


@pytest.fixture(scope="module")
def server(configured: Path) -> Iterator[ServerProcess]:
    """A production server (no test control) on the configured store."""
    proc = ServerProcess(
        f"sqlite:///{configured}/state.db",
        env={"CLAWSTATE_CONFIG": str(configured / "clawstate.toml")},
        extra_args=["--rate-limit", "0"],
    )
    with proc:
        yield proc


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[Any]:
    with server.admin() as client:
        yield client


@pytest.fixture(scope="module")
def tokens(server: ServerProcess, admin: Any) -> dict[str, str]:
    r = admin.post("/v1/admin/tokens", json={"scopes": ["ns:*:read", "events:*:read"]})
    assert r.status_code == 201, r.text
    return {"admin": server.admin_token, "read-only": str(r.json()["token"])}


@pytest.fixture(scope="module")
def baseline(admin: Any) -> dict[str, Any]:
    """The policies as configured, read before any hostile request."""
    out = {}
    for ns in ("secret", "plain", "other"):
        r = admin.get(f"/v1/namespaces/{ns}/policy")
        assert r.status_code == 200, r.text
        out[ns] = r.json()["policy"]
    assert out["secret"]["encrypt"] is True
    assert out["plain"]["serializer"] == "json"
    return out


def routes() -> list[tuple[str, str, Any]]:
    """(method, path, JSON body) of every route a namespace, stream or the store is
    reached by, each with a body that would write MARKER where it writes."""
    value = {"card": MARKER}
    return [
        ("GET", "/v1/namespaces/secret/items/k", None),
        ("PUT", "/v1/namespaces/secret/items/k", value),
        ("DELETE", "/v1/namespaces/secret/items/gone", None),
        ("GET", "/v1/namespaces/secret/items", None),
        ("POST", "/v1/namespaces/secret/query", {"filter": {"EQ": {"card": MARKER}}}),
        ("POST", "/v1/namespaces/secret/batch/get", {"keys": ["k"]}),
        ("POST", "/v1/namespaces/secret/batch/put", {"items": [["k2", value]]}),
        ("GET", "/v1/namespaces/secret/count", None),
        ("GET", "/v1/namespaces/secret/policy", None),
        ("GET", "/v1/namespaces", None),
        (
            "POST",
            "/v1/transactions",
            {"writes": [{"op": "put", "namespace": "secret", "key": "k3", "value": value}]},
        ),
        ("GET", "/v1/changes?namespace=secret&from_seq=0", None),
        ("POST", "/v1/streams/s1/events", {"events": [{"type": "T", "data": {"n": 1}}]}),
        ("GET", "/v1/streams/s1/events", None),
        ("GET", "/v1/events", None),
        ("GET", "/v1/info", None),
    ]


_clients: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for client in _clients.values():
        client.close()
    _clients.clear()


def send(
    server: ServerProcess,
    token: str,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    """One raw request (a kept-alive connection per server, no default headers)."""
    http = _clients.get(server.url)
    if http is None:
        http = _clients[server.url] = httpx.Client(base_url=server.url, timeout=30.0)
    h = {"authorization": f"Bearer {token}", **(headers or {})}
    return http.request(
        method,
        path,
        params=params,
        content=None if body is None else json.dumps(body),
        headers={**h, "content-type": "application/json"} if body is not None else h,
    )


def db_bytes(root: Path) -> bytes:
    """Every byte SQLite has of the server's store (the WAL holds the newest pages)."""
    data = b""
    for name in ("state.db", "state.db-wal"):
        path = root / name
        if path.exists():
            data += path.read_bytes()
    return data


def raw_rows(root: Path, namespace: str) -> dict[str, bytes]:
    """The committed rows of ``namespace``, read by SQLite directly (no clawstate)."""
    conn = sqlite3.connect(f"file:{root}/state.db?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT i.key, i.value FROM items i JOIN namespaces n ON n.id = i.ns WHERE n.name = ?",
            (namespace,),
        ).fetchall()
    finally:
        conn.close()
    return {str(k): bytes(v) for k, v in rows}


def assert_unchanged(
    admin: Any, baseline: dict[str, Any], configured: Path, listener: Listener
) -> None:
    """The operator's policy holds: read as configured, values still encrypted, no
    connection to the listener."""
    for ns, policy in baseline.items():
        r = admin.get(f"/v1/namespaces/{ns}/policy")
        assert r.status_code == 200 and r.json()["policy"] == policy, (ns, r.text)
    assert MARKER.encode() not in db_bytes(configured)
    assert listener.connections() == 0


# -- policy cannot be set by a client ----------------------------------------------------


class TestClientsCannotSetPolicy:
    """Every NamespacePolicy field, every way a client can send it, with a read-only
    and an admin token: refused or without effect."""

    @pytest.mark.parametrize("who", ["admin", "read-only"])
    def test_options_header_is_refused_on_every_route(
        self,
        server: ServerProcess,
        admin: Any,
        tokens: dict[str, str],
        baseline: dict[str, Any],
        configured: Path,
        listener: Listener,
        who: str,
    ) -> None:
        every = {f: hostile_value(f, listener) for f in POLICY_FIELDS}
        headers = [{f: v} for f, v in every.items()]
        headers += [every, {"cache": "read-through", "cache_l2": listener.url}]
        for options in headers:
            for method, path, body in routes():
                r = send(
                    server,
                    tokens[who],
                    method,
                    path,
                    body,
                    headers={NAMESPACE_OPTIONS: json.dumps(options)},
                )
                assert r.status_code == 400, (options, method, path, r.status_code, r.text)
                problem = r.json()
                assert problem["title"] == "InvalidRequest"
                assert problem["field"] == NAMESPACE_OPTIONS, problem
                assert "configuration" in problem["detail"], problem
        assert_unchanged(admin, baseline, configured, listener)

    @pytest.mark.parametrize("who", ["admin", "read-only"])
    def test_policy_fields_as_query_parameters_have_no_effect(
        self,
        server: ServerProcess,
        admin: Any,
        tokens: dict[str, str],
        baseline: dict[str, Any],
        configured: Path,
        listener: Listener,
        who: str,
    ) -> None:
        params = {f: json.dumps(hostile_value(f, listener)) for f in POLICY_FIELDS}
        params.update({"options": json.dumps(params), "policy": json.dumps(params)})
        for method, path, body in routes():
            r = send(server, tokens[who], method, path, body, params=params)
            # Each route answers as it would without them (404: k is not written yet;
            # 400: /v1/changes has a real ?backend=, and "elsewhere" names none).
            allowed = (200, 201, 400, 404) if who == "admin" else (200, 400, 403, 404)
            assert r.status_code in allowed, (method, path, r.status_code, r.text)
            if r.status_code == 400:
                assert r.json()["field"].endswith("backend"), r.text
        # An admin's writes landed: durable at once (no write-back), and encrypted.
        if who == "admin":
            rows = raw_rows(configured, "secret")
            assert {"k", "k2", "k3"} <= set(rows)
            assert all(MARKER.encode() not in v for v in rows.values())
            got = admin.get("/v1/namespaces/secret/items/k")
            assert got.json()["value"] == {"card": MARKER}
        assert_unchanged(admin, baseline, configured, listener)

    @pytest.mark.parametrize("field", POLICY_FIELDS)
    def test_policy_fields_in_bodies_are_refused(
        self,
        server: ServerProcess,
        admin: Any,
        tokens: dict[str, str],
        baseline: dict[str, Any],
        configured: Path,
        listener: Listener,
        field: str,
    ) -> None:
        value = hostile_value(field, listener)
        extra = [{field: value}, {"options": {field: value}}, {"policy": {field: value}}]
        for more in extra:
            write = {"op": "put", "namespace": "secret", "key": "b1", "value": 1, **more}
            bodies = [
                ("POST", "/v1/transactions", {"writes": [write]}),
                ("POST", "/v1/transactions", {"writes": [], **more}),
                ("POST", "/v1/namespaces/secret/batch/put", {"items": [["b2", 1]], **more}),
                ("POST", "/v1/namespaces/secret/batch/get", {"keys": ["b2"], **more}),
                ("POST", "/v1/streams/s2/events", {"events": [], **more}),
            ]
            for method, path, body in bodies:
                r = send(server, tokens["admin"], method, path, body)
                assert r.status_code == 400, (method, path, body, r.text)
        assert not {"b1", "b2"} & set(raw_rows(configured, "secret"))
        # A value that looks like options is only a value: stored, encrypted.
        r = send(server, tokens["admin"], "PUT", "/v1/namespaces/secret/items/v", {field: MARKER})
        assert r.status_code in (200, 201), r.text
        assert_unchanged(admin, baseline, configured, listener)

    @pytest.mark.parametrize("asynchronous", [False, True])
    def test_the_client_refuses_options_and_sends_nothing(
        self,
        server: ServerProcess,
        admin: Any,
        tokens: dict[str, str],
        baseline: dict[str, Any],
        configured: Path,
        listener: Listener,
        asynchronous: bool,
    ) -> None:
        opener = clawstate.open_async if asynchronous else clawstate.open
        for who in ("admin", "read-only"):
            store: Any = opener(server.url, token=tokens[who])
            try:
                for field in POLICY_FIELDS:
                    with pytest.raises(clawstate.InvalidRequest) as info:
                        store.namespace("secret", **{field: hostile_value(field, listener)})
                    assert info.value.field == "options"
                    assert field in str(info.value) and "configuration" in str(info.value)
                ns = store.namespace("secret")  # without options: the configured policy
                assert ns.name == "secret"
            finally:
                close = store.close()
                if asynchronous:
                    import asyncio

                    asyncio.run(close)
        assert_unchanged(admin, baseline, configured, listener)

    def test_the_header_through_client_headers_is_refused(
        self, server: ServerProcess, tokens: dict[str, str]
    ) -> None:
        with pytest.raises(clawstate.InvalidRequest) as info:
            clawstate.open(
                server.url,
                token=tokens["admin"],
                headers={NAMESPACE_OPTIONS: json.dumps({"encrypt": False})},
            )
        assert info.value.field == NAMESPACE_OPTIONS

    def test_store_options_at_open_are_refused(self, server: ServerProcess) -> None:
        with pytest.raises(clawstate.ConfigError):
            clawstate.open(
                server.url,
                token=server.admin_token,
                namespaces={"secret": {"encrypt": False}},
            )


# -- hostile header values never give a 5xx -----------------------------------------------

DEEP = 3000
HOSTILE_HEADERS = [
    pytest.param('{"name": 1}', id="name"),
    pytest.param('{"self": 1}', id="self"),
    pytest.param('{"compression_level": 99999999999999999999999999999}', id="huge-int"),
    pytest.param('{"compress_above": -1e999}', id="minus-inf"),
    pytest.param('{"default_ttl": NaN}', id="nan-token"),
    pytest.param('{"default_ttl": 1e999}', id="inf"),
    pytest.param("[" * DEEP + "]" * DEEP, id="deep-array"),
    pytest.param('{"a":' * 1500 + "1" + "}" * 1500, id="deep-object"),
    pytest.param('{"encrypt": false, "encrypt": true}', id="duplicate"),
    pytest.param("NaN", id="nan"),
    pytest.param("null", id="null"),
    pytest.param("", id="empty"),
    pytest.param("not json", id="not-json"),
    pytest.param('"{}"', id="string"),
    pytest.param("{}", id="empty-object"),
]


class TestHostileHeaderValues:
    @pytest.mark.parametrize("value", HOSTILE_HEADERS)
    @pytest.mark.parametrize("route", ["GET", "PUT", "POLICY"])
    def test_never_a_server_error(
        self, server: ServerProcess, tokens: dict[str, str], value: str, route: str
    ) -> None:
        method, path, body = {
            "GET": ("GET", "/v1/namespaces/secret/items/k", None),
            "PUT": ("PUT", "/v1/namespaces/secret/items/h", {"card": MARKER}),
            "POLICY": ("GET", "/v1/namespaces/secret/policy", None),
        }[route]
        r = send(server, tokens["admin"], method, path, body, headers={NAMESPACE_OPTIONS: value})
        assert 400 <= r.status_code < 500, r.text
        if r.status_code == 400:
            assert r.json()["field"] == NAMESPACE_OPTIONS


# -- the test-control switch is fenced ------------------------------------------------------


@pytest.fixture(scope="module")
def test_server() -> Iterator[ServerProcess]:
    with ServerProcess(test_control=True, extra_args=["--rate-limit", "0"]) as proc:
        yield proc


def _wait_for_log(proc: ServerProcess, text: str) -> bool:
    """The stderr pump runs in a thread: give it a moment to catch up (bounded)."""
    for _ in range(100):
        if text in proc.logs:
            return True
        time.sleep(0.05)
    return False


WARNING = "TEST CONTROL IS ON"


class TestNormalServerHasNoTestControl:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/_test/stores"),
            ("GET", "/_test/stores"),
            ("DELETE", "/_test/stores/t1"),
            ("POST", "/_test/anything"),
        ],
    )
    def test_test_routes_are_404(
        self, server: ServerProcess, tokens: dict[str, str], method: str, path: str
    ) -> None:
        for token in (tokens["admin"], tokens["read-only"], "cst_bogus"):
            r = send(server, token, method, path, {} if method == "POST" else None)
            assert r.status_code == 404, r.text

    def test_test_headers_have_no_effect(
        self, server: ServerProcess, admin: Any, tokens: dict[str, str], configured: Path
    ) -> None:
        for header, value in (("clawstate-test-store", "t1"), ("clawstate-test-clock", "1e9")):
            h = {header: value}
            r = send(server, tokens["admin"], "PUT", "/v1/namespaces/plain/items/tc", 1, h)
            assert r.status_code == 400 and r.json()["field"] == "clock", r.text
            assert "tc" not in raw_rows(configured, "plain")
            r = send(server, "cst_bogus", "GET", "/v1/namespaces/plain/items/tc", None, h)
            assert r.status_code == 401, r.text
            with httpx.Client(base_url=server.url) as http:
                assert http.get("/healthz", headers=h).status_code == 200
        # a normal write still takes the server's own clock
        before = time.time()
        r = admin.put("/v1/namespaces/plain/items/tc", json=1)
        assert r.status_code == 201 and r.json()["created_at"] >= before - 5

    def test_no_warning_at_start(self, server: ServerProcess) -> None:
        assert WARNING not in server.logs


class TestTestControlIsFenced:
    def test_start_is_logged_loudly(self, test_server: ServerProcess) -> None:
        assert _wait_for_log(test_server, WARNING), test_server.logs
        line = next(x for x in test_server.logs.splitlines() if WARNING in x)
        assert json.loads(line)["level"] == "warning"

    @pytest.mark.parametrize(
        "headers",
        [
            {"clawstate-test-store": "t999"},
            {"clawstate-test-clock": "not-a-number"},
            {"clawstate-test-store": "t999", "clawstate-test-clock": "nan-ish"},
        ],
    )
    @pytest.mark.parametrize("token", [None, "cst_bogus"])
    def test_test_headers_are_read_only_after_authentication(
        self, test_server: ServerProcess, headers: dict[str, str], token: str | None
    ) -> None:
        h = dict(headers)
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        with httpx.Client(base_url=test_server.url) as http:
            r = http.get("/v1/namespaces/a/items/k", headers=h)
            assert r.status_code == 401, r.text
            assert http.get("/healthz", headers=h).status_code == 200
            assert http.post("/_test/stores", headers=h, json={}).status_code == 401

    def test_after_authentication_they_apply(self, test_server: ServerProcess) -> None:
        with test_server.admin() as http:
            r = http.get("/v1/namespaces/a/items/k", headers={"clawstate-test-store": "t999"})
            assert r.status_code == 400 and r.json()["field"] == "test_store", r.text

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({"url": "sqlite:///{tmp}/evil.db"}, id="url"),
            pytest.param({"url": "{listener}"}, id="url-listener"),
            pytest.param({"keyring": "file:{tmp}/evil-keys.json"}, id="keyring"),
            pytest.param({"backends": {"b": "{listener}"}}, id="backends"),
            pytest.param({"config": "{tmp}/evil.toml"}, id="config"),
            pytest.param({"clock": 1}, id="clock"),
            pytest.param({"namespaces": {"x": {"cache_l2": "{listener}"}}}, id="cache_l2"),
            pytest.param(
                {"namespaces": {"x": {"cache": "read-through", "cache_l2": "{listener}"}}},
                id="read-through-l2",
            ),
            pytest.param({"namespaces": {"x": {"backend": "{listener}"}}}, id="url-as-backend"),
            pytest.param({"limits": {"max_batch": "{listener}"}}, id="url-in-limits"),
            pytest.param({"namespaces": {"x": {"colour": 1}}}, id="unknown-option"),
            pytest.param({"namespaces": {"x": {"compression_level": 99}}}, id="bad-level"),
            pytest.param([], id="not-an-object"),
            pytest.param({"limits": {"max_batch": "DEEP"}}, id="deep-nesting"),
        ],
    )
    def test_test_stores_open_no_url_from_the_body(
        self, test_server: ServerProcess, tmp_path: Path, listener: Listener, body: Any
    ) -> None:
        text = json.dumps(body).replace("{tmp}", str(tmp_path))
        text = text.replace("{listener}", listener.url)
        text = text.replace('"DEEP"', "[" * 900 + "]" * 900)
        with test_server.admin() as http:
            r = http.post(
                "/_test/stores", content=text, headers={"content-type": "application/json"}
            )
        assert r.status_code == 400, r.text
        problem = r.json()
        assert problem["title"] in ("InvalidRequest", "ConfigError"), problem
        assert list(tmp_path.iterdir()) == []  # nothing created where the body pointed
        assert listener.connections() == 0

    def test_declared_policy_applies_and_stays_in_the_servers_directory(
        self, test_server: ServerProcess
    ) -> None:
        before = set(test_server.dir.iterdir())
        sid = test_server.new_test_store({"namespaces": {"secret": {"encrypt": True}}})
        try:
            made = set(test_server.dir.iterdir()) - before
            assert made and all(p.name.startswith("test-store-") for p in made), made
            with test_server.admin() as http:
                h = {"clawstate-test-store": sid}
                r = http.put("/v1/namespaces/secret/items/k", json={"card": MARKER}, headers=h)
                assert r.status_code == 201, r.text
                policy = http.get("/v1/namespaces/secret/policy", headers=h).json()["policy"]
                assert policy["encrypt"] is True
            stored = b"".join(p.read_bytes() for p in test_server.dir.iterdir() if p.is_file())
            assert MARKER.encode() not in stored
        finally:
            test_server.drop_test_store(sid)
