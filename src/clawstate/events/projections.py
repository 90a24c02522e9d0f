"""Projections (CQRS): read models built from the global log, exactly once per event.

A :class:`Projection` is a class with a handler per event type
(``@handles("OrderPlaced")``) that writes a read-model namespace through a
:class:`ReadModel`.  The :class:`ProjectionRunner` feeds it pages of the log
after its checkpoint and commits each page's read-model writes **and the new
checkpoint in one transaction** — so after a crash the read model and the
checkpoint agree, and no event's effect is applied twice or lost.  The
checkpoint write is conditional on the checkpoint's version, so two runners of
the same projection (two workers) cannot both commit the same page: the loser's
transaction is refused whole and it re-reads the checkpoint.

Poison events.  When a handler raises, the event's own partial writes are
dropped, the events before it in the page commit (so the checkpoint stops right
before the failing event), and the projection's :class:`FailurePolicy` decides:
the event is tried again ``retries`` times with a growing pause, then the
projection either **stops** (the default: nothing after the event is applied
until an operator calls :meth:`ProjectionRunner.retry` or
:meth:`ProjectionRunner.skip`, or ``clawstate projections retry|skip``) or
**parks** the event in its dead-letter namespace and goes on.  The failure —
error type and message, the stuck position, the attempts — is part of the
checkpoint, so :func:`projection_status` (``clawstate projections status``)
shows it from any process.  Errors that are not the handler's (the backend is
unavailable) are retried by :meth:`~ProjectionRunner.run_forever` without limit:
they say nothing about the event.

Checkpoints are items of the ``_projections`` namespace, on the event store's
backend; a read-model namespace (and the dead-letter namespace) must live on
that backend too (a transaction is atomic within one backend only).
:meth:`ProjectionRunner.rebuild` resets a projection — checkpoint first, then
the read model and its dead letters — and replays it from zero; do not rebuild
while another runner runs the same projection.

The runner runs in-process (:meth:`~ProjectionRunner.run_until_idle` in tests
and scripts, :meth:`~ProjectionRunner.run_forever` in a thread) and is what
``clawstate worker`` drives; :class:`~clawstate.events.aio.AsyncProjectionRunner`
is its awaitable face.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import msgspec

from .._validate import check_int, check_key, shown
from ..config import check_namespace_name
from ..errors import ClawStateError, InvalidRequest, VersionConflict
from ..types import RecordedEvent
from ._common import PROJECTIONS_NS, EventFilter

if TYPE_CHECKING:
    from ._host import HostEvents, HostNamespace, HostTransaction

__all__ = [
    "DEAD_LETTERS_NS",
    "EventCounts",
    "FailurePolicy",
    "Projection",
    "ProjectionRunner",
    "ProjectionStatus",
    "ProjectionStopped",
    "ReadModel",
    "handles",
    "projection_status",
    "reset_projection",
    "retry_projection",
    "skip_projection",
]

log = logging.getLogger("clawstate.projections")

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__clawstate_handles__"
_DELETED: Any = object()
_ABSENT: Any = object()

#: The default dead-letter namespace: parked and skipped events of every projection,
#: keyed ``"<projection>/<position>"`` (an application namespace, so ``clawstate scan``
#: and ``get`` show them).
DEAD_LETTERS_NS = "dead-letters"
#: The longest error message kept in a checkpoint or dead letter, in characters.
MAX_ERROR_CHARS = 2000
#: Bounds of a :class:`FailurePolicy`: at most this many retries, and pauses of at
#: most a day (a longer pause is a stop).
MAX_POLICY_RETRIES = 100
MAX_POLICY_BACKOFF = 86_400.0


class FailurePolicy(msgspec.Struct, frozen=True):
    """What a runner does when a projection's handler raises on an event.

    The event is tried again ``retries`` times, the pause before retry *n* being
    ``min(max_backoff, backoff * 2**(n-1))`` seconds; if it still fails, ``then``
    decides: ``"stop"`` leaves the projection stopped at the event (nothing after it
    is applied, in order, until :meth:`ProjectionRunner.retry` or
    :meth:`ProjectionRunner.skip`); ``"park"`` stores the event and the error in the
    ``dead_letter`` namespace, moves the checkpoint past it — in one transaction — and
    goes on.

    The default (3 retries, 1 s doubling, then stop) never drops an event on its own:
    a read model that silently missed an event is wrong in a way nobody sees, while a
    stopped one shows its error and lag in ``clawstate projections status``.  Choose
    ``then="park"`` for projections where progress matters more than completeness.
    """

    retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 60.0
    then: Literal["stop", "park"] = "stop"
    dead_letter: str = DEAD_LETTERS_NS

    def __post_init__(self) -> None:
        check_int(self.retries, "failure.retries", 0, MAX_POLICY_RETRIES)
        for field, value in (("backoff", self.backoff), ("max_backoff", self.max_backoff)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRequest(
                    f"failure.{field}", f"must be a number of seconds, got {shown(value)}"
                )
            if not 0 <= value <= MAX_POLICY_BACKOFF:
                raise InvalidRequest(
                    f"failure.{field}",
                    f"must be from 0 to {MAX_POLICY_BACKOFF:g} seconds, got {shown(value)}",
                    limit=MAX_POLICY_BACKOFF,
                )
        if self.then not in ("stop", "park"):
            raise InvalidRequest(
                "failure.then", f"must be 'stop' or 'park', got {shown(self.then)}"
            )
        check_namespace_name(self.dead_letter, field="failure.dead_letter", error=InvalidRequest)

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (1 is the first retry)."""
        return float(min(self.max_backoff, self.backoff * 2 ** min(max(attempt - 1, 0), 62)))


