"""The facade over HTTP: ``clawstate.open("http://host:8720", token=...)``.

DESIGN.md: the HTTP client "is a transport under the one facade, not a second API".
:class:`RemoteStore` / :class:`RemoteNamespace` / :class:`RemoteTransaction` /
:class:`RemoteWatch` have the method names, arguments, return types (the same
:class:`~clawstate.types.Item`, :class:`~clawstate.types.Page`,
:class:`~clawstate.types.Change`) and errors (the same classes with the same fields,
re-built from the server's problem documents) as the in-process facade, and the
conformance suites run against them unchanged (``tests/test_server_conformance.py``).
:class:`AsyncRemoteStore` is the awaitable twin, as :class:`~clawstate.aio.AsyncStore`
is for the embedded store.

How it stays one implementation:

* every operation is described once, as a :class:`_Call` built by a ``_*_call``
  function (path, parameters, body, whether it may be retried, how to read the answer);
  the sync and async transports only execute calls;
* the server runs the facade itself, so every rule — limits, TTLs, versions,
  idempotency, cursors, queries — is the store's.  The client checks only what the wire
  cannot carry faithfully (a ``str`` limit would arrive as a number, a lone surrogate
  cannot be encoded), with the facade's own check functions and the server's limits;
* the wire format is :mod:`clawstate._wire`, shared with the server; bodies travel as
  msgpack, so ``bytes`` values and int/float types round-trip exactly.

Retries (:class:`Retry`, in the style of redis-py's ``Retry(ExponentialBackoff(), 3)``)
apply only where a second attempt cannot apply a write twice: reads, writes carrying an
``idempotency_key``, any request the server refused before running it (429 with
Retry-After), and any request whose connection was never established.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import httpx
import msgspec

from . import __version__
from ._validate import (
    check_flag,
    check_int,
    check_key,
    check_key_list,
    check_limit,
    check_namespace_name,
    check_pairs,
    check_position,
    check_timeout,
    check_ttl,
    check_version,
)
from ._wire import (
    IDEMPOTENCY_KEY,
    MSGPACK,
    SSE,
    ChangeBatch,
    EventPage,
    ItemMeta,
    ItemsByKey,
    ItemsMeta,
    NotFound,
    StreamEvents,
    TxResult,
    error_from_problem,
    quote_key,
)
from .codec import _validate as _validate_value
from .config import Config, Limits
from .errors import BackendUnavailable, ClawStateError, ConfigError, InvalidRequest
from .events.store import EventFilter, _check_filter, _check_limit, _check_position, expected_code
from .types import (
    ANY,
    AppendResult,
    Change,
    CheckReport,
    Event,
    ExpectedVersion,
    Item,
    Page,
    RecordedEvent,
)

__all__ = [
    "AsyncRemoteEvents",
    "AsyncRemoteNamespace",
    "AsyncRemoteStore",
    "AsyncRemoteSubscription",
    "AsyncRemoteTransaction",
    "AsyncRemoteWatch",
    "ExponentialBackoff",
    "RateLimited",
    "RemoteEvents",
    "RemoteNamespace",
    "RemoteStore",
    "RemoteSubscription",
    "RemoteTransaction",
    "RemoteTxNamespace",
    "RemoteWatch",
    "Retry",
]

T = TypeVar("T")

#: ``open()`` options the client itself takes.
CLIENT_OPTIONS = frozenset(
    {"timeout", "retry", "headers", "verify", "max_connections", "heartbeat"}
)
TEST_CLOCK_HEADER = "clawstate-test-clock"


class RateLimited(BackendUnavailable):
    """The server kept answering 429 after every retry; ``retry_after`` is its last hint."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# -- retries --------------------------------------------------------------------------


class ExponentialBackoff:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base·2ⁿ))."""

    def __init__(self, cap: float = 2.0, base: float = 0.05) -> None:
        self.cap = cap
        self.base = base

    def compute(self, failures: int) -> float:
        return random.uniform(0, min(self.cap, self.base * (2**failures)))


class Retry:
    """How many times to retry a retryable failure, and how long to wait between tries.

    ``Retry(ExponentialBackoff(cap=2, base=0.05), retries=3)`` is the default;
    ``Retry(retries=0)`` never retries.  A ``Retry-After`` from the server wins over the
    backoff (capped at ``max_retry_after``).
    """

    def __init__(
        self,
        backoff: ExponentialBackoff | None = None,
        retries: int = 3,
        *,
        max_retry_after: float = 10.0,
    ) -> None:
        self.backoff = backoff or ExponentialBackoff()
        self.retries = retries
        self.max_retry_after = max_retry_after

    def delay(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return self.backoff.compute(failures)


# -- calls: each operation described once ------------------------------------------------

_NO_BODY = object()


class _Call(NamedTuple, Generic[T]):
    method: str
    path: str
    params: dict[str, Any] | None
    body: Any
    headers: dict[str, str] | None
    #: may be sent again after an ambiguous failure (a read, or an idempotency key)
    idempotent: bool
    parse: Callable[[int, Any], T]
    #: the field an unencodable body is blamed on
    field: str = "value"


_encode = msgspec.msgpack.Encoder().encode
_dec_any = msgspec.msgpack.Decoder()
_dec_item = msgspec.msgpack.Decoder(Item)
_dec_page = msgspec.msgpack.Decoder(Page)
_dec_meta = msgspec.msgpack.Decoder(ItemMeta)
_dec_items_by_key = msgspec.msgpack.Decoder(ItemsByKey)
_dec_items_meta = msgspec.msgpack.Decoder(ItemsMeta)
_dec_tx = msgspec.msgpack.Decoder(TxResult)
_dec_changes = msgspec.msgpack.Decoder(ChangeBatch)
_dec_change_json = msgspec.json.Decoder(Change)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ns_path(name: str) -> str:
    return f"/v1/namespaces/{name}"


def _item_path(ns: str, key: str) -> str:
    return f"/v1/namespaces/{ns}/items/{quote_key(key)}"


def _check_idem(idem: Any) -> None:
    if idem is not None:
        check_key(idem, 256, field="idempotency_key")


class _NsSpec:
    """One namespace as the client addresses it: name and limits.  Its policy is the
    server's (its configuration), so nothing about it travels with a request."""

    __slots__ = ("limits", "name")

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits


def _get_call(ns: _NsSpec, key: Any) -> _Call[Item | None]:
    check_key(key, ns.limits.max_key_bytes)

    def parse(status: int, data: Any) -> Item | None:
        return None if status == 404 else _dec_item.decode(data)

    return _Call("GET", _item_path(ns.name, key), None, _NO_BODY, None, True, parse)


def _get_many_call(ns: _NsSpec, keys: Iterable[Any]) -> _Call[dict[str, Item]]:
    keys = check_key_list(keys, ns.limits.max_batch, ns.limits.max_key_bytes)
    return _Call(
        "POST",
        _ns_path(ns.name) + "/batch/get",
        None,
        {"keys": keys},
        None,
        True,
        lambda s, d: _dec_items_by_key.decode(d).items,
        "keys",
    )


