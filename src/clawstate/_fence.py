"""Fenced writes: the check a write carries when it is made under a lease.

A lease's fencing token is the version of its lock's *fence row* (``_fences/<lock
name>``), which :mod:`clawstate.locks` bumps, in the acquiring transaction, each time
it grants a lease of that name.  Row versions never repeat or go back (no ABA, see
``backends/_apply.py``), so a token strictly increases per name on every backend.

``ns.put(key, value, fence=lease)`` (and ``put_many``, ``delete``, a transaction's
writes) sends, ahead of its writes in the same unit, one :data:`OP_FENCE` check of
that row: the storage refuses the whole unit with :class:`FencingError` unless the row's
version is exactly the token — once a newer lease of that name exists, or for a token
no lease was ever granted (a forged one, even a higher one) — so a holder paused
past its lease (a GC pause, a frozen VM) cannot overwrite the next holder's work.
The check runs in the writes' own transaction, under whatever serialises writers
(SQLite's write lock, PostgreSQL's head row lock, one Redis script), so no lease can
be granted between the check and the writes.

This module only builds and validates the check; granting leases is the lock
module's job.  It lives apart from both so the facade's write paths need not import
the lock machinery.
"""

from __future__ import annotations

from typing import Any

from ._validate import INT64_MAX, check_key
from .backends.base import OP_FENCE, Write
from .errors import InvalidRequest

__all__ = ["FENCES", "check_fence", "fence_write"]

#: The system namespace holding one fence row per lock name (the token is its version).
FENCES = "_fences"

#: Lock names are keys of the fence namespace: the same byte limit as keys.
_MAX_NAME_BYTES = 1024


def check_fence(fence: Any, field: str = "fence") -> tuple[str, int]:
    """``(lock name, token)`` of ``fence`` — a :class:`~clawstate.Lease`, or anything
    with a string ``name`` and an integer ``token`` (a lease rebuilt from the wire)."""
    name = getattr(fence, "name", None)
    token = getattr(fence, "token", None)
    if not isinstance(name, str) or type(token) is not int:
        raise InvalidRequest(
            field,
            f"must be a Lease (from store.lock / store.locks.acquire), got {type(fence).__name__}",
        )
    check_key(name, _MAX_NAME_BYTES, field=f"{field}.name")
    if not 1 <= token <= INT64_MAX:
        raise InvalidRequest(
            f"{field}.token", f"must be between 1 and {INT64_MAX}", limit=INT64_MAX
        )
    return name, token


def fence_write(fence: Any, field: str = "fence") -> Write:
    """The :data:`OP_FENCE` check that refuses a unit once a newer lease exists."""
    name, token = check_fence(fence, field)
    return Write(FENCES, name, OP_FENCE, None, None, token)
