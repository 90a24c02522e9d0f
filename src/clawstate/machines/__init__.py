"""Persisted, event-sourced state machines (``store.machine(name, definition)``).

API summary (the contract the HTTP routes, the remote client and the CLI build on)::

    m = store.machine("order", definition)   # definition: dict | TOML text | StateMachine
                                             # subclass; None loads the stored one
    m.name, m.version (the definition's version), m.definition (Definition:
        .document — its canonical JSON form, as stored — .fingerprint, .states,
        .initial, .final, .transitions, .timeouts, .migrate)
    m.create(id, data=None) -> Instance                       # version 1, the initial state
    m.fire(id, event, payload=None, expected_version=None) -> Instance
        # InvalidTransition(machine, id, state, event, reason=) when not allowed;
        # VersionConflict when expected_version is stale; without it, retried;
        # InvalidRequest (field "id") when the instance does not exist
    m.get(id) -> Instance | None
    m.history(id) -> list[Transition]                         # creation first ("create", "")
    m.query(state=None, limit=100, cursor=None) -> InstancePage(items, cursor)
    m.counts() -> dict[str, int]                              # instances per state
    m.render(format="mermaid" | "dot", counts=True) -> str
    m.rebuild(id) -> Instance | None; m.rebuild_all() -> int  # projection from the streams
    list_machines(store) -> list[str]                         # names with a stored definition
    AsyncStore.machine(name, definition=None) -> AsyncMachine (same methods, awaitable)

Storage: instance ``id`` of machine ``name`` is the event stream
``machine:<name>:<id>`` (one event per transition, the creation included); its current
state is the row ``id`` of the system namespace ``_machine.<name>`` (indexed on
``state``), written in the same transaction; definitions live in ``_machines/<name>``.
Timeouts and actions are durable timers (:mod:`clawstate.timers`) fired by
``clawstate worker``.  See ``docs/machines.md``.
"""

from __future__ import annotations

from .definition import (
    Definition,
    StateMachine,
    TimeoutDef,
    TransitionDef,
    parse_definition,
    register,
    registered,
)
from .machine import InstancePage, Machine, list_machines

__all__ = [
    "Definition",
    "InstancePage",
    "Machine",
    "StateMachine",
    "TimeoutDef",
    "TransitionDef",
    "list_machines",
    "parse_definition",
    "register",
    "registered",
]
