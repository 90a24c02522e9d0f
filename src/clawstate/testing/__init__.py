"""The testing kit: conformance suites every backend (and the HTTP client) runs, and fakes.

A backend's test module subclasses
:class:`clawstate.testing.conformance.StoreConformance` (and its async twin) and
provides a ``store_factory(clock=None, **options)`` fixture returning fresh empty
stores; the suite's tests then run unchanged against it.
"""

from __future__ import annotations

from .fakes import FakeClock

__all__ = ["FakeClock"]
