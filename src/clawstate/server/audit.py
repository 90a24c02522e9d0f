"""The audit log: append-only, HMAC-chained, kept in the store itself.

Every admin action (token create/revoke, stats, check, sweep, audit reads) and every
denied request becomes a record in the system namespace ``_audit``.  Record ``n`` is
stored at key ``%020d`` (so key order is chain order) and carries ``prev`` — the MAC of
record ``n-1`` — the id ``kid`` of the keyring key it is sealed under, and its own
``mac``::

    K        = HKDF-SHA256(keyring[kid], info="clawstate audit-log mac v1")
    mac(n)   = HMAC-SHA256(K, prev || canonical JSON of the record without "mac")

The key ``head`` holds ``{n, hash, kid, mac}``: the newest record's number and MAC,
sealed by ``HMAC(K, "head" n hash)``, so cutting records off the tail and pointing the
head at an earlier record needs the key.  A pruned prefix leaves ``checkpoint`` —
``{n, hash, kid, mac}`` of the last pruned record, sealed the same way — and the chain
then starts at ``n + 1``, linked to that hash.  Why a keyed MAC and not a plain hash:
with a hash anyone who can write the database can re-chain the whole log and pass
``verify``; with a MAC that needs the keyring, which lives apart from the database.
The exact tamper model is in docs/server.md ("Audit log: tamper model").

A batch of records and the new head commit in ONE transaction whose head write is
conditional on the head's version, so two server processes appending at once never
fork the chain: the loser re-reads the head and re-links its batch.

Records written before the chain was keyed (``hash = sha256(prev || record)``, no
``kid``) stay readable and are verified as they are.  The first keyed append after
them writes an ``audit.keyed`` record that links to the last old hash: from there the
old prefix is pinned by a MAC too.  Until that happens (``clawstate audit seal``, any
server start, any audited action) ``verify`` reports the chain as unsealed.

A store with no keyring and no place for one (a database URL opened without a config
file or ``keyring=``) keeps the unkeyed chain: there is no secret to key it with.  The
key id a chain is sealed under is recorded like an encrypted value's, so the store
does not open without it.

Failed authentications are not written one by one: an unauthenticated caller could
otherwise grow the log without bound.  :class:`AuditLog` counts them per client
address and writes one ``auth.failed`` record per address per interval (60 s) with the
count and the reasons, when the interval ends or the server stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ClawStateError, ConfigError, IntegrityError, VersionConflict
from ..keyring import Keyring
from ..types import Item, Page

if TYPE_CHECKING:
    from ..config import Config


class AuditNamespace(Protocol):
    """What the audit chain reads of its namespace."""

    def get(self, key: str) -> Item | None: ...

    def scan(self, *, limit: int, cursor: str | None) -> Page: ...


class AuditTxNamespace(Protocol):
    """What the audit chain writes inside one transaction."""

    def put(
        self, key: str, value: Any, *, if_version: int | None = ..., if_absent: bool = ...
    ) -> None: ...

    def delete(self, key: str, *, if_version: int | None = ...) -> None: ...


class AuditTransaction(Protocol):
    def _system_namespace(self, name: str) -> AuditTxNamespace: ...

    def commit(self) -> object: ...


class AuditStore(Protocol):
    """The part of :class:`clawstate.Store` the audit chain uses.  A protocol, not an
    import: ``Store.check`` verifies the chain through this module, so importing the
    store here would tie the two into an import loop."""

    config: Config

    def _system_namespace(self, name: str) -> AuditNamespace: ...

    def _keyring_for(self, encrypt: bool) -> Keyring | None: ...

    def transaction(self) -> AuditTransaction: ...


__all__ = [
    "AUDIT_NAMESPACE",
    "CHECKPOINT",
    "GENESIS",
    "HEAD",
    "AuditLog",
    "AuditReport",
    "PruneReport",
    "append",
    "audit_key",
    "prune",
    "read_head",
    "seal",
    "verify",
]

AUDIT_NAMESPACE = "_audit"
GENESIS = "0" * 64
HEAD = "head"
CHECKPOINT = "checkpoint"
_MAC_INFO = b"clawstate audit-log mac v1"
log = logging.getLogger("clawstate.server.audit")


def _canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _digest(prev: str, record: dict[str, Any]) -> str:
    """The unkeyed hash of records written before the chain was keyed."""
    return hashlib.sha256(prev.encode("ascii") + _canonical(record)).hexdigest()


def audit_key(keyring: Keyring, kid: str) -> bytes:
    """The audit MAC key derived from keyring key ``kid``.

    Derived (HKDF) rather than used as is, so the key that wraps data keys never
    doubles as a MAC key, and a MAC reveals nothing usable against the codec."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MAC_INFO)
    return hkdf.derive(keyring.get(kid))


