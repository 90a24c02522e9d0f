"""``store.machine(name)``: create, fire, read and rebuild a machine's instances.

Each instance is an event stream (``machine:<name>:<id>``): its creation and every
transition is one event whose data records the source and target states, the
payload, the new data (when it changed), the definition version and the timeout
timers the transition armed.  So the stream alone says everything about the
instance, and :meth:`Machine.rebuild` recomputes its projection from it without
running a guard, an update, an action or a timer again.

The current state is projected into the row ``id`` of the system namespace
``_machine.<name>`` (indexed on ``state``: :meth:`Machine.query` is an index read)
**in the same transaction** as the event: the append carries the expected stream
version and the row put the row's version, so two concurrent fires cannot both
commit.  The same transaction cancels the timeout timers of the state being left,
arms those of the state entered, and records the transition's actions as outbox
timers due now — so a transition, its timers and its side effects commit together
or not at all.

Timer names are ``<stream>:t<version>.<i>`` (timeouts) and ``<stream>:a<version>.<i>``
(actions): unique per transition, so re-entering a state never collides with the
timer a worker is firing right now.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from .._retry import retry_on_conflict
from .._transaction import TxNamespace
from .._validate import check_int, check_key, check_limit, check_value
from ..errors import ConfigError, InvalidRequest, InvalidTransition, VersionConflict
from ..types import NO_STREAM, Event, Instance, Transition
from .definition import CREATE, Definition, _label, check_machine_name, parse_definition

if TYPE_CHECKING:
    from .._namespace import Namespace
    from .._transaction import Transaction
    from ..backends.base import Backend
    from ..config import Config
    from ..events.store import EventStore
    from ..timers import Timers


class Store(Protocol):
    """What a machine needs of its store (:class:`clawstate.Store` satisfies it): a
    Protocol, not the class, so ``store.py`` (which builds :class:`Machine`) and this
    module do not import each other."""

    config: Config

    @property
    def backend(self) -> Backend: ...

    @property
    def events(self) -> EventStore: ...

    @property
    def timers(self) -> Timers: ...

    def _system_namespace(self, name: str, *, indexes: tuple[str, ...] = ()) -> Namespace: ...

    def transaction(self, *, idempotency_key: str | None = None) -> Transaction: ...

    def machine(self, name: str, definition: Any = None) -> Machine: ...


__all__ = [
    "ACTION_HANDLER",
    "DEFINITIONS",
    "TIMEOUT_HANDLER",
    "InstancePage",
    "Machine",
    "list_machines",
    "load_definition",
    "projection_namespace",
    "register_definition",
    "stream_name",
]

#: The system namespace of stored definitions (one row per machine).
DEFINITIONS: Final = "_machines"
#: The built-in timer handlers (see :mod:`clawstate.machines.timeouts`).
TIMEOUT_HANDLER: Final = "clawstate.machines.timeouts:fire_timeout"
ACTION_HANDLER: Final = "clawstate.machines.timeouts:run_action"
#: Longest instance id in UTF-8 bytes: stream and timer names are built from it.
MAX_ID_BYTES: Final = 256
#: Conflicts retried by a fire without ``expected_version`` before giving up.
FIRE_RETRIES: Final = 100
#: How long a handle trusts its cached definition before re-reading the stored one.
REFRESH_SECONDS: Final = 1.0
_STATE_INDEX: Final = ("state",)


def projection_namespace(name: str) -> str:
    """The system namespace holding machine ``name``'s current states."""
    return f"_machine.{name}"


def stream_name(name: str, id: str) -> str:
    """The event stream of instance ``id`` of machine ``name``."""
    return f"machine:{name}:{id}"


class InstancePage(msgspec.Struct, frozen=True, gc=False):
    """One page of :meth:`Machine.query`; ``cursor`` is ``None`` on the last page."""

    items: list[Instance]
    cursor: str | None = None

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def _check_id(id: Any) -> str:
    check_key(id, MAX_ID_BYTES, field="id")
    return str(id)


def _check_json(value: Any, field: str, max_bytes: int) -> Any:
    """``value`` must round-trip as JSON (no NaN, no bytes, string keys) and fit."""
    try:
        check_value(value, json=True)
        size = len(msgspec.json.encode(value))
    except InvalidRequest as exc:
        raise InvalidRequest(field, str(exc).split(": ", 1)[-1]) from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidRequest(field, f"cannot be encoded as JSON: {exc}") from None
    if size > max_bytes:
        raise InvalidRequest(
            field, f"is {size} bytes of JSON; the limit is {max_bytes}", limit=max_bytes
        )
    return value


