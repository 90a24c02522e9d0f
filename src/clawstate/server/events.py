"""SEAM: the event-store endpoints join here when ``store.events`` lands (issue 5 / events).

The event store (``src/clawstate/events/``) is being built beside this server.  When
``Store.events`` exists, fill :data:`EVENT_ROUTES` with thin handlers over it — the
app includes whatever this list holds, and :mod:`clawstate.server.auth` already
parses ``events:<glob>:<read|write|rw|admin>`` scopes (``Principal.allows("events",
stream, action)``).  The routes to add, mirroring DESIGN.md's ``store.events``:

=========================================  ===========================  ==============
``POST /v1/streams/{stream}/events``       ``append(stream, events,     events write
                                           expected_version=…)`` →
                                           AppendResult (409
                                           WrongExpectedVersion)
``GET  /v1/streams/{stream}/events``       ``read(stream, …)``          events read
``GET  /v1/events?from_position=&limit=``  ``read_all(…)``              events:*:read
``GET  /v1/events`` + Accept: SSE          ``subscribe(from_position)``  events:*:read
                                           (``id:`` = position,
                                           Last-Event-ID resumes)
=========================================  ===========================  ==============

Follow ``app.py``'s watch stream for the SSE loop (one shared notifier thread, a
heartbeat, ``Last-Event-ID``, ``metrics.subscriptions`` instead of
``metrics.watches``), ``opt={"auth": ("events", action)}`` with the stream as the
``stream`` path parameter, and add the matching methods to ``client.py``'s
``RemoteStore.events`` so the client keeps the facade's shape.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EVENT_ROUTES"]

#: Route handlers for the event store; empty until ``store.events`` exists.
EVENT_ROUTES: list[Any] = []
