"""The ASGI application: HTTP routes over the store, and nothing more.

DESIGN.md: "Server is a thin ASGI layer over AsyncStore: no logic lives only in the
server."  Every route below parses the request, checks the token's scope, calls ONE
facade method (``Namespace.get/put/delete/scan/query/put_many/get_many``,
``Store.transaction/watch/stats/check/sweep``) on AsyncStore's thread pool, and
encodes what it returns.  Validation, limits, TTLs, idempotency, version checks and
cursors are the facade's, so the store answers the same over HTTP as in-process, and
the conformance suite proves it (``tests/test_server_conformance.py``).

What the server adds is only what HTTP needs:

* transport: JSON or msgpack by content negotiation (``_wire``), ETag / If-Match /
  If-None-Match on items, Idempotency-Key, server-sent events for watches, RFC 9457
  problems (``problems``), request limits checked before a body is buffered;
* security: bearer tokens and scopes checked by one guard on every route, deny by
  default — a route without an ``auth`` requirement answers 403 (``auth``), a per-token
  rate limit, and the audit log of admin actions and denials (``audit``);
* operations: ``/healthz``, ``/readyz``, ``/metrics`` (``metrics``), JSON logs with
  request ids (``logs``), ``/openapi.json``.

Reads of one item may run on the event loop itself (``inline_reads``, on by default for
SQLite and memory stores): a point read in WAL mode never waits for a writer and costs
less than the thread hand-off it saves (measured in ``bench/server_http.py``).
Everything else — every write, scans, queries — runs on the pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Litestar, Request, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import InternalServerException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, Schema
from litestar.params import Parameter
from litestar.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from .._validate import INT64_MAX, check_key, is_integer_text, parse_int
from .._wire import (
    IDEMPOTENCY_KEY,
    JSON,
    MSGPACK,
    MSGPACK_TYPES,
    NAMESPACE_OPTIONS,
    PROBLEM_JSON,
    SSE,
    BatchGet,
    BatchPut,
    ChangeBatch,
    ItemMeta,
    ItemsByKey,
    ItemsMeta,
    NotFound,
    Problem,
    TxResult,
    TxWrites,
    decode_body,
    format_etag,
    meta_of,
    parse_etag,
    unquote_key,
)
from ..aio import AsyncStore
from ..config import Limits
from ..errors import (
    BackendUnavailable,
    ClawStateError,
    ConfigError,
    Forbidden,
    InvalidRequest,
    Unauthorized,
    VersionConflict,
)
from ..store import Namespace, Store, TxNamespace, Watch
from ..types import Change, CheckReport, Item, Page
from .audit import AuditLog
from .auth import Principal, TokenStore
from .logs import request_id_var
from .metrics import Metrics
from .problems import (
    HTTPProblem,
    RateLimited,
    TooLarge,
    exception_handler,
)

__all__ = ["ServerSettings", "ServerState", "create_app"]

log = logging.getLogger("clawstate.server")
access_log = logging.getLogger("clawstate.server.access")

T = TypeVar("T")

_json_encode = msgspec.json.Encoder().encode
_msgpack_encode = msgspec.msgpack.Encoder().encode

#: Environment variable that turns on the TEST-ONLY control routes (``/_test/*``) and
#: the per-request test clock.  Never set it outside a test harness.
TEST_CONTROL_ENV = "CLAWSTATE_TEST_CONTROL"
TEST_STORE_HEADER = "clawstate-test-store"
TEST_CLOCK_HEADER = "clawstate-test-clock"


class ServerSettings(msgspec.Struct, kw_only=True):
    """How this server process behaves; ``clawstate serve`` options map onto these."""

    #: the largest request body read at all (413 before buffering beyond it)
    max_body_bytes: int = 32 * 1024 * 1024
    #: requests per second per token in this process (None: unlimited); tokens may
    #: carry their own rate
    rate_limit: float | None = 1000.0
    #: bucket size: how many requests a token may burst (default 2 × rate)
    rate_burst: float | None = None
    #: failed authentications per second per client address before 429
    auth_failure_rate: float = 100.0
    #: seconds over which failed authentications are counted per client address and
    #: written as ONE audit record (an unauthenticated flood costs bounded records)
    audit_interval: float = 60.0
    #: seconds between runs of the audit retention ([audit] keep_days / keep_records)
    audit_prune_interval: float = 3600.0
    #: seconds between SSE keep-alive comments (the client may ask for less)
    heartbeat: float = 15.0
    #: serve /metrics without a token (for a Prometheus that cannot send one)
    public_metrics: bool = False
    #: point reads on the event loop (None: yes for sqlite and memory backends)
    inline_reads: bool | None = None
    #: seconds a verified token stays cached (revocations elsewhere take this long)
    token_cache_ttl: float = 2.0
    #: threads of the AsyncStore pool (in-flight store calls)
    threads: int = 32
    #: log one JSON line per request (off by default: it costs ~10 µs a request)
    access_log: bool = False
    #: OpenTelemetry spans even without OTEL_* variables (needs the otel extra)
    tracing: bool = False
    #: TEST ONLY: /_test routes and the test clock (set by CLAWSTATE_TEST_CONTROL=1)
    test_control: bool = False


# -- per-request test clock (TEST-ONLY) ------------------------------------------------

_test_now: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "clawstate_test_now", default=None
)


def _test_clock() -> float:
    now = _test_now.get()
    return time.time() if now is None else now


# -- the change notifier: one thread per backend wakes every SSE stream -----------------


class ChangeNotifier:
    """Waits on a backend's change log in ONE thread for all of this process's watches.

    A blocking ``Watch`` per SSE stream would hold a pool thread per open stream; here
    streams read with non-blocking polls on the pool and park on an asyncio future,
    and this thread calls ``backend.wait_for_change`` (which sees other processes'
    commits too) only while somebody is parked.
    """

    def __init__(self, backend: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._backend = backend
        self._loop = loop
        self._waiters: set[asyncio.Future[None]] = set()
        self._seen = 0
        self._wanted = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="clawstate-notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            if not self._waiters:
                self._wanted.wait(1.0)
                self._wanted.clear()
                continue
            try:
                changed = self._backend.wait_for_change(self._seen, 0.5)
                if changed:
                    self._seen = self._backend.last_seq()
            except ClawStateError:
                changed = False
                time.sleep(0.5)
            if changed and not self._stop:
                try:
                    self._loop.call_soon_threadsafe(self._wake)
                except RuntimeError:  # the loop closed under us
                    return

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait(self, after_seq: int, timeout: float) -> None:
        """Return when a change after ``after_seq`` may exist, or after ``timeout``."""
        if self._seen > after_seq:
            self._seen = after_seq  # make the thread look again from here
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.add(fut)
        self._wanted.set()
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)

    def wake_all(self) -> None:
        self._wake()

    def close(self) -> None:
        self._stop = True
        self._wanted.set()


class _EventLogWaiter:
    """An event log seen as a change log, so one :class:`ChangeNotifier` serves it."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def wait_for_change(self, after: int, timeout: float) -> bool:
        return bool(self._log.wait_for_events(after, timeout))

    def last_seq(self) -> int:
        return int(self._log.last_position())


# -- state -----------------------------------------------------------------------------


class _Bucket:
    __slots__ = ("last", "tokens")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens
        self.last = last