class ProjectionStopped(ClawStateError):
    """A projection's handler kept failing on an event and its policy said stop.

    Raised by :meth:`ProjectionRunner.run_until_idle` (after the other projections ran);
    ``clawstate projections retry NAME`` / ``skip NAME`` resume it.  The handler's
    exception is the ``__cause__`` when this run saw it fail."""

    http_status = 409

    def __init__(self, name: str, position: int, error_type: str, error: str) -> None:
        self.name = name
        self.position = position
        self.error_type = error_type
        self.error = error
        super().__init__(
            f"projection {name!r} is stopped at position {position}: {error_type}: {error} "
            f"(resume with `clawstate projections retry {name}` or skip the event with "
            f"`clawstate projections skip {name}`)"
        )


def handles(*types: str) -> Callable[[F], F]:
    """Mark a projection method as the handler of ``types``: ``fn(self, event, view)``."""
    if not types or not all(isinstance(t, str) and t for t in types):
        raise InvalidRequest("types", "handles() needs one or more event type names")

    def mark(fn: F) -> F:
        setattr(fn, _MARK, types)
        return fn

    return mark


class ReadModel:
    """A projection's view of its namespace while it handles one page of events.

    Writes are buffered and committed with the checkpoint; reads see the
    buffered writes first (two events of one page updating one key compose), then
    the committed state.  The runner journals each event's writes, so a handler
    that raises halfway leaves none of them behind.
    """

    def __init__(self, ns: HostNamespace) -> None:
        self._ns = ns
        self._pending: dict[str, Any] = {}
        #: key -> its pending value before the current event (``_ABSENT``: none)
        self._journal: dict[str, Any] = {}

    @property
    def namespace(self) -> str:
        return self._ns.name

    def get(self, key: str, default: Any = None) -> Any:
        value = self._pending.get(key, self)
        if value is not self:
            return default if value is _DELETED else value
        item = self._ns.get(key)
        return default if item is None else item.value

    def put(self, key: str, value: Any) -> None:
        check_key(key)
        self._note(key)
        self._pending[key] = value

    def delete(self, key: str) -> None:
        check_key(key)
        self._note(key)
        self._pending[key] = _DELETED

    def update(self, key: str, change: Callable[[Any], Any], default: Any = None) -> Any:
        """``put(key, change(get(key, default)))``; returns the new value."""
        value = change(self.get(key, default))
        self.put(key, value)
        return value

    def __len__(self) -> int:
        return len(self._pending)

    def _note(self, key: str) -> None:
        if key not in self._journal:
            self._journal[key] = self._pending.get(key, _ABSENT)

    def _begin(self) -> None:
        """Start journaling one event's writes."""
        self._journal = {}

    def _undo(self) -> None:
        """Drop the writes made since :meth:`_begin` (the handler raised)."""
        for key, old in self._journal.items():
            if old is _ABSENT:
                self._pending.pop(key, None)
            else:
                self._pending[key] = old
        self._journal = {}

    def _flush(self, tx: HostTransaction) -> None:
        txn = tx.namespace(self._ns.name)
        for key, value in self._pending.items():
            if value is _DELETED:
                txn.delete(key)
            else:
                txn.put(key, value)
        self._pending = {}
        self._journal = {}


