"""The PostgreSQL backend's write path: group-committed batches in one or two round trips.

``write()`` turns the unit into a :class:`Job` in the caller's thread (building the
``jsonb`` texts there, from the documents the codec handed over), and the group
committer's leader runs the batch as one of three shapes (package docstring):
plain puts as one autocommit statement (:meth:`PostgresWrites._bulk`), event-only
appends as one statement (:meth:`PostgresWrites._append_fast`), and everything else
on the general path — lock the head and prefetch, ``apply_unit`` over
:class:`~.rows.Rows`, write the net rows (:meth:`PostgresWrites._general`).
A database error (never a failed check) aborts the batch; then each unit is retried
alone, so one bad unit cannot fail its neighbours.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from ...errors import BackendUnavailable, ClawStateError
from .._apply import apply_unit, idempotency_scope
from ..base import OP_APPEND, OP_PUT, OP_REWRAP, Outcome, WriteUnit
from . import events as _events
from ._core import Full, Key, PostgresCore, lost, translate
from .rows import Rows
from .values import value_doc, write_doc

__all__ = ["Job", "PostgresWrites"]


class Job:
    """One caller's unit plus what the caller thread precomputed for it."""

    __slots__ = ("docs", "events_only", "plain", "unit")

    def __init__(self, unit: WriteUnit, docs: dict[int, tuple[str | None, int]]) -> None:
        self.unit = unit
        #: id(value bytes) -> (jsonb text, opaque): docs are computed before queueing,
        #: in the caller's thread, not in the batch leader's.
        self.docs = docs
        self.plain = (
            unit.idempotency_key is None
            and not unit.events  # event appends take their own path or the general one
            and all(
                w.op == OP_PUT and w.if_version is None and not w.if_absent and not w.keep_ttl
                for w in unit.writes
            )
        )
        #: appends only (no metadata, deletes, state writes or idempotency key): the
        #: one-statement event path can take it
        self.events_only = (
            bool(unit.events)
            and not unit.writes
            and unit.idempotency_key is None
            and all(ew.events and ew.meta is None and not ew.delete for ew in unit.events)
        )