def _instance(name: str, id: str, row: dict[str, Any]) -> Instance:
    return Instance(
        id,
        row["state"],
        row.get("data"),
        row["version"],
        row["created_at"],
        row["updated_at"],
        name,
        row.get("definition_version", 1),
    )


# -- stored definitions ---------------------------------------------------------------------


def _definitions(store: Store) -> Namespace:
    return store._system_namespace(DEFINITIONS)


def load_definition(store: Store, name: str) -> tuple[Definition, int] | None:
    """Machine ``name``'s stored definition and its version, or None."""
    item = _definitions(store).get(name)
    if item is None:
        return None
    row = item.value
    return parse_definition(row["definition"]), int(row["version"])


def register_definition(store: Store, name: str, definition: Definition) -> int:
    """Store ``definition`` as machine ``name``'s newest one; return its version.

    The same content (same fingerprint) keeps the version it was first stored with and
    changes nothing — even if a newer version was stored since, so two releases of an
    application running side by side do not bump the version back and forth.  New
    content becomes version ``newest + 1``.  A new version that removes a state some
    instance is still in, without mapping it in ``migrate``, is refused: those
    instances could never move again."""
    ns = _definitions(store)
    fp = definition.fingerprint

    def once() -> int:
        item = ns.get(name)
        if item is None:
            row = {"version": 1, "definition": definition.document, "fingerprints": {fp: 1}}
            ns.put(name, row, if_absent=True)
            return 1
        old = item.value
        known = old.get("fingerprints", {})
        if fp in known:
            return int(known[fp])
        previous = parse_definition(old["definition"])
        _check_removed_states(store, name, previous, definition)
        version = int(old["version"]) + 1
        row = {
            "version": version,
            "definition": definition.document,
            "fingerprints": {**known, fp: version},
        }
        ns.put(name, row, if_version=item.version)
        return version

    return retry_on_conflict(once, FIRE_RETRIES, backoff=0.002, max_backoff=0.1)


def _check_removed_states(store: Store, name: str, old: Definition, new: Definition) -> None:
    proj = store._system_namespace(projection_namespace(name), indexes=_STATE_INDEX)
    # The old version's states, and the states it still mapped (instances may sit there).
    for state in (*old.states, *old.migrate):
        if new.current_state(state) is not None:
            continue
        page = proj.query({"filter": {"EQ": {"state": state}}, "page": {"limit": 1}})
        if page.items:
            raise ConfigError(
                "migrate",
                f"the new definition of machine {name!r} removes state {state!r}, where "
                f"instances are (e.g. {page.items[0].key!r}); map it to a state of the new "
                f'definition: "migrate": {{"{state}": "<state>"}}',
            )


def list_machines(store: Store) -> list[str]:
    """The names of the machines with a stored definition, in name order."""
    ns = _definitions(store)
    out: list[str] = []
    cursor: str | None = None
    while True:
        page = ns.scan("", 1000, cursor)
        out += [it.key for it in page.items]
        cursor = page.cursor
        if cursor is None:
            return out


# -- the handle -------------------------------------------------------------------------------


