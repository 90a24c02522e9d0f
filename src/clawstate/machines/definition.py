"""A machine's definition: parsed and checked once, then immutable.

A definition comes as a dict, as TOML text (the same shape) or as a
:class:`StateMachine` subclass, and always ends as one :class:`Definition`.  Every
mistake is a :class:`~clawstate.ConfigError` whose ``field`` is the path of the
culprit (``transitions[2].from``) — an invalid definition is refused when it is
given, never discovered when an instance reaches the broken state.

Why these checks: a state nothing leads to, a transition out of a final state, a
timeout whose event cannot leave its state or two transitions for the same event
from the same state are always bugs (the last one makes the machine
non-deterministic), so they are refused rather than tolerated.

Guards of a data definition are query filters (:mod:`clawstate.query`'s language),
evaluated on ``{"data": <instance data>, "payload": <event payload>}`` by the same
Python evaluator the in-memory and SQLite backends run, so a stored definition is
pure data: the worker and other processes fire its timeouts without importing
application code.  A class-based definition may instead name methods: guards
``guard(self, data, payload) -> bool``, updates ``update(self, data, payload) ->
new data`` and actions ``action(self, firing) -> None``.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final

import msgspec

from ..config.units import parse_duration
from ..errors import ConfigError, InvalidRequest
from ..query import compile_filter, parse_query
from ..timers import check_handler
from . import registry as _registry

__all__ = [
    "CREATE",
    "Definition",
    "StateMachine",
    "TimeoutDef",
    "TransitionDef",
    "check_machine_name",
    "load_class",
    "parse_definition",
    "register",
    "registered",
]

#: The event type of an instance's creation (its history's first entry).
CREATE: Final = "create"
#: Machine names: they become part of a namespace name (``_machine.<name>``), stream
#: names and timer names, so they are short and plain (no ``:``, the separator).
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: States and events: printable, no surrounding space, bounded.
MAX_LABEL: Final = 128
MAX_STATES: Final = 1_000
MAX_TRANSITIONS: Final = 10_000
MAX_ACTIONS: Final = 16
_MAX_AFTER: Final = 100 * 365 * 86400.0
_TOP: Final = ("initial", "states", "final", "transitions", "timeouts", "migrate")
_TRANSITION_KEYS: Final = ("event", "from", "to", "guard", "update", "actions")
_TIMEOUT_KEYS: Final = ("state", "after", "event")
_CLASS_RE: Final = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

Predicate = Callable[[Any], bool]


def check_machine_name(name: Any) -> str:
    """A machine name: 1–64 of ``[A-Za-z0-9_.-]``, starting with a letter or digit."""
    if type(name) is not str:
        raise InvalidRequest("machine", f"must be a string, got {type(name).__name__}")
    if not _NAME_RE.fullmatch(name):
        raise InvalidRequest(
            "machine",
            "must be 1-64 characters of [A-Za-z0-9_.-] starting with a letter or digit, "
            f"got {name[:80]!r}",
            limit=64,
        )
    return name


class TransitionDef(msgspec.Struct, frozen=True):
    """One transition: ``event`` takes an instance from any of ``sources`` to
    ``target`` if ``guard`` allows.  ``guard`` is a query filter (dict) or, in a
    class-based definition, a method name; ``update`` a method name computing the new
    data; ``actions`` are ``"module:function"`` handlers or method names run by the
    worker through the outbox after the transition commits."""

    event: str
    sources: tuple[str, ...]
    target: str
    guard: Any = None
    update: str | None = None
    actions: tuple[str, ...] = ()


class TimeoutDef(msgspec.Struct, frozen=True):
    """``after`` seconds in ``state``, fire ``event`` (armed on entering the state,
    cancelled on leaving it)."""

    state: str
    after: float
    event: str


class StateMachine:
    """Base class of a class-based definition.

    Class attributes give the shape (the same keys as a dict definition)::

        class Order(StateMachine):
            initial = "pending"
            states = ["pending", "paid", "cancelled"]
            final = ["cancelled"]
            transitions = [
                {"event": "pay", "from": "pending", "to": "paid",
                 "guard": "covers_total", "update": "record", "actions": ["receipt"]},
                {"event": "cancel", "from": ["pending", "paid"], "to": "cancelled"},
            ]
            timeouts = [{"state": "pending", "after": "30m", "event": "cancel"}]

            def covers_total(self, data, payload): return payload["amount"] >= data["total"]
            def record(self, data, payload): return {**data, "paid": payload["amount"]}
            def receipt(self, firing): ...   # runs in the worker, at least once

    A guard string names a method; a guard dict is a query filter as in a data
    definition.  An action with a ``:`` is a ``"module:function"`` handler, one
    without names a method.  The worker finds the class by its module path
    (``clawstate worker --machine myapp.orders:Order``); methods are called on an
    instance built with no arguments.
    """

    initial: ClassVar[str]
    states: ClassVar[Sequence[str]]
    final: ClassVar[Sequence[str]] = ()
    transitions: ClassVar[Sequence[Mapping[str, Any]]] = ()
    timeouts: ClassVar[Sequence[Mapping[str, Any]]] = ()
    migrate: ClassVar[Mapping[str, str]] = {}


def class_path(cls: type) -> str:
    """``"module:QualName"``, how the worker imports a class-based definition."""
    return f"{cls.__module__}:{cls.__qualname__}"


class Definition:
    """A checked, immutable machine definition (build it with :func:`parse_definition`).

    ``document`` is its canonical JSON form (what is stored in ``_machines/<name>``)
    and ``fingerprint`` the SHA-256 of that form: equal definitions have equal
    fingerprints, which is how re-registering the same definition keeps its version.
    """

    __slots__ = (
        "_guards",
        "_instance",
        "_table",
        "class_ref",
        "cls",
        "document",
        "final",
        "fingerprint",
        "initial",
        "migrate",
        "states",
        "timeouts",
        "transitions",
    )

    def __init__(
        self,
        *,
        initial: str,
        states: tuple[str, ...],
        final: frozenset[str],
        transitions: tuple[TransitionDef, ...],
        timeouts: tuple[TimeoutDef, ...],
        migrate: Mapping[str, str],
        cls: type[StateMachine] | None = None,
        class_ref: str | None = None,
    ) -> None:
        self.initial = initial
        self.states = states
        self.final = final
        self.transitions = transitions
        self.timeouts = timeouts
        self.migrate = dict(migrate)
        self.cls = cls
        #: the class's path for a class-based definition (set even when this process
        #: has not registered the class: then its methods cannot run here)
        self.class_ref = class_ref
        self._instance: StateMachine | None = None
        self._table: dict[tuple[str, str], TransitionDef] = {
            (t.event, s): t for t in transitions for s in t.sources
        }
        self._guards: dict[int, Predicate] = {}
        for i, t in enumerate(transitions):
            if isinstance(t.guard, dict):
                parsed = parse_query({"filter": t.guard})
                self._guards[i] = compile_filter(parsed.filter)
        self.document = self._document()
        self.fingerprint = hashlib.sha256(
            msgspec.json.encode(self.document, order="sorted")
        ).hexdigest()

    def __repr__(self) -> str:
        return f"<Definition {len(self.states)} states, {len(self.transitions)} transitions>"

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, "fingerprint"):
            raise AttributeError("a Definition is immutable")
        object.__setattr__(self, name, value)

    def _document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "initial": self.initial,
            "states": list(self.states),
            "final": [s for s in self.states if s in self.final],
            "transitions": [],
            "timeouts": [
                {"state": t.state, "after": t.after, "event": t.event} for t in self.timeouts
            ],
        }
        for t in self.transitions:
            entry: dict[str, Any] = {
                "event": t.event,
                "from": list(t.sources) if len(t.sources) > 1 else t.sources[0],
                "to": t.target,
            }
            if t.guard is not None:
                entry["guard"] = t.guard
            if t.update is not None:
                entry["update"] = t.update
            if t.actions:
                entry["actions"] = list(t.actions)
            doc["transitions"].append(entry)
        if self.migrate:
            doc["migrate"] = dict(sorted(self.migrate.items()))
        if self.class_ref is not None:
            doc["class"] = self.class_ref
        return doc

    # -- lookups -------------------------------------------------------------------------

    def transition(self, event: str, state: str) -> TransitionDef | None:
        """The transition ``event`` takes from ``state``, if any."""
        return self._table.get((event, state))

    def events_from(self, state: str) -> list[str]:
        """The events with a transition out of ``state``, in definition order."""
        return [t.event for t in self.transitions if state in t.sources]

    def timeouts_of(self, state: str) -> list[TimeoutDef]:
        return [t for t in self.timeouts if t.state == state]

    def current_state(self, state: str) -> str | None:
        """``state`` as this definition knows it: itself, its ``migrate`` target if this
        version removed it, or None (removed with no mapping)."""
        if state in self.states:
            return state
        return self.migrate.get(state)

    def _obj(self) -> StateMachine:
        obj = self._instance
        if obj is None:
            if self.cls is None:
                raise ConfigError(
                    "machine",
                    f"this definition's guards, updates and actions are methods of "
                    f"{self.class_ref}, which this process has not registered: pass the class "
                    f"to store.machine(), or run the worker with --machine {self.class_ref}",
                )
            obj = self.cls()
            object.__setattr__(self, "_instance", obj)
        return obj

    def allows(self, t: TransitionDef, data: Any, payload: Any) -> bool:
        """Whether ``t``'s guard lets it run for ``data`` and ``payload``."""
        if t.guard is None:
            return True
        if isinstance(t.guard, str):
            return bool(getattr(self._obj(), t.guard)(data, payload))
        pred = self._guards[self.transitions.index(t)]
        return pred({"data": data, "payload": payload})

    def updated(self, t: TransitionDef, data: Any, payload: Any) -> Any:
        """The instance data after ``t`` (unchanged without an ``update`` method)."""
        if t.update is None:
            return data
        return getattr(self._obj(), t.update)(data, payload)

    def action(self, name: str) -> Callable[[Any], None]:
        """The bound method behind a class-based action."""
        fn: Callable[[Any], None] = getattr(self._obj(), name)
        return fn


