"""The general write path's row access: ``apply_unit`` over a snapshot prefetched
while the log head is held.

:class:`Rows` is the ``RowAccess`` (and, through :class:`~.events.PostgresEventRows`,
the ``EventRowAccess``) that :func:`~clawstate.backends._apply.apply_unit` runs
against for a batch that is not plain puts: it reads what round trip 1 prefetched
(safe — nobody else can write while the head is held), stages each unit's changes,
undoes a failed unit's staged changes client-side (no ``SAVEPOINT``, see the package
docstring), and :meth:`Rows.flush` queues the survivors' net rows as a handful of
multi-row statements: round trip 2.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

from .._apply import Row
from . import events as _events
from ._core import Full, Key, PostgresCore
from .schema import _NOTIFY
from .values import value_doc

__all__ = ["Rows"]

_MISSING: Final = object()


class Rows(_events.PostgresEventRows):
    """RowAccess (and EventRowAccess) for the general path: reads what was prefetched
    while holding the log head, stages writes, and undoes a failed unit's staged
    writes (see module doc)."""

    def __init__(
        self,
        backend: PostgresCore,
        ns_ids: dict[str, int],
        rows: dict[Key, Full | None],
        seq: int,
        max_ns: int,
        idem: dict[str, tuple[bytes, bytes, float]],
        docs: dict[int, tuple[str | None, int]],
        conn: psycopg.Connection[Any],
        pos: int = 0,
        events: _events.EventPrefetch | None = None,
        floors: dict[str, int] | None = None,
    ) -> None:
        self.backend = backend
        #: version floors by namespace name: prefetched for the batch's namespaces,
        #: then raised by its deletes (written at flush)
        self.floors: dict[str, int] = floors if floors is not None else {}
        self.floors_new: dict[str, int] = {}
        self._s = backend._s
        self._ev_init(events if events is not None else _events.EventPrefetch(), pos)
        self.ns_ids = ns_ids
        self.rows = rows
        self.seq = seq
        self.max_ns = max_ns
        self.idem = idem
        self.docs = docs
        self.conn = conn
        self.dirty: set[Key] = set()
        self.stored: set[Key] = {k for k, r in rows.items() if r is not None}
        self.logs: list[tuple[int, str, str, int, int, float, bytes | None]] = []
        self.idem_new: dict[str, tuple[bytes, bytes, float]] = {}
        self.new_ns: dict[str, int] = {}
        self._journal: list[tuple[str, Any, Any, bool]] = []
        self._mark: tuple[int, int, int, dict[str, int]] = (seq, max_ns, 0, {})
        self._ev_marked = self._ev_mark()

    # -- units ---------------------------------------------------------------------------

    def begin_unit(self) -> None:
        self._journal = []
        self._mark = (self.seq, self.max_ns, len(self.logs), dict(self.new_ns))
        self._ev_marked = self._ev_mark()

    def undo_unit(self) -> None:
        for kind, key, before, was_dirty in reversed(self._journal):
            if kind == "row":
                if before is _MISSING:
                    self.rows.pop(key, None)
                else:
                    self.rows[key] = before
                if not was_dirty:
                    self.dirty.discard(key)
            elif kind == "floor":
                if before is _MISSING:
                    self.floors_new.pop(key, None)
                else:
                    self.floors_new[key] = before
            elif kind != "idem":
                self._ev_undo_entry(kind, key, before)
            elif before is _MISSING:
                self.idem_new.pop(key, None)
            else:
                self.idem_new[key] = before
        self._journal = []
        self.seq, self.max_ns, n_logs, self.new_ns = self._mark
        del self.logs[n_logs:]
        self._ev_undo(self._ev_marked)

    def _set(self, key: Key, row: Full | None) -> None:
        self._journal.append(("row", key, self.rows.get(key, _MISSING), key in self.dirty))
        self.rows[key] = row
        self.dirty.add(key)

    def _current(self, namespace: str, key: str) -> Full | None:
        k = (namespace, key)
        if k in self.rows:
            return self.rows[k]
        # Not prefetched (cannot happen for a unit's own writes): read it; the head is held.
        found = self.backend._read_row(self.conn, self.ns_ids.get(namespace), key)
        self.rows[k] = found
        if found is not None:
            self.stored.add(k)
        return found

    def ns_id(self, name: str) -> int:
        nid = self.ns_ids.get(name) or self.new_ns.get(name)
        if nid is None:
            self.max_ns += 1  # ids are assigned while the head is held: no one else can
            nid = self.new_ns[name] = self.max_ns
        return nid

    def _doc(self, value: bytes) -> tuple[str | None, int]:
        found = self.docs.get(id(value))
        return found if found is not None else value_doc(value, self.backend._codec)

    # -- RowAccess -----------------------------------------------------------------------

    def read(self, namespace: str, key: str) -> Row | None:
        r = self._current(namespace, key)
        return None if r is None else Row(r[0], r[1], r[2], r[4])

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
        self.ns_id(namespace)
        doc, opaque = self._doc(value)
        self._set(
            (namespace, key), (version, seq, created_at, updated_at, expires_at, value, doc, opaque)
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
        r = self._current(namespace, key)
        if r is None:
            version, created = self.version_floor(namespace) + 1, now
        elif r[4] is not None and r[4] <= now:
            version, created = r[0] + 1, now  # a new incarnation, never an old version
        else:
            version, created = r[0] + 1, r[2]
        self.upsert(namespace, key, value, version, seq, created, now, expires_at, r is not None)
        return version, created, seq

    def delete(self, namespace: str, key: str) -> None:
        self._set((namespace, key), None)

    def version_floor(self, namespace: str) -> int:
        staged = self.floors_new.get(namespace)
        if staged is not None:
            return staged
        found = self.floors.get(namespace)
        if found is None:
            # Not prefetched (cannot happen for a unit's own writes): read it; the head
            # is held, so this statement's snapshot is current.
            nid = self.ns_ids.get(namespace)
            r = (
                None
                if nid is None
                else self.conn.execute(
                    f"SELECT floor FROM {self._s}.version_floors WHERE ns = %s", (nid,)
                ).fetchone()
            )
            found = self.floors[namespace] = 0 if r is None else int(r[0])
        return found

    def raise_floor(self, namespace: str, version: int) -> None:
        if version > self.version_floor(namespace):
            self._journal.append(
                ("floor", namespace, self.floors_new.get(namespace, _MISSING), False)
            )
            self.floors_new[namespace] = version

    def rewrite(self, namespace: str, key: str, value: bytes) -> None:
        r = self._current(namespace, key)
        if r is not None:
            doc, opaque = self._doc(value)
            self._set((namespace, key), (*r[:5], value, doc, opaque))

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
        self.ns_id(namespace)
        self.logs.append((seq, namespace, key, op, version, ts, value))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def idempotency_get(self, key: str) -> tuple[bytes, bytes, float] | None:
        return self.idem_new.get(key) or self.idem.get(key)

    def idempotency_put(self, key: str, fingerprint: bytes, result: bytes, expires: float) -> None:
        self._journal.append(("idem", key, self.idem_new.get(key, _MISSING), False))
        self.idem_new[key] = (fingerprint, result, expires)

    # -- flush ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Queue the net effect of every surviving unit (pipeline: no round trip)."""
        conn, q = self.conn, self.backend._sql
        ids = {**self.ns_ids, **self.new_ns}
        if self.new_ns:
            conn.execute(q["insert_ns"], (list(self.new_ns.values()), list(self.new_ns)))
        gone = [k for k in self.dirty if self.rows[k] is None and k in self.stored]
        if gone:
            conn.execute(q["delete_rows"], ([ids[n] for n, _ in gone], [k for _, k in gone]))
        kept = [(k, r) for k in self.dirty if (r := self.rows[k]) is not None]
        if kept:
            cols: list[list[Any]] = [[] for _ in range(10)]
            for (name, key), r in kept:
                value = r[5]
                assert value is not None
                for col, v in zip(
                    cols,
                    (ids[name], key, value, r[6], r[7], r[0], r[1], r[2], r[3], r[4]),
                    strict=True,
                ):
                    col.append(v)
            conn.execute(q["upsert_rows"], cols)
        if self.logs:
            lcols: list[list[Any]] = [[] for _ in range(7)]
            for seq, name, key, op, version, ts, value in self.logs:
                for col, v in zip(
                    lcols, (seq, ids[name], key, op, version, ts, value), strict=True
                ):
                    col.append(v)
            conn.execute(q["insert_changes"], lcols)
        if self.idem_new:
            icols: list[list[Any]] = [list(self.idem_new), [], [], []]
            for fp, result, expires in self.idem_new.values():
                icols[1].append(fp)
                icols[2].append(result)
                icols[3].append(expires)
            conn.execute(q["upsert_idem"], icols)
        if self.floors_new:
            conn.execute(
                q["raise_floors"],
                ([ids[n] for n in self.floors_new], list(self.floors_new.values())),
            )
            # Tells a one-statement put whose snapshot predates this commit that its
            # floors are stale (see _FIRST_VERSION).
            conn.execute(q["set_floor_seq"], (self.seq,))
        self.ev_flush(q)
        if self.ev_rows:
            conn.execute(
                q["ev_set_head"], (self.seq, self.pos, self.backend._channel), prepare=True
            )
        elif self.logs:
            conn.execute(q["set_head"], (self.seq,), prepare=True)
            conn.execute(_NOTIFY, (self.backend._channel, str(self.seq)))