class PostgresWrites(PostgresCore):
    """The write path of :class:`~.backend.PostgresBackend`."""

    def write(self, unit: WriteUnit) -> list[Outcome]:
        docs: dict[int, tuple[str | None, int]] = {}
        codec = self._codec
        for w in unit.writes:
            if w.value is not None and (w.op == OP_PUT or w.op == OP_REWRAP):
                docs[id(w.value)] = write_doc(w.value, w.doc, codec)
        if self._closed:
            raise BackendUnavailable("the store is closed")
        return self._committer.submit(Job(unit, docs))

    def _run_batch(self, jobs: list[Job]) -> list[list[Outcome] | BaseException]:
        """Commit ``jobs`` in one transaction; each job fails alone."""
        if self._closed:
            return [BackendUnavailable("the store is closed")] * len(jobs)
        try:
            conn = self._pool.getconn(timeout=self._pool_timeout)
        except (PoolTimeout, PoolClosed, psycopg.Error) as exc:
            return [translate(exc, "write")] * len(jobs)
        failure: psycopg.Error | None = None
        try:
            bulk = all(j.plain for j in jobs) and all(
                w.namespace in self._ns_ids for j in jobs for w in j.unit.writes
            )
            if bulk:
                self.counters["bulk_batches"] += 1
                return list(self._bulk(conn, jobs))
            if all(j.events_only for j in jobs):
                fast = self._append_fast(conn, jobs)
                if fast is not None:
                    return fast
            self.counters["general_batches"] += 1
            return self._general(conn, jobs)
        except psycopg.Error as exc:
            self._rollback(conn)
            failure = exc
        finally:
            self._pool.putconn(conn)
        assert failure is not None
        if lost(failure):
            self._recover()
            return [translate(failure, "write")] * len(jobs)
        if len(jobs) > 1:
            # One unit may have broken the batch: give each its own transaction.
            self.counters["retried_alone"] += 1
            return [self._run_batch([job])[0] for job in jobs]
        return [translate(failure, "write")]

    def _bulk(self, conn: psycopg.Connection[Any], jobs: list[Job]) -> list[list[Outcome]]:
        """Plain puts: one statement per run of distinct keys — usually one statement
        in all, committed on its own (autocommit): one round trip, one WAL flush."""
        groups: list[list[tuple[int, int]]] = [[]]
        seen: set[Key] = set()
        for ji, job in enumerate(jobs):
            for wi, w in enumerate(job.unit.writes):
                k = (w.namespace, w.key)
                if k in seen:
                    groups.append([])
                    seen = set()
                seen.add(k)
                groups[-1].append((ji, wi))
        groups = [g for g in groups if g]
        if len(groups) == 1 and len(groups[0]) == 1:  # the lone put: no bookkeeping
            ji, wi = groups[0][0]
            row = self._put_statement(conn, jobs, groups[0]).fetchone()
            assert row is not None
            job, w = jobs[ji], jobs[ji].unit.writes[wi]
            self._committed(row[1])
            outcome = Outcome(
                w.namespace, w.key, OP_PUT, True, row[2], row[1], row[3], job.unit.now, w.expires_at
            )
            return [[outcome] if j is job else [] for j in jobs]
        out: list[list[Outcome | None]] = [[None] * len(j.unit.writes) for j in jobs]
        if not groups:
            return [[] for _ in jobs]
        if len(groups) == 1:
            results = [self._put_statement(conn, jobs, groups[0]).fetchall()]
        else:  # a key repeats: several statements, one transaction
            with conn.pipeline():
                conn.execute("BEGIN")
                cursors = [self._put_statement(conn, jobs, g, pipelined=True) for g in groups]
                conn.execute("COMMIT")
            results = [cur.fetchall() for cur in cursors]
        last = 0
        for group, rows in zip(groups, results, strict=True):
            for row in rows:
                ordinal, seq, version, created = row[0], row[1], row[2], row[3]
                ji, wi = group[ordinal - 1]
                job = jobs[ji]
                w = job.unit.writes[wi]
                out[ji][wi] = Outcome(
                    w.namespace,
                    w.key,
                    OP_PUT,
                    True,
                    version,
                    seq,
                    created,
                    job.unit.now,
                    w.expires_at,
                )
                last = max(last, seq)
        self._committed(last)
        done: list[list[Outcome]] = []
        for outcomes in out:
            assert all(o is not None for o in outcomes), "a plain put got no outcome"
            done.append(outcomes)  # type: ignore[arg-type]
        return done

    def _append_fast(
        self, conn: psycopg.Connection[Any], jobs: list[Job]
    ) -> list[list[Outcome] | BaseException] | None:
        """Event-only jobs as one autocommit statement (see ``APPEND_FAST``); None when
        the batch does not fit (a stream repeats), a check failed, or the statement
        was refused — nothing was written then, and the caller runs the batch the
        general way, which gives every job its exact outcome."""
        appends = [ew for job in jobs for ew in job.unit.events]
        streams = [ew.stream for ew in appends]
        if len(set(streams)) != len(streams):
            return None  # a later append's check depends on an earlier one's outcome
        if len(appends) == 1 and len(appends[0].events) == 1:
            e = appends[0].events[0]
            query = self._sql["ev_append_one"]
            params: dict[str, Any] = {
                "stream": streams[0],
                "expected": appends[0].expected,
                "id": e.id,
                "type": e.type,
                "sv": e.schema_version,
                "data": e.data,
                "metadata": e.metadata,
                "now": jobs[0].unit.now,
            }
            n = 1
        else:
            # Each event is recorded at its own unit's time, as the general path does.
            cols: list[list[Any]] = [[] for _ in range(8)]
            wi = 0
            for job in jobs:
                for ew in job.unit.events:
                    wi += 1
                    for k, e in enumerate(ew.events, 1):
                        row = (wi, k, e.id, e.type, e.schema_version, e.data, e.metadata)
                        for col, v in zip(cols, (*row, job.unit.now), strict=True):
                            col.append(v)
            query = self._sql["ev_append_fast"]
            n = len(cols[0])
            params = {
                "streams": streams,
                "expected": [ew.expected for ew in appends],
                "n": n,
                **dict(
                    zip(
                        ("wis", "ks", "ids", "types", "svs", "data", "metadata", "nows"),
                        cols,
                        strict=True,
                    )
                ),
            }
        params["chan"] = self._channel
        try:
            cur = self._cursor(conn)
            cur.execute(query, params, prepare=True)
            rows = cur.fetchall()
        except psycopg.Error as exc:
            if lost(exc):
                raise
            self._rollback(conn)
            self.counters["event_fast_refused"] += 1
            return None
        if not rows or not rows[0][0]:
            self.counters["event_fast_failed"] += 1
            return None  # a check failed: nothing was written
        self.counters["event_fast_batches"] += 1
        pos = int(rows[0][2])
        position = pos - n
        results: list[list[Outcome] | BaseException] = []
        it = iter(zip(appends, rows, strict=True))
        for job in jobs:
            outcomes: list[Outcome] = []
            for _ in job.unit.events:
                ew, row = next(it)
                position += len(ew.events)
                outcomes.append(
                    Outcome(
                        "",
                        ew.stream,
                        OP_APPEND,
                        True,
                        int(row[1]) + len(ew.events),
                        position,
                        job.unit.now,
                        job.unit.now,
                        None,
                    )
                )
            results.append(outcomes)
        self._committed_pos(pos)
        return results

    def _put_statement(
        self,
        conn: psycopg.Connection[Any],
        jobs: list[Job],
        group: list[tuple[int, int]],
        pipelined: bool = False,
    ) -> psycopg.Cursor[Any]:
        """Send the put statement for ``group`` (distinct keys) of ``jobs``' writes."""
        if len(group) == 1:
            ji, wi = group[0]
            job = jobs[ji]
            w = job.unit.writes[wi]
            assert w.value is not None
            doc, opaque = job.docs.get(id(w.value)) or value_doc(w.value, self._codec)
            params = {
                "ns": self._ns_ids[w.namespace],
                "key": w.key,
                "value": w.value,
                "doc": doc,
                "opaque": opaque,
                "now": job.unit.now,
                "exp": w.expires_at,
                "logv": w.log_value,
                "chan": self._channel,
            }
            return self._send(conn, self._sql["put_one"], params, pipelined)
        cols: list[list[Any]] = [[] for _ in range(8)]
        for ji, wi in group:
            job = jobs[ji]
            w = job.unit.writes[wi]
            assert w.value is not None
            doc, opaque = job.docs.get(id(w.value)) or value_doc(w.value, self._codec)
            row = (
                self._ns_ids[w.namespace],
                w.key,
                w.value,
                doc,
                opaque,
                job.unit.now,
                w.expires_at,
                w.log_value,
            )
            for col, v in zip(cols, row, strict=True):
                col.append(v)
        n = len(group)
        return self._send(conn, self._sql["put_many"], [*cols, n, n, self._channel], pipelined)

    def _send(
        self, conn: psycopg.Connection[Any], query: str, params: Any, pipelined: bool
    ) -> psycopg.Cursor[Any]:
        if pipelined:  # its result is read after the pipeline syncs: a cursor of its own
            return conn.execute(query, params, binary=True, prepare=True)
        cur = self._cursor(conn)
        cur.execute(query, params, prepare=True)
        return cur

    def _general(
        self, conn: psycopg.Connection[Any], jobs: list[Job]
    ) -> list[list[Outcome] | BaseException]:
        """Lock the head and prefetch, apply_unit client-side, write the net rows."""
        q = self._sql
        names: list[str] = []
        pairs: dict[Key, None] = {}
        idem_keys: list[str] = []
        docs: dict[int, tuple[str | None, int]] = {}
        streams: dict[str, None] = {}
        event_ids: list[str] = []
        for job in jobs:
            docs.update(job.docs)
            scoped = idempotency_scope(job.unit)
            if scoped is not None:
                idem_keys.append(scoped)
            for w in job.unit.writes:
                pairs[(w.namespace, w.key)] = None
            for ew in job.unit.events:
                streams[ew.stream] = None
                event_ids.extend(e.id for e in ew.events)
        names = list(dict.fromkeys(n for n, _ in pairs))
        results: list[list[Outcome] | BaseException] = []
        with conn.pipeline():
            conn.execute("BEGIN")
            c_head = conn.execute(q["lock_head"], prepare=True)
            # An event-only batch has no rows to read.
            c_ns = conn.execute(q["ns_by_names"], (names,), prepare=True) if pairs else None
            c_rows = (
                conn.execute(
                    q["prefetch_rows"],
                    ([n for n, _ in pairs], [k for _, k in pairs]),
                    prepare=True,
                )
                if pairs
                else None
            )
            c_idem = (
                conn.execute(q["prefetch_idem"], (idem_keys,), prepare=True) if idem_keys else None
            )
            c_floors = conn.execute(q["prefetch_floors"], (names,), prepare=True) if pairs else None
            ev_collect = (
                _events.prefetch_events(conn, q, list(streams), event_ids) if streams else None
            )
            head = c_head.fetchone()
            if head is None:
                raise psycopg.errors.NoDataFound(
                    f"{self._s}.head has no row: the schema is damaged"
                )
            max_seq, max_ns, max_pos = int(head[0]), int(head[1]), int(head[2])
            ns_ids = (
                {str(name): int(nid) for nid, name in c_ns.fetchall()} if c_ns is not None else {}
            )
            rows: dict[Key, Full | None] = dict.fromkeys(pairs)
            for name, key, version, seq, created, updated, expires in (
                c_rows.fetchall() if c_rows is not None else ()
            ):
                rows[(name, key)] = (version, seq, created, updated, expires, None, None, 0)
            idem: dict[str, tuple[bytes, bytes, float]] = {}
            if c_idem is not None:
                for key, fp, result, expires in c_idem.fetchall():
                    idem[key] = (bytes(fp), bytes(result), float(expires))
            prefetched = ev_collect() if ev_collect is not None else None
            floors = dict.fromkeys(names, 0)
            if c_floors is not None:
                for name, floor in c_floors.fetchall():
                    floors[str(name)] = int(floor)
            access = Rows(
                self, ns_ids, rows, max_seq, max_ns, idem, docs, conn, max_pos, prefetched, floors
            )
            for job in jobs:
                access.begin_unit()
                try:
                    results.append(apply_unit(access, job.unit))
                except ClawStateError as exc:
                    access.undo_unit()
                    results.append(exc)
            access.flush()
            conn.execute("COMMIT")
        for name, nid in ns_ids.items():
            self._remember_ns(name, nid)
        self._committed(access.seq if access.logs else 0, access.new_ns)
        if access.ev_rows:
            self._committed_pos(access.pos)
        return results
