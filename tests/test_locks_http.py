"""Leases over HTTP: the locks conformance suite through the remote client (sync and
async) against a live ``clawstate serve``, and the routes from the outside as an
attacker sees them — scopes on lock names, fenced writes that need ``locks:<name>:read``
(403 before the store is touched, the same answer whether the lock exists or not),
and hostile fence and lock parameters (huge, negative, NaN, half missing)."""

from __future__ import annotations

from typing import Any

import pytest

from services import require_module

require_module("litestar")
httpx = require_module("httpx")

from _server import (  # noqa: E402
    admin,
    async_store_factory,
    client_for,
    server,
    sid,
    store_factory,
    token_for,
)
from clawstate.server.testing import ServerProcess  # noqa: E402
from clawstate.testing.conformance.locks import (  # noqa: E402
    AsyncLocksConformance,
    LocksConformance,
)

__all__ = ["admin", "async_store_factory", "server", "sid", "store_factory"]  # fixtures, for pytest


class TestHTTPLocks(LocksConformance):
    """``store.locks`` / ``store.lock`` / fenced writes through ``RemoteStore``."""


class TestHTTPAsyncLocks(AsyncLocksConformance):
    """The awaitable face through ``AsyncRemoteStore``."""


# -- from the outside --------------------------------------------------------------------


def test_lock_routes_round_trip(server: ServerProcess, sid: str, admin: Any) -> None:
    token = token_for(admin, "locks:team-a-*:rw")
    with client_for(server, sid, token) as http:
        first = http.post("/v1/locks/team-a-job", json={"ttl": 5}).json()
        assert http.delete("/v1/locks/team-a-job", params={"token": str(first["token"])}).json()
        r = http.post("/v1/locks/team-a-job", json={"ttl": "30s", "owner": "w1"})
        assert r.status_code == 200, r.text
        lease = r.json()
        assert lease["token"] > first["token"]
        assert lease["owner"] == "w1" and lease["token"] >= 1
        assert http.get("/v1/locks/team-a-job").json() == lease
        busy = http.post("/v1/locks/team-a-job", json={"owner": "w2", "wait": 0.05})
        assert busy.status_code == 409 and busy.json()["title"] == "LockTimeout"
        renewed = http.put("/v1/locks/team-a-job", json={"token": lease["token"], "ttl": 60})
        assert renewed.status_code == 200 and renewed.json()["token"] == lease["token"]
        stale = http.delete("/v1/locks/team-a-job", params={"token": str(first["token"])})
        assert stale.json() == {"released": False}
        done = http.delete("/v1/locks/team-a-job", params={"token": str(lease["token"])})
        assert done.json() == {"released": True}
        assert http.get("/v1/locks/team-a-job").status_code == 404
        # an empty body takes every default (ttl 30 s, no wait)
        again = http.post("/v1/locks/team-a-%2Fslash")
        assert again.status_code == 200 and again.json()["name"] == "team-a-/slash"


def test_other_tenants_locks_forbidden_without_information(
    server: ServerProcess,
    sid: str,
    admin: Any,
) -> None:
    """A token scoped to team A's locks gets the same 403 for team B's lock whether it
    is held or not — for every route — and the lock is untouched."""
    held = admin.post("/v1/locks/team-b-held", json={"ttl": 600}).json()
    token = token_for(admin, "locks:team-a-*:rw", "ns:*:rw")
    answers: dict[str, list[tuple[int, str]]] = {}
    with client_for(server, sid, token) as http:
        for name in ("team-b-held", "team-b-free"):
            got = [
                http.get(f"/v1/locks/{name}"),
                http.post(f"/v1/locks/{name}", json={"ttl": 5}),
                http.put(f"/v1/locks/{name}", json={"token": held["token"]}),
                http.delete(f"/v1/locks/{name}", params={"token": str(held["token"])}),
                http.put(
                    "/v1/namespaces/out/items/k",
                    params={"fence": name, "fence_token": str(held["token"])},
                    json=1,
                ),
                http.delete(
                    "/v1/namespaces/out/items/k",
                    params={"fence": name, "fence_token": str(held["token"])},
                ),
                http.post(
                    "/v1/namespaces/out/batch/put",
                    json={"items": [["k", 1]], "fence": {"name": name, "token": held["token"]}},
                ),
                http.post(
                    "/v1/transactions",
                    json={
                        "writes": [
                            {
                                "op": "put",
                                "namespace": "out",
                                "key": "k",
                                "value": 1,
                                "fence": {"name": name, "token": held["token"]},
                            }
                        ]
                    },
                ),
            ]
            answers[name] = [(r.status_code, r.json()["title"]) for r in got]
            for r in got:
                assert r.status_code == 403, (name, r.request.method, r.request.url, r.text)
                assert "team-b" not in r.text
        assert answers["team-b-held"] == answers["team-b-free"]
        # a read-only lock scope fences but may not take the lock
        assert http.get("/v1/namespaces/out/items/k").status_code == 404  # nothing written
    assert admin.get("/v1/locks/team-b-held").json() == held
    reader = token_for(admin, "locks:team-b-*:read", "ns:out:rw")
    with client_for(server, sid, reader) as http:
        assert http.post("/v1/locks/team-b-free", json={}).status_code == 403
        assert http.get("/v1/locks/team-b-held").json() == held
        ok = http.put(
            "/v1/namespaces/out/items/fenced",
            params={"fence": "team-b-held", "fence_token": str(held["token"])},
            json={"by": "holder"},
        )
        assert ok.status_code == 201, ok.text
    # system-looking lock names are the admin's
    with client_for(server, sid, token_for(admin, "locks:*:rw")) as http:
        assert http.post("/v1/locks/_internal", json={}).status_code == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"fence": "job", "fence_token": "0"}, "fence_token"),
        ({"fence": "job", "fence_token": "-1"}, "fence_token"),
        ({"fence": "job", "fence_token": "9223372036854775808"}, "fence_token"),
        ({"fence": "job", "fence_token": "1" * 400}, "fence_token"),
        ({"fence": "job", "fence_token": "NaN"}, "fence_token"),
        ({"fence": "job", "fence_token": "1.0"}, "fence_token"),
        ({"fence": "job", "fence_token": "1e3"}, "fence_token"),
        ({"fence": "job"}, "fence_token"),
        ({"fence_token": "3"}, "fence"),
        ({"fence": "", "fence_token": "3"}, "fence"),
    ],
)
def test_hostile_fence_params(
    server: ServerProcess,
    sid: str,
    admin: Any,
    params: dict[str, str],
    field: str,
) -> None:
    for method in ("PUT", "DELETE"):
        r = admin.request(
            method,
            "/v1/namespaces/hostile/items/k",
            params=params,
            json=1 if method == "PUT" else None,
        )
        assert r.status_code == 400, (method, params, r.text)
        assert r.json()["field"] == field, r.text
    assert admin.get("/v1/namespaces/hostile/items/k").status_code == 404


