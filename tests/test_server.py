"""``clawstate serve`` from the outside: security, HTTP semantics, limits, logs, metrics.

One server subprocess serves most tests of this module (SQLite in a temp dir, access
log and debug logging on, so the log-redaction test sees everything the server can
write).  Tests needing other settings start their own.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from services import require_module

require_module("litestar")
httpx = require_module("httpx")

import msgspec  # noqa: E402

import clawstate  # noqa: E402
from clawstate.server.testing import ServerProcess  # noqa: E402

SECRET_VALUE = "SECRET-VALUE-4f1c9d"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(extra_args=["--access-log", "--log-level", "debug"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.admin() as client:
        yield client


_tokens_made: list[str] = []


def make_token(admin: httpx.Client, *scopes: str, **extra: Any) -> str:
    r = admin.post("/v1/admin/tokens", json={"scopes": list(scopes), **extra})
    assert r.status_code == 201, r.text
    token = str(r.json()["token"])
    _tokens_made.append(token)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# -- health, OpenAPI --------------------------------------------------------------------


def test_health_and_readiness_need_no_token(server: ServerProcess) -> None:
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").json() == {"status": "ready"}


def test_openapi_31_declares_every_status(server: ServerProcess) -> None:
    doc = httpx.get(server.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    ops = {
        op["operationId"]: op
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    for name in (
        "getItem",
        "putItem",
        "deleteItem",
        "scanItems",
        "queryItems",
        "getMany",
        "putMany",
        "transaction",
        "changes",
        "stats",
        "check",
        "createToken",
        "putMachineDefinition",
        "createMachineInstance",
        "fireMachineEvent",
        "getMachineInstance",
        "queryMachineInstances",
        "getMachineHistory",
    ):
        assert name in ops, name
        responses = ops[name]["responses"]
        for status in ("400", "401", "403", "429"):
            assert status in responses, (name, status)
        problem = responses["401"]["content"]["application/problem+json"]
        assert problem["schema"]
    assert {"200", "304", "404"} <= set(ops["getItem"]["responses"])
    assert {"200", "201", "409", "412", "413", "415"} <= set(ops["putItem"]["responses"])
    assert "requestBody" in ops["putItem"]
    for name in ("putMachineDefinition", "createMachineInstance", "fireMachineEvent"):
        assert "requestBody" in ops[name], name
    assert {"404", "409"} <= set(ops["fireMachineEvent"]["responses"])
    assert "text/event-stream" in ops["changes"]["responses"]["200"]["content"]
    assert "healthz" in ops and "security" not in ops["healthz"]


# -- authentication ---------------------------------------------------------------------


def test_every_401_has_one_identical_body(server: ServerProcess, admin: httpx.Client) -> None:
    expired = make_token(admin, "ns:carts:rw", ttl="300ms")
    revoked = make_token(admin, "ns:carts:rw")
    rid = revoked.split("_")[1]
    assert admin.delete(f"/v1/admin/tokens/{rid}").json() == {"revoked": True}
    good = make_token(admin, "ns:carts:rw")
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    unknown = "cst_0123456789abcdef_" + "A" * 43
    time.sleep(0.4)
    url = server.url + "/v1/namespaces/carts/items/k"
    answers = [
        httpx.get(url),
        httpx.get(url, headers={"authorization": "Basic dXNlcjpwYXNz"}),
        httpx.get(url, headers={"authorization": "Bearer nonsense"}),
        httpx.get(url, headers=bearer(unknown)),
        httpx.get(url, headers=bearer(wrong_secret)),
        httpx.get(url, headers=bearer(expired)),
        httpx.get(url, headers=bearer(revoked)),
    ]
    assert {r.status_code for r in answers} == {401}
    assert len({r.content for r in answers}) == 1
    assert all(r.headers["www-authenticate"].startswith("Bearer") for r in answers)
    assert answers[0].json()["title"] == "Unauthorized"
    assert httpx.get(url, headers=bearer(good)).status_code == 404  # the same token, valid


# -- the authorization matrix ------------------------------------------------------------

SCOPES = [
    "ns:carts:read",
    "ns:carts:write",
    "ns:carts:rw",
    "ns:c*:read",
    "ns:other:rw",
    "ns:*:read",
    "events:orders-*:read",
    "metrics",
    "admin",
]


def _can(scope: str, need: str) -> bool:
    """What each scope grants, written independently of the server's code."""
    if scope == "admin":
        return True
    table = {
        "read": {"ns:carts:read", "ns:carts:rw", "ns:c*:read", "ns:*:read"},
        "write": {"ns:carts:write", "ns:carts:rw"},
        "all-read": {"ns:*:read"},
        "admin": set(),
        "metrics": {"metrics"},
        "token": set(SCOPES),
    }
    return scope in table[need]


