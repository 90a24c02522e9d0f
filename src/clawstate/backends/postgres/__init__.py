"""The PostgreSQL backend: psycopg 3, a connection pool, LISTEN/NOTIFY.

The package, one module per job: :mod:`.schema` (migrations, the SQL, the probe
``create=False`` opens with), :mod:`.writes` and :mod:`.rows` (the write path),
:mod:`.query` (the query compiler and indexes), :mod:`.listen` (change log and
LISTEN), :mod:`.events` (the event store), :mod:`.values` (the ``jsonb`` copy),
:mod:`._core` (shared state and plumbing) and :mod:`.backend` (the class).

Many ``clawstate`` processes share one database.  What that takes, and why the
code is shaped the way it is:

**Seq order is commit order.**  Watchers read ``changes(after_seq)`` and move
their position to the last seq they saw, so a change that commits *later* with a
*lower* seq than one already seen would be skipped for ever.  A PostgreSQL
sequence hands out numbers at ``nextval`` time, not at commit, so it cannot be
used.  Instead the schema has a one-row table ``head`` holding the last seq
handed out, and every write transaction begins by updating it
(``UPDATE head SET seq = seq + n RETURNING …``).  The row lock that takes is held
until COMMIT, so write transactions of one schema are serial; a transaction
that waited for it re-reads the *newest* head when the lock is granted (READ
COMMITTED re-checks an updated row), so its seqs follow the previous holder's,
and PostgreSQL releases row locks only after the commit is visible.  Hence the
log is gap-free in commit order, and the head (or ``MAX(seq)``) read in any
snapshot is a watermark: every lower seq is committed and visible.  A row lock
rather than ``pg_advisory_xact_lock`` + ``MAX(seq)``: the advisory lock would
have to be its own statement *before* the one reading ``MAX(seq)`` (a statement's
snapshot predates a lock it waits for), while the head update orders and numbers
in the same statement — so a plain put is *one* autocommit statement, saving the
``BEGIN``/lock/``COMMIT`` messages (~150 µs measured per put here).  The
serialisation costs little because of group commit: concurrent writers of a
process share one transaction, so one lock and one WAL flush serve a whole
batch.  CAS is correct across processes for the same reason: version checks run
while the head is held.

**Round trips.**  A batch of concurrent units is one transaction on one pooled
connection, its statements pipelined.  Two shapes:

* *plain puts* (no condition, no idempotency key — the hot path): one
  statement per batch (split only where a key repeats), run in autocommit —
  its own transaction: it advances the head, upserts the items with
  ``INSERT … ON CONFLICT DO UPDATE`` computing versions server-side (``unnest``
  of column arrays for several), appends their change-log rows and queues the
  NOTIFY.  **One round trip and one WAL flush per batch.**
* *everything else* (CAS, create-only, deletes, idempotency keys, key rotation):
  the first round trip locks the head and prefetches every row, namespace and
  idempotency record the batch names; :func:`~._apply.apply_unit` — the shared
  write semantics — then runs over :class:`_Rows`, a ``RowAccess`` that reads
  that snapshot (safe: nobody else can write while we hold the head) and stages
  each unit's changes.  A unit whose check fails has its staged changes undone
  and fails alone; it never reaches the server, so no ``SAVEPOINT`` (and no
  subtransaction, which past 64 per transaction degrade every snapshot in the
  cluster) is needed.  The survivors' net rows are written with a handful of
  multi-row statements plus ``COMMIT``: **two round trips per batch**, whatever
  its size.

A database error (never a failed check) aborts the batch; then each unit is
retried alone, as on SQLite, so one bad unit cannot fail its neighbours.

**Values.**  ``value bytea`` holds the codec's bytes, always.  When the bytes
are plain JSON (msgpack or json serializer, compressed or not, not encrypted),
``doc jsonb`` holds the same value and :meth:`PostgresBackend.query` runs in
SQL.  A put carries the document the codec encoded (``Write.doc``), so building
the copy is one JSON encode in the caller's thread; other writes and ``check()``
decode the bytes (the codec's header read through
:func:`clawstate.codec.stored_form`, never re-declared here).  Encrypted
values, and the rare values jsonb cannot hold exactly (NaN/±Infinity, NUL in a
string, nested bytes) get ``doc`` NULL and an ``opaque`` mark; queries evaluate
those rows in Python with the facade's decoder and merge them with the SQL
rows, so a query answers the same on every backend.  ``?encrypted_query=refuse``
makes a query on a namespace holding encrypted values an error instead.

**Queries** compile the AST of :mod:`clawstate.query` to SQL with bound
parameters only (paths are ``text[]`` parameters under ``#>``), ordered by
``(jsonb_typeof rank, typed value)`` pairs and resumed with a keyset condition
decoded from the page token.  The page and its next token are then produced by
:func:`~clawstate.query.run_query` over the ``limit + 1`` rows SQL returned
(plus any opaque rows), so tokens are exactly the evaluator's and interchangeable
with every other backend's.  :meth:`PostgresBackend.ensure_index` creates
per-namespace expression indexes that those filters use; the facade asks for
them from the namespace policy when it opens a namespace.

**Watch** LISTENs on one dedicated connection per backend (a thread fans
notifications out through a condition variable); every write transaction sends
``NOTIFY`` with its last seq, delivered at commit.  If the listener connection
is lost, waiters poll every ``poll_interval`` until it is back.  (PostgreSQL
serialises the commits of notifying transactions cluster-wide; within a schema
ours are serial anyway, so only writers of *different* schemas feel it.)

**Events** (:mod:`.events`): the head row also holds ``pos``,
the last event position handed out.  Event appends take the general path: round
trip 1 locks the head (reading ``pos``) and prefetches the batch's stream versions,
stream metadata and event ids; positions are numbered client-side under the lock
and written with the new ``pos`` in round trip 2 — gap-free and in commit order
across processes, like seqs.  Such commits ``NOTIFY`` with ``"<seq> <pos>"``.

**Failures.**  psycopg and pool errors become :class:`BackendUnavailable` (a
violated constraint: :class:`IntegrityError`) at this module's edge.  A lost
connection is dropped by the pool, whose idle connections are then checked;
reads are retried once on a fresh connection, writes are not (their commit may
have happened) — an acknowledged write is one whose COMMIT returned.

**Durability** is the server's: a COMMIT returns once PostgreSQL has flushed
its WAL (``synchronous_commit`` as configured there; ``stats()`` shows it), so
``durability = "process"`` and ``"power"`` behave alike here.

URL: ``postgresql://user:pass@host:5432/db?schema=clawstate&pool_max=10``.
clawstate's own parameters are ``schema`` (default ``clawstate``),
``pool_min``/``pool_max`` (1/10), ``pool_timeout`` (seconds a caller waits for
a connection, 10), ``poll_interval`` (watch fallback, 1 s) and
``encrypted_query`` (``scan``/``refuse``); any other parameter is a libpq
connection option (``sslmode``, ``application_name``, ``connect_timeout``…).
What the store's configuration says (``max_value_bytes``, ``create=``) comes in
:class:`~clawstate.backends.base.BackendOptions`: ``PostgresBackend.from_url(url,
options)``.  ``create=False`` (read commands) probes the schema's ``meta`` table
with ``to_regclass`` before any DDL and refuses a schema without a store, writing
nothing.
"""

from .backend import PostgresBackend
from .schema import DEFAULT_SCHEMA, SCHEMA_VERSION
from .values import OPAQUE_ENCRYPTED, OPAQUE_NONE, OPAQUE_PLAIN, value_doc, write_doc
from .writes import Job

__all__ = [
    "DEFAULT_SCHEMA",
    "OPAQUE_ENCRYPTED",
    "OPAQUE_NONE",
    "OPAQUE_PLAIN",
    "SCHEMA_VERSION",
    "Job",
    "PostgresBackend",
    "value_doc",
    "write_doc",
]