class RateLimiter:
    """Token buckets by key (token id, or client address for failed logins)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, rate: float, burst: float) -> float:
        """0.0 when allowed, else seconds until one request would be."""
        now = time.monotonic()
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            b = self._buckets[key] = _Bucket(burst, now)
        else:
            b.tokens = min(burst, b.tokens + (now - b.last) * rate)
            b.last = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / rate


class _Batcher:
    """Server-side group commit: the writes that arrive during one event-loop iteration
    reach the store's thread pool as ONE job.

    Why: with the event loop holding the GIL most of the time, requests handed to the
    pool one by one seldom meet in the backend's group committer (measured mean batch
    1.2 at 64 connections), so each paid a thread hand-off and a commit of its own.
    Here plain puts (no condition, no idempotency key) of one backend are written
    through ONE facade transaction — exactly what the backend's group commit does with
    concurrent writers, with each caller still getting its own Item, and a bad value
    refused for its own request only (``TxNamespace.put`` checks it before it joins).
    Conditional and idempotent writes run one by one on that thread, each in its
    caller's context.  If a shared commit fails as a whole (the backend broke), every
    write of it is retried alone, so each caller sees its own outcome.

    A test-control server batches exactly the same way (so the HTTP conformance suites
    run this path); only there can requests carry different clocks, and plain puts share
    a commit only with puts of the same clock reading (see :func:`_apply_batch`).
    ``metrics`` counts the shared commits, so a test can see that they happened.
    """

    def __init__(self, run: Any, metrics: Metrics) -> None:
        self._run = run
        self._metrics = metrics
        self._queue: list[_Pending] = []
        self._scheduled = False

    def put(
        self,
        ns: Namespace,
        key: str,
        value: Any,
        *,
        ttl: Any,
        if_version: Any,
        if_absent: bool,
        idempotency_key: Any,
        keep_ttl: bool = False,
    ) -> asyncio.Future[Item]:
        plain = if_version is None and not if_absent and idempotency_key is None and not keep_ttl
        kwargs = {
            "ttl": ttl,
            "if_version": if_version,
            "if_absent": if_absent,
            "idempotency_key": idempotency_key,
        }
        if keep_ttl:
            kwargs["keep_ttl"] = True
        return self._add(_Pending(ns.put, (key, value), kwargs, ns if plain else None))

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        return self._add(_Pending(fn, args, kwargs, None))

    def _add(self, pending: _Pending) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        pending.fut = loop.create_future()
        self._queue.append(pending)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return pending.fut

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        asyncio.get_running_loop().create_task(self._run_batch(batch))

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            await self._run(_apply_batch, batch, self._metrics)
        except BaseException as exc:  # the pool itself failed: fail every caller
            for p in batch:
                if p.outcome is None:
                    p.outcome = (False, exc)
        for p in batch:
            fut = p.fut
            if fut is None or fut.done():
                continue
            assert p.outcome is not None
            ok, value = p.outcome
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)


class _Pending:
    __slots__ = ("args", "context", "fn", "fut", "kwargs", "ns", "outcome")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ns: Namespace | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.ns = ns  # set for a plain put that may share a commit
        self.context = contextvars.copy_context()
        self.fut: asyncio.Future[Any] | None = None
        self.outcome: tuple[bool, Any] | None = None


def _apply_batch(batch: list[_Pending], metrics: Metrics) -> None:
    """On a pool thread: plain puts in shared transactions, the rest one by one.

    Puts share a commit per backend and per test-clock reading: the reading is ``None``
    on every production server (one group per backend); on a test-control server it is
    the request's ``Clawstate-Test-Clock``, set for the shared commit so that each put
    gets exactly the timestamps it would get alone."""
    groups: dict[tuple[int, float | None], list[_Pending]] = {}
    for p in batch:
        if p.ns is not None:
            key = (id(p.ns._backend), p.context.get(_test_now))
            groups.setdefault(key, []).append(p)
        else:
            _apply_one(p)
    for (_, now), pending in groups.items():
        limit = pending[0].ns._store.config.limits.max_batch  # type: ignore[union-attr]
        token = _test_now.set(now)
        try:
            for i in range(0, len(pending), limit):
                _apply_shared(pending[i : i + limit], metrics)
        finally:
            _test_now.reset(token)


def _apply_one(p: _Pending) -> None:
    try:
        p.outcome = (True, p.context.run(p.fn, *p.args, **p.kwargs))
    except Exception as exc:
        p.outcome = (False, exc)


def _apply_shared(pending: list[_Pending], metrics: Metrics) -> None:
    if len(pending) == 1:
        _apply_one(pending[0])
        return
    ns0 = pending[0].ns
    assert ns0 is not None
    tx = ns0._store.transaction()
    joined: list[_Pending] = []
    for p in pending:
        assert p.ns is not None
        key, value = p.args
        try:
            TxNamespace(tx, p.ns).put(key, value, ttl=p.kwargs["ttl"])
        except Exception as exc:  # this request's own bad input: refused alone
            p.outcome = (False, exc)
            continue
        joined.append(p)
    if not joined:
        return
    try:
        results = tx.commit()
    except Exception:
        metrics.shared_commits.labels("retried_alone").inc()
        for p in joined:  # the shared commit failed as a whole: each on its own
            _apply_one(p)
        return
    metrics.shared_commits.labels("committed").inc()
    metrics.shared_writes.inc(len(joined))
    for p, item in zip(joined, results, strict=True):
        p.outcome = (True, item)


class ServerState:
    """Everything the routes share.  One per process (per worker)."""

    def __init__(self, store: Store, settings: ServerSettings) -> None:
        self.store = store
        self.settings = settings
        self.astore = AsyncStore(store, max_workers=settings.threads)
        self.run = self.astore._run
        self.metrics = Metrics()
        self.batch = _Batcher(self.run, self.metrics)
        self.tokens = TokenStore(store, cache_ttl=settings.token_cache_ttl)
        self.audit = AuditLog(store, failure_interval=settings.audit_interval)
        self.limiter = RateLimiter()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False
        self._notifiers: dict[int, ChangeNotifier] = {}
        self._event_logs: dict[int, _EventLogWaiter] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.test_stores: dict[str, Store] = {}
        self._test_ids = itertools.count(1)
        self._test_root: str | None = None
        inline = settings.inline_reads
        if inline is None:
            inline = all(b.name in ("sqlite", "memory") for b in store.backends.values())
        self.inline_reads = inline

    def test_root(self) -> str:
        """TEST-ONLY: the directory test stores live in — ``CLAWSTATE_TEST_STORE_DIR``
        (ServerProcess sets it to its own temp dir), else a temp dir of this process."""
        if self._test_root is None:
            self._test_root = os.environ.get("CLAWSTATE_TEST_STORE_DIR") or tempfile.mkdtemp(
                prefix="clawstate-test-stores-"
            )
        return self._test_root

    def notifier(self, backend: Any) -> ChangeNotifier:
        n = self._notifiers.get(id(backend))
        if n is None:
            assert self.loop is not None
            n = self._notifiers[id(backend)] = ChangeNotifier(backend, self.loop)
        return n

    def event_notifier(self, log: Any) -> ChangeNotifier:
        """The shared notifier of an event log (its positions play the seqs' part)."""
        adapter = self._event_logs.get(id(log))
        if adapter is None:
            adapter = self._event_logs[id(log)] = _EventLogWaiter(log)
        return self.notifier(adapter)

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        # Seal an old unkeyed audit chain and learn the head now: a chain sealed under a
        # key the keyring lacks stops the server here (ConfigError naming the key id),
        # not at the first admin action.
        await self.run(self._audit_startup)
        self.audit.start()
        self._tasks.append(self.loop.create_task(self._sync_metrics()))
        if self._audit_retention():
            self._tasks.append(self.loop.create_task(self._prune_audit()))

    def _audit_startup(self) -> None:
        from .audit import seal

        seal(self.store)
        n, digest = self.audit.load_head()
        self.metrics.set_audit_head(n, digest)
        self.audit._export(n, digest)

    def _audit_retention(self) -> dict[str, Any]:
        cfg = self.store.config
        keep = {
            "keep_days": getattr(cfg, "audit_keep_days", None),
            "keep_records": getattr(cfg, "audit_keep_records", None),
        }
        return {k: v for k, v in keep.items() if v is not None}

    async def _prune_audit(self) -> None:
        from .audit import prune

        while True:
            try:
                report = await self.run(prune, self.store, **self._audit_retention())
                if report.pruned:
                    log.info(
                        "audit pruned",
                        extra={"pruned": report.pruned, "audit_checkpoint": report.checkpoint},
                    )
            except ClawStateError as exc:
                log.error("audit prune failed: %s", exc)
            await asyncio.sleep(self.settings.audit_prune_interval)

    def _metric_namespaces(self) -> list[str]:
        return [*self.store.namespaces(), *self.store.config.namespaces]

    async def _sync_metrics(self) -> None:
        while True:
            self.metrics.sync_commits(self.store.backends)
            try:
                await self.run(self.metrics.refresh_namespaces, self._metric_namespaces)
            except ClawStateError:
                pass  # keep the last known set; the next round retries
            await asyncio.sleep(5.0)

    def begin_shutdown(self) -> None:
        """Called from the signal handler: end SSE streams so the drain can finish."""
        self.stopping = True
        if self.loop is not None:
            for n in list(self._notifiers.values()):
                self.loop.call_soon_threadsafe(n.wake_all)

    async def shutdown(self) -> None:
        self.stopping = True
        await self.audit.close()
        for task in self._tasks:
            task.cancel()
        for n in self._notifiers.values():
            n.close()
        for s in self.test_stores.values():
            s.close()
        self.test_stores.clear()
        self._notifiers.clear()


class Ctx:
    """What the guard resolved for one request: who, and against which store."""

    __slots__ = ("principal", "store")

    def __init__(self, principal: Principal | None, store: Store) -> None:
        self.principal = principal
        self.store = store


def _state(conn: ASGIConnection[Any, Any, Any, Any]) -> ServerState:
    st: ServerState = conn.scope["cs_st"]  # type: ignore[typeddict-item]  # set by Edge
    return st


#: The request headers the server reads; Edge copies them out of the ASGI scope once,
#: so no route pays for Litestar's Headers object.
_WANTED = frozenset(
    {
        b"authorization",
        b"accept",
        b"content-type",
        b"content-length",
        b"if-match",
        b"if-none-match",
        b"idempotency-key",
        b"last-event-id",
        b"x-request-id",
        NAMESPACE_OPTIONS.encode(),
        TEST_STORE_HEADER.encode(),
        TEST_CLOCK_HEADER.encode(),
    }
)


def _hdr(conn: ASGIConnection[Any, Any, Any, Any], name: str) -> str | None:
    found: dict[str, str] = conn.scope["cs_h"]  # type: ignore[typeddict-item]
    return found.get(name)


def _ctx(request: Request[Any, Any, Any]) -> Ctx:
    ctx: Ctx = request.scope["cs_ctx"]  # type: ignore[typeddict-item]
    return ctx


# -- the guard: authentication, rate limit, scope; deny by default ---------------------


def _client_addr(conn: ASGIConnection[Any, Any, Any, Any]) -> str:
    client = conn.scope.get("client")
    return str(client[0]) if client else "?"


async def authorize(conn: Request[Any, Any, Any]) -> None:
    """Litestar ``before_request`` hook for every route (a hook, not a guard: Litestar
    copies the handler object for each guard call, ~10 µs a request)."""
    st = _state(conn)
    need = conn.scope["route_handler"].opt.get("auth")
    if need == "public" or (need == "metrics" and st.settings.public_metrics):
        # no token, so no test header is read either: these routes use the server's store
        conn.scope["cs_ctx"] = Ctx(None, st.store)  # type: ignore[typeddict-unknown-key]
        return
    header = _hdr(conn, "authorization")
    result = st.tokens.verify_cached(header)
    if result is None:
        result = await st.run(st.tokens.verify, header)
    if not isinstance(result, Principal):
        st.metrics.denied.labels("401").inc()
        remote = _client_addr(conn)
        # Counted, not written one by one: one audit record per address per interval.
        st.audit.note_failure(remote, str(result))
        wait = st.limiter.take(
            "addr:" + remote,
            st.settings.auth_failure_rate,
            2 * st.settings.auth_failure_rate,
        )
        if wait:
            raise RateLimited(wait)
        raise Unauthorized("a valid bearer token is required")
    principal = result
    # Only now, with the caller authenticated, is any test header looked at: before
    # this, a guess at a test store's id or a bad clock answered differently from 401.
    store = st.store
    if st.settings.test_control:
        store = _apply_test_headers(st, conn)
    elif _hdr(conn, TEST_CLOCK_HEADER) is not None or _hdr(conn, TEST_STORE_HEADER) is not None:
        raise InvalidRequest(
            "clock",
            "this server takes no client clock or test store (a test-only feature); "
            "open the store without clock=",
        )
    if _hdr(conn, NAMESPACE_OPTIONS) is not None:
        # Namespace policy is the operator's (DESIGN.md, "Where policy lives"): this
        # header once reached store.namespace(name, **options), so any token could turn
        # encryption off, point cache_l2 at any host or switch write-back on.  Refused,
        # not ignored, so a client that still sends it learns why nothing changes.
        raise InvalidRequest(
            NAMESPACE_OPTIONS,
            "namespace policy is set in the server's configuration (the "
            "[namespaces.<name>] tables of its clawstate.toml), never by a request; "
            "remove this header",
        )
    rate = principal.rate or st.settings.rate_limit
    if rate:
        burst = st.settings.rate_burst or 2 * rate
        wait = st.limiter.take(principal.id, rate, burst)
        if wait:
            st.metrics.denied.labels("429").inc()
            raise RateLimited(wait)
    allowed = _allowed(principal, need, conn)
    if not allowed:
        st.metrics.denied.labels("403").inc()
        await _audit_denial(st, conn, 403, "scope", principal)
        raise Forbidden("this token's scopes do not allow this request")
    conn.scope["cs_ctx"] = Ctx(principal, store)  # type: ignore[typeddict-unknown-key]


def _allowed(principal: Principal, need: Any, conn: ASGIConnection[Any, Any, Any, Any]) -> bool:
    if need == "token":
        return True
    if need == "admin":
        return principal.admin
    if need == "metrics":
        return principal.has("metrics")
    if isinstance(need, tuple) and len(need) == 2:
        kind, action = need
        param = "namespace" if kind == "ns" else "stream"
        name = conn.path_params.get(param)
        if kind == "events" and isinstance(name, str):
            name = unquote_key(name)  # streams travel percent-encoded, like keys
        if not isinstance(name, str) or name.startswith("_"):
            return principal.admin
        return principal.allows(kind, name, action)
    return False  # a route that declares nothing is closed


async def _audit_denial(
    st: ServerState,
    conn: ASGIConnection[Any, Any, Any, Any],
    status: int,
    reason: str,
    principal: Principal | None,
) -> None:
    route = conn.scope.get("path_template") or "?"
    entry: dict[str, Any] = {
        "action": "denied",
        "status": status,
        "reason": reason,
        "actor": None if principal is None else principal.id,
        "method": conn.scope.get("method", "?"),
        "route": route,
        "request_id": request_id_var.get(),
        "remote": _client_addr(conn),
    }
    ns = conn.path_params.get("namespace")
    if isinstance(ns, str):
        entry["namespace"] = ns[:200]
    await st.audit.record(entry)
    log.info("denied", extra={"status": status, "route": route, "reason": reason})


async def _audit_admin(request: Request[Any, Any, Any], action: str, **detail: Any) -> None:
    ctx = _ctx(request)
    entry: dict[str, Any] = {
        "action": action,
        "status": 200,
        "actor": None if ctx.principal is None else ctx.principal.id,
        "method": request.method,
        "route": request.scope.get("path_template") or "?",
        "request_id": request_id_var.get(),
        "remote": _client_addr(request),
    }
    if detail:
        entry["detail"] = detail
    await _state(request).audit.record(entry, wait=True)


def _apply_test_headers(st: ServerState, conn: ASGIConnection[Any, Any, Any, Any]) -> Store:
    """TEST-ONLY: pick the per-test store and set this request's clock."""
    now = _hdr(conn, TEST_CLOCK_HEADER)
    if now is not None:
        try:
            _test_now.set(float(now))
        except ValueError:
            raise InvalidRequest("clock", "the test clock header is not a number") from None
    sid = _hdr(conn, TEST_STORE_HEADER)
    if sid is None:
        return st.store
    store = st.test_stores.get(sid)
    if store is None:
        raise InvalidRequest("test_store", f"no test store {sid!r}")
    return store


# -- helpers -----------------------------------------------------------------------------


_CTYPES = {t: (b"content-type", t.encode("latin-1")) for t in (JSON, MSGPACK, PROBLEM_JSON)}


class Raw:
    """A finished response sent as two ASGI messages.

    Handlers return these instead of Litestar ``Response`` objects: Litestar hands an
    ASGI callable through untouched, skipping its per-response header and cookie
    machinery (measured: ~15 µs a request here).  The OpenAPI document still declares
    every status and body (``responses=`` on each route)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: bytes,
        status: int = 200,
        media_type: str | None = JSON,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.body = body
        self.status = status
        h: list[tuple[bytes, bytes]] = []
        if media_type is not None:
            ctype = _CTYPES.get(media_type)
            if ctype is None:
                ctype = (b"content-type", media_type.encode("latin-1"))
            h.append(ctype)
            h.append((b"content-length", b"%d" % len(body)))
        if headers:
            h.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
        self.headers = h

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


class RawStream:
    """A streamed response (server-sent events): headers, then each chunk the
    generator yields, until it ends or the client goes away."""

    __slots__ = ("chunks", "headers")

    def __init__(self, chunks: AsyncIterator[bytes], media_type: str, headers: dict[str, str]):
        self.chunks = chunks
        self.headers = [(b"content-type", media_type.encode("latin-1"))] + [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})

        async def pump() -> None:
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        streaming = asyncio.ensure_future(pump())
        watcher = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({streaming, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watcher):
                task.cancel()
            for task in (streaming, watcher):
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        if not watcher.done() or watcher.cancelled():
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _reply(
    request: Request[Any, Any, Any],
    obj: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Raw:
    accept = _hdr(request, "accept")
    if accept is not None and "msgpack" in accept:
        return Raw(_msgpack_encode(obj), status, MSGPACK, headers)
    return Raw(_json_encode(obj), status, JSON, headers)


def _content_type(request: Request[Any, Any, Any]) -> str:
    raw = _hdr(request, "content-type")
    if not raw:
        return JSON
    ctype = raw.split(";", 1)[0].strip().lower()
    if ctype in MSGPACK_TYPES:
        return ctype
    if ctype == JSON or ctype.endswith("+json"):
        return JSON
    raise HTTPProblem(
        InvalidRequest("content-type", f"must be {JSON} or {MSGPACK}, got {ctype!r}"), 415
    )


async def _read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` — by its
    Content-Length before reading anything, or while streaming a chunked body."""
    declared = _hdr(request, "content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequest("content-length", "is not an integer") from None
        if size > limit:
            raise TooLarge("body", size, limit)
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise TooLarge("body", None, limit)
            chunks.append(chunk)
    except InternalServerException:
        if request.scope.get("cs_gone"):  # set by Edge when http.disconnect arrived
            raise ClientDisconnected("the client went away before sending the whole body") from None
        raise
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


#: The status a request is counted under when its client disconnected before the
#: answer (nginx's convention): the client's doing, not a server error.
CLIENT_CLOSED = 499


class ClientDisconnected(ClawStateError):
    """The client closed the connection mid-request (e.g. mid-body).  Counted and
    logged as status 499, never as a 500: nothing on the server failed."""

    http_status = CLIENT_CLOSED


async def _decode(request: Request[Any, Any, Any], limit: int, field: str) -> Any:
    ctype = _content_type(request)
    data = await _read_body(request, limit)
    if not data:
        raise InvalidRequest(field, "the request body is empty")
    return decode_body(data, ctype, field)


def _limits(store: Store) -> Limits:
    return store.config.limits


def _value_limit(st: ServerState, store: Store) -> int:
    # Transport size is not stored size (JSON escapes, base64): allow headroom here and
    # let the codec enforce max_value_bytes exactly on the encoded value.
    return min(st.settings.max_body_bytes, 4 * _limits(store).max_value_bytes + 65536)


def _batch_limit(st: ServerState, store: Store) -> int:
    lim = _limits(store)
    return min(st.settings.max_body_bytes, lim.max_batch * (4 * lim.max_value_bytes + 2048))


def _namespace(request: Request[Any, Any, Any], store: Store, name: str) -> Namespace:
    """The namespace under the operator's policy: nothing in a request changes it
    (a request carrying the old options header was refused in :func:`authorize`)."""
    return store.namespace(name)


def _strict_ints(request: Request[Any, Any, Any], *names: str) -> None:
    """Litestar reads an ``int`` query parameter leniently (``"1e3"`` is 1000); the
    store's rule is digits only (:func:`clawstate._validate.is_integer_text`), the same
    for a query parameter, a header and a CLI argument.  Handlers call this only when
    such a parameter was sent, so the common request pays nothing."""
    params = request.query_params
    for name in names:
        text = params.get(name)
        if text is not None and not is_integer_text(text):
            raise InvalidRequest(name, f"must be an integer (digits only), got {text[:40]!r}")


def _key(key: str, store: Store) -> str:
    k = unquote_key(key)
    check_key(k, _limits(store).max_key_bytes)  # before any body is read
    return k


async def _read(st: ServerState, fn: Callable[..., T], *args: Any) -> T:
    if st.inline_reads:
        return fn(*args)
    return await st.run(fn, *args)


def _not_found() -> HTTPProblem:
    return HTTPProblem(NotFound("no live item at this key"), 404)


# -- OpenAPI declarations ------------------------------------------------------------------

_PROBLEM_TEXT = {
    304: "Not modified (If-None-Match matched the current ETag).",
    400: "InvalidRequest: a bad key, value, query, TTL, parameter or body (names the field).",
    401: "Unauthorized: the bearer token is missing, invalid, expired or revoked.",
    403: "Forbidden: the token's scopes do not cover this request.",
    404: "NotFound: no live item at this key.",
    409: "VersionConflict: an if_version / if_absent condition failed; nothing changed.",
    412: "VersionConflict: If-Match / If-None-Match did not hold; nothing changed.",
    413: "InvalidRequest (field body): the body exceeds the limit; it was not read.",
    415: "InvalidRequest (field content-type): send JSON or msgpack.",
    429: "RateLimited: too many requests for this token; see Retry-After.",
    500: "ClawStateError / IntegrityError / ConfigError: the store could not answer.",
    503: "BackendUnavailable: the storage cannot be reached; retrying may help.",
}
_AUTHED = (400, 401, 403, 429, 500, 503)


def _responses(
    ok: Any = None,
    *codes: int,
    ok_status: int = 200,
    ok_text: str = "Success.",
    authed: bool = True,
    ok_media: str = JSON,
    extra_ok: dict[int, Any] | None = None,
) -> dict[int, ResponseSpec]:
    out: dict[int, ResponseSpec] = {}
    if ok is not None:
        out[ok_status] = ResponseSpec(
            data_container=ok, description=ok_text, media_type=ok_media, generate_examples=False
        )
    for status, (container, text) in (extra_ok or {}).items():
        out[status] = ResponseSpec(
            data_container=container, description=text, generate_examples=False
        )
    for code in sorted(set(codes) | (set(_AUTHED) if authed else {400, 500})):
        if code == 304:
            out[code] = ResponseSpec(data_container=None, description=_PROBLEM_TEXT[code])
            continue
        out[code] = ResponseSpec(
            data_container=Problem,
            description=_PROBLEM_TEXT.get(code, "Problem."),
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
    return out


# Path parameters are plain strings to Litestar: the store checks names and keys (and
# names the field), and a per-request regex here measured ~1 µs on the hottest routes.
# Their constraints are documented in the OpenAPI document by _PATH_SCHEMAS instead.
NsParam = str
KeyParam = str
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "namespace": {
        "type": "string",
        "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$",
        "description": "Namespace name: [A-Za-z0-9][A-Za-z0-9_.:-]*, at most 128 characters.",
    },
    "stream": {
        "type": "string",
        "minLength": 1,
        "description": "The stream name, percent-encoded as one path segment (like a key); "
        "at most 1024 UTF-8 bytes once decoded.",
    },
    "key": {
        "type": "string",
        "minLength": 1,
        "description": "The key, percent-encoded as one path segment (encode '/' as %2F "
        "and '.' as %2E); at most 1024 UTF-8 bytes once decoded.",
    },
}
IdemHeader = Annotated[
    str | None,
    Parameter(
        header=IDEMPOTENCY_KEY,
        required=False,
        description="A retried request with the same key and body applies once.",
    ),
]


class Count(msgspec.Struct):
    count: int


class Deleted(msgspec.Struct):
    deleted: bool


class NamespaceList(msgspec.Struct):
    namespaces: list[str]


class PolicyDoc(msgspec.Struct):
    namespace: str
    policy: dict[str, Any]


class Info(msgspec.Struct):
    server: str
    version: str
    limits: dict[str, Any]
    backends: list[str]
    token: str | None
    scopes: list[str]


class Health(msgspec.Struct):
    status: str


class TokenCreate(msgspec.Struct, forbid_unknown_fields=True):
    scopes: list[str]
    ttl: float | str | None = None
    note: str = ""
    rate: float | None = None


class TokenCreated(msgspec.Struct):
    id: str
    token: str
    scopes: list[str]
    expires_at: float | None


class TokenList(msgspec.Struct):
    tokens: list[Any]


class Revoked(msgspec.Struct):
    revoked: bool


class AuditVerify(msgspec.Struct):
    """``audit.AuditReport`` as the OpenAPI document declares it."""

    ok: bool
    records: int
    head: str
    problems: list[str]
    seq: int = 0
    first_bad: int | None = None
    checkpoint: int | None = None
    legacy_records: int = 0
    keyed: bool = False


#: Headers the hottest routes read directly (see get_item), documented here instead.
_HEADERS: dict[str, list[tuple[str, str]]] = {
    "getItem": [
        ("If-None-Match", "An ETag (or *): 304 when it matches the current item."),
    ],
    "putItem": [
        ("If-Match", "ETag(s) (or *) the current item must have; 412 otherwise."),
        ("If-None-Match", "* for create-only; 412 when the key exists."),
        ("Idempotency-Key", "A retried request with the same key and body applies once."),
    ],
}

#: Examples that let generated requests reach the store (schemathesis' examples phase).
_EXAMPLES: dict[tuple[Any, Any], Any] = {
    ("path", "namespace"): "carts",
    ("path", "key"): "u42",
    ("path", "stream"): "orders-1",
    ("query", "limit"): 10,
    ("query", "prefix"): "u",
}

#: Request bodies, patched into the generated document (the handlers read raw bodies so
#: that limits apply before buffering and msgpack works, so Litestar cannot infer them).
_ANY: dict[str, Any] = {
    "description": "Any JSON value: object, array, string, number, boolean or null."
}
_BODIES: dict[str, tuple[dict[str, Any], str]] = {
    "putItem": (
        _ANY,
        "The value to store (JSON, or msgpack with Content-Type application/msgpack).",
    ),
    "queryItems": (
        {
            "type": "object",
            "properties": {
                "filter": {"type": "object"},
                "sort": {"type": "array", "items": {"type": "object"}},
                "page": {"type": "object"},
            },
        },
        "Dapr state-query JSON: filter, sort, page {limit, token}.",
    ),
    "getMany": (
        {
            "type": "object",
            "required": ["keys"],
            "properties": {"keys": {"type": "array", "items": {"type": "string"}}},
        },
        "Keys to read.",
    ),
    "putMany": (
        {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {
                    "type": "array",
                    "items": {"type": "array", "minItems": 2, "maxItems": 2},
                    "description": "[key, value] pairs, written atomically in order.",
                },
                "ttl": {"type": ["number", "null"]},
            },
        },
        "Items to write atomically.",
    ),
    "transaction": (
        {
            "type": "object",
            "required": ["writes"],
            "properties": {
                "writes": {
                    "type": "array",
                    "items": {
                        # A delete takes no value, ttl or if_absent (refused, not ignored).
                        "oneOf": [
                            {
                                "type": "object",
                                "required": ["op", "namespace", "key", "value"],
                                "additionalProperties": False,
                                "properties": {
                                    "op": {"const": "put"},
                                    "namespace": {"type": "string"},
                                    "key": {"type": "string"},
                                    "value": {},
                                    "ttl": {"type": ["number", "null"]},
                                    "if_version": {
                                        "type": ["integer", "null"],
                                        "minimum": 1,
                                        "maximum": INT64_MAX,
                                    },
                                    "if_absent": {"type": "boolean"},
                                    "keep_ttl": {"type": "boolean"},
                                },
                            },
                            {
                                "type": "object",
                                "required": ["op", "namespace", "key"],
                                "additionalProperties": False,
                                "properties": {
                                    "op": {"const": "delete"},
                                    "namespace": {"type": "string"},
                                    "key": {"type": "string"},
                                    "if_version": {
                                        "type": ["integer", "null"],
                                        "minimum": 1,
                                        "maximum": INT64_MAX,
                                    },
                                },
                            },
                        ]
                    },
                }
            },
        },
        "Writes to commit atomically across namespaces of one backend.",
    ),
    "appendEvents": (
        {
            "type": "object",
            "required": ["events"],
            "properties": {
                "events": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"type": "string"},
                            "data": {"type": "object"},
                            "metadata": {"type": ["object", "null"]},
                            "id": {"type": "string", "format": "uuid"},
                            "schema_version": {"type": "integer"},
                        },
                    },
                },
                "expected_version": {
                    "oneOf": [
                        {"type": "integer", "minimum": 0},
                        {"enum": ["any", "no_stream", "stream_exists"]},
                    ]
                },
            },
        },
        "Events to append atomically, and the version the stream must be at.",
    ),
    "createToken": (
        {
            "type": "object",
            "required": ["scopes"],
            "properties": {
                "scopes": {"type": "array", "items": {"type": "string"}},
                "ttl": {"type": ["number", "string", "null"]},
                "note": {"type": "string"},
                "rate": {"type": ["number", "null"]},
            },
        },
        "Scopes such as ns:carts:rw, events:orders-*:read, admin, metrics; ttl like 30d.",
    ),
}