#: (name, need, method, path, body) — every route of the API but health/openapi.
ROUTES: list[tuple[str, str, str, str, Any]] = [
    ("get", "read", "GET", "/v1/namespaces/carts/items/{key}", None),
    ("put", "write", "PUT", "/v1/namespaces/carts/items/{key}-new", {"v": 1}),
    ("delete", "write", "DELETE", "/v1/namespaces/carts/items/{key}?if_version=99", None),
    ("scan", "read", "GET", "/v1/namespaces/carts/items?prefix={key}", None),
    ("query", "read", "POST", "/v1/namespaces/carts/query", {"filter": {"EQ": {"k": "{key}"}}}),
    ("get_many", "read", "POST", "/v1/namespaces/carts/batch/get", {"keys": ["{key}"]}),
    ("put_many", "write", "POST", "/v1/namespaces/carts/batch/put", {"items": [["{key}-m", 1]]}),
    ("count", "read", "GET", "/v1/namespaces/carts/count", None),
    ("policy", "read", "GET", "/v1/namespaces/carts/policy", None),
    ("changes_ns", "read", "GET", "/v1/changes?namespace=carts&limit=1", None),
    ("changes_all", "all-read", "GET", "/v1/changes?limit=1", None),
    (
        "transaction",
        "write",
        "POST",
        "/v1/transactions",
        {"writes": [{"op": "put", "namespace": "carts", "key": "{key}-tx", "value": 1}]},
    ),
    ("stats", "admin", "GET", "/v1/admin/stats", None),
    ("check", "admin", "GET", "/v1/admin/check", None),
    ("sweep", "admin", "POST", "/v1/admin/sweep", None),
    ("tokens", "admin", "GET", "/v1/admin/tokens", None),
    ("revoke", "admin", "DELETE", "/v1/admin/tokens/ffffffffffffffff", None),
    ("audit", "admin", "GET", "/v1/admin/audit/verify", None),
    ("metrics", "metrics", "GET", "/metrics", None),
    ("info", "token", "GET", "/v1/info", None),
    ("namespaces", "token", "GET", "/v1/namespaces", None),
]


def _fill(body: Any, key: str) -> Any:
    return json.loads(json.dumps(body).replace("{key}", key)) if body is not None else None


def test_authorization_matrix_without_existence_leak(
    server: ServerProcess, admin: httpx.Client
) -> None:
    admin.put("/v1/namespaces/carts/items/exists", json={"k": "exists"})
    tokens = {scope: make_token(admin, scope) for scope in SCOPES}
    tokens["(unknown token)"] = "cst_fedcba9876543210_" + "B" * 43
    failures: list[str] = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for name, need, method, path, body in ROUTES:
            for scope, token in tokens.items():
                seen: dict[str, tuple[int, bytes]] = {}
                for key in ("exists", "absent"):
                    r = http.request(
                        method,
                        path.replace("{key}", key),
                        headers=bearer(token),
                        json=_fill(body, key),
                    )
                    seen[key] = (r.status_code, r.content)
                    if scope == "(unknown token)":
                        ok = r.status_code == 401
                    elif _can(scope, need):
                        ok = (
                            r.status_code < 400
                            or (name == "get" and key == "absent" and r.status_code == 404)
                            or (name == "delete" and r.status_code == 409)
                        )
                    else:
                        ok = r.status_code == 403
                    if not ok:
                        failures.append(f"{name} {scope} {key}: {r.status_code} {r.text[:120]}")
                # a refusal must not depend on whether the key exists
                if seen["exists"][0] in (401, 403) and seen["exists"] != seen["absent"]:
                    failures.append(f"{name} {scope}: refusal differs by existence")
    assert not failures, "\n".join(failures)


