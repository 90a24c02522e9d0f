"""One namespace's cache: the modes, single-flight, fills guarded against stale races.

Reading (every mode): L1, then L2, then the backend — a *read-through* miss fills
L1 and L2 on the way back.  Misses are cached too (negative entries) for
``cache_negative_ttl``.  N threads missing the same key share one backend read
(single-flight); processes sharing L2 share one through a short lock in Redis.

Writing, after the backend committed (so a failed commit leaves the caches alone):
``read-through`` evicts the key, ``write-through`` installs the new item (decoded
from the stored bytes, so the caller's object is never aliased by the cache);
``write-back`` is in :mod:`._writeback`.

**The fill race, and the guard.**  A reader that misses, reads the backend and then
fills the cache can lose a race with a writer: read v1 → the writer commits v2 and
the invalidation evicts the key → the reader installs v1, stale until its TTL.  So
every invalidation and every own commit *notes* its change-log seq per key
(:attr:`NamespaceCache.recent`), and a fill is installed only if no change newer than
what it read has been noted; the note and the install are under one lock.  The notes
are bounded: when they overflow they are cleared and the *horizon* moves past them,
and a fill that began before the horizon is dropped (it can no longer be checked).
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._validate import check_key
from ..backends.base import OP_PUT, Outcome, StoredItem, Write
from ..types import Item
from ._l1 import ENTRY_OVERHEAD, L1, PENDING, Entry
from ._l2 import L2_LOCK_MS, decode_value, encode_value
from ._writeback import PendingUnit

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..config import NamespacePolicy
    from ._l2 import L2
    from ._tailer import Tailer
    from ._writeback import WriteBack

__all__ = ["MISS", "Miss", "NamespaceCache"]

#: Noted change seqs kept per namespace before they are cleared (see the module docstring).
MAX_NOTES: Final = 50_000
#: How long an L2 tombstone blocks late fills of older values (ms).
TOMBSTONE_MS: Final = 30_000

_payload = msgspec.msgpack.Encoder()
_payload_decoder = msgspec.msgpack.Decoder(tuple[int, float, float, float | None, bytes])
_token = secrets.token_hex(4)
_provisional = itertools.count(1)


class Miss:
    """The sentinel :meth:`NamespaceCache.peek` returns when it has no answer."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


MISS: Final = Miss()


def provisional_etag() -> str:
    """An etag for a write-back write not flushed yet: never a committed etag (those
    are hex seqs), never reused (a per-process random token and a counter)."""
    return f"~{_token}{next(_provisional):x}"


class _Flight:
    """One in-progress load that concurrent misses of the same key wait for.  The
    Event is made by the first follower (under the cache lock): most loads have none."""

    __slots__ = ("basis", "done", "entry", "error", "event")

    def __init__(self, basis: int) -> None:
        self.basis = basis
        self.done = False
        self.event: threading.Event | None = None
        self.entry: Entry | None = None
        self.error: BaseException | None = None


