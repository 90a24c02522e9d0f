"""The audit log: append-only, hash-chained, kept in the store itself.

Every admin action (token create/revoke, stats, check, sweep, audit reads) and every
denied request (401, 403) becomes a record in the system namespace ``_audit``.  Record
``n`` is stored at key ``%020d`` (so key order is chain order) and carries
``prev`` — the hash of record ``n-1`` — and its own ``hash``::

    hash(n) = sha256(prev || canonical JSON of the record without "hash")

The key ``head`` holds ``{n, hash}`` of the newest record.  A batch of records and the
new head commit in ONE transaction whose head write is conditional on the head's
version, so two server processes appending at once never fork the chain: the loser
re-reads the head and re-links its batch.  ``clawstate audit verify`` walks the chain
and reports the first record whose hash or link does not hold; a deleted, inserted or
edited record breaks it.  (A hash chain proves internal consistency only: someone who
can rewrite the database can rewrite the whole chain.  ``verify`` prints the head hash;
recording it elsewhere now and then anchors the past.)

Writes are batched by one background task per process, so a flood of denied requests
costs one commit per batch, not one per request; admin actions wait for their record
to be durable before answering.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

import msgspec

from ..errors import ClawStateError, VersionConflict
from ..store import Store, TxNamespace

__all__ = ["AUDIT_NAMESPACE", "GENESIS", "AuditLog", "AuditReport", "append", "verify"]

AUDIT_NAMESPACE = "_audit"
GENESIS = "0" * 64
HEAD = "head"
log = logging.getLogger("clawstate.server.audit")


def _canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _digest(prev: str, record: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode("ascii") + _canonical(record)).hexdigest()


def append(store: Store, entries: list[dict[str, Any]]) -> list[int]:
    """Append ``entries`` to the chain atomically; returns their record numbers."""
    ns = store._system_namespace(AUDIT_NAMESPACE)
    while True:
        head = ns.get(HEAD)
        n, prev = (0, GENESIS) if head is None else (int(head.value["n"]), str(head.value["hash"]))
        tx = store.transaction()
        txns = TxNamespace(tx, ns)
        numbers: list[int] = []
        for entry in entries:
            n += 1
            record = {**entry, "n": n, "prev": prev}
            record["hash"] = prev = _digest(prev, record)
            txns.put(f"{n:020d}", record, if_absent=True)
            numbers.append(n)
        if head is None:
            txns.put(HEAD, {"n": n, "hash": prev}, if_absent=True)
        else:
            txns.put(HEAD, {"n": n, "hash": prev}, if_version=head.version)
        try:
            tx.commit()
        except VersionConflict:
            continue  # another process appended first: re-link onto its head
        return numbers


class AuditReport(msgspec.Struct):
    ok: bool
    records: int
    head: str
    problems: list[str]


def verify(store: Store) -> AuditReport:
    """Walk the whole chain; every record must link to the previous and hash right."""
    ns = store._system_namespace(AUDIT_NAMESPACE)
    problems: list[str] = []
    prev, expected_n, count = GENESIS, 1, 0
    cursor: str | None = None
    head_item = ns.get(HEAD)
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        for item in page.items:
            if item.key == HEAD:
                continue
            count += 1
            rec = item.value
            if not isinstance(rec, dict):
                problems.append(f"record at {item.key!r} is not an object")
                continue
            where = f"record {item.key.lstrip('0') or '0'}"
            if rec.get("n") != expected_n or item.key != f"{expected_n:020d}":
                problems.append(
                    f"{where}: expected record number {expected_n}, found {rec.get('n')}"
                )
            if rec.get("prev") != prev:
                problems.append(f"{where}: does not link to the previous record's hash")
            if rec.get("hash") != _digest(str(rec.get("prev")), rec):
                problems.append(f"{where}: its hash does not match its content")
            prev = str(rec.get("hash"))
            number = rec.get("n")
            expected_n = number + 1 if isinstance(number, int) else expected_n + 1
        cursor = page.cursor
        if cursor is None:
            break
    if head_item is None:
        if count:
            problems.append("records exist but the head is missing")
    else:
        if head_item.value.get("n") != count or head_item.value.get("hash") != prev:
            problems.append(
                f"head says record {head_item.value.get('n')} but the chain ends at {count}"
                if head_item.value.get("n") != count
                else "head hash does not match the last record"
            )
    return AuditReport(not problems, count, prev, problems)


class AuditLog:
    """Per-process writer: queues records and appends them in batches off the loop."""

    def __init__(self, store: Store, *, max_queue: int = 10_000) -> None:
        self._store = store
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[int] | None]] = (
            asyncio.Queue(max_queue)
        )
        self._task: asyncio.Task[None] | None = None
        self._pending = 0
        self.written = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def record(self, entry: dict[str, Any], *, wait: bool = False) -> int | None:
        """Queue a record; with ``wait`` return once it is durable (its number)."""
        entry.setdefault("ts", time.time())
        fut: asyncio.Future[int] | None = None
        if wait:
            fut = asyncio.get_running_loop().create_future()
        self._pending += 1
        await self._queue.put((entry, fut))  # blocks only when the queue is full
        self.start()
        return None if fut is None else await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            entries = [entry for entry, _ in batch]
            try:
                numbers = await loop.run_in_executor(None, append, self._store, entries)
            except (ClawStateError, OSError) as exc:
                self._pending -= len(batch)
                log.error("audit append failed: %s", type(exc).__name__)
                for _, fut in batch:
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)
                continue
            self._pending -= len(batch)
            self.written += len(entries)
            for (_, fut), n in zip(batch, numbers, strict=True):
                if fut is not None and not fut.done():
                    fut.set_result(n)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued record is written (graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