def _mac(key: bytes, prev: str, record: dict[str, Any]) -> str:
    return hmac.new(key, prev.encode("ascii") + _canonical(record), hashlib.sha256).hexdigest()


def _pointer_mac(key: bytes, what: str, n: int, digest: str) -> str:
    """The seal of a ``head`` or ``checkpoint`` pointer: binds its role, number and hash."""
    msg = f"{what}\x00{n}\x00{digest}".encode("ascii", "replace")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def _pointer(key: bytes, kid: str, what: str, n: int, digest: str) -> dict[str, Any]:
    return {"n": n, "hash": digest, "kid": kid, "mac": _pointer_mac(key, what, n, digest)}


def _load_keyring(store: AuditStore, *, create: bool) -> Keyring | None:
    """The store's own keyring (never a second one): ``store._keyring_for``."""
    try:
        return store._keyring_for(create)
    except ClawStateError:
        if create:
            raise
        return None


def _writer_keyring(store: AuditStore, head: dict[str, Any] | None) -> Keyring | None:
    """The keyring to seal new records with; None when the store has no keyring and no
    place to keep one (a database URL opened without a config file or ``keyring=``):
    then records are chained by unkeyed hashes, which ``verify`` accepts only while no
    keyring exists (documented in docs/server.md as "not tamper-evident").

    A chain already sealed under key ``kid`` needs that keyring: a missing keyring is
    a ConfigError naming the key, never a fresh keyring whose records could not be
    told from forgeries (DESIGN.md: the keyring belongs to the store)."""
    kid = None if head is None else head.get("kid")
    if kid is None:
        try:
            return _load_keyring(store, create=True)
        except ConfigError:
            if getattr(store.config, "keyring", "") is None:
                if not _warned:
                    _warned.append(True)
                    log.warning(
                        "the audit log is not keyed: this store has no keyring (give it "
                        "one: [keyring] source, CLAWSTATE_KEYRING or open(keyring=...))"
                    )
                return None
            raise
    ring = _load_keyring(store, create=False)
    if ring is None or not isinstance(kid, str) or kid not in ring:
        raise ConfigError(
            "keyring",
            f"the audit log is sealed under key id {kid!r}, which the keyring "
            f"({store.config.keyring}) does not hold; restore that keyring — a new key "
            "would break the chain",
        )
    return ring


_warned: list[bool] = []


def _record_kid(store: AuditStore, kid: str) -> None:
    """Record that this store needs key ``kid`` (the store then refuses to open
    without it, as for encrypted values), where the store keeps such records."""
    record = getattr(store, "_record_key_id", None)
    if record is not None:
        record(store.config.policy_for(AUDIT_NAMESPACE).backend, kid)


def _ns(store: AuditStore) -> AuditNamespace:
    return store._system_namespace(AUDIT_NAMESPACE)


