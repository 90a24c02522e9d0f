"""The built-in timer handlers of state machines, run by ``clawstate worker``.

:func:`fire_timeout` fires a machine's timeout event.  It writes the transition
through the firing's transaction (``firing.tx``), which the worker commits together
with the removal of the timer row: the timeout fires **exactly once in effect**.  The
timer's payload carries the instance version that armed it; if the instance has moved
on since (another transition committed — which also cancelled this timer, so the
worker's commit would be refused anyway), the handler does nothing.

:func:`run_action` runs a class-based machine's action method (a data definition's
actions are ``"module:function"`` handlers that the worker calls directly).  Actions
are the outbox: at least once, with ``firing.idempotency_key`` — the same on every
retry of one transition's action — for the external system to deduplicate on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from .._transaction import Transaction
    from ..store import Store

__all__ = ["Firing", "fire_timeout", "run_action"]

log = logging.getLogger("clawstate.machines")


class Firing(Protocol):
    """What a handler uses of the timers' firing (see :mod:`clawstate.timers`)."""

    @property
    def name(self) -> str: ...

    @property
    def payload(self) -> Any: ...

    @property
    def idempotency_key(self) -> str: ...

    @property
    def store(self) -> Store: ...

    @property
    def tx(self) -> Transaction: ...


def _job(firing: Firing, *keys: str) -> dict[str, Any]:
    job = firing.payload
    if not isinstance(job, dict) or any(k not in job for k in keys):
        raise ConfigError(
            "payload", f"timer {firing.name!r} is not a machine timer (needs {', '.join(keys)})"
        )
    return job


def fire_timeout(firing: Firing) -> None:
    """Fire the timeout event of ``firing.payload`` (``machine``, ``id``, ``version``,
    ``event``) in ``firing.tx`` — unless the instance is gone, has moved past that
    version, or the event is no longer allowed (then nothing is written)."""
    job = _job(firing, "machine", "id", "version", "event")
    machine = firing.store.machine(job["machine"])
    done = machine._fire_in(
        firing.tx,
        job["id"],
        job["event"],
        None,
        int(job["version"]),
        keep_timer=firing.name,
        quiet=True,
    )
    if done is None:
        log.info(
            "machine timeout no longer applies",
            extra={"machine": job["machine"], "id": job["id"], "event": job["event"]},
        )


def run_action(firing: Firing) -> None:
    """Call a class-based machine's action method with the firing (its payload holds
    ``machine``, ``id``, ``event``, ``source``, ``target``, ``version``, ``data``,
    ``payload`` and ``action``)."""
    job = _job(firing, "machine", "action")
    machine = firing.store.machine(job["machine"])
    machine.definition.action(job["action"])(firing)
