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

The package, by job:

=====================  =============================================================
``_calls``             the ``_Call`` core: key/value operations, transaction buffer
``_event_calls``       the event store's operations as calls
``_transport``         retries, the sync and async transports, errors from problems
``_sse``               server-sent event readers: watches and subscriptions
``_events``            ``store.events`` (sync and async faces)
``_sync`` / ``_async`` the store, namespace and transaction faces
=====================  =============================================================
"""

from __future__ import annotations

from ..errors import RateLimited
from ._async import (
    AsyncRemoteNamespace,
    AsyncRemoteStore,
    AsyncRemoteTransaction,
    AsyncRemoteTxNamespace,
)
from ._calls import _Call
from ._events import (
    AsyncRemoteEvents,
    AsyncRemoteSnapshots,
    AsyncRemoteSubscription,
    AsyncRemoteTxEvents,
    RemoteEvents,
    RemoteSnapshots,
    RemoteSubscription,
    RemoteTxEvents,
)
from ._sse import AsyncRemoteWatch, RemoteWatch
from ._sync import RemoteNamespace, RemoteStore, RemoteTransaction, RemoteTxNamespace
from ._transport import (
    CLIENT_OPTIONS,
    TEST_CLOCK_HEADER,
    ExponentialBackoff,
    Retry,
    _should_retry,
)

__all__ = [
    "CLIENT_OPTIONS",
    "TEST_CLOCK_HEADER",
    "AsyncRemoteEvents",
    "AsyncRemoteNamespace",
    "AsyncRemoteSnapshots",
    "AsyncRemoteStore",
    "AsyncRemoteSubscription",
    "AsyncRemoteTransaction",
    "AsyncRemoteTxEvents",
    "AsyncRemoteTxNamespace",
    "AsyncRemoteWatch",
    "ExponentialBackoff",
    "RateLimited",
    "RemoteEvents",
    "RemoteNamespace",
    "RemoteSnapshots",
    "RemoteStore",
    "RemoteSubscription",
    "RemoteTransaction",
    "RemoteTxEvents",
    "RemoteTxNamespace",
    "RemoteWatch",
    "Retry",
    "_Call",
    "_should_retry",
]
