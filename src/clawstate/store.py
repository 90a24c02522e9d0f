"""The facade: Store, the handle applications open, and the API it re-exports.

The facade owns the policy layer: key and TTL checks, the codec (serialize ·
compress · encrypt), idempotency fingerprints, cursors.  It turns each call into
plain records for the :class:`~clawstate.backends.base.Backend`, which only
stores bytes atomically.  :class:`AsyncStore` (in ``aio.py``) runs these same
methods on a thread pool; it never re-implements them.

:class:`Store` lives here; its parts live beside it, one job each —
:class:`Namespace` in :mod:`clawstate._namespace`, :class:`Transaction` and
:class:`TxNamespace` in :mod:`clawstate._transaction`, :class:`Watch` in
:mod:`clawstate._watch` — and this module re-exports them, so
``from clawstate.store import Namespace`` keeps working.  Those modules name the
store only through Protocols (``NamespaceHost``, ``TransactionHost``), never by
importing this module.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ._namespace import Clock, Namespace, _etag
from ._transaction import Transaction, TxNamespace
from ._validate import check_namespace_name
from ._watch import Watch
from .backends.base import OP_REWRAP, Backend, Outcome, Progress, Write, WriteUnit
from .cache import StoreCache
from .codec import sealed_key_id
from .config import DEFAULT_BACKEND, Config, validate_namespace_options
from .errors import ClawStateError, ConfigError, IntegrityError, InvalidRequest
from .keyring import Keyring
from .types import CheckReport

if TYPE_CHECKING:
    from .events.store import EventStore
    from .locks import LockContext, Locks
    from .machines.machine import Machine
    from .timers import Timers

__all__ = ["Clock", "Namespace", "Store", "Transaction", "TxNamespace", "Watch"]

#: Guards the lazy creation of ``Store.events``.
_EVENTS_LOCK = threading.Lock()


class Store:
    """One handle on a clawstate store.  Build it with :func:`clawstate.open`.

    Thread-safe: share one Store between threads; each thread gets its own
    backend connection, and concurrent writes are group-committed.
    """

    def __init__(
        self,
        backends: Backend | Mapping[str, Backend],
        config: Config,
        *,
        clock: Clock | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        if isinstance(backends, Mapping):
            self._backends = dict(backends)
        else:
            self._backends = {DEFAULT_BACKEND: backends}
        self._backend = self._backends[DEFAULT_BACKEND]
        self.config = config
        self._clock: Clock = clock or time.time
        self._timers: Timers | None = None
        self._locks: Locks | None = None
        self._machines: dict[str, Machine] = {}
        self._keyring = keyring
        self._keyring_lock = threading.Lock()
        #: per backend: the key ids recorded as sealing its values (see _open_keyring)
        self._kids: dict[str, set[str]] = {}
        self._kids_lock = threading.Lock()
        #: False when a backend's record could not be read (a damaged store): then no
        #: keyring is ever created for it, since it may hold encrypted values
        self._kids_known = True
        try:
            self._open_keyring()
        except BaseException:
            for backend in self._backends.values():
                backend.close()
            raise
        # Only an accepted open starts the backends' own background writes.
        for backend in self._backends.values():
            backend.start_background()
        self._namespaces: dict[str, Namespace] = {}
        #: the system namespaces built so far, by (name, built-in indexes)
        self._system_namespaces: dict[tuple[str, tuple[str, ...]], Namespace] = {}
        #: (backend, namespace, index paths) already ensured (see _ensure_indexes)
        self._indexed: set[tuple[str, str, tuple[str, ...]]] = set()
        #: every namespace's cache, the change-log tailers, write-back (docs/cache.md)
        self._cache = StoreCache(clock=self._clock, etag=_etag, urls=config.backend_urls())
        self._event_store: EventStore | None = None
        self._closed = False
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        if config.sweep_interval > 0 and clock is None:
            self._sweeper = threading.Thread(
                target=self._sweep_loop, name="clawstate-sweep", daemon=True
            )
            self._sweeper.start()

    @property
    def backend(self) -> Backend:
        """The default backend (``store.url``)."""
        return self._backend

    @property
    def backends(self) -> dict[str, Backend]:
        """Every backend by name; ``default`` is ``store.url``."""
        return dict(self._backends)

    def _backend_named(self, name: str, namespace: str) -> Backend:
        if type(name) is not str:  # an unhashable name would escape as TypeError
            raise InvalidRequest("backend", f"must be a string, got {type(name).__name__}")
        backend = self._backends.get(name)
        if backend is None:
            raise InvalidRequest(
                f"namespaces.{namespace}.backend",
                f"names no backend: {name!r} (defined: {', '.join(sorted(self._backends))})",
            )
        return backend

    def __repr__(self) -> str:
        names = ", ".join(f"{k}={v.name}" for k, v in self._backends.items())
        return f"<Store {names}>"

    # -- namespaces ------------------------------------------------------------------

    def namespace(self, name: str, /, **options: Any) -> Namespace:
        """The namespace ``name``, with its policy from the config (and ``options``)."""
        if not options and type(name) is str:  # an unhashable name must reach the check
            ns = self._namespaces.get(name)
            if ns is not None:
                return ns
        check_namespace_name(name, self.config.limits.max_namespace_len)
        policy = self.config.policy_for(name)
        if options:
            policy = validate_namespace_options(
                name, options, policy, self.config.limits, error=_option_error
            )
        ns = Namespace(self, name, policy)
        if policy.indexes and (ns.backend_name, name, tuple(policy.indexes)) not in self._indexed:
            self._ensure_indexes(ns)
        if not options:
            self._namespaces[name] = ns
        return ns

    def _ensure_indexes(self, ns: Namespace, progress: Progress | None = None) -> list[str]:
        """Ask the namespace's backend for the indexes its resolved policy lists
        (``indexes`` of ``[namespaces.<name>]`` or ``[namespaces."*"]``), once per
        store and namespace: the facade owns policy, the backend only builds."""
        wanted = (ns.backend_name, ns.name, tuple(ns.policy.indexes))
        names = ns._backend.ensure_index(ns.name, list(wanted[2]), progress)
        self._indexed.add(wanted)
        return names

    def build_indexes(self, namespace: str, *, progress: Progress | None = None) -> list[str]:
        """Build the indexes ``namespace``'s policy declares, backfilling what the
        namespace already holds, and return their names (``clawstate index``).

        Opening a namespace builds them too, silently; this is the way to build a large
        namespace's indexes ahead of the first request, watching ``progress(done,
        total)``.  Idempotent: indexes already complete cost one look-up each."""
        check_namespace_name(namespace, self.config.limits.max_namespace_len)
        ns = Namespace(self, namespace, self.config.policy_for(namespace))
        return self._ensure_indexes(ns, progress) if ns.policy.indexes else []

    def _system_namespace(self, name: str, *, indexes: tuple[str, ...] = ()) -> Namespace:
        """A ``_``-prefixed namespace reserved for clawstate's own records (the
        server's ``_tokens`` and ``_audit``, the timers, locks and machines).
        :meth:`namespace` refuses these names to applications; system code reaches them
        here.  Not cached in ``_namespaces``, so the reserved names never leak into
        ``namespace()``'s fast path; kept in their own cache.

        ``indexes``: paths the owning module queries by (the timers' ``due``, a
        machine's ``state``), declared on top of whatever the config's policy for the
        name lists and built once per store, as a configured index would be."""
        if type(name) is str and type(indexes) is tuple:
            cached = self._system_namespaces.get((name, indexes))
            if cached is not None:
                return cached
        if not (isinstance(name, str) and name.startswith("_")):
            raise InvalidRequest("namespace", f"system namespaces start with '_', got {name!r}")
        check_namespace_name(name, self.config.limits.max_namespace_len, system=True)
        policy = self.config.policy_for(name)
        if indexes:
            wanted = (*policy.indexes, *(p for p in indexes if p not in policy.indexes))
            policy = msgspec.structs.replace(policy, indexes=wanted)
        ns = Namespace(self, name, policy)
        if policy.indexes and (ns.backend_name, name, tuple(policy.indexes)) not in self._indexed:
            self._ensure_indexes(ns)
        # Kept: a transaction's timer or machine write reaches its system namespace per
        # call, and building a Namespace (policy, codec, cache) each time halved the
        # rate of machine transitions that arm timeouts.
        self._system_namespaces[(name, indexes)] = ns
        return ns

    def _any_namespace(self, name: str) -> Namespace:
        """An application namespace or a system one (maintenance walks both)."""
        return self._system_namespace(name) if name.startswith("_") else self.namespace(name)

    def machine(self, name: str, definition: Any = None) -> Machine:
        """The state machine ``name`` (see :mod:`clawstate.machines`): ``definition`` (a
        dict, TOML text or a ``StateMachine`` subclass) is checked and stored with a
        version; None loads the stored one.  One handle per name, cached."""
        from .machines.machine import open_machine

        with _EVENTS_LOCK:
            cached = self._machines.get(name) if type(name) is str else None
        if cached is not None and (
            definition is None or cached._definition.fingerprint == _fingerprint_of(definition)
        ):
            return cached
        handle = open_machine(self, name, definition)
        with _EVENTS_LOCK:
            self._machines[name] = handle
        return handle

    @property
    def locks(self) -> Locks:
        """Leases with fencing tokens (see :mod:`clawstate.locks`): acquire, renew,
        release, get."""
        locks = self._locks
        if locks is None:
            from .locks import Locks

            with _EVENTS_LOCK:
                locks = self._locks
                if locks is None:
                    locks = self._locks = Locks(self)
        return locks

    def lock(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = None,
        renew: bool = False,
        owner: str | None = None,
    ) -> LockContext:
        """``with store.lock(name, ttl=30, wait=None) as lease:`` — hold the lock
        ``name`` for the block (see :class:`clawstate.locks.LockContext`); pass
        ``fence=lease`` to the block's writes so the storage refuses them once a newer
        lease exists.  ``wait=None`` waits for ever, ``renew=True`` renews in the
        background."""
        from .locks import LockContext

        return LockContext(self.locks, name, ttl, wait, renew, owner)

    @property
    def timers(self) -> Timers:
        """Durable timers (see :mod:`clawstate.timers`), fired by ``clawstate worker``."""
        timers = self._timers
        if timers is None:
            from .timers import Timers

            timers = self._timers = Timers(self)
        return timers

    @property
    def events(self) -> EventStore:
        """The event store, on the default backend (see :class:`clawstate.events.EventStore`).

        Raises :class:`InvalidRequest` (field ``events``) when that backend keeps no
        events (Redis)."""
        events = self._event_store
        if events is None:
            from .events.store import EventStore

            with _EVENTS_LOCK:  # one EventStore per Store: upcasters registered on it stay
                events = self._event_store
                if events is None:
                    events = self._event_store = EventStore(self)
        return events

    def namespaces(self) -> list[str]:
        """Names of the namespaces that hold or held data, on every backend."""
        self._settle()
        return sorted({ns for b in self._backends.values() for ns in b.namespaces()})

    def transaction(self, *, idempotency_key: str | None = None) -> Transaction:
        """A transaction across namespaces of this store (see :class:`Transaction`)."""
        return Transaction(self, idempotency_key)

    def watch(
        self,
        from_seq: int | None = 0,
        *,
        namespace: str | None = None,
        prefix: str = "",
        timeout: float | None = None,
        backend: str | None = None,
    ) -> Watch:
        """Changes after ``from_seq`` in one backend's change log, or one namespace's.

        Sequence numbers belong to a backend: a store routing namespaces to several
        backends watches one at a time (``backend=`` or ``namespace=``).
        """
        if namespace is not None:
            check_namespace_name(namespace, self.config.limits.max_namespace_len, system=True)
            if backend is None and not namespace.startswith("_"):
                backend = self.config.policy_for(namespace).backend
        self._settle(backend)
        return Watch(
            self._watched(backend),
            from_seq,
            namespace=namespace,
            prefix=prefix,
            timeout=timeout,
            settle=self._settler(backend),
        )

    def _watched(self, backend: str | None) -> Backend:
        if backend is not None:
            return self._backend_named(backend, "*")
        if len(self._backends) > 1:
            raise InvalidRequest(
                "backend",
                "this store routes namespaces to several backends "
                f"({', '.join(sorted(self._backends))}), each with its own change log; "
                "watch one with backend= or namespace=",
            )
        return self._backend

    @property
    def last_seq(self) -> int:
        """The newest change-log sequence number of the default backend."""
        self._settle(DEFAULT_BACKEND)
        return self._backend.last_seq()

    # -- cache -----------------------------------------------------------------------

    def flush(self) -> None:
        """Make every write-back write acknowledged so far durable now (docs/cache.md).

        Write-back namespaces acknowledge plain puts and deletes before they are
        durable and flush them within ``cache_flush_delay``; this waits for that flush.
        Raises :class:`~clawstate.errors.BackendUnavailable` if the backend refuses.
        """
        self._cache.settle()

    def _settle(self, backend: str | None = None) -> None:
        """Flush pending write-back writes before a read that goes past the cache, so
        this process sees its own writes; a no-op without write-back namespaces."""
        self._cache.settle(backend)

    def _settler(self, backend: str | None) -> Callable[[], None]:
        """What a Watch calls before each read of the log (a no-op without write-back)."""
        return lambda: self._cache.settle(backend)

    def _cache_committed(self, writes: list[Write], outcomes: list[Outcome]) -> None:
        """Apply committed transaction writes to their namespaces' caches."""
        by_ns: dict[str, tuple[list[Write], list[Outcome]]] = {}
        for w, o in zip(writes, outcomes, strict=True):
            group = by_ns.setdefault(w.namespace, ([], []))
            group[0].append(w)
            group[1].append(o)
        for name, (ns_writes, ns_outcomes) in by_ns.items():
            if not name.startswith("_"):  # clawstate's own namespaces are never cached
                cache = self.namespace(name)._cache
                if cache is not None:
                    cache.committed(ns_writes, ns_outcomes)

    # -- keyring ---------------------------------------------------------------------

    # The keyring belongs to the store it encrypts (DESIGN.md, docs/configuration.md):
    # each backend records the key ids its values are sealed under, before the first
    # value sealed under a new one is written; a store whose keyring lacks one of them
    # does not open, and a new keyring is only ever made for a store that records none.

    def _open_keyring(self) -> None:
        """Refuse to open a store whose keyring lacks a key its values need.

        Writes nothing when it refuses.  A backend whose record was never completed
        (written by a clawstate that did not record key ids) is surveyed once, and its
        record written only after the check passed."""
        surveyed: dict[str, set[str]] = {}
        for bname, backend in self._backends.items():
            try:
                kids = backend.key_ids()
                if kids is None:
                    kids = surveyed[bname] = _survey_key_ids(backend)
            except IntegrityError:
                # Damaged storage (`clawstate check` says what): reads still work, but
                # the store may hold encrypted values, so it never gets a new keyring.
                self._kids_known = False
                continue
            self._kids[bname] = kids
        needed = set().union(*self._kids.values())
        if needed:
            ring = self._keyring
            if ring is None:
                ring = self._keyring = self._required_keyring(needed)
            missing = needed - set(ring.ids())
            if missing:
                raise self._missing_keys(missing, f"it holds only {_ids(ring.ids())}")
        for bname, kids in surveyed.items():
            self._backends[bname].record_key_ids(kids)

    def _keyring_where(self) -> str:
        """Where this store looks for its keyring, for error messages."""
        if self._keyring is not None:
            return self._keyring.source or "the Keyring passed to open()"
        source = self.config.keyring
        if source is None:
            return "nowhere: no keyring source is configured"
        if source.startswith("env:"):
            return f"environment variable {source[4:]}"
        return source[5:] if source.startswith("file:") else source

    def _missing_keys(self, kids: Iterable[str], why: str) -> ConfigError:
        return ConfigError(
            "keyring.source",
            f"this store holds values sealed under key id(s) {_ids(kids)}, which its keyring "
            f"must hold; looked in {self._keyring_where()}: {why}. Restore that keyring (it "
            "is the only copy of those keys) or point [keyring] source, CLAWSTATE_KEYRING or "
            "open(keyring=...) at it; clawstate never makes a new keyring for a store that "
            "holds encrypted values",
        )

    def _required_keyring(self, needed: set[str]) -> Keyring:
        """The configured keyring, which must exist (the store holds encrypted values)."""
        source = self.config.keyring
        if source is None:
            raise self._missing_keys(needed, self._no_place())
        try:
            return Keyring.from_source(source, create=False)
        except ConfigError as exc:
            raise self._missing_keys(needed, str(exc).split(": ", 1)[-1]) from None

    def _no_place(self) -> str:
        scheme = self.config.url.split(":", 1)[0]
        return (
            f"a {scheme}:// store opened without a config file has no directory to keep "
            "its keyring beside, so it must be given one ([keyring] source in "
            "clawstate.toml, CLAWSTATE_KEYRING, or open(keyring=...))"
        )

    def _load_keyring(self, *, create: bool) -> Keyring | None:
        """The configured keyring, or None when it is absent and ``create`` is false.

        With ``create``, a missing keyring is made (beside the store) only if no
        backend records a key id: re-read here, since another process may have
        sealed values since this store opened."""
        source = self.config.keyring
        if source is None:
            if not create:
                return None
            if all(b.name == "memory" for b in self._backends.values()):
                return Keyring.generate()  # memory only: keys that last as long as the values
            raise ConfigError("keyring.source", f"cannot encrypt: {self._no_place()}")
        if create and source.startswith("file:") and not os.path.exists(source[5:]):
            self._refuse_new_keyring()
            return Keyring.from_source(source, create=True)
        try:
            return Keyring.from_source(source, create=False)
        except ClawStateError:
            if create:
                raise
            return None

    def _refuse_new_keyring(self) -> None:
        """ConfigError when any backend records (or may hold) sealed values."""
        if not self._kids_known:
            raise ConfigError(
                "keyring.source",
                f"the keyring is missing (looked in {self._keyring_where()}) and the store's "
                "record of the key ids its values need could not be read (damaged "
                "storage: run `clawstate check`), so no new keyring is made for it",
            )
        recorded: set[str] = set()
        for backend in self._backends.values():
            recorded |= backend.key_ids() or set()
        if recorded:
            raise self._missing_keys(recorded, "the keyring is missing")

    def _sealer(self, backend: str) -> Callable[[str], None]:
        """The codec's ``on_seal`` for namespaces on ``backend``: records a key id in
        that backend, durably, before the first value sealed under it is written."""

        def sealing(kid: str) -> None:
            kids = self._kids.get(backend)
            if kids is not None and kid in kids:
                return  # the hot path: one set lookup
            self._record_key_id(backend, kid)

        return sealing

    def _record_key_id(self, backend: str, kid: str) -> None:
        """Record that values (or anything else keyed from the keyring) on ``backend``
        now need key ``kid``; from then on the store does not open without it."""
        with self._kids_lock:
            kids = self._kids.get(backend)
            if kids is not None and kid in kids:
                return
            self._backends[backend].record_key_ids([kid])
            self._kids[backend] = {*(kids or ()), kid}

    def _keyring_for(self, encrypt: bool) -> Keyring | None:
        """The keyring, loaded lazily.  ``encrypt``: a namespace seals values, so the
        keyring is needed — and made, beside the store, if this store has none and
        records no key ids (see :meth:`_load_keyring`)."""
        with self._keyring_lock:
            if self._keyring is None:
                self._keyring = self._load_keyring(create=encrypt)
            return self._keyring

    def _reload_keyring(self) -> bool:
        with self._keyring_lock:
            if self.config.keyring is None:
                return False
            try:
                fresh = Keyring.from_source(self.config.keyring, create=False)
            except ClawStateError:
                return False
            if self._keyring is not None and fresh.ids() == self._keyring.ids():
                return False
            self._keyring = fresh
            self._namespaces.clear()
            self._system_namespaces.clear()
            return True

    def rotate_keys(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Make a new key-encryption key primary and re-wrap every encrypted value under it.

        Only the small wrapped data key in each value's header changes; payloads
        are not re-encrypted, and versions and the change log are untouched.
        ``progress(done, total)`` is called as items are processed.
        """
        self._settle()
        keyring = self._keyring_for(True)
        assert keyring is not None
        kid = keyring.rotate()
        # Record the new key id on every backend holding sealed values before any is
        # re-wrapped under it (the codec's on_seal records it too, per namespace).
        for bname in self._backends:
            if self._kids.get(bname):
                self._record_key_id(bname, kid)
        self._namespaces.clear()
        self._system_namespaces.clear()
        names = [(b, ns) for b in self._backends.values() for ns in b.namespaces()]
        total = sum(b.count(ns, 0.0) for b, ns in names)
        done = rewrapped = 0
        for backend, name in names:
            codec = self._any_namespace(name)._codec
            pending: list[Write] = []
            for st in backend.iter_items(name):
                data = codec.rewrap(name, st.key, st.value)
                if data is not None:
                    pending.append(
                        Write(name, st.key, OP_REWRAP, data, if_version=st.version, seq=st.seq)
                    )
                done += 1
                if len(pending) >= 256:
                    rewrapped += self._rewrap(backend, pending)
                    pending = []
                if progress is not None and done % 256 == 0:
                    progress(done, total)
            if pending:
                rewrapped += self._rewrap(backend, pending)
        if progress is not None:
            progress(done, max(total, done))
        return {"primary": kid, "items": done, "rewrapped": rewrapped}

    def _rewrap(self, backend: Backend, writes: list[Write]) -> int:
        outcomes = backend.write(WriteUnit(writes, self._clock()))
        return sum(1 for o in outcomes if o.applied)

    # -- maintenance -----------------------------------------------------------------

    def sweep(self) -> dict[str, int]:
        """Purge expired items, forgotten idempotency keys and old change-log rows
        on every backend; return the totals."""
        self._settle()
        now = self._clock()
        totals: dict[str, int] = {}
        for backend in self._backends.values():
            result = backend.sweep(now, now - self.config.changelog_retention)
            for key, value in msgspec.structs.asdict(result).items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.config.sweep_interval):
            try:
                self.sweep()
            except ClawStateError:
                pass  # the next round retries; the sweep is housekeeping only

    def stats(self) -> dict[str, Any]:
        """Every namespace with its backend, item count, bytes and policy; every backend's
        own statistics (engine, durability, change log, group commit…); under
        ``"cache"`` the caches' hit ratios per tier and namespace, evictions, bytes."""
        self._settle()
        namespaces: dict[str, Any] = {}
        backends: dict[str, Any] = {}
        for bname, backend in self._backends.items():
            stats = backend.stats()
            for name, entry in stats.pop("namespaces", {}).items():
                policy = self.config.policy_for(name)
                namespaces[name] = {
                    "backend": bname,
                    **entry,
                    "policy": {
                        "serializer": policy.serializer,
                        "compress_above": policy.compress_above,
                        "encrypt": policy.encrypt,
                        "default_ttl": policy.default_ttl,
                    },
                }
            backends[bname] = stats
        out = {"namespaces": dict(sorted(namespaces.items())), "backends": backends}
        out["cache"] = self._cache.stats()
        if getattr(self._backend.capabilities, "events", False):
            out["events"] = self.events.stats()
        if "_timers" in namespaces:
            # pending / overdue / oldest overdue: two index reads (clawstate.timers)
            out["timers"] = self.timers.stats()
        return out

    def check(
        self, *, deep: bool = False, progress: Callable[[int, int | None], None] | None = None
    ) -> CheckReport:
        """Verify the store's integrity: each backend's own check (items against the
        change log and back), every stored value's header (and with ``deep``, a full
        decode: decryption, decompression), and the server's audit chain when there is
        one (:func:`clawstate.server.audit.verify`, which sees the store only through its
        own ``AuditStore`` protocol, so this import makes no import loop).

        Damaged storage is a finding, not an exception: a part that cannot be read
        (an :class:`IntegrityError` from the backend) is reported and the rest is still
        checked.  Only an unreachable backend raises (:class:`BackendUnavailable`).

        ``progress(done, total)`` is called as values are checked (``total``: the
        namespaces' item counts, None if unknown), for ``clawstate check``'s bar."""
        self._settle()
        total: int | None = None
        if progress is not None:
            try:
                total = sum(int(e.get("items", 0)) for e in self.stats()["namespaces"].values())
            except ClawStateError:
                total = None
        problems: list[str] = []
        checked: dict[str, int] = {}
        values = 0
        every_name: set[str] = set()
        for bname, backend in self._backends.items():
            prefix = "" if len(self._backends) == 1 else f"[{bname}] "
            try:
                found, counts = backend.check()
                names = backend.namespaces()
            except IntegrityError as exc:
                problems.append(f"{prefix}{exc}")
                continue
            problems.extend(prefix + p for p in found)
            for key, count in counts.items():
                checked[key] = checked.get(key, 0) + count
            for name in names:
                codec = self._any_namespace(name)._codec
                try:
                    for st in backend.iter_items(name):
                        values += 1
                        if progress is not None and values % 256 == 0:
                            progress(values, total)
                        try:
                            if deep:
                                codec.decode(name, st.key, st.value)
                            else:
                                codec.describe(st.value)
                        except ClawStateError as exc:
                            problems.append(f"{prefix}{name}/{st.key}: {exc}")
                except IntegrityError as exc:
                    problems.append(f"{prefix}{name}: {exc}")
            every_name.update(names)
        checked["values"] = values
        if progress is not None:
            progress(values, values)
        problems += self._check_audit(every_name, checked)
        return CheckReport(problems, checked)

    def _check_audit(self, names: set[str], checked: dict[str, int]) -> list[str]:
        """The audit chain, when the store has one, verified by the audit module itself
        (one verifier: its link, hash and head rules live there, whatever they grow into)."""
        from .server.audit import AUDIT_NAMESPACE, verify

        if AUDIT_NAMESPACE not in names:
            return []
        try:
            report = verify(self)
        except ClawStateError as exc:
            return [f"audit log: could not be verified: {exc}"]
        checked["audit_records"] = report.records
        return [f"audit log: {p}" for p in report.problems]

    def close(self) -> None:
        """Stop background work and release connections.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._sweeper is not None and self._sweeper is not threading.current_thread():
            self._sweeper.join(timeout=5)
        try:
            self._cache.close()  # flushes write-back: raises if acknowledged writes are lost
        finally:
            for backend in self._backends.values():
                backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _ids(kids: Iterable[str]) -> str:
    return ", ".join(repr(k) for k in sorted(kids))


def _survey_key_ids(backend: Backend) -> set[str]:
    """The key ids sealing the stored values of ``backend`` (a one-time survey of a
    store written before key ids were recorded).  Damaged values are skipped:
    ``check`` reports them."""
    kids: set[str] = set()
    for name in backend.namespaces():
        for st in backend.iter_items(name):
            try:
                kid = sealed_key_id(st.value)
            except IntegrityError:
                continue
            if kid is not None:
                kids.add(kid)
    return kids


def _fingerprint_of(definition: Any) -> str | None:
    """The fingerprint of a machine definition, or None if it does not parse (then the
    handle is rebuilt and the parse error raised there)."""
    from .machines.definition import parse_definition

    try:
        return parse_definition(definition).fingerprint
    except ClawStateError:
        return None


def _option_error(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(field, message)
