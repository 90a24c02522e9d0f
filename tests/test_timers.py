"""Durable timers: the timers conformance suite on memory and SQLite (conftest's
``store_factory``); PostgreSQL and Redis in ``test_timers_backends.py``."""

from __future__ import annotations

from clawstate.testing.conformance.timers import TimersConformance


class TestTimers(TimersConformance):
    """memory and SQLite."""
