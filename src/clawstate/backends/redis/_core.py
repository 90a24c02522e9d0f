"""What every part of the Redis backend shares: the state the backend holds (declared
on :class:`RedisCore`, set by ``RedisBackend.__init__``), opening and checking the
server, the per-thread connections with the raw ``_call`` and the one-retry ``_read``
helper, ``EVALSHA`` with the ``NOSCRIPT`` reload, driver-error translation at the edge,
key naming, and the few reads the other parts build on (``_scan``/``_iter``,
``count``, ``namespaces``, the log bounds, the index declarations).

It exists so the backend class can be assembled from one mixin per job over this core
— :mod:`.query` (queries and index backfills), :mod:`.changes` (change log, watch,
sweep), :mod:`.check` (the integrity check) and :mod:`.backend` (construction, writes,
point reads, stats) — as the PostgreSQL backend is, keeping each module small.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from ...errors import BackendUnavailable, ClawStateError, ConfigError
from .._keyorder import prefix_upper_bound
from ..base import Capabilities, StoredItem
from .indexes import IndexCache, NsIndexes
from .persistence import persistence_mode
from .scripts import _BOUNDS, _COUNT, _SCAN, SCRIPTS, Script

if TYPE_CHECKING:
    from .._group_commit import GroupCommitter
    from ..base import Outcome, WriteUnit

__all__ = [
    "DEFAULT_MAX_QUERY_SCAN",
    "DEFAULT_PREFIX",
    "IDLE_PROBE",
    "SCHEMA_VERSION",
    "RedisCore",
]

DEFAULT_PREFIX = "clawstate:"
DEFAULT_MAX_QUERY_SCAN = 10_000
SCHEMA_VERSION = 1
#: A per-thread connection idle this long is probed (no round trip) before use.
IDLE_PROBE = 1.0
_PAGE = 1000

T = TypeVar("T")

#: Bumped in a forked child: per-thread connections inherited from the parent are
#: never used there (the socket belongs to the parent).
_fork_generation = [0]
os.register_at_fork(after_in_child=lambda: _fork_generation.__setitem__(0, _fork_generation[0] + 1))


class _Conn(Protocol):
    """The part of redis-py's Connection used on the hot path (redis-py leaves it untyped)."""

    def pack_command(self, *args: Any) -> list[bytes]: ...

    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...

    def read_response(self) -> Any: ...

    def can_read(self, timeout: float = 0) -> bool: ...

    def disconnect(self, *args: Any) -> None: ...


def _num(x: float) -> str:
    """A float as the exact text Lua's ``tonumber`` reads back to the same double."""
    return repr(float(x))


def _text(b: bytes | str) -> str:
    return b.decode() if isinstance(b, bytes) else b