# -- health, info, metrics, openapi --------------------------------------------------------


@get(
    "/healthz",
    opt={"auth": "public"},
    sync_to_thread=False,
    operation_id="healthz",
    summary="Liveness: the process answers.",
    responses=_responses(Health, authed=False),
    tags=["operations"],
)
def healthz(request: Request[Any, Any, Any]) -> ASGIApp:
    return _reply(request, Health("ok"))


@get(
    "/readyz",
    opt={"auth": "public"},
    operation_id="readyz",
    summary="Readiness: the store answers and the server is not shutting down.",
    responses=_responses(Health, 503, authed=False),
    tags=["operations"],
)
async def readyz(request: Request[Any, Any, Any]) -> ASGIApp:
    st = _state(request)
    if st.stopping:
        raise HTTPProblem(BackendUnavailable("the server is shutting down"), 503)
    await st.run(st.store.backend.last_seq)
    return _reply(request, Health("ready"))


@get(
    "/metrics",
    opt={"auth": "metrics"},
    operation_id="metrics",
    summary="Prometheus metrics (text exposition format).",
    responses=_responses(str, ok_media="text/plain"),
    tags=["operations"],
)
async def metrics(request: Request[Any, Any, Any]) -> ASGIApp:
    st = _state(request)
    st.metrics.sync_commits(st.store.backends)
    try:  # the head as the store has it now (any process may have moved it)
        st.metrics.set_audit_head(*await st.run(st.audit.load_head))
    except ClawStateError:
        pass  # metrics still answer when the store does not; the last head stays
    body, ctype = st.metrics.render()
    return Raw(body, 200, ctype)