def _put_call(
    ns: _NsSpec,
    key: Any,
    value: Any,
    ttl: Any,
    if_version: Any,
    if_absent: bool,
    idem: Any,
    keep_ttl: bool = False,
) -> _Call[Item]:
    check_key(key, ns.limits.max_key_bytes)
    check_flag(if_absent, "if_absent")
    _check_keep_ttl(keep_ttl, ttl)
    if if_version is not None:
        check_version(if_version)
    if ttl is not None:
        check_ttl(ttl, ns.limits.max_ttl_seconds)
    _check_value(value)
    _check_idem(idem)
    params: dict[str, Any] = {}
    if ttl is not None:
        params["ttl"] = repr(float(ttl))
    if keep_ttl:
        params["keep_ttl"] = "true"
    if if_version is not None:
        params["if_version"] = str(if_version)
    headers: dict[str, str] = {}
    if if_absent:
        headers["if-none-match"] = "*"
    if idem is not None:
        headers[IDEMPOTENCY_KEY] = idem

    def parse(status: int, data: Any) -> Item:
        return _dec_meta.decode(data).with_value(value)

    return _Call(
        "PUT",
        _item_path(ns.name, key),
        params or None,
        value,
        headers or None,
        idem is not None,
        parse,
    )


def _check_keep_ttl(keep_ttl: Any, ttl: Any) -> None:
    """As the facade checks it: a bool, and never together with ``ttl``."""
    check_flag(keep_ttl, "keep_ttl")
    if keep_ttl and ttl is not None:
        raise InvalidRequest("keep_ttl", "cannot be combined with ttl")


def _check_value(value: Any) -> None:
    t = type(value)
    if t is bytes or t is bytearray or t is memoryview:
        return
    _validate_value(value, False)


def _put_many_call(
    ns: _NsSpec,
    items: Mapping[str, Any] | Iterable[tuple[str, Any]],
    ttl: Any,
    idem: Any,
) -> _Call[list[Item]]:
    pairs = check_pairs(items, ns.limits.max_batch)
    for k, v in pairs:
        check_key(k, ns.limits.max_key_bytes)
        if ttl is not None:
            check_ttl(ttl, ns.limits.max_ttl_seconds)
        _check_value(v)
    _check_idem(idem)
    values = [v for _, v in pairs]

    def parse(status: int, data: Any) -> list[Item]:
        metas = _dec_items_meta.decode(data).items
        return [m.with_value(v) for m, v in zip(metas, values, strict=True)]

    headers = {IDEMPOTENCY_KEY: idem} if idem is not None else None
    return _Call(
        "POST",
        _ns_path(ns.name) + "/batch/put",
        None,
        {"items": [[k, v] for k, v in pairs], "ttl": ttl},
        headers or None,
        idem is not None,
        parse,
    )


def _delete_call(ns: _NsSpec, key: Any, if_version: Any, idem: Any) -> _Call[bool]:
    check_key(key, ns.limits.max_key_bytes)
    if if_version is not None:
        check_version(if_version)
    _check_idem(idem)
    params = None if if_version is None else {"if_version": str(if_version)}
    headers = {IDEMPOTENCY_KEY: idem} if idem is not None else None
    return _Call(
        "DELETE",
        _item_path(ns.name, key),
        params,
        _NO_BODY,
        headers or None,
        idem is not None,
        lambda s, d: bool(_dec_any.decode(d)["deleted"]),
    )


def _scan_call(ns: _NsSpec, prefix: Any, limit: Any, cursor: Any) -> _Call[Page]:
    if not isinstance(prefix, str) or "\x00" in prefix or not _is_utf8(prefix):
        raise InvalidRequest("prefix", "must be a valid Unicode string without NUL")
    check_limit(limit, ns.limits.max_query_limit)
    if cursor is not None and not isinstance(cursor, str):
        raise InvalidRequest("cursor", f"must be a string, got {type(cursor).__name__}")
    if cursor is not None and not _is_utf8(cursor):
        raise InvalidRequest("cursor", "is not a cursor this store issued")
    params: dict[str, Any] = {"limit": str(limit)}
    if prefix:
        params["prefix"] = prefix
    if cursor is not None:
        params["cursor"] = cursor
    return _Call(
        "GET",
        _ns_path(ns.name) + "/items",
        params,
        _NO_BODY,
        None,
        True,
        lambda s, d: _dec_page.decode(d),
    )


def _query_call(ns: _NsSpec, query: Any) -> _Call[Page]:
    return _Call(
        "POST",
        _ns_path(ns.name) + "/query",
        None,
        query,
        None,
        True,
        lambda s, d: _dec_page.decode(d),
        "query",
    )


def _count_call(ns: _NsSpec) -> _Call[int]:
    return _Call(
        "GET",
        _ns_path(ns.name) + "/count",
        None,
        _NO_BODY,
        None,
        True,
        lambda s, d: int(_dec_any.decode(d)["count"]),
    )


def _changes_call(
    from_seq: Any,
    namespace: str | None,
    prefix: str,
    timeout: Any,
    limit: int,
    backend: str | None,
) -> _Call[ChangeBatch]:
    params = _watch_params(from_seq, namespace, prefix, timeout, backend)
    params["limit"] = str(limit)
    return _Call(
        "GET", "/v1/changes", params, _NO_BODY, None, True, lambda s, d: _dec_changes.decode(d)
    )


def _watch_params(
    from_seq: Any, namespace: str | None, prefix: str, timeout: Any, backend: str | None
) -> dict[str, Any]:
    if from_seq is not None:
        check_position(from_seq, "from_seq")
    if timeout is not None:
        check_timeout(timeout)
    if not isinstance(prefix, str) or not _is_utf8(prefix):
        raise InvalidRequest("prefix", "must be a valid Unicode string")
    params: dict[str, Any] = {}
    if from_seq is not None:
        params["from_seq"] = str(from_seq)
    if namespace is not None:
        params["namespace"] = namespace
    if prefix:
        params["prefix"] = prefix
    if timeout is not None:
        params["timeout"] = repr(float(timeout))
    if backend is not None:
        params["backend"] = backend
    return params


def _tx_call(
    writes: list[dict[str, Any]], idem: Any, values: list[Any]
) -> _Call[list[Item | bool]]:
    _check_idem(idem)

    def parse(status: int, data: Any) -> list[Item | bool]:
        out: list[Item | bool] = []
        for r, v in zip(_dec_tx.decode(data).result, values, strict=True):
            out.append(r if isinstance(r, bool) else r.with_value(v))
        return out

    headers = {IDEMPOTENCY_KEY: idem} if idem is not None else None
    return _Call(
        "POST", "/v1/transactions", None, {"writes": writes}, headers, idem is not None, parse
    )


def _simple(method: str, path: str, params: dict[str, Any] | None = None) -> _Call[Any]:
    return _Call(
        method, path, params, _NO_BODY, None, method == "GET", lambda s, d: _dec_any.decode(d)
    )


# -- transports ------------------------------------------------------------------------


