"""The in-memory reference backend (:mod:`.backend`) and its event store (:mod:`.events`).

Plain dicts under one lock: no durability, one process; ``clawstate.open("memory://")``.
"""

from .backend import MemoryBackend

__all__ = ["MemoryBackend"]
