"""The in-memory reference backend.

Plain dicts under one lock: no durability, one process.  It exists to be
obviously right — the conformance suite and the Hypothesis model test run on it
first, so when SQLite (or later PostgreSQL, Redis) disagree, the reference says
which is wrong — and to give tests and ephemeral stores a zero-I/O option
(``clawstate.open("memory://")``).

Declared indexes (issue 12) are dicts, so the memory backend plans queries as the
others do: per ``(namespace, path)`` an :class:`_Index` maps each type-tagged scalar
found at the path (:mod:`.._docindex`) to the set of keys holding it, plus the keys
whose value is encrypted (opaque: always candidates).  They are maintained in
:meth:`MemoryBackend._commit`, under the lock, for every write, rewrap and sweep
purge; ``ensure_index`` builds one over the existing items at once (under the lock:
one process, nothing to resume).  A query that :func:`~clawstate.query.serving_path`
says an index serves reads only the candidate keys — ``EQ``/``IN`` one dict lookup per
operand, a range one pass over the path's *distinct* values — in key order, and
decodes and filters them like any other row (the index only narrows).
"""

from __future__ import annotations

import bisect
import itertools
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import ClawStateError, InvalidRequest
from ...types import Change, QueryPlan
from .._apply import Row, apply_unit
from .._docindex import (
    OPAQUE,
    TAG_NUMBER,
    TAG_STRING,
    Token,
    document_of,
    getter,
    index_name,
    parse_index_path,
    scalar_at,
    token_of_operand,
)
from .._keyorder import prefix_upper_bound
from ..base import (
    NO_DOCUMENT,
    OP_NAMES,
    OP_PUT,
    BackendOptions,
    Capabilities,
    Decoder,
    Outcome,
    Progress,
    QueryResult,
    StoredItem,
    SweepResult,
    WriteUnit,
)
from .events import EventStage, MemoryEventLog, MemoryEventRows, MemoryEvents

if TYPE_CHECKING:
    from ...config import ParsedUrl
    from ...query import Filter, Query

__all__ = ["MemoryBackend"]

_MISSING = object()


class _Namespace:
    """Items of one namespace plus a sorted key list for scans."""

    __slots__ = ("items", "keys")

    def __init__(self) -> None:
        self.items: dict[str, StoredItem] = {}
        self.keys: list[str] = []


class _Index:
    """One declared index: scalar token -> keys, and the keys of opaque values."""

    __slots__ = ("get", "name", "opaque", "path", "values")

    def __init__(self, namespace: str, path: tuple[str, ...]) -> None:
        self.path = path
        self.name = index_name(namespace, path)
        self.get = getter(path)
        self.values: dict[Token, set[str]] = {}
        self.opaque: set[str] = set()


#: What one item contributed to its namespace's indexes: (index, token or None = opaque).
_Record = list[tuple[_Index, "Token | None"]]


def _utf8_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


