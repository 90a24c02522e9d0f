"""The write semantics every backend shares, written once.

A backend supplies a :class:`RowAccess` — the handful of row operations it can
do inside one open transaction — and :func:`apply_unit` decides, for each write
of a unit, what the version checks say, what the new metadata is, and which
change-log rows to append.  Keeping this in one place is what makes the memory
reference backend and the SQLite backend agree by construction, and gives later
backends a checked recipe instead of a re-implementation.

Event appends (``unit.events``) ride the same path: a backend with an event
store also implements :class:`EventRowAccess`, and :func:`apply_unit` does the
expected-version checks, idempotent replays and tombstones for it — so group
commit, savepoints, idempotency keys and crash safety cover events unchanged.
The event operations are a separate protocol so that backends without an event
store need not implement them; :func:`apply_unit` only calls them for units
that carry events, which the facade sends only to backends whose
``capabilities.events`` is True.

Versions never repeat across a key's incarnations (no ABA).  A version check
(``if_version``) compares numbers, so if a key deleted at version 3 were re-created
at version 1, a client holding version 1 or 2 of the *old* incarnation would win a
compare-and-set against the new one.  Hence: a put over a stored-but-expired row
continues at that row's version + 1; every removal of a row (a delete here, the
sweep's purge of expired rows in each backend) raises its namespace's durable
*version floor* to the removed version, in the same transaction; and a key
created where no row is stored starts at ``floor + 1``.  A namespace that never
removed a key has floor 0, so its keys start at 1.  The floor is per namespace —
not per key (it would have to outlive the key, so it would grow without bound) and
not store-wide (a tenant would then see other namespaces' deletes in its version
numbers).

Idempotency records are scoped by what the unit writes (:func:`idempotency_scope`):
the same idempotency key used for writes to another set of namespaces (or event
streams) is another request, so a caller neither sees nor blocks records made in
namespaces it cannot see.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol, cast

import msgspec

from ..errors import FencingError, InvalidRequest, VersionConflict, WrongExpectedVersion
from .base import (
    EXPECT_ANY,
    EXPECT_EXISTS,
    OP_APPEND,
    OP_DELETE,
    OP_FENCE,
    OP_PUT,
    OP_REWRAP,
    EventRecord,
    EventRow,
    EventWrite,
    Outcome,
    StreamMeta,
    WriteUnit,
)

__all__ = [
    "EventRowAccess",
    "Row",
    "RowAccess",
    "apply_unit",
    "checks_first",
    "decode_outcomes",
    "encode_outcomes",
    "expected_name",
    "idempotency_scope",
]


class Row(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """The metadata of a stored row, live or expired."""

    version: int
    seq: int
    created_at: float
    expires_at: float | None


class RowAccess(Protocol):
    """Row operations inside one open transaction; reads see earlier writes."""

    def read(self, namespace: str, key: str) -> Row | None: ...

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
    ) -> None: ...

    def put_unconditional(
        self,
        namespace: str,
        key: str,
        value: bytes,
        now: float,
        expires_at: float | None,
    ) -> tuple[int, float, int]:
        """Insert at the namespace's version floor + 1, or overwrite bumping the
        version (continuing at the stored version + 1 even when the stored row has
        expired; ``created_at`` then resets to ``now``) under the next seq; return
        ``(version, created_at, seq)``.  Equivalent to ``next_seq`` + ``read`` +
        ``version_floor`` + ``upsert``, but one statement on SQL engines (the hot
        path)."""
        ...

    def delete(self, namespace: str, key: str) -> None: ...

    def version_floor(self, namespace: str) -> int:
        """The highest version any removed key of ``namespace`` had (0: none)."""
        ...

    def raise_floor(self, namespace: str, version: int) -> None:
        """Make the namespace's floor at least ``version``, in this transaction."""
        ...

    def rewrite(self, namespace: str, key: str, value: bytes) -> None: ...

    def log(
        self,
        seq: int,
        namespace: str,
        key: str,
        op: int,
        version: int,
        ts: float,
        value: bytes | None,
    ) -> None: ...

    def next_seq(self) -> int: ...

    def idempotency_get(self, key: str) -> tuple[bytes, bytes, float] | None: ...

    def idempotency_put(
        self, key: str, fingerprint: bytes, result: bytes, expires: float
    ) -> None: ...