def read_head(store: AuditStore) -> tuple[int, str]:
    """``(n, hash)`` of the newest record (``(0, GENESIS)`` for an empty log): what
    the server exports to its logs and ``/metrics`` for comparison with a copy."""
    item = _ns(store).get(HEAD)
    if item is None or not isinstance(item.value, dict):
        return 0, GENESIS
    n, digest = item.value.get("n"), item.value.get("hash")
    return (n if isinstance(n, int) else 0), (digest if isinstance(digest, str) else GENESIS)


def append(
    store: AuditStore, entries: list[dict[str, Any]], *, keyring: Keyring | None = None
) -> list[int]:
    """Append ``entries`` to the chain atomically; returns their record numbers.

    On an old unkeyed chain the batch starts with an ``audit.keyed`` record that pins
    the old head hash under the MAC (see the module docstring)."""
    return _append(store, entries, keyring)[0]


def _append(
    store: AuditStore, entries: list[dict[str, Any]], keyring: Keyring | None = None
) -> tuple[list[int], tuple[int, str]]:
    """:func:`append`, also returning the new head ``(n, hash)``."""
    ns = _ns(store)
    while True:
        head = ns.get(HEAD)
        hv = head.value if head is not None and isinstance(head.value, dict) else None
        ring = keyring if keyring is not None else _writer_keyring(store, hv)
        n, prev = (0, GENESIS) if hv is None else (int(hv["n"]), str(hv["hash"]))
        batch = list(entries)
        if ring is not None and hv is not None and "mac" not in hv:
            batch.insert(
                0, {"action": "audit.keyed", "legacy": {"n": n, "hash": prev}, "ts": time.time()}
            )
        tx = store.transaction()
        txns = tx._system_namespace(AUDIT_NAMESPACE)
        numbers: list[int] = []
        if ring is None:  # no keyring anywhere: the old unkeyed hash chain
            for entry in batch:
                n += 1
                record = {k: v for k, v in entry.items() if k not in ("hash", "mac", "kid")}
                record.update(n=n, prev=prev)
                record["hash"] = prev = _digest(prev, record)
                txns.put(f"{n:020d}", record, if_absent=True)
                numbers.append(n)
            pointer: dict[str, Any] = {"n": n, "hash": prev}
        else:
            kid = ring.primary_id
            key = audit_key(ring, kid)
            _record_kid(store, kid)
            for entry in batch:
                n += 1
                record = {k: v for k, v in entry.items() if k not in ("hash", "mac")}
                record.update(n=n, prev=prev, kid=kid)
                record["mac"] = prev = _mac(key, str(record["prev"]), record)
                txns.put(f"{n:020d}", record, if_absent=True)
                numbers.append(n)
            pointer = _pointer(key, kid, HEAD, n, prev)
        if head is None:
            txns.put(HEAD, pointer, if_absent=True)
        else:
            txns.put(HEAD, pointer, if_version=head.version)
        try:
            tx.commit()
        except VersionConflict:
            continue  # another process appended first: re-link onto its head
        return numbers[len(batch) - len(entries) :], (n, prev)


def seal(store: AuditStore) -> bool:
    """Key an old unkeyed chain (append its ``audit.keyed`` record); False when there
    was nothing to do (an empty log, or one already keyed).

    On a keyed chain it checks that the keyring still holds the chain's key (a
    :class:`ConfigError` naming it otherwise), so a server finds out at start, not at
    its first audited request."""
    head = _ns(store).get(HEAD)
    if head is None or not isinstance(head.value, dict):
        return False
    if "mac" in head.value:
        _writer_keyring(store, head.value)
        return False
    if _writer_keyring(store, None) is None:
        return False  # no keyring to seal with (logged)
    append(store, [])
    return True


class AuditReport(msgspec.Struct):
    """What ``verify`` found.  ``problems`` start with the first bad record
    (``first_bad``, its number); ``seq``/``head`` are the newest record's number and
    MAC, to compare with a copy kept elsewhere (logs, metrics)."""

    ok: bool
    records: int
    head: str
    problems: list[str]
    seq: int = 0
    first_bad: int | None = None
    #: the last pruned record (the chain starts after it), None if never pruned
    checkpoint: int | None = None
    #: records from before the chain was keyed (verified by their unkeyed hashes)
    legacy_records: int = 0
    keyed: bool = False