class _Overlay(MemoryEventRows):
    """RowAccess that stages one unit's writes; applied only if the unit succeeds."""

    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend
        self.committed_events = backend._events
        self.event_stage: EventStage | None = None
        self.staged: dict[tuple[str, str], StoredItem | None] = {}
        self.rewrites: dict[tuple[str, str], bytes] = {}
        self.log_rows: list[tuple[Change, bytes | None]] = []
        self.idem: dict[str, tuple[bytes, bytes, float]] = {}
        self.floors: dict[str, int] = {}
        self.seq = backend._seq

    def _current(self, namespace: str, key: str) -> StoredItem | None:
        staged = self.staged.get((namespace, key), _MISSING)
        if staged is not _MISSING:
            return staged  # type: ignore[return-value]
        ns = self.backend._data.get(namespace)
        return None if ns is None else ns.items.get(key)

    def read(self, namespace: str, key: str) -> Row | None:
        it = self._current(namespace, key)
        return None if it is None else Row(it.version, it.seq, it.created_at, it.expires_at)

    def upsert(
        self,
        namespace: str,
        key: str,
        value: bytes,
        version: int,
        seq: int,
        created_at: float,
        updated_at: float,
        expires_at: float | None,
        exists: bool,
    ) -> None:
        self.staged[(namespace, key)] = StoredItem(
            namespace, key, value, version, seq, created_at, updated_at, expires_at
        )

    def put_unconditional(
        self,
        namespace: str,
        key: str,
        value: bytes,
        now: float,
        expires_at: float | None,
    ) -> tuple[int, float, int]:
        seq = self.next_seq()
        it = self._current(namespace, key)
        if it is None:
            version, created = self.version_floor(namespace) + 1, now
        elif it.expires_at is not None and it.expires_at <= now:
            version, created = it.version + 1, now  # a new incarnation, never an old version
        else:
            version, created = it.version + 1, it.created_at
        self.upsert(namespace, key, value, version, seq, created, now, expires_at, it is not None)
        return version, created, seq

    def delete(self, namespace: str, key: str) -> None:
        self.staged[(namespace, key)] = None

    def version_floor(self, namespace: str) -> int:
        return max(self.floors.get(namespace, 0), self.backend._floors.get(namespace, 0))

    def raise_floor(self, namespace: str, version: int) -> None:
        if version > self.version_floor(namespace):
            self.floors[namespace] = version

    def rewrite(self, namespace: str, key: str, value: bytes) -> None:
        it = self._current(namespace, key)
        if it is not None:
            self.staged[(namespace, key)] = StoredItem(
                namespace,
                key,
                value,
                it.version,
                it.seq,
                it.created_at,
                it.updated_at,
                it.expires_at,
            )

    def log(
        self,
        seq: int,
        namespace: str,
        key: str,
        op: int,
        version: int,
        ts: float,
        value: bytes | None,
    ) -> None:
        self.log_rows.append((Change(seq, namespace, key, OP_NAMES[op], version, ts), value))  # type: ignore[arg-type]

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def idempotency_get(self, key: str) -> tuple[bytes, bytes, float] | None:
        return self.idem.get(key) or self.backend._idem.get(key)

    def idempotency_put(self, key: str, fingerprint: bytes, result: bytes, expires: float) -> None:
        self.idem[key] = (fingerprint, result, expires)