class Projection:
    """Base class of projections::

        class OrderTotals(Projection):
            name = "order-totals"            # the checkpoint's name
            namespace = "order-totals"       # the read model (default: name)
            stream_prefix = "order-"         # optional filter

            @handles("OrderPlaced")
            def placed(self, event, view):
                view.update(event.data["customer"], lambda t: (t or 0) + event.data["total"])

    ``types`` defaults to the handled types (only those are read); set it to ``()``
    and override :meth:`handle_event` to see every event.  ``failure`` says what
    happens when a handler raises (:class:`FailurePolicy`; default: retry 3 times,
    then stop at the event)::

            failure = FailurePolicy(retries=5, then="park", dead_letter="orders-dead")
    """

    name: ClassVar[str] = ""
    namespace: ClassVar[str | None] = None
    stream_prefix: ClassVar[str] = ""
    types: ClassVar[tuple[str, ...] | None] = None
    failure: ClassVar[FailurePolicy] = FailurePolicy()
    _handlers: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                for t in getattr(fn, _MARK, ()):
                    handlers[t] = attr
        cls._handlers = handlers

    @property
    def read_model(self) -> str:
        return self.namespace or self.name

    def event_filter(self) -> EventFilter:
        types = self.types if self.types is not None else tuple(sorted(self._handlers))
        return EventFilter(self.stream_prefix, types)

    def handle_event(self, event: RecordedEvent, view: ReadModel) -> None:
        """Dispatch ``event`` to its handler (events without one are skipped)."""
        name = self._handlers.get(event.type)
        if name is not None:
            getattr(self, name)(event, view)


class EventCounts(Projection):
    """A built-in projection: how many events of each type the log holds (key: type).

    Handy as a smoke test of a runner or worker:
    ``clawstate projections rebuild event-counts --run clawstate.events.projections:EventCounts``.
    """

    name = "event-counts"
    types = ()

    def handle_event(self, event: RecordedEvent, view: ReadModel) -> None:
        view.update(event.type, lambda n: (n or 0) + 1)


class ProjectionStatus(msgspec.Struct, frozen=True):
    """Where a projection stands: its checkpoint, and how far behind the log it is —
    ``lag_events`` positions not yet looked at, ``lag_seconds`` since the oldest of
    them was recorded (0 when caught up).

    While a handler fails on an event: ``stuck_position`` is that event's position,
    ``error_type`` / ``error`` what it raised, ``attempts`` how often it was tried, and
    ``stopped`` whether the policy gave up (until ``retry`` or ``skip``).
    ``last_error`` is ``"Type: message"`` of the handler's error or, in a runner's own
    status, of an error outside the handler (the backend was unavailable).
    ``parked`` / ``skipped`` count the events moved to the dead-letter namespace."""

    name: str
    namespace: str
    position: int
    events: int
    lag_events: int
    lag_seconds: float
    updated_at: float | None = None
    last_error: str | None = None
    error_type: str | None = None
    error: str | None = None
    stuck_position: int | None = None
    attempts: int = 0
    stopped: bool = False
    parked: int = 0
    skipped: int = 0
    dead_letter: str | None = None