class _Settings:
    """Connection settings shared by the sync and async transports (and ``.sync``)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        clock: Callable[[], float] | None,
        *,
        timeout: float = 30.0,
        retry: Retry | None = None,
        headers: Mapping[str, str] | None = None,
        verify: Any = True,
        max_connections: int = 100,
        heartbeat: float = 1.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.clock = clock
        self.timeout = timeout
        self.retry = retry if retry is not None else Retry()
        if isinstance(verify, str | os.PathLike):  # a CA bundle for a private CA
            import ssl

            verify = ssl.create_default_context(cafile=os.fspath(verify))
        self.verify = verify
        self.max_connections = max_connections
        self.heartbeat = heartbeat
        base = {
            "accept": MSGPACK,
            "user-agent": f"clawstate-client/{__version__}",
        }
        if token:
            base["authorization"] = f"Bearer {token}"
        base.update(headers or {})
        self.headers = base

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.url,
            "headers": self.headers,
            "timeout": httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            "limits": httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            ),
            "verify": self.verify,
        }


def _request_parts(
    settings: _Settings, call: _Call[Any]
) -> tuple[dict[str, str] | None, bytes | None]:
    headers = call.headers
    content: bytes | None = None
    if call.body is not _NO_BODY:
        try:
            content = _encode(call.body)
        except UnicodeEncodeError:
            raise InvalidRequest(
                call.field,
                f"{call.field} contains a string that is not valid Unicode (lone surrogate)",
            ) from None
        except (TypeError, OverflowError, ValueError) as exc:
            raise InvalidRequest(call.field, f"cannot be sent: {exc}") from None
        headers = {**(headers or {}), "content-type": MSGPACK}
    if settings.clock is not None:
        headers = {**(headers or {}), TEST_CLOCK_HEADER: repr(float(settings.clock()))}
    return headers, content


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _finish(call: _Call[T], response: httpx.Response) -> T:
    status = response.status_code
    if status < 300 or (status == 404 and call.method == "GET" and "/items/" in call.path):
        if status == 404:
            doc = _problem(response)
            if doc.get("title") != "NotFound":
                raise error_from_problem(doc, status)
        return call.parse(status, response.content)
    raise _error(response)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        doc = json.loads(response.content)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _error(response: httpx.Response) -> ClawStateError:
    status = response.status_code
    doc = _problem(response)
    if status == 429:
        return RateLimited(str(doc.get("detail") or "rate limited"), _retry_after(response))
    err = error_from_problem(doc, status)
    if isinstance(err, NotFound):
        err = InvalidRequest("path", str(err))  # a route, not an item: a client/server mismatch
    return err


#: failures after which the request may or may not have been applied
_AMBIGUOUS = (httpx.ReadTimeout, httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError)
#: failures before the request reached the server
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _should_retry(call: _Call[Any], exc: BaseException | None, status: int | None) -> bool:
    if status == 429:
        return True  # refused before it ran
    if status in (502, 503, 504):
        return call.idempotent
    if isinstance(exc, _UNSENT):
        return True
    if isinstance(exc, _AMBIGUOUS):
        return call.idempotent
    return False


class _Transport:
    """Sync execution of calls over one pooled keep-alive ``httpx.Client``."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.client = httpx.Client(**settings.client_kwargs())

    def call(self, call: _Call[T]) -> T:
        headers, content = _request_parts(self.settings, call)
        retry = self.settings.retry
        failures = 0
        while True:
            try:
                response = self.client.request(
                    call.method, call.path, params=call.params, content=content, headers=headers
                )
            except httpx.HTTPError as exc:
                if failures < retry.retries and _should_retry(call, exc, None):
                    time.sleep(retry.delay(failures, None))
                    failures += 1
                    continue
                raise BackendUnavailable(
                    f"{call.method} {call.path}: {type(exc).__name__}: {exc}"
                ) from None
            if (
                response.status_code in (429, 502, 503, 504)
                and failures < retry.retries
                and _should_retry(call, None, response.status_code)
            ):
                time.sleep(retry.delay(failures, _retry_after(response)))
                failures += 1
                continue
            return _finish(call, response)

    def close(self) -> None:
        self.client.close()


class _AsyncTransport:
    """Async execution of calls over one pooled keep-alive ``httpx.AsyncClient``."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(**settings.client_kwargs())

    async def call(self, call: _Call[T]) -> T:
        import asyncio

        headers, content = _request_parts(self.settings, call)
        retry = self.settings.retry
        failures = 0
        while True:
            try:
                response = await self.client.request(
                    call.method, call.path, params=call.params, content=content, headers=headers
                )
            except httpx.HTTPError as exc:
                if failures < retry.retries and _should_retry(call, exc, None):
                    await asyncio.sleep(retry.delay(failures, None))
                    failures += 1
                    continue
                raise BackendUnavailable(
                    f"{call.method} {call.path}: {type(exc).__name__}: {exc}"
                ) from None
            if (
                response.status_code in (429, 502, 503, 504)
                and failures < retry.retries
                and _should_retry(call, None, response.status_code)
            ):
                await asyncio.sleep(retry.delay(failures, _retry_after(response)))
                failures += 1
                continue
            return _finish(call, response)

    async def close(self) -> None:
        await self.client.aclose()


# -- server-sent events ----------------------------------------------------------------


class _SSEParser:
    """Incremental text/event-stream parser: feed lines, get (event, id, data) tuples."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []
        self.id: str | None = None

    def feed(self, line: str) -> tuple[str, str | None, str] | None:
        if line == "":
            if not self.data:
                self.event = "message"
                return None
            out = (self.event, self.id, "\n".join(self.data))
            self.event, self.data = "message", []
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.id = value
        return None


def _stream_params(watch: _WatchSpec) -> dict[str, Any]:
    params = _watch_params(
        watch.last_seq, watch.namespace, watch.prefix, watch.timeout, watch.backend
    )
    params["heartbeat"] = repr(float(watch.heartbeat))
    return params


class _WatchSpec:
    """What a watch asked for and where it stands (``last_seq``)."""

    def __init__(
        self,
        last_seq: int,
        namespace: str | None,
        prefix: str,
        timeout: float | None,
        backend: str | None,
        heartbeat: float,
    ) -> None:
        self.last_seq = last_seq
        self.namespace = namespace
        self.prefix = prefix
        self.timeout = timeout
        self.backend = backend
        self.heartbeat = heartbeat


def _start_watch(
    transport: _Transport,
    from_seq: Any,
    namespace: str | None,
    prefix: str,
    timeout: Any,
    backend: str | None,
) -> _WatchSpec:
    """Validate the watch on the server (from_seq, retention, backend) and resolve
    ``from_seq=None`` to the current end, as ``Store.watch`` does at construction."""
    batch = transport.call(_changes_call(from_seq, namespace, prefix, timeout, 0, backend))
    return _WatchSpec(
        batch.last_seq, namespace, prefix, timeout, backend, transport.settings.heartbeat
    )


