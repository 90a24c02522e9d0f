"""SQLite driver errors into the clawstate error tree: the backend's one edge.

Every module of the package (items, queries, the event log) translates here, so a
damaged file is an :class:`~clawstate.errors.IntegrityError` wherever it is met
(retrying cannot help; ``clawstate check`` reports what is wrong) and a busy or failing
database a :class:`~clawstate.errors.BackendUnavailable`.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from ...errors import BackendUnavailable, ClawStateError, IntegrityError

__all__ = ["is_busy", "translate"]

#: SQLite's primary result codes for a damaged file (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``).
DAMAGED: Final = frozenset({11, 26})
#: ... and for a database another connection holds (``SQLITE_BUSY``, ``SQLITE_LOCKED``).
BUSY: Final = frozenset({5, 6})


def result_code(exc: sqlite3.Error) -> int | None:
    """The primary result code of a driver error (``None`` when it carries none)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether another connection holds the database (worth a retry)."""
    return result_code(exc) in BUSY or "locked" in str(exc)


def translate(exc: sqlite3.Error, what: str) -> ClawStateError:
    """Turn a driver error met while doing ``what`` into the clawstate tree."""
    message = str(exc)
    if result_code(exc) in DAMAGED:
        return IntegrityError(
            f"{what}: the database file is damaged (sqlite: {message}); "
            "run `clawstate check` and restore from a backup"
        )
    if isinstance(exc, sqlite3.OperationalError) and "locked" in message:
        return BackendUnavailable(f"{what}: the database stayed locked by another writer")
    return BackendUnavailable(f"{what}: sqlite error: {message}")
