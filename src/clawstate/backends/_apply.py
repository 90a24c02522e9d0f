"""The write semantics every backend shares, written once.

A backend supplies a :class:`RowAccess` — the handful of row operations it can
do inside one open transaction — and :func:`apply_unit` decides, for each write
of a unit, what the version checks say, what the new metadata is, and which
change-log rows to append.  Keeping this in one place is what makes the memory
reference backend and the SQLite backend agree by construction, and gives later
backends a checked recipe instead of a re-implementation.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from ..errors import InvalidRequest, VersionConflict
from .base import OP_DELETE, OP_PUT, OP_REWRAP, Outcome, WriteUnit

__all__ = ["Row", "RowAccess", "apply_unit", "decode_outcomes", "encode_outcomes"]


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
        """Insert, or overwrite bumping the version — restarting at 1 (and resetting
        ``created_at`` to ``now``) when the stored row has expired — under the next
        seq; return ``(version, created_at, seq)``.  Equivalent to ``next_seq`` +
        ``read`` + ``upsert``, but one statement on SQL engines (the hot path)."""
        ...

    def delete(self, namespace: str, key: str) -> None: ...

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


_outcomes_encoder = msgspec.msgpack.Encoder()
_outcomes_decoder = msgspec.msgpack.Decoder(list[Outcome])


def encode_outcomes(outcomes: list[Outcome]) -> bytes:
    return _outcomes_encoder.encode(outcomes)


def decode_outcomes(data: bytes) -> list[Outcome]:
    return _outcomes_decoder.decode(data)


def apply_unit(rows: RowAccess, unit: WriteUnit) -> list[Outcome]:
    """Apply ``unit`` through ``rows``; raise before returning if any check fails.

    On an exception the caller must roll back what this unit wrote (a savepoint,
    or discarding an overlay): checks run write by write, so a later write's
    failed check can follow an earlier write's change.
    """
    now = unit.now
    idem = unit.idempotency_key
    if idem is not None:
        found = rows.idempotency_get(idem)
        if found is not None and found[2] > now:
            if found[0] != unit.fingerprint:
                raise InvalidRequest(
                    "idempotency_key",
                    f"{idem!r} was already used for a different request",
                )
            return decode_outcomes(found[1])
    outcomes: list[Outcome] = []
    for w in unit.writes:
        ns, key = w.namespace, w.key
        op = w.op
        if op == OP_PUT:
            assert w.value is not None
            if w.if_version is None and not w.if_absent:
                version, created, seq = rows.put_unconditional(ns, key, w.value, now, w.expires_at)
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
                if live is None:
                    version, created = 1, now
                else:
                    version, created = live.version + 1, live.created_at
                rows.upsert(
                    ns, key, w.value, version, seq, created, now, w.expires_at, row is not None
                )
            rows.log(seq, ns, key, OP_PUT, version, now, w.value if w.log_value else None)
            outcomes.append(
                Outcome(ns, key, OP_PUT, True, version, seq, created, now, w.expires_at)
            )
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
            rows.log(seq, ns, key, OP_DELETE, live.version, now, None)
            outcomes.append(
                Outcome(ns, key, OP_DELETE, True, live.version, seq, live.created_at, now, None)
            )
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
    if idem is not None:
        rows.idempotency_put(
            idem,
            unit.fingerprint,
            encode_outcomes(outcomes),
            unit.idempotency_expires_at if unit.idempotency_expires_at is not None else now,
        )
    return outcomes
