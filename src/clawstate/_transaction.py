"""Transaction and TxNamespace: writes to several namespaces, committed atomically.

Kept apart from :mod:`clawstate.store` because a transaction is its own job —
buffering writes, fingerprinting them for idempotency, committing them in one
backend call and applying the outcome to the caches — and needs of the store only
the members :class:`TransactionHost` lists.  Like :mod:`clawstate._namespace` it
names the store through that Protocol, never by importing ``clawstate.store``
(which imports this module), so no import loop forms.  Applications import these
names from :mod:`clawstate` or :mod:`clawstate.store`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ._namespace import Namespace, NamespaceHost, _etag, _fingerprint
from ._validate import check_key, check_key_list, check_version
from .backends.base import OP_DELETE, Backend, EventWrite, Outcome, Write, WriteUnit
from .errors import InvalidRequest
from .types import AppendResult, Item

if TYPE_CHECKING:
    from .events.store import EventStore, TxEvents

__all__ = ["Transaction", "TransactionHost", "TxNamespace"]


class TransactionHost(NamespaceHost, Protocol):
    """What a :class:`Transaction` needs of its store, beyond what a namespace does."""

    @property
    def events(self) -> EventStore: ...

    def _system_namespace(self, name: str) -> Namespace: ...

    def _cache_committed(self, writes: list[Write], outcomes: list[Outcome]) -> None: ...


class TxNamespace:
    """A namespace as seen inside a transaction: writes are buffered until commit.

    Reads (``get``, ``get_many``) see the transaction's own buffered writes first —
    a put reads back as its value, a delete as absent — and committed state for
    keys the transaction has not written.  An item read back from a buffered put
    has ``version == 0`` and an empty ``etag`` (its version is assigned when it
    commits; ``tx.result`` then holds the committed items); its ``expires_at`` is
    what the commit will give it (``ttl``, ``keep_ttl``, the namespace default),
    and it reads as absent once that time has passed.  Conditions (``if_version``,
    ``if_absent``) are checked at commit, each against the state the transaction's
    earlier writes leave; a failed one refuses the whole transaction.
    """

    def __init__(self, tx: Transaction, ns: Namespace) -> None:
        self._tx = tx
        self._ns = ns
        self.name = ns.name

    def get(self, key: str) -> Item | None:
        """The live item at ``key`` as this transaction would leave it."""
        check_key(key, self._ns._max_key)
        writes = self._tx._buffered(self.name, key)
        if not writes:
            return self._ns.get(key)
        return self._tx._overlay(self._ns, key, writes, self._ns.get(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, Item]:
        """The live items among ``keys`` as this transaction would leave them."""
        keys = check_key_list(keys, self._ns._max_batch, self._ns._max_key)
        found = self._ns.get_many(keys)
        out: dict[str, Item] = {}
        for key in keys:
            writes = self._tx._buffered(self.name, key)
            item = found.get(key)
            if writes:
                item = self._tx._overlay(self._ns, key, writes, item)
            if item is not None:
                out[key] = item
        return out

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
        """Buffer a put (see :meth:`Namespace.put`); ``fence=lease`` refuses the whole
        transaction with :class:`FencingError` once a newer lease of that name exists."""
        parts: list[Any] = ["put", self.name, key, value, ttl, if_version, if_absent]
        if keep_ttl:
            parts.append("keep_ttl")
        if fence is not None:
            self._tx._fence(fence, self._ns)
        self._tx._add(
            self._ns._put_write(key, value, ttl, if_version, if_absent, self._tx._now, keep_ttl),
            value,
            parts,
            self._ns,
        )

    def delete(self, key: str, *, if_version: int | None = None, fence: Any = None) -> None:
        """Buffer a delete; ``fence=lease``: as :meth:`put`."""
        check_key(key, self._ns._max_key)
        if if_version is not None:
            check_version(if_version)
        if fence is not None:
            self._tx._fence(fence, self._ns)
        self._tx._add(
            Write(self.name, key, OP_DELETE, None, None, if_version),
            None,
            ["delete", self.name, key, if_version],
            self._ns,
        )


class Transaction:
    """Writes to several namespaces, committed atomically when the block exits.

    ``with store.transaction() as tx: tx.namespace("a").put(...)``.  If any
    condition fails, :class:`VersionConflict` is raised and nothing is written.
    ``result`` holds one entry per write after commit: an Item for a put, a
    bool for a delete.
    """

    def __init__(self, store: TransactionHost, idempotency_key: str | None = None) -> None:
        self._store = store
        self._idem = idempotency_key
        self._now = store._clock()
        self._writes: list[Write] = []
        self._values: list[Any] = []
        self._parts: list[Any] = []
        self._done = False
        #: the first namespace written: the transaction's backend is its backend
        self._target: Namespace | None = None
        self.result: list[Item | bool] = []
        #: event appends (``tx.events``), committed in the same unit as the writes
        self._events: list[EventWrite] = []
        self._events_on: Backend | None = None
        #: one AppendResult per ``tx.events.append``, after commit
        self.appended: list[AppendResult] = []
        #: (namespace, key) -> indexes into ``_writes``: what reads in the transaction see
        self._by_key: dict[tuple[str, str], list[int]] = {}
        #: the fencing checks the commit sends ahead of the writes, one per (name, token)
        self._fences: dict[tuple[str, int], Write] = {}

    @property
    def events(self) -> TxEvents:
        """Appends committed atomically with this transaction's writes — the
        transactional outbox: ``tx.events.append("order-1", [Event(...)])``."""
        self._check_open()
        from .events.store import TxEvents

        return TxEvents(self, self._store.events)

    def namespace(self, name: str) -> TxNamespace:
        self._check_open()
        return TxNamespace(self, self._store.namespace(name))

    def _system_namespace(self, name: str) -> TxNamespace:
        """A reserved namespace (``_audit``, ``_tokens``) inside this transaction: the
        twin of :meth:`Store._system_namespace`, for the modules that own those names."""
        self._check_open()
        return TxNamespace(self, self._store._system_namespace(name))

    def _check_open(self) -> None:
        if self._done:
            raise InvalidRequest("transaction", "already committed or rolled back")

    def _add(self, write: Write, value: Any, parts: list[Any], ns: Namespace) -> None:
        self._check_open()
        if self._target is None:
            self._target = ns
        elif ns._backend is not self._target._backend:
            raise InvalidRequest(
                "transaction",
                f"namespace {ns.name!r} lives on backend {ns.backend_name!r} but this "
                f"transaction already writes {self._target.name!r} on backend "
                f"{self._target.backend_name!r}; a transaction is atomic within one backend "
                "only, so it was refused before anything was written",
            )
        if self._events_on is not None and ns._backend is not self._events_on:
            raise InvalidRequest(
                "transaction",
                f"namespace {ns.name!r} lives on backend {ns.backend_name!r}, not on the event "
                "store's backend this transaction appends to; a transaction is atomic within "
                "one backend only, so it was refused before anything was written",
            )
        limit = self._store.config.limits.max_batch
        if len(self._writes) >= limit:
            raise InvalidRequest(
                "transaction", f"more than {limit} writes; the limit is {limit}", limit=limit
            )
        self._by_key.setdefault((write.namespace, write.key), []).append(len(self._writes))
        self._writes.append(write)
        self._values.append(value)
        if self._idem is not None:
            self._parts.append(parts)

    def _fence(self, fence: Any, ns: Namespace) -> None:
        """Check the whole transaction against ``fence`` at commit (see :mod:`._fence`)."""
        self._check_open()
        for check in ns._fence_checks(fence):
            assert check.if_version is not None
            if (check.key, check.if_version) not in self._fences:
                self._fences[(check.key, check.if_version)] = check
                if self._idem is not None:
                    self._parts.append(["fence", check.key, check.if_version])

    def _buffered(self, namespace: str, key: str) -> list[int]:
        """Indexes of this transaction's buffered writes of ``key``, in order."""
        return self._by_key.get((namespace, key), [])

    def _overlay(
        self, ns: Namespace, key: str, writes: list[int], committed: Item | None
    ) -> Item | None:
        """``key`` as the commit would leave it: ``committed`` with the buffered
        ``writes`` applied in order (see :class:`TxNamespace`)."""
        item = committed
        for i in writes:
            w = self._writes[i]
            if w.op == OP_DELETE:
                item = None
                continue
            expires = w.expires_at
            if w.keep_ttl and item is not None:
                expires = item.expires_at  # the live item's expiry, as the backend keeps it
            created = self._now if item is None else item.created_at
            item = Item(key, self._values[i], 0, "", created, self._now, expires, ns.name)
        if item is not None and item.expires_at is not None and item.expires_at <= ns._clock():
            return None  # expired (a TTL shorter than the transaction took)
        return item

    def _add_events(self, write: EventWrite, parts: list[Any], backend: Backend) -> None:
        self._check_open()
        if self._target is not None and self._target._backend is not backend:
            raise InvalidRequest(
                "transaction",
                f"this transaction writes {self._target.name!r} on backend "
                f"{self._target.backend_name!r}, not on the event store's backend; a "
                "transaction is atomic within one backend only, so it was refused before "
                "anything was written",
            )
        limit = self._store.config.limits.max_batch
        if len(self._events) >= limit:
            raise InvalidRequest(
                "transaction", f"more than {limit} appends; the limit is {limit}", limit=limit
            )
        self._events_on = backend
        self._events.append(write)
        if self._idem is not None:
            self._parts.append(parts)

    def commit(self) -> list[Item | bool]:
        self._check_open()
        self._done = True
        if not self._writes and not self._events:
            return self.result
        parts = ["tx", self._parts]
        fences = list(self._fences.values())
        if self._target is not None:
            unit = self._target._unit([*fences, *self._writes], self._now, self._idem, parts)
            backend = self._target._backend
        else:
            # Appends only: the unit goes to the event store's backend.
            assert self._events_on is not None
            backend = self._events_on
            unit = WriteUnit([], self._now)
            if self._idem is not None:
                check_key(self._idem, 256, field="idempotency_key")
                window = self._store.config.idempotency_window
                unit = WriteUnit([], self._now, self._idem, _fingerprint(parts), self._now + window)
        unit.events = self._events
        # Pending write-back writes commit first: the transaction's conditions must see them.
        self._store._settle(None if self._target is None else self._target.backend_name)
        outcomes = backend.write(unit)[len(fences) :]
        n = len(self._writes)
        self._store._cache_committed(self._writes, outcomes[:n])
        self.appended = [AppendResult(o.version, o.seq) for o in outcomes[n:]]
        for w, v, o in zip(self._writes, self._values, outcomes[:n], strict=True):
            if w.op == OP_DELETE:
                self.result.append(o.applied)
            else:
                self.result.append(
                    Item(
                        w.key,
                        v,
                        o.version,
                        _etag(o.version),
                        o.created_at,
                        o.updated_at,
                        o.expires_at,
                        w.namespace,
                    )
                )
        return self.result

    def rollback(self) -> None:
        self._done = True
        self._writes.clear()
        self._events.clear()
        self._by_key.clear()
        self._fences.clear()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._done:
            self.commit()
        elif not self._done:
            self.rollback()
