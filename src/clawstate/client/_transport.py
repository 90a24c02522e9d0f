"""Executing calls: retries and backoff, the sync and async ``httpx`` transports, and
turning the server's problem documents back into the store's errors."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .. import __version__
from .._wire import (
    MSGPACK,
    NotFound,
    error_from_problem,
)
from ..errors import BackendUnavailable, ClawStateError, InvalidRequest, RateLimited
from ._calls import (
    _NO_BODY,
    T,
    _Call,
    _encode,
)

#: ``open()`` options the client itself takes.
CLIENT_OPTIONS = frozenset(
    {"timeout", "retry", "headers", "verify", "max_connections", "heartbeat"}
)
TEST_CLOCK_HEADER = "clawstate-test-clock"


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
    if status < 300 or (status == 404 and call.method == "GET" and _absent_ok(call.path)):
        if status == 404:
            doc = _problem(response)
            if doc.get("title") != "NotFound":
                raise error_from_problem(doc, status)
        return call.parse(status, response.content)
    raise _error(response)


def _absent_ok(path: str) -> bool:
    """A GET whose 404 means "absent" (an item, a lock's lease, a machine or one of its
    instances, a timer): the call answers None."""
    return (
        "/items/" in path
        or path.startswith("/v1/locks/")
        or path.startswith("/v1/machines/")
        or path.startswith("/v1/timers/")
    )


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
        return RateLimited(_retry_after(response), str(doc.get("detail") or "rate limited"))
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