class EventRowAccess(Protocol):
    """The event operations of a :class:`RowAccess`, for backends with an event store.

    Same transaction, same rules: reads see the transaction's earlier writes.
    What a backend must guarantee for positions: ``events_insert`` gives the new
    events the next global positions — contiguous, each greater than every
    position committed or inserted earlier — decided while holding whatever
    serialises writers (SQLite: the write lock; PostgreSQL: a row lock on a
    position counter taken in the transaction), so positions are gap-free and in
    commit order and a reader never sees a lower position commit later.
    """

    def stream_version(self, stream: str) -> int:
        """The version of the stream's last event, hidden or not (0: no events)."""
        ...

    def events_insert(
        self, stream: str, version: int, events: list[EventRecord], recorded_at: float
    ) -> int | None:
        """Insert ``events`` at versions ``version``, ``version + 1``, … and the next
        global positions; return the first position — or None, inserting nothing,
        when one of the ids is already stored."""
        ...

    def append_if(
        self, stream: str, expected: int, events: list[EventRecord], recorded_at: float
    ) -> int | None:
        """Insert ``events`` after version ``expected`` if that is exactly the stream's
        version (0: no events); return the first position — or None, inserting
        nothing, when the version differs or an id is taken.  Equivalent to
        ``stream_version`` + ``events_insert``, but one statement on SQL engines
        for a single event (the hot path)."""
        ...

    def event_find(self, event_id: str) -> EventRow | None:
        """The stored (or staged) event with this id, content included: a retried
        append is recognised by it."""
        ...

    def stream_meta_get(self, stream: str) -> StreamMeta | None: ...

    def stream_meta_put(self, stream: str, meta: StreamMeta) -> None: ...


_outcomes_encoder = msgspec.msgpack.Encoder()
_outcomes_decoder = msgspec.msgpack.Decoder(list[Outcome])


def encode_outcomes(outcomes: list[Outcome]) -> bytes:
    return _outcomes_encoder.encode(outcomes)


def decode_outcomes(data: bytes) -> list[Outcome]:
    return _outcomes_decoder.decode(data)


def idempotency_scope(unit: WriteUnit) -> str | None:
    """The key an idempotency record of ``unit`` is stored under (None: no key).

    The caller's key qualified by the sorted namespaces the unit writes and the
    sorted streams it appends to: the same key sent for another namespace is another
    request, and nothing about records of other namespaces (that the key was used,
    for what) reaches a caller.  The scope is hashed (names may be long and hold any
    character but NUL), the caller's key kept readable after it.
    """
    idem = unit.idempotency_key
    if idem is None:
        return None
    scope = msgspec.msgpack.encode(
        [sorted({w.namespace for w in unit.writes}), sorted({ew.stream for ew in unit.events})]
    )
    return hashlib.blake2b(scope, digest_size=16).hexdigest() + ":" + idem


def checks_first(unit: WriteUnit) -> bool:
    """True when every check that can refuse ``unit`` runs before its first change, so
    a refused unit has written nothing and needs no savepoint to undo.

    A unit of one write or one append is such a unit; so is a lease's acquire (a
    create-only put, then an unconditional one) or release (a fencing check, then an
    unconditional delete).  Anything with appends beside writes, or with a check after
    a change, is not (conservatively: ops other than put, delete and fence count as
    checks that change)."""
    if unit.events:
        return not unit.writes and len(unit.events) == 1
    changed = False
    for w in unit.writes:
        op = w.op
        if op == OP_FENCE:
            can_fail, changes = True, False
        elif op == OP_PUT:
            can_fail, changes = w.if_version is not None or w.if_absent, True
        elif op == OP_DELETE:
            can_fail, changes = w.if_version is not None, True
        else:
            can_fail, changes = True, True
        if can_fail and changed:
            return False
        changed = changed or changes
    return True


