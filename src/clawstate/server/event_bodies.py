"""The request bodies of the event-store routes, for the OpenAPI document.

The handlers read raw bodies (limits apply before buffering, msgpack works), so
Litestar cannot infer them; :mod:`.openapi` patches these in by operation id, as it
does its own ``BODIES``.  Kept apart from :mod:`.events` so that the OpenAPI module
imports it without importing the routes.
"""

from __future__ import annotations

from typing import Any

from .._validate import INT64_MAX

__all__ = ["EVENT_BODIES", "TX_EVENTS"]

_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string"},
        "data": {"type": "object"},
        "metadata": {"type": ["object", "null"]},
        "id": {"type": "string", "format": "uuid"},
        "schema_version": {"type": "integer"},
    },
}
_EXPECTED: dict[str, Any] = {
    "oneOf": [
        {"type": "integer", "minimum": 0, "maximum": INT64_MAX - 1},
        {"enum": ["any", "no_stream", "stream_exists"]},
    ]
}
_APPEND: dict[str, Any] = {
    "type": "object",
    "required": ["stream", "events"],
    "additionalProperties": False,
    "properties": {
        "stream": {"type": "string"},
        "events": {"type": "array", "items": _EVENT},
        "expected_version": _EXPECTED,
    },
}
#: ``set_stream_metadata``'s settings (null clears one; one left out keeps its value)
_SETTINGS: dict[str, Any] = {
    "max_age": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "max_count": {"type": ["integer", "null"], "minimum": 1, "maximum": INT64_MAX},
    "truncate_before": {"type": ["integer", "null"], "minimum": 1, "maximum": INT64_MAX},
}

#: operation id -> (schema, description), merged into :data:`.openapi.BODIES`
EVENT_BODIES: dict[str, tuple[dict[str, Any], str]] = {
    "appendEvents": (
        {
            "type": "object",
            "required": ["events"],
            "properties": {
                "events": {"type": "array", "items": _EVENT},
                "expected_version": {
                    "oneOf": [
                        {"type": "integer", "minimum": 0},
                        {"enum": ["any", "no_stream", "stream_exists"]},
                    ]
                },
            },
        },
        "Events to append atomically, and the version the stream must be at.",
    ),
    "appendMany": (
        {
            "type": "object",
            "required": ["appends"],
            "additionalProperties": False,
            "properties": {"appends": {"type": "array", "items": _APPEND}},
        },
        "Appends to commit atomically, each with the version its stream must be at.",
    ),
    "setStreamMetadata": (
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {**_SETTINGS, "expected_version": _EXPECTED},
        },
        "The retention settings to set; a setting left out is not passed.",
    ),
    "saveSnapshot": (
        {
            "type": "object",
            "required": ["version", "state"],
            "additionalProperties": False,
            "properties": {
                "version": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
                "state": {},
                "schema": {"type": "integer", "minimum": 1},
            },
        },
        "The stream's state after event `version`.",
    ),
    "saveSubscriptionCheckpoint": (
        {
            "type": "object",
            "required": ["position"],
            "additionalProperties": False,
            "properties": {"position": {"type": "integer", "minimum": 0, "maximum": INT64_MAX}},
        },
        "The position processed so far (at most the log's end).",
    ),
}

#: ``POST /v1/transactions``' ``events``: appends (and stream-setting changes, an entry
#: with ``metadata`` instead of ``events``) committed with the writes
TX_EVENTS: dict[str, Any] = {
    "type": "array",
    "items": {
        "oneOf": [
            _APPEND,
            {
                "type": "object",
                "required": ["stream", "metadata"],
                "additionalProperties": False,
                "properties": {
                    "stream": {"type": "string"},
                    "metadata": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": _SETTINGS,
                    },
                    "expected_version": _EXPECTED,
                },
            },
        ]
    },
}