# -- parsing -----------------------------------------------------------------------------


def _label(value: Any, field: str) -> str:
    if type(value) is not str:
        raise ConfigError(field, f"must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_LABEL:
        raise ConfigError(field, f"must be 1-{MAX_LABEL} characters, got {len(value)}")
    if not value.isprintable() or value != value.strip():
        raise ConfigError(
            field, f"must be printable, without leading or trailing space, got {value[:80]!r}"
        )
    return value


def _list(value: Any, field: str, limit: int) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise ConfigError(field, f"must be a list, got {type(value).__name__}")
    if len(value) > limit:
        raise ConfigError(field, f"has {len(value)} entries; the limit is {limit}")
    return list(value)


def _unknown(entry: Mapping[Any, Any], known: tuple[str, ...], field: str) -> None:
    for key in entry:
        if key not in known:
            raise ConfigError(
                f"{field}.{key}" if isinstance(key, str) else field,
                f"unknown key {str(key)[:80]!r}; expected {', '.join(known)}",
            )


def _duration(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(
            field, f'must be seconds or a duration like "30m", got {type(value).__name__}'
        )
    if isinstance(value, int) and abs(value) > 10**12:
        raise ConfigError(field, "must be > 0 and at most 100 years")
    seconds = parse_duration(value, field=field)
    if not math.isfinite(seconds) or not 0 < seconds <= _MAX_AFTER:
        raise ConfigError(field, f"must be > 0 and at most 100 years, got {str(value)[:40]!r}")
    return float(seconds)


def _source(
    definition: Any,
) -> tuple[Mapping[str, Any], type[StateMachine] | None, str | None]:
    """The definition as a mapping, its class (if known here) and its class path."""
    if isinstance(definition, type) and issubclass(definition, StateMachine):
        cls = definition
        if cls is StateMachine:
            raise ConfigError("definition", "subclass StateMachine; the base has no states")
        doc: dict[str, Any] = {}
        for key in _TOP:
            if hasattr(cls, key):
                doc[key] = getattr(cls, key)
        return doc, cls, class_path(cls)
    if isinstance(definition, str):
        try:
            definition = tomllib.loads(definition)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("definition", f"is not valid TOML: {exc}") from None
    if isinstance(definition, Mapping):
        ref = definition.get("class")
        if ref is None:
            return definition, None, None
        # A stored class-based definition: its methods come from the class registered
        # in this process under that path, if any (see registry.py).
        if not isinstance(ref, str) or not _CLASS_RE.fullmatch(ref):
            raise ConfigError("class", f'must be "package.module:Class", got {str(ref)[:80]!r}')
        return definition, registered(ref), ref
    raise ConfigError(
        "definition",
        f"must be a dict, TOML text or a StateMachine subclass, got {type(definition).__name__}",
    )


def parse_definition(definition: Any) -> Definition:
    """Check ``definition`` (dict, TOML text, :class:`StateMachine` subclass or a
    :class:`Definition`) and return it as a :class:`Definition`; refuse it with a
    :class:`ConfigError` naming the problem."""
    if isinstance(definition, Definition):
        return definition
    doc, cls, ref = _source(definition)
    _unknown(doc, (*_TOP, "class") if ref is not None else _TOP, "definition")
    if "initial" not in doc:
        raise ConfigError("initial", "is missing: a machine needs one initial state")
    if "states" not in doc:
        raise ConfigError("states", "is missing: list the machine's states")
    states = [
        _label(s, f"states[{i}]") for i, s in enumerate(_list(doc["states"], "states", MAX_STATES))
    ]
    if not states:
        raise ConfigError("states", "must not be empty")
    seen: set[str] = set()
    for i, s in enumerate(states):
        if s in seen:
            raise ConfigError(f"states[{i}]", f"state {s!r} is listed twice")
        seen.add(s)
    known = set(states)

    def state(value: Any, field: str) -> str:
        s = _label(value, field)
        if s not in known:
            raise ConfigError(field, f"unknown state {s!r}; the states are {', '.join(states)}")
        return s

    initial = state(doc["initial"], "initial")
    final_raw = doc.get("final") or []
    final_list = [
        state(s, f"final[{i}]") for i, s in enumerate(_list(final_raw, "final", MAX_STATES))
    ]
    final = frozenset(final_list)
    if initial in final:
        raise ConfigError("initial", f"initial state {initial!r} cannot also be final")

    transitions: list[TransitionDef] = []
    pairs: dict[tuple[str, str], int] = {}
    raw_transitions = _list(doc.get("transitions") or [], "transitions", MAX_TRANSITIONS)
    for i, entry in enumerate(raw_transitions):
        here = f"transitions[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(here, f"must be a table/dict, got {type(entry).__name__}")
        _unknown(entry, _TRANSITION_KEYS, here)
        for key in ("event", "from", "to"):
            if key not in entry:
                raise ConfigError(f"{here}.{key}", "is missing")
        event = _label(entry["event"], f"{here}.event")
        if event == CREATE:
            raise ConfigError(f"{here}.event", f"{CREATE!r} is reserved for an instance's creation")
        if event.startswith("$"):
            raise ConfigError(f"{here}.event", "must not start with '$' (reserved)")
        raw_from = entry["from"]
        from_list = raw_from if isinstance(raw_from, list | tuple) else [raw_from]
        if not from_list:
            raise ConfigError(f"{here}.from", "must name at least one state")
        sources = tuple(
            state(
                s, f"{here}.from" if not isinstance(raw_from, list | tuple) else f"{here}.from[{j}]"
            )
            for j, s in enumerate(from_list)
        )
        if len(set(sources)) != len(sources):
            raise ConfigError(f"{here}.from", "names a state twice")
        target = state(entry["to"], f"{here}.to")
        for s in sources:
            if s in final:
                raise ConfigError(
                    f"{here}.from", f"{s!r} is a final state: no transition may leave it"
                )
            if (event, s) in pairs:
                raise ConfigError(
                    f"{here}.event",
                    f"event {event!r} from state {s!r} is already defined by "
                    f"transitions[{pairs[(event, s)]}] (a machine must be deterministic)",
                )
            pairs[(event, s)] = i
        guard = entry.get("guard")
        if guard is not None:
            if isinstance(guard, str):
                if ref is None:
                    raise ConfigError(
                        f"{here}.guard",
                        "a data definition's guard is a query filter (a dict such as "
                        '{"GTE": {"payload.amount": 10}}); method guards need a StateMachine class',
                    )
                _method(cls, guard, f"{here}.guard")
            elif isinstance(guard, Mapping):
                try:
                    parse_query({"filter": dict(guard)})
                except InvalidRequest as exc:
                    raise ConfigError(f"{here}.guard", str(exc)) from None
                guard = msgspec.json.decode(msgspec.json.encode(guard))
            else:
                raise ConfigError(
                    f"{here}.guard", f"must be a query filter (dict), got {type(guard).__name__}"
                )
        update = entry.get("update")
        if update is not None:
            if ref is None:
                raise ConfigError(
                    f"{here}.update", "updates are methods: they need a StateMachine class"
                )
            if not isinstance(update, str):
                raise ConfigError(f"{here}.update", "must be a method name")
            _method(cls, update, f"{here}.update")
        actions: list[str] = []
        for j, act in enumerate(_list(entry.get("actions") or [], f"{here}.actions", MAX_ACTIONS)):
            field = f"{here}.actions[{j}]"
            if isinstance(act, str) and ":" not in act and ref is not None:
                _method(cls, act, field)
            else:
                try:
                    check_handler(act, field)
                except InvalidRequest as exc:
                    raise ConfigError(field, exc.args[0].partition(": ")[2] or str(exc)) from None
            actions.append(act)
        transitions.append(TransitionDef(event, sources, target, guard, update, tuple(actions)))

    timeouts: list[TimeoutDef] = []
    for i, entry in enumerate(_list(doc.get("timeouts") or [], "timeouts", MAX_STATES)):
        here = f"timeouts[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(here, f"must be a table/dict, got {type(entry).__name__}")
        _unknown(entry, _TIMEOUT_KEYS, here)
        for key in _TIMEOUT_KEYS:
            if key not in entry:
                raise ConfigError(f"{here}.{key}", "is missing")
        st = state(entry["state"], f"{here}.state")
        if st in final:
            raise ConfigError(f"{here}.state", f"{st!r} is final: nothing can time out there")
        after = _duration(entry["after"], f"{here}.after")
        event = _label(entry["event"], f"{here}.event")
        if (event, st) not in pairs:
            raise ConfigError(
                f"{here}.event",
                f"no transition for event {event!r} leaves state {st!r}, so the timeout "
                "could never fire",
            )
        timeouts.append(TimeoutDef(st, after, event))

    migrate: dict[str, str] = {}
    raw_migrate = doc.get("migrate") or {}
    if not isinstance(raw_migrate, Mapping):
        raise ConfigError("migrate", f"must be a table/dict, got {type(raw_migrate).__name__}")
    for old, new in raw_migrate.items():
        old = _label(old, "migrate")
        if old in known:
            raise ConfigError(
                f"migrate.{old}", f"{old!r} is still a state; migrate maps removed states only"
            )
        migrate[old] = state(new, f"migrate.{old}")

    # Reachability: every state must be reachable from the initial one.
    reach = {initial}
    frontier = [initial]
    while frontier:
        s = frontier.pop()
        for t in transitions:
            if s in t.sources and t.target not in reach:
                reach.add(t.target)
                frontier.append(t.target)
    for s in states:
        if s not in reach:
            raise ConfigError(
                "states", f"state {s!r} is unreachable: no transition leads to it from {initial!r}"
            )
    return Definition(
        initial=initial,
        states=tuple(states),
        final=final,
        transitions=tuple(transitions),
        timeouts=tuple(timeouts),
        migrate=migrate,
        cls=cls,
        class_ref=ref,
    )


def _method(cls: type | None, name: str, field: str) -> None:
    """``name`` must be a public method of ``cls`` (None: a stored class-based
    definition whose class this process has not registered — checked when used)."""
    if not name.isidentifier() or name.startswith("_"):
        raise ConfigError(field, f"must name a public method, got {name[:80]!r}")
    if cls is not None and not callable(getattr(cls, name, None)):
        raise ConfigError(field, f"{cls.__qualname__} has no method {name!r}")


def register(cls: type[StateMachine]) -> str:
    """Make ``cls`` known to this process under its path (see :mod:`.registry`);
    returns the path."""
    if not (isinstance(cls, type) and issubclass(cls, StateMachine)) or cls is StateMachine:
        raise ConfigError("machine", f"must be a StateMachine subclass, got {cls!r}")
    path = class_path(cls)
    _registry.put(path, cls)
    return path


def registered(path: str) -> type[StateMachine] | None:
    """The class registered under ``path`` in this process, if any."""
    found = _registry.registered(path)
    return found if isinstance(found, type) and issubclass(found, StateMachine) else None


def load_class(spec: str) -> type[StateMachine]:
    """Import ``"package.module:Class"`` and register it (the worker's ``--machine``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError("machine", f'must look like "package.module:Class", got {spec!r}')
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("machine", f"cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError("machine", f"{module_name!r} has no attribute {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, StateMachine)):
        raise ConfigError("machine", f"{spec!r} is not a StateMachine subclass")
    register(obj)
    return obj