def _glob_escape(s: str) -> str:
    """``s`` with the glob characters of ``SCAN MATCH`` escaped."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in s)


class RedisCore:
    """The state and plumbing every part of :class:`~.backend.RedisBackend` uses."""

    prefix: str
    max_query_scan: int
    server_version: str
    persistence: str
    capabilities: Capabilities
    _create: bool
    _where: str
    _block: float
    _closed: bool
    _r: redis.Redis
    _k_log: str
    _k_namespaces: str
    _k_bytes: str
    _k_meta: str
    #: redis-py leaves execute_command untyped; pooled commands go through this
    _pooled: Callable[..., Any]
    _local: threading.local
    _conns: weakref.WeakSet[_Conn]
    _conns_lock: threading.Lock
    #: declared indexes per namespace, as this process last read them (indexes.py)
    _indexes: IndexCache
    _committer: GroupCommitter[WriteUnit, list[Outcome]]

    # -- plumbing --------------------------------------------------------------------

    def _open(self) -> None:
        """Check the server, the schema marker and persistence; load the scripts."""
        try:
            info = self._r.info("server")
            version = str(info.get("redis_version", "0"))
            major_minor = tuple(int(x) for x in version.split(".")[:2])
            if major_minor < (7, 0):
                raise ConfigError(
                    "store.url",
                    f"{self._where} runs Redis {version}; clawstate needs Redis 7.0 or newer "
                    "(script flags, XTRIM MINID, exclusive XRANGE)",
                )
            self.server_version = version
            mode = str(info.get("redis_mode", "standalone"))
            if mode != "standalone":
                raise ConfigError(
                    "store.url",
                    f"{self._where} runs in {mode} mode; clawstate's Redis backend needs a "
                    "standalone (or primary/replica) server: one script touches a store's "
                    "items, indexes and log together",
                )
            if self._create:
                self._r.hsetnx(self._k_meta, "schema", SCHEMA_VERSION)
            found = int(cast(bytes, self._r.hget(self._k_meta, "schema")) or 0)
            if not found:  # create=False, and no store under this prefix: write nothing
                raise ConfigError(
                    "store.url",
                    f"no store at {self._where} under prefix {self.prefix!r} (its "
                    f"{self._k_meta!r} hash is missing); a command that writes (put, serve…) "
                    "creates it",
                )
            if found > SCHEMA_VERSION:
                raise ConfigError(
                    "store.url",
                    f"the keys under prefix {self.prefix!r} have schema version {found}; this "
                    f"clawstate understands up to {SCHEMA_VERSION} — upgrade clawstate",
                )
            for script in SCRIPTS:
                self._r.script_load(script.source)
            summary, durable, _ = self._persistence()
        except redis.AuthenticationError as exc:
            self._r.close()
            raise ConfigError("store.url", f"{self._where}: authentication failed: {exc}") from exc
        except RedisError as exc:
            self._r.close()
            raise self._translate(exc, "open") from exc
        except ClawStateError:
            self._r.close()
            raise
        self.persistence = summary
        self.capabilities = Capabilities(
            durable=durable, multi_process=True, native_query=False, documents=True
        )

    def _persistence(self) -> tuple[str, bool, dict[str, Any]]:
        info = self._r.info("persistence")
        config: dict[str, str] | None
        try:
            config = {}
            for name in ("appendonly", "appendfsync", "save"):
                got = cast(dict[str, str], self._r.config_get(name))
                config.update({_text(k): _text(v) for k, v in got.items()})
        except redis.ResponseError:  # CONFIG renamed or refused (managed services)
            config = None
        return persistence_mode(config, info)

    def _translate(self, exc: RedisError, what: str) -> ClawStateError:
        """Turn a driver error into the clawstate tree (the backend's edge)."""
        if self._closed:
            return BackendUnavailable("the store is closed")
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            return BackendUnavailable(f"{what}: {self._where} is unreachable: {exc}")
        return BackendUnavailable(f"{what}: {self._where} refused: {exc}")

    def _evalsha(self, script: Script, args: Sequence[Any]) -> Any:
        """EVALSHA ``script``; on NOSCRIPT (the server lost its cache) load it and retry once."""
        try:
            return self._call("EVALSHA", script.sha, 1, self._k_log, *args)
        except NoScriptError:
            self._call("SCRIPT", "LOAD", script.source)
            return self._call("EVALSHA", script.sha, 1, self._k_log, *args)

    def _conn(self) -> _Conn:
        """This thread's own connection (opened on first use, outside the pool)."""
        local = self._local
        conn: _Conn | None = getattr(local, "conn", None)
        now = time.monotonic()
        if conn is None or local.generation != _fork_generation[0]:
            if self._closed:
                raise BackendUnavailable("the store is closed")
            pool = self._r.connection_pool
            conn = cast(_Conn, pool.connection_class(**pool.connection_kwargs))
            local.conn, local.generation = conn, _fork_generation[0]
            with self._conns_lock:
                self._conns.add(conn)
        elif now - local.last > IDLE_PROBE:
            # A socket the server closed while we were idle (a restart, a timeout) would
            # fail the next command after sending it — ambiguous for a write.  A poll
            # without a round trip finds it first; a fresh connection replaces it.
            try:
                if conn.can_read(0):  # data nobody asked for: not ours to read
                    conn.disconnect()
            except (RedisError, OSError):
                conn.disconnect()
        local.last = now
        return conn

    def _call(self, *args: Any) -> Any:
        """One command on this thread's connection, its raw reply (no response callbacks).

        The hot path: redis-py's client layer (pool checkout, retry wrapper, callbacks)
        costs about as much as a localhost round trip, and every thread has its own
        connection, as with the SQLite backend.  A reply that was not read completely
        (an error, an interrupt) drops the connection, so the next command cannot read
        a stale reply; an error *reply* leaves it usable.
        """
        conn = self._conn()
        try:
            conn.send_packed_command(conn.pack_command(*args), check_health=False)
            return conn.read_response()
        except ResponseError:
            raise
        except BaseException:
            conn.disconnect()
            raise

    def _read(self, what: str, fn: Callable[[], T]) -> T:
        """Run a read; retry once on a broken connection (reads are safe to repeat)."""
        if self._closed:
            raise BackendUnavailable("the store is closed")
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError):
            if self._closed:
                raise BackendUnavailable("the store is closed") from None
        except RedisError as exc:
            raise self._translate(exc, what) from exc
        try:
            return fn()
        except RedisError as exc:
            raise self._translate(exc, what) from exc

    def _ik(self, namespace: str, key: str) -> str:
        return f"{self.prefix}i:{namespace}/{key}"

    @staticmethod
    def _items(namespace: str, flat: list[Any], now: float | None) -> list[StoredItem]:
        """Items from a script's flat reply (7 fields each), the expired ones dropped
        unless ``now`` is None."""
        out: list[StoredItem] = []
        for i in range(0, len(flat), 7):
            x = flat[i + 6]
            expires = float(x) if x else None
            if now is not None and expires is not None and expires <= now:
                continue
            out.append(
                StoredItem(
                    namespace,
                    flat[i].decode(),
                    flat[i + 1],
                    int(flat[i + 2]),
                    int(flat[i + 3]),
                    float(flat[i + 4]),
                    float(flat[i + 5]),
                    expires,
                )
            )
        return out

    def _scan(
        self,
        namespace: str,
        prefix: str,
        after: str | None,
        limit: int,
        now: float | None,
    ) -> list[StoredItem]:
        if after is not None and after.encode() >= prefix.encode():
            low = "(" + after
        else:
            low = "[" + prefix if prefix else "-"
        upper = prefix_upper_bound(prefix) if prefix else None
        high = "+" if upper is None else "(" + upper
        args = [self.prefix, namespace, low, high, limit, "" if now is None else _num(now)]
        flat = cast(list[Any], self._read("scan", lambda: self._evalsha(_SCAN, args)))
        return self._items(namespace, flat, now)

    def _iter(self, namespace: str, now: float | None) -> Iterator[StoredItem]:
        after: str | None = None
        while True:
            page = self._scan(namespace, "", after, _PAGE, now)
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1].key

    def count(self, namespace: str, now: float) -> int:
        args = [self.prefix, namespace, _num(now)]
        return int(self._read("count", lambda: self._evalsha(_COUNT, args)))

    def namespaces(self) -> list[str]:
        got = cast(
            set[bytes], self._read("namespaces", lambda: self._r.smembers(self._k_namespaces))
        )
        return sorted(_text(n) for n in got)

    # -- indexes -------------------------------------------------------------------

    def _k_index(self, namespace: str) -> str:
        return f"{self.prefix}k:{namespace}"

    def _load_indexes(self, namespace: str) -> NsIndexes:
        """Read the namespace's declarations (generation and states) into the cache."""

        def read() -> tuple[Any, Any]:
            gen = self._call("HGET", self.prefix + "qgen", namespace)
            states = self._call("HGETALL", f"{self.prefix}qdef:{namespace}")
            return gen, states

        gen, states = self._read("read the index declarations", read)
        return self._indexes.store(namespace, gen, states)

    def _ns_indexes(self, namespace: str) -> NsIndexes:
        cached = self._indexes.get(namespace)
        return cached if cached is not None else self._load_indexes(namespace)

    def _bounds(self) -> tuple[int, int]:
        got = cast(list[int], self._read("last_seq", lambda: self._evalsha(_BOUNDS, [self.prefix])))
        return int(got[0]), int(got[1])