def apply_unit(rows: RowAccess, unit: WriteUnit) -> list[Outcome]:
    """Apply ``unit`` through ``rows``; raise before returning if any check fails.

    On an exception the caller must roll back what this unit wrote (a savepoint,
    or discarding an overlay): checks run write by write, so a later write's
    failed check can follow an earlier write's change.
    """
    now = unit.now
    idem = idempotency_scope(unit)
    if idem is not None:
        found = rows.idempotency_get(idem)
        if found is not None and found[2] > now:
            if found[0] != unit.fingerprint:
                raise InvalidRequest(
                    "idempotency_key",
                    f"{unit.idempotency_key!r} was already used for a different request",
                )
            return decode_outcomes(found[1])
    outcomes: list[Outcome] = []
    for w in unit.writes:
        ns, key = w.namespace, w.key
        op = w.op
        if op == OP_PUT:
            assert w.value is not None
            expires = w.expires_at
            if w.if_version is None and not w.if_absent and not w.keep_ttl:
                version, created, seq = rows.put_unconditional(ns, key, w.value, now, expires)
            else:
                row = rows.read(ns, key)
                live = (
                    row
                    if row is not None and (row.expires_at is None or row.expires_at > now)
                    else None
                )
                if w.if_absent and live is not None:
                    raise VersionConflict(key, "absent", live.version, namespace=ns)
                if w.if_version is not None and (live is None or live.version != w.if_version):
                    raise VersionConflict(
                        key, w.if_version, None if live is None else live.version, namespace=ns
                    )
                seq = rows.next_seq()
                if live is not None:
                    version, created = live.version + 1, live.created_at
                    if w.keep_ttl:
                        expires = live.expires_at
                elif row is not None:  # expired, not yet swept: a new incarnation
                    version, created = row.version + 1, now
                else:
                    version, created = rows.version_floor(ns) + 1, now
                rows.upsert(ns, key, w.value, version, seq, created, now, expires, row is not None)
            rows.log(seq, ns, key, OP_PUT, version, now, w.value if w.log_value else None)
            outcomes.append(Outcome(ns, key, OP_PUT, True, version, seq, created, now, expires))
            continue
        row = rows.read(ns, key)
        live = row if row is not None and (row.expires_at is None or row.expires_at > now) else None
        if op == OP_DELETE:
            if w.if_version is not None and (live is None or live.version != w.if_version):
                raise VersionConflict(
                    key, w.if_version, None if live is None else live.version, namespace=ns
                )
            if live is None:
                outcomes.append(Outcome(ns, key, OP_DELETE, False, 0, 0, 0.0, 0.0, None))
                continue
            seq = rows.next_seq()
            rows.delete(ns, key)
            rows.raise_floor(ns, live.version)
            rows.log(seq, ns, key, OP_DELETE, live.version, now, None)
            outcomes.append(
                Outcome(ns, key, OP_DELETE, True, live.version, seq, live.created_at, now, None)
            )
        elif op == OP_FENCE:
            token = w.if_version or 0
            if live is None or live.version != token:  # newer lease, or a forged token
                raise FencingError(key, token, None if live is None else live.version)
            outcomes.append(Outcome(ns, key, OP_FENCE, True, live.version, 0, 0.0, 0.0, None))
        elif op == OP_REWRAP:
            # Key rotation re-encodes bytes in place; it must not clobber a newer write.
            applied = row is not None and row.version == w.if_version and row.seq == w.seq
            if applied:
                assert w.value is not None and row is not None
                rows.rewrite(ns, key, w.value)
            outcomes.append(
                Outcome(ns, key, OP_REWRAP, applied, w.if_version or 0, w.seq or 0, 0.0, 0.0, None)
            )
        else:
            raise InvalidRequest("op", f"unknown write op {op}")
    if unit.events:
        erows = cast(EventRowAccess, rows)
        for ew in unit.events:
            outcomes.append(_append(erows, ew, now))
    if idem is not None:
        rows.idempotency_put(
            idem,
            unit.fingerprint,
            encode_outcomes(outcomes),
            unit.idempotency_expires_at if unit.idempotency_expires_at is not None else now,
        )
    return outcomes


def expected_name(expected: int) -> int | str:
    """How an ``EventWrite.expected`` code reads in errors: the public sentinel names."""
    if expected == EXPECT_ANY:
        return "any"
    if expected == EXPECT_EXISTS:
        return "stream_exists"
    if expected == 0:
        return "no_stream"
    return expected


def _merged_meta(rows: EventRowAccess, ew: EventWrite) -> StreamMeta:
    """``ew.meta`` with the fields named in ``ew.keep_meta`` taken from the stored
    metadata: ``set_stream_metadata`` changes only the settings it was given."""
    meta = ew.meta
    assert meta is not None
    if not ew.keep_meta:
        return meta
    old = rows.stream_meta_get(ew.stream) or StreamMeta()
    fields: dict[str, Any] = {
        "max_age": meta.max_age,
        "max_count": meta.max_count,
        "truncate_before": meta.truncate_before,
    }
    for name in ew.keep_meta:
        fields[name] = getattr(old, name)
    return StreamMeta(**fields)