class _Keys:
    """Audit MAC keys by kid, derived once per verification."""

    def __init__(self, ring: Keyring | None) -> None:
        self.ring = ring
        self._keys: dict[str, bytes] = {}

    def get(self, kid: Any) -> bytes | None:
        if not isinstance(kid, str) or self.ring is None or kid not in self.ring:
            return None
        key = self._keys.get(kid)
        if key is None:
            key = self._keys[kid] = audit_key(self.ring, kid)
        return key


def _pointer_ok(keys: _Keys, what: str, value: Any) -> str | None:
    """Why a head/checkpoint pointer is not authentic, or None."""
    if not isinstance(value, dict) or not isinstance(value.get("n"), int):
        return f"the {what} is not a valid pointer"
    key = keys.get(value.get("kid"))
    if key is None:
        return f"the {what} is sealed under key {value.get('kid')!r}, not in the keyring"
    expected = _pointer_mac(key, what, value["n"], str(value.get("hash")))
    if not hmac.compare_digest(str(value.get("mac")), expected):
        return f"the {what}'s MAC does not match (rewritten without the key?)"
    return None


def _scan(ns: AuditNamespace) -> Iterator[tuple[str, Any]]:
    cursor: str | None = None
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        for item in page.items:
            if item.key not in (HEAD, CHECKPOINT):
                yield item.key, item.value
        cursor = page.cursor
        if cursor is None:
            return


class _Walker:
    """Checks records one at a time, in chain order (shared by verify and prune)."""

    def __init__(self, keys: _Keys, start_n: int, prev: str) -> None:
        self.keys = keys
        self.expected_n = start_n
        self.prev = prev
        self.keyed = False
        self.legacy = 0
        self.count = 0
        self.problems: list[str] = []
        self.first_bad: int | None = None

    def _bad(self, n: int, text: str) -> None:
        if self.first_bad is None:
            self.first_bad = n
        self.problems.append(f"record {n}: {text}")

    def step(self, key: str, rec: Any) -> None:
        self.count += 1
        number = key.lstrip("0") or "0"
        n = int(number) if number.isdigit() else self.expected_n
        if not isinstance(rec, dict):
            self._bad(n, "is not an object")
            self.expected_n += 1
            return
        if rec.get("n") != self.expected_n or key != f"{self.expected_n:020d}":
            self._bad(n, f"expected record number {self.expected_n}, found {rec.get('n')}")
        if rec.get("prev") != self.prev:
            self._bad(n, "does not link to the previous record's hash")
        if "mac" in rec:
            self.keyed = True
            key_ = self.keys.get(rec.get("kid"))
            if key_ is None:
                self._bad(n, f"sealed under key {rec.get('kid')!r}, which the keyring lacks")
            elif not hmac.compare_digest(str(rec["mac"]), _mac(key_, str(rec.get("prev")), rec)):
                self._bad(n, "its MAC does not match its content")
            self.prev = str(rec["mac"])
        else:
            self.legacy += 1
            if self.keyed:
                self._bad(n, "an unkeyed record after keyed ones (rewritten without the key?)")
            if rec.get("hash") != _digest(str(rec.get("prev")), rec):
                self._bad(n, "its hash does not match its content")
            self.prev = str(rec.get("hash"))
        got = rec.get("n")
        self.expected_n = got + 1 if isinstance(got, int) else self.expected_n + 1


