"""Namespace: one named set of keys and the policy its values are written under.

It lives apart from :mod:`clawstate.store` because it is the bulk of the facade's
per-call work (key and TTL checks, the codec, cursors, the namespace's cache) and
needs of the :class:`~clawstate.store.Store` that made it only a handful of
members.  It names them through :class:`NamespaceHost`, a Protocol, never by
importing ``clawstate.store``: the store imports this module to build namespaces,
so an import back (even under ``TYPE_CHECKING``) would close a loop.  The ETag,
request-fingerprint and cursor helpers live here too: namespaces and transactions
(:mod:`clawstate._transaction`) share them.  Applications import these names from
:mod:`clawstate` or :mod:`clawstate.store`, which re-export them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import msgspec

from ._fence import FENCES, fence_write
from ._retry import update_item
from ._validate import (
    check_flag,
    check_int,
    check_key,
    check_key_list,
    check_limit,
    check_pairs,
    check_ttl,
    check_version,
    is_utf8,
)
from ._watch import Watch
from .backends.base import NO_DOCUMENT, OP_DELETE, OP_PUT, Backend, StoredItem, Write, WriteUnit
from .cache import StoreCache
from .codec import Codec, CodecPolicy
from .config import Config, NamespacePolicy
from .errors import IntegrityError, InvalidRequest
from .keyring import Keyring
from .query import parse_query
from .types import Item, Page

__all__ = ["Clock", "Namespace", "NamespaceHost"]


#: Where the store reads the time from (``time.time`` unless ``open(clock=...)``).
Clock = Callable[[], float]


class NamespaceHost(Protocol):
    """What a :class:`Namespace` needs of the :class:`~clawstate.store.Store` that
    made it (the store satisfies it structurally; mypy checks that where the store
    hands itself over)."""

    @property
    def config(self) -> Config: ...

    @property
    def _clock(self) -> Clock: ...

    @property
    def _cache(self) -> StoreCache: ...

    def _backend_named(self, name: str, namespace: str) -> Backend: ...

    def _keyring_for(self, encrypt: bool) -> Keyring | None: ...

    def _sealer(self, backend: str) -> Callable[[str], None]: ...

    def _settle(self, backend: str | None = None) -> None: ...

    def _settler(self, backend: str | None) -> Callable[[], None]: ...

    def _reload_keyring(self) -> bool: ...

    def namespace(self, name: str, /, **options: Any) -> Namespace: ...

    def _any_namespace(self, name: str) -> Namespace: ...


_fingerprint_encoder = msgspec.msgpack.Encoder()
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

    def __init__(self, store: NamespaceHost, name: str, policy: NamespacePolicy) -> None:
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
                # _any_namespace: a system namespace (_timers, _machine.x) reloads too
                self._codec = self._store._any_namespace(self.name)._codec
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

    def _fence_checks(self, fence: Any) -> list[Write]:
        """The fencing check a write under ``fence`` carries ahead of it (none without)."""
        if fence is None:
            return []
        check = fence_write(fence)
        if (
            self._store._backend_named(self._store.config.policy_for(FENCES).backend, FENCES)
            is not self._backend
        ):
            raise InvalidRequest(
                "fence",
                f"namespace {self.name!r} lives on backend {self.backend_name!r}, not on the "
                "backend that keeps the locks; a fenced write must be checked in its own "
                "transaction, so it was refused before anything was written",
            )
        return [check]

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

    def query(self, query: Any, *, explain: bool = False, max_scan: int | None = None) -> Page:
        """Dapr state-query JSON (filter/sort/page) over this namespace's values.

        ``explain=True`` sets the page's ``plan``: whether an index served the query,
        whether it ran in the database or as a scan in Python, and how many rows were
        read (:class:`~clawstate.QueryPlan`).  ``max_scan`` bounds the rows a query no
        index serves may read (``InvalidRequest``, field ``query``, past it); ``None``
        takes ``limits.max_query_scan``, ``0`` is no bound (docs/queries.md)."""
        limits = self._store.config.limits
        parsed = parse_query(
            query,
            max_depth=limits.max_query_depth,
            max_limit=limits.max_query_limit,
            default_limit=limits.default_query_limit,
        )
        self._store._settle(self.backend_name)
        bound = limits.max_query_scan if max_scan is None else check_int(max_scan, "max_scan", 0)
        explain = check_flag(explain, "explain")
        found = self._backend.query(
            self.name, parsed, self._decode, self._clock(), explain, bound or None
        )
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
        fence: Any = None,
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

        ``fence=lease`` (a :class:`~clawstate.Lease`) has the storage refuse the put with
        :class:`FencingError`, changing nothing, once a newer lease of that lock name
        has been granted (see :mod:`clawstate.locks`); a fenced put is never write-back.
        """
        now = self._clock()
        write = self._put_write(
            key, value, ttl, if_version, if_absent, now, keep_ttl, documents=self._documents
        )
        checks = self._fence_checks(fence)
        cache = self._cache
        if cache is not None and cache.write_back is not None:
            # keep_ttl needs the stored expiry: the backend decides it, not the cache.
            if (
                idempotency_key is None
                and if_version is None
                and not if_absent
                and not keep_ttl
                and not checks
            ):
                return cache.put_back([write], [value], now)[0]
            cache.settle()
        parts: list[Any] = []
        if idempotency_key is not None:
            parts = ["put", self.name, key, value, ttl, if_version, if_absent]
            if keep_ttl:
                parts.append("keep_ttl")
            if checks:
                parts.append(["fence", checks[0].key, checks[0].if_version])
        o = self._backend.write(self._unit([*checks, write], now, idempotency_key, parts))[-1]
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
        fence: Any = None,
    ) -> list[Item]:
        """Store several values atomically: all are written, or none.

        In a ``cache = "write-back"`` namespace (without ``idempotency_key`` or
        ``fence``) the batch is acknowledged from the cache before it is durable; see
        docs/cache.md.  ``fence=lease``: as :meth:`put`.
        """
        pairs = check_pairs(items, self._max_batch)
        now = self._clock()
        docs = self._documents
        writes = [self._put_write(k, v, ttl, None, False, now, documents=docs) for k, v in pairs]
        if not writes:
            return []
        checks = self._fence_checks(fence)
        cache = self._cache
        if cache is not None and cache.write_back is not None:
            if idempotency_key is None and not checks:  # write-back: acknowledged before durable
                return cache.put_back(writes, [v for _, v in pairs], now)
            cache.settle()
        parts: list[Any] = []
        if idempotency_key is not None:
            parts = ["put_many", self.name, pairs, ttl]
            if checks:
                parts.append(["fence", checks[0].key, checks[0].if_version])
        outcomes = self._backend.write(self._unit([*checks, *writes], now, idempotency_key, parts))[
            len(checks) :
        ]
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
        self,
        key: str,
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> bool:
        """Remove ``key``; True if a live item was removed.

        In a ``cache = "write-back"`` namespace a plain delete is acknowledged from the
        cache before it is durable; see docs/cache.md.  ``fence=lease``: as :meth:`put`.
        """
        check_key(key, self._max_key)
        if if_version is not None:
            check_version(if_version)
        now = self._clock()
        write = Write(self.name, key, OP_DELETE, None, None, if_version)
        checks = self._fence_checks(fence)
        cache = self._cache
        if cache is not None and cache.write_back is not None:
            if idempotency_key is None and if_version is None and not checks:  # write-back
                return cache.delete_back(write, now)
            cache.settle()
        parts: list[Any] = []
        if idempotency_key is not None:
            parts = ["delete", self.name, key, if_version]
            if checks:
                parts.append(["fence", checks[0].key, checks[0].if_version])
        o = self._backend.write(self._unit([*checks, write], now, idempotency_key, parts))[-1]
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
        return update_item(
            self,
            key,
            fn,
            default=default,
            ttl=ttl,
            retries=retries,
            max_key_bytes=self._max_key,
            max_ttl=self._max_ttl,
        )