class MemoryBackend(MemoryEventLog):
    """Reference backend: everything in dicts, guarded by one lock."""

    name = "memory"
    capabilities = Capabilities(
        durable=False, multi_process=False, native_query=False, events=True, documents=True
    )

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._data: dict[str, _Namespace] = {}
        self._changes: list[Change] = []
        self._idem: dict[str, tuple[bytes, bytes, float]] = {}
        #: per namespace, the highest version a removed key had (see _apply: no ABA)
        self._floors: dict[str, int] = {}
        self._seq = 0
        self._closed = False
        self._events = MemoryEvents()
        #: key ids sealing values here (Store refuses to open without them)
        self._key_ids: set[str] = set()
        #: declared indexes: namespace -> path -> index (module docstring)
        self._indexes: dict[str, dict[tuple[str, ...], _Index]] = {}
        #: (namespace, key) -> the entries its stored value contributed
        self._records: dict[tuple[str, str], _Record] = {}

    @classmethod
    def from_url(cls, url: ParsedUrl, options: BackendOptions) -> MemoryBackend:
        """A new, empty store: ``memory://`` names nothing to open, so ``options``
        (durability, ``create``) change nothing here."""
        return cls()

    def ensure_index(
        self, namespace: str, fields: Sequence[str], progress: Progress | None = None
    ) -> list[str]:
        """Declare an index on each of ``fields`` (dotted paths) of ``namespace`` and
        build it over the stored items at once, under the lock (writes wait: one
        process, so there is no kill to resume from); return the index names."""
        paths = [parse_index_path(f) for f in _field_list(fields)]
        with self._lock:
            self._check_open()
            declared = self._indexes.setdefault(namespace, {})
            for path in paths:
                if path in declared:
                    continue
                index = declared[path] = _Index(namespace, path)
                ns = self._data.get(namespace)
                items = [] if ns is None else [ns.items[k] for k in ns.keys]
                for done, item in enumerate(items, 1):
                    self._add_entry(index, item, NO_DOCUMENT)
                    if progress is not None and (done % 1000 == 0 or done == len(items)):
                        progress(done, len(items))
            return [declared[p].name for p in paths]

    def _add_entry(self, index: _Index, item: StoredItem, doc: Any) -> None:
        document = document_of(item.value, doc)
        token: Token | None
        if document is OPAQUE:
            index.opaque.add(item.key)
            token = None
        else:
            token = scalar_at(index.get, document)
            if token is None:
                return
            index.values.setdefault(token, set()).add(item.key)
        self._records.setdefault((item.namespace, item.key), []).append((index, token))

    def _unindex(self, namespace: str, key: str) -> None:
        for index, token in self._records.pop((namespace, key), ()):
            if token is None:
                index.opaque.discard(key)
            else:
                keys = index.values.get(token)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index.values[token]

    def _reindex(self, namespace: str, key: str, item: StoredItem | None, doc: Any) -> None:
        indexes = self._indexes.get(namespace)
        if not indexes:
            return
        self._unindex(namespace, key)
        if item is not None:
            for index in indexes.values():
                self._add_entry(index, item, doc)

    # -- writes ----------------------------------------------------------------------

    def write(self, unit: WriteUnit) -> list[Outcome]:
        with self._lock:
            self._check_open()
            overlay = _Overlay(self)
            outcomes = apply_unit(overlay, unit)
            docs: dict[tuple[str, str, bytes], Any] = {}
            if self._indexes:
                for w in unit.writes:
                    if w.op == OP_PUT and w.value is not None and w.namespace in self._indexes:
                        docs[(w.namespace, w.key, w.value)] = w.doc
            self._commit(overlay, docs)
            return outcomes

    def _check_open(self) -> None:
        if self._closed:
            raise ClawStateError("the store is closed")

    def _commit(self, overlay: _Overlay, docs: dict[tuple[str, str, bytes], Any]) -> None:
        """Apply a unit that succeeded; ``docs`` holds the documents its puts carried,
        by ``(namespace, key, value)`` (a rewrap's new bytes are decoded instead)."""
        for (namespace, key), item in overlay.staged.items():
            if namespace in self._indexes:
                doc = NO_DOCUMENT if item is None else docs.get((namespace, key, item.value))
                self._reindex(namespace, key, item, NO_DOCUMENT if doc is None else doc)
            ns = self._data.get(namespace)
            if ns is None:
                ns = self._data[namespace] = _Namespace()
            if item is None:
                if key in ns.items:
                    del ns.items[key]
                    ns.keys.remove(key)
            else:
                if key not in ns.items:
                    bisect.insort(ns.keys, key, key=_utf8_key)
                ns.items[key] = item
        self._changes.extend(change for change, _ in overlay.log_rows)
        self._idem.update(overlay.idem)
        self._floors.update(overlay.floors)  # staged floors only ever rise
        self._seq = overlay.seq
        if overlay.event_stage is not None:
            self._events.commit(overlay.event_stage)
        self._cond.notify_all()

    # -- reads -----------------------------------------------------------------------

    @staticmethod
    def _live(item: StoredItem | None, now: float) -> StoredItem | None:
        if item is None or (item.expires_at is not None and item.expires_at <= now):
            return None
        return item

    def get(self, namespace: str, key: str, now: float) -> StoredItem | None:
        ns = self._data.get(namespace)
        return None if ns is None else self._live(ns.items.get(key), now)

    def get_many(self, namespace: str, keys: Sequence[str], now: float) -> list[StoredItem]:
        with self._lock:
            ns = self._data.get(namespace)
            if ns is None:
                return []
            out = []
            for key in dict.fromkeys(keys):
                item = self._live(ns.items.get(key), now)
                if item is not None:
                    out.append(item)
            return out

    def scan(
        self, namespace: str, prefix: str, after: str | None, limit: int, now: float
    ) -> list[StoredItem]:
        with self._lock:
            ns = self._data.get(namespace)
            if ns is None:
                return []
            start = prefix if after is None or _utf8_key(after) < _utf8_key(prefix) else after
            i = bisect.bisect_left(ns.keys, _utf8_key(start), key=_utf8_key)
            upper = prefix_upper_bound(prefix) if prefix else None
            out: list[StoredItem] = []
            while i < len(ns.keys) and len(out) < limit:
                key = ns.keys[i]
                i += 1
                if after is not None and key == after:
                    continue
                if upper is not None and _utf8_key(key) >= _utf8_key(upper):
                    break
                item = self._live(ns.items[key], now)
                if item is not None:
                    out.append(item)
            return out

    def _snapshot(self, namespace: str, now: float | None) -> list[StoredItem]:
        with self._lock:
            ns = self._data.get(namespace)
            if ns is None:
                return []
            items = [ns.items[k] for k in ns.keys]
        if now is None:
            return items
        return [it for it in items if self._live(it, now) is not None]

    def iter_items(self, namespace: str) -> Iterator[StoredItem]:
        return iter(self._snapshot(namespace, None))

    def query(
        self,
        namespace: str,
        query: Query,
        decode: Decoder,
        now: float,
        explain: bool = False,
        max_scan: int | None = None,
    ) -> QueryResult:
        from ...query import resume_key, run_query, serving_path

        with self._lock:
            indexes = self._indexes.get(namespace, {})
            path = serving_path(query.filter, indexes)
            if path is not None and query.filter is not None:
                keys = _candidates(query.filter, indexes)
                ns = self._data.get(namespace)
                after = resume_key(query)
                ordered = sorted(keys, key=_utf8_key)
                if after is not None:
                    start = _utf8_key(after)
                    ordered = [k for k in ordered if _utf8_key(k) > start]
                held = [] if ns is None else [ns.items.get(k) for k in ordered]
                items = [it for it in held if self._live(it, now) is not None]
        if path is None:
            rows = ((it.key, decode(it), it) for it in self._snapshot(namespace, now))
            run = run_query(query, rows, key_ordered=True, max_read=max_scan)
            plan = QueryPlan("memory", "scan", run.rows_read, run.early_exit)
            return QueryResult(run.items, run.token, plan)
        served = ((it.key, decode(it), it) for it in items if it is not None)
        run = run_query(query, served, key_ordered=True)
        plan = QueryPlan(
            "memory",
            "index",
            run.rows_read,
            run.early_exit,
            indexes[path].name,
            [f"candidates {len(ordered)} of index {indexes[path].name}"] if explain else [],
        )
        return QueryResult(run.items, run.token, plan)

    def count(self, namespace: str, now: float) -> int:
        return len(self._snapshot(namespace, now))

    # -- change log ------------------------------------------------------------------

    def changes(self, after_seq: int, limit: int, namespace: str | None = None) -> list[Change]:
        with self._lock:
            i = bisect.bisect_right(self._changes, after_seq, key=lambda c: c.seq)
            out: list[Change] = []
            for change in itertools.islice(self._changes, i, None):
                if namespace is None or change.namespace == namespace:
                    out.append(change)
                    if len(out) >= limit:
                        break
            return out

    def last_seq(self) -> int:
        return self._seq

    def first_seq(self) -> int:
        with self._lock:
            return self._changes[0].seq if self._changes else self._seq + 1

    def wait_for_change(self, after_seq: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._seq > after_seq or self._closed, timeout) and (
                self._seq > after_seq
            )

    # -- maintenance -----------------------------------------------------------------

    def sweep(self, now: float, changelog_before: float) -> SweepResult:
        with self._lock:
            expired = 0
            for namespace, ns in self._data.items():
                for key in [k for k, it in ns.items.items() if self._live(it, now) is None]:
                    item = ns.items.pop(key)
                    ns.keys.remove(key)
                    self._reindex(namespace, key, None, NO_DOCUMENT)
                    if item.version > self._floors.get(namespace, 0):
                        self._floors[namespace] = item.version
                    self._seq += 1
                    self._changes.append(
                        Change(self._seq, namespace, key, "expire", item.version, now)
                    )
                    expired += 1
            stale = [k for k, v in self._idem.items() if v[2] <= now]
            for k in stale:
                del self._idem[k]
            keep_from = 0
            while (
                keep_from < len(self._changes) - 1
                and self._changes[keep_from].ts < changelog_before
            ):
                keep_from += 1
            del self._changes[:keep_from]
            if expired:
                self._cond.notify_all()
            events = self._events.sweep(now)
            return SweepResult(
                expired=expired, idempotency_keys=len(stale), changes=keep_from, events=events
            )

    def namespaces(self) -> list[str]:
        with self._lock:
            return sorted(self._data)

    def version_state(self, namespace: str, key: str) -> tuple[int | None, int]:
        """``(the stored row's version — live or expired, not yet swept — or None, the
        namespace's version floor)``: what a put of ``key`` goes on from (see _apply:
        no ABA).  The write-back cache predicts new versions from it."""
        with self._lock:
            ns = self._data.get(namespace)
            it = None if ns is None else ns.items.get(key)
            return (None if it is None else it.version), self._floors.get(namespace, 0)

    # -- key ids (docs/configuration.md: the keyring belongs to the store) ------------

    def key_ids(self) -> set[str]:
        """The key ids recorded for this store's values (a new store has none)."""
        with self._lock:
            return set(self._key_ids)

    def record_key_ids(self, kids: Iterable[str]) -> None:
        with self._lock:
            self._key_ids.update(kids)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "backend": "memory",
                "namespaces": {
                    name: {
                        "items": len(ns.items),
                        "bytes": sum(len(it.value) for it in ns.items.values()),
                    }
                    for name, ns in sorted(self._data.items())
                },
                "changelog": {
                    "first_seq": self._changes[0].seq if self._changes else 0,
                    "last_seq": self._seq,
                    "rows": len(self._changes),
                },
                "events": self.event_stats(),
            }

    def check(self) -> tuple[list[str], dict[str, int]]:
        problems: list[str] = []
        with self._lock:
            by_seq = {c.seq: c for c in self._changes}
            first = self._changes[0].seq if self._changes else self._seq + 1
            seqs = [c.seq for c in self._changes]
            if seqs != list(range(first, first + len(seqs))):
                problems.append("change log is not a gap-free run of increasing seqs")
            # The reverse direction: each key's newest retained row is what the items
            # hold (a put: that very seq and version; a delete or expire: no item).
            newest = {(c.namespace, c.key): c for c in self._changes}
            for (name, key), last in newest.items():
                held = self._data[name].items.get(key) if name in self._data else None
                if last.op == OP_NAMES[OP_PUT]:
                    if held is None:
                        problems.append(
                            f"{name}/{key}: last written by a put in the change log but has "
                            "no item (and no later delete or expire)"
                        )
                    elif (held.seq, held.version) != (last.seq, last.version):
                        problems.append(
                            f"{name}/{key}: differs from its newest change-log row (log: seq "
                            f"{last.seq} v{last.version}, item: seq {held.seq} "
                            f"v{held.version})"
                        )
                elif held is not None:
                    problems.append(
                        f"{name}/{key}: exists although its newest change-log row is a {last.op}"
                    )
            for name, ns in self._data.items():
                if ns.keys != sorted(ns.items, key=_utf8_key):
                    problems.append(f"{name}: key index out of step with items")
                for key, it in ns.items.items():
                    if it.version < 1 or it.updated_at < it.created_at:
                        problems.append(f"{name}/{key}: impossible metadata")
                    if it.seq >= first:
                        change = by_seq.get(it.seq)
                        if (
                            change is None
                            or (change.namespace, change.key, change.version)
                            != (name, key, it.version)
                            or change.op != OP_NAMES[OP_PUT]
                        ):
                            problems.append(f"{name}/{key}: no matching change-log row")
            count = sum(len(ns.items) for ns in self._data.values())
            problems += self._events.check()
            events = len(self._events.rows)
        return problems, {"items": count, "changes": len(self._changes), "events": events}

    def start_background(self) -> None:
        """No background work of its own (see :meth:`Backend.start_background`)."""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cond.notify_all()


