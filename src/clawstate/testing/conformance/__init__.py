"""The conformance suites: one body of tests every store implementation must pass.

Modelled on the ``eventsourcing`` library's recorder test cases.  A backend's
test module (or ``conftest.py``) provides a ``store_factory`` fixture — a
callable ``store_factory(clock=None, **options) -> clawstate.Store`` that opens a
*fresh, empty* store, passing ``options`` (``limits=...``, ``namespaces=...``,
``idempotency_window=...``, ``keyring=...``) on to :func:`clawstate.open` — and
closes what it opened at teardown.  Then::

    from clawstate.testing.conformance import StoreConformance

    class TestMyBackend(StoreConformance):
        pass

runs every test here against it, unchanged.  :class:`AsyncStoreConformance`
does the same for :class:`clawstate.AsyncStore` through an
``async_store_factory`` fixture (the ``anyio`` pytest plugin runs those tests).

Every store a test opens through the suite's ``open_store`` fixture is checked
at teardown with :meth:`Store.check` — the oracle: whatever a test did, the
store must still be sound afterwards.  Every refused request is checked to
have changed nothing: the change log's last seq and a full scan of every
namespace are compared before and after.

Layout: the suite is a package of mixins, one per area, over the shared
fixtures of :class:`~.fixtures.StoreFixtures` (``open_store``, ``clock``,
``store``); :class:`StoreConformance` composes them.  A new area is a new module
with a ``...Conformance`` mixin added to the bases below; a backend that can
only pass some areas may subclass ``StoreFixtures`` and the mixins it needs.

- :mod:`.basics` — round trips, ``get``/``get_many``, ``put_many``, ``delete``;
- :mod:`.versions` — versions, etags, conditional writes, no version reuse;
- :mod:`.ttl` — expiry, the sweep, ``keep_ttl``;
- :mod:`.idempotency` — idempotency keys and their scope;
- :mod:`.scan` — ``scan`` and ``query``;
- :mod:`.queries_model` — queries against a model, with and without indexes (Hypothesis);
- :mod:`.watch` — the change log through ``watch``;
- :mod:`.transactions` — transactions;
- :mod:`.limits` — limits and bad input;
- :mod:`.concurrency` — racing threads;
- :mod:`.policies` — codec policies (encryption, serializer, compression);
- :mod:`.aio` — :class:`AsyncStoreConformance`;
- :mod:`.helpers` — factory protocols, snapshots, the oracle and refusal checks.

The package imports only ``clawstate``, ``pytest`` and ``hypothesis`` (the
``testing`` extra).
"""

from __future__ import annotations

from .aio import AsyncStoreConformance
from .basics import BasicsConformance
from .concurrency import ConcurrencyConformance
from .fixtures import StoreFixtures
from .helpers import (
    AsyncStoreFactory,
    Clock,
    Snapshot,
    StoreFactory,
    all_changes,
    assert_refused,
    assert_sound,
    scan_all,
    snapshot,
)
from .idempotency import IdempotencyConformance, IdempotencyScopeConformance
from .limits import LimitsConformance
from .policies import CodecPolicyConformance
from .queries_model import QueryModelConformance
from .scan import ScanQueryConformance
from .transactions import TransactionConformance
from .ttl import KeepTtlConformance, TtlConformance
from .versions import NoVersionReuseConformance, VersionConformance
from .watch import WatchConformance

__all__ = [
    "AsyncStoreConformance",
    "AsyncStoreFactory",
    "BasicsConformance",
    "Clock",
    "CodecPolicyConformance",
    "ConcurrencyConformance",
    "IdempotencyConformance",
    "IdempotencyScopeConformance",
    "KeepTtlConformance",
    "LimitsConformance",
    "NoVersionReuseConformance",
    "QueryModelConformance",
    "ScanQueryConformance",
    "Snapshot",
    "StoreConformance",
    "StoreFactory",
    "StoreFixtures",
    "TransactionConformance",
    "TtlConformance",
    "VersionConformance",
    "WatchConformance",
    "all_changes",
    "assert_refused",
    "assert_sound",
    "scan_all",
    "snapshot",
]


class StoreConformance(
    StoreFixtures,
    BasicsConformance,
    VersionConformance,
    NoVersionReuseConformance,
    TtlConformance,
    KeepTtlConformance,
    IdempotencyConformance,
    IdempotencyScopeConformance,
    ScanQueryConformance,
    QueryModelConformance,
    WatchConformance,
    TransactionConformance,
    LimitsConformance,
    ConcurrencyConformance,
    CodecPolicyConformance,
):
    """The sync facade's contract.  Subclass it where a ``store_factory`` fixture exists."""