@get(
    "/v1/info",
    opt={"auth": "token"},
    sync_to_thread=False,
    operation_id="info",
    summary="The server's version and limits, and the calling token's scopes.",
    responses=_responses(Info),
    tags=["store"],
)
def info(request: Request[Any, Any, Any]) -> ASGIApp:
    ctx = _ctx(request)
    p = ctx.principal
    return _reply(
        request,
        Info(
            "clawstate",
            __version__,
            msgspec.to_builtins(ctx.store.config.limits),
            sorted(ctx.store.backends),
            None if p is None else p.id,
            [] if p is None else [str(s) for s in p.scopes],
        ),
    )


# -- items -------------------------------------------------------------------------------

_ITEM = "/v1/namespaces/{namespace:str}/items/{key:str}"


@get(
    _ITEM,
    opt={"auth": ("ns", "read")},
    operation_id="getItem",
    summary="Read one item (ETag; If-None-Match answers 304).",
    responses=_responses(Item, 304, 404),
    tags=["items"],
)
async def get_item(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    key: KeyParam,
) -> ASGIApp:
    # Headers (If-None-Match) are read from Edge's copy and
    # documented in _HEADERS: declaring them costs Litestar's extraction per request.
    st, ctx = _state(request), _ctx(request)
    if_none_match = _hdr(request, "if-none-match")
    ns = _namespace(request, ctx.store, namespace)
    k = unquote_key(key)
    item = await _read(st, ns.get, k)
    st.metrics.store_op(namespace, "get")
    if item is None:
        raise _not_found()
    etag = format_etag(item.etag)
    if if_none_match is not None:
        tags = parse_etag(if_none_match)
        if "*" in tags or item.etag in tags:
            return Raw(b"", 304, None, {"etag": etag})
    return _reply(request, item, headers={"etag": etag})