@pytest.mark.parametrize(
    ("fence", "field"),
    [
        ({"name": "job", "token": 2**63}, "fence.token"),
        ({"name": "job", "token": 10**40}, "fence.token"),
        ({"name": "job", "token": -5}, "fence.token"),
        ({"name": "job", "token": 0}, "fence.token"),
        ({"name": "job", "token": 1.0}, "fence.token"),
        ({"name": "job", "token": True}, "fence.token"),
        ({"name": "job", "token": "3"}, "fence.token"),
        ({"name": "job", "token": None}, "fence.token"),
        ({"name": "job"}, "fence.token"),
        ({"token": 3}, "fence.name"),
        ({"name": 7, "token": 3}, "fence.name"),
        ({"name": "job", "token": 3, "owner": "x"}, "fence.owner"),
        ([], "fence"),
        ("job", "fence"),
    ],
)
def test_hostile_fence_bodies(
    server: ServerProcess,
    sid: str,
    admin: Any,
    fence: Any,
    field: str,
) -> None:
    r = admin.post("/v1/namespaces/hostile/batch/put", json={"items": [["k", 1]], "fence": fence})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field, r.text
    write = {"op": "put", "namespace": "hostile", "key": "k", "value": 1, "fence": fence}
    r = admin.post("/v1/transactions", json={"writes": [write]})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == f"writes[0].{field}", r.text
    assert admin.get("/v1/namespaces/hostile/items/k").status_code == 404


def test_nan_and_huge_in_json_bodies_refused(server: ServerProcess, sid: str, admin: Any) -> None:
    """Numbers JSON cannot carry honestly (NaN, 1e999) and out-of-range tokens are
    refused with the field named, before anything is written."""
    for body, field in (
        (b'{"ttl": NaN}', "lock"),
        (b'{"ttl": 1e999}', "lock"),
        (b'{"ttl": 1e300}', "ttl"),
        (b'{"ttl": -1}', "ttl"),
        (b'{"ttl": 0}', "ttl"),
        (b'{"wait": 21}', "wait"),
        (b'{"wait": null}', "wait"),
        (b'{"wait": -0.5}', "wait"),
        (b'{"owner": ""}', "owner"),
        (b'{"colour": 1}', "lock"),
    ):
        r = admin.post(
            "/v1/locks/hostile", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400, (body, r.text)
        assert r.json()["field"].startswith(field), (body, r.text)
    assert admin.get("/v1/locks/hostile").status_code == 404
    lease = admin.post("/v1/locks/hostile", json={"ttl": 5}).json()
    for body, field in (
        ({"token": 2**64}, "token"),
        ({"token": -1}, "token"),
        ({"token": 1.5}, "token"),
        ({}, "lock"),
        ({"token": lease["token"], "ttl": "forever"}, "ttl"),
    ):
        r = admin.put("/v1/locks/hostile", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["field"].startswith(field), (body, r.text)
    for token in ("", "-1", "x", "99999999999999999999999"):
        r = admin.delete("/v1/locks/hostile", params={"token": token})
        assert r.status_code == 400, (token, r.text)
    assert admin.delete("/v1/locks/hostile").json()["field"] == "token"
    assert admin.get("/v1/locks/hostile").json() == lease


def test_fenced_write_refused_over_http_names_the_tokens(
    server: ServerProcess,
    sid: str,
    admin: Any,
) -> None:
    first = admin.post("/v1/locks/handover", json={"ttl": 600}).json()
    admin.delete("/v1/locks/handover", params={"token": str(first["token"])})
    second = admin.post("/v1/locks/handover", json={"ttl": 600}).json()
    r = admin.put(
        "/v1/namespaces/fenced/items/k",
        params={"fence": "handover", "fence_token": str(first["token"])},
        json="stale",
    )
    assert r.status_code == 409, r.text
    doc = r.json()
    assert doc["title"] == "FencingError"
    assert (doc["name"], doc["token"], doc["current"]) == (
        "handover",
        first["token"],
        second["token"],
    )
    assert admin.get("/v1/namespaces/fenced/items/k").status_code == 404
