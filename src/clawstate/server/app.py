"""The ASGI application: HTTP routes over the store, and nothing more.

DESIGN.md: "Server is a thin ASGI layer over AsyncStore: no logic lives only in the
server."  Every route parses the request, checks the token's scope, calls ONE facade
method (``Namespace.get/put/delete/scan/query/put_many/get_many``,
``Store.transaction/watch/stats/check/sweep``) through the server's
:class:`~clawstate.aio.AsyncStore`, and encodes what it returns.  Validation, limits,
TTLs, idempotency, version checks, cursors — and the group commit of concurrent plain
puts (``clawstate._batch``) — are the facade's, so the store answers the same over
HTTP as in-process, and the conformance suite proves it
(``tests/test_server_conformance.py``).

What the server adds is only what HTTP needs, one module per job:

=====================  =================================================================
``app``                this factory: the routes, the hooks, the Litestar application
``settings``           :class:`ServerSettings` (``clawstate serve`` options)
``state``              :class:`ServerState` (one per worker), the rate limiter, ``Ctx``
``edge``               the raw ASGI wrapper: raw paths, request ids, timing, access log
``http``               request/response helpers: negotiation, bodies, params, ``Raw``
``guard``              authentication, rate limits, scopes; audit of denials and admin
``openapi``            the OpenAPI declarations and ``/openapi.json``
``ops``                ``/healthz``, ``/readyz``, ``/metrics``, ``/v1/info``
``items``              items and namespaces
``transactions``       ``/v1/transactions``
``changes``            ``/v1/changes`` (JSON batches and SSE)
``events``             the event store's routes
``locks``              ``/v1/locks/{name}`` and the fence of fenced writes
``machines``           ``/v1/machines/...``: definitions, instances, fire, history
``admin``              stats, check, sweep, tokens, audit verification
``control``            TEST-ONLY: per-test stores and clock (``CLAWSTATE_TEST_CONTROL=1``)
``notify``             the one SSE writer; streams' shared reads of a log
``problems``           RFC 9457 problem answers
``auth`` / ``audit``   tokens and scopes / the audit log
``metrics`` ``logs``   Prometheus metrics / JSON logs
=====================  =================================================================

Reads of one item may run on the event loop itself (``inline_reads``, on by default for
SQLite and memory stores): a point read in WAL mode never waits for a writer and costs
less than the thread hand-off it saves (measured in ``bench/server_http.py``).
Everything else — every write, scans, queries — runs on the pool.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import msgspec
from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, Schema

from .. import __version__
from ..store import Store
from .admin import ADMIN_ROUTES
from .changes import CHANGE_ROUTES
from .control import CONTROL_ROUTES, TEST_CONTROL_ENV
from .edge import Edge
from .events import EVENT_ROUTES
from .guard import authorize
from .items import ITEM_ROUTES
from .locks import LOCK_ROUTES
from .machines import MACHINE_ROUTES
from .openapi import openapi_json
from .ops import OPS_ROUTES
from .problems import exception_handler
from .settings import ServerSettings
from .state import ServerState
from .timers import TIMER_ROUTES
from .transactions import TX_ROUTES

__all__ = ["ROUTES", "TEST_CONTROL_ENV", "ServerSettings", "ServerState", "create_app"]

log = logging.getLogger("clawstate.server")

#: Every production route, in the order the OpenAPI document lists them.
ROUTES: list[Any] = [
    *OPS_ROUTES,
    openapi_json,
    *ITEM_ROUTES,
    *TX_ROUTES,
    *CHANGE_ROUTES,
    *ADMIN_ROUTES,
    *EVENT_ROUTES,
    *LOCK_ROUTES,
    *MACHINE_ROUTES,
    *TIMER_ROUTES,
]


def create_app(store: Store, settings: ServerSettings | None = None) -> Edge:
    """The ASGI application serving ``store``.  The caller owns and closes the store."""
    settings = settings or ServerSettings()
    if os.environ.get(TEST_CONTROL_ENV) == "1":
        settings = msgspec.structs.replace(settings, test_control=True)
    st = ServerState(store, settings)
    routes = list(ROUTES)
    if settings.test_control:
        log.warning(
            "TEST CONTROL IS ON (%s=1): /_test/stores creates stores on request and any "
            "authenticated request may set the server's clock (Clawstate-Test-Clock). "
            "This is for test suites only: never run a real server like this.",
            TEST_CONTROL_ENV,
        )
        routes += CONTROL_ROUTES
    app = Litestar(
        route_handlers=routes,
        before_request=authorize,
        exception_handlers={Exception: exception_handler},
        on_startup=[st.startup],
        on_shutdown=[st.shutdown],
        state=State({"cs": st}),
        # Every body is read through http.read_body, which applies the route's own limit
        # (and names it in the 413); Litestar's global cap would answer first, vaguer.
        request_max_body_size=None,
        openapi_config=OpenAPIConfig(
            title="clawstate",
            version=__version__,
            description="clawstate's HTTP API: every store operation of DESIGN.md. Errors are "
            "RFC 9457 problem+json whose title is the error class name.",
            path="/schema",
            render_plugins=[],
            components=Components(schemas={"Any": Schema()}),
        ),
        debug=False,
        logging_config=None,
    )
    from .tracing import instrument

    traced = instrument(app, force=settings.tracing)
    # The edge answers the item GET itself only when nothing wraps Litestar: a tracing
    # middleware must see every request.
    return Edge(traced, st, fast_reads=traced is app)