def test_namespace_list_shows_only_readable_names(
    server: ServerProcess, admin: httpx.Client
) -> None:
    admin.put("/v1/namespaces/visible-a/items/k", json=1)
    admin.put("/v1/namespaces/hidden-b/items/k", json=1)
    token = make_token(admin, "ns:visible-*:read")
    names = httpx.get(server.url + "/v1/namespaces", headers=bearer(token)).json()["namespaces"]
    assert "visible-a" in names and "hidden-b" not in names
    everything = admin.get("/v1/namespaces").json()["namespaces"]
    assert "hidden-b" in everything
    assert not any(n.startswith("_") for n in everything)  # _tokens, _audit stay hidden


def test_system_namespaces_are_unreachable(server: ServerProcess, admin: httpx.Client) -> None:
    token = make_token(admin, "ns:*:rw")
    for path in ("/v1/namespaces/_tokens/items/x", "/v1/namespaces/_audit/count"):
        assert httpx.get(server.url + path, headers=bearer(token)).status_code == 403
    r = admin.get("/v1/namespaces/_tokens/count")
    assert r.status_code == 400 and r.json()["field"] == "namespace"
    r = httpx.get(server.url + "/v1/changes?namespace=_tokens", headers=bearer(token))
    assert r.status_code == 403


def test_rate_limit_answers_429_with_retry_after(
    server: ServerProcess, admin: httpx.Client
) -> None:
    token = make_token(admin, "ns:carts:read", rate=1)
    statuses = [
        httpx.get(server.url + "/v1/namespaces/carts/count", headers=bearer(token))
        for _ in range(5)
    ]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["title"] == "RateLimited"


def test_revocation_takes_effect_at_once(server: ServerProcess, admin: httpx.Client) -> None:
    token = make_token(admin, "ns:carts:read")
    url = server.url + "/v1/namespaces/carts/count"
    assert httpx.get(url, headers=bearer(token)).status_code == 200
    admin.delete(f"/v1/admin/tokens/{token.split('_')[1]}")
    assert httpx.get(url, headers=bearer(token)).status_code == 401
    listed = admin.get("/v1/admin/tokens").json()["tokens"]
    mine = [t for t in listed if t["id"] == token.split("_")[1]]
    assert mine and mine[0]["revoked_at"] is not None
    assert "hash" not in mine[0] and "token" not in mine[0]


# -- HTTP semantics ---------------------------------------------------------------------


def test_etag_if_match_if_none_match(admin: httpx.Client) -> None:
    url = "/v1/namespaces/etags/items/doc"
    created = admin.put(url, json={"v": 1}, headers={"if-none-match": "*"})
    assert created.status_code == 201
    etag = created.headers["etag"]
    assert etag == f'"{created.json()["etag"]}"'
    again = admin.put(url, json={"v": 2}, headers={"if-none-match": "*"})
    assert again.status_code == 412 and again.json()["title"] == "VersionConflict"
    assert admin.get(url, headers={"if-none-match": etag}).status_code == 304
    stale = admin.put(url, json={"v": 2}, headers={"if-match": '"nope"'})
    assert stale.status_code == 412
    fresh = admin.put(url, json={"v": 2}, headers={"if-match": etag})
    assert fresh.status_code == 200 and fresh.json()["version"] == 2
    assert admin.delete(url, headers={"if-match": etag}).status_code == 412
    cas = admin.put(url + "?if_version=1", json={"v": 3})
    assert cas.status_code == 409
    assert (cas.json()["key"], cas.json()["expected"], cas.json()["actual"]) == ("doc", 1, 2)
    assert admin.delete(url, headers={"if-match": fresh.headers["etag"]}).json() == {
        "deleted": True
    }
    assert admin.get(url).status_code == 404