class RemoteWatch(Iterator[Change]):
    """Iterates changes over server-sent events; same contract as :class:`clawstate.Watch`.

    ``poll()`` reads available changes as JSON-less msgpack batches; iteration holds one
    event stream open (reconnecting with ``Last-Event-ID`` semantics if it drops) and ends
    when the server says the timeout passed, or when ``close()`` is called from another
    thread (noticed at the next change or heartbeat).
    """

    def __init__(self, transport: _Transport, spec: _WatchSpec) -> None:
        self._t = transport
        self._spec = spec
        self._closed = threading.Event()
        self._lines: Iterator[str] | None = None
        self._response: httpx.Response | None = None
        self._stream_cm: Any = None

    @property
    def last_seq(self) -> int:
        return self._spec.last_seq

    def __iter__(self) -> RemoteWatch:
        return self

    def _open(self) -> Iterator[str]:
        headers = {"accept": SSE}
        clock = self._t.settings.clock
        if clock is not None:
            headers[TEST_CLOCK_HEADER] = repr(float(clock()))
        timeout = httpx.Timeout(self._t.settings.timeout, read=self._spec.heartbeat * 3 + 10)
        self._stream_cm = self._t.client.stream(
            "GET",
            "/v1/changes",
            params=_stream_params(self._spec),
            headers=headers,
            timeout=timeout,
        )
        response = self._stream_cm.__enter__()
        if response.status_code >= 300:
            response.read()
            self._drop()
            raise _error(response)
        self._response = response
        self._lines = response.iter_lines()
        return self._lines

    def _drop(self) -> None:
        cm, self._stream_cm, self._response, self._lines = self._stream_cm, None, None, None
        if cm is not None:
            try:
                cm.__exit__(None, None, None)
            except (httpx.HTTPError, RuntimeError):
                pass

    def __next__(self) -> Change:
        parser = _SSEParser()
        failures = 0
        while not self._closed.is_set():
            try:
                lines = self._lines if self._lines is not None else self._open()
                for line in lines:
                    if self._closed.is_set():
                        break
                    event = parser.feed(line)
                    if event is None:
                        continue
                    kind, _, data = event
                    if kind == "change":
                        change = _dec_change_json.decode(data)
                        self._spec.last_seq = change.seq
                        return change
                    if kind == "end":
                        self._spec.last_seq = int(json.loads(data)["last_seq"])
                        self._drop()
                        raise StopIteration
                else:
                    # the stream ended without an end event: reconnect from last_seq
                    self._drop()
                    continue
            except httpx.HTTPError as exc:
                self._drop()
                if self._closed.is_set():
                    break
                retry = self._t.settings.retry
                if failures >= retry.retries:
                    raise BackendUnavailable(f"watch stream: {type(exc).__name__}: {exc}") from None
                time.sleep(retry.delay(failures, None))
                failures += 1
        self._drop()
        raise StopIteration

    def poll(self) -> list[Change]:
        """Every change available now, without waiting."""
        out: list[Change] = []
        s = self._spec
        while True:
            batch = self._t.call(
                _changes_call(s.last_seq, s.namespace, s.prefix, s.timeout, 1000, s.backend)
            )
            s.last_seq = batch.last_seq
            if not batch.changes:
                return out
            out.extend(batch.changes)

    def close(self) -> None:
        self._closed.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except (httpx.HTTPError, RuntimeError):
                pass


class AsyncRemoteWatch(AsyncIterator[Change]):
    """Async twin of :class:`RemoteWatch` (``async for change in watch``)."""

    def __init__(self, transport: _AsyncTransport, spec: _WatchSpec) -> None:
        self._t = transport
        self._spec = spec
        self._closed = False
        self._lines: AsyncIterator[str] | None = None
        self._stream_cm: Any = None

    @property
    def last_seq(self) -> int:
        return self._spec.last_seq

    def __aiter__(self) -> AsyncRemoteWatch:
        return self

    async def _open(self) -> AsyncIterator[str]:
        headers = {"accept": SSE}
        clock = self._t.settings.clock
        if clock is not None:
            headers[TEST_CLOCK_HEADER] = repr(float(clock()))
        timeout = httpx.Timeout(self._t.settings.timeout, read=self._spec.heartbeat * 3 + 10)
        self._stream_cm = self._t.client.stream(
            "GET",
            "/v1/changes",
            params=_stream_params(self._spec),
            headers=headers,
            timeout=timeout,
        )
        response = await self._stream_cm.__aenter__()
        if response.status_code >= 300:
            await response.aread()
            await self._drop()
            raise _error(response)
        self._lines = response.aiter_lines()
        return self._lines

    async def _drop(self) -> None:
        cm, self._stream_cm, self._lines = self._stream_cm, None, None
        if cm is not None:
            try:
                await cm.__aexit__(None, None, None)
            except (httpx.HTTPError, RuntimeError):
                pass

    async def __anext__(self) -> Change:
        import asyncio

        parser = _SSEParser()
        failures = 0
        while not self._closed:
            try:
                lines = self._lines if self._lines is not None else await self._open()
                async for line in lines:
                    if self._closed:
                        break
                    event = parser.feed(line)
                    if event is None:
                        continue
                    kind, _, data = event
                    if kind == "change":
                        change = _dec_change_json.decode(data)
                        self._spec.last_seq = change.seq
                        return change
                    if kind == "end":
                        self._spec.last_seq = int(json.loads(data)["last_seq"])
                        await self._drop()
                        raise StopAsyncIteration
                else:
                    await self._drop()
                    continue
            except httpx.HTTPError as exc:
                await self._drop()
                if self._closed:
                    break
                retry = self._t.settings.retry
                if failures >= retry.retries:
                    raise BackendUnavailable(f"watch stream: {type(exc).__name__}: {exc}") from None
                await asyncio.sleep(retry.delay(failures, None))
                failures += 1
        await self._drop()
        raise StopAsyncIteration

    async def poll(self) -> list[Change]:
        out: list[Change] = []
        s = self._spec
        while True:
            batch = await self._t.call(
                _changes_call(s.last_seq, s.namespace, s.prefix, s.timeout, 1000, s.backend)
            )
            s.last_seq = batch.last_seq
            if not batch.changes:
                return out
            out.extend(batch.changes)

    def close(self) -> None:
        self._closed = True


# -- the event store -----------------------------------------------------------------

_dec_append = msgspec.msgpack.Decoder(AppendResult)
_dec_stream_events = msgspec.msgpack.Decoder(StreamEvents)
_dec_event_page = msgspec.msgpack.Decoder(EventPage)
_dec_event_json = msgspec.json.Decoder(RecordedEvent)


def _stream_path(stream: Any, limits: Limits) -> str:
    check_key(stream, limits.max_key_bytes, field="stream")
    return f"/v1/streams/{quote_key(stream)}/events"


def _append_call(
    limits: Limits, stream: Any, events: Any, expected_version: Any
) -> _Call[AppendResult]:
    """``EventStore.append`` as a request: the facade's own argument checks first, so a
    bad call fails before it is sent, with the same error."""
    path = _stream_path(stream, limits)
    if type(events) is not list:
        if isinstance(events, Event | str | bytes | dict) or not isinstance(events, Iterable):
            raise InvalidRequest(
                "events", f"must be a list of clawstate.Event, got {type(events).__name__}"
            )
        events = list(events)
    for i, ev in enumerate(events):
        if not isinstance(ev, Event):
            raise InvalidRequest(
                f"events[{i}]", f"must be a clawstate.Event, got {type(ev).__name__}"
            )
    expected_code(expected_version)
    body = {"events": events, "expected_version": expected_version}
    # Appends are idempotent by event id: a retry returns the first append's result.
    return _Call("POST", path, None, body, None, True, lambda s, d: _dec_append.decode(d), "events")


