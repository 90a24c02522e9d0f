"""Snapshots: the latest state of a stream's aggregate, so loading skips old events.

A snapshot is an item of the ``_snapshots`` namespace keyed by stream: it goes
through the codec (compressed, and encrypted where the namespace policy says
so — a snapshot holds the same data as the events), and it is written through
the one write path, so a repository can save it in the same transaction as
the events it summarises.  Only the latest is kept; ``schema`` lets an
aggregate class that changed its state layout ignore older snapshots and
replay instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from .._validate import INT64_MAX, check_int, check_key
from ._common import SNAPSHOTS_NS

if TYPE_CHECKING:
    from ._host import HostEvents, HostNamespace, HostTransaction

__all__ = ["Snapshot", "Snapshots"]


class Snapshot(msgspec.Struct, frozen=True):
    """The state of ``stream`` after its event ``version``."""

    stream: str
    version: int
    state: Any
    schema: int = 1
    taken_at: float = 0.0


class Snapshots:
    """``store.events.snapshots``: save and load the latest snapshot per stream."""

    def __init__(self, events: HostEvents) -> None:
        self._events = events
        self._ns: HostNamespace = events.store._system_namespace(SNAPSHOTS_NS)

    def _doc(self, stream: str, version: int, state: Any, schema: int) -> dict[str, Any]:
        check_key(stream, self._events._max_stream, field="stream")
        check_int(version, "version", 1, INT64_MAX)
        check_int(schema, "schema", 1, (1 << 31) - 1)  # as event schema versions
        return {"version": version, "state": state, "schema": schema}

    def save(self, stream: str, version: int, state: Any, *, schema: int = 1) -> Snapshot:
        """Store ``state`` (JSON-compatible) as the stream's state after ``version``."""
        item = self._ns.put(stream, self._doc(stream, version, state, schema))
        return Snapshot(stream, version, state, schema, item.updated_at)

    def save_in(
        self, tx: HostTransaction, stream: str, version: int, state: Any, *, schema: int = 1
    ) -> None:
        """Buffer the snapshot in ``tx``: it commits with the transaction's appends."""
        doc = self._doc(stream, version, state, schema)
        tx._system_namespace(SNAPSHOTS_NS).put(stream, doc)

    def load(self, stream: str) -> Snapshot | None:
        """The latest snapshot of ``stream``, or None."""
        check_key(stream, self._events._max_stream, field="stream")
        item = self._ns.get(stream)
        if item is None:
            return None
        doc = item.value
        return Snapshot(stream, doc["version"], doc["state"], doc.get("schema", 1), item.updated_at)

    def delete(self, stream: str) -> bool:
        check_key(stream, self._events._max_stream, field="stream")
        return self._ns.delete(stream)

    @property
    def namespace(self) -> HostNamespace:
        return self._ns
