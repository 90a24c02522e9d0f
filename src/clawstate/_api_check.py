"""mypy's proof that every face of the store satisfies :mod:`clawstate.api`.

Nothing here is meant to run (importing it costs only the imports): each function
returns its argument typed as a Protocol, so ``mypy --strict src`` fails the moment a
method is missing from one face, or its signature drifts (a renamed keyword, a
different default type, a sync method where the twin awaits).  The checks are
structural all the way down: ``Store`` satisfies ``StoreAPI`` only if the
``Namespace`` its ``namespace()`` returns satisfies ``NamespaceAPI``, and so on.

The remote classes are checked here rather than in ``clawstate.client`` so the
contract has one home, beside the Protocols.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .aio import AsyncNamespace, AsyncStore, AsyncTransaction, AsyncTxNamespace, AsyncWatch
    from .api import (
        AsyncEventsAPI,
        AsyncNamespaceAPI,
        AsyncSnapshotsAPI,
        AsyncStoreAPI,
        AsyncSubscriptionAPI,
        AsyncTransactionAPI,
        AsyncTxEventsAPI,
        AsyncTxNamespaceAPI,
        AsyncWatchAPI,
        EventsAPI,
        NamespaceAPI,
        SnapshotsAPI,
        StoreAPI,
        SubscriptionAPI,
        TransactionAPI,
        TxEventsAPI,
        TxNamespaceAPI,
        WatchAPI,
    )
    from .client import (
        AsyncRemoteEvents,
        AsyncRemoteNamespace,
        AsyncRemoteSnapshots,
        AsyncRemoteStore,
        AsyncRemoteSubscription,
        AsyncRemoteTransaction,
        AsyncRemoteTxEvents,
        AsyncRemoteTxNamespace,
        AsyncRemoteWatch,
        RemoteEvents,
        RemoteNamespace,
        RemoteSnapshots,
        RemoteStore,
        RemoteSubscription,
        RemoteTransaction,
        RemoteTxEvents,
        RemoteTxNamespace,
        RemoteWatch,
    )
    from .events.aio import (
        AsyncEventStore,
        AsyncSnapshots,
        AsyncSubscription,
        AsyncTxEvents,
    )
    from .events.snapshots import Snapshots
    from .events.store import EventStore, TxEvents
    from .events.subscriptions import Subscription
    from .store import Namespace, Store, Transaction, TxNamespace, Watch

__all__: list[str] = []


# -- the embedded store, sync -------------------------------------------------------------


def _store(s: Store) -> StoreAPI:
    return s


def _namespace(n: Namespace) -> NamespaceAPI:
    return n


def _watch(w: Watch) -> WatchAPI:
    return w


def _transaction(t: Transaction) -> TransactionAPI:
    return t


def _tx_namespace(n: TxNamespace) -> TxNamespaceAPI:
    return n


def _tx_events(e: TxEvents) -> TxEventsAPI:
    return e


def _events(e: EventStore) -> EventsAPI:
    return e


def _subscription(s: Subscription) -> SubscriptionAPI:
    return s


def _snapshots(s: Snapshots) -> SnapshotsAPI:
    return s


# -- the embedded store, awaitable -------------------------------------------------------


def _async_store(s: AsyncStore) -> AsyncStoreAPI:
    return s


def _async_namespace(n: AsyncNamespace) -> AsyncNamespaceAPI:
    return n


def _async_watch(w: AsyncWatch) -> AsyncWatchAPI:
    return w


def _async_transaction(t: AsyncTransaction) -> AsyncTransactionAPI:
    return t


def _async_tx_namespace(n: AsyncTxNamespace) -> AsyncTxNamespaceAPI:
    return n


def _async_tx_events(e: AsyncTxEvents) -> AsyncTxEventsAPI:
    return e


def _async_events(e: AsyncEventStore) -> AsyncEventsAPI:
    return e


def _async_subscription(s: AsyncSubscription) -> AsyncSubscriptionAPI:
    return s


def _async_snapshots(s: AsyncSnapshots) -> AsyncSnapshotsAPI:
    return s


# -- the remote store (HTTP client), sync ---------------------------------------------------


def _remote_store(s: RemoteStore) -> StoreAPI:
    return s


def _remote_namespace(n: RemoteNamespace) -> NamespaceAPI:
    return n


def _remote_watch(w: RemoteWatch) -> WatchAPI:
    return w


def _remote_transaction(t: RemoteTransaction) -> TransactionAPI:
    return t


def _remote_tx_namespace(n: RemoteTxNamespace) -> TxNamespaceAPI:
    return n


def _remote_tx_events(e: RemoteTxEvents) -> TxEventsAPI:
    return e


def _remote_events(e: RemoteEvents) -> EventsAPI:
    return e


def _remote_subscription(s: RemoteSubscription) -> SubscriptionAPI:
    return s


def _remote_snapshots(s: RemoteSnapshots) -> SnapshotsAPI:
    return s


# -- the remote store, awaitable ----------------------------------------------------------


def _async_remote_store(s: AsyncRemoteStore) -> AsyncStoreAPI:
    return s


def _async_remote_namespace(n: AsyncRemoteNamespace) -> AsyncNamespaceAPI:
    return n


def _async_remote_watch(w: AsyncRemoteWatch) -> AsyncWatchAPI:
    return w


def _async_remote_transaction(t: AsyncRemoteTransaction) -> AsyncTransactionAPI:
    return t


def _async_remote_tx_namespace(n: AsyncRemoteTxNamespace) -> AsyncTxNamespaceAPI:
    return n


def _async_remote_tx_events(e: AsyncRemoteTxEvents) -> AsyncTxEventsAPI:
    return e


def _async_remote_events(e: AsyncRemoteEvents) -> AsyncEventsAPI:
    return e


def _async_remote_subscription(s: AsyncRemoteSubscription) -> AsyncSubscriptionAPI:
    return s


def _async_remote_snapshots(s: AsyncRemoteSnapshots) -> AsyncSnapshotsAPI:
    return s
