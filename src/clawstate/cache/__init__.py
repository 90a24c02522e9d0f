"""The cache: L1 in the process, L2 in Redis, invalidated from the change log.

A per-namespace policy (``cache = "read-through" | "write-through" | "write-back"``
and the ``cache_*`` options, see :class:`clawstate.config.NamespacePolicy`) puts a
namespace's reads, and for the last two modes its writes, through two tiers:

* **L1** (:mod:`._l1`) — decoded Items in this process, an LRU bounded by bytes,
  each entry with a deadline (the cache TTL, never past the item's ``expires_at``);
  hits take no lock.
* **L2** (:mod:`._l2`) — encoded items in Redis, shared by every process and server
  on the same data; optional, and never load-bearing (Redis down = a slower miss).

Staleness is bounded by the one mechanism the store already has: every process
tails the backend's change log (:mod:`._tailer`) and evicts what changed.
``consistency = "strong"`` catches up with the log's watermark before every read.
Write-back (:mod:`._writeback`) **acknowledges before durability**.  ``memoize``
(:mod:`.memoize`) caches function results in the same tiers.  docs/cache.md is the
user's guide; :class:`StoreCache` is what a :class:`~clawstate.store.Store` owns.
"""

from __future__ import annotations

from ._namespace import MISS, Miss, NamespaceCache
from ._store import StoreCache
from .memoize import Memoized, memoize

__all__ = ["MISS", "Memoized", "Miss", "NamespaceCache", "StoreCache", "memoize"]
