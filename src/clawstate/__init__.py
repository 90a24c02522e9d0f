"""clawstate: one Python API for every kind of persistent state.

>>> import clawstate
>>> store = clawstate.open("memory://")
>>> carts = store.namespace("carts")
>>> carts.put("u42", {"items": []}).version
1

See README.md and docs/ for the full tour; DESIGN.md fixes these public names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._open import open, open_async
from .api import (
    AsyncEventsAPI,
    AsyncNamespaceAPI,
    AsyncStoreAPI,
    AsyncTransactionAPI,
    EventsAPI,
    NamespaceAPI,
    StoreAPI,
    TransactionAPI,
)
from .cache import memoize
from .errors import (
    BackendUnavailable,
    ClawStateError,
    ConfigError,
    FencingError,
    Forbidden,
    IntegrityError,
    InvalidRequest,
    InvalidTransition,
    LockTimeout,
    LogTrimmed,
    RateLimited,
    Unauthorized,
    VersionConflict,
    WrongExpectedVersion,
)
from .store import Namespace, Store, Transaction, TxNamespace, Watch
from .types import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    Change,
    CheckReport,
    Event,
    ExpectedVersion,
    Instance,
    Item,
    Lease,
    Page,
    QueryPlan,
    RecordedEvent,
    TimerInfo,
    Transition,
)

if TYPE_CHECKING:
    from .aio import AsyncNamespace, AsyncStore, AsyncTransaction, AsyncWatch

__version__ = "0.1.0"

_ASYNC_NAMES = frozenset({"AsyncNamespace", "AsyncStore", "AsyncTransaction", "AsyncWatch"})


def __getattr__(name: str) -> Any:
    # The async twin (and asyncio with it) loads on first use: sync-only
    # processes — workers, the CLI — do not pay for it.
    if name in _ASYNC_NAMES:
        from . import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'clawstate' has no attribute {name!r}")


__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "AsyncEventsAPI",
    "AsyncNamespace",
    "AsyncNamespaceAPI",
    "AsyncStore",
    "AsyncStoreAPI",
    "AsyncTransaction",
    "AsyncTransactionAPI",
    "AsyncWatch",
    "BackendUnavailable",
    "Change",
    "CheckReport",
    "ClawStateError",
    "ConfigError",
    "Event",
    "EventsAPI",
    "ExpectedVersion",
    "FencingError",
    "Forbidden",
    "Instance",
    "IntegrityError",
    "InvalidRequest",
    "InvalidTransition",
    "Item",
    "Lease",
    "LockTimeout",
    "LogTrimmed",
    "Namespace",
    "NamespaceAPI",
    "Page",
    "QueryPlan",
    "RateLimited",
    "RecordedEvent",
    "Store",
    "StoreAPI",
    "TimerInfo",
    "Transaction",
    "TransactionAPI",
    "Transition",
    "TxNamespace",
    "Unauthorized",
    "VersionConflict",
    "Watch",
    "WrongExpectedVersion",
    "__version__",
    "memoize",
    "open",
    "open_async",
]
