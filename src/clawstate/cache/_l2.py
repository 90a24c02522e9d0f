"""L2: the tier shared by processes — Redis, reached by URL, never load-bearing.

Why it looks like this:

* **Redis down is not an error.**  Every operation catches the client's errors,
  marks the tier unavailable for a back-off (0.25 s doubling to 5 s) and reports a
  miss; reads and writes then go to the backend with only the latency of the
  missing tier.  Connect and socket timeouts are short and the client does not retry,
  so a dead Redis costs one refused connection per back-off period, not per call.
* **Entries carry the change-log seq they reflect**, as a 16-hex-digit prefix, so
  Redis itself can refuse an older value over a newer one: fills and invalidations are
  Lua scripts that compare seqs.  Invalidations write *tombstones* (``T``) carrying
  the change's seq, so a slow reader that loaded a value before the change cannot put
  it back afterwards (the classic cache-fill race).  Kinds: ``I`` item, ``N`` a cached
  miss (its seq is the log position it was observed at), ``T`` tombstone.
* **Values stay encoded.**  L2 holds the bytes the codec produced — compressed,
  and encrypted for encrypted namespaces — so nothing readable leaves the process
  that Redis could leak; a hit decodes exactly like a backend read.
* **Invalidations missed while Redis was unreachable are replayed** when it comes
  back (before the tier is used again); if too many were missed, every key under the
  store's prefix is removed instead.  A half-open probe lets one thread test Redis
  at the end of each back-off.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["L2", "L2_LOCK_MS", "decode_value", "encode_value"]

log = logging.getLogger("clawstate.cache")

#: How long the cross-process stampede lock lives (ms): a loader that dies holding it
#: delays other processes' loads of that key by at most this much.
L2_LOCK_MS: Final = 2000
#: Invalidations remembered while Redis is unreachable; beyond this the prefix is purged.
MAX_MISSED: Final = 100_000
_BACKOFF_MIN: Final = 0.25
_BACKOFF_MAX: Final = 5.0

# KEYS[1] entry, KEYS[2] lock; ARGV[1] value, ARGV[2] ttl ms, ARGV[3] lock token or "".
_FILL = """
local new = ARGV[1]
local seq = tonumber(string.sub(new, 1, 16), 16)
local cur = redis.call('GET', KEYS[1])
local ok = true
if cur then
  local cseq = tonumber(string.sub(cur, 1, 16), 16)
  if cseq > seq then
    ok = false
  elseif cseq == seq then
    ok = string.sub(cur, 17, 17) == 'T' and string.sub(new, 17, 17) == 'I'
  end
end
if ok then redis.call('SET', KEYS[1], new, 'PX', ARGV[2]) end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
if ok then return 1 end
return 0
"""

# KEYS: entries; ARGV[1] ttl ms, ARGV[i+1] the tombstone for KEYS[i].
_TOMBSTONE = """
local ttl = ARGV[1]
for i, k in ipairs(KEYS) do
  local new = ARGV[i + 1]
  local cur = redis.call('GET', k)
  if (not cur) or tonumber(string.sub(cur, 1, 16), 16) < tonumber(string.sub(new, 1, 16), 16) then
    redis.call('SET', k, new, 'PX', ttl)
  end
