"""OpenTelemetry tracing — only when the ``otel`` extra is installed AND configured.

``pip install 'clawstate[otel]'`` brings ``opentelemetry-api``/``-sdk`` and the ASGI
instrumentation; tracing then turns on when the standard OpenTelemetry environment
asks for it (``OTEL_TRACES_EXPORTER`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``/
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``clawstate serve`` is told to trace.  Each
request becomes a server span named after its route template (never the raw path:
keys stay out of traces, as out of logs).  Without the extra, or unconfigured, this
module changes nothing and costs nothing: :func:`instrument` returns the app it was
given.  Store calls run in a copy of the request's context (``AsyncStore``), so spans
opened inside the store join the request's trace.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["configured", "instrument", "route_template"]

_ENV = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


def configured(force: bool = False) -> bool:
    """Whether tracing was asked for (the library may still be missing)."""
    return force or any(os.environ.get(name) for name in _ENV)


def instrument(app: Any, *, force: bool = False) -> Any:
    """``app`` wrapped in OpenTelemetry's ASGI middleware, or ``app`` itself."""
    if not configured(force):
        return app
    try:
        from opentelemetry.instrumentation.asgi import (  # type: ignore[import-not-found]
            OpenTelemetryMiddleware,
        )
    except ImportError:
        return app

    def span_name(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        route = route_template(str(scope.get("path", "")))
        return f"{scope.get('method', 'HTTP')} {route}", {"http.route": route}

    return OpenTelemetryMiddleware(app, default_span_details=span_name)


def route_template(path: str) -> str:
    """``/v1/namespaces/carts/items/u42`` → ``/v1/namespaces/{namespace}/items/{key}``:
    span names and attributes must not carry keys or names (the path is known before
    Litestar routes the request, so the template is rebuilt here)."""
    parts = path.split("/")
    for i, part in enumerate(parts[:-1]):
        nxt = i + 1
        if part == "namespaces":
            parts[nxt] = "{namespace}"
        elif part == "items" and nxt < len(parts):
            parts[nxt] = "{key}"
        elif part == "tokens":
            parts[nxt] = "{token_id}"
        elif part == "streams":
            parts[nxt] = "{stream}"
    return "/".join(parts)
