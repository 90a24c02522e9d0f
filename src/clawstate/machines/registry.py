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

import importlib
import threading
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .definition import StateMachine

__all__ = ["load_class", "register", "registered"]

_LOCK = threading.Lock()
_CLASSES: dict[str, type[StateMachine]] = {}


def register(cls: type[StateMachine]) -> str:
    """Make ``cls`` known to this process under its path; returns the path."""
    from .definition import StateMachine, class_path

    if not (isinstance(cls, type) and issubclass(cls, StateMachine)) or cls is StateMachine:
        raise ConfigError("machine", f"must be a StateMachine subclass, got {cls!r}")
    path = class_path(cls)
    with _LOCK:
        _CLASSES[path] = cls
    return path


def registered(path: str) -> type[StateMachine] | None:
    """The class registered under ``path`` in this process, if any."""
    with _LOCK:
        return _CLASSES.get(path)


def load_class(spec: str) -> type[StateMachine]:
    """Import ``"package.module:Class"`` and register it (the worker's ``--machine``)."""
    from .definition import StateMachine

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError("machine", f'must look like "package.module:Class", got {spec!r}')
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("machine", f"cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError("machine", f"{module_name!r} has no attribute {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, StateMachine)):
        raise ConfigError("machine", f"{spec!r} is not a StateMachine subclass")
    register(obj)
    return obj