def _status(
    events: HostEvents, name: str, doc: dict[str, Any], last: int, now: float
) -> ProjectionStatus:
    position = int(doc.get("position", 0))
    lag_seconds = 0.0
    if last > position:
        nxt = events._log.read_all(position, 1, "", ())[0]
        if nxt:
            lag_seconds = max(0.0, now - nxt[0][8])
    failure = doc.get("failure") or {}
    last_error = doc.get("last_error")
    if failure and last_error is None:
        last_error = f"{failure.get('error_type')}: {failure.get('error')}"
    return ProjectionStatus(
        name,
        str(doc.get("namespace", name)),
        position,
        int(doc.get("events", 0)),
        max(0, last - position),
        lag_seconds,
        doc.get("updated_at"),
        last_error,
        failure.get("error_type"),
        failure.get("error"),
        failure.get("position"),
        int(failure.get("attempts", 0)),
        bool(failure.get("stopped", False)),
        int(doc.get("parked", 0)),
        int(doc.get("skipped", 0)),
        doc.get("dead_letter"),
    )


def projection_status(events: HostEvents) -> list[ProjectionStatus]:
    """Every projection that has a checkpoint, by name."""
    ns = events.store._system_namespace(PROJECTIONS_NS)
    last = events.last_position
    now = events._clock()
    out: list[ProjectionStatus] = []
    cursor = None
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        out += [_status(events, it.key, it.value, last, now) for it in page.items]
        cursor = page.cursor
        if cursor is None:
            return out


def _delete_prefix(events: HostEvents, namespace: str, prefix: str) -> int:
    """Delete every item of ``namespace`` under ``prefix``, a page per transaction."""
    ns = events.store.namespace(namespace)
    removed = 0
    limit = min(500, events.store.config.limits.max_batch)
    while True:
        page = ns.scan(prefix, limit=limit)
        if not page.items:
            return removed
        with events.store.transaction() as tx:
            txn = tx.namespace(namespace)
            for it in page.items:
                txn.delete(it.key)
        removed += len(page.items)


def reset_projection(events: HostEvents, name: str, namespace: str | None = None) -> int:
    """Forget a projection's checkpoint and empty its read model and its dead letters;
    returns the number of read-model items removed.  ``namespace`` defaults to the one
    its checkpoint names."""
    check_key(name, 256, field="name")
    cp = events.store._system_namespace(PROJECTIONS_NS)
    item = cp.get(name)
    if namespace is None:
        if item is None:
            raise InvalidRequest("name", f"no projection named {name!r} has a checkpoint")
        namespace = str(item.value.get("namespace", name))
    # The checkpoint goes first: a runner in the middle of a page then fails its
    # conditional checkpoint write instead of committing into the emptied model.
    if item is not None:
        cp.delete(name, if_version=item.version)
    removed = _delete_prefix(events, namespace, "")
    if item is not None and item.value.get("dead_letter"):
        # A replay tries the parked events again: their old records would be stale.
        _delete_prefix(events, str(item.value["dead_letter"]), _dead_key(name, None))
    return removed


