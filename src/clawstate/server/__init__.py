"""``clawstate serve``: the HTTP API over a store (see docs/server.md).

Importing this package costs nothing: Litestar, uvicorn and prometheus-client load
with :func:`create_app` / :func:`serve` (the ``server`` extra), so the embedded store
and the HTTP client never need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ServerSettings, create_app
    from .run import serve

__all__ = ["ServerSettings", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("ServerSettings", "create_app"):
        from . import app

        return getattr(app, name)
    if name == "serve":
        from .run import serve

        return serve
    raise AttributeError(f"module 'clawstate.server' has no attribute {name!r}")
