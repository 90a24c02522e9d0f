"""The embedded backend: one SQLite file, the stdlib ``sqlite3`` module.

The discipline is DiskCache's: WAL journal so readers never wait for the
writer, ``BEGIN IMMEDIATE`` so a writer takes the write lock up front instead
of failing half-way with SQLITE_BUSY, and one connection per thread (sqlite3
connections must not be shared between threads mid-statement).  Writes go
through a :class:`GroupCommitter`: concurrent writers of this process share one
transaction and one WAL sync; other processes coordinate through SQLite's own
file lock (``busy_timeout``).

Durability modes: ``process`` runs ``synchronous=NORMAL`` — a commit is in the
WAL before it is acknowledged, so it survives a killed process but a power cut
may lose the last commits; ``power`` runs ``synchronous=FULL`` — the WAL is
fsynced on every commit (every *batch*, with group commit).

Each item row and its change-log row are written in the same transaction; the
change-log ``seq`` is assigned under the write lock, so it is gap-free and in
commit order for every reader.

The package: :mod:`.backend` (the class: connections, writes, reads, sweep, check),
:mod:`.schema` (migrations and SQL), :mod:`.files` (the file: permissions, network
filesystems, "no store at …"), :mod:`.events` (the event store, beside it), and
queries in SQL: :mod:`.docs` (the JSON copy of each value), :mod:`.query` (the
compiler) and :mod:`.queries` (running it, the backfill, declared indexes).
Built by :mod:`clawstate._open` as ``SQLiteBackend.from_url(url, options)``;
``create=False`` opens an existing store only and creates nothing.
"""

from .backend import SQLiteBackend
from .files import NETWORK_FILESYSTEMS
from .schema import SCHEMA_VERSION

__all__ = ["NETWORK_FILESYSTEMS", "SCHEMA_VERSION", "SQLiteBackend"]
