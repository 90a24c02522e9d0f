"""TEST-ONLY control: per-test stores and a per-request clock (``CLAWSTATE_TEST_CONTROL=1``).

A conformance suite over HTTP needs what it has in-process: a fresh store per test and
a clock it sets.  ``POST /_test/stores`` opens a store in the server's own directory
(its id travels in ``Clawstate-Test-Store``), and ``Clawstate-Test-Clock`` sets the
clock those stores read for one request.  None of it exists unless the environment
variable turns it on, and the server says so loudly at start (see ``app.create_app``).
"""

from __future__ import annotations

import contextvars
import os
import re
import time
from typing import Any

import msgspec
from litestar import Request, delete, post
from litestar.types import ASGIApp

from ..aio import AsyncStore
from ..errors import ConfigError, InvalidRequest
from .http import Conn, decode, header, reply, state_of
from .problems import HTTPProblem
from .state import ServerState

__all__ = [
    "CONTROL_ROUTES",
    "TEST_CLOCK_HEADER",
    "TEST_CONTROL_ENV",
    "TEST_STORE_HEADER",
    "apply_test_headers",
    "check_test_store_options",
    "test_clock",
    "test_now",
]

#: Environment variable that turns on the TEST-ONLY control routes (``/_test/*``) and
#: the per-request test clock.  Never set it outside a test harness.
TEST_CONTROL_ENV = "CLAWSTATE_TEST_CONTROL"
TEST_STORE_HEADER = "clawstate-test-store"
TEST_CLOCK_HEADER = "clawstate-test-clock"

#: This request's clock reading (``Clawstate-Test-Clock``); None: the real time.
test_now: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "clawstate_test_now", default=None
)


def test_clock() -> float:
    """The clock every test store reads: the request's test clock, else the time."""
    now = test_now.get()
    return time.time() if now is None else now


def apply_test_headers(st: ServerState, conn: Conn) -> AsyncStore:
    """Pick the per-test store and set this request's clock (called by the guard once
    the caller is authenticated, on a test-control server only)."""
    now = header(conn, TEST_CLOCK_HEADER)
    if now is not None:
        try:
            test_now.set(float(now))
        except ValueError:
            raise InvalidRequest("clock", "the test clock header is not a number") from None
    sid = header(conn, TEST_STORE_HEADER)
    if sid is None:
        return st.astore
    store = st.test_stores.get(sid)
    if store is None:
        raise InvalidRequest("test_store", f"no test store {sid!r}")
    return store


class TestStoreCreated(msgspec.Struct):
    id: str


#: What a test may declare for its store: the settings a ``clawstate.toml`` gives a
#: store, minus every one that names a place (``url``, ``keyring``, ``backends``,
#: ``config``): a test store lives in the server's own directory, nowhere else.
TEST_STORE_OPTIONS = frozenset(
    {
        "namespaces",
        "limits",
        "idempotency_window",
        "sweep_interval",
        "changelog_retention",
        "durability",
    }
)
#: Namespace options whose value the server would connect to.
_TEST_STORE_URL_POLICY = frozenset({"cache_l2"})
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def check_test_store_options(options: Any) -> dict[str, Any]:
    """Refuse whatever in a ``POST /_test/stores`` body could make the server open a URL
    or a path the request chose; the rest is validated by ``clawstate.open`` exactly as
    a ``clawstate.toml`` would be (ConfigError naming the field)."""
    if not isinstance(options, dict):
        raise InvalidRequest("options", "must be an object")
    for name in options:
        if name not in TEST_STORE_OPTIONS:
            allowed = ", ".join(sorted(TEST_STORE_OPTIONS))
            raise InvalidRequest(
                f"options.{name}",
                f"not accepted for a test store (allowed: {allowed}); "
                "a test store is always a fresh SQLite file in the server's own directory, "
                "with its own keyring beside it",
            )
    namespaces = options.get("namespaces")
    if isinstance(namespaces, dict):
        for ns, policy in namespaces.items():
            if not isinstance(policy, dict):
                continue  # clawstate.open names the field
            for option in policy:
                if option in _TEST_STORE_URL_POLICY:
                    raise InvalidRequest(
                        f"options.namespaces.{ns}.{option}",
                        "a URL-valued option is not accepted for a test store",
                    )

    todo: list[tuple[Any, str]] = [(options, "options")]  # iterative: bodies nest deep
    while todo:
        value, where = todo.pop()
        if isinstance(value, str) and _URL_LIKE.match(value):
            raise InvalidRequest(where, "a URL-like value is not accepted for a test store")
        if isinstance(value, dict):
            todo.extend((v, f"{where}.{k}") for k, v in value.items())
        elif isinstance(value, list):
            todo.extend((v, f"{where}[{i}]") for i, v in enumerate(value))
    return options


@post("/_test/stores", opt={"auth": "admin"}, status_code=201, include_in_schema=False)
async def test_create_store(request: Request[Any, Any, Any]) -> ASGIApp:
    """A fresh, empty store for one conformance test; its id goes in the
    ``Clawstate-Test-Store`` header.  The body declares the test's settings (namespace
    policies, limits…: see :data:`TEST_STORE_OPTIONS`); where the store and its keyring
    live is the server's choice alone."""
    from .._open import open_local as open_store

    st = state_of(request)
    options = check_test_store_options(await decode(request, 1 << 20, "options"))
    sid = f"t{next(st.test_ids)}"
    root = st.test_root()
    base = os.path.join(root, f"test-store-{os.getpid()}-{sid}")
    url = f"sqlite:///{base}.db"
    keyring = f"file:{base}.keys.json"
    try:
        store = await st.run(lambda: open_store(url, clock=test_clock, keyring=keyring, **options))
    except ConfigError as exc:  # the request's settings, checked as a clawstate.toml is
        raise HTTPProblem(exc, 400) from None
    # Requests may carry different clocks: puts share a commit only with puts of the
    # same clock reading, and the shared commit runs under that reading.
    st.test_stores[sid] = AsyncStore(
        store,
        max_workers=st.settings.threads,
        batch_key=test_now.get,
        on_shared_commit=st.metrics.shared_commit,
    )
    return reply(request, TestStoreCreated(sid), 201)


@delete("/_test/stores/{sid:str}", opt={"auth": "admin"}, status_code=200, include_in_schema=False)
async def test_close_store(request: Request[Any, Any, Any], sid: str) -> ASGIApp:
    st = state_of(request)
    store = st.test_stores.pop(sid, None)
    if store is not None:
        await store.close()
    return reply(request, {"closed": store is not None})


CONTROL_ROUTES: list[Any] = [test_create_store, test_close_store]
