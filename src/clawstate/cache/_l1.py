"""L1: the in-process tier — decoded Items in an LRU bounded by bytes, with deadlines.

Why it looks like this:

* **The hit path takes no lock.**  A hit is ``OrderedDict.get`` + one float
  comparison + ``move_to_end``; each is one C call, atomic under the GIL, so readers
  never wait for writers or for each other.  Every *mutation* (fill, invalidation,
  eviction) happens under the owning :class:`~clawstate.cache._namespace.NamespaceCache`'s
  lock, and the miss path re-checks under that lock, so a reader that raced an
  eviction only ever costs a miss, never a wrong answer.
* **An entry is a plain tuple** ``(item, deadline, seq, size)``: the cheapest record
  to build and to index.  ``item`` is ``None`` for a cached miss (negative entry);
  ``deadline`` is the earliest of the item's own ``expires_at`` and the cache TTL, so
  one comparison on the hit path honours both; ``seq`` is the change-log position the
  entry reflects (an item's seq, or for a miss the log position it was observed at),
  which is what invalidation compares against; ``size`` is the entry's byte charge.
* **Bytes, not entries.**  Values range from a few bytes to megabytes; the budget is
  charged the encoded size plus a fixed overhead, as the codec produced it.
* **Entries a write-back write has not flushed yet are pinned** (``seq`` is
  :data:`PENDING`): eviction skips them, invalidation never drops them, because until
  the flush they are the only copy of an acknowledged write in this process's view.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

from ..types import Item

__all__ = ["ENTRY_OVERHEAD", "L1", "PENDING", "Entry"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: The seq of an entry written by write-back and not flushed yet: newer than anything.
PENDING: Final = 1 << 62
#: Bytes charged per entry on top of its encoded value and key (the Item, the tuple,
#: the OrderedDict node): measured with tracemalloc at about 330 bytes for small items.
ENTRY_OVERHEAD: Final = 320

#: A namespace cache's entry: ``(item or None, deadline, seq, size)``
Entry = tuple[Item | None, float, int, int]


class L1(Generic[K, V]):
    """An LRU of ``(value, deadline, seq, size)`` tuples bounded by ``max_bytes``.  Not
    locked: callers mutate it under their own lock (see the module docstring).
    Namespace caches key it by ``str`` with :data:`Entry` values; ``memoize`` by
    argument tuples."""

    __slots__ = ("bytes", "data", "evictions", "expirations", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.data: OrderedDict[K, tuple[V, float, int, int]] = OrderedDict()
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self.expirations = 0

    def __len__(self) -> int:
        return len(self.data)

    def store(self, key: K, entry: tuple[V, float, int, int]) -> bool:
        """Insert or replace ``key``; evict least-recently-used entries to fit.

        False (and nothing stored) when the entry alone exceeds the budget.
        """
        size = entry[3]
        old = self.data.pop(key, None)
        if old is not None:
            self.bytes -= old[3]
        if size > self.max_bytes:
            return False
        self.data[key] = entry
        self.bytes += size
        if self.bytes > self.max_bytes:
            self._evict()
        return True

    def _evict(self) -> None:
        data = self.data
        # Each pinned entry is skipped at most once per call, so this ends even when
        # write-back has pinned more than the budget (the budget is then exceeded
        # until the flush unpins them: an acknowledged write is never dropped).
        skips = len(data)
        while self.bytes > self.max_bytes and data:
            key, entry = data.popitem(last=False)
            if entry[2] == PENDING and skips > 0:
                skips -= 1
                data[key] = entry
                continue
            self.bytes -= entry[3]
            self.evictions += 1

    def drop(self, key: K) -> tuple[V, float, int, int] | None:
        """Remove ``key``; the entry removed, if any."""
        entry = self.data.pop(key, None)
        if entry is not None:
            self.bytes -= entry[3]
        return entry

    def clear(self) -> int:
        """Drop every entry that is not pinned; how many were dropped."""
        # Snapshot first (one C call): lock-free readers may reorder the dict meanwhile.
        dropped = 0
        for key, entry in list(self.data.items()):
            if entry[2] != PENDING and self.data.pop(key, None) is not None:
                self.bytes -= entry[3]
                dropped += 1
        return dropped