def verify(store: AuditStore, *, keyring: Keyring | None = None) -> AuditReport:
    """Walk the whole chain from the checkpoint (or the start) to the head: every
    record must link to the previous one and carry a valid MAC (old unkeyed records:
    a valid hash), and the head and checkpoint must be sealed with the key."""
    ns = _ns(store)
    keys = _Keys(keyring if keyring is not None else _load_keyring(store, create=False))
    problems: list[str] = []
    head_item = ns.get(HEAD)
    cp_item = ns.get(CHECKPOINT)
    start_n, prev, cp_n = 1, GENESIS, None
    if cp_item is not None:
        why = _pointer_ok(keys, CHECKPOINT, cp_item.value)
        if why is not None:
            problems.append(why)
        else:
            cp_n = int(cp_item.value["n"])
            start_n, prev = cp_n + 1, str(cp_item.value["hash"])
    walker = _Walker(keys, start_n, prev)
    for key, rec in _scan(ns):
        walker.step(key, rec)
    problems = walker.problems + problems
    if keys.ring is None and (walker.keyed or cp_item is not None):
        problems.append(f"keyed records cannot be checked: no keyring at {store.config.keyring}")
    last_n = walker.expected_n - 1
    hv = None if head_item is None else head_item.value
    if hv is None:
        if walker.count or cp_item is not None:
            problems.append("records exist but the head is missing")
    elif not isinstance(hv, dict):
        problems.append("the head is not a valid pointer")
    else:
        if "mac" in hv:
            why = _pointer_ok(keys, HEAD, hv)
            if why is not None:
                problems.append(why)
        elif walker.keyed or cp_item is not None:
            problems.append("the head is unkeyed but the chain is keyed (rewritten?)")
        if hv.get("n") != last_n:
            problems.append(f"head says record {hv.get('n')} but the chain ends at {last_n}")
        elif hv.get("hash") != walker.prev:
            problems.append("head hash does not match the last record")
        if "mac" not in hv and walker.count and not walker.keyed and keys.ring is not None:
            # Unkeyed records are what anyone could have written.  Accepted only on a
            # store that has no keyring at all (nothing to key with); with a keyring
            # the chain must be sealed.
            problems.append(
                f"the chain ({walker.legacy} records) is in the old unkeyed format, which "
                "anyone able to write the database can rewrite: run `clawstate audit seal` "
                "(or start the server) to pin it under the keyring's MAC"
            )
    return AuditReport(
        not problems,
        walker.count,
        walker.prev,
        problems,
        seq=last_n,
        first_bad=walker.first_bad,
        checkpoint=cp_n,
        legacy_records=walker.legacy,
        keyed=walker.keyed,
    )


class PruneReport(msgspec.Struct):
    """What ``prune`` removed: records up to ``checkpoint`` are gone, and the
    checkpoint (sealed) lets ``verify`` check everything after it."""

    pruned: int
    checkpoint: int | None
    remaining: int