class NamespaceCache:
    """The cache of one namespace in one store (shared by every handle on it)."""

    def __init__(
        self,
        name: str,
        policy: NamespacePolicy,
        *,
        backend: Backend,
        tailer: Tailer,
        l2: L2 | None,
        write_back: WriteBack | None,
        decode: Callable[[StoredItem], Any],
        etag: Callable[[int], str],
        clock: Callable[[], float],
        max_key: int,
    ) -> None:
        self.name = name
        self.mode = policy.cache
        self.consistency = policy.cache_consistency
        self.strong = policy.cache_consistency == "strong"
        self.install_on_write = policy.cache != "read-through"
        self.ttl = policy.cache_ttl
        self.negative_ttl = policy.cache_negative_ttl or 0.0
        self.flush_delay = policy.cache_flush_delay
        self.l1: L1[str, Item | None] = L1(policy.cache_l1_bytes)
        self._data = self.l1.data
        # A strong read cannot trust a tier shared with processes it has not heard
        # from, without a round trip costing about what the backend read does.
        self.l2 = None if self.strong else l2
        self.write_back = write_back
        self._backend = backend
        self.tailer = tailer
        self._decode = decode
        self._etag = etag
        self._clock = clock
        self._max_key = max_key
        self.lock = threading.Lock()
        self._wlock = threading.Lock()
        self._inflight: dict[str, _Flight] = {}
        self.recent: dict[str, int] = {}
        self._horizon = 0
        self._max_noted = 0
        # statistics (plain ints: an increment lost to a thread switch is tolerated,
        # a lock on the hit path is not)
        self.hits = 0
        self.misses = 0
        self.l2_hits = 0
        self.l2_misses = 0
        self.backend_reads = 0
        #: the highest version a pending (acknowledged, unflushed) delete removed: the
        #: namespace's version floor once it commits (see put_back)
        self._floor_pending = 0
        #: per key with a pending delete: the version of the row it saw and whether it
        #: was live (removed: the key goes on from the floor) or expired (it stays)
        self._pending_base: dict[str, tuple[int, bool]] = {}
        self.shared_loads = 0
        self.stampede_waits = 0
        self.fills_refused = 0
        self.invalidations = 0

    # -- the hit path ---------------------------------------------------------------------

    def get(self, key: str) -> Item | None:
        """The live item at ``key`` or None: L1, else :meth:`_miss`."""
        if self.strong:
            self.tailer.sync()
        try:
            e = self._data.get(key)
        except TypeError:  # unhashable: not a key at all; the miss path says why
            return self._miss(key)
        if e is not None and e[1] > self._clock():
            try:
                self._data.move_to_end(key)
            except KeyError:  # evicted by another thread since the get: still a hit
                pass
            self.hits += 1
            return e[0]
        return self._miss(key)

    def peek(self, key: Any) -> Item | Miss | None:
        """An L1 hit without blocking (no backend, no lock), else :data:`MISS` — for the
        async facade, which can answer a hit on the event loop without a thread hop."""
        if self.strong:
            return MISS
        try:
            e = self._data.get(key)
        except TypeError:
            return MISS
        if e is not None and e[1] > self._clock():
            try:
                self._data.move_to_end(key)
            except KeyError:
                pass
            self.hits += 1
            return e[0]
        return MISS

    # -- misses -------------------------------------------------------------------------

    def _miss(self, key: str) -> Item | None:
        check_key(key, self._max_key)
        wb = self.write_back
        now = self._clock()
        if wb is not None:
            found, pending = wb.lookup(self.name, key)
            if found:
                return _live(pending, now)
        with self.lock:
            e = self._data.get(key)
            if e is not None:
                if e[1] > now:
                    self.hits += 1
                    return e[0]
                self.l1.drop(key)
                self.l1.expirations += 1
            self.misses += 1
            flight = self._inflight.get(key)
            if flight is not None and (not self.strong or flight.basis >= self.tailer.pos):
                self.shared_loads += 1
                leader = False
                if flight.event is None:
                    flight.event = threading.Event()
            else:
                flight = _Flight(self.tailer.pos)
                self._inflight[key] = flight
                leader = True
        if not leader:
            assert flight.event is not None
            flight.event.wait()
            if flight.error is not None:
                raise flight.error
            entry = flight.entry
            return None if entry is None else _live(entry[0], self._clock())
        try:
            entry = self._load(key, flight.basis, now)
            flight.entry = entry
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self.lock:
                if self._inflight.get(key) is flight:
                    del self._inflight[key]
                if flight.entry is not None:
                    self._install(key, flight.entry, flight.basis)
                flight.done = True
                event = flight.event
            if event is not None:
                event.set()
        return entry[0] if entry is not None else None

    def _load(self, key: str, basis: int, now: float) -> Entry | None:
        """One key from L2 or the backend; the entry to cache (None: nothing to cache)."""
        l2 = self.l2
        token = ""
        rkey = b""
        if l2 is not None:
            rkey = l2.key(self.name, key)
            raw = l2.get(rkey)
            if raw is not None:
                entry = self._from_l2(key, raw, now)
                if entry is not None:
                    self.l2_hits += 1
                    return entry
            self.l2_misses += 1
            got = l2.lock(rkey)
            if got is None:  # another process is loading it: wait briefly for its fill
                entry = self._await_l2(l2, key, rkey, now)
                if entry is not None:
                    return entry
            else:
                token = got
        st = self._backend.get(self.name, key, now)
        self.backend_reads += 1
        entry = self._entry_from(key, st, basis, now)
        if l2 is not None:
            self._fill_l2(l2, rkey, st, basis, now, token)
        return entry

    def _await_l2(self, l2: L2, key: str, rkey: bytes, now: float) -> Entry | None:
        self.stampede_waits += 1
        deadline = time.monotonic() + L2_LOCK_MS / 1000
        pause = 0.002
        while time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            raw = l2.get(rkey)
            if raw is not None:
                entry = self._from_l2(key, raw, now)
                if entry is not None:
                    self.l2_hits += 1
                    return entry
            if not l2.available:
                break
        return None

    def _entry_from(self, key: str, st: StoredItem | None, basis: int, now: float) -> Entry | None:
        if st is None:
            if self.negative_ttl <= 0:
                return None
            return (None, now + self.negative_ttl, basis, len(key) + ENTRY_OVERHEAD)
        item = Item(
            st.key,
            self._decode(st),
            st.version,
            self._etag(st.version),
            st.created_at,
            st.updated_at,
            st.expires_at,
            self.name,
        )
        return (item, self._deadline(now, st.expires_at), st.seq, _size(key, st.value))

    def _deadline(self, now: float, expires_at: float | None) -> float:
        deadline = now + self.ttl
        return deadline if expires_at is None or expires_at > deadline else expires_at

    def _ttl_ms(self, now: float, expires_at: float | None) -> int:
        ttl = self.ttl if expires_at is None else min(self.ttl, expires_at - now)
        return max(1, int(ttl * 1000))

    def _fill_l2(
        self, l2: L2, rkey: bytes, st: StoredItem | None, basis: int, now: float, token: str
    ) -> None:
        if st is None:
            if self.negative_ttl > 0:
                l2.fill(rkey, encode_value(basis, b"N"), int(self.negative_ttl * 1000), token)
            elif token:
                l2.fill(rkey, encode_value(0, b"T"), 1, token)  # only releases the lock
            return
        if st.expires_at is not None and st.expires_at <= now:
            return
        payload = _payload.encode(
            (st.version, st.created_at, st.updated_at, st.expires_at, st.value)
        )
        l2.fill(rkey, encode_value(st.seq, b"I", payload), self._ttl_ms(now, st.expires_at), token)

    def _from_l2(self, key: str, raw: bytes, now: float) -> Entry | None:
        try:
            seq, kind, payload = decode_value(raw)
            if kind == b"N":
                if self.negative_ttl <= 0:
                    return None
                return (None, now + self.negative_ttl, seq, len(key) + ENTRY_OVERHEAD)
            if kind != b"I":
                return None  # a tombstone: changed since, load it again
            version, created, updated, expires, value = _payload_decoder.decode(payload)
        except (ValueError, msgspec.DecodeError):
            return None  # not ours, or from an incompatible version: treat as a miss
        if expires is not None and expires <= now:
            return None
        st = StoredItem(self.name, key, value, version, seq, created, updated, expires)
        return self._entry_from(key, st, 0, now)

    # -- installing, guarded --------------------------------------------------------------

    def _install(self, key: str, entry: Entry, basis: int) -> None:
        """Store a fill in L1 unless a newer change was noted meanwhile.  Under ``lock``."""
        if basis < self._horizon or self.recent.get(key, 0) > entry[2]:
            self.fills_refused += 1
            return
        current = self._data.get(key)
        if current is not None and current[2] > entry[2]:
            return  # something newer (or a pending write-back write) is cached
        self.l1.store(key, entry)

    def _note(self, key: str, seq: int) -> None:
        """Remember that ``key`` changed at ``seq`` (see the fill guard).  Under ``lock``."""
        recent = self.recent
        if recent.get(key, 0) < seq:
            recent[key] = seq
        if seq > self._max_noted:
            self._max_noted = seq
        if len(recent) > MAX_NOTES:
            recent.clear()
            self._horizon = self._max_noted

    # -- invalidation (the tailer) ----------------------------------------------------------

    def invalidate_many(self, changed: Sequence[tuple[str, int]]) -> int:
        """Apply change-log rows: evict each key whose cached entry is older."""
        evicted = 0
        with self.lock:
            for key, seq in changed:
                self._note(key, seq)
                e = self._data.get(key)
                if e is not None and e[2] < seq:
                    self.l1.drop(key)
                    evicted += 1
        self.invalidations += evicted
        l2 = self.l2
        if l2 is not None:
            l2.tombstone(
                [l2.key(self.name, k) for k, _ in changed], [s for _, s in changed], TOMBSTONE_MS
            )
        return evicted

    def reset(self, pos: int) -> None:
        """Forget everything but pending writes (the change log lost rows we needed)."""
        with self.lock:
            self.invalidations += self.l1.clear()
            self.recent.clear()
            self._max_noted = max(self._max_noted, pos)
            self._horizon = self._max_noted

    # -- get_many ---------------------------------------------------------------------------

    def get_many(self, keys: list[str]) -> dict[str, Item]:
        """The live items among ``keys`` (already checked), in the order asked."""
        if self.strong:
            self.tailer.sync()
        now = self._clock()
        data = self._data
        wb = self.write_back
        found: dict[str, Item | None] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            if wb is not None:
                hit, pending = wb.lookup(self.name, key)
                if hit:
                    found[key] = _live(pending, now)
                    continue
            e = data.get(key)
            if e is not None and e[1] > now:
                try:
                    data.move_to_end(key)
                except KeyError:
                    pass
                self.hits += 1
                found[key] = e[0]
            else:
                missing.append(key)
        if missing:
            self.misses += len(missing)
            basis = self.tailer.pos
            entries = self._load_many(missing, basis, now)
            with self.lock:
                for key, entry in entries.items():
                    if entry is not None:
                        self._install(key, entry, basis)
            for key, entry in entries.items():
                found[key] = entry[0] if entry is not None else None
        out: dict[str, Item] = {}
        for key in found:
            item = found[key]
            if item is not None:
                out[key] = item
        return out

    def _load_many(self, keys: list[str], basis: int, now: float) -> dict[str, Entry | None]:
        entries: dict[str, Entry | None] = {}
        todo = keys
        l2 = self.l2
        if l2 is not None:
            rkeys = [l2.key(self.name, k) for k in keys]
            todo = []
            for key, raw in zip(keys, l2.mget(rkeys), strict=True):
                entry = None if raw is None else self._from_l2(key, raw, now)
                if entry is None:
                    todo.append(key)
                    self.l2_misses += 1
                else:
                    entries[key] = entry
                    self.l2_hits += 1
        if todo:
            stored = {st.key: st for st in self._backend.get_many(self.name, todo, now)}
            self.backend_reads += 1
            for key in todo:
                st = stored.get(key)
                entries[key] = self._entry_from(key, st, basis, now)
                if l2 is not None:
                    self._fill_l2(l2, l2.key(self.name, key), st, basis, now, "")
        return {key: entries[key] for key in keys}

    # -- after a synchronous commit (every mode) ---------------------------------------------

    def committed(self, writes: Sequence[Write], outcomes: Sequence[Outcome]) -> None:
        """Apply this process's own committed writes: install (write-through, and the
        synchronous writes of write-back) or evict (read-through); L2 likewise."""
        now = self._clock()
        built: list[tuple[str, int, Entry | None]] = []
        for w, o in zip(writes, outcomes, strict=True):
            if not o.applied:
                continue
            entry: Entry | None = None
            if self.install_on_write:
                if w.op == OP_PUT and w.value is not None:
                    st = StoredItem(
                        self.name,
                        w.key,
                        w.value,
                        o.version,
                        o.seq,
                        o.created_at,
                        o.updated_at,
                        o.expires_at,
                    )
                    entry = self._entry_from(w.key, st, o.seq, now)
                elif self.negative_ttl > 0:
                    entry = (None, now + self.negative_ttl, o.seq, len(w.key) + ENTRY_OVERHEAD)
            built.append((w.key, o.seq, entry))
        if not built:
            return
        newest = max(seq for _, seq, _ in built)
        if newest > self.tailer.own:
            self.tailer.own = newest
        with self.lock:
            for key, seq, entry in built:
                self._note(key, seq)
                current = self._data.get(key)
                if current is not None and current[2] >= seq:
                    continue  # as new already, or a write-back write made after this one
                if entry is None:
                    self.l1.drop(key)
                else:
                    self.l1.store(key, entry)
        if self.l2 is not None:
            self._write_l2(writes, outcomes, now)

    def _write_l2(self, writes: Sequence[Write], outcomes: Sequence[Outcome], now: float) -> None:
        l2 = self.l2
        assert l2 is not None
        tomb_keys: list[bytes] = []
        tomb_seqs: list[int] = []
        for w, o in zip(writes, outcomes, strict=True):
            if not o.applied:
                continue
            rkey = l2.key(self.name, w.key)
            if self.install_on_write and w.op == OP_PUT and w.value is not None:
                st = StoredItem(
                    self.name, w.key, w.value, o.version, o.seq, o.created_at, o.updated_at,
                    o.expires_at,
                )  # fmt: skip
                self._fill_l2(l2, rkey, st, o.seq, now, "")
            else:
                tomb_keys.append(rkey)
                tomb_seqs.append(o.seq)
        l2.tombstone(tomb_keys, tomb_seqs, TOMBSTONE_MS)

    # -- write-back ----------------------------------------------------------------------------

    def put_back(self, writes: list[Write], values: Sequence[Any], now: float) -> list[Item]:
        """Acknowledge puts from the cache (write-back); flushed later by the WriteBack."""
        wb = self.write_back
        assert wb is not None
        acked: list[Item] = []
        cached: list[Item | None] = []
        expiries: list[float] = []
        with self._wlock:
            seen: dict[str, tuple[int, float, float | None] | None] = {}
            for w, value in zip(writes, values, strict=True):
                state = seen[w.key] if w.key in seen else self._state(w.key, now)
                if state is not None and state[2] is not None:
                    expiries.append(state[2])
                # As the backend will assign it (versions never repeat, see
                # backends/_apply.py): the next one over a live or an expired item, else
                # above the namespace's version floor, pending deletes included.
                if state is not None and (state[2] is None or state[2] > now):
                    version, created = state[0] + 1, state[1]
                elif state is not None:
                    version, created = state[0] + 1, now
                else:
                    version, created = self._version_base(w.key) + 1, now
                etag = provisional_etag()
                assert w.value is not None
                st = StoredItem(self.name, w.key, w.value, version, 0, created, now, w.expires_at)
                copy = self._decode(st)  # the cache never shares the caller's object
                acked.append(
                    Item(w.key, value, version, etag, created, now, w.expires_at, self.name)
                )
                cached.append(
                    Item(w.key, copy, version, etag, created, now, w.expires_at, self.name)
                )
                seen[w.key] = (version, created, w.expires_at)
            self._queue_back(PendingUnit(self, writes, now, cached, expiries), now)
        return acked

    def delete_back(self, write: Write, now: float) -> bool:
        """Acknowledge a delete from the cache (write-back): True if a live item goes."""
        wb = self.write_back
        assert wb is not None
        with self._wlock:
            state = self._state(write.key, now)
            live = state is not None and (state[2] is None or state[2] > now)
            if state is not None:
                self._pending_base[write.key] = (state[0], live)
                if live and state[0] > self._floor_pending:
                    self._floor_pending = state[0]
            expiries = [state[2]] if state is not None and state[2] is not None else []
            self._queue_back(PendingUnit(self, [write], now, [None], expiries), now)
        return live

    def _queue_back(self, unit: PendingUnit, now: float) -> None:
        wb = self.write_back
        assert wb is not None
        with self.lock:
            for w, item in zip(unit.writes, unit.items, strict=True):
                if item is None:
                    entry: Entry = (None, now + self.ttl, PENDING, len(w.key) + ENTRY_OVERHEAD)
                else:
                    assert w.value is not None
                    deadline = self._deadline(now, item.expires_at)
                    entry = (item, deadline, PENDING, _size(w.key, w.value))
                if not self.l1.store(w.key, entry):
                    self.l1.drop(w.key)
        try:
            wb.submit(unit, self.flush_delay)
        except BaseException:
            # Not accepted (the backend stalls): unpin what this unit pinned.
            with self.lock:
                for w, item in zip(unit.writes, unit.items, strict=True):
                    e = self._data.get(w.key)
                    mine = e is not None and e[2] == PENDING and e[0] is item
                    if mine and not wb.lookup(self.name, w.key)[0]:
                        self.l1.drop(w.key)
            raise

    def _version_base(self, key: str) -> int:
        """What a new version of ``key`` goes on from when this process knows no live
        item for it, as the backend will decide at the flush: a stored (expired) row's
        version, else the namespace's version floor — raised by pending deletes."""
        state = getattr(self._backend, "version_state", None)
        row, floor = (None, 0) if state is None else state(self.name, key)
        self.backend_reads += 1
        floor = max(floor, self._floor_pending)
        pending = self._pending_base.get(key)
        if pending is not None:  # the backend still holds the row a pending delete saw
            version, removed = pending
            return floor if removed else version
        return floor if row is None else row

    def _state(self, key: str, now: float) -> tuple[int, float, float | None] | None:
        """(version, created_at, expires_at) of the key as this process knows it."""
        wb = self.write_back
        if wb is not None:
            found, pending = wb.lookup(self.name, key)
            if found:
                if pending is None:
                    return None
                return pending.version, pending.created_at, pending.expires_at
        if not self.strong:
            e = self._data.get(key)
            if e is not None and e[1] > now:
                item = e[0]
                return None if item is None else (item.version, item.created_at, item.expires_at)
        st = self._backend.get(self.name, key, now)
        self.backend_reads += 1
        return None if st is None else (st.version, st.created_at, st.expires_at)

    def flushed(self, unit: PendingUnit, outcomes: Sequence[Outcome]) -> None:
        """A write-back unit committed: the cache now serves the committed items."""
        wb = self.write_back
        assert wb is not None
        now = self._clock()
        newest = max((o.seq for o in outcomes if o.applied), default=0)
        if newest > self.tailer.own:
            self.tailer.own = newest
        with self.lock:
            for w, item, o in zip(unit.writes, unit.items, outcomes, strict=True):
                if o.applied:
                    self._note(w.key, o.seq)
                held = wb.pending.get((self.name, w.key))
                if held is None or held[1] is not unit:
                    continue  # a later write-back write owns the entry now
                self._pending_base.pop(w.key, None)  # the backend knows it now
                entry: Entry | None = None
                if item is not None and o.applied:
                    committed = Item(
                        w.key,
                        item.value,
                        o.version,
                        self._etag(o.version),
                        o.created_at,
                        o.updated_at,
                        o.expires_at,
                        self.name,
                    )
                    assert w.value is not None
                    deadline = self._deadline(now, o.expires_at)
                    entry = (committed, deadline, o.seq, _size(w.key, w.value))
                elif o.applied and self.negative_ttl > 0:
                    entry = (None, now + self.negative_ttl, o.seq, len(w.key) + ENTRY_OVERHEAD)
                if entry is None or self.recent.get(w.key, 0) > entry[2]:
                    self.l1.drop(w.key)
                else:
                    self.l1.store(w.key, entry)
        if self.l2 is not None:
            self._write_l2(unit.writes, outcomes, now)

    def discard(self, unit: PendingUnit) -> None:
        """A write-back unit the backend refused: stop serving what it acknowledged."""
        wb = self.write_back
        assert wb is not None
        with self.lock:
            for w in unit.writes:
                held = wb.pending.get((self.name, w.key))
                if held is not None and held[1] is unit:
                    self.l1.drop(w.key)

    def settle(self) -> None:
        """Flush pending write-back writes (a barrier before reading past the cache)."""
        if self.write_back is not None:
            self.write_back.flush()

    # -- stats ------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        l1_lookups = self.hits + self.misses
        l2_lookups = self.l2_hits + self.l2_misses
        out: dict[str, Any] = {
            "mode": self.mode,
            "consistency": self.consistency,
            "hit_ratio": _ratio(self.hits + self.l2_hits, l1_lookups),
            "l1": {
                "hits": self.hits,
                "misses": self.misses,
                "hit_ratio": _ratio(self.hits, l1_lookups),
                "entries": len(self.l1),
                "bytes": self.l1.bytes,
                "max_bytes": self.l1.max_bytes,
                "evictions": self.l1.evictions,
                "expirations": self.l1.expirations,
                "invalidations": self.invalidations,
            },
            "l2": None,
            "backend_reads": self.backend_reads,
            "single_flight_shared": self.shared_loads,
            "fills_refused": self.fills_refused,
        }
        if self.l2 is not None:
            out["l2"] = {
                "hits": self.l2_hits,
                "misses": self.l2_misses,
                "hit_ratio": _ratio(self.l2_hits, l2_lookups),
                "stampede_waits": self.stampede_waits,
            }
        return out


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _size(key: str, value: bytes) -> int:
    return len(value) + len(key) + ENTRY_OVERHEAD


def _live(item: Item | None, now: float) -> Item | None:
    if item is None or (item.expires_at is not None and item.expires_at <= now):
        return None
    return item