def _read_call(
    limits: Limits, stream: Any, from_version: Any, backwards: Any, limit: Any
) -> _Call[list[RecordedEvent]]:
    path = _stream_path(stream, limits)
    if from_version is not None:
        check_position(from_version, "from_version")
    if limit is not None:
        check_int(limit, "limit", 1)
    check_flag(backwards, "backwards")
    params: dict[str, Any] = {"backwards": "true" if backwards else "false"}
    if from_version is not None:
        params["from_version"] = str(from_version)
    if limit is not None:
        params["limit"] = str(limit)
    return _Call(
        "GET", path, params, _NO_BODY, None, True, lambda s, d: _dec_stream_events.decode(d).events
    )


def _filter_params(flt: Any) -> dict[str, Any]:
    _check_filter(flt)
    params: dict[str, Any] = {}
    if flt is not None:
        if not _is_utf8(flt.stream_prefix):
            raise InvalidRequest("filter.stream_prefix", "must be a valid Unicode string")
        if flt.stream_prefix:
            params["stream_prefix"] = flt.stream_prefix
        if flt.types:
            params["type"] = list(flt.types)
    return params


def _page_call(
    limits: Limits, from_position: Any, limit: Any, flt: Any, *, allow_end: bool = False
) -> _Call[EventPage]:
    if not (allow_end and from_position == "end"):
        _check_position(from_position, "from_position")
    _check_limit(limit, limits.max_query_limit)
    params = _filter_params(flt)
    params["from_position"] = str(from_position)
    params["limit"] = str(limit)
    return _Call(
        "GET", "/v1/events", params, _NO_BODY, None, True, lambda s, d: _dec_event_page.decode(d)
    )


class _SubSpec:
    """What a subscription asked for and where it stands (``position``)."""

    def __init__(
        self, position: int, flt: EventFilter | None, timeout: float | None, heartbeat: float
    ) -> None:
        self.position = position
        self.filter = flt
        self.timeout = timeout
        self.heartbeat = heartbeat

    def params(self) -> dict[str, Any]:
        params = _filter_params(self.filter)
        params["from_position"] = str(self.position)
        params["heartbeat"] = repr(float(self.heartbeat))
        if self.timeout is not None:
            params["timeout"] = repr(float(self.timeout))
        return params


def _sub_args(
    limits: Limits, from_position: Any, filter: Any, name: Any, timeout: Any
) -> _Call[EventPage] | None:
    """Check ``subscribe``'s arguments; the call resolving ``"end"``, if needed."""
    if name is not None:
        raise InvalidRequest(
            "name",
            "durable (named) subscriptions are not available over HTTP; keep the "
            "position yourself and pass it as from_position",
        )
    if timeout is not None:
        check_timeout(timeout)
    if from_position == "end":
        return _page_call(limits, "end", 1, None, allow_end=True)
    _check_position(from_position, "from_position")
    _filter_params(filter)
    return None


def _start_position(page: EventPage) -> int:
    return page.events[0].position - 1 if page.events else page.end


def _sse_headers(settings: _Settings) -> dict[str, str]:
    headers = {"accept": SSE}
    if settings.clock is not None:
        headers[TEST_CLOCK_HEADER] = repr(float(settings.clock()))
    return headers


class RemoteSubscription(Iterator[RecordedEvent]):
    """Catch-up-then-live over server-sent events; same contract as
    :class:`clawstate.events.Subscription` (``position``: the last event handed out,
    or scanned past).  Reconnects from ``position`` if the stream drops; ends when the
    server says ``timeout`` passed, or after ``close()``."""

    def __init__(self, transport: _Transport, spec: _SubSpec, limits: Limits) -> None:
        self._t = transport
        self._spec = spec
        self._limits = limits
        self._closed = threading.Event()
        self._lines: Iterator[str] | None = None
        self._response: httpx.Response | None = None
        self._stream_cm: Any = None

    @property
    def position(self) -> int:
        return self._spec.position

    def __iter__(self) -> RemoteSubscription:
        return self

    def __enter__(self) -> RemoteSubscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _open(self) -> Iterator[str]:
        timeout = httpx.Timeout(self._t.settings.timeout, read=self._spec.heartbeat * 3 + 10)
        self._stream_cm = self._t.client.stream(
            "GET",
            "/v1/events/subscribe",
            params=self._spec.params(),
            headers=_sse_headers(self._t.settings),
            timeout=timeout,
        )
        response = self._stream_cm.__enter__()
        if response.status_code >= 300:
            response.read()
            self._drop()
            raise _error(response)
        self._response = response
        self._lines = response.iter_lines()
        return self._lines

    def _drop(self) -> None:
        cm, self._stream_cm, self._response, self._lines = self._stream_cm, None, None, None
        if cm is not None:
            try:
                cm.__exit__(None, None, None)
            except (httpx.HTTPError, RuntimeError):
                pass

    def __next__(self) -> RecordedEvent:
        parser = _SSEParser()
        failures = 0
        while not self._closed.is_set():
            try:
                lines = self._lines if self._lines is not None else self._open()
                for line in lines:
                    if self._closed.is_set():
                        break
                    event = parser.feed(line)
                    if event is None:
                        continue
                    kind, _, data = event
                    if kind == "event":
                        recorded = _dec_event_json.decode(data)
                        self._spec.position = recorded.position
                        return recorded
                    if kind == "end":
                        self._spec.position = max(
                            self._spec.position, int(json.loads(data)["position"])
                        )
                        self._drop()
                        raise StopIteration
                else:
                    self._drop()  # ended without an end event: reconnect from position
                    continue
            except httpx.HTTPError as exc:
                self._drop()
                if self._closed.is_set():
                    break
                retry = self._t.settings.retry
                if failures >= retry.retries:
                    raise BackendUnavailable(
                        f"event subscription: {type(exc).__name__}: {exc}"
                    ) from None
                time.sleep(retry.delay(failures, None))
                failures += 1
        self._drop()
        raise StopIteration

    def poll(self) -> list[RecordedEvent]:
        """Every event available now, without waiting."""
        out: list[RecordedEvent] = []
        s = self._spec
        while True:
            page = self._t.call(_page_call(self._limits, s.position, 1000, s.filter))
            s.position = max(s.position, page.end)
            if not page.events:
                return out
            out.extend(page.events)

    def close(self) -> None:
        self._closed.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except (httpx.HTTPError, RuntimeError):
                pass