async def _precondition(
    st: ServerState, ns: Namespace, key: str, if_match: str | None, if_version: int | None
) -> int | None:
    """If-Match (by ETag) becomes a version check the store enforces atomically."""
    if if_match is None:
        return if_version
    tags = parse_etag(if_match)
    current = await st.run(ns.get, key)
    if current is None or ("*" not in tags and current.etag not in tags):
        raise HTTPProblem(
            VersionConflict(
                key,
                tags[0] if tags else None,
                None if current is None else current.version,
                namespace=ns.name,
            ),
            412,
        )
    if if_version is not None and if_version != current.version:
        raise HTTPProblem(VersionConflict(key, if_version, current.version, namespace=ns.name), 412)
    return current.version


@put(
    _ITEM,
    opt={"auth": ("ns", "write")},
    status_code=200,
    operation_id="putItem",
    summary="Store a value (If-Match / If-None-Match: * / if_version; Idempotency-Key).",
    responses=_responses(ItemMeta, 409, 412, 413, 415, extra_ok={201: (ItemMeta, "Created.")}),
    tags=["items"],
)
async def put_item(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    key: KeyParam,
    ttl: Annotated[
        float | None, Parameter(query="ttl", required=False, description="Seconds to live.")
    ] = None,
    if_version: Annotated[
        int | None,
        Parameter(query="if_version", required=False, description="Compare-and-set."),
    ] = None,
    keep_ttl: Annotated[
        bool,
        Parameter(
            query="keep_ttl",
            required=False,
            description="Keep the live item's expiry (a put without ttl drops it otherwise).",
        ),
    ] = False,
) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    if_match = _hdr(request, "if-match")
    if_none_match = _hdr(request, "if-none-match")
    idempotency_key = _hdr(request, IDEMPOTENCY_KEY)
    store = ctx.store
    ns = _namespace(request, store, namespace)
    k = _key(key, store)
    if_absent = False
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise InvalidRequest("if-none-match", 'on a write only "*" (create-only) is supported')
        if_absent = True
    if if_version is not None:
        _strict_ints(request, "if_version")
    value = await _decode(request, _value_limit(st, store), "value")
    header_condition = if_absent or if_match is not None
    if_version = await _precondition(st, ns, k, if_match, if_version)
    try:
        item = await st.batch.put(
            ns,
            k,
            value,
            ttl=ttl,
            if_version=if_version,
            if_absent=if_absent,
            idempotency_key=idempotency_key,
            keep_ttl=keep_ttl,
        )
    except VersionConflict as exc:
        if header_condition:
            raise HTTPProblem(exc, 412) from None
        raise
    st.metrics.store_op(namespace, "put")
    return _reply(
        request,
        meta_of(item),
        201 if item.version == 1 else 200,
        headers={"etag": format_etag(item.etag)},
    )


@delete(
    _ITEM,
    opt={"auth": ("ns", "write")},
    status_code=200,
    operation_id="deleteItem",
    summary="Delete a key; deleted is false when there was no live item.",
    responses=_responses(Deleted, 409, 412),
    tags=["items"],
)
async def delete_item(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    key: KeyParam,
    if_version: Annotated[int | None, Parameter(query="if_version", required=False)] = None,
    if_match: Annotated[str | None, Parameter(header="if-match", required=False)] = None,
    idempotency_key: IdemHeader = None,
) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    ns = _namespace(request, ctx.store, namespace)
    k = _key(key, ctx.store)
    if if_version is not None:
        _strict_ints(request, "if_version")
    if_version = await _precondition(st, ns, k, if_match, if_version)
    try:
        deleted = await st.run(ns.delete, k, if_version=if_version, idempotency_key=idempotency_key)
    except VersionConflict as exc:
        if if_match is not None:
            raise HTTPProblem(exc, 412) from None
        raise
    st.metrics.store_op(namespace, "delete")
    return _reply(request, Deleted(deleted))


@get(
    "/v1/namespaces/{namespace:str}/items",
    opt={"auth": ("ns", "read")},
    operation_id="scanItems",
    summary="Live items in key order (UTF-8 bytes), one page; pass cursor for the next.",
    responses=_responses(Page),
    tags=["items"],
)
async def scan_items(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    prefix: Annotated[str, Parameter(query="prefix", required=False)] = "",
    limit: Annotated[int, Parameter(query="limit", required=False, ge=1)] = 100,
    cursor: Annotated[str | None, Parameter(query="cursor", required=False)] = None,
) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    ns = _namespace(request, ctx.store, namespace)
    _strict_ints(request, "limit")
    page = await st.run(ns.scan, prefix, limit, cursor)
    st.metrics.store_op(namespace, "scan")
    return _reply(request, page)


