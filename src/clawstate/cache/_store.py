"""The caches of one Store: per-namespace caches, and per backend one tailer and one
write-back queue; L2 connections shared by the namespaces that name the same Redis."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ClawStateError, InvalidRequest
from ._l2 import L2
from ._namespace import NamespaceCache
from ._tailer import Tailer
from ._writeback import WriteBack

if TYPE_CHECKING:
    from ..backends.base import Backend, StoredItem
    from ..config import NamespacePolicy


class Attachable(Protocol):
    """What :meth:`StoreCache.attach` reads of a namespace handle
    (:class:`clawstate.store.Namespace` meets it).  A protocol, not an import of the
    facade: the facade imports the cache, so the cache must not import it back."""

    @property
    def name(self) -> str: ...
    @property
    def policy(self) -> NamespacePolicy: ...
    @property
    def backend_name(self) -> str: ...
    @property
    def _backend(self) -> Backend: ...
    @property
    def _max_key(self) -> int: ...
    def _decode(self, st: StoredItem) -> Any: ...


__all__ = ["StoreCache"]

#: The NamespacePolicy fields that make up a namespace's cache policy.
CACHE_FIELDS = (
    "backend",
    "cache",
    "cache_l1_bytes",
    "cache_l2",
    "cache_ttl",
    "cache_negative_ttl",
    "cache_consistency",
    "cache_flush_delay",
)


def _policy_key(policy: NamespacePolicy) -> tuple[Any, ...]:
    return tuple(getattr(policy, f) for f in CACHE_FIELDS)


class StoreCache:
    """Owns every cache of one :class:`~clawstate.store.Store` (built by the Store).

    A namespace's cache policy is fixed for the life of the store: every handle on
    a namespace shares one cache (its L1, its pending write-back writes, its
    single-flight table), so a handle asking for other cache options is refused
    rather than silently reading around the others' unflushed writes.
    """

    def __init__(
        self, *, clock: Callable[[], float], etag: Callable[[int], str], urls: Mapping[str, str]
    ) -> None:
        self._clock = clock
        self._etag = etag
        self._urls = dict(urls)
        self._lock = threading.Lock()
        self._policies: dict[str, tuple[Any, ...]] = {}
        self._caches: dict[str, NamespaceCache] = {}
        self._tailers: dict[str, Tailer] = {}
        self._writebacks: dict[str, WriteBack] = {}
        self._l2: dict[tuple[str, str], L2] = {}
        self._closed = False

    def attach(self, ns: Attachable) -> NamespaceCache | None:
        """The cache for a new handle on ``ns.name`` (None: not cached)."""
        name, policy = ns.name, ns.policy
        if name.startswith("_"):
            return None  # clawstate's own namespaces (tokens, audit) are never cached
        key = _policy_key(policy)
        with self._lock:
            known = self._policies.get(name)
            if known is not None and known != key:
                changed = [f for f, a, b in zip(CACHE_FIELDS, known, key, strict=True) if a != b]
                raise InvalidRequest(
                    f"namespaces.{name}.{changed[0]}",
                    "a namespace's cache policy and backend are fixed once it is opened in "
                    f"this store (every handle shares one cache); {', '.join(changed)} "
                    "differ from the first handle's — set them in the configuration",
                )
            self._policies[name] = key
            if policy.cache == "none":
                return None
            cache = self._caches.get(name)
            if cache is not None:
                return cache
            if self._closed:
                raise ClawStateError("the store is closed")
            bname = ns.backend_name
            backend = ns._backend
            tailer = self._tailers.get(bname)
            if tailer is None:
                tailer = self._tailers[bname] = Tailer(backend, bname)
            write_back = None
            if policy.cache == "write-back":
                write_back = self._writebacks.get(bname)
                if write_back is None:
                    write_back = self._writebacks[bname] = WriteBack(backend, bname)
            l2 = None
            if policy.cache_l2 is not None:
                l2 = self._l2_for(policy.cache_l2, bname)
            cache = NamespaceCache(
                name,
                policy,
                backend=backend,
                tailer=tailer,
                l2=l2,
                write_back=write_back,
                decode=ns._decode,
                etag=self._etag,
                clock=self._clock,
                max_key=ns._max_key,
            )
            tailer.add(cache)
            self._caches[name] = cache
            return cache

    def _l2_for(self, url: str, backend_name: str) -> L2:
        found = self._l2.get((url, backend_name))
        if found is None:
            # Keys are prefixed by the identity of the data they cache, so stores on
            # different databases can share one Redis, and processes on the same one
            # share entries.  A memory:// store is private to its process.
            where = self._urls.get(backend_name, "")
            if where.startswith("memory:"):
                where += f"#{os.getpid()}-{id(self)}"
            digest = hashlib.blake2b(where.encode(), digest_size=6).hexdigest()
            found = L2(url, b"clawstate:c:" + digest.encode() + b":")
            self._l2[(url, backend_name)] = found
        return found

    def settle(self, backend_name: str | None = None) -> None:
        """Flush pending write-back writes (of one backend, or all): the barrier every
        read that goes past the cache takes, so a process sees its own writes."""
        if not self._writebacks:
            return
        for bname, wb in list(self._writebacks.items()):
            if backend_name is None or bname == backend_name:
                wb.flush()

    def stats(self) -> dict[str, Any]:
        """Hit ratios per tier and namespace, evictions, bytes; tailers; write-back; L2."""
        from ..config import _redact

        return {
            "namespaces": {n: c.stats() for n, c in sorted(self._caches.items())},
            "change_log": {b: t.stats() for b, t in self._tailers.items()},
            "write_back": {b: w.stats() for b, w in self._writebacks.items()},
            "l2": {f"{_redact(u)} ({b})": l2.stats() for (u, b), l2 in self._l2.items()},
        }

    def close(self) -> None:
        """Flush write-back (raising if acknowledged writes are lost), stop the threads."""
        with self._lock:
            self._closed = True
        error: ClawStateError | None = None
        for wb in self._writebacks.values():
            try:
                wb.close()
            except ClawStateError as exc:
                error = error or exc
        # Stop the tailers *before* the backends close: a backend may not be closed
        # under a thread that is using it (SQLite connections are not).
        for tailer in self._tailers.values():
            tailer.stop()
        for tailer in self._tailers.values():
            tailer.join()
        for l2 in self._l2.values():
            l2.close()
        if error is not None:
            raise error
