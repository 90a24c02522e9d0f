"""The Redis backend: items as hashes, the change log as a Stream, every write in Lua.

``clawstate.open("redis://127.0.0.1:6379/0")`` (``rediss://`` for TLS) gives the same
store as the embedded one — the whole conformance suite runs unchanged on it.  What
differs is *where the guarantees come from*, and this docstring says so plainly.

Durability is whatever the Redis server is configured for
-------------------------------------------------------------
clawstate acknowledges a write when Redis has executed it.  Whether it survives the
*server* stopping depends only on the server's persistence settings, which
``clawstate stats`` detects (``CONFIG GET appendonly / appendfsync / save``, falling
back to ``INFO persistence`` where CONFIG is disabled) and prints:

* ``appendonly yes`` + ``appendfsync always`` — each write is fsynced before Redis
  replies: it survives a crash of the server and a power loss;
* ``appendonly yes`` + ``everysec`` (the Redis default for AOF) or ``no`` — it survives
  a killed server process (Redis writes the AOF before it replies); a power loss may
  lose about the last second (``everysec``) or what the OS had not flushed (``no``);
* RDB snapshots only (``save …``) — writes since the last snapshot are lost when the
  server stops uncleanly;
* neither — **data is lost when the server stops**.

``capabilities.durable`` is True only with AOF on.  clawstate's ``durability`` setting
(``process``/``power``) does not apply here: configure the server.  A killed *client*
process never loses an acknowledged write and never leaves half a transaction (a Lua
script runs to completion or not at all) — the tests prove it by SIGKILLing writers.
An eviction ``maxmemory-policy`` (anything but ``noeviction``) lets Redis silently drop
items under memory pressure: ``stats()`` warns about it.  Replication is asynchronous:
a failover may lose the last acknowledged writes.

Data model (``P`` is the key prefix, ``?prefix=`` in the URL, default ``clawstate:``)
-----------------------------------------------------------------------------------
* ``P i:{ns}/{key}`` — a hash per item: ``v`` (the encoded bytes), ``ver``, ``seq``,
  ``c`` (created_at), ``u`` (updated_at), ``x`` (expires_at, absent when none) and ``n``
  (the length of ``v``, so a write adjusts the byte counter without an ``HSTRLEN``).
  Namespace names cannot contain ``/``, so the first ``/`` ends the namespace and any
  key is unambiguous (``a:b``/``c`` and ``a``/``b:c`` are different hashes).
  Timestamps are kept as the exact ``repr`` of the Python float and only compared
  (never computed on) in Lua, so they round-trip bit for bit.
* ``P k:{ns}`` — a sorted set of every stored key (live, or expired and not yet
  swept), all with score 0, so ``ZRANGEBYLEX`` walks keys in UTF-8 byte order: scans
  use ``[prefix`` … ``(upper bound`` and a cursor resumes at ``(after``.
* ``P x:{ns}`` — a sorted set of the namespace's expiring keys scored by
  ``expires_at``: the sweep's work list, and ``count()`` = ``ZCARD k`` − ``ZCOUNT x
  -inf now`` without touching the items.  One per namespace rather than one global
  set, so counting a namespace stays O(log n).
* ``P namespaces`` (set), ``P bytes`` (hash: namespace → sum of value lengths, kept by
  the scripts), ``P meta`` (schema version; ``kid:<id>`` fields record the keyring
  key ids that values are sealed under, ``kids`` marks that record complete).
* ``P log`` — the change log, a Stream whose entry IDs are ``0-<seq>``: a script
  appends with ``XADD log 0-*``, which takes the next seq (the last ID + 1) and returns
  it, so the stream's own last ID is the seq counter — no separate counter to keep in
  step.  ``XRANGE log (0-N`` reads the changes after seq N; ``XREAD BLOCK`` wakes a
  watcher.  Fields ``ns key op ver ts`` (and ``val`` where the namespace logs values).
* ``P d:{idempotency key}`` — a hash ``f`` (fingerprint), ``r`` (the outcomes), ``e``
  (expires_at), plus ``P dx``, a sorted set of idempotency keys by ``e``.  The key is
  :func:`~clawstate.backends._apply.idempotency_scope`'s: scoped by the namespaces
  the unit writes.
* ``P floors`` — a hash: namespace → the highest version a removed (deleted or
  swept) key of it had; a key created where no row is stored starts above it, so
  versions never repeat across a key's incarnations.

Items never use native Redis expiry: expiry follows the store's clock (``now`` from the
facade — tests run on a fake clock) and the sweep must log an ``expire`` change for
every purge.  Idempotency records are checked logically (``e > now``) and purged (and
counted) by the sweep; they also get a native ``PEXPIRE`` of the window plus one hour,
only as a backstop against leaks when nothing sweeps.  (Not ``PEXPIREAT e``: with a
store clock behind the server's, Redis would drop a record the store still considers
live, and a retry would apply twice.)

Atomicity: one Lua script call per batch
----------------------------------------
Every write unit — a put, a ``put_many``, a transaction across namespaces — and its
change-log entries run inside one ``EVALSHA``.  Concurrent writers of a process are
coalesced by a :class:`GroupCommitter` into one call holding many units; each unit
still succeeds or fails on its own.  The script re-expresses
:func:`clawstate.backends._apply.apply_unit` exactly: idempotency lookup with the
fingerprint check (a replay returns the outcomes recorded the first time, verbatim);
``if_absent`` / ``if_version`` checked against the *live* item (an expired one counts
as absent, and a re-put goes on at its version + 1 with a new ``created_at``; a key
with no stored row starts at its namespace's version floor + 1); deletes of
missing keys report False and log nothing; rewraps replace bytes only when version and
seq still match, with no new version and no change entry.  Lua cannot roll back, so
each unit is planned first — every condition checked, later writes of the unit seeing
the earlier ones through an overlay — and only a unit whose whole plan holds is
written.  Scripts carry a ``#!lua`` shebang, so on a server out of memory Redis
refuses the whole script up front instead of failing it half-way.  Redis replicates a
script's effects inside MULTI/EXEC, so replicas and the AOF never hold half a unit.
A ``NOSCRIPT`` reply (a restarted or flushed script cache) reloads the script and
retries once.

Reads: ``get`` is one ``HMGET``; ``get_many``, ``scan``, ``count`` and ``first_seq`` are
one read-only script call each (one round trip, one consistent snapshot).  Expiry is
checked against the caller's ``now``.  The hot path talks to redis-py's ``Connection``
directly, one connection per thread (as the SQLite backend keeps one per thread):
redis-py's client layer — pool checkout, retry wrapper, response callbacks — cost as
much as the localhost round trip itself.

``query()``: declared indexes, else a scan with a bound
------------------------------------------------------
``[namespaces.X] indexes = ["status", "customer.id"]`` (or under ``"*"``) declares, per
``(namespace, path)``, three sorted sets ``P q:{ns}/{digest of the path}:l|n|o``
(:mod:`.indexes`): ``l`` holds every scalar at the path as a type-tagged member
``<tag><value>\0<key>`` (``EQ``/``IN`` and string ranges by ``ZRANGEBYLEX``; ``1`` ≠
``"1"`` ≠ ``true``, ``1`` = ``1.0``), ``n`` the keys of numbers scored by the number
(number ranges by ``ZRANGEBYSCORE``), ``o`` the keys of encrypted values (the backend
cannot read them: always candidates, and no plaintext ever enters an index).

* **Maintained in the write script.**  Python derives each put's entries from
  ``Write.doc`` (or the plaintext bytes) and passes them as one argument; the script
  adds them and keeps them in the item's ``q`` field, so an overwrite, delete, rewrap
  or sweep purge removes exactly those, atomically with the write.  An overwrite that
  leaves the indexed fields alone touches no index.  A writer quotes the namespace's
  index *generation* (``P qgen``, bumped by each declaration): a unit whose entries
  were computed before an index was declared (another process) is refused by the
  script, unapplied, and resent with fresh entries — so no write can miss an index.
* **Declared, then backfilled online.**  ``ensure_index`` records the path as
  ``building`` (``P qdef:{ns}``), then walks the items in key order, 500 per script
  call, adding their entries (an item a writer changed meanwhile is left to the
  writer: version, seq and value hash are compared) and saving its position
  (``P qcur:{ns}``); ``progress(done, total)`` hears each chunk.  A kill leaves the
  index ``building`` and the next ``ensure_index`` resumes from the saved key; only
  the last chunk marks it ``ready``.  Until then queries scan.
* **Cost.**  A query :func:`~clawstate.query.serving_path` says an index serves: one
  script call returning the candidate keys (the lookups' members, plus the opaque
  keys), sorted in Python, then the items fetched in key order in growing chunks
  (``limit + 1`` first) as :func:`~clawstate.query.run_query` consumes them — it
  decodes, checks liveness (an expired, unswept item is still indexed), filters in
  full and orders; without a sort it stops after ``limit + 1`` matches.  So:
  O(candidates) keys moved once, O(rows read) items decoded; ``explain`` says
  ``index``, names it (``namespace/path``) and counts the items fetched.  A write adds
  one ``ZADD`` per indexed scalar (two for a number) and a ``q`` field; measured on
  loopback with two indexes, ``put_many`` at ~0.7× the rate without (docs/backends.md).
* **Otherwise a scan**: every live item of the namespace (``scan`` in pages of 1,000,
  one round trip each), decoded and evaluated in Python — O(items in the namespace)
  per call.  A namespace holding more than ``max_query_scan`` live items (URL
  parameter ``?max_query_scan=``, default 10,000) is refused with
  ``InvalidRequest("query", …)``, as is a scan past the facade's ``max_scan``.

Watch: ``wait_for_change`` is ``XREAD BLOCK`` on the log in blocks of at most one second;
a commit from any process wakes it at once.

Errors: redis-py's ``ConnectionError`` / ``TimeoutError`` (and any other server error:
OOM, READONLY, MISCONF) become :class:`BackendUnavailable` at this edge.  Writes are
never resent automatically (the client's retry policy is off): a write whose reply was
lost may or may not have been applied — retry it with an idempotency key.  So that a
server restart during a quiet spell does not cost the next write that ambiguity, a
connection idle for over a second is polled (no round trip) before use and replaced if
the server closed it.  Reads retry once on a broken connection.

Sweep (one script call): purge expired items (at most 10,000 per call), each with an
``expire`` change; purge idempotency records past their expiry; trim the log from the
front while entries are older than the retention, never the newest entry (its ID is
the seq watermark).  ``check()`` verifies the structure: every item hash is in its
namespace's key index and vice versa, the expiry index agrees with the items, each
item's seq and version match its retained change-log entry, no item's seq is beyond
the log's last ID, the log's last generated ID is its newest entry, and the byte
counters and length fields equal the stored values.

Cluster: every key of a store must live in one hash slot, because one script touches
the items, indexes and log together; this backend therefore connects to one standalone
(or primary) server and refuses a cluster node.  Behind a cluster proxy, give the store
a prefix with a hash tag (``?prefix={myapp}:``): every key then hashes to one slot
(one shard — correct, not scaled out; untested here).

URL parameters: ``prefix`` (default ``clawstate:``; give each store its own, ending in
``:``, and never one that starts with another store's prefix), ``max_query_scan``
(10000), ``socket_timeout`` (seconds, 10), ``connect_timeout`` (5), and for
``rediss://`` ``ssl_ca_certs`` and ``ssl_cert_reqs`` (``required``/``optional``/``none``).

The package, one module per job (as the PostgreSQL backend's): :mod:`.backend` (the
class: construction, writes, point reads and scans, stats), composed over
:mod:`._core` (connections, script calls, key naming, error translation) from
:mod:`.query` (queries and index backfills), :mod:`.changes` (change log, watch,
sweep) and :mod:`.check` (the integrity check); :mod:`.scripts` (the Lua scripts),
:mod:`.indexes` (index entries and lookups; the document and scalar rules it shares
with the memory backend live in :mod:`clawstate.backends._docindex`) and
:mod:`.persistence` (reading the server's persistence settings).
Built by :mod:`clawstate._open` as ``RedisBackend.from_url(url, options)``;
``create=False`` reads the prefix's ``meta`` hash and refuses a prefix without a
store, writing no key.
"""

from .backend import (
    DEFAULT_MAX_QUERY_SCAN,
    DEFAULT_PREFIX,
    SCHEMA_VERSION,
    RedisBackend,
    persistence_mode,
)

__all__ = [
    "DEFAULT_MAX_QUERY_SCAN",
    "DEFAULT_PREFIX",
    "SCHEMA_VERSION",
    "RedisBackend",
    "persistence_mode",
]