class Machine:
    """The handle on machine ``name`` of a store (``store.machine(name, definition)``).

    Thread-safe; one per name per store (the store caches it)."""

    def __init__(self, store: Store, name: str, definition: Definition, version: int) -> None:
        self._store = store
        self.name = name
        self._definition = definition
        self._version = version
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._ns_name = projection_namespace(name)
        self._ns = store._system_namespace(self._ns_name, indexes=_STATE_INDEX)
        self._max_bytes = store.config.limits.max_value_bytes

    def __repr__(self) -> str:
        return f"<Machine {self.name!r} v{self._version}>"

    @property
    def definition(self) -> Definition:
        """The definition this handle fires with (the newest stored, re-read at most
        every second)."""
        return self._current()[0]

    @property
    def version(self) -> int:
        """That definition's version."""
        return self._current()[1]

    def _current(self, at_least: int = 0) -> tuple[Definition, int]:
        """The newest definition: re-read from the store when the cached one is older
        than :data:`REFRESH_SECONDS`, or an instance was written by a newer one."""
        with self._lock:
            now = time.monotonic()
            if at_least <= self._version and now - self._checked < REFRESH_SECONDS:
                return self._definition, self._version
            self._checked = now
        item = _definitions(self._store).get(self.name)
        if item is None or int(item.value["version"]) <= self._version:
            return self._definition, self._version
        # A newer version was stored (by another process, or another handle).  If it is
        # class-based and this process has not registered the class, its structure
        # still serves reads and pictures; its methods raise a ConfigError saying so.
        defn = parse_definition(item.value["definition"])
        version = int(item.value["version"])
        with self._lock:
            if version > self._version:
                self._definition, self._version = defn, version
            return self._definition, self._version

    # -- writes --------------------------------------------------------------------------

    def create(self, id: str, data: Any = None) -> Instance:
        """Create instance ``id`` in the initial state with ``data`` (any JSON value);
        arms the initial state's timeouts.  :class:`VersionConflict` if it exists."""
        id = _check_id(id)
        data = _check_json(data, "data", self._max_bytes)
        defn, dver = self._current()
        store = self._store
        stream = stream_name(self.name, id)
        tx = store.transaction()
        now = tx._now
        try:
            armed = self._arm(tx, defn, id, stream, defn.initial, 1)
            body = {
                "source": "",
                "target": defn.initial,
                "payload": None,
                "data": data,
                "definition_version": dver,
                "timers": armed,
            }
            tx.events.append(stream, [Event(CREATE, body)], expected_version=NO_STREAM)
            row = {
                "state": defn.initial,
                "data": data,
                "version": 1,
                "created_at": now,
                "updated_at": now,
                "definition_version": dver,
                "timers": armed,
            }
            TxNamespace(tx, self._ns).put(id, row, if_absent=True)
            tx.commit()
        except VersionConflict as exc:
            tx.rollback()
            raise VersionConflict(
                id,
                "absent",
                exc.actual,
                namespace=self._ns_name,
                message=f"machine {self.name!r} already has an instance {id!r}",
            ) from None
        except BaseException:
            tx.rollback()
            raise
        return _instance(self.name, id, row)

    def fire(
        self,
        id: str,
        event: str,
        payload: Any = None,
        expected_version: int | None = None,
    ) -> Instance:
        """Fire ``event`` on instance ``id``; returns the instance after the transition.

        :class:`InvalidTransition` (nothing written) when no transition for ``event``
        leaves the instance's state, the state is final or the guard refuses.  With
        ``expected_version``, a :class:`VersionConflict` if the instance moved past it;
        without, a concurrent transition makes this one re-read and retry."""
        id = _check_id(id)
        event = _event(event)
        payload = _check_json(payload, "payload", self._max_bytes)
        if expected_version is not None:
            check_int(expected_version, "expected_version", 1)

        def once() -> Instance:
            tx = self._store.transaction()
            try:
                inst = self._fire_in(tx, id, event, payload, expected_version)
                assert inst is not None
                tx.commit()
                return inst
            except BaseException:
                tx.rollback()
                raise

        if expected_version is not None:
            return once()
        return retry_on_conflict(once, FIRE_RETRIES, backoff=0.001, max_backoff=0.05)

    def _fire_in(
        self,
        tx: Transaction,
        id: str,
        event: str,
        payload: Any,
        expected_version: int | None,
        *,
        keep_timer: str | None = None,
        quiet: bool = False,
    ) -> Instance | None:
        """Buffer the transition in ``tx`` (which the caller commits).

        ``keep_timer``: the timer being fired (its row is removed by the worker in
        this same transaction, so it must not be cancelled here too).  ``quiet``: an
        instance that is gone, or a transition that is not allowed, returns None
        instead of raising (a timeout that can no longer apply does nothing)."""
        # The handle's namespace, not tx._system_namespace(): building a Namespace per
        # fire (its policy, its codec) costs more than the rest of the fire's own work.
        txns = TxNamespace(tx, self._ns)
        item = txns.get(id)
        if item is None:
            if quiet:
                return None
            raise InvalidRequest("id", f"machine {self.name!r} has no instance {id[:200]!r}")
        row: dict[str, Any] = item.value
        version = int(row["version"])
        if expected_version is not None and version != expected_version:
            if quiet:
                return None
            raise VersionConflict(id, expected_version, version, namespace=self._ns_name)
        defn, dver = self._current(int(row.get("definition_version", 1)))
        state = row["state"]
        try:
            t = self._transition(defn, dver, id, state, event, row.get("data"), payload)
        except InvalidTransition:
            if quiet:
                return None
            raise
        data = defn.updated(t, row.get("data"), payload)
        if t.update is not None:
            data = _check_json(data, f"{t.update}() result", self._max_bytes)
        new_version = version + 1
        stream = stream_name(self.name, id)
        for name in row.get("timers") or ():
            if name != keep_timer:
                self._store.timers.cancel(name, tx=tx)
        armed = self._arm(tx, defn, id, stream, t.target, new_version)
        for i, action in enumerate(t.actions):
            job: dict[str, Any] = {
                "machine": self.name,
                "id": id,
                "event": event,
                "source": state,
                "target": t.target,
                "version": new_version,
                "data": data,
                "payload": payload,
            }
            handler = action
            if ":" not in action:
                handler = ACTION_HANDLER
                job["action"] = action
            self._store.timers.schedule(
                f"{stream}:a{new_version}.{i}", handler=handler, after=0, payload=job, tx=tx
            )
        body: dict[str, Any] = {
            "source": state,
            "target": t.target,
            "payload": payload,
            "definition_version": dver,
            "timers": armed,
        }
        if t.update is not None:
            body["data"] = data
        tx.events.append(stream, [Event(event, body)], expected_version=version)
        now = tx._now
        new_row = {
            "state": t.target,
            "data": data,
            "version": new_version,
            "created_at": row["created_at"],
            "updated_at": now,
            "definition_version": dver,
            "timers": armed,
        }
        txns.put(id, new_row, if_version=item.version or None)
        return _instance(self.name, id, new_row)

    def _transition(
        self,
        defn: Definition,
        dver: int,
        id: str,
        state: str,
        event: str,
        data: Any,
        payload: Any,
    ) -> Any:
        here = defn.current_state(state)
        if here is None:
            raise InvalidTransition(
                self.name,
                id,
                state,
                event,
                reason=f"definition version {dver} removed state {state!r} and its "
                "migrate map does not name it",
            )
        if here in defn.final:
            raise InvalidTransition(self.name, id, state, event, reason="the state is final")
        t = defn.transition(event, here)
        if t is None:
            allowed = defn.events_from(here)
            reason = (
                f"allowed here: {', '.join(allowed)}" if allowed else "no event leaves this state"
            )
            raise InvalidTransition(self.name, id, state, event, reason=reason)
        if not defn.allows(t, data, payload):
            raise InvalidTransition(self.name, id, state, event, reason="the guard refused it")
        return t

    def _arm(
        self, tx: Transaction, defn: Definition, id: str, stream: str, state: str, version: int
    ) -> list[str]:
        """Schedule ``state``'s timeouts in ``tx``; their timer names."""
        armed: list[str] = []
        for i, to in enumerate(defn.timeouts_of(state)):
            name = f"{stream}:t{version}.{i}"
            job = {
                "machine": self.name,
                "id": id,
                "version": version,
                "state": state,
                "event": to.event,
            }
            self._store.timers.schedule(
                name, handler=TIMEOUT_HANDLER, after=to.after, payload=job, tx=tx
            )
            armed.append(name)
        return armed

    # -- reads ---------------------------------------------------------------------------

    def get(self, id: str) -> Instance | None:
        """Instance ``id`` as its last transition left it, or None."""
        id = _check_id(id)
        item = self._ns.get(id)
        return None if item is None else _instance(self.name, id, item.value)

    def history(self, id: str) -> list[Transition]:
        """Instance ``id``'s transitions, its creation first (``event="create"``,
        ``source=""``); empty for an unknown id."""
        id = _check_id(id)
        out: list[Transition] = []
        for ev in self._store.events.read(stream_name(self.name, id)):
            d = ev.data
            out.append(
                Transition(
                    ev.type,
                    d.get("source", ""),
                    d.get("target", ""),
                    d.get("payload"),
                    ev.recorded_at,
                    ev.version,
                )
            )
        return out

    def query(
        self, state: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> InstancePage:
        """Instances in ``state`` (all of them with None), in id order; pass the page's
        ``cursor`` back for the next page.  An index read on ``state``."""
        max_limit = self._store.config.limits.max_query_limit
        limit = check_limit(limit, max_limit)
        if cursor is not None and (type(cursor) is not str or not cursor):
            raise InvalidRequest("cursor", "must be the cursor of a previous query() page")
        if state is None:
            page = self._ns.scan("", limit, cursor)
        else:
            state = _label_request(state, "state")
            doc: dict[str, Any] = {"filter": {"EQ": {"state": state}}, "page": {"limit": limit}}
            if cursor is not None:
                doc["page"]["token"] = cursor
            page = self._ns.query(doc)
        return InstancePage(
            [_instance(self.name, it.key, it.value) for it in page.items], page.cursor
        )

    def counts(self) -> dict[str, int]:
        """How many instances are in each state of the definition (states a newer
        definition removed are counted too, under their own name, when non-empty)."""
        defn = self.definition
        out = {s: 0 for s in defn.states}
        seen = set(out)
        for old in defn.migrate:
            if old not in seen:
                out[old] = 0
        for state in list(out):
            n = 0
            cursor: str | None = None
            while True:
                page = self.query(state, 1000, cursor)
                n += len(page.items)
                cursor = page.cursor
                if cursor is None:
                    break
            out[state] = n
        return {s: n for s, n in out.items() if s in seen or n}

    def render(self, format: str = "mermaid", *, counts: bool = True) -> str:
        """The machine as a Mermaid ``stateDiagram-v2`` or (``format="dot"``) Graphviz
        text, with instance counts per state unless ``counts=False``."""
        from .render import render

        if format not in ("mermaid", "dot"):
            raise InvalidRequest("format", f'must be "mermaid" or "dot", got {str(format)[:40]!r}')
        return render(self.name, self.definition, self.counts() if counts else None, format)

    # -- rebuild ---------------------------------------------------------------------------

    def rebuild(self, id: str) -> Instance | None:
        """Recompute instance ``id``'s projection row from its stream (after a bug, a
        restore, a lost row), without running guards, updates, actions or timers.
        Returns the instance, or None (no stream: the row, if any, is removed)."""
        id = _check_id(id)
        return retry_on_conflict(
            lambda: self._rebuild_once(id), FIRE_RETRIES, backoff=0.001, max_backoff=0.05
        )

    def _rebuild_once(self, id: str) -> Instance | None:
        events = self._store.events.read(stream_name(self.name, id))
        item = self._ns.get(id)
        if not events:
            if item is not None:
                self._ns.delete(id, if_version=item.version)
            return None
        row: dict[str, Any] = {}
        for ev in events:
            d = ev.data
            if ev.type == CREATE:
                row = {"data": d.get("data"), "created_at": ev.recorded_at}
            if "data" in d:
                row["data"] = d["data"]
            row["state"] = d.get("target", "")
            row["version"] = ev.version
            row["updated_at"] = ev.recorded_at
            row["definition_version"] = d.get("definition_version", 1)
            row["timers"] = d.get("timers", [])
        row.setdefault("created_at", events[0].recorded_at)
        row.setdefault("data", None)
        if item is not None and item.value == row:
            return _instance(self.name, id, row)
        if item is None:
            self._ns.put(id, row, if_absent=True)
        else:
            self._ns.put(id, row, if_version=item.version)
        return _instance(self.name, id, row)

    def rebuild_all(self) -> int:
        """:meth:`rebuild` every instance that has a stream, and remove rows that have
        none; returns how many instances were rebuilt."""
        events = self._store.events
        prefix = stream_name(self.name, "")
        ids: set[str] = set()
        cursor: str | None = None
        n = 0
        while True:
            page = events.streams(prefix, limit=1000, cursor=cursor)
            for info in page.streams:
                id = info.stream[len(prefix) :]
                ids.add(id)
                if self.rebuild(id) is not None:
                    n += 1
            cursor = page.cursor
            if cursor is None:
                break
        cursor = None
        while True:
            rows = self._ns.scan("", 1000, cursor)
            for it in rows.items:
                if it.key not in ids:
                    self.rebuild(it.key)
            cursor = rows.cursor
            if cursor is None:
                return n


def _event(event: Any) -> str:
    name = _label_request(event, "event")
    if name == CREATE:
        raise InvalidRequest("event", f"{CREATE!r} is the creation; use create()")
    return name


def _label_request(value: Any, field: str) -> str:
    try:
        return _label(value, field)
    except ConfigError as exc:
        raise InvalidRequest(field, str(exc).split(": ", 1)[-1]) from None


def open_machine(store: Store, name: str, definition: Any = None) -> Machine:
    """Build the handle (``Store.machine`` caches it): parse and register
    ``definition``, or load the stored one."""
    name = check_machine_name(name)
    if not getattr(store.backend.capabilities, "events", False):
        raise InvalidRequest(
            "machine",
            f"state machines are event-sourced and backend {store.backend.name!r} keeps no "
            "events (Redis); use SQLite, PostgreSQL or memory for the store's default backend",
        )
    if definition is None:
        stored = load_definition(store, name)
        if stored is None:
            raise ConfigError(
                "machine",
                f"no definition stored for machine {name!r}: give one "
                f"(store.machine({name!r}, definition))",
            )
        return Machine(store, name, *stored)
    defn = parse_definition(definition)
    if defn.cls is not None:
        from .definition import register

        register(defn.cls)
    version = register_definition(store, name, defn)
    return Machine(store, name, defn, version)