class AsyncRemoteSubscription(AsyncIterator[RecordedEvent]):
    """Async twin of :class:`RemoteSubscription` (``async for event in sub``)."""

    def __init__(self, transport: _AsyncTransport, spec: _SubSpec, limits: Limits) -> None:
        self._t = transport
        self._spec = spec
        self._limits = limits
        self._closed = False
        self._lines: AsyncIterator[str] | None = None
        self._stream_cm: Any = None

    @property
    def position(self) -> int:
        return self._spec.position

    def __aiter__(self) -> AsyncRemoteSubscription:
        return self

    async def _open(self) -> AsyncIterator[str]:
        timeout = httpx.Timeout(self._t.settings.timeout, read=self._spec.heartbeat * 3 + 10)
        self._stream_cm = self._t.client.stream(
            "GET",
            "/v1/events/subscribe",
            params=self._spec.params(),
            headers=_sse_headers(self._t.settings),
            timeout=timeout,
        )
        response = await self._stream_cm.__aenter__()
        if response.status_code >= 300:
            await response.aread()
            await self._drop()
            raise _error(response)
        self._lines = response.aiter_lines()
        return self._lines

    async def _drop(self) -> None:
        cm, self._stream_cm, self._lines = self._stream_cm, None, None
        if cm is not None:
            try:
                await cm.__aexit__(None, None, None)
            except (httpx.HTTPError, RuntimeError):
                pass

    async def __anext__(self) -> RecordedEvent:
        import asyncio

        parser = _SSEParser()
        failures = 0
        while not self._closed:
            try:
                lines = self._lines if self._lines is not None else await self._open()
                async for line in lines:
                    if self._closed:
                        break
                    event = parser.feed(line)
                    if event is None:
                        continue
                    kind, _, data = event
                    if kind == "event":
                        recorded = _dec_event_json.decode(data)
                        self._spec.position = recorded.position
                        return recorded
                    if kind == "end":
                        self._spec.position = max(
                            self._spec.position, int(json.loads(data)["position"])
                        )
                        await self._drop()
                        raise StopAsyncIteration
                else:
                    await self._drop()
                    continue
            except httpx.HTTPError as exc:
                await self._drop()
                if self._closed:
                    break
                retry = self._t.settings.retry
                if failures >= retry.retries:
                    raise BackendUnavailable(
                        f"event subscription: {type(exc).__name__}: {exc}"
                    ) from None
                await asyncio.sleep(retry.delay(failures, None))
                failures += 1
        await self._drop()
        raise StopAsyncIteration

    async def poll(self) -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        s = self._spec
        while True:
            page = await self._t.call(_page_call(self._limits, s.position, 1000, s.filter))
            s.position = max(s.position, page.end)
            if not page.events:
                return out
            out.extend(page.events)

    def close(self) -> None:
        self._closed = True


class RemoteEvents:
    """``store.events`` over HTTP: append, read, read_all and subscribe, with
    :class:`clawstate.events.EventStore`'s signatures, results and errors."""

    def __init__(self, store: RemoteStore) -> None:
        self._t = store._t
        self._limits = store._limits

    def __repr__(self) -> str:
        return f"<RemoteEvents {self._t.settings.url}>"

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        return self._t.call(_append_call(self._limits, stream, events, expected_version))

    def read(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        return self._t.call(_read_call(self._limits, stream, from_version, backwards, limit))

    def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[RecordedEvent]:
        return self._t.call(_page_call(self._limits, from_position, limit, filter)).events

    def subscribe(
        self,
        from_position: int | str = 0,
        *,
        filter: EventFilter | None = None,
        name: str | None = None,
        timeout: float | None = None,
    ) -> RemoteSubscription:
        resolve = _sub_args(self._limits, from_position, filter, name, timeout)
        start = _start_position(self._t.call(resolve)) if resolve else int(from_position)
        spec = _SubSpec(start, filter, timeout, self._t.settings.heartbeat)
        return RemoteSubscription(self._t, spec, self._limits)


class AsyncRemoteEvents:
    """Awaitable twin of :class:`RemoteEvents`."""

    def __init__(self, store: AsyncRemoteStore) -> None:
        self._t = store._t
        self._sync_t = store._sync._t
        self._limits = store._limits

    async def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        return await self._t.call(_append_call(self._limits, stream, events, expected_version))

    async def read(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        return await self._t.call(_read_call(self._limits, stream, from_version, backwards, limit))

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[RecordedEvent]:
        return (await self._t.call(_page_call(self._limits, from_position, limit, filter))).events

    def subscribe(
        self,
        from_position: int | str = 0,
        *,
        filter: EventFilter | None = None,
        name: str | None = None,
        timeout: float | None = None,
    ) -> AsyncRemoteSubscription:
        """Like ``AsyncEventStore.subscribe``: not awaited (``"end"`` is resolved with
        one synchronous request, as ``AsyncRemoteStore.watch`` does)."""
        resolve = _sub_args(self._limits, from_position, filter, name, timeout)
        start = _start_position(self._sync_t.call(resolve)) if resolve else int(from_position)
        spec = _SubSpec(start, filter, timeout, self._t.settings.heartbeat)
        return AsyncRemoteSubscription(self._t, spec, self._limits)


# -- the sync facade -------------------------------------------------------------------


def _refuse_namespace_options(options: Mapping[str, Any]) -> None:
    """Namespace options given to a remote store: refused, never sent (see
    :meth:`RemoteStore.namespace`)."""
    names = ", ".join(sorted(options))
    raise InvalidRequest(
        "options",
        f"namespace options ({names}) cannot be set through a remote store: namespace "
        "policy is the server operator's, set in the server's configuration file "
        "([namespaces.<name>] in its clawstate.toml)",
    )


class RemoteNamespace:
    """:class:`clawstate.Namespace` over HTTP."""

    def __init__(self, store: RemoteStore, name: str) -> None:
        self._store = store
        self._t = store._t
        self.name = name
        self._spec = _NsSpec(name, store._limits)

    def __repr__(self) -> str:
        return f"<RemoteNamespace {self.name!r} on {self._store.url}>"

    def get(self, key: str) -> Item | None:
        return self._t.call(_get_call(self._spec, key))

    def get_many(self, keys: Iterable[str]) -> dict[str, Item]:
        return self._t.call(_get_many_call(self._spec, keys))

    def scan(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page:
        return self._t.call(_scan_call(self._spec, prefix, limit, cursor))

    def query(self, query: Any) -> Page:
        return self._t.call(_query_call(self._spec, query))

    def count(self) -> int:
        return self._t.call(_count_call(self._spec))

    def watch(
        self, from_seq: int | None = 0, *, prefix: str = "", timeout: float | None = None
    ) -> RemoteWatch:
        return self._store.watch(from_seq, namespace=self.name, prefix=prefix, timeout=timeout)

    def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        idempotency_key: str | None = None,
        keep_ttl: bool = False,
    ) -> Item:
        return self._t.call(
            _put_call(self._spec, key, value, ttl, if_version, if_absent, idempotency_key, keep_ttl)
        )

    def put_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
    ) -> list[Item]:
        call = _put_many_call(self._spec, items, ttl, idempotency_key)
        if not call.body["items"]:
            return []
        return self._t.call(call)

    def delete(
        self, key: str, *, if_version: int | None = None, idempotency_key: str | None = None
    ) -> bool:
        return self._t.call(_delete_call(self._spec, key, if_version, idempotency_key))


class _TxBuffer:
    """A transaction's buffered writes, checked as they are added (like the facade's)."""

    def __init__(self, limits: Limits, idem: Any) -> None:
        _check_idem(idem)
        self.limits = limits
        self.idem = idem
        self.writes: list[dict[str, Any]] = []
        self.values: list[Any] = []
        self.done = False
        self.result: list[Item | bool] = []

    def check_open(self) -> None:
        if self.done:
            raise InvalidRequest("transaction", "already committed or rolled back")

    def add(self, write: dict[str, Any], value: Any) -> None:
        self.check_open()
        limit = self.limits.max_batch
        if len(self.writes) >= limit:
            raise InvalidRequest(
                "transaction", f"more than {limit} writes; the limit is {limit}", limit=limit
            )
        self.writes.append(write)
        self.values.append(value)

    def put(
        self,
        ns: str,
        key: Any,
        value: Any,
        ttl: Any,
        if_version: Any,
        if_absent: bool,
        keep_ttl: bool = False,
    ) -> None:
        check_key(key, self.limits.max_key_bytes)
        check_flag(if_absent, "if_absent")
        _check_keep_ttl(keep_ttl, ttl)
        if if_version is not None:
            check_version(if_version)
            if if_absent:
                raise InvalidRequest("if_absent", "cannot be combined with if_version")
        if ttl is not None:
            check_ttl(ttl, self.limits.max_ttl_seconds)
        _check_value(value)
        write: dict[str, Any] = {"op": "put", "namespace": ns, "key": key, "value": value}
        if ttl is not None:
            write["ttl"] = ttl
        if if_version is not None:
            write["if_version"] = if_version
        if if_absent:
            write["if_absent"] = True
        if keep_ttl:
            write["keep_ttl"] = True
        self.add(write, value)

    def delete(self, ns: str, key: Any, if_version: Any) -> None:
        check_key(key, self.limits.max_key_bytes)
        if if_version is not None:
            check_version(if_version)
        write: dict[str, Any] = {"op": "delete", "namespace": ns, "key": key}
        if if_version is not None:
            write["if_version"] = if_version
        self.add(write, None)

    def commit_call(self) -> _Call[list[Item | bool]] | None:
        self.check_open()
        self.done = True
        if not self.writes:
            return None
        return _tx_call(self.writes, self.idem, self.values)


class RemoteTxNamespace:
    """A namespace inside a :class:`RemoteTransaction`: writes buffer until commit;
    ``get`` reads committed state (as :class:`clawstate.TxNamespace` does)."""

    def __init__(self, tx: RemoteTransaction, ns: RemoteNamespace) -> None:
        self._tx = tx
        self._ns = ns
        self.name = ns.name

    def get(self, key: str) -> Item | None:
        return self._ns.get(key)

    def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        keep_ttl: bool = False,
    ) -> None:
        self._tx._buf.put(self.name, key, value, ttl, if_version, if_absent, keep_ttl)

    def delete(self, key: str, *, if_version: int | None = None) -> None:
        self._tx._buf.delete(self.name, key, if_version)


