"""``memoize``: cache a function's results by its arguments, for a TTL, in L1 and L2.

>>> import clawstate
>>> @clawstate.memoize(ttl=60)
... def price(sku: str) -> float:
...     return 9.5
>>> price("a"), price("a"), price.stats()["l1"]["hits"]
(9.5, 9.5, 1)

The same tiers as the store's cache: an in-process LRU bounded by bytes (L1) and,
with ``l2="redis://…"``, Redis shared by every process (L2), which degrades to L1
alone when Redis is unreachable.  Concurrent calls with the same arguments share one
call of the function (single-flight).  Exceptions are not cached.

Why the rules are what they are:

* **TTL only.**  A function's result is not store data, so no change-log row
  announces that it went stale; it lives for ``ttl`` seconds.  ``f.invalidate(*args)``
  forgets one result in this process and in L2 (other processes' L1 copies live out
  their TTL); ``f.clear()`` empties this process's L1.
* **L2 holds msgpack**, never pickle: results must be JSON-like (None, bool, int,
  float, str, bytes, lists, dicts); tuples come back from L2 as lists.  Results that
  cannot be encoded stay in L1 only.  Arguments key the cache by value (their msgpack
  encoding for L2 and for unhashable arguments).
* **Cached results are shared**, as with ``functools.lru_cache``: treat them as
  read-only.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, ParamSpec, TypeVar, cast

import msgspec

from ..config import parse_duration, parse_size
from ..errors import ConfigError
from ._l1 import ENTRY_OVERHEAD, L1

__all__ = ["Memoized", "memoize"]

P = ParamSpec("P")
R = TypeVar("R")

_encoder = msgspec.msgpack.Encoder()
_MISSING: Any = object()


class _Call:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = _MISSING
        self.error: BaseException | None = None


class Memoized(Generic[P, R]):
    """A memoized function: call it like the original; see :func:`memoize`."""

    def __init__(
        self, fn: Callable[P, R], ttl: float, max_bytes: int, l2: str | None, name: str
    ) -> None:
        functools.update_wrapper(self, fn)
        self.__wrapped__ = fn
        self._fn = fn
        self._async = inspect.iscoroutinefunction(fn)
        self.ttl = ttl
        self.name = name
        self._l1: L1[Hashable, Any] = L1(max_bytes)
        self._data = self._l1.data
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}
        self._l2 = None
        if l2 is not None:
            from ._l2 import L2

            digest = hashlib.blake2b(name.encode(), digest_size=6).hexdigest()
            self._l2 = L2(l2, b"clawstate:m:" + digest.encode() + b":")
        self.hits = 0
        self.misses = 0
        self.l2_hits = 0
        self.l2_misses = 0
        self.calls = 0
        self.shared = 0

    # -- keys -------------------------------------------------------------------------

    @staticmethod
    def _key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        key: Hashable = (args, tuple(sorted(kwargs.items()))) if kwargs else args
        try:
            hash(key)
        except TypeError:
            try:
                return _encoder.encode([args, kwargs])
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"memoize: arguments must be hashable or msgpack-encodable: {exc}"
                ) from None
        return key

    def _rkey(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | None:
        assert self._l2 is not None
        try:
            raw = _encoder.encode([args, kwargs])
        except (TypeError, ValueError):
            return None
        return self._l2.prefix + hashlib.blake2b(raw, digest_size=16).hexdigest().encode()

    # -- calls ------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self._key(args, kwargs)
        e = self._data.get(key)
        if e is not None and e[1] > time.time():
            try:
                self._data.move_to_end(key)
            except KeyError:
                pass
            self.hits += 1
            return cast(R, _ready(e[0])) if self._async else cast(R, e[0])
        if self._async:
            return cast(R, self._acall(key, args, kwargs))
        return cast(R, self._miss(key, args, kwargs))

    def _lookup_l2(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._l2 is None:
            return _MISSING
        rkey = self._rkey(args, kwargs)
        raw = None if rkey is None else self._l2.get(rkey)
        if raw is None:
            self.l2_misses += 1
            return _MISSING
        self.l2_hits += 1
        return msgspec.msgpack.decode(raw)

    def _remember(
        self, key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any
    ) -> None:
        try:
            encoded: bytes | None = _encoder.encode(value)
        except (TypeError, ValueError):
            encoded = None
        size = (len(encoded) if encoded is not None else sys.getsizeof(value)) + ENTRY_OVERHEAD
        with self._lock:
            self._l1.store(key, (value, time.time() + self.ttl, 0, size))
        if self._l2 is not None and encoded is not None:
            rkey = self._rkey(args, kwargs)
            if rkey is not None:
                self._l2.set(rkey, encoded, int(self.ttl * 1000))

    def _miss(self, key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self._lock:
            e = self._data.get(key)
            if e is not None and e[1] > time.time():
                self.hits += 1
                return e[0]
            self.misses += 1
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
            else:
                self.shared += 1
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.value
        try:
            value = self._lookup_l2(args, kwargs)
            if value is _MISSING:
                self.calls += 1
                value = self._fn(*args, **kwargs)
                self._remember(key, args, kwargs, value)
            else:
                with self._lock:
                    self._l1.store(key, (value, time.time() + self.ttl, 0, ENTRY_OVERHEAD))
            call.value = value
            return value
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                self._calls.pop(key, None)
            call.done.set()

    async def _acall(self, key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        import asyncio

        with self._lock:
            self.misses += 1
        value = self._lookup_l2(args, kwargs)
        if value is not _MISSING:
            return value
        # Single-flight per event loop: concurrent awaits of one key share one task.
        tasks = self.__dict__.setdefault("_tasks", {})
        task = tasks.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            self.calls += 1
            task = asyncio.ensure_future(cast(Any, self._fn)(*args, **kwargs))
            tasks[key] = task
            try:
                value = await task
            finally:
                tasks.pop(key, None)
            self._remember(key, args, kwargs, value)
            return value
        self.shared += 1
        return await task

    # -- management ---------------------------------------------------------------------

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Forget the result for these arguments here and in L2."""
        with self._lock:
            self._l1.drop(self._key(args, kwargs))
        if self._l2 is not None:
            rkey = self._rkey(args, kwargs)
            if rkey is not None:
                self._l2.delete([rkey])

    def clear(self) -> None:
        """Forget every result this process holds (L2 entries live out their TTL)."""
        with self._lock:
            self._l1.clear()

    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        l2 = None
        if self._l2 is not None:
            n = self.l2_hits + self.l2_misses
            l2 = {
                "hits": self.l2_hits,
                "misses": self.l2_misses,
                "hit_ratio": None if n == 0 else round(self.l2_hits / n, 4),
                **self._l2.stats(),
            }
        return {
            "name": self.name,
            "l1": {
                "hits": self.hits,
                "misses": self.misses,
                "hit_ratio": None if lookups == 0 else round(self.hits / lookups, 4),
                "entries": len(self._l1),
                "bytes": self._l1.bytes,
                "max_bytes": self._l1.max_bytes,
                "evictions": self._l1.evictions,
            },
            "l2": l2,
            "calls": self.calls,
            "single_flight_shared": self.shared,
        }

    def close(self) -> None:
        if self._l2 is not None:
            self._l2.close()


