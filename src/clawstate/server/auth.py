"""Bearer tokens and scopes: who may do what, deny by default.

A token is ``cst_<id>_<secret>``: ``id`` (16 hex digits) names the record, ``secret``
is 32 random bytes.  The store keeps only ``sha256(secret)`` — in the system
namespace ``_tokens`` of the store itself, so every ``clawstate serve`` process over
the same store sees the same tokens and a revocation everywhere.  A leaked database
therefore leaks no usable token, and verification is one hash plus a constant-time
compare (``hmac.compare_digest``); an unknown id is compared against a dummy hash so
that timing does not tell a wrong id from a wrong secret.

Scopes (``--scope`` on ``clawstate token create``)::

    ns:<glob>:<action>       application namespaces matching the glob (fnmatch)
    events:<glob>:<action>   event streams matching the glob
    admin                    everything: stats, check, sweep, tokens, audit, all data
    metrics                  GET /metrics

``action`` is ``read``, ``write``, ``rw`` (both) or ``admin`` (both, plus any future
per-namespace administration).  ``write`` alone allows blind writes without reads.
A glob of ``*`` grants store-wide operations of that action (a store-wide watch needs
``ns:*:read``).

Verified tokens are cached per process for a few seconds (``cache_ttl``): a request
costs no store read, and a revocation made through another process takes effect
within that time (at once in the revoking process).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
import threading
import time
from typing import Any, Literal

import msgspec

from ..config import parse_duration
from ..errors import ClawStateError, InvalidRequest
from ..store import Namespace, Store

__all__ = [
    "TOKENS_NAMESPACE",
    "Principal",
    "Scope",
    "TokenInfo",
    "TokenRecord",
    "TokenStore",
    "hash_secret",
    "parse_scope",
    "parse_ttl",
]

TOKENS_NAMESPACE = "_tokens"
TOKEN_PREFIX = "cst_"
_TOKEN_RE = re.compile(r"^cst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"clawstate-no-such-token").hexdigest()

_ACTIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"write"}),
    "rw": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}
#: What a scope can name: namespaces, event streams, lock names, timer names and
#: state machines (``machines:order:write`` fires events of the machine ``order``).
SCOPE_KINDS: tuple[str, ...] = ("ns", "events", "locks", "timers", "machines")
_GLOB_RE = re.compile(r"^[A-Za-z0-9_.:*?\[\]!-]{1,200}$")


class Scope(msgspec.Struct, frozen=True):
    """One parsed grant."""

    kind: str
    glob: str = "*"
    actions: frozenset[str] = frozenset()

    def __str__(self) -> str:
        if self.kind in ("admin", "metrics"):
            return self.kind
        names = sorted(self.actions)
        action = "admin" if "admin" in names else "rw" if len(names) == 2 else names[0]
        return f"{self.kind}:{self.glob}:{action}"

    def matches(self, kind: str, name: str, action: str) -> bool:
        if self.kind == "admin":
            return True
        return (
            self.kind == kind
            and action in self.actions
            and (self.glob == "*" or fnmatch.fnmatchcase(name, self.glob))
        )


def parse_scope(text: Any) -> Scope:
    """``ns:carts:rw`` → Scope; anything else is ``InvalidRequest("scope")``."""
    if not isinstance(text, str):
        raise InvalidRequest("scope", f"must be a string, got {type(text).__name__}")
    if text in ("admin", "metrics"):
        return Scope(text)
    parts = text.split(":")
    if len(parts) < 3:
        raise InvalidRequest(
            "scope",
            f"{text!r} is not a scope; use ns:<glob>:<read|write|rw|admin>, "
            "events:<glob>:<action>, locks:<glob>:<action>, timers:<glob>:<action>, "
            "machines:<glob>:<action>, admin or metrics",
        )
    kind, action = parts[0], parts[-1]
    glob = ":".join(parts[1:-1])  # namespace names may contain ':'
    if kind not in SCOPE_KINDS:
        raise InvalidRequest(
            "scope", f"{text!r}: kind must be one of {', '.join(SCOPE_KINDS)}, got {kind!r}"
        )
    if action not in _ACTIONS:
        raise InvalidRequest(
            "scope", f"{text!r}: action must be read, write, rw or admin, got {action!r}"
        )
    if not _GLOB_RE.match(glob):
        raise InvalidRequest("scope", f"{text!r}: {glob!r} is not a namespace/stream glob")
    return Scope(kind, glob, _ACTIONS[action])


def parse_ttl(ttl: Any) -> float | None:
    """A token lifetime: ``30d``, ``12h``, seconds; ``None``/``0``/``never`` for none."""
    if ttl is None or ttl == "never":
        return None
    try:
        seconds = parse_duration(ttl, field="ttl")
    except ClawStateError as exc:
        raise InvalidRequest("ttl", str(exc)) from None
    return seconds or None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class TokenRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What ``_tokens`` holds for one token: never the secret, only its hash."""

    id: str
    hash: str
    scopes: list[str]
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    note: str = ""
    #: requests per second for this token; None: the server's default
    rate: float | None = None


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A token as listed to admins (no hash)."""

    id: str
    scopes: list[str]
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    note: str = ""
    rate: float | None = None


class Principal:
    """A verified token: its id and grants.  Built once per cached token."""

    __slots__ = ("admin", "id", "rate", "scopes")

    def __init__(self, token_id: str, scopes: list[Scope], rate: float | None) -> None:
        self.id = token_id
        self.scopes = scopes
        self.rate = rate
        self.admin = any(s.kind == "admin" for s in scopes)

    def allows(self, kind: str, name: str, action: str) -> bool:
        """May this token do ``action`` on the namespace/stream ``name``?"""
        if self.admin:
            return True
        return any(s.matches(kind, name, action) for s in self.scopes)

    def allows_all(self, kind: str, action: str) -> bool:
        """May it do ``action`` on every name of ``kind`` (store-wide operations)?"""
        if self.admin:
            return True
        return any(s.kind == kind and s.glob == "*" and action in s.actions for s in self.scopes)

    def has(self, kind: str) -> bool:
        return self.admin or any(s.kind == kind for s in self.scopes)


#: Why authentication failed (audited, never answered: every 401 body is the same).
Failure = Literal["missing", "malformed", "unknown", "invalid", "expired", "revoked"]


class TokenStore:
    """Tokens in the store's ``_tokens`` namespace, with a short verification cache."""

    def __init__(self, store: Store, *, cache_ttl: float = 2.0, clock: Any = time.time) -> None:
        self._store = store
        self._ns: Namespace = store._system_namespace(TOKENS_NAMESPACE)
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, TokenRecord | None]] = {}
        self._principals: dict[str, Principal] = {}
        #: exact Authorization header -> (principal, cached until, token expiry)
        self._hot: dict[str, tuple[Principal, float, float | None]] = {}
        self._lock = threading.Lock()

    # -- administration ----------------------------------------------------------------

    def create(
        self,
        scopes: list[str],
        *,
        ttl: Any = None,
        note: str = "",
        rate: float | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new token: returns the plaintext (shown once) and the stored record."""
        if not isinstance(scopes, list) or not scopes:
            raise InvalidRequest("scopes", "give at least one scope, e.g. ns:carts:rw")
        parsed = [str(parse_scope(s)) for s in scopes]
        seconds = parse_ttl(ttl)
        if not isinstance(note, str) or len(note) > 200:
            raise InvalidRequest("note", "must be a string of at most 200 characters")
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0
        ):
            raise InvalidRequest(
                "rate", f"must be a number of requests per second > 0, got {rate!r}"
            )
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        record = TokenRecord(
            id=token_id,
            hash=hash_secret(secret),
            scopes=parsed,
            created_at=now,
            expires_at=None if seconds is None else now + seconds,
            note=note,
            rate=None if rate is None else float(rate),
        )
        self._ns.put(token_id, msgspec.to_builtins(record), if_absent=True)
        return f"{TOKEN_PREFIX}{token_id}_{secret}", record

    def list(self) -> list[TokenInfo]:
        out: list[TokenInfo] = []
        cursor: str | None = None
        while True:
            page = self._ns.scan(limit=1000, cursor=cursor)
            for item in page.items:
                rec = msgspec.convert(item.value, TokenRecord)
                out.append(
                    TokenInfo(
                        id=rec.id,
                        scopes=rec.scopes,
                        created_at=rec.created_at,
                        expires_at=rec.expires_at,
                        revoked_at=rec.revoked_at,
                        note=rec.note,
                        rate=rec.rate,
                    )
                )
            cursor = page.cursor
            if cursor is None:
                return out

    def revoke(self, token_id: str) -> bool:
        """Mark the token revoked (kept for the audit trail); False if unknown."""
        if not isinstance(token_id, str) or not re.fullmatch(r"[0-9a-f]{16}", token_id):
            return False
        while True:
            item = self._ns.get(token_id)
            if item is None:
                return False
            rec = msgspec.convert(item.value, TokenRecord)
            if rec.revoked_at is not None:
                return True
            revoked = msgspec.structs.replace(rec, revoked_at=self._clock())
            try:
                self._ns.put(token_id, msgspec.to_builtins(revoked), if_version=item.version)
            except ClawStateError:
                continue  # raced with another writer: read again
            with self._lock:
                self._cache.pop(token_id, None)
                self._principals.pop(token_id, None)
                for header, hot in list(self._hot.items()):
                    if hot[0].id == token_id:
                        self._hot.pop(header, None)
            return True

    def count(self) -> int:
        return self._ns.count()

    # -- verification --------------------------------------------------------------------

    def _record(self, token_id: str) -> TokenRecord | None:
        now = time.monotonic()
        hit = self._cache.get(token_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        item = self._ns.get(token_id)
        rec = None if item is None else msgspec.convert(item.value, TokenRecord)
        with self._lock:
            self._cache[token_id] = (now + self._cache_ttl, rec)
            if len(self._cache) > 100_000:  # unknown ids must not grow it without bound
                self._cache.clear()
                self._principals.clear()
        return rec

    def verify_cached(self, authorization: str | None) -> Principal | Failure | None:
        """Like :meth:`verify` when the answer needs no store read, else None (the
        caller then runs :meth:`verify` off the event loop).

        A header verified in the last ``cache_ttl`` seconds is answered from memory,
        without the regex and the hash (expiry is still checked)."""
        if authorization:
            hot = self._hot.get(authorization)
            if hot is not None:
                principal, until, expires = hot
                now = time.monotonic()
                if now < until and (expires is None or expires > self._clock()):
                    return principal
                self._hot.pop(authorization, None)
            m = _TOKEN_RE.match(authorization.partition(" ")[2].strip())
            if m is not None:
                hit = self._cache.get(m.group(1))
                if hit is None or hit[0] <= time.monotonic():
                    return None
        return self.verify(authorization)

    def verify(self, authorization: str | None) -> Principal | Failure:
        """The principal of an ``Authorization: Bearer …`` header, or why not."""
        if not authorization:
            return "missing"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return "malformed"
        m = _TOKEN_RE.match(token.strip())
        if m is None:
            return "malformed"
        token_id, secret = m.group(1), m.group(2)
        rec = self._record(token_id)
        digest = hash_secret(secret)
        if rec is None:
            hmac.compare_digest(digest, _DUMMY_HASH)
            return "unknown"
        if not hmac.compare_digest(digest, rec.hash):
            return "invalid"
        if rec.revoked_at is not None:
            return "revoked"
        if rec.expires_at is not None and rec.expires_at <= self._clock():
            return "expired"
        principal = self._principals.get(token_id)
        if principal is None:
            principal = Principal(token_id, [parse_scope(s) for s in rec.scopes], rec.rate)
            self._principals[token_id] = principal
        if len(self._hot) > 10_000:
            self._hot.clear()
        self._hot[authorization] = (principal, time.monotonic() + self._cache_ttl, rec.expires_at)
        return principal
