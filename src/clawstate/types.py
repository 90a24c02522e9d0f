"""The values the public API hands back: items, pages, changes, events.

They are immutable ``msgspec.Struct`` records: cheap to build on the hot path
(a get builds one per call) and safe to share between threads.  The event
types live here rather than in :mod:`clawstate.events` so that ``import
clawstate`` gives ``clawstate.Event`` without loading the event-store package.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final, Literal

import msgspec

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "Change",
    "CheckReport",
    "Event",
    "ExpectedVersion",
    "Instance",
    "Item",
    "Lease",
    "Page",
    "QueryPlan",
    "RecordedEvent",
    "TimerInfo",
    "Transition",
    "WriteOp",
    "new_event_id",
]

#: What a change-log row records: a write, a delete, or a purge by TTL.
WriteOp = Literal["put", "delete", "expire"]


class Item(msgspec.Struct, frozen=True, gc=False):
    """One stored value and its metadata.

    ``version`` is 1 when the key is created and grows by one on every write;
    ``etag`` is an opaque string that changes on every write and is never
    reused for the same key, even across delete and re-create.  Times are Unix
    seconds (float); ``expires_at`` is ``None`` for items without a TTL.
    """

    key: str
    value: Any
    version: int
    etag: str
    created_at: float
    updated_at: float
    expires_at: float | None = None
    namespace: str = ""


#: How a query was answered: a declared index served it, the backend's own query
#: language (SQL) filtered and ordered the rows, or clawstate decoded every candidate
#: row and filtered it in Python (encrypted namespaces, Redis, the memory backend).
QueryStrategy = Literal["index", "sql", "scan"]


class QueryPlan(msgspec.Struct, frozen=True, gc=False):
    """What ``query(..., explain=True)`` reports about how a page was answered.

    ``rows_read`` counts the rows clawstate read from the backend to build the page
    (decoded in Python on the ``scan`` strategy; returned by the database on the
    others, which read only what their index or ordered scan reached).  ``early_exit``
    says the read stopped before the end of the namespace because the page was full.
    ``index`` names the index that served the filter or sort, ``None`` when none did;
    ``detail`` holds the database's own plan lines (SQLite ``EXPLAIN QUERY PLAN``,
    PostgreSQL ``EXPLAIN``), for a human.
    """

    backend: str
    strategy: QueryStrategy
    rows_read: int
    early_exit: bool = False
    index: str | None = None
    detail: list[str] = msgspec.field(default_factory=list)


class Page(msgspec.Struct, frozen=True, gc=False):
    """One page of a scan or query; ``cursor`` is ``None`` on the last page.

    Pass ``cursor`` back to get the next page.  Cursors are keyset positions,
    not offsets, so pages stay stable while other writers insert or delete.
    ``plan`` is set only by ``query(..., explain=True)``.
    """

    items: list[Item]
    cursor: str | None = None
    plan: QueryPlan | None = None

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class Change(msgspec.Struct, frozen=True, gc=False):
    """One row of the change log: what changed, at which sequence number.

    ``seq`` is gap-free and in commit order per backend; ``version`` is the
    item's version after the change (for a delete: the version it had).
    """

    seq: int
    namespace: str
    key: str
    op: WriteOp
    version: int
    ts: float


class CheckReport(msgspec.Struct, frozen=True):
    """The result of ``Store.check()``: ``ok`` when ``problems`` is empty."""

    problems: list[str]
    checked: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.problems


# -- events ------------------------------------------------------------------------------

#: ``expected_version`` for an append that checks nothing.
ANY: Final = "any"
#: ``expected_version`` demanding the stream has no events yet (also accepted as ``0``).
NO_STREAM: Final = "no_stream"
#: ``expected_version`` demanding the stream has at least one event.
STREAM_EXISTS: Final = "stream_exists"

#: A stream version (``0`` = no events yet) or one of the three sentinels.  They are
#: strings, not objects, so they travel unchanged through JSON (CLI, HTTP, problem
#: documents: ``WrongExpectedVersion.expected`` holds the same value).
ExpectedVersion = int | Literal["any", "no_stream", "stream_exists"]


def new_event_id() -> str:
    """A fresh UUIDv7 (RFC 9562) as a canonical lowercase string.

    Time-ordered ids keep the backend's unique index on event ids appending at
    its right edge (a random UUIDv4 would touch a random index page per event),
    and an id chosen when the :class:`Event` is built makes a retried append of
    the same Event objects idempotent.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | ((rand >> 62) & 0xFFF) << 64
        | 0b10 << 62
        | (rand & 0x3FFF_FFFF_FFFF_FFFF)
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Event(msgspec.Struct, frozen=True):
    """An event to append: ``Event("OrderPlaced", {"total": 9})``.

    ``data`` and ``metadata`` are JSON objects (dicts); by convention metadata
    carries ``correlation_id`` and ``causation_id``.  ``id`` is a UUID string,
    generated (UUIDv7) when not given: appending the same ids to the same stream
    again returns the first append's result instead of writing twice.
    ``schema_version`` says which shape ``data`` has, for upcasting on read.
    """

    type: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    id: str = msgspec.field(default_factory=new_event_id)
    schema_version: int = 1


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """An event as stored: its stream, per-stream ``version`` (1, 2, …) and global
    ``position`` (gap-free, in commit order), plus the recording time (Unix seconds).

    ``schema_version`` and ``data`` are those after upcasting, when an upcaster
    is registered for older versions of ``type``.
    """

    stream: str
    version: int
    position: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    id: str
    recorded_at: float
    schema_version: int = 1


class AppendResult(msgspec.Struct, frozen=True, gc=False):
    """What an append did: the stream's ``version`` after it (its last event's)
    and the global ``position`` of that last event."""

    version: int
    position: int


class Lease(msgspec.Struct, frozen=True, gc=False):
    """A granted lock: ``token`` is its fencing token, strictly greater than every
    token granted for ``name`` before it (on every backend, across processes and
    servers); ``expires_at`` is Unix seconds (renewing moves it, never the token).
    Pass it as ``fence=`` to a write to have the storage refuse that write once a
    newer lease of ``name`` exists."""

    name: str
    owner: str
    token: int
    expires_at: float


class TimerInfo(msgspec.Struct, frozen=True, gc=False):
    """A scheduled durable timer: fired by ``clawstate worker`` at ``due`` (Unix
    seconds), running ``handler`` (``"module:function"``) with ``payload``.
    ``attempts`` counts the firings that failed and were retried."""

    name: str
    due: float
    handler: str
    payload: Any = None
    created_at: float = 0.0
    attempts: int = 0
    last_error: str | None = None


class Instance(msgspec.Struct, frozen=True, gc=False):
    """One state-machine instance as its last transition left it; ``version`` is its
    stream's version (1 after ``create``, one more per transition)."""

    id: str
    state: str
    data: Any
    version: int
    created_at: float
    updated_at: float
    machine: str = ""
    definition_version: int = 1


class Transition(msgspec.Struct, frozen=True, gc=False):
    """One entry of an instance's history: ``event`` took it from ``source`` to
    ``target`` at ``at``, making its version ``version`` (the creation is
    event ``"create"`` from ``source`` ``""``)."""

    event: str
    source: str
    target: str
    payload: Any
    at: float
    version: int