def prune(
    store: AuditStore,
    *,
    keep_days: float | None = None,
    keep_records: int | None = None,
    now: float | None = None,
    keyring: Keyring | None = None,
) -> PruneReport:
    """Delete the oldest records: those older than ``keep_days`` and those beyond the
    newest ``keep_records`` (each limit prunes on its own; None: no limit).

    The part to be removed is verified first (a broken prefix raises
    :class:`IntegrityError` naming the record, and nothing is deleted: pruning must
    never hide tampering).  Each chunk's deletion and the new checkpoint commit in one
    transaction, conditional on the old checkpoint, so the checkpoint always names the
    last record that is gone and concurrent pruners cannot skip records."""
    ns = _ns(store)
    seal(store)
    head = ns.get(HEAD)
    if head is None:
        return PruneReport(0, None, 0)
    ring = keyring if keyring is not None else _writer_keyring(store, head.value)
    if ring is None:
        raise ConfigError(
            "keyring",
            "pruning the audit log leaves a checkpoint sealed with the keyring, and this "
            "store has none: give it one ([keyring] source, CLAWSTATE_KEYRING)",
        )
    keys = _Keys(ring)
    head_n = int(head.value["n"])
    cut = 0
    if keep_records is not None:
        cut = max(cut, head_n - keep_records)
    cutoff = None if keep_days is None else (now or time.time()) - keep_days * 86400.0
    pruned = 0
    while True:
        cp_item = ns.get(CHECKPOINT)
        start_n, prev = 1, GENESIS
        if cp_item is not None:
            why = _pointer_ok(keys, CHECKPOINT, cp_item.value)
            if why is not None:
                raise IntegrityError(f"audit log: {why}; not pruning")
            start_n, prev = int(cp_item.value["n"]) + 1, str(cp_item.value["hash"])
        walker = _Walker(keys, start_n, prev)
        chunk: list[tuple[str, int]] = []
        limit = max(1, min(500, store.config.limits.max_batch - 1))
        cursor: str | None = None
        done = False
        while len(chunk) < limit and not done:
            page = ns.scan(limit=limit, cursor=cursor)
            for item in page.items:
                if item.key in (HEAD, CHECKPOINT):
                    continue
                rec = item.value
                n = rec.get("n") if isinstance(rec, dict) else None
                ts = rec.get("ts") if isinstance(rec, dict) else None
                old_enough = isinstance(n, int) and (
                    n <= cut or (cutoff is not None and isinstance(ts, int | float) and ts < cutoff)
                )
                if not old_enough or len(chunk) >= limit:
                    done = True
                    break
                walker.step(item.key, rec)
                if walker.problems:
                    raise IntegrityError(
                        f"audit log: {walker.problems[0]}; not pruning a broken chain"
                    )
                chunk.append((item.key, item.version))
            cursor = page.cursor
            if cursor is None:
                done = True
        if not chunk:
            break
        last_n = walker.expected_n - 1
        kid = ring.primary_id
        tx = store.transaction()
        txns = tx._system_namespace(AUDIT_NAMESPACE)
        for key, version in chunk:
            txns.delete(key, if_version=version)
        pointer = _pointer(audit_key(ring, kid), kid, CHECKPOINT, last_n, walker.prev)
        pointer["pruned_at"] = time.time()
        if cp_item is None:
            txns.put(CHECKPOINT, pointer, if_absent=True)
        else:
            txns.put(CHECKPOINT, pointer, if_version=cp_item.version)
        try:
            tx.commit()
        except VersionConflict:
            continue  # another pruner moved the checkpoint: start again from it
        pruned += len(chunk)
    cp_item = ns.get(CHECKPOINT)
    cp_n = None if cp_item is None else int(cp_item.value["n"])
    return PruneReport(pruned, cp_n, head_n - (cp_n or 0))


class _Failures:
    """Failed authentications from one client address in the current interval."""

    __slots__ = ("count", "first", "last", "reasons")

    def __init__(self, now: float) -> None:
        self.count = 0
        self.first = now
        self.last = now
        self.reasons: dict[str, int] = {}


#: The label an address gets once an interval already tracks this many addresses.
OTHER_ADDRESSES = "_other"


