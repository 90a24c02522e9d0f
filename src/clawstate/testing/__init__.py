"""The testing kit: conformance suites every backend (and the HTTP client) runs, and fakes.

A backend's test module subclasses :class:`StoreConformance` and provides a
``make_store`` fixture; the suite's tests then run unchanged against it.
"""

from __future__ import annotations

from .fakes import FakeClock

__all__ = ["FakeClock"]