def _append(rows: EventRowAccess, ew: EventWrite, now: float) -> Outcome:
    """Check ``ew.expected``, append, apply metadata; a retried append replays."""
    stream = ew.stream
    expected = ew.expected
    events = ew.events
    if expected >= 0 and events and not ew.delete:
        # The hot path: an exact expected version, checked and appended at once.
        first = rows.append_if(stream, expected, events, now)
        if first is not None:
            if ew.meta is not None:
                rows.stream_meta_put(stream, _merged_meta(rows, ew))
            version = expected + len(events)
            return Outcome(
                "", stream, OP_APPEND, True, version, first + len(events) - 1, now, now, None
            )
    current = rows.stream_version(stream)
    if expected not in (EXPECT_ANY, current) and not (expected == EXPECT_EXISTS and current):
        replay = _replay(rows, ew, now)
        if replay is not None:
            return replay
        raise WrongExpectedVersion(stream, expected_name(expected), current or None)
    version, position = current, 0
    if events:
        first = rows.events_insert(stream, current + 1, events, now)
        if first is None:
            replay = _replay(rows, ew, now)
            if replay is not None:
                return replay
            for i, ev in enumerate(events):
                if rows.event_find(ev.id) is not None:
                    # Never say where: the other event's stream may be one the caller
                    # cannot read, and its name or version would leak through here.
                    raise InvalidRequest(
                        f"events[{i}].id",
                        f"{ev.id} is already the id of another event; event ids are unique "
                        "across the store",
                    )
            raise InvalidRequest("events", "an event id is already used")  # pragma: no cover
        version = current + len(events)
        position = first + len(events) - 1
    meta = None if ew.meta is None else _merged_meta(rows, ew)
    if ew.delete:
        old = meta or rows.stream_meta_get(stream) or StreamMeta()
        meta = StreamMeta(old.max_age, old.max_count, version + 1)
    if meta is not None:
        rows.stream_meta_put(stream, meta)
    return Outcome("", stream, OP_APPEND, True, version, position, now, now, None)


def admits(expected: int, first_version: int) -> bool:
    """Whether an append with ``expected`` could have put its first event at
    ``first_version``: what "the same expected version" means for a retry.

    The first append's expected version is not stored; where its events landed is.
    A retry replays when its own expected version admits that place — the exact
    version before it (``no_stream``: 1 is the first), ``stream_exists`` (not the
    first event), or ``any`` — and is refused otherwise, since it asked for
    another append (the loser of a save race, not a retry).
    """
    if expected == EXPECT_ANY:
        return True
    if expected == EXPECT_EXISTS:
        return first_version > 1
    return expected == first_version - 1


def _same_event(row: EventRow, ev: EventRecord) -> bool:
    """The stored event has exactly the content being appended (the JSON text the
    facade encodes deterministically, so equal values give equal text)."""
    return (
        row[4] == ev.type
        and row[6] == ev.data
        and row[7] == ev.metadata
        and row[5] == ev.schema_version
    )


def _replay(rows: EventRowAccess, ew: EventWrite, now: float) -> Outcome | None:
    """The first append's outcome if ``ew`` repeats it: same ids, same stream, in
    order, same content, and an expected version that admits where it landed.

    None when the first id is unknown or belongs to another stream.  A retry that
    matches only partly is refused, since applying "the rest" would reorder history;
    so is one whose content or expected version differs (:class:`InvalidRequest`,
    as for an idempotency key reused for another request): telling it "done" would
    tell the loser of a save race that it won.
    """
    if not ew.events:
        return None
    head = rows.event_find(ew.events[0].id)
    if head is None or head[1] != ew.stream:
        return None
    first = head[2]
    if not admits(ew.expected, first):
        raise InvalidRequest(
            "expected_version",
            f"events[0] ({ew.events[0].id}) was appended as event {first} of this stream, "
            f"which expected_version {expected_name(ew.expected)!r} does not admit: this is "
            "not a retry of that append",
        )
    last = head
    for i, ev in enumerate(ew.events):
        ref = head if i == 0 else rows.event_find(ev.id)
        if ref is None or ref[1] != ew.stream or ref[2] != first + i:
            raise InvalidRequest(
                f"events[{i}].id",
                f"events[0] repeats event {first} of this stream but events[{i}] does not "
                "repeat the next one: a retried append must resend the same events",
            )
        if not _same_event(ref, ev):
            raise InvalidRequest(
                f"events[{i}]",
                f"{ev.id} was already appended with another type, data, metadata or "
                "schema_version: a retried append must resend the same events",
            )
        last = ref
    return Outcome("", ew.stream, OP_APPEND, False, last[2], last[0], now, now, None)