end
return #KEYS
"""


def encode_value(seq: int, kind: bytes, payload: bytes = b"") -> bytes:
    """``seq`` as 16 hex digits, the kind byte (``I``/``N``/``T``), the payload."""
    return b"%016x" % seq + kind + payload


def decode_value(raw: bytes) -> tuple[int, bytes, bytes]:
    """``(seq, kind, payload)`` of a stored L2 value; ValueError if malformed."""
    if len(raw) < 17:
        raise ValueError("short L2 value")
    return int(raw[:16], 16), raw[16:17], raw[17:]


class L2:
    """One Redis connection pool plus the scripts; shared by the namespaces of a store
    that name the same URL.  Thread-safe (redis-py's pool is)."""

    def __init__(self, url: str, prefix: bytes) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.prefix = prefix
        self._redis_error: type[Exception] = redis.RedisError
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=0.5,
            socket_connect_timeout=0.25,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._fill = self._client.register_script(_FILL)
        self._tombstone = self._client.register_script(_TOMBSTONE)
        self._up = True
        self._down_until = 0.0
        self._backoff = _BACKOFF_MIN
        self._probe = threading.Lock()
        self._missed: dict[bytes, bytes] = {}
        self._missed_ttl = 0
        self._overflow = False
        self._missed_lock = threading.Lock()
        self.errors = 0
        self.replayed = 0
        self.last_error = ""

    # -- availability -----------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._up

    def _usable(self) -> bool:
        if self._up:
            return True
        if time.monotonic() < self._down_until or not self._probe.acquire(blocking=False):
            return False
        try:
            self._client.ping()
            self._replay()
            self._up = True
            self._backoff = _BACKOFF_MIN
            log.info("cache L2 %s is reachable again", self._where())
        except Exception as exc:  # any failure: stay down for another back-off
            self._failed(exc)
        finally:
            self._probe.release()
        return self._up

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self._up:
            log.warning(
                "cache L2 %s unreachable (%s); serving from L1 and the backend",
                self._where(),
                self.last_error,
            )
        self._up = False
        self._down_until = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    def _where(self) -> str:
        from ..config import _redact

        return _redact(self.url)

    def _replay(self) -> None:
        """Write the tombstones missed while down (or purge the prefix if too many)."""
        with self._missed_lock:
            missed, self._missed = self._missed, {}
            overflow, self._overflow = self._overflow, False
            ttl = self._missed_ttl
        if overflow:
            for key in self._client.scan_iter(match=self.prefix + b"*", count=1000):
                self._client.unlink(key)
            return
        items = list(missed.items())
        for i in range(0, len(items), 500):
            chunk = items[i : i + 500]
            self._tombstone(keys=[k for k, _ in chunk], args=[ttl, *[v for _, v in chunk]])
        self.replayed += len(items)

    def _remember(self, keys: Sequence[bytes], values: Sequence[bytes], ttl_ms: int) -> None:
        with self._missed_lock:
            if self._overflow:
                return
            for k, v in zip(keys, values, strict=True):
                old = self._missed.get(k)
                if old is None or old < v:  # same-width hex prefix: bytes order is seq order
                    self._missed[k] = v
            self._missed_ttl = max(self._missed_ttl, ttl_ms)
            if len(self._missed) > MAX_MISSED:
                self._missed.clear()
                self._overflow = True

    # -- keys --------------------------------------------------------------------------

    def key(self, namespace: str, key: str) -> bytes:
        return self.prefix + namespace.encode() + b"\x00" + key.encode("utf-8")

    # -- operations ----------------------------------------------------------------------

    def get(self, rkey: bytes) -> bytes | None:
        if not self._usable():
            return None
        try:
            raw = self._client.get(rkey)
            return raw if isinstance(raw, bytes) else None
        except self._redis_error as exc:
            self._failed(exc)
            return None

    def mget(self, rkeys: Sequence[bytes]) -> list[bytes | None]:
        if not rkeys or not self._usable():
            return [None] * len(rkeys)
        try:
            return [r if isinstance(r, bytes) else None for r in self._client.mget(rkeys)]
        except self._redis_error as exc:
            self._failed(exc)
            return [None] * len(rkeys)

    def set(self, rkey: bytes, value: bytes, ttl_ms: int) -> None:
        """A plain SET with expiry (memoize: no change log, no seq)."""
        if not self._usable():
            return
        try:
            self._client.set(rkey, value, px=max(1, ttl_ms))
        except self._redis_error as exc:
            self._failed(exc)

    def delete(self, rkeys: Sequence[bytes]) -> None:
        if not rkeys or not self._usable():
            return
        try:
            self._client.delete(*rkeys)
        except self._redis_error as exc:
            self._failed(exc)

    def lock(self, rkey: bytes) -> str | None:
        """Take the short stampede lock on ``rkey``: a token, ``""`` when L2 is
        unusable (load without it), ``None`` when another process holds it."""
        if not self._usable():
            return ""
        token = secrets.token_hex(8)
        try:
            got = self._client.set(rkey + b"\x00lock", token, nx=True, px=L2_LOCK_MS)
        except self._redis_error as exc:
            self._failed(exc)
            return ""
        return token if got else None

    def fill(self, rkey: bytes, value: bytes, ttl_ms: int, token: str = "") -> None:
        """Store ``value`` unless Redis holds a newer seq; release the lock ``token``."""
        if not self._usable():
            return
        try:
            self._fill(keys=[rkey, rkey + b"\x00lock"], args=[value, max(1, ttl_ms), token])
        except self._redis_error as exc:
            self._failed(exc)

    def tombstone(self, rkeys: Sequence[bytes], seqs: Sequence[int], ttl_ms: int) -> None:
        """Mark ``rkeys`` changed at ``seqs``: older values are replaced, newer kept."""
        if not rkeys:
            return
        values = [encode_value(s, b"T") for s in seqs]
        if not self._usable():
            self._remember(rkeys, values, ttl_ms)
            return
        try:
            for i in range(0, len(rkeys), 500):
                self._tombstone(
                    keys=list(rkeys[i : i + 500]), args=[max(1, ttl_ms), *values[i : i + 500]]
                )
        except self._redis_error as exc:
            self._failed(exc)
            self._remember(rkeys, values, ttl_ms)

    def stats(self) -> dict[str, Any]:
        return {
            "available": self._up,
            "errors": self.errors,
            "last_error": self.last_error,
            "missed_invalidations": len(self._missed),
            "replayed_invalidations": self.replayed,
        }

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing a pool to a dead server: nothing left to do
            pass