class RemoteTransaction:
    """:class:`clawstate.Transaction` over HTTP: one request at commit, atomic on the server."""

    def __init__(self, store: RemoteStore, idempotency_key: str | None) -> None:
        self._store = store
        self._buf = _TxBuffer(store._limits, idempotency_key)

    @property
    def result(self) -> list[Item | bool]:
        return self._buf.result

    @property
    def _done(self) -> bool:
        return self._buf.done

    def namespace(self, name: str) -> RemoteTxNamespace:
        self._buf.check_open()
        return RemoteTxNamespace(self, self._store.namespace(name))

    def commit(self) -> list[Item | bool]:
        call = self._buf.commit_call()
        if call is not None:
            done: list[Item | bool] = self._store._t.call(call)
            self._buf.result.extend(done)
        return self._buf.result

    def rollback(self) -> None:
        self._buf.done = True
        self._buf.writes.clear()

    def __enter__(self) -> RemoteTransaction:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._buf.done:
            self.commit()
        elif not self._buf.done:
            self.rollback()


def _limits_from(doc: Any) -> Limits:
    fields = set(Limits.__struct_fields__)
    return msgspec.convert({k: v for k, v in dict(doc).items() if k in fields}, Limits)


class RemoteStore:
    """:class:`clawstate.Store` over HTTP.  Build it with ``clawstate.open("http://…")``.

    Thread-safe: one pooled keep-alive connection set, shared by all threads.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        clock: Callable[[], float] | None = None,
        **options: Any,
    ) -> None:
        unknown = set(options) - CLIENT_OPTIONS
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(
                name,
                "is not an option of the HTTP client (it takes "
                f"{', '.join(sorted(CLIENT_OPTIONS))}); store-side settings such as limits "
                "and namespace policies are configured on the server",
            )
        if token is None:
            token = os.environ.get("CLAWSTATE_TOKEN") or None
        self._settings = _Settings(url, token, clock, **options)
        self.url = self._settings.url
        self._t = _Transport(self._settings)
        try:
            info = self._t.call(_simple("GET", "/v1/info"))
        except BaseException:
            self._t.close()
            raise
        self._info = info
        self._limits = _limits_from(info.get("limits", {}))
        self.config = Config(url=self.url, limits=self._limits, sweep_interval=0)
        self._namespaces: dict[str, RemoteNamespace] = {}
        self._closed = False

    @classmethod
    def _from_settings(cls, settings: _Settings) -> RemoteStore:
        self = cls.__new__(cls)
        self._settings = settings
        self.url = settings.url
        self._t = _Transport(settings)
        self._info = self._t.call(_simple("GET", "/v1/info"))
        self._limits = _limits_from(self._info.get("limits", {}))
        self.config = Config(url=self.url, limits=self._limits, sweep_interval=0)
        self._namespaces = {}
        self._closed = False
        return self

    def __repr__(self) -> str:
        return f"<RemoteStore {self.url}>"

    def namespace(self, name: str, /, **options: Any) -> RemoteNamespace:
        """The namespace ``name`` under the server's policy for it.

        ``options`` (the embedded store's per-namespace policy in code) are refused: on a
        server, policy is the operator's, set in the server's configuration file, and no
        request may change it (DESIGN.md, "Where policy lives")."""
        if options:
            _refuse_namespace_options(options)
        if type(name) is str:
            ns = self._namespaces.get(name)
            if ns is not None:
                return ns
        check_namespace_name(name, self._limits.max_namespace_len)
        ns = self._namespaces[name] = RemoteNamespace(self, name)
        return ns

    def namespaces(self) -> list[str]:
        return list(self._t.call(_simple("GET", "/v1/namespaces"))["namespaces"])

    @property
    def events(self) -> RemoteEvents:
        """The event store over HTTP (``store.events``)."""
        return RemoteEvents(self)

    def transaction(self, *, idempotency_key: str | None = None) -> RemoteTransaction:
        return RemoteTransaction(self, idempotency_key)

    def watch(
        self,
        from_seq: int | None = 0,
        *,
        namespace: str | None = None,
        prefix: str = "",
        timeout: float | None = None,
        backend: str | None = None,
    ) -> RemoteWatch:
        spec = _start_watch(self._t, from_seq, namespace, prefix, timeout, backend)
        return RemoteWatch(self._t, spec)

    @property
    def last_seq(self) -> int:
        """The newest change-log seq of the default backend."""
        return self._t.call(_changes_call(None, None, "", None, 0, "default")).last_seq

    def sweep(self) -> dict[str, int]:
        return dict(self._t.call(_simple("POST", "/v1/admin/sweep")))

    def stats(self) -> dict[str, Any]:
        return dict(self._t.call(_simple("GET", "/v1/admin/stats")))

    def check(self, *, deep: bool = False) -> CheckReport:
        doc = self._t.call(_simple("GET", "/v1/admin/check", {"deep": "true" if deep else "false"}))
        return CheckReport(list(doc["problems"]), dict(doc["checked"]))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._t.close()

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- the async facade ------------------------------------------------------------------


class AsyncRemoteNamespace:
    """Awaitable twin of :class:`RemoteNamespace`."""

    def __init__(self, store: AsyncRemoteStore, name: str) -> None:
        self._store = store
        self._t = store._t
        self.name = name
        self._spec = _NsSpec(name, store._limits)

    async def get(self, key: str) -> Item | None:
        return await self._t.call(_get_call(self._spec, key))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Item]:
        return await self._t.call(_get_many_call(self._spec, keys))

    async def scan(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page:
        return await self._t.call(_scan_call(self._spec, prefix, limit, cursor))

    async def query(self, query: Any) -> Page:
        return await self._t.call(_query_call(self._spec, query))

    async def count(self) -> int:
        return await self._t.call(_count_call(self._spec))

    def watch(
        self, from_seq: int | None = 0, *, prefix: str = "", timeout: float | None = None
    ) -> AsyncRemoteWatch:
        return self._store.watch(from_seq, namespace=self.name, prefix=prefix, timeout=timeout)

    async def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        idempotency_key: str | None = None,
        keep_ttl: bool = False,
    ) -> Item:
        return await self._t.call(
            _put_call(self._spec, key, value, ttl, if_version, if_absent, idempotency_key, keep_ttl)
        )

    async def put_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
    ) -> list[Item]:
        call = _put_many_call(self._spec, items, ttl, idempotency_key)
        if not call.body["items"]:
            return []
        return await self._t.call(call)

    async def delete(
        self, key: str, *, if_version: int | None = None, idempotency_key: str | None = None
    ) -> bool:
        return await self._t.call(_delete_call(self._spec, key, if_version, idempotency_key))


class AsyncRemoteTxNamespace:
    def __init__(self, tx: AsyncRemoteTransaction, ns: AsyncRemoteNamespace) -> None:
        self._tx = tx
        self._ns = ns
        self.name = ns.name

    async def get(self, key: str) -> Item | None:
        return await self._ns.get(key)

    async def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        keep_ttl: bool = False,
    ) -> None:
        self._tx._buf.put(self.name, key, value, ttl, if_version, if_absent, keep_ttl)

    async def delete(self, key: str, *, if_version: int | None = None) -> None:
        self._tx._buf.delete(self.name, key, if_version)


class AsyncRemoteTransaction:
    """``async with astore.transaction() as tx:`` — one request when the block exits."""

    def __init__(self, store: AsyncRemoteStore, idempotency_key: str | None) -> None:
        self._store = store
        self._buf = _TxBuffer(store._limits, idempotency_key)

    @property
    def result(self) -> list[Item | bool]:
        return self._buf.result

    def namespace(self, name: str) -> AsyncRemoteTxNamespace:
        self._buf.check_open()
        return AsyncRemoteTxNamespace(self, self._store.namespace(name))

    async def commit(self) -> list[Item | bool]:
        call = self._buf.commit_call()
        if call is not None:
            done: list[Item | bool] = await self._store._t.call(call)
            self._buf.result.extend(done)
        return self._buf.result

    def rollback(self) -> None:
        self._buf.done = True
        self._buf.writes.clear()

    async def __aenter__(self) -> AsyncRemoteTransaction:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._buf.done:
            await self.commit()
        elif not self._buf.done:
            self.rollback()


class AsyncRemoteStore:
    """Awaitable twin of :class:`RemoteStore`.  Build it with ``clawstate.open_async``.

    Construction (and ``watch()``, like ``AsyncStore.watch``) talk to the server
    synchronously once; everything else is awaited on one ``httpx.AsyncClient``.
    """

    def __init__(self, sync: RemoteStore) -> None:
        self._sync = sync
        self._limits = sync._limits
        self._t = _AsyncTransport(sync._settings)
        self.url = sync.url
        self._namespaces: dict[str, AsyncRemoteNamespace] = {}

    @property
    def sync(self) -> RemoteStore:
        """A sync client on the same server and token (same data)."""
        return self._sync

    @property
    def config(self) -> Config:
        return self._sync.config

    def namespace(self, name: str, /, **options: Any) -> AsyncRemoteNamespace:
        """See :meth:`RemoteStore.namespace`: ``options`` are refused."""
        if not options and type(name) is str and name in self._namespaces:
            return self._namespaces[name]
        self._sync.namespace(name, **options)  # the same checks, synchronously
        ans = self._namespaces[name] = AsyncRemoteNamespace(self, name)
        return ans

    def transaction(self, *, idempotency_key: str | None = None) -> AsyncRemoteTransaction:
        return AsyncRemoteTransaction(self, idempotency_key)

    @property
    def events(self) -> AsyncRemoteEvents:
        """The event store over HTTP, awaitable (``astore.events``)."""
        return AsyncRemoteEvents(self)

    def watch(
        self,
        from_seq: int | None = 0,
        *,
        namespace: str | None = None,
        prefix: str = "",
        timeout: float | None = None,
        backend: str | None = None,
    ) -> AsyncRemoteWatch:
        spec = _start_watch(self._sync._t, from_seq, namespace, prefix, timeout, backend)
        return AsyncRemoteWatch(self._t, spec)

    async def namespaces(self) -> list[str]:
        return list((await self._t.call(_simple("GET", "/v1/namespaces")))["namespaces"])

    async def sweep(self) -> dict[str, int]:
        return dict(await self._t.call(_simple("POST", "/v1/admin/sweep")))

    async def stats(self) -> dict[str, Any]:
        return dict(await self._t.call(_simple("GET", "/v1/admin/stats")))

    async def check(self, *, deep: bool = False) -> CheckReport:
        doc = await self._t.call(
            _simple("GET", "/v1/admin/check", {"deep": "true" if deep else "false"})
        )
        return CheckReport(list(doc["problems"]), dict(doc["checked"]))

    async def close(self) -> None:
        await self._t.close()
        self._sync.close()

    async def __aenter__(self) -> AsyncRemoteStore:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def connect(
    url: str, *, token: str | None = None, clock: Callable[[], float] | None = None, **options: Any
) -> RemoteStore:
    """The sync client (what ``clawstate.open`` returns for http(s) URLs)."""
    return RemoteStore(url, token=token, clock=clock, **options)


def connect_async(
    url: str, *, token: str | None = None, clock: Callable[[], float] | None = None, **options: Any
) -> AsyncRemoteStore:
    """The async client (what ``clawstate.open_async`` returns for http(s) URLs)."""
    return AsyncRemoteStore(RemoteStore(url, token=token, clock=clock, **options))