class AuditLog:
    """Per-process writer: queues records and appends them in batches off the loop.

    Failed authentications are aggregated (:meth:`note_failure`): one ``auth.failed``
    record per client address per ``failure_interval`` seconds, at most
    ``max_addresses`` addresses an interval (the rest under ``_other``), so a flood of
    bad tokens costs a bounded number of records however fast it comes.

    After each append the new head is remembered (:attr:`head`); every
    ``head_every`` records or ``head_interval`` seconds it is written to the log as
    ``{"msg": "audit head", "audit_seq": n, "audit_head": hash}`` — a copy outside the
    database to compare ``clawstate audit verify``'s answer with.
    """

    def __init__(
        self,
        store: AuditStore,
        *,
        max_queue: int = 10_000,
        failure_interval: float = 60.0,
        max_addresses: int = 1000,
        head_every: int = 1000,
        head_interval: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[int] | None]] = (
            asyncio.Queue(max_queue)
        )
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._pending = 0
        self.written = 0
        self.failure_interval = failure_interval
        self.max_addresses = max_addresses
        self._failures: dict[str, _Failures] = {}
        self._clock = clock
        self.head_every = head_every
        self.head_interval = head_interval
        #: (n, hash) of the newest record this process wrote or read; None: not known yet
        self.head: tuple[int, str] | None = None
        self._exported_n = 0
        self._exported_at = 0.0

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run())
            self._ticker = loop.create_task(self._tick())

    async def record(self, entry: dict[str, Any], *, wait: bool = False) -> int | None:
        """Queue a record; with ``wait`` return once it is durable (its number)."""
        entry.setdefault("ts", self._clock())
        fut: asyncio.Future[int] | None = None
        if wait:
            fut = asyncio.get_running_loop().create_future()
        self._pending += 1
        await self._queue.put((entry, fut))  # blocks only when the queue is full
        self.start()
        return None if fut is None else await fut

    def note_failure(self, remote: str, reason: str) -> None:
        """Count one failed authentication from ``remote`` (written at interval end)."""
        agg = self._failures.get(remote)
        if agg is None:
            if len(self._failures) >= self.max_addresses:
                remote = OTHER_ADDRESSES
                agg = self._failures.get(remote)
            if agg is None:
                agg = self._failures[remote] = _Failures(self._clock())
        agg.count += 1
        agg.last = self._clock()
        agg.reasons[reason] = agg.reasons.get(reason, 0) + 1

    def _failure_entries(self) -> list[dict[str, Any]]:
        failures, self._failures = self._failures, {}
        return [
            {
                "action": "auth.failed",
                "status": 401,
                "remote": remote,
                "count": agg.count,
                "reasons": dict(sorted(agg.reasons.items())),
                "first_ts": agg.first,
                "last_ts": agg.last,
                "ts": agg.last,
            }
            for remote, agg in sorted(failures.items())
        ]

    async def flush_failures(self) -> None:
        """Queue the current interval's aggregated failures now."""
        for entry in self._failure_entries():
            await self.record(entry)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.failure_interval)
            try:
                await self.flush_failures()
                if self.head is not None and self._clock() - self._exported_at >= (
                    self.head_interval
                ):
                    self._export(*self.head)
            except Exception:  # pragma: no cover - keep ticking whatever happens
                log.exception("audit interval flush failed")

    def _export(self, n: int, digest: str) -> None:
        self._exported_n = n
        self._exported_at = self._clock()
        log.info("audit head", extra={"audit_seq": n, "audit_head": digest})

    def _advance(self, n: int, digest: str) -> None:
        if self.head is None or n >= self.head[0]:
            self.head = (n, digest)
        if n - self._exported_n >= self.head_every or (
            self._clock() - self._exported_at >= self.head_interval
        ):
            self._export(n, digest)

    def load_head(self) -> tuple[int, str]:
        """Read the head from the store (any process may have moved it); blocking."""
        n, digest = read_head(self._store)
        if self.head is None or n >= self.head[0]:
            self.head = (n, digest)
        return n, digest

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            entries = [entry for entry, _ in batch]
            try:
                numbers, head = await loop.run_in_executor(None, _append, self._store, entries)
            except (ClawStateError, OSError) as exc:
                self._pending -= len(batch)
                log.error("audit append failed: %s: %s", type(exc).__name__, exc)
                for _, fut in batch:
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)
                continue
            self._pending -= len(batch)
            self.written += len(entries)
            self._advance(*head)
            for (_, fut), n in zip(batch, numbers, strict=True):
                if fut is not None and not fut.done():
                    fut.set_result(n)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued record is written (graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Write the pending aggregates and queue, export the head, stop."""
        if self._failures:
            await self.flush_failures()
        await self.flush()
        if self.head is not None:
            self._export(*self.head)
        for attr in ("_ticker", "_task"):
            task = getattr(self, attr)
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
                setattr(self, attr, None)