def test_keys_travel_as_one_raw_segment(admin: httpx.Client) -> None:
    from clawstate._wire import quote_key

    for key in ["a/b", "/", "..", ".", "k 1", "ü/€", "%41", "a?b#c", "tab\there"]:
        r = admin.put(f"/v1/namespaces/keys/items/{quote_key(key)}", json=key)
        assert r.status_code == 201, (key, r.text)
        got = admin.get(f"/v1/namespaces/keys/items/{quote_key(key)}").json()
        assert got["key"] == key and got["value"] == key
    bad = admin.get("/v1/namespaces/keys/items/%FF%FE")
    assert bad.status_code == 400 and bad.json()["field"] == "key"


def test_msgpack_by_content_negotiation(admin: httpx.Client) -> None:
    body = msgspec.msgpack.encode(b"\x00raw bytes\xff")
    r = admin.put(
        "/v1/namespaces/mp/items/blob",
        content=body,
        headers={"content-type": "application/msgpack", "accept": "application/msgpack"},
    )
    assert r.status_code == 201 and r.headers["content-type"] == "application/msgpack"
    got = admin.get("/v1/namespaces/mp/items/blob", headers={"accept": "application/msgpack"})
    item = msgspec.msgpack.decode(got.content, type=clawstate.Item)
    assert item.value == b"\x00raw bytes\xff"
    as_json = admin.get("/v1/namespaces/mp/items/blob")
    assert as_json.headers["content-type"] == "application/json"


def test_watch_as_server_sent_events_resumes_with_last_event_id(admin: httpx.Client) -> None:
    for i in range(3):
        admin.put(f"/v1/namespaces/sse/items/k{i}", json=i)
    first = admin.get(
        "/v1/changes?namespace=sse&from_seq=0&timeout=0.3",
        headers={"accept": "text/event-stream"},
    )
    assert first.headers["content-type"].startswith("text/event-stream")
    events = [block for block in first.text.split("\n\n") if "event: change" in block]
    ids = [
        int(line[4:]) for block in events for line in block.splitlines() if line.startswith("id: ")
    ]
    assert len(ids) == 3 and ids == sorted(ids)
    assert "event: end" in first.text
    resumed = admin.get(
        "/v1/changes?namespace=sse&timeout=0.3",
        headers={"accept": "text/event-stream", "last-event-id": str(ids[1])},
    )
    again = [line for line in resumed.text.splitlines() if line.startswith("id: ")]
    assert again == [f"id: {ids[2]}"]


# -- limits and malformed input ----------------------------------------------------------


def _raw(server: ServerProcess, request: bytes, timeout: float = 5.0) -> bytes:
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_oversized_body_refused_before_it_is_sent(server: ServerProcess) -> None:
    """No byte of the body is ever sent: a server that waited for it would never answer
    (``_raw`` would time out), so the 413 proves it refused from the headers alone."""
    head = _raw(
        server,
        b"PUT /v1/namespaces/lim/items/big HTTP/1.1\r\nhost: x\r\n"
        + f"authorization: Bearer {server.admin_token}\r\n".encode()
        + b"content-type: application/json\r\ncontent-length: 900000000\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 413"), head[:200]


def test_bad_key_refused_before_the_body(server: ServerProcess) -> None:
    key = "k" * 2000
    head = _raw(
        server,
        f"PUT /v1/namespaces/lim/items/{key} HTTP/1.1\r\nhost: x\r\n".encode()
        + f"authorization: Bearer {server.admin_token}\r\n".encode()
        + b"content-type: application/json\r\ncontent-length: 1000000\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 400"), head[:200]


