"""The sync suite's fixtures, in one place so every area mixin sees the same ones.

Every store opened through ``open_store`` is checked with the oracle
(:func:`~clawstate.testing.conformance.assert_sound`) at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clawstate import Store
from clawstate.testing.fakes import FakeClock

from .helpers import Clock, StoreFactory, assert_sound


class StoreFixtures:
    """The fixtures every area of ``StoreConformance`` shares.

    ``open_store`` (oracle-checked at teardown), ``clock`` (a FakeClock) and ``store``.
    """

    # -- fixtures ---------------------------------------------------------------------

    @pytest.fixture
    def open_store(self, store_factory: StoreFactory) -> Iterator[StoreFactory]:
        """``store_factory`` whose stores are checked with the oracle at teardown."""
        opened: list[Store] = []

        def factory(clock: Clock | None = None, **options: Any) -> Store:
            store = store_factory(clock=clock, **options)
            opened.append(store)
            return store

        yield factory
        for store in opened:
            assert_sound(store)

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self, open_store: StoreFactory, clock: FakeClock) -> Store:
        """A fresh store on a FakeClock (so timestamps are exact)."""
        return open_store(clock=clock)
