"""What the event store needs from the store that hosts it, and what its parts
need from the event store, as Protocols.

The event store is built on the facade: its snapshots, checkpoints and
dead letters are items in namespaces, its appends join the facade's
transactions.  It names the facade only through these Protocols, never by
importing ``clawstate.store``: the facade imports the event store (``store.events``,
``tx.events``), so an import back would close a loop between the two layers.
:class:`~clawstate.Store`, :class:`~clawstate.Namespace`,
:class:`~clawstate.Transaction` and :class:`~clawstate.TxNamespace` satisfy them
structurally (mypy checks it where the facade hands itself over), as the audit
chain's ``AuditStore`` protocol does for the server.

One layer down the same holds inside the event store: :class:`.store.EventStore`
builds its subscriptions, projection runners, snapshots and repositories, so
they name it only as :class:`HostEvents` (and ``tx.events`` as
:class:`HostTxEvents`) — the few members they use — and this module takes
nothing from :mod:`.store`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..backends.base import Backend, EventLog, EventRow, EventWrite
    from ..config import Config
    from ..types import AppendResult, Event, ExpectedVersion, Item, Page, RecordedEvent
    from ._common import EventFilter

__all__ = [
    "HostEvents",
    "HostNamespace",
    "HostStore",
    "HostTransaction",
    "HostTxEvents",
    "HostTxNamespace",
]


class HostNamespace(Protocol):
    """A namespace (:class:`clawstate.Namespace`) as the event store uses it."""

    name: str

    def get(self, key: str) -> Item | None: ...

    def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        idempotency_key: str | None = None,
        keep_ttl: bool = False,
    ) -> Item: ...

    def delete(
        self, key: str, *, if_version: int | None = None, idempotency_key: str | None = None
    ) -> bool: ...

    def scan(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page: ...


class HostTxNamespace(Protocol):
    """A namespace inside a transaction (:class:`clawstate.TxNamespace`)."""

    name: str

    def get(self, key: str) -> Item | None: ...

    def get_many(self, keys: Iterable[str]) -> dict[str, Item]: ...

    def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        keep_ttl: bool = False,
    ) -> None: ...

    def delete(self, key: str, *, if_version: int | None = None) -> None: ...


class HostTransaction(Protocol):
    """A transaction (:class:`clawstate.Transaction`): writes and appends, one commit."""

    result: list[Item | bool]
    appended: list[AppendResult]

    @property
    def events(self) -> HostTxEvents: ...

    def namespace(self, name: str) -> HostTxNamespace: ...

    def _system_namespace(self, name: str) -> HostTxNamespace: ...

    def _add_events(self, write: EventWrite, parts: list[Any], backend: Backend) -> None: ...

    def __enter__(self) -> HostTransaction: ...

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...


class HostStore(Protocol):
    """The store (:class:`clawstate.Store`) the event store lives in."""

    config: Config
    _clock: Callable[[], float]

    @property
    def events(self) -> HostEvents: ...

    def namespace(self, name: str, /) -> HostNamespace: ...

    def _system_namespace(self, name: str) -> HostNamespace: ...

    def _backend_named(self, name: str, namespace: str) -> Backend: ...

    def transaction(self, *, idempotency_key: str | None = None) -> HostTransaction: ...


class HostTxEvents(Protocol):
    """``tx.events`` (:class:`.store.TxEvents`) as a repository uses it: an append
    that commits with the transaction."""

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ...
    ) -> None: ...


class HostEvents(Protocol):
    """The event store (:class:`.store.EventStore`) as its parts use it.

    Subscriptions, projection runners, snapshots and repositories read the log and
    the store through these members only.  ``clawstate.client``'s ``RemoteEvents``
    imitates this surface over HTTP (its log and store only in the part these
    classes call), which is how they run against a server."""

    @property
    def store(self) -> HostStore: ...

    @property
    def _log(self) -> EventLog: ...

    @property
    def _max_stream(self) -> int: ...

    @property
    def last_position(self) -> int: ...

    def _clock(self) -> float: ...

    def _decode(self, rows: list[EventRow]) -> list[RecordedEvent]: ...

    def _read_rows(
        self, after: int, limit: int, flt: EventFilter | None
    ) -> tuple[list[RecordedEvent], int]: ...

    def read(self, stream: str, from_version: int | None = None) -> list[RecordedEvent]:
        """A stream's events from ``from_version`` (a repository replaying an
        aggregate; the store's ``backwards`` and ``limit`` are not needed here)."""

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ...
    ) -> AppendResult: ...
