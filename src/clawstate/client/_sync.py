"""The sync facade: :class:`RemoteStore`, its namespaces and transactions."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from .._retry import update_item
from .._validate import check_key_list, check_namespace_name
from ..config import Config, Limits
from ..errors import ConfigError, InvalidRequest
from ..locks import LockContext
from ..types import (
    AppendResult,
    CheckReport,
    Item,
    Page,
)
from ._calls import (
    _changes_call,
    _count_call,
    _delete_call,
    _get_call,
    _get_many_call,
    _NsSpec,
    _put_call,
    _put_many_call,
    _query_call,
    _scan_call,
    _simple,
    _TxBuffer,
)
from ._events import CHECKPOINT_ROUTES, RemoteEvents, RemoteTxEvents, _RemoteCheckpoints
from ._locks import RemoteLocks
from ._machines import RemoteMachine
from ._machines import list_call as _machines_list_call
from ._sse import (
    RemoteWatch,
    _start_watch,
)
from ._timers import RemoteTimers
from ._transport import (
    CLIENT_OPTIONS,
    _Settings,
    _Transport,
)

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

    def query(self, query: Any, *, explain: bool = False) -> Page:
        return self._t.call(_query_call(self._spec, query, explain))

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
        fence: Any = None,
    ) -> Item:
        return self._t.call(
            _put_call(
                self._spec, key, value, ttl, if_version, if_absent, idempotency_key, keep_ttl, fence
            )
        )

    def put_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> list[Item]:
        call = _put_many_call(self._spec, items, ttl, idempotency_key, fence)
        if not call.body["items"]:
            return []
        return self._t.call(call)

    def delete(
        self,
        key: str,
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> bool:
        return self._t.call(_delete_call(self._spec, key, if_version, idempotency_key, fence))

    def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        ttl: float | None = None,
        retries: int = 10,
    ) -> Item:
        """``Namespace.update`` over HTTP: read ``key``, store ``fn(value)``
        (``fn(default)`` when absent) conditionally on what was read, retried on
        :class:`~clawstate.VersionConflict` — ``fn`` may run more than once."""
        limits = self._spec.limits
        return update_item(
            self,
            key,
            fn,
            default=default,
            ttl=ttl,
            retries=retries,
            max_key_bytes=limits.max_key_bytes,
            max_ttl=limits.max_ttl_seconds,
        )


class RemoteTxNamespace:
    """A namespace inside a :class:`RemoteTransaction`: writes buffer until commit;
    ``get`` sees them first, then committed state (as :class:`clawstate.TxNamespace`)."""

    def __init__(self, tx: RemoteTransaction, ns: RemoteNamespace | _RemoteCheckpoints) -> None:
        self._tx = tx
        self._ns = ns
        self.name = ns.name

    def get(self, key: str) -> Item | None:
        """The item at ``key`` as this transaction would leave it: its own buffered
        writes first, then committed state (as :class:`clawstate.TxNamespace`)."""
        committed = self._ns.get(key)
        buf = self._tx._buf
        if not buf.touches(self.name, key):
            return committed
        return buf.overlay(self.name, key, committed, self._tx._started, self._tx._store._now())

    def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        keep_ttl: bool = False,
        fence: Any = None,
    ) -> None:
        self._tx._buf.put(self.name, key, value, ttl, if_version, if_absent, keep_ttl, fence)

    def delete(self, key: str, *, if_version: int | None = None, fence: Any = None) -> None:
        self._tx._buf.delete(self.name, key, if_version, fence)

    def get_many(self, keys: Iterable[str]) -> dict[str, Item]:
        """The live items among ``keys`` as this transaction would leave them."""
        if not isinstance(self._ns, RemoteNamespace):
            raise InvalidRequest("namespace", f"{self.name!r} takes get, not get_many")
        keys = check_key_list(
            keys, self._ns._spec.limits.max_batch, self._ns._spec.limits.max_key_bytes
        )
        found = self._ns.get_many(keys)
        buf, start, now = self._tx._buf, self._tx._started, self._tx._store._now()
        out: dict[str, Item] = {}
        for key in keys:
            item = found.get(key)
            if buf.touches(self.name, key):
                item = buf.overlay(self.name, key, item, start, now)
            if item is not None:
                out[key] = item
        return out


class RemoteTransaction:
    """:class:`clawstate.Transaction` over HTTP: one request at commit, atomic on the server."""

    def __init__(self, store: RemoteStore, idempotency_key: str | None) -> None:
        self._store = store
        self._buf = _TxBuffer(store._limits, idempotency_key)
        #: when the transaction began: its buffered puts' times, as in-process
        self._started = store._now()

    @property
    def result(self) -> list[Item | bool]:
        return self._buf.result

    @property
    def _done(self) -> bool:
        return self._buf.done

    @property
    def appended(self) -> list[AppendResult]:
        """One :class:`~clawstate.AppendResult` per ``tx.events.append``, after commit."""
        return self._buf.appended

    @property
    def events(self) -> RemoteTxEvents:
        """Appends committed atomically with this transaction's writes (the outbox)."""
        self._buf.check_open()
        return RemoteTxEvents(self._buf, self._store._limits)

    def namespace(self, name: str) -> RemoteTxNamespace:
        self._buf.check_open()
        return RemoteTxNamespace(self, self._store.namespace(name))

    def _system_namespace(self, name: str) -> RemoteTxNamespace:
        """The event store's checkpoint namespace inside this transaction, as
        :meth:`clawstate.Transaction._system_namespace` gives it to the projection
        runner (the server authorizes its writes by ``events:*:read``)."""
        self._buf.check_open()
        return RemoteTxNamespace(self, self._store._system_namespace(name))

    def commit(self) -> list[Item | bool]:
        call = self._buf.commit_call()
        if call is not None:
            self._buf.committed(self._store._t.call(call))
        return self._buf.result

    def rollback(self) -> None:
        self._buf.rollback()

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
        self._events: RemoteEvents | None = None
        #: the clock the event store's in-process helpers read (leases, lag)
        self._clock = self._now
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
        self._events = None
        self._clock = self._now
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

    def _now(self) -> float:
        """This client's clock (the one it sends to a test server), else the time."""
        clock = self._settings.clock
        return clock() if clock is not None else time.time()

    @property
    def events(self) -> RemoteEvents:
        """The event store over HTTP (``store.events``): one per store, so upcasters
        registered on it stay."""
        if self._events is None:
            self._events = RemoteEvents(self)
        return self._events

    def _system_namespace(self, name: str) -> _RemoteCheckpoints:
        """A checkpoint namespace of the event store (``_projections``,
        ``_subscriptions``), over its routes, for the in-process runner and durable
        subscription run here; the other reserved namespaces are not reachable over HTTP."""
        if name not in CHECKPOINT_ROUTES:
            raise InvalidRequest(
                "namespace",
                f"{name!r} is not reachable over HTTP (the event store's checkpoints "
                f"{', '.join(sorted(CHECKPOINT_ROUTES))} are)",
            )
        return _RemoteCheckpoints(self, name)

    def _any_namespace(self, name: str) -> RemoteNamespace | _RemoteCheckpoints:
        """An application namespace, or a checkpoint namespace of the event store (as
        ``Store._any_namespace`` serves maintenance walks in-process)."""
        return self._system_namespace(name) if name.startswith("_") else self.namespace(name)

    def transaction(self, *, idempotency_key: str | None = None) -> RemoteTransaction:
        return RemoteTransaction(self, idempotency_key)

    def machine(self, name: str, definition: Any = None) -> RemoteMachine:
        """The state machine ``name`` over HTTP (see ``Store.machine``): a data
        ``definition`` (dict or TOML text) is stored first; None uses the stored one."""
        return RemoteMachine(self._t, name, definition)

    def list_machines(self) -> list[str]:
        """The machines with a stored definition that this token may read."""
        return self._t.call(_machines_list_call())

    @property
    def timers(self) -> RemoteTimers:
        """Durable timers over HTTP (see ``Store.timers``; firing is the worker's)."""
        return RemoteTimers(self._t)

    @property
    def locks(self) -> RemoteLocks:
        """Leases with fencing tokens over HTTP (see ``Store.locks``)."""
        return RemoteLocks(self._t)

    def lock(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = None,
        renew: bool = False,
        owner: str | None = None,
    ) -> LockContext:
        """``with store.lock(name, ...) as lease:`` over HTTP (see ``Store.lock``)."""
        return LockContext(self.locks, name, ttl, wait, renew, owner)

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