def _stuck(events: HostEvents, name: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The checkpoint item of a projection stuck on an event, its doc and failure."""
    check_key(name, 256, field="name")
    item = events.store._system_namespace(PROJECTIONS_NS).get(name)
    if item is None:
        raise InvalidRequest("name", f"no projection named {name!r} has a checkpoint")
    doc = dict(item.value)
    failure = doc.get("failure")
    if not failure:
        raise InvalidRequest(
            "name", f"projection {name!r} is not stuck on an event (its handler has not failed)"
        )
    return item, doc, dict(failure)


def retry_projection(events: HostEvents, name: str) -> ProjectionStatus:
    """Let a stopped (or retrying) projection try its stuck event again, now: the stop is
    lifted and its attempts start over, so the policy applies afresh.  Every runner of
    the projection sees it (the state is in the checkpoint).  Raises
    :class:`~clawstate.VersionConflict` if a runner moved the checkpoint meanwhile."""
    item, doc, failure = _stuck(events, name)
    failure.update(stopped=False, attempts=0, retry_at=0.0)
    doc["failure"] = failure
    cp = events.store._system_namespace(PROJECTIONS_NS)
    cp.put(name, doc, if_version=item.version)
    return _status(events, name, doc, events.last_position, events._clock())


def skip_projection(events: HostEvents, name: str) -> dict[str, Any]:
    """Move a stuck projection past its failing event without applying it.

    The event and the error are recorded in the projection's dead-letter namespace
    (``reason: "skipped"``) and the checkpoint moves past the event, in one
    transaction; the checkpoint also keeps the skip (``skipped`` count and
    ``last_skipped``).  Returns the dead-letter record.  Raises
    :class:`~clawstate.VersionConflict` if a runner moved the checkpoint meanwhile."""
    item, doc, failure = _stuck(events, name)
    position = int(failure["position"])
    found = events._read_rows(position - 1, 1, None)[0]
    event = found[0] if found and found[0].position == position else None
    record = _dead_record(name, event, failure, "skipped", events._clock())
    dead = str(doc.get("dead_letter") or DEAD_LETTERS_NS)
    doc.pop("failure", None)
    doc.update(
        position=position,
        skipped=int(doc.get("skipped", 0)) + 1,
        last_skipped={k: record[k] for k in ("position", "stream", "version", "type", "id")}
        | {"error_type": record["error_type"], "error": record["error"], "at": record["at"]},
        updated_at=time.time(),
    )
    with events.store.transaction() as tx:
        tx.namespace(dead).put(_dead_key(name, position), record)
        tx._system_namespace(PROJECTIONS_NS).put(name, doc, if_version=item.version)
    return record


def _dead_key(name: str, position: int | None) -> str:
    """The dead-letter key of ``name``'s event at ``position`` (None: the prefix)."""
    return f"{name}/" if position is None else f"{name}/{position:020d}"


def _dead_record(
    name: str, event: RecordedEvent | None, failure: dict[str, Any], reason: str, now: float
) -> dict[str, Any]:
    """A dead letter: the whole event (if the log still holds it) and why it is here."""
    record: dict[str, Any] = {
        "projection": name,
        "reason": reason,
        "position": int(failure["position"]),
        "stream": failure.get("stream"),
        "version": failure.get("version"),
        "type": failure.get("type"),
        "id": failure.get("id"),
        "error_type": failure.get("error_type"),
        "error": failure.get("error"),
        "attempts": int(failure.get("attempts", 0)),
        "at": now,
    }
    if event is not None:
        record.update(
            stream=event.stream,
            version=event.version,
            type=event.type,
            id=event.id,
            data=event.data,
            metadata=event.metadata,
            schema_version=event.schema_version,
            recorded_at=event.recorded_at,
        )
    return record


#: What one step of a projection came to (see ``ProjectionRunner._step``).
_IDLE, _PROGRESS, _RETRY, _STOPPED = "idle", "progress", "retry", "stopped"


class ProjectionRunner:
    """Runs projections over the event store (``store.events.projection_runner([...])``).

    Thread-safe to :meth:`stop` from another thread; run one runner per thread.
    """

    def __init__(self, events: HostEvents, projections: list[Projection], *, batch: int = 500):
        check_int(batch, "batch", 1)  # a SQL LIMIT: past 64 bits the driver overflows
        self._events = events
        self._store = events.store
        self._batch = batch
        self._cp = self._store._system_namespace(PROJECTIONS_NS)
        self._by_name: dict[str, Projection] = {}
        for p in projections:
            if not isinstance(p, Projection):
                raise InvalidRequest("projections", f"must be Projection instances, got {p!r}")
            check_key(p.name, 256, field="name")
            check_namespace_name(p.read_model, field="namespace", error=InvalidRequest)
            if not isinstance(p.failure, FailurePolicy):
                raise InvalidRequest(
                    "failure", f"must be a clawstate.events.FailurePolicy, got {p.failure!r}"
                )
            if p.name in self._by_name:
                raise InvalidRequest("projections", f"two projections are named {p.name!r}")
            self._by_name[p.name] = p
        self._stop = threading.Event()
        #: errors outside the handlers (the backend), by projection: shown in status()
        self._errors: dict[str, str] = {}
        #: the log position each active projection has looked at (for the idle wait)
        self._scanned: dict[str, int] = {}
        #: monotonic time before which a failing projection is not tried again
        self._retry_at: dict[str, float] = {}
        #: the growing pause after an error outside the handler, by projection
        self._backoff: dict[str, float] = {}
        #: the last exception each projection's handler raised in this runner
        self._handler_errors: dict[str, Exception] = {}
        # Pages commit read-model writes + 1 checkpoint (+ 1 dead letter) in one transaction.
        self._max_writes = max(1, self._store.config.limits.max_batch - 2)

    @property
    def projections(self) -> list[Projection]:
        return list(self._by_name.values())

    def _projection(self, name: str) -> Projection:
        p = self._by_name.get(name)
        if p is None:
            raise InvalidRequest("name", f"this runner has no projection named {name!r}")
        return p

    def step(self, projection: Projection) -> int:
        """Handle one page of events for ``projection``; returns how many events were
        handled — -1 when nothing new was there (idle), or when the projection is
        stopped at a failing event or waits to retry one (see :meth:`status`)."""
        handled, outcome, _ = self._step(projection)
        return -1 if outcome != _PROGRESS and handled == 0 else handled

    def _step(self, projection: Projection) -> tuple[int, str, float]:
        """One page: (events handled, what happened, pause before a retry)."""
        name = projection.name
        item = self._cp.get(name)
        doc: dict[str, Any] = dict(item.value) if item is not None else {}
        version = item.version if item is not None else None
        previous = doc.pop("failure", None)
        if previous and previous.get("stopped"):
            self._scanned.pop(name, None)
            return 0, _STOPPED, 0.0
        if previous and float(previous.get("retry_at", 0.0)) > time.time():
            # Another runner's attempt failed: honour its pause (runners share the policy).
            self._scanned.pop(name, None)
            return 0, _RETRY, float(previous["retry_at"]) - time.time()
        position = int(doc.get("position", 0))
        events, end = self._events._read_rows(position, self._batch, projection.event_filter())
        self._scanned[name] = max(position, end)
        if end <= position:
            return 0, _IDLE, 0.0
        view = ReadModel(self._store.namespace(projection.read_model))
        handled = total = 0
        try:
            for event in events:
                view._begin()
                try:
                    projection.handle_event(event, view)
                except Exception as exc:  # the handler's error: the policy decides
                    view._undo()
                    return self._failed(
                        projection, view, doc, version, total, handled, event, exc, previous
                    )
                handled += 1
                total += 1
                doc["last_recorded_at"] = event.recorded_at
                if len(view) >= self._max_writes:
                    version = self._commit(projection, view, doc, event.position, version, handled)
                    handled = 0
            self._commit(projection, view, doc, end, version, handled)
        except VersionConflict:
            # Another runner moved (or reset) this checkpoint: its page won, ours is dropped.
            return 0, _PROGRESS, 0.0
        return total, _PROGRESS, 0.0

    def _failed(
        self,
        projection: Projection,
        view: ReadModel,
        doc: dict[str, Any],
        version: int | None,
        total: int,
        handled: int,
        event: RecordedEvent,
        exc: Exception,
        previous: dict[str, Any] | None,
    ) -> tuple[int, str, float]:
        """Apply the projection's failure policy to ``event``, whose handler raised
        ``exc``: the events before it commit, then retry, stop or park."""
        name = projection.name
        policy = projection.failure
        now = time.time()
        self._handler_errors[name] = exc
        same = previous is not None and previous.get("position") == event.position
        attempts = int(previous.get("attempts", 0)) + 1 if same and previous else 1
        failure = {
            "position": event.position,
            "stream": event.stream,
            "version": event.version,
            "type": event.type,
            "id": event.id,
            "error_type": type(exc).__name__,
            "error": str(exc)[:MAX_ERROR_CHARS],
            "attempts": attempts,
            "since": previous.get("since", now) if same and previous else now,
            "at": now,
            "stopped": False,
        }
        self._scanned.pop(name, None)
        if attempts <= policy.retries:
            delay = policy.delay(attempts)
            log.warning(
                "projection %s: handler failed at position %d (attempt %d of %d), retrying "
                "in %.3g s: %s: %s",
                name,
                event.position,
                attempts,
                policy.retries + 1,
                delay,
                failure["error_type"],
                failure["error"],
            )
            failure["retry_at"] = now + delay
            doc["failure"] = failure
            self._commit(projection, view, doc, event.position - 1, version, handled)
            return total, _RETRY, delay
        if policy.then == "park":
            log.error(
                "projection %s: parked the event at position %d in %r after %d attempts: %s: %s",
                name,
                event.position,
                policy.dead_letter,
                attempts,
                failure["error_type"],
                failure["error"],
            )
            record = _dead_record(name, event, failure, "parked", now)
            doc["parked"] = int(doc.get("parked", 0)) + 1
            self._commit(
                projection,
                view,
                doc,
                event.position,
                version,
                handled,
                dead=(policy.dead_letter, _dead_key(name, event.position), record),
            )
            return total, _PROGRESS, 0.0
        log.error(
            "projection %s: stopped at position %d after %d attempts: %s: %s "
            "(clawstate projections retry|skip %s)",
            name,
            event.position,
            attempts,
            failure["error_type"],
            failure["error"],
            name,
        )
        failure["stopped"] = True
        doc["failure"] = failure
        self._commit(projection, view, doc, event.position - 1, version, handled)
        return total, _STOPPED, 0.0

    def _commit(
        self,
        projection: Projection,
        view: ReadModel,
        doc: dict[str, Any],
        position: int,
        version: int | None,
        handled: int,
        dead: tuple[str, str, dict[str, Any]] | None = None,
    ) -> int:
        doc.update(
            position=position,
            events=int(doc.get("events", 0)) + handled,
            namespace=projection.read_model,
            dead_letter=projection.failure.dead_letter,
            updated_at=time.time(),
        )
        with self._store.transaction() as tx:
            view._flush(tx)
            if dead is not None:
                tx.namespace(dead[0]).put(dead[1], dead[2])
            cp = tx._system_namespace(PROJECTIONS_NS)
            if version is None:
                cp.put(projection.name, doc, if_absent=True)
            else:
                cp.put(projection.name, doc, if_version=version)
        last = tx.result[-1]
        assert not isinstance(last, bool)
        return last.version

    def run_until_idle(self, names: Iterable[str] | None = None) -> int:
        """Process every event available now; returns how many were handled.

        A failing handler is retried as its :class:`FailurePolicy` says (sleeping the
        pauses), then its event is parked or the projection stops; the other
        projections still run, and then :class:`ProjectionStopped` is raised for the
        first stopped one (also when it was stopped before this call)."""
        chosen = self.projections if names is None else [self._projection(n) for n in names]
        total = 0
        stopped: list[Projection] = []
        for projection in chosen:
            while not self._stop.is_set():
                n, outcome, delay = self._step(projection)
                total += n
                if outcome == _RETRY:
                    self._stop.wait(delay)
                elif outcome == _STOPPED:
                    stopped.append(projection)
                    break
                elif outcome == _IDLE:
                    break
        if stopped:
            first = stopped[0].name
            raise self._stopped_error(first) from self._handler_errors.get(first)
        return total

    def _stopped_error(self, name: str) -> ProjectionStopped:
        item = self._cp.get(name)
        failure = (item.value.get("failure") if item is not None else None) or {}
        return ProjectionStopped(
            name,
            int(failure.get("position", 0)),
            str(failure.get("error_type")),
            str(failure.get("error")),
        )

    def run_forever(self, stop: threading.Event | None = None, *, idle_wait: float = 1.0) -> None:
        """Process events as they commit until :meth:`stop` (or ``stop`` is set).

        A failing handler is retried and then parked or stopped as its policy says
        (a stopped projection is checked again every ``idle_wait``, so a ``retry`` or
        ``skip`` from another process resumes it); an error outside the handler (the
        backend is unavailable) is logged, shown in :meth:`status` and retried after a
        growing pause.  The other projections go on either way.
        """
        stop_events = [self._stop] if stop is None else [self._stop, stop]
        while not any(e.is_set() for e in stop_events):
            if not self._round():
                after, wait = self._idle_plan(idle_wait)
                if after is None:
                    self._stop.wait(wait)  # every projection waits to retry or is stopped
                    continue
                try:
                    self._events._log.wait_for_events(after, wait)
                except ClawStateError:
                    self._stop.wait(wait)

    def _round(self) -> bool:
        """One pass of :meth:`run_forever` over the projections not pausing before a
        retry; True if any made progress.  (The async runner drives the same rounds.)"""
        progressed = False
        for projection in self.projections:
            name = projection.name
            if self._retry_at.get(name, 0.0) > time.monotonic():
                continue
            try:
                _, outcome, delay = self._step(projection)
            except Exception as exc:  # not the handler's: the backend, most likely
                self._errors[name] = f"{type(exc).__name__}: {exc}"
                log.exception("projection %s failed; retrying", name)
                self._backoff[name] = min(30.0, self._backoff.get(name, 0.5) * 2)
                self._retry_at[name] = time.monotonic() + self._backoff[name]
                self._scanned.pop(name, None)
                continue
            self._errors.pop(name, None)
            self._backoff.pop(name, None)
            self._retry_at.pop(name, None)
            if outcome == _RETRY:
                self._retry_at[name] = time.monotonic() + delay
            elif outcome == _PROGRESS:
                progressed = True
        return progressed

    def _idle_plan(self, idle_wait: float) -> tuple[int | None, float]:
        """After an idle round: the log position to wait for events after (None: no
        projection follows the log now) and how long, at most ``idle_wait`` and no
        longer than until the next retry is due."""
        wait = idle_wait
        if self._retry_at:
            wait = max(0.0, min(wait, min(self._retry_at.values()) - time.monotonic()))
        return min(self._scanned.values(), default=None), wait

    def stop(self) -> None:
        self._stop.set()

    def reset(self, name: str) -> int:
        """Forget the projection's checkpoint and empty its read model and dead letters
        (see the module docstring about concurrent runners); returns the items removed."""
        projection = self._projection(name)
        self._scanned.pop(name, None)
        self._retry_at.pop(name, None)
        return reset_projection(self._events, name, projection.read_model)

    def rebuild(self, name: str) -> int:
        """Reset the projection, then replay it from position 0; returns events handled."""
        self.reset(name)
        return self.run_until_idle([name])

    def retry(self, name: str) -> ProjectionStatus:
        """Try the projection's stuck event again now (see :func:`retry_projection`)."""
        self._projection(name)
        self._retry_at.pop(name, None)
        return retry_projection(self._events, name)

    def skip(self, name: str) -> dict[str, Any]:
        """Move the projection past its stuck event, recording it in the dead-letter
        namespace (see :func:`skip_projection`); returns the dead-letter record."""
        self._projection(name)
        self._retry_at.pop(name, None)
        return skip_projection(self._events, name)

    def status(self) -> list[ProjectionStatus]:
        """This runner's projections (also those that never committed), with their lag
        and last error."""
        last = self._events.last_position
        now = self._events._clock()
        out = []
        for name, projection in self._by_name.items():
            item = self._cp.get(name)
            doc = dict(item.value) if item is not None else {"namespace": projection.read_model}
            if name in self._errors:
                doc["last_error"] = self._errors[name]
            out.append(_status(self._events, name, doc, last, now))
        return out
