"""The process's class-based machine definitions, by module path.

A class-based definition has Python guards, updates and actions, so a process that
fires its transitions — the application, or ``clawstate worker`` firing a timeout
or running an action — needs the class itself.  The stored definition records the
class's path (``"myapp.orders:Order"``); the worker registers the classes it may
meet (``clawstate worker --machine myapp.orders:Order``) and a process that calls
``store.machine(name, Order)`` registers ``Order`` by doing so.  The registry is
looked up by path, never filled by importing a path read from the store: what
code a worker runs is decided by its command line, not by the data it reads.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["put", "registered"]

_LOCK = threading.Lock()
_CLASSES: dict[str, Any] = {}


def put(path: str, cls: Any) -> None:
    """Record ``cls`` under ``path`` (``definition.register`` checks it first).  A leaf
    module, importing nothing of the package, so the registry and the definitions that
    read it form no import circle."""
    with _LOCK:
        _CLASSES[path] = cls


def registered(path: str) -> Any:
    """The class registered under ``path`` in this process, if any (None)."""
    with _LOCK:
        return _CLASSES.get(path)
