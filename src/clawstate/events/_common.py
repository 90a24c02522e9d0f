"""Names the event store and its parts share: the filter of the global log and the
namespaces the event store keeps its state in.

They live in this leaf module, not in :mod:`.store`, because the parts
(:mod:`.subscriptions`, :mod:`.projections`, :mod:`.snapshots`) need them and
:mod:`.store` needs the parts: taking them from :mod:`.store` closed an import
loop.  :mod:`.store` re-exports them, so ``clawstate.events.store.EventFilter``
and the ``*_NS`` constants stay where callers import them from.
"""

from __future__ import annotations

import msgspec

from ..types import RecordedEvent

__all__ = [
    "PROJECTIONS_NS",
    "SNAPSHOTS_NS",
    "SUBSCRIPTIONS_NS",
    "SYSTEM_NAMESPACES",
    "EventFilter",
]

#: Namespaces the event store keeps its state in (items, through the codec).
SNAPSHOTS_NS = "_snapshots"
PROJECTIONS_NS = "_projections"
SUBSCRIPTIONS_NS = "_subscriptions"
SYSTEM_NAMESPACES = frozenset({SNAPSHOTS_NS, PROJECTIONS_NS, SUBSCRIPTIONS_NS})


class EventFilter(msgspec.Struct, frozen=True):
    """Which events a ``read_all`` or subscription wants: streams starting with
    ``stream_prefix`` (``""``: all) and types in ``types`` (empty: all)."""

    stream_prefix: str = ""
    types: tuple[str, ...] = ()

    def matches(self, event: RecordedEvent) -> bool:
        return event.stream.startswith(self.stream_prefix) and (
            not self.types or event.type in self.types
        )
