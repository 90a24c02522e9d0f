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

Checkpoints are items of the ``_projections`` namespace, on the event store's
backend; a read-model namespace must live on that backend too (a transaction is
atomic within one backend only).  :meth:`ProjectionRunner.rebuild` resets a
projection — checkpoint first, then the read model — and replays it from zero;
do not rebuild while another runner runs the same projection.

The runner runs in-process (:meth:`~ProjectionRunner.run_until_idle` in tests
and scripts, :meth:`~ProjectionRunner.run_forever` in a thread) and is what
``clawstate worker`` drives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

from .._validate import check_int, check_key
from ..config import check_namespace_name
from ..errors import ClawStateError, InvalidRequest, VersionConflict
from ..types import RecordedEvent
from .store import PROJECTIONS_NS, EventFilter

if TYPE_CHECKING:
    from ..store import Namespace, Transaction
    from .store import EventStore

__all__ = [
    "EventCounts",
    "Projection",
    "ProjectionRunner",
    "ProjectionStatus",
    "ReadModel",
    "handles",
    "projection_status",
    "reset_projection",
]

log = logging.getLogger("clawstate.projections")

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__clawstate_handles__"
_DELETED: Any = object()


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
    the committed state.
    """

    def __init__(self, ns: Namespace) -> None:
        self._ns = ns
        self._pending: dict[str, Any] = {}

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
        self._pending[key] = value

    def delete(self, key: str) -> None:
        check_key(key)
        self._pending[key] = _DELETED

    def update(self, key: str, change: Callable[[Any], Any], default: Any = None) -> Any:
        """``put(key, change(get(key, default)))``; returns the new value."""
        value = change(self.get(key, default))
        self.put(key, value)
        return value

    def __len__(self) -> int:
        return len(self._pending)

    def _flush(self, tx: Transaction) -> None:
        from ..store import TxNamespace

        txn = TxNamespace(tx, self._ns)
        for key, value in self._pending.items():
            if value is _DELETED:
                txn.delete(key)
            else:
                txn.put(key, value)
        self._pending = {}


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
    and override :meth:`handle_event` to see every event.
    """

    name: ClassVar[str] = ""
    namespace: ClassVar[str | None] = None
    stream_prefix: ClassVar[str] = ""
    types: ClassVar[tuple[str, ...] | None] = None
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
    them was recorded (0 when caught up)."""

    name: str
    namespace: str
    position: int
    events: int
    lag_events: int
    lag_seconds: float
    updated_at: float | None = None
    last_error: str | None = None


def _status(
    events: EventStore, name: str, doc: dict[str, Any], last: int, now: float
) -> ProjectionStatus:
    position = int(doc.get("position", 0))
    lag_seconds = 0.0
    if last > position:
        nxt = events._log.read_all(position, 1, "", ())[0]
        if nxt:
            lag_seconds = max(0.0, now - nxt[0][8])
    return ProjectionStatus(
        name,
        str(doc.get("namespace", name)),
        position,
        int(doc.get("events", 0)),
        max(0, last - position),
        lag_seconds,
        doc.get("updated_at"),
        doc.get("last_error"),
    )


def projection_status(events: EventStore) -> list[ProjectionStatus]:
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


def reset_projection(events: EventStore, name: str, namespace: str | None = None) -> int:
    """Forget a projection's checkpoint and empty its read model; returns the number of
    read-model items removed.  ``namespace`` defaults to the one its checkpoint names."""
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
    ns = events.store.namespace(namespace)
    removed = 0
    limit = min(500, events.store.config.limits.max_batch)
    while True:
        page = ns.scan(limit=limit)
        if not page.items:
            return removed
        with events.store.transaction() as tx:
            txn = tx.namespace(namespace)
            for it in page.items:
                txn.delete(it.key)
        removed += len(page.items)


class ProjectionRunner:
    """Runs projections over the event store (``store.events.projection_runner([...])``).

    Thread-safe to :meth:`stop` from another thread; run one runner per thread.
    """

    def __init__(self, events: EventStore, projections: list[Projection], *, batch: int = 500):
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
            if p.name in self._by_name:
                raise InvalidRequest("projections", f"two projections are named {p.name!r}")
            self._by_name[p.name] = p
        self._stop = threading.Event()
        self._errors: dict[str, str] = {}
        self._scanned: dict[str, int] = {}
        # Pages commit read-model writes + 1 checkpoint in one transaction.
        self._max_writes = max(1, self._store.config.limits.max_batch - 1)

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
        handled — -1 when nothing new was there (idle)."""
        item = self._cp.get(projection.name)
        doc: dict[str, Any] = dict(item.value) if item is not None else {}
        version = item.version if item is not None else None
        position = int(doc.get("position", 0))
        events, end = self._events._read_rows(position, self._batch, projection.event_filter())
        self._scanned[projection.name] = max(position, end)
        if end <= position:
            return -1
        view = ReadModel(self._store.namespace(projection.read_model))
        handled = 0
        try:
            for event in events:
                projection.handle_event(event, view)
                handled += 1
                doc["last_recorded_at"] = event.recorded_at
                if len(view) >= self._max_writes:
                    version = self._commit(projection, view, doc, event.position, version, handled)
                    handled = 0
            self._commit(projection, view, doc, end, version, handled)
        except VersionConflict:
            # Another runner moved (or reset) this checkpoint: its page won, ours is dropped.
            return 0
        self._errors.pop(projection.name, None)
        return len(events)

    def _commit(
        self,
        projection: Projection,
        view: ReadModel,
        doc: dict[str, Any],
        position: int,
        version: int | None,
        handled: int,
    ) -> int:
        from ..store import TxNamespace

        doc.update(
            position=position,
            events=int(doc.get("events", 0)) + handled,
            namespace=projection.read_model,
            updated_at=time.time(),
        )
        with self._store.transaction() as tx:
            view._flush(tx)
            cp = TxNamespace(tx, self._cp)
            if version is None:
                cp.put(projection.name, doc, if_absent=True)
            else:
                cp.put(projection.name, doc, if_version=version)
        last = tx.result[-1]
        assert not isinstance(last, bool)
        return last.version

    def run_until_idle(self, names: Iterable[str] | None = None) -> int:
        """Process every event available now; returns how many were handled."""
        chosen = self.projections if names is None else [self._projection(n) for n in names]
        total = 0
        for projection in chosen:
            while True:
                n = self.step(projection)
                if n < 0:
                    break
                total += n
        return total

    def run_forever(self, stop: threading.Event | None = None, *, idle_wait: float = 1.0) -> None:
        """Process events as they commit until :meth:`stop` (or ``stop`` is set).

        A failing projection (its handler raised, or the backend is unavailable) is
        logged, shown in :meth:`status` and retried after a pause; the others go on.
        """
        stop_events = [self._stop] if stop is None else [self._stop, stop]
        paused_until: dict[str, float] = {}
        backoff: dict[str, float] = {}
        while not any(e.is_set() for e in stop_events):
            progressed = False
            for projection in self.projections:
                name = projection.name
                if paused_until.get(name, 0.0) > time.monotonic():
                    continue
                try:
                    progressed = self.step(projection) >= 0 or progressed
                    backoff.pop(name, None)
                except Exception as exc:  # a handler bug must not stop the other projections
                    self._errors[name] = f"{type(exc).__name__}: {exc}"
                    log.exception("projection %s failed; retrying", name)
                    backoff[name] = min(30.0, backoff.get(name, 0.5) * 2)
                    paused_until[name] = time.monotonic() + backoff[name]
            if not progressed:
                after = min(self._scanned.values(), default=0)
                try:
                    self._events._log.wait_for_events(after, idle_wait)
                except ClawStateError:
                    time.sleep(idle_wait)

    def stop(self) -> None:
        self._stop.set()

    def reset(self, name: str) -> int:
        """Forget the projection's checkpoint and empty its read model (see the module
        docstring about concurrent runners); returns the items removed."""
        projection = self._projection(name)
        self._scanned.pop(name, None)
        return reset_projection(self._events, name, projection.read_model)

    def rebuild(self, name: str) -> int:
        """Reset the projection, then replay it from position 0; returns events handled."""
        self.reset(name)
        return self.run_until_idle([name])

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