def test_chunked_body_over_the_limit_is_cut_off() -> None:
    with ServerProcess(extra_args=["--max-body", "64KiB"]) as small, small.admin() as http:

        def chunks() -> Iterator[bytes]:
            yield b'"'
            for _ in range(200):
                yield b"x" * 1024
            yield b'"'

        r = http.put(
            "/v1/namespaces/lim/items/chunked",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413, r.text
        assert r.json()["field"] == "body" and r.json()["limit"] == 65536
        assert http.get("/v1/namespaces/lim/items/chunked").status_code == 404


def test_batch_limit(admin: httpx.Client) -> None:
    items = [[f"k{i}", i] for i in range(1001)]
    r = admin.post("/v1/namespaces/lim/batch/put", json={"items": items})
    assert r.status_code == 400
    assert (r.json()["field"], r.json()["limit"]) == ("items", 1000)


@pytest.mark.parametrize(
    ("name", "body", "ctype"),
    [
        ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, "application/json"),
        ("deep-object", b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json"),
        ("huge-float", b'{"n": 1e999}', "application/json"),
        ("huge-int", b'{"n": 123456789012345678901234567890}', "application/json"),
        ("invalid-utf8", b'{"s": "\xff\xfe"}', "application/json"),
        ("duplicate-keys", b'{"a": 1, "b": 2, "a": 3}', "application/json"),
        ("nested-duplicate", b'{"x": [{"k": 1, "k": 2}]}', "application/json"),
        ("escaped-duplicate", b'{"a": 1, "\\u0061": 2}', "application/json"),
        ("truncated", b'{"a": [1, 2', "application/json"),
        ("empty", b"", "application/json"),
        ("nan-literal", b'{"n": NaN}', "application/json"),
        ("trailing-garbage", b'{"a": 1} x', "application/json"),
        ("truncated-msgpack", b"\x82\xa1a", "application/msgpack"),
        ("unsupported-type", b"a=1", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_bodies_get_4xx(admin: httpx.Client, name: str, body: bytes, ctype: str) -> None:
    r = admin.put(f"/v1/namespaces/bad/items/{name}", content=body, headers={"content-type": ctype})
    assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:200])
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["title"] == "InvalidRequest"
    assert admin.get(f"/v1/namespaces/bad/items/{name}").status_code == 404
    for path in ("/v1/namespaces/bad/query", "/v1/transactions", "/v1/namespaces/bad/batch/put"):
        r = admin.post(path, content=body, headers={"content-type": ctype})
        assert 400 <= r.status_code < 500, (name, path, r.status_code)


def test_body_shorter_than_content_length_is_not_a_server_error(server: ServerProcess) -> None:
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            b"PUT /v1/namespaces/bad/items/short HTTP/1.1\r\nhost: x\r\n"
            + f"authorization: Bearer {server.admin_token}\r\n".encode()
            + b'content-type: application/json\r\ncontent-length: 100\r\n\r\n{"a": 1'
        )
        s.shutdown(socket.SHUT_WR)
        data = s.recv(65536)
    assert not data.startswith(b"HTTP/1.1 5"), data[:100]
    with server.admin() as http:
        assert http.get("/v1/namespaces/bad/items/short").status_code == 404
        assert http.get("/readyz").status_code == 200


# -- audit, metrics, logs -----------------------------------------------------------------


def test_audit_log_records_admin_actions_and_denials(
    server: ServerProcess, admin: httpx.Client
) -> None:
    httpx.get(server.url + "/v1/admin/stats")  # denied: no token
    reader = make_token(admin, "ns:carts:read")
    httpx.get(server.url + "/v1/admin/stats", headers=bearer(reader))  # denied: scope
    report = admin.get("/v1/admin/audit/verify").json()
    assert report["ok"], report["problems"]
    # token create + the scope denial (+ everything before); the unauthenticated denial
    # is aggregated per address and interval (tests/test_server_audit.py covers it)
    assert report["records"] >= 2


def test_metrics(server: ServerProcess, admin: httpx.Client) -> None:
    admin.get("/v1/namespaces/carts/items/exists")
    assert httpx.get(server.url + "/metrics").status_code == 401
    text = admin.get("/metrics").text
    assert (
        'clawstate_http_requests_total{method="GET",route="/v1/namespaces/{namespace}/items/{key}",status="200"}'
        in text
    )
    assert "clawstate_http_request_duration_seconds_bucket" in text
    assert 'clawstate_store_operations_total{namespace="carts",op="get"}' in text
    assert "clawstate_group_commit_batches_total" in text
    assert "clawstate_watches_open" in text
    assert 'clawstate_denied_requests_total{status="401"}' in text


def test_request_ids(server: ServerProcess, admin: httpx.Client) -> None:
    r = admin.get("/healthz", headers={"x-request-id": "trace-me-42"})
    assert r.headers["x-request-id"] == "trace-me-42"
    generated = admin.get("/healthz").headers["x-request-id"]
    assert generated and generated != "trace-me-42"


def test_tokens_and_values_never_reach_the_logs(server: ServerProcess, admin: httpx.Client) -> None:
    token = make_token(admin, "ns:logs:rw")
    with httpx.Client(base_url=server.url, headers=bearer(token)) as http:
        http.put("/v1/namespaces/logs/items/k", json={"secret": SECRET_VALUE})
        http.get("/v1/namespaces/logs/items/k")
        http.post("/v1/namespaces/logs/query", json={"filter": {"EQ": {"secret": SECRET_VALUE}}})
        http.put("/v1/namespaces/logs/items/bad", content=b'{"s": "' + SECRET_VALUE.encode() + b'"')
        http.get("/v1/admin/stats")  # denied: the denial is logged
        http.get(f"/v1/namespaces/logs/items/k?token={token}")
    httpx.get(server.url + "/v1/info", headers=bearer(token[:-3] + "xyz"))  # invalid token
    time.sleep(0.3)
    logs = server.logs
    assert '"msg": "request"' in logs and '"msg": "denied"' in logs  # it did log
    assert SECRET_VALUE not in logs
    for secret in [server.admin_token, *_tokens_made]:
        assert secret.split("_", 2)[2] not in logs, "a token secret reached the log"
    for line in logs.splitlines():
        if line.startswith("{"):
            json.loads(line)  # every line is one JSON object


# -- the HTTP client ------------------------------------------------------------------------


def test_client_refuses_store_side_options_and_foreign_clocks(server: ServerProcess) -> None:
    with pytest.raises(clawstate.ConfigError) as info:
        clawstate.open(server.url, token=server.admin_token, limits={"max_batch": 5})
    assert info.value.field == "limits"
    with pytest.raises(clawstate.ConfigError):
        clawstate.open("memory://", token="x")
    with pytest.raises(clawstate.ConfigError):
        clawstate.open("memory://", timeout=3)
    with pytest.raises(clawstate.Unauthorized):
        clawstate.open(server.url, token="cst_0123456789abcdef_" + "C" * 43)
    with pytest.raises(clawstate.InvalidRequest) as bad:  # a test-only feature
        clawstate.open(server.url, token=server.admin_token, clock=lambda: 1.0)
    assert bad.value.field == "clock"


def test_client_retries_only_what_cannot_apply_twice() -> None:
    from clawstate.client import _Call, _should_retry

    def call(method: str, idempotent: bool) -> _Call[Any]:
        return _Call(method, "/x", None, None, None, idempotent, lambda s, d: None)

    read, write, keyed = call("GET", True), call("PUT", False), call("PUT", True)
    refused = httpx.ConnectError("refused")
    lost = httpx.ReadTimeout("lost")
    assert _should_retry(write, refused, None)  # never reached the server
    assert not _should_retry(write, lost, None)  # may have been applied
    assert _should_retry(keyed, lost, None) and _should_retry(read, lost, None)
    assert _should_retry(write, None, 429)  # refused before it ran
    assert not _should_retry(write, None, 503) and _should_retry(read, None, 503)


def _denied_429(admin: httpx.Client) -> float:
    """The server's count of 429 answers so far (its ``/metrics``)."""
    for line in admin.get("/metrics").text.splitlines():
        if line.startswith("clawstate_denied_requests_total") and 'status="429"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_client_rides_out_rate_limits(server: ServerProcess, admin: httpx.Client) -> None:
    """Every call succeeds although the server did refuse some with 429: the client
    waited out Retry-After and tried again."""
    token = make_token(admin, "ns:carts:read", rate=20)
    before = _denied_429(admin)
    store = clawstate.open(server.url, token=token)
    try:
        for _ in range(60):  # three times the burst: 429s are retried after Retry-After
            store.namespace("carts").count()
    finally:
        store.close()
    assert _denied_429(admin) > before, "the server never answered 429: nothing was ridden out"


def test_tracing_is_a_no_op_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from clawstate.server.tracing import instrument, route_template

    app = object()
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert instrument(app) is app
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    try:
        import opentelemetry.instrumentation.asgi  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        assert instrument(app) is app  # configured, but the extra is not installed
    assert (
        route_template("/v1/namespaces/carts/items/u42") == "/v1/namespaces/{namespace}/items/{key}"
    )
