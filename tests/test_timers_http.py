"""Timers over HTTP: schedule/cancel/get/list through the remote client (the API part
of the timers conformance suite) against a live ``clawstate serve``, and the routes as
an attacker sees them (scopes on timer names, a filtered list, hostile bodies)."""

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
from clawstate.testing.conformance.timers import COUNT, TimersApiConformance  # noqa: E402

__all__ = ["admin", "async_store_factory", "server", "sid", "store_factory"]  # fixtures, for pytest


class TestHTTPTimers(TimersApiConformance):
    """``store.timers`` through ``RemoteStore``."""


def test_scopes_on_timer_names(server: ServerProcess, sid: str, admin: Any) -> None:
    rw = token_for(admin, "timers:team-a-*:rw")
    ro = token_for(admin, "timers:team-a-*:read")
    with client_for(server, sid, rw) as http:
        r = http.put("/v1/timers/team-a-1", json={"handler": COUNT, "after": 60, "payload": 1})
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "team-a-1" and r.json()["payload"] == 1
        assert http.get("/v1/timers/team-a-1").json()["handler"] == COUNT
        denied = http.put("/v1/timers/team-b-1", json={"handler": COUNT, "after": 1})
        assert denied.status_code == 403
        assert (
            http.put("/v1/timers/_machine-x", json={"handler": COUNT, "after": 1}).status_code
            == 403
        )
    assert admin.put("/v1/timers/team-b-1", json={"handler": COUNT, "after": 60}).status_code == 200
    with client_for(server, sid, ro) as http:
        assert http.get("/v1/timers/team-a-1").status_code == 200
        assert http.get("/v1/timers/team-b-1").status_code == 403
        assert (
            http.put("/v1/timers/team-a-2", json={"handler": COUNT, "after": 1}).status_code == 403
        )
        assert http.delete("/v1/timers/team-a-1").status_code == 403
        # the list shows only what the token may read
        names = [t["name"] for t in http.get("/v1/timers").json()["items"]]
        assert names == ["team-a-1"]
    with client_for(server, sid, rw) as http:
        assert http.delete("/v1/timers/team-a-1").json() == {"cancelled": True}
        assert http.delete("/v1/timers/team-a-1").json() == {"cancelled": False}
        assert http.get("/v1/timers/team-a-1").status_code == 404
    assert admin.delete("/v1/timers/team-b-1").json() == {"cancelled": True}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"handler": COUNT, "at": 10**400}, "at"),
        ({"handler": COUNT, "at": "NaN"}, "at"),
        ({"handler": COUNT}, "at"),
        ({"handler": COUNT, "at": 1, "after": 1}, "at"),
        ({"handler": COUNT, "after": -1}, "after"),
        ({"handler": "os.system", "after": 1}, "handler"),
        ({"handler": ["x"], "after": 1}, "handler"),
        ({"after": 1}, "handler"),
        ({"handler": COUNT, "after": 1, "extra": 1}, "extra"),
    ],
)
def test_hostile_bodies(admin: Any, body: dict[str, Any], field: str) -> None:
    r = admin.put("/v1/timers/hostile", json=body)
    assert r.status_code == 400, r.text
    assert field in r.text
    assert admin.get("/v1/timers/hostile").status_code == 404