@post(
    "/v1/namespaces/{namespace:str}/query",
    opt={"auth": ("ns", "read")},
    status_code=200,
    operation_id="queryItems",
    summary="Dapr state query (filter / sort / page) over the namespace's values.",
    responses=_responses(Page, 413, 415),
    tags=["items"],
)
async def query_items(
    request: Request[Any, Any, Any],
    namespace: NsParam,
) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    ns = _namespace(request, ctx.store, namespace)
    query = await _decode(request, min(st.settings.max_body_bytes, 1024 * 1024), "query")
    page = await st.run(ns.query, query)
    st.metrics.store_op(namespace, "query")
    return _reply(request, page)


@post(
    "/v1/namespaces/{namespace:str}/batch/get",
    opt={"auth": ("ns", "read")},
    status_code=200,
    operation_id="getMany",
    summary="Read several keys; missing keys are left out.",
    responses=_responses(ItemsByKey, 413, 415),
    tags=["items"],
)
async def get_many(
    request: Request[Any, Any, Any],
    namespace: NsParam,
) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    ns = _namespace(request, ctx.store, namespace)
    lim = _limits(ctx.store)
    body = await _decode(
        request, min(st.settings.max_body_bytes, lim.max_batch * 4200 + 1024), "keys"
    )
    keys = _convert(body, BatchGet, "keys").keys
    found = await st.run(ns.get_many, keys)
    st.metrics.store_op(namespace, "get_many")
    return _reply(request, ItemsByKey(found))


@post(
    "/v1/namespaces/{namespace:str}/batch/put",
    opt={"auth": ("ns", "write")},
    status_code=200,
    operation_id="putMany",
    summary="Write several items atomically: all or none (Idempotency-Key).",
    responses=_responses(ItemsMeta, 409, 413, 415),
    tags=["items"],
)
async def put_many(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    idempotency_key: IdemHeader = None,
) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    ns = _namespace(request, ctx.store, namespace)
    body = _convert(await _decode(request, _batch_limit(st, ctx.store), "items"), BatchPut, "items")
    items = await st.run(ns.put_many, body.items, ttl=body.ttl, idempotency_key=idempotency_key)
    st.metrics.store_op(namespace, "put", len(items))
    return _reply(request, ItemsMeta([meta_of(i) for i in items]))


def _convert(doc: Any, typ: type[T], field: str) -> T:
    """``doc`` as ``typ``; a mismatch is ``InvalidRequest`` naming the body's own field
    (``expected_version``, ``items[0]``, ``writes[1].op``) when msgspec says where it is,
    as the embedded API names its arguments, else ``field``."""
    try:
        return msgspec.convert(doc, typ)
    except msgspec.ValidationError as exc:
        text = str(exc)
        _, at, where = text.rpartition(" - at `$")
        if at and where.endswith("`") and len(where) > 2 and where[0] in ".[":
            field = where[1:-1] if where[0] == "." else where[:-1]
        raise InvalidRequest(field, f"the body does not have the expected shape: {text}") from None


@get(
    "/v1/namespaces/{namespace:str}/count",
    opt={"auth": ("ns", "read")},
    operation_id="countItems",
    summary="How many live items the namespace holds.",
    responses=_responses(Count),
    tags=["items"],
)
async def count_items(request: Request[Any, Any, Any], namespace: NsParam) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    ns = _namespace(request, ctx.store, namespace)
    n = await st.run(ns.count)
    st.metrics.store_op(namespace, "count")
    return _reply(request, Count(n))


@get(
    "/v1/namespaces/{namespace:str}/policy",
    opt={"auth": ("ns", "read")},
    sync_to_thread=False,
    operation_id="namespacePolicy",
    summary="The namespace's policy, as the server's configuration sets it.",
    responses=_responses(PolicyDoc),
    tags=["items"],
)
def namespace_policy(
    request: Request[Any, Any, Any],
    namespace: NsParam,
) -> ASGIApp:
    ns = _namespace(request, _ctx(request).store, namespace)
    return _reply(request, PolicyDoc(ns.name, msgspec.to_builtins(ns.policy)))


@get(
    "/v1/namespaces",
    opt={"auth": "token"},
    operation_id="listNamespaces",
    summary="Namespaces holding data that this token may read.",
    responses=_responses(NamespaceList),
    tags=["store"],
)
async def list_namespaces(request: Request[Any, Any, Any]) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    names = await st.run(ctx.store.namespaces)
    p = ctx.principal
    visible = [
        n for n in names if not n.startswith("_") and p is not None and p.allows("ns", n, "read")
    ]
    return _reply(request, NamespaceList(visible))


# -- transactions --------------------------------------------------------------------------


def _run_transaction(store: Store, body: TxWrites, idem: str | None) -> list[Item | bool]:
    tx = store.transaction(idempotency_key=idem)
    try:
        for w in body.writes:
            txns = tx.namespace(w.namespace)
            if w.op == "put":
                ttl, if_absent, keep_ttl = w.put_options()
                txns.put(
                    w.key,
                    w.value,
                    ttl=ttl,
                    if_version=w.if_version,
                    if_absent=if_absent,
                    keep_ttl=keep_ttl,
                )
            else:
                txns.delete(w.key, if_version=w.if_version)
        return tx.commit()
    except BaseException:
        if not tx._done:
            tx.rollback()
        raise


@post(
    "/v1/transactions",
    opt={"auth": "token"},
    status_code=200,
    operation_id="transaction",
    summary="Commit writes to several namespaces atomically (needs write on each).",
    responses=_responses(TxResult, 409, 413, 415),
    tags=["store"],
)
async def transaction(
    request: Request[Any, Any, Any], idempotency_key: IdemHeader = None
) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    body = _convert(
        await _decode(request, _batch_limit(st, ctx.store), "transaction"), TxWrites, "transaction"
    )
    p = ctx.principal
    for i, w in enumerate(body.writes):
        if not isinstance(w.namespace, str):
            raise InvalidRequest("namespace", f"must be a string, got {type(w.namespace).__name__}")
        w.check(i)  # no value/ttl/if_absent on a delete, a value on every put
    for name in {w.namespace for w in body.writes}:
        if p is None or (name.startswith("_") and not p.admin) or not p.allows("ns", name, "write"):
            st.metrics.denied.labels("403").inc()
            await _audit_denial(st, request, 403, "scope", p)
            raise Forbidden("this token's scopes do not allow this request")
    result = await st.run(_run_transaction, ctx.store, body, idempotency_key)
    for w in body.writes:
        st.metrics.store_op(w.namespace, "tx_" + w.op)
    return _reply(request, TxResult([meta_of(r) if isinstance(r, Item) else r for r in result]))


# -- the change log: JSON batches and server-sent events -----------------------------------


def _take(watch: Watch, limit: int) -> tuple[list[Change], int]:
    """Up to ``limit`` available changes without waiting, and where to resume."""
    out: list[Change] = []
    buffer = watch._buffer
    while len(out) < limit:
        if buffer:
            out.append(buffer.popleft())
            continue
        if not watch._fill():
            break
    resume = out[-1].seq if buffer and out else watch.last_seq
    return out, resume


def _visible(changes: list[Change]) -> list[Change]:
    return [c for c in changes if not c.namespace.startswith("_")]


def _sse_change(c: Change) -> bytes:
    return b"id: %d\nevent: change\ndata: %s\n\n" % (c.seq, _json_encode(c))


#: Bounds of ``?heartbeat=`` on the SSE routes (seconds).  Below the floor a client
#: could make the server write keep-alives thousands of times a second.
HEARTBEAT_MIN = 1.0
HEARTBEAT_MAX = 3600.0

HeartbeatParam = Annotated[
    str | None,
    Parameter(
        query="heartbeat",
        required=False,
        description=f"SSE: seconds between keep-alive comments, {HEARTBEAT_MIN:g} to "
        f"{HEARTBEAT_MAX:g} (the server's own interval is the most it waits).",
    ),
]


def heartbeat_seconds(value: str | None, settings: ServerSettings) -> float:
    """The keep-alive interval of an SSE stream: the client's ``heartbeat`` within
    [HEARTBEAT_MIN, HEARTBEAT_MAX], never longer than the server's own setting.
    Anything else — not a number, NaN, infinite, out of range — is refused."""
    if value is None or value == "":
        return settings.heartbeat
    limits = f"between {HEARTBEAT_MIN:g} and {HEARTBEAT_MAX:g} seconds"
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidRequest("heartbeat", f"must be a number {limits}") from None
    if not HEARTBEAT_MIN <= seconds <= HEARTBEAT_MAX:  # also refuses NaN and inf
        raise InvalidRequest("heartbeat", f"must be {limits}, got {value[:40]!r}")
    return min(seconds, settings.heartbeat)


def _sees_everything(p: Principal) -> bool:
    """May ``p`` read every namespace the change log holds (system ones included)?

    Only then may it learn store-wide positions: for anyone else every position it
    receives is the seq of a change it may read, or one it sent (see ``changes``)."""
    return p.admin