def _field_list(fields: Sequence[str]) -> list[str]:
    if isinstance(fields, str):
        raise InvalidRequest("indexes", "must be a list of dotted paths, not one string")
    return list(fields)


def _candidates(flt: Filter, indexes: dict[tuple[str, ...], _Index]) -> set[str]:
    """Keys that may match ``flt`` (a superset), which ``serving_path`` says the
    indexes serve: a leaf's lookup plus the index's opaque keys; ``AND`` the first
    served operand's, ``OR`` the union of every operand's."""
    from ...query import And, Compare, Eq, In, serving_path

    if isinstance(flt, And):
        for operand in flt.clauses:
            if serving_path(operand, indexes) is not None:
                return _candidates(operand, indexes)
        raise AssertionError("AND served by no operand")
    if isinstance(flt, (Eq, In, Compare)):
        index = indexes[flt.path]
        out = set(index.opaque)
        if isinstance(flt, Compare):
            tag = TAG_STRING if flt.operand.kind == "string" else TAG_NUMBER
            cmp = _CMP[flt.op]
            want = flt.operand.value
            for (t, value), keys in index.values.items():
                if t == tag and cmp(value, want):
                    out |= keys
            return out
        operands = (flt.operand,) if isinstance(flt, Eq) else flt.operands
        for s in operands:
            out |= index.values.get(token_of_operand(s.kind, s.value), set())
        return out
    out = set()
    for operand in flt.clauses:
        out |= _candidates(operand, indexes)
    return out


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "GT": operator.gt,
    "GTE": operator.ge,
    "LT": operator.lt,
    "LTE": operator.le,
}
