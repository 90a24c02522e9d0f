"""Event-sourced aggregates: state rebuilt from a stream, changed by recording events.

An :class:`Aggregate` subclass holds its state in plain attributes and one
apply-method per event type (``@applies("ItemAdded")``, or a method named
``apply_ItemAdded``).  Commands call :meth:`Aggregate.record`, which applies
the event at once and queues it; :meth:`Repository.save` appends the queue
with the version the aggregate was loaded at as ``expected_version`` — so two
writers racing on one aggregate cannot both win — and, every ``snapshot_every``
events, writes a snapshot in the same transaction.  :meth:`Repository.update`
wraps load-change-save in the optimistic retry every such race needs.

Contract for subclasses: ``__init__(self, id)`` sets the initial state and
records nothing (loading calls it before replaying events); creation is a
classmethod that calls ``cls(id)`` and records the first event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from .._retry import retry_on_conflict
from ..errors import InvalidRequest
from ..types import AppendResult, Event, RecordedEvent
from ._host import HostEvents

if TYPE_CHECKING:
    from .snapshots import Snapshots

__all__ = ["Aggregate", "Repository", "applies", "retry_on_conflict"]

F = TypeVar("F", bound=Callable[..., Any])
A = TypeVar("A", bound="Aggregate")

_MARK = "__clawstate_applies__"


def applies(*types: str) -> Callable[[F], F]:
    """Mark a method as the apply-method of events of ``types``: ``fn(self, data)``."""
    if not types or not all(isinstance(t, str) and t for t in types):
        raise InvalidRequest("types", "applies() needs one or more event type names")

    def mark(fn: F) -> F:
        setattr(fn, _MARK, types)
        return fn

    return mark


class Aggregate:
    """Base class of event-sourced aggregates (see the module docstring)::

    class Cart(Aggregate):
        def __init__(self, id):
            super().__init__(id)
            self.items = []

        @classmethod
        def create(cls, id):
            cart = cls(id)
            cart.record("Created")
            return cart

        def add(self, sku):
            self.record("ItemAdded", {"sku": sku})

        @applies("ItemAdded")
        def _added(self, data):
            self.items.append(data["sku"])
    """

    #: the stream of aggregate ``id`` is ``stream_prefix + id`` (None: ``"ClassName-"``)
    stream_prefix: ClassVar[str | None] = None
    #: bump when :meth:`snapshot_state`'s layout changes: older snapshots are ignored
    snapshot_schema: ClassVar[int] = 1
    #: event type -> name of its apply-method (built per subclass)
    _appliers: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        appliers: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                types = getattr(fn, _MARK, None)
                if types:
                    for t in types:
                        appliers[t] = attr
                elif attr.startswith("apply_") and attr != "apply_event" and callable(fn):
                    appliers[attr[len("apply_") :]] = attr
        cls._appliers = appliers

    def __init__(self, id: str) -> None:
        self.id = id
        #: the version of the last event applied or recorded (0: none)
        self.version = 0
        self._pending: list[Event] = []

    @classmethod
    def stream_for(cls, id: str) -> str:
        prefix = cls.stream_prefix if cls.stream_prefix is not None else f"{cls.__name__}-"
        return prefix + id

    @property
    def stream(self) -> str:
        return self.stream_for(self.id)

    def record(
        self,
        type: str,
        data: dict[str, Any] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        schema_version: int = 1,
    ) -> Event:
        """Apply a new event to this aggregate now and queue it for :meth:`Repository.save`."""
        event = Event(type, {} if data is None else data, metadata, schema_version=schema_version)
        self._mutate(type, event.data)
        self._pending.append(event)
        self.version += 1
        return event

    def _mutate(self, type: str, data: dict[str, Any]) -> None:
        name = self._appliers.get(type)
        if name is not None:
            getattr(self, name)(data)

    def apply_event(self, event: RecordedEvent) -> None:
        """Replay a stored event (types without an apply-method change nothing)."""
        self._mutate(event.type, event.data)
        self.version = event.version

    @property
    def pending_events(self) -> list[Event]:
        """Recorded events not saved yet."""
        return list(self._pending)

    def snapshot_state(self) -> dict[str, Any]:
        """The state a snapshot keeps: public attributes except ``id`` and ``version``.

        Override (with :meth:`restore_state`) when the state is not JSON-compatible."""
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_") and k not in ("id", "version")
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        """Set the state :meth:`snapshot_state` returned."""
        self.__dict__.update(state)


class _RepositoryEvents(HostEvents, Protocol):
    """The event store as a repository uses it: :class:`~._host.HostEvents` and its
    snapshots (named here, not in ``_host``, which must not import the parts)."""

    @property
    def snapshots(self) -> Snapshots: ...


class Repository(Generic[A]):
    """Loads and saves aggregates of one class (``store.events.repository(Cart)``)."""

    def __init__(
        self, events: _RepositoryEvents, cls: type[A], *, snapshot_every: int | None = None
    ) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Aggregate)):
            raise InvalidRequest("cls", f"must be an Aggregate subclass, got {cls!r}")
        if snapshot_every is not None and (type(snapshot_every) is not int or snapshot_every < 1):
            raise InvalidRequest(
                "snapshot_every", f"must be an integer >= 1, got {snapshot_every!r}"
            )
        self._events = events
        self.cls = cls
        self.snapshot_every = snapshot_every

    def get(self, id: str) -> A | None:
        """The aggregate rebuilt from its snapshot (if any) and events, or None."""
        stream = self.cls.stream_for(id)
        agg = self.cls(id)
        start: int | None = None
        if self.snapshot_every is not None:
            snap = self._events.snapshots.load(stream)
            if snap is not None and snap.schema == self.cls.snapshot_schema:
                agg.restore_state(snap.state)
                agg.version = snap.version
                start = snap.version + 1
        events = self._events.read(stream, start)
        if not events and start is None:
            return None
        apply = agg.apply_event
        for event in events:
            apply(event)
        return agg

    def load(self, id: str) -> A:
        """Like :meth:`get`, but raises ``KeyError`` when the aggregate does not exist."""
        agg = self.get(id)
        if agg is None:
            raise KeyError(f"no {self.cls.__name__} {id!r}")
        return agg

    def save(self, agg: A) -> AppendResult | None:
        """Append the aggregate's pending events, expecting the version it was loaded at
        (raises :class:`~clawstate.WrongExpectedVersion` if another writer got there
        first); with ``snapshot_every``, snapshot in the same transaction whenever the
        version crosses a multiple of it.  None when nothing was pending."""
        pending = agg._pending
        if not pending:
            return None
        expected = agg.version - len(pending)
        stream = agg.stream
        every = self.snapshot_every
        if every is not None and expected // every != agg.version // every:
            with self._events.store.transaction() as tx:
                tx.events.append(stream, pending, expected_version=expected)
                self._events.snapshots.save_in(
                    tx, stream, agg.version, agg.snapshot_state(), schema=self.cls.snapshot_schema
                )
            result = tx.appended[0]
        else:
            result = self._events.append(stream, pending, expected_version=expected)
        agg._pending = []
        return result

    def update(self, id: str, change: Callable[[A], object], *, retries: int = 10) -> A:
        """Load, ``change(aggregate)``, save — retried on a version conflict (optimistic
        concurrency: the change function must be safe to run again)."""

        def attempt() -> A:
            agg = self.load(id)
            change(agg)
            self.save(agg)
            return agg

        return retry_on_conflict(attempt, retries)