async def _ready(value: Any) -> Any:
    return value


def memoize(
    ttl: float | str = 60.0,
    *,
    max_bytes: int | str = 16 * 1024 * 1024,
    l2: str | None = None,
    name: str | None = None,
) -> Callable[[Callable[P, R]], Memoized[P, R]]:
    """Cache the decorated function's results by argument for ``ttl`` (seconds or
    ``"5m"``), in an L1 of ``max_bytes`` and, with ``l2="redis://host:6379/0"``, in
    Redis shared by processes.  ``name`` keys L2 (default: the function's module and
    qualified name — processes must agree on it).  Works on ``async def`` functions
    too.  See the module docstring for what is cached and how it is invalidated."""
    seconds = parse_duration(ttl, field="memoize.ttl")
    if seconds <= 0:
        raise ConfigError("memoize.ttl", f"must be a duration > 0, got {ttl!r}")
    budget = parse_size(max_bytes, field="memoize.max_bytes")
    if l2 is not None:
        from ..config import _cache_l2_check, _Invalid

        try:
            l2 = _cache_l2_check(l2)
        except _Invalid as exc:
            raise ConfigError("memoize.l2", exc.message) from None

    def decorate(fn: Callable[P, R]) -> Memoized[P, R]:
        label = name or f"{fn.__module__}.{fn.__qualname__}"
        return Memoized(fn, seconds, budget, l2, label)

    return decorate