def _newest_visible(store: Store, namespace: str | None, prefix: str, backend: str | None) -> int:
    """The seq of the newest retained change this watch would show (0: none): where a
    scoped caller's "start at the end" begins, instead of the store-wide end."""
    watch = store.watch(0, namespace=namespace, prefix=prefix, backend=backend)
    newest = 0
    try:
        while watch._fill():
            for c in watch._buffer:
                if not c.namespace.startswith("_"):
                    newest = c.seq
            watch._buffer.clear()
    finally:
        watch.close()
    return newest


def _take_visible(watch: Watch, limit: int, start: int) -> tuple[list[Change], int]:
    """Up to ``limit`` changes the caller may read, read without waiting, and a resume
    position that is the seq of the last of them — or ``start`` if there are none —
    so that nothing in the answer moves when other tenants write."""
    out: list[Change] = []
    buffer = watch._buffer
    while len(out) < limit:
        if buffer:
            c = buffer.popleft()
            if not c.namespace.startswith("_"):
                out.append(c)
            continue
        if not watch._fill():
            break
    return out, (out[-1].seq if out else start)


@get(
    "/v1/changes",
    opt={"auth": "token"},
    operation_id="changes",
    summary="The change log after from_seq: a JSON batch, or a live SSE stream "
    "(Accept: text/event-stream; id: = seq, Last-Event-ID resumes).",
    responses=_responses(ChangeBatch),
    tags=["store"],
)
async def changes(
    request: Request[Any, Any, Any],
    from_seq: Annotated[
        int | None,
        Parameter(query="from_seq", required=False, description="Omit to start at the end."),
    ] = None,
    namespace: Annotated[str | None, Parameter(query="namespace", required=False)] = None,
    prefix: Annotated[str, Parameter(query="prefix", required=False)] = "",
    timeout: Annotated[
        float | None,
        Parameter(
            query="timeout",
            required=False,
            description="SSE: end after this many seconds without a change (omit: never).",
        ),
    ] = None,
    limit: Annotated[int, Parameter(query="limit", required=False, ge=0, le=10000)] = 1000,
    heartbeat: HeartbeatParam = None,
    backend: Annotated[str | None, Parameter(query="backend", required=False)] = None,
    last_event_id: Annotated[str | None, Parameter(header="last-event-id", required=False)] = None,
) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    p = ctx.principal
    assert p is not None
    if namespace is not None:
        ok = (p.admin or not namespace.startswith("_")) and p.allows("ns", namespace, "read")
    else:
        ok = p.allows_all("ns", "read")
    if not ok:
        st.metrics.denied.labels("403").inc()
        await _audit_denial(st, request, 403, "scope", p)
        raise Forbidden("this token's scopes do not allow this request")
    sse = SSE in (_hdr(request, "accept") or "")
    beat = heartbeat_seconds(heartbeat, st.settings)  # checked on every path
    _strict_ints(request, "from_seq", "limit")
    if last_event_id:
        from_seq = parse_int(last_event_id, "last-event-id")  # a seq: 0 to 2**63-1
    # A caller that may not read every namespace gets only positions of changes it may
    # read (or the one it sent): the store-wide end would tell it how much everyone else
    # wrote.  "Start at the end" is then the newest change it could read.
    scoped = not _sees_everything(p)
    if scoped and from_seq is None:
        from_seq = await st.run(_newest_visible, ctx.store, namespace, prefix, backend)
    watch: Watch = await st.run(
        ctx.store.watch,
        from_seq,
        namespace=namespace,
        prefix=prefix,
        timeout=timeout,
        backend=backend,
    )
    start = watch.last_seq
    if not sse:
        if limit == 0:
            return _reply(request, ChangeBatch([], start))
        if scoped:
            got, resume = await st.run(_take_visible, watch, limit, start)
            return _reply(request, ChangeBatch(got, resume))
        got, resume = await st.run(_take, watch, limit)
        return _reply(request, ChangeBatch(_visible(got), resume))
    return RawStream(
        _stream(st, watch, timeout, beat, start if scoped else None),
        SSE,
        {"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def _stream(
    st: ServerState, watch: Watch, timeout: float | None, beat: float, scoped: int | None
) -> AsyncIterator[bytes]:
    """The SSE loop.  ``scoped`` is None for a caller that may read everything (the
    end event carries the store-wide position), else its start position: the end
    event then carries the seq of the last change it was sent, or that start."""
    loop = asyncio.get_running_loop()
    notifier = st.notifier(watch._backend)
    st.metrics.watches.inc()
    shown_up_to = scoped
    try:
        yield b"retry: 1000\n\n"
        deadline = None if timeout is None else loop.time() + timeout
        next_beat = loop.time() + beat
        while not st.stopping:
            got, _ = await st.run(_take, watch, 256)
            shown = _visible(got)
            if shown:
                shown_up_to = shown[-1].seq if scoped is not None else None
                yield b"".join(_sse_change(c) for c in shown)
                now = loop.time()
                deadline = None if timeout is None else now + timeout
                next_beat = now + beat
                continue
            now = loop.time()
            if deadline is not None and now >= deadline:
                break
            if now >= next_beat:
                yield b": keep-alive\n\n"
                next_beat = now + beat
            wait = next_beat - now
            if deadline is not None:
                wait = min(wait, deadline - now)
            await notifier.wait(watch.last_seq, max(wait, 0.0))
        end = watch.last_seq if shown_up_to is None else shown_up_to
        yield b"event: end\ndata: %s\n\n" % _json_encode({"last_seq": end})
    finally:
        st.metrics.watches.dec()
        watch.close()


# -- admin ---------------------------------------------------------------------------------


@get(
    "/v1/admin/stats",
    opt={"auth": "admin"},
    operation_id="stats",
    summary="Namespaces with counts, bytes and policy; each backend's statistics.",
    responses=_responses(dict[str, Any]),
    tags=["admin"],
)
async def admin_stats(request: Request[Any, Any, Any]) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    data = await st.run(ctx.store.stats)
    await _audit_admin(request, "stats")
    return _reply(request, data)


@get(
    "/v1/admin/check",
    opt={"auth": "admin"},
    operation_id="check",
    summary="Verify the store's integrity (deep: decode every value).",
    responses=_responses(CheckReport),
    tags=["admin"],
)
async def admin_check(
    request: Request[Any, Any, Any],
    deep: Annotated[bool, Parameter(query="deep", required=False)] = False,
) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    report = await st.run(ctx.store.check, deep=deep)
    await _audit_admin(request, "check", deep=deep, ok=report.ok)
    return _reply(
        request, {"problems": report.problems, "checked": report.checked, "ok": report.ok}
    )


@post(
    "/v1/admin/sweep",
    opt={"auth": "admin"},
    status_code=200,
    operation_id="sweep",
    summary="Purge expired items, forgotten idempotency keys and old change-log rows.",
    responses=_responses(dict[str, int]),
    tags=["admin"],
)
async def admin_sweep(request: Request[Any, Any, Any]) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    totals = await st.run(ctx.store.sweep)
    await _audit_admin(request, "sweep", **totals)
    return _reply(request, totals)


@post(
    "/v1/admin/tokens",
    opt={"auth": "admin"},
    status_code=201,
    operation_id="createToken",
    summary="Create a token; its secret is in this answer only.",
    responses=_responses(TokenCreated, 413, 415, ok_status=201),
    tags=["admin"],
)
async def create_token(request: Request[Any, Any, Any]) -> ASGIApp:
    st = _state(request)
    body = _convert(await _decode(request, 65536, "token"), TokenCreate, "token")
    plaintext, rec = await st.run(
        st.tokens.create, body.scopes, ttl=body.ttl, note=body.note, rate=body.rate
    )
    await _audit_admin(request, "token.create", id=rec.id, scopes=rec.scopes)
    return _reply(request, TokenCreated(rec.id, plaintext, rec.scopes, rec.expires_at), 201)


@get(
    "/v1/admin/tokens",
    opt={"auth": "admin"},
    operation_id="listTokens",
    summary="Every token (ids, scopes, expiry, revocation; never secrets or hashes).",
    responses=_responses(TokenList),
    tags=["admin"],
)
async def list_tokens(request: Request[Any, Any, Any]) -> ASGIApp:
    st = _state(request)
    tokens = await st.run(st.tokens.list)
    await _audit_admin(request, "token.list")
    return _reply(request, TokenList(list(tokens)))


@delete(
    "/v1/admin/tokens/{token_id:str}",
    opt={"auth": "admin"},
    status_code=200,
    operation_id="revokeToken",
    summary="Revoke a token (kept, marked revoked, for the audit trail).",
    responses=_responses(Revoked),
    tags=["admin"],
)
async def revoke_token(request: Request[Any, Any, Any], token_id: str) -> ASGIApp:
    st = _state(request)
    revoked = await st.run(st.tokens.revoke, token_id)
    await _audit_admin(request, "token.revoke", id=token_id[:64], revoked=revoked)
    return _reply(request, Revoked(revoked))


@get(
    "/v1/admin/audit/verify",
    opt={"auth": "admin"},
    operation_id="verifyAudit",
    summary="Walk the audit log's hash chain.",
    responses=_responses(AuditVerify),
    tags=["admin"],
)
async def verify_audit(request: Request[Any, Any, Any]) -> ASGIApp:
    from .audit import verify

    st = _state(request)
    await st.audit.flush()
    report = await st.run(verify, st.store)
    await _audit_admin(request, "audit.verify", ok=report.ok)
    return _reply(request, report)


# -- TEST-ONLY control routes (CLAWSTATE_TEST_CONTROL=1) --------------------------------


class TestStoreCreated(msgspec.Struct):
    id: str


#: What a test may declare for its store: the settings a ``clawstate.toml`` gives a
#: store, minus every one that names a place (``url``, ``keyring``, ``backends``,
#: ``config``): a test store lives in the server's own directory, nowhere else.
_TEST_STORE_OPTIONS = frozenset(
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


def _check_test_store_options(options: Any) -> dict[str, Any]:
    """Refuse whatever in a ``POST /_test/stores`` body could make the server open a URL
    or a path the request chose; the rest is validated by ``clawstate.open`` exactly as
    a ``clawstate.toml`` would be (ConfigError naming the field)."""
    if not isinstance(options, dict):
        raise InvalidRequest("options", "must be an object")
    for name in options:
        if name not in _TEST_STORE_OPTIONS:
            allowed = ", ".join(sorted(_TEST_STORE_OPTIONS))
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
    policies, limits…: see :data:`_TEST_STORE_OPTIONS`); where the store and its keyring
    live is the server's choice alone."""
    from .._open import open as open_store

    st = _state(request)
    options = _check_test_store_options(await _decode(request, 1 << 20, "options"))
    sid = f"t{next(st._test_ids)}"
    root = st.test_root()
    base = os.path.join(root, f"test-store-{os.getpid()}-{sid}")
    url = f"sqlite:///{base}.db"
    keyring = f"file:{base}.keys.json"
    try:
        store = await st.run(lambda: open_store(url, clock=_test_clock, keyring=keyring, **options))
    except ConfigError as exc:  # the request's settings, checked as a clawstate.toml is
        raise HTTPProblem(exc, 400) from None
    st.test_stores[sid] = store
    return _reply(request, TestStoreCreated(sid), 201)


@delete("/_test/stores/{sid:str}", opt={"auth": "admin"}, status_code=200, include_in_schema=False)
async def test_close_store(request: Request[Any, Any, Any], sid: str) -> ASGIApp:
    st = _state(request)
    store = st.test_stores.pop(sid, None)
    if store is not None:
        await st.run(store.close)
    return _reply(request, {"closed": store is not None})


# -- the edge: raw paths, request ids, timing ------------------------------------------


class Edge:
    """Raw ASGI wrapper around Litestar.

    * routes on the RAW path: keys travel percent-encoded as one segment, and letting
      the server decode ``%2F`` first would split them (Litestar also collapses ``//``);
      handlers decode the key segment themselves (:func:`_wire.unquote_key`);
    * gives every request an id (``X-Request-Id``: the client's if sane, else a new one),
      visible to every log line of the request;
    * times the request and counts it by route template and status.
    """

    def __init__(self, app: ASGIApp, st: ServerState) -> None:
        self.app = app
        self.st = st
        self._pid = f"{os.getpid():x}"
        self._n = itertools.count(1)

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path")
        if raw:
            # ASGI's raw_path holds no query string, but some servers and test clients
            # (Litestar's TestClient) leave it on: a '?' cannot be in a path, so cut it.
            raw = raw.partition(b"?")[0]
            try:
                scope["path"] = raw.decode("ascii")
            except UnicodeDecodeError:
                await _send_problem(
                    send, 400, InvalidRequest("path", "must be ASCII (percent-encode it)")
                )
                return
        found: dict[str, str] = {}
        wanted = _WANTED
        for name, value in scope["headers"]:
            if name in wanted:
                found[name.decode("latin-1")] = value.decode("latin-1")
        scope["cs_h"] = found
        scope["cs_st"] = self.st
        rid = found.get("x-request-id")
        # isascii first: str.isalnum() also takes "é", "²" or "١", which the ASCII echo
        # below could not encode (an exception out of the app: found by the fuzz pass).
        if rid is not None and not (
            0 < len(rid) <= 64
            and rid.isascii()
            and rid.replace("-", "").replace("_", "").replace(".", "").isalnum()
        ):
            rid = None
        if rid is None:
            rid = f"{self._pid}-{next(self._n):x}"
        rid_bytes = rid.encode("ascii")
        start = time.perf_counter()
        status = 500

        async def receive_wrapper() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope["cs_gone"] = True  # _read_body turns the cut body into a 499
            return message

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid_bytes)]
            await send(message)

        token = request_id_var.set(rid)
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("path_template") or "unmatched"
            method = str(scope.get("method", "?"))
            if scope.get("cs_gone") and status >= 500:
                status = CLIENT_CLOSED  # it failed because the client left
            self.st.metrics.observe_request(route, method, status, elapsed)
            if status == CLIENT_CLOSED:
                access_log.info("client disconnected", extra={"method": method, "route": route})
            elif self.st.settings.access_log or status >= 500:
                access_log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 3),
                    },
                )
            request_id_var.reset(token)


