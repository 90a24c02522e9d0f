"""The facade: Store, Namespace, Transaction, Watch — the API applications use.

The facade owns the policy layer: key and TTL checks, the codec (serialize ·
compress · encrypt), idempotency fingerprints, cursors.  It turns each call into
plain records for the :class:`~clawstate.backends.base.Backend`, which only
stores bytes atomically.  :class:`AsyncStore` (in ``aio.py``) runs these same
methods on a thread pool; it never re-implements them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ._follow import ChangeSource, Cursor
from ._retry import MAX_RETRIES, retry_on_conflict
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
    is_utf8,
)
from .backends.base import (
    NO_DOCUMENT,
    OP_DELETE,
    OP_PUT,
    OP_REWRAP,
    Backend,
    EventWrite,
    Outcome,
    StoredItem,
    Write,
    WriteUnit,
)
from .cache import StoreCache
from .codec import Codec, CodecPolicy, sealed_key_id
from .config import DEFAULT_BACKEND, Config, NamespacePolicy, validate_namespace_options
from .errors import ClawStateError, ConfigError, IntegrityError, InvalidRequest
from .keyring import Keyring
from .query import parse_query
from .types import AppendResult, Change, CheckReport, Item, Page

if TYPE_CHECKING:
    from .events.store import EventStore, TxEvents

__all__ = ["Namespace", "Store", "Transaction", "TxNamespace", "Watch"]

Clock = Callable[[], float]

_fingerprint_encoder = msgspec.msgpack.Encoder()
#: Guards the lazy creation of ``Store.events``.
_EVENTS_LOCK = threading.Lock()
_cursor_decoder = msgspec.msgpack.Decoder(tuple[str, str])


def _etag(version: int) -> str:
    """An opaque tag that changes on every write of a key: its version, in hex.

    Versions never repeat across a key's incarnations (the version floor, see
    ``backends/_apply.py``), so the version alone tells one stored value from every
    other this key ever had.  It is not the change-log seq: that counter is
    store-wide, and an ETag made from it would show a reader how many writes other
    namespaces had between two of its own (issue 10, "nothing a caller receives
    depends on data it may not read").
    """
    return format(version, "x")


def _fingerprint(parts: list[Any]) -> bytes:
    try:
        return hashlib.blake2b(_fingerprint_encoder.encode(parts), digest_size=16).digest()
    except (TypeError, OverflowError) as exc:
        raise InvalidRequest("value", f"cannot fingerprint the request: {exc}") from None


def _encode_cursor(prefix: str, last_key: str) -> str:
    raw = _fingerprint_encoder.encode((prefix, last_key))
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: Any, prefix: str) -> str:
    if not isinstance(cursor, str):
        raise InvalidRequest("cursor", f"must be a string, got {type(cursor).__name__}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_prefix, last_key = _cursor_decoder.decode(raw)
    except (ValueError, msgspec.DecodeError):
        raise InvalidRequest("cursor", "is not a cursor this store issued") from None
    if cursor_prefix != prefix:
        raise InvalidRequest("cursor", "was issued for another prefix")
    if not last_key.startswith(prefix) or "\x00" in last_key or not is_utf8(last_key):
        raise InvalidRequest("cursor", "is not a cursor this store issued")
    return last_key


class Namespace:
    """A named set of keys with one codec policy.  Get it from ``Store.namespace``."""

    def __init__(self, store: Store, name: str, policy: NamespacePolicy) -> None:
        self._store = store
        self._backend = store._backend_named(policy.backend, name)
        self.backend_name = policy.backend
        self._clock = store._clock
        self.name = name
        self.policy = policy
        limits = store.config.limits
        self._max_key = limits.max_key_bytes
        self._max_batch = limits.max_batch
        self._max_ttl = limits.max_ttl_seconds
        self._codec = Codec(
            CodecPolicy(
                serializer=policy.serializer,
                compress_above=policy.compress_above,
                compression_level=policy.compression_level,
                encrypt=policy.encrypt,
            ),
            store._keyring_for(policy.encrypt),
            max_value_bytes=limits.max_value_bytes,
            on_seal=store._sealer(policy.backend),
        )
        self._default_ttl = policy.default_ttl
        self._log_values = policy.changelog_values
        #: hand the backend the documents it keeps a queryable copy of (Write.doc), on
        #: the paths that write before returning: never for write-back, whose writes
        #: reach the backend after the caller could have changed the value
        self._documents = self._backend.capabilities.documents and policy.cache != "write-back"
        #: the namespace's cache (docs/cache.md), shared by every handle; None: uncached
        self._cache = store._cache.attach(self)

    def __repr__(self) -> str:
        return f"<Namespace {self.name!r} on {self._backend.name}>"

    # -- encoding helpers ------------------------------------------------------------

    def _decode(self, st: StoredItem) -> Any:
        try:
            return self._codec.decode(self.name, st.key, st.value)
        except IntegrityError:
            # Another process may have rotated the keyring since we loaded it.
            if self._store._reload_keyring():
                self._codec = self._store.namespace(self.name)._codec
                return self._codec.decode(self.name, st.key, st.value)
            raise

    def _item(self, st: StoredItem) -> Item:
        return Item(
            st.key,
            self._decode(st),
            st.version,
            _etag(st.version),
            st.created_at,
            st.updated_at,
            st.expires_at,
            self.name,
        )

    def _expires(self, ttl: Any, now: float) -> float | None:
        if ttl is None:
            ttl = self._default_ttl
            if ttl is None:
                return None
        return now + check_ttl(ttl, self._max_ttl)

    def _put_write(
        self,
        key: str,
        value: Any,
        ttl: Any,
        if_version: Any,
        if_absent: bool,
        now: float,
        keep_ttl: bool = False,
        documents: bool = False,
    ) -> Write:
        """``documents``: the write carries the value's plaintext document for the
        backend (:meth:`Codec.encode_document`) — only where ``backend.write`` runs
        before the caller gets control back, so the value cannot change meanwhile."""
        check_key(key, self._max_key)
        if if_absent is not False and if_absent is not True:
            check_flag(if_absent, "if_absent")  # "yes" is not True
        if keep_ttl is not False:
            check_flag(keep_ttl, "keep_ttl")
            if ttl is not None:
                raise InvalidRequest("keep_ttl", "cannot be combined with ttl")
        if if_version is not None:
            check_version(if_version)
            if if_absent:
                raise InvalidRequest("if_absent", "cannot be combined with if_version")
        # keep_ttl: the backend keeps a live item's expiry inside the write's
        # transaction; a new item gets what a put without ttl gives (the default).
        expires = self._expires(ttl, now)
        if documents:
            data, doc = self._codec.encode_document(self.name, key, value)
        else:
            data, doc = self._codec.encode(self.name, key, value), NO_DOCUMENT
        return Write(
            self.name,
            key,
            OP_PUT,
            data,
            expires,
            if_version,
            bool(if_absent),
            self._log_values,
            keep_ttl=keep_ttl,
            doc=doc,
        )

    def _unit(
        self, writes: list[Write], now: float, idem: str | None, parts: list[Any]
    ) -> WriteUnit:
        if idem is None:
            return WriteUnit(writes, now)
        check_key(idem, 256, field="idempotency_key")
        window = self._store.config.idempotency_window
        return WriteUnit(writes, now, idem, _fingerprint(parts), now + window)

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> Item | None:
        """The live item at ``key``, or None (absent or expired)."""
        if self._cache is not None:
            return self._cache.get(key)
        check_key(key, self._max_key)
        st = self._backend.get(self.name, key, self._clock())
        return None if st is None else self._item(st)

    def get_many(self, keys: Iterable[str]) -> dict[str, Item]:
        """The live items among ``keys``, by key; missing keys are left out."""
        keys = check_key_list(keys, self._max_batch, self._max_key)
        if self._cache is not None:
            return self._cache.get_many(keys)
        found = self._backend.get_many(self.name, keys, self._clock())
        return {st.key: self._item(st) for st in found}

    def scan(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page:
        """Live items whose key starts with ``prefix``, in key order (UTF-8 bytes).

        Pass the returned ``cursor`` to get the next page; it is None on the last.
        """
        if not isinstance(prefix, str) or "\x00" in prefix or not is_utf8(prefix):
            raise InvalidRequest("prefix", "must be a valid Unicode string without NUL")
        limit = check_limit(limit, self._store.config.limits.max_query_limit)
        after = None if cursor is None else _decode_cursor(cursor, prefix)
        self._store._settle(self.backend_name)
        rows = self._backend.scan(self.name, prefix, after, limit + 1, self._clock())
        more = len(rows) > limit
        items = [self._item(st) for st in rows[:limit]]
        return Page(items, _encode_cursor(prefix, items[-1].key) if more else None)

    def query(self, query: Any, *, explain: bool = False) -> Page:
        """Dapr state-query JSON (filter/sort/page) over this namespace's values.

        ``explain=True`` sets the page's ``plan``: whether an index served the query,
        whether it ran in the database or as a scan in Python, and how many rows were
        read (:class:`~clawstate.QueryPlan`)."""
        limits = self._store.config.limits
        parsed = parse_query(
            query,
            max_depth=limits.max_query_depth,
            max_limit=limits.max_query_limit,
            default_limit=limits.default_query_limit,
        )
        self._store._settle(self.backend_name)
        found = self._backend.query(self.name, parsed, self._decode, self._clock(), explain)
        items = [self._item(st) for st in found.items]
        return Page(items, found.token, found.plan if explain else None)

    def count(self) -> int:
        """How many live items the namespace holds."""
        self._store._settle(self.backend_name)
        return self._backend.count(self.name, self._clock())

    def watch(
        self, from_seq: int | None = 0, *, prefix: str = "", timeout: float | None = None
    ) -> Watch:
        """Changes to this namespace after ``from_seq``, then new ones as they commit."""
        self._store._settle(self.backend_name)
        return Watch(
            self._backend,
            from_seq,
            namespace=self.name,
            prefix=prefix,
            timeout=timeout,
            settle=self._store._settler(self.backend_name),
        )

    # -- writes ----------------------------------------------------------------------

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
        """Store ``value`` at ``key``; acknowledged once durable (per the store's mode).

        ``if_version`` makes it a compare-and-set, ``if_absent`` create-only; both raise
        :class:`VersionConflict` and change nothing when the condition fails.

        Without ``ttl`` the item gets the namespace's default TTL, or none: an
        existing expiry is dropped (as Redis ``SET`` does).  ``keep_ttl=True`` keeps
        the live item's expiry instead (Redis ``SET … KEEPTTL``); it cannot be
        combined with ``ttl``, and a new item gets what a put without ``ttl`` gives.

        In a ``cache = "write-back"`` namespace a plain put (no condition, no
        idempotency key) is acknowledged from the cache **before it is durable** and
        flushed within ``cache_flush_delay``; see docs/cache.md.
        """
        now = self._clock()
        write = self._put_write(
            key, value, ttl, if_version, if_absent, now, keep_ttl, documents=self._documents
        )
        cache = self._cache
        if cache is not None and cache.write_back is not None:
            # keep_ttl needs the stored expiry: the backend decides it, not the cache.
            if idempotency_key is None and if_version is None and not if_absent and not keep_ttl:
                return cache.put_back([write], [value], now)[0]
            cache.settle()
        parts: list[Any] = []
        if idempotency_key is not None:
            parts = ["put", self.name, key, value, ttl, if_version, if_absent]
            if keep_ttl:
                parts.append("keep_ttl")
        o = self._backend.write(self._unit([write], now, idempotency_key, parts))[0]
        if cache is not None:
            cache.committed([write], [o])
        return Item(
            key,
            value,
            o.version,
            _etag(o.version),
            o.created_at,
            o.updated_at,
            o.expires_at,
            self.name,
        )

    def put_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
    ) -> list[Item]:
        """Store several values atomically: all are written, or none.

        In a ``cache = "write-back"`` namespace (without ``idempotency_key``) the batch
        is acknowledged from the cache before it is durable; see docs/cache.md.
        """
        pairs = check_pairs(items, self._max_batch)
        now = self._clock()
        docs = self._documents
        writes = [self._put_write(k, v, ttl, None, False, now, documents=docs) for k, v in pairs]
        if not writes:
            return []
        cache = self._cache
        if cache is not None and cache.write_back is not None:
            if idempotency_key is None:  # write-back: acknowledged before durable
                return cache.put_back(writes, [v for _, v in pairs], now)
            cache.settle()
        parts: list[Any] = []
        if idempotency_key is not None:
            parts = ["put_many", self.name, pairs, ttl]
        outcomes = self._backend.write(self._unit(writes, now, idempotency_key, parts))
        if cache is not None:
            cache.committed(writes, outcomes)
        return [
            Item(
                k,
                v,
                o.version,
                _etag(o.version),
                o.created_at,
                o.updated_at,
                o.expires_at,
                self.name,
            )
            for (k, v), o in zip(pairs, outcomes, strict=True)
        ]

    def delete(
        self, key: str, *, if_version: int | None = None, idempotency_key: str | None = None
    ) -> bool:
        """Remove ``key``; True if a live item was removed.

        In a ``cache = "write-back"`` namespace a plain delete is acknowledged from the
        cache before it is durable; see docs/cache.md.
        """
        check_key(key, self._max_key)
        if if_version is not None:
            check_version(if_version)
        now = self._clock()
        write = Write(self.name, key, OP_DELETE, None, None, if_version)
        cache = self._cache
        if cache is not None and cache.write_back is not None:
            if idempotency_key is None and if_version is None:  # write-back
                return cache.delete_back(write, now)
            cache.settle()
        parts: list[Any] = []
        if idempotency_key is not None:
            parts = ["delete", self.name, key, if_version]
        o = self._backend.write(self._unit([write], now, idempotency_key, parts))[0]
        if cache is not None:
            cache.committed([write], [o])
        return o.applied

    def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        ttl: float | None = None,
        retries: int = 10,
    ) -> Item:
        """Read ``key``, store ``fn(value)`` (``fn(default)`` when it is absent) and return
        the new item — a compare-and-set retried on conflict.

        The write is conditional on what was read (``if_version``, or ``if_absent``
        for a missing key), so a concurrent writer can never be overwritten unseen:
        on :class:`VersionConflict` the whole read-apply-write runs again, at most
        ``retries`` more times (with a short random pause), then the conflict
        propagates.  ``fn`` may therefore run more than once and must not have side
        effects.  The item keeps its expiry unless ``ttl`` gives a new one (a new
        item gets the namespace's default TTL).
        """
        check_key(key, self._max_key)
        check_int(retries, "retries", 0, MAX_RETRIES)
        if ttl is not None:
            check_ttl(ttl, self._max_ttl)

        def attempt() -> Item:
            item = self.get(key)
            if item is None:
                return self.put(key, fn(default), ttl=ttl, if_absent=True)
            value = fn(item.value)
            if ttl is None:
                return self.put(key, value, if_version=item.version, keep_ttl=True)
            return self.put(key, value, ttl=ttl, if_version=item.version)

        return retry_on_conflict(attempt, retries)


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
    ) -> None:
        parts: list[Any] = ["put", self.name, key, value, ttl, if_version, if_absent]
        if keep_ttl:
            parts.append("keep_ttl")
        self._tx._add(
            self._ns._put_write(key, value, ttl, if_version, if_absent, self._tx._now, keep_ttl),
            value,
            parts,
            self._ns,
        )

    def delete(self, key: str, *, if_version: int | None = None) -> None:
        check_key(key, self._ns._max_key)
        if if_version is not None:
            check_version(if_version)
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

    def __init__(self, store: Store, idempotency_key: str | None = None) -> None:
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
        if self._target is not None:
            unit = self._target._unit(self._writes, self._now, self._idem, parts)
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
        outcomes = backend.write(unit)
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

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._done:
            self.commit()
        elif not self._done:
            self.rollback()


class Watch(Iterator[Change]):
    """Past changes after ``from_seq``, then new ones as they commit.

    Iteration ends when ``timeout`` seconds pass without a new change (``None``
    waits forever) or when ``close()`` is called from another thread — a blocked
    ``next()`` then returns at once, whatever the backend.  ``from_seq=None``
    starts at the current end; ``from_seq=0`` at the oldest change still
    retained.  ``last_seq`` is the position to resume from.

    A watch never skips a change: if ``changelog_retention`` trimmed changes it
    has not read yet — at the start, or while a slow consumer falls behind — it
    raises :class:`~clawstate.errors.LogTrimmed` (``requested``,
    ``first_available``; an :class:`~clawstate.errors.InvalidRequest`).  It is a
    :class:`clawstate._follow.Cursor` over the change log: idle watches of one
    backend share one waiting thread.
    """

    def __init__(
        self,
        backend: Backend,
        from_seq: int | None,
        *,
        namespace: str | None = None,
        prefix: str = "",
        timeout: float | None = None,
        batch: int = 500,
        settle: Callable[[], None] | None = None,
    ) -> None:
        # check_position: a seq past 64 bits used to escape from the driver as OverflowError.
        from_seq = backend.last_seq() if from_seq is None else check_position(from_seq, "from_seq")
        if timeout is not None:
            check_timeout(timeout)
        if type(prefix) is not str:
            raise InvalidRequest("prefix", f"must be a string, got {type(prefix).__name__}")
        self._backend = backend
        self._cursor: Cursor[Change] = Cursor(
            ChangeSource(backend, namespace), from_seq, limit=batch, field="from_seq"
        )
        self._namespace = namespace
        self._prefix = prefix
        self._timeout = timeout
        self._buffer: deque[Change] = deque()
        #: flushes this process's pending write-back writes before each read of the log
        self._settle = settle

    @property
    def last_seq(self) -> int:
        """Every change up to this seq has been read (resume with ``watch(last_seq)``)."""
        return self._cursor.position

    @property
    def cursor(self) -> Cursor[Change]:
        """The log cursor under this watch (its position, hub and async wait)."""
        return self._cursor

    @property
    def closed(self) -> bool:
        return self._cursor.closed

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> Change:
        # One deadline per call: changes this watch filters out (other namespaces,
        # other prefixes) must not keep restarting the timeout.
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        cursor = self._cursor
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if cursor.closed:
                raise StopIteration
            if self._fill():
                continue
            if deadline is None:
                cursor.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StopIteration
            cursor.wait(remaining)

    def poll(self) -> list[Change]:
        """Every change available now, without waiting."""
        while self._fill():
            pass
        out = list(self._buffer)
        self._buffer.clear()
        return out

    def _fill(self) -> bool:
        """Read the next batch of changes into the buffer; False at the end of the log."""
        if self._settle is not None:
            self._settle()
        rows = self._cursor.read()
        prefix = self._prefix
        self._buffer.extend(c for c in rows if not prefix or c.key.startswith(prefix))
        return bool(rows)

    def close(self) -> None:
        """Stop the watch from any thread: a blocked ``next()`` returns at once."""
        self._cursor.close()


class Store:
    """One handle on a clawstate store.  Build it with :func:`clawstate.open`.

    Thread-safe: share one Store between threads; each thread gets its own
    backend connection, and concurrent writes are group-committed.
    """

    def __init__(
        self,
        backends: Backend | Mapping[str, Backend],
        config: Config,
        *,
        clock: Clock | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        if isinstance(backends, Mapping):
            self._backends = dict(backends)
        else:
            self._backends = {DEFAULT_BACKEND: backends}
        self._backend = self._backends[DEFAULT_BACKEND]
        self.config = config
        self._clock: Clock = clock or time.time
        self._keyring = keyring
        self._keyring_lock = threading.Lock()
        #: per backend: the key ids recorded as sealing its values (see _open_keyring)
        self._kids: dict[str, set[str]] = {}
        self._kids_lock = threading.Lock()
        #: False when a backend's record could not be read (a damaged store): then no
        #: keyring is ever created for it, since it may hold encrypted values
        self._kids_known = True
        try:
            self._open_keyring()
        except BaseException:
            for backend in self._backends.values():
                backend.close()
            raise
        self._namespaces: dict[str, Namespace] = {}
        #: (backend, namespace, index paths) already ensured (see _ensure_indexes)
        self._indexed: set[tuple[str, str, tuple[str, ...]]] = set()
        #: every namespace's cache, the change-log tailers, write-back (docs/cache.md)
        self._cache = StoreCache(clock=self._clock, etag=_etag, urls=config.backend_urls())
        self._event_store: EventStore | None = None
        self._closed = False
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        if config.sweep_interval > 0 and clock is None:
            self._sweeper = threading.Thread(
                target=self._sweep_loop, name="clawstate-sweep", daemon=True
            )
            self._sweeper.start()

    @property
    def backend(self) -> Backend:
        """The default backend (``store.url``)."""
        return self._backend

    @property
    def backends(self) -> dict[str, Backend]:
        """Every backend by name; ``default`` is ``store.url``."""
        return dict(self._backends)

    def _backend_named(self, name: str, namespace: str) -> Backend:
        if type(name) is not str:  # an unhashable name would escape as TypeError
            raise InvalidRequest("backend", f"must be a string, got {type(name).__name__}")
        backend = self._backends.get(name)
        if backend is None:
            raise InvalidRequest(
                f"namespaces.{namespace}.backend",
                f"names no backend: {name!r} (defined: {', '.join(sorted(self._backends))})",
            )
        return backend

    def __repr__(self) -> str:
        names = ", ".join(f"{k}={v.name}" for k, v in self._backends.items())
        return f"<Store {names}>"

    # -- namespaces ------------------------------------------------------------------

    def namespace(self, name: str, /, **options: Any) -> Namespace:
        """The namespace ``name``, with its policy from the config (and ``options``)."""
        if not options and type(name) is str:  # an unhashable name must reach the check
            ns = self._namespaces.get(name)
            if ns is not None:
                return ns
        check_namespace_name(name, self.config.limits.max_namespace_len)
        policy = self.config.policy_for(name)
        if options:
            policy = validate_namespace_options(
                name, options, policy, self.config.limits, error=_option_error
            )
        ns = Namespace(self, name, policy)
        if policy.indexes:
            self._ensure_indexes(ns)
        if not options:
            self._namespaces[name] = ns
        return ns

    def _ensure_indexes(self, ns: Namespace) -> None:
        """Ask the namespace's backend for the indexes its resolved policy lists
        (``indexes`` of ``[namespaces.<name>]`` or ``[namespaces."*"]``), once per
        store and namespace: the facade owns policy, the backend only builds (one
        that cannot index answers ``[]`` and its queries scan)."""
        wanted = (ns.backend_name, ns.name, tuple(ns.policy.indexes))
        if wanted not in self._indexed:
            ns._backend.ensure_index(ns.name, list(wanted[2]))
            self._indexed.add(wanted)

    def _system_namespace(self, name: str) -> Namespace:
        """A ``_``-prefixed namespace reserved for clawstate's own records (the
        server's ``_tokens`` and ``_audit``).  :meth:`namespace` refuses these names to
        applications; system code reaches them here.  Not cached in ``_namespaces``,
        so the reserved names never leak into ``namespace()``'s fast path."""
        if not (isinstance(name, str) and name.startswith("_")):
            raise InvalidRequest("namespace", f"system namespaces start with '_', got {name!r}")
        check_namespace_name(name, self.config.limits.max_namespace_len, system=True)
        return Namespace(self, name, self.config.policy_for(name))

    def _any_namespace(self, name: str) -> Namespace:
        """An application namespace or a system one (maintenance walks both)."""
        return self._system_namespace(name) if name.startswith("_") else self.namespace(name)

    @property
    def events(self) -> EventStore:
        """The event store, on the default backend (see :class:`clawstate.events.EventStore`).

        Raises :class:`InvalidRequest` (field ``events``) when that backend keeps no
        events (Redis)."""
        events = self._event_store
        if events is None:
            from .events.store import EventStore

            with _EVENTS_LOCK:  # one EventStore per Store: upcasters registered on it stay
                events = self._event_store
                if events is None:
                    events = self._event_store = EventStore(self)
        return events

    def namespaces(self) -> list[str]:
        """Names of the namespaces that hold or held data, on every backend."""
        self._settle()
        return sorted({ns for b in self._backends.values() for ns in b.namespaces()})

    def transaction(self, *, idempotency_key: str | None = None) -> Transaction:
        """A transaction across namespaces of this store (see :class:`Transaction`)."""
        return Transaction(self, idempotency_key)

    def watch(
        self,
        from_seq: int | None = 0,
        *,
        namespace: str | None = None,
        prefix: str = "",
        timeout: float | None = None,
        backend: str | None = None,
    ) -> Watch:
        """Changes after ``from_seq`` in one backend's change log, or one namespace's.

        Sequence numbers belong to a backend: a store routing namespaces to several
        backends watches one at a time (``backend=`` or ``namespace=``).
        """
        if namespace is not None:
            check_namespace_name(namespace, self.config.limits.max_namespace_len, system=True)
            if backend is None and not namespace.startswith("_"):
                backend = self.config.policy_for(namespace).backend
        self._settle(backend)
        return Watch(
            self._watched(backend),
            from_seq,
            namespace=namespace,
            prefix=prefix,
            timeout=timeout,
            settle=self._settler(backend),
        )

    def _watched(self, backend: str | None) -> Backend:
        if backend is not None:
            return self._backend_named(backend, "*")
        if len(self._backends) > 1:
            raise InvalidRequest(
                "backend",
                "this store routes namespaces to several backends "
                f"({', '.join(sorted(self._backends))}), each with its own change log; "
                "watch one with backend= or namespace=",
            )
        return self._backend

    @property
    def last_seq(self) -> int:
        """The newest change-log sequence number of the default backend."""
        self._settle(DEFAULT_BACKEND)
        return self._backend.last_seq()

    # -- cache -----------------------------------------------------------------------

    def flush(self) -> None:
        """Make every write-back write acknowledged so far durable now (docs/cache.md).

        Write-back namespaces acknowledge plain puts and deletes before they are
        durable and flush them within ``cache_flush_delay``; this waits for that flush.
        Raises :class:`~clawstate.errors.BackendUnavailable` if the backend refuses.
        """
        self._cache.settle()

    def _settle(self, backend: str | None = None) -> None:
        """Flush pending write-back writes before a read that goes past the cache, so
        this process sees its own writes; a no-op without write-back namespaces."""
        self._cache.settle(backend)

    def _settler(self, backend: str | None) -> Callable[[], None]:
        """What a Watch calls before each read of the log (a no-op without write-back)."""
        return lambda: self._cache.settle(backend)

    def _cache_committed(self, writes: list[Write], outcomes: list[Outcome]) -> None:
        """Apply committed transaction writes to their namespaces' caches."""
        by_ns: dict[str, tuple[list[Write], list[Outcome]]] = {}
        for w, o in zip(writes, outcomes, strict=True):
            group = by_ns.setdefault(w.namespace, ([], []))
            group[0].append(w)
            group[1].append(o)
        for name, (ns_writes, ns_outcomes) in by_ns.items():
            if not name.startswith("_"):  # clawstate's own namespaces are never cached
                cache = self.namespace(name)._cache
                if cache is not None:
                    cache.committed(ns_writes, ns_outcomes)

    # -- keyring ---------------------------------------------------------------------

    # The keyring belongs to the store it encrypts (DESIGN.md, docs/configuration.md):
    # each backend records the key ids its values are sealed under, before the first
    # value sealed under a new one is written; a store whose keyring lacks one of them
    # does not open, and a new keyring is only ever made for a store that records none.

    def _open_keyring(self) -> None:
        """Refuse to open a store whose keyring lacks a key its values need.

        Writes nothing when it refuses.  A backend whose record was never completed
        (written by a clawstate that did not record key ids) is surveyed once, and its
        record written only after the check passed."""
        surveyed: dict[str, set[str]] = {}
        for bname, backend in self._backends.items():
            try:
                kids = backend.key_ids()
                if kids is None:
                    kids = surveyed[bname] = _survey_key_ids(backend)
            except IntegrityError:
                # Damaged storage (`clawstate check` says what): reads still work, but
                # the store may hold encrypted values, so it never gets a new keyring.
                self._kids_known = False
                continue
            self._kids[bname] = kids
        needed = set().union(*self._kids.values())
        if needed:
            ring = self._keyring
            if ring is None:
                ring = self._keyring = self._required_keyring(needed)
            missing = needed - set(ring.ids())
            if missing:
                raise self._missing_keys(missing, f"it holds only {_ids(ring.ids())}")
        for bname, kids in surveyed.items():
            self._backends[bname].record_key_ids(kids)

    def _keyring_where(self) -> str:
        """Where this store looks for its keyring, for error messages."""
        if self._keyring is not None:
            return self._keyring.source or "the Keyring passed to open()"
        source = self.config.keyring
        if source is None:
            return "nowhere: no keyring source is configured"
        if source.startswith("env:"):
            return f"environment variable {source[4:]}"
        return source[5:] if source.startswith("file:") else source

    def _missing_keys(self, kids: Iterable[str], why: str) -> ConfigError:
        return ConfigError(
            "keyring.source",
            f"this store holds values sealed under key id(s) {_ids(kids)}, which its keyring "
            f"must hold; looked in {self._keyring_where()}: {why}. Restore that keyring (it "
            "is the only copy of those keys) or point [keyring] source, CLAWSTATE_KEYRING or "
            "open(keyring=...) at it; clawstate never makes a new keyring for a store that "
            "holds encrypted values",
        )

    def _required_keyring(self, needed: set[str]) -> Keyring:
        """The configured keyring, which must exist (the store holds encrypted values)."""
        source = self.config.keyring
        if source is None:
            raise self._missing_keys(needed, self._no_place())
        try:
            return Keyring.from_source(source, create=False)
        except ConfigError as exc:
            raise self._missing_keys(needed, str(exc).split(": ", 1)[-1]) from None

    def _no_place(self) -> str:
        scheme = self.config.url.split(":", 1)[0]
        return (
            f"a {scheme}:// store opened without a config file has no directory to keep "
            "its keyring beside, so it must be given one ([keyring] source in "
            "clawstate.toml, CLAWSTATE_KEYRING, or open(keyring=...))"
        )

    def _load_keyring(self, *, create: bool) -> Keyring | None:
        """The configured keyring, or None when it is absent and ``create`` is false.

        With ``create``, a missing keyring is made (beside the store) only if no
        backend records a key id: re-read here, since another process may have
        sealed values since this store opened."""
        source = self.config.keyring
        if source is None:
            if not create:
                return None
            if all(b.name == "memory" for b in self._backends.values()):
                return Keyring.generate()  # memory only: keys that last as long as the values
            raise ConfigError("keyring.source", f"cannot encrypt: {self._no_place()}")
        if create and source.startswith("file:") and not os.path.exists(source[5:]):
            self._refuse_new_keyring()
            return Keyring.from_source(source, create=True)
        try:
            return Keyring.from_source(source, create=False)
        except ClawStateError:
            if create:
                raise
            return None

    def _refuse_new_keyring(self) -> None:
        """ConfigError when any backend records (or may hold) sealed values."""
        if not self._kids_known:
            raise ConfigError(
                "keyring.source",
                f"the keyring is missing (looked in {self._keyring_where()}) and the store's "
                "record of the key ids its values need could not be read (damaged "
                "storage: run `clawstate check`), so no new keyring is made for it",
            )
        recorded: set[str] = set()
        for backend in self._backends.values():
            recorded |= backend.key_ids() or set()
        if recorded:
            raise self._missing_keys(recorded, "the keyring is missing")

    def _sealer(self, backend: str) -> Callable[[str], None]:
        """The codec's ``on_seal`` for namespaces on ``backend``: records a key id in
        that backend, durably, before the first value sealed under it is written."""

        def sealing(kid: str) -> None:
            kids = self._kids.get(backend)
            if kids is not None and kid in kids:
                return  # the hot path: one set lookup
            self._record_key_id(backend, kid)

        return sealing

    def _record_key_id(self, backend: str, kid: str) -> None:
        """Record that values (or anything else keyed from the keyring) on ``backend``
        now need key ``kid``; from then on the store does not open without it."""
        with self._kids_lock:
            kids = self._kids.get(backend)
            if kids is not None and kid in kids:
                return
            self._backends[backend].record_key_ids([kid])
            self._kids[backend] = {*(kids or ()), kid}

    def _keyring_for(self, encrypt: bool) -> Keyring | None:
        """The keyring, loaded lazily.  ``encrypt``: a namespace seals values, so the
        keyring is needed — and made, beside the store, if this store has none and
        records no key ids (see :meth:`_load_keyring`)."""
        with self._keyring_lock:
            if self._keyring is None:
                self._keyring = self._load_keyring(create=encrypt)
            return self._keyring

    def _reload_keyring(self) -> bool:
        with self._keyring_lock:
            if self.config.keyring is None:
                return False
            try:
                fresh = Keyring.from_source(self.config.keyring, create=False)
            except ClawStateError:
                return False
            if self._keyring is not None and fresh.ids() == self._keyring.ids():
                return False
            self._keyring = fresh
            self._namespaces.clear()
            return True

    def rotate_keys(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Make a new key-encryption key primary and re-wrap every encrypted value under it.

        Only the small wrapped data key in each value's header changes; payloads
        are not re-encrypted, and versions and the change log are untouched.
        ``progress(done, total)`` is called as items are processed.
        """
        self._settle()
        keyring = self._keyring_for(True)
        assert keyring is not None
        kid = keyring.rotate()
        # Record the new key id on every backend holding sealed values before any is
        # re-wrapped under it (the codec's on_seal records it too, per namespace).
        for bname in self._backends:
            if self._kids.get(bname):
                self._record_key_id(bname, kid)
        self._namespaces.clear()
        names = [(b, ns) for b in self._backends.values() for ns in b.namespaces()]
        total = sum(b.count(ns, 0.0) for b, ns in names)
        done = rewrapped = 0
        for backend, name in names:
            codec = self._any_namespace(name)._codec
            pending: list[Write] = []
            for st in backend.iter_items(name):
                data = codec.rewrap(name, st.key, st.value)
                if data is not None:
                    pending.append(
                        Write(name, st.key, OP_REWRAP, data, if_version=st.version, seq=st.seq)
                    )
                done += 1
                if len(pending) >= 256:
                    rewrapped += self._rewrap(backend, pending)
                    pending = []
                if progress is not None and done % 256 == 0:
                    progress(done, total)
            if pending:
                rewrapped += self._rewrap(backend, pending)
        if progress is not None:
            progress(done, max(total, done))
        return {"primary": kid, "items": done, "rewrapped": rewrapped}

    def _rewrap(self, backend: Backend, writes: list[Write]) -> int:
        outcomes = backend.write(WriteUnit(writes, self._clock()))
        return sum(1 for o in outcomes if o.applied)

    # -- maintenance -----------------------------------------------------------------

    def sweep(self) -> dict[str, int]:
        """Purge expired items, forgotten idempotency keys and old change-log rows
        on every backend; return the totals."""
        self._settle()
        now = self._clock()
        totals: dict[str, int] = {}
        for backend in self._backends.values():
            result = backend.sweep(now, now - self.config.changelog_retention)
            for key, value in msgspec.structs.asdict(result).items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.config.sweep_interval):
            try:
                self.sweep()
            except ClawStateError:
                pass  # the next round retries; the sweep is housekeeping only

    def stats(self) -> dict[str, Any]:
        """Every namespace with its backend, item count, bytes and policy; every backend's
        own statistics (engine, durability, change log, group commit…); under
        ``"cache"`` the caches' hit ratios per tier and namespace, evictions, bytes."""
        self._settle()
        namespaces: dict[str, Any] = {}
        backends: dict[str, Any] = {}
        for bname, backend in self._backends.items():
            stats = backend.stats()
            for name, entry in stats.pop("namespaces", {}).items():
                policy = self.config.policy_for(name)
                namespaces[name] = {
                    "backend": bname,
                    **entry,
                    "policy": {
                        "serializer": policy.serializer,
                        "compress_above": policy.compress_above,
                        "encrypt": policy.encrypt,
                        "default_ttl": policy.default_ttl,
                    },
                }
            backends[bname] = stats
        out = {"namespaces": dict(sorted(namespaces.items())), "backends": backends}
        out["cache"] = self._cache.stats()
        if getattr(self._backend.capabilities, "events", False):
            out["events"] = self.events.stats()
        return out

    def check(
        self, *, deep: bool = False, progress: Callable[[int, int | None], None] | None = None
    ) -> CheckReport:
        """Verify the store's integrity: each backend's own check (items against the
        change log and back), every stored value's header (and with ``deep``, a full
        decode: decryption, decompression), and the server's audit chain when there is
        one (:func:`clawstate.server.audit.verify`, which sees the store only through its
        own ``AuditStore`` protocol, so this import makes no import loop).

        Damaged storage is a finding, not an exception: a part that cannot be read
        (an :class:`IntegrityError` from the backend) is reported and the rest is still
        checked.  Only an unreachable backend raises (:class:`BackendUnavailable`).

        ``progress(done, total)`` is called as values are checked (``total``: the
        namespaces' item counts, None if unknown), for ``clawstate check``'s bar."""
        self._settle()
        total: int | None = None
        if progress is not None:
            try:
                total = sum(int(e.get("items", 0)) for e in self.stats()["namespaces"].values())
            except ClawStateError:
                total = None
        problems: list[str] = []
        checked: dict[str, int] = {}
        values = 0
        every_name: set[str] = set()
        for bname, backend in self._backends.items():
            prefix = "" if len(self._backends) == 1 else f"[{bname}] "
            try:
                found, counts = backend.check()
                names = backend.namespaces()
            except IntegrityError as exc:
                problems.append(f"{prefix}{exc}")
                continue
            problems.extend(prefix + p for p in found)
            for key, count in counts.items():
                checked[key] = checked.get(key, 0) + count
            for name in names:
                codec = self._any_namespace(name)._codec
                try:
                    for st in backend.iter_items(name):
                        values += 1
                        if progress is not None and values % 256 == 0:
                            progress(values, total)
                        try:
                            if deep:
                                codec.decode(name, st.key, st.value)
                            else:
                                codec.describe(st.value)
                        except ClawStateError as exc:
                            problems.append(f"{prefix}{name}/{st.key}: {exc}")
                except IntegrityError as exc:
                    problems.append(f"{prefix}{name}: {exc}")
            every_name.update(names)
        checked["values"] = values
        if progress is not None:
            progress(values, values)
        problems += self._check_audit(every_name, checked)
        return CheckReport(problems, checked)

    def _check_audit(self, names: set[str], checked: dict[str, int]) -> list[str]:
        """The audit chain, when the store has one, verified by the audit module itself
        (one verifier: its link, hash and head rules live there, whatever they grow into)."""
        from .server.audit import AUDIT_NAMESPACE, verify

        if AUDIT_NAMESPACE not in names:
            return []
        try:
            report = verify(self)
        except ClawStateError as exc:
            return [f"audit log: could not be verified: {exc}"]
        checked["audit_records"] = report.records
        return [f"audit log: {p}" for p in report.problems]

    def close(self) -> None:
        """Stop background work and release connections.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._sweeper is not None and self._sweeper is not threading.current_thread():
            self._sweeper.join(timeout=5)
        try:
            self._cache.close()  # flushes write-back: raises if acknowledged writes are lost
        finally:
            for backend in self._backends.values():
                backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _ids(kids: Iterable[str]) -> str:
    return ", ".join(repr(k) for k in sorted(kids))


def _survey_key_ids(backend: Backend) -> set[str]:
    """The key ids sealing the stored values of ``backend`` (a one-time survey of a
    store written before key ids were recorded).  Damaged values are skipped:
    ``check`` reports them."""
    kids: set[str] = set()
    for name in backend.namespaces():
        for st in backend.iter_items(name):
            try:
                kid = sealed_key_id(st.value)
            except IntegrityError:
                continue
            if kid is not None:
                kids.add(kid)
    return kids


def _option_error(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(field, message)