async def _send_problem(send: Any, status: int, exc: ClawStateError) -> None:
    from .._wire import problem_doc

    body = _json_encode(problem_doc(exc, status))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- OpenAPI -------------------------------------------------------------------------------


def _openapi_doc(app: Litestar) -> dict[str, Any]:
    schema = app.openapi_schema
    doc: dict[str, Any] = schema.to_schema()
    doc["openapi"] = "3.1.0"
    doc.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "cst_<id>_<secret>"}
    }
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            opid = op.get("operationId")
            for param in op.get("parameters", []):
                if param.get("in") == "path" and param.get("name") in _PATH_SCHEMAS:
                    declared = dict(_PATH_SCHEMAS[param["name"]])
                    param["description"] = declared.pop("description")
                    param["schema"] = declared
                example = _EXAMPLES.get((param.get("in"), param.get("name")))
                if example is not None:
                    param.setdefault("example", example)
            for name, text in _HEADERS.get(str(opid), ()):
                op.setdefault("parameters", []).append(
                    {
                        "name": name,
                        "in": "header",
                        "required": False,
                        "description": text,
                        "schema": {"type": "string"},
                    }
                )
            if opid in _BODIES:
                schema_, text = _BODIES[opid]
                content = {JSON: {"schema": schema_}}
                if opid != "createToken":
                    content[MSGPACK] = {"schema": schema_}
                op["requestBody"] = {"required": True, "description": text, "content": content}
            responses = op.get("responses", {})
            if opid not in ("healthz", "readyz"):
                op["security"] = [{"bearer": []}]
            if opid in ("changes", "readAll", "subscribeEvents"):
                ok = responses.get("200", {})
                ok.setdefault("content", {})[SSE] = {"schema": {"type": "string"}}
            for status in ("200", "201"):
                if status in responses and opid not in ("metrics",):
                    content = responses[status].setdefault("content", {})
                    if JSON in content:
                        content.setdefault(MSGPACK, content[JSON])
            if path == _ITEM.replace(":str", "") and method == "get":
                responses.setdefault("200", {}).setdefault("headers", {})["ETag"] = {
                    "schema": {"type": "string"}
                }
    return doc


@get("/openapi.json", opt={"auth": "public"}, sync_to_thread=False, include_in_schema=False)
def openapi_json(request: Request[Any, Any, Any]) -> ASGIApp:
    st = _state(request)
    cached = getattr(st, "_openapi", None)
    if cached is None:
        cached = _json_encode(_openapi_doc(request.app))
        st._openapi = cached  # type: ignore[attr-defined]
    return Raw(cached)


# -- the application ----------------------------------------------------------------------


ROUTES: list[Any] = [
    healthz,
    readyz,
    metrics,
    openapi_json,
    info,
    get_item,
    put_item,
    delete_item,
    scan_items,
    query_items,
    get_many,
    put_many,
    count_items,
    namespace_policy,
    list_namespaces,
    transaction,
    changes,
    admin_stats,
    admin_check,
    admin_sweep,
    create_token,
    list_tokens,
    revoke_token,
    verify_audit,
]


def create_app(store: Store, settings: ServerSettings | None = None) -> Edge:
    """The ASGI application serving ``store``.  The caller owns and closes the store."""
    settings = settings or ServerSettings()
    if os.environ.get(TEST_CONTROL_ENV) == "1":
        settings = msgspec.structs.replace(settings, test_control=True)
    st = ServerState(store, settings)
    from .events import EVENT_ROUTES  # imports this module: not at the top

    routes = list(ROUTES) + EVENT_ROUTES
    if settings.test_control:
        log.warning(
            "TEST CONTROL IS ON (%s=1): /_test/stores creates stores on request and any "
            "authenticated request may set the server's clock (Clawstate-Test-Clock). "
            "This is for test suites only: never run a real server like this.",
            TEST_CONTROL_ENV,
        )
        routes += [test_create_store, test_close_store]
    app = Litestar(
        route_handlers=routes,
        before_request=authorize,
        exception_handlers={Exception: exception_handler},
        on_startup=[st.startup],
        on_shutdown=[st.shutdown],
        state=State({"cs": st}),
        # Every body is read through _read_body, which applies the route's own limit
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

    edge = Edge(instrument(app, force=settings.tracing), st)
    edge.state = st  # type: ignore[attr-defined]
    return edge
