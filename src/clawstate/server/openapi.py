"""The OpenAPI document: what every route declares, and what the generated document
needs patched in (request bodies, path-parameter constraints, the headers the hottest
routes read directly, SSE and msgpack media types, examples).

Routes declare their answers with :func:`responses`; handlers read raw bodies (so limits
apply before buffering, and msgpack works), so Litestar cannot infer the request bodies:
:data:`BODIES` gives them by operation id (the event-store routes' own in
:data:`.event_bodies.EVENT_BODIES`, which win on a shared id).  ``GET /openapi.json``
serves the result.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Litestar, Request, get
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.types import ASGIApp

from .._validate import INT64_MAX
from .._wire import IDEMPOTENCY_KEY, JSON, MSGPACK, PROBLEM_JSON, SSE, Problem
from .event_bodies import EVENT_BODIES, TX_EVENTS
from .http import Raw, json_encode, state_of

__all__ = [
    "BODIES",
    "ITEM_PATH",
    "IdemHeader",
    "KeyParam",
    "NsParam",
    "openapi_doc",
    "openapi_json",
    "responses",
]

#: The one item's path (its GET answers carry an ETag header, declared below).
ITEM_PATH = "/v1/namespaces/{namespace:str}/items/{key:str}"

PROBLEM_TEXT = {
    304: "Not modified (If-None-Match matched the current ETag).",
    400: "InvalidRequest: a bad key, value, query, TTL, parameter or body (names the field).",
    401: "Unauthorized: the bearer token is missing, invalid, expired or revoked.",
    403: "Forbidden: the token's scopes do not cover this request.",
    404: "NotFound: no live item at this key.",
    409: "VersionConflict: an if_version / if_absent condition failed; nothing changed.",
    412: "VersionConflict: If-Match / If-None-Match did not hold; nothing changed.",
    413: "InvalidRequest (field body): the body exceeds the limit; it was not read.",
    415: "InvalidRequest (field content-type): send JSON or msgpack.",
    429: "RateLimited: too many requests for this token; see Retry-After.",
    500: "ClawStateError / IntegrityError / ConfigError: the store could not answer.",
    503: "BackendUnavailable: the storage cannot be reached; retrying may help.",
}
AUTHED = (400, 401, 403, 429, 500, 503)


def responses(
    ok: Any = None,
    *codes: int,
    ok_status: int = 200,
    ok_text: str = "Success.",
    authed: bool = True,
    ok_media: str = JSON,
    extra_ok: dict[int, Any] | None = None,
) -> dict[int, ResponseSpec]:
    out: dict[int, ResponseSpec] = {}
    if ok is not None:
        out[ok_status] = ResponseSpec(
            data_container=ok, description=ok_text, media_type=ok_media, generate_examples=False
        )
    for status, (container, text) in (extra_ok or {}).items():
        out[status] = ResponseSpec(
            data_container=container, description=text, generate_examples=False
        )
    for code in sorted(set(codes) | (set(AUTHED) if authed else {400, 500})):
        if code == 304:
            out[code] = ResponseSpec(data_container=None, description=PROBLEM_TEXT[code])
            continue
        out[code] = ResponseSpec(
            data_container=Problem,
            description=PROBLEM_TEXT.get(code, "Problem."),
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
    return out


# Path parameters are plain strings to Litestar: the store checks names and keys (and
# names the field), and a per-request regex here measured ~1 µs on the hottest routes.
# Their constraints are documented in the OpenAPI document by PATH_SCHEMAS instead.
NsParam = str
KeyParam = str
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "namespace": {
        "type": "string",
        "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$",
        "description": "Namespace name: [A-Za-z0-9][A-Za-z0-9_.:-]*, at most 128 characters.",
    },
    "stream": {
        "type": "string",
        "minLength": 1,
        "description": "The stream name, percent-encoded as one path segment (like a key); "
        "at most 1024 UTF-8 bytes once decoded.",
    },
    "key": {
        "type": "string",
        "minLength": 1,
        "description": "The key, percent-encoded as one path segment (encode '/' as %2F "
        "and '.' as %2E); at most 1024 UTF-8 bytes once decoded.",
    },
    "name": {
        "type": "string",
        "minLength": 1,
        "description": "The name (a lock's or a machine's), percent-encoded as one path "
        "segment (like a key); at most 1024 UTF-8 bytes once decoded.",
    },
}
IdemHeader = Annotated[
    str | None,
    Parameter(
        header=IDEMPOTENCY_KEY,
        required=False,
        description="A retried request with the same key and body applies once.",
    ),
]


#: Headers the hottest routes read directly (see get_item), documented here instead.
HEADERS: dict[str, list[tuple[str, str]]] = {
    "getItem": [
        ("If-None-Match", "An ETag (or *): 304 when it matches the current item."),
    ],
    "putItem": [
        ("If-Match", "ETag(s) (or *) the current item must have; 412 otherwise."),
        ("If-None-Match", "* for create-only; 412 when the key exists."),
        ("Idempotency-Key", "A retried request with the same key and body applies once."),
    ],
}

#: Examples that let generated requests reach the store (schemathesis' examples phase).
EXAMPLES: dict[tuple[Any, Any], Any] = {
    ("path", "namespace"): "carts",
    ("path", "key"): "u42",
    ("path", "stream"): "orders-1",
    ("path", "name"): "nightly-report",
    ("query", "limit"): 10,
    ("query", "prefix"): "u",
}

#: A fenced write's lock and token (``server/locks.py``); needs ``locks:<name>:read``.
FENCE: dict[str, Any] = {
    "type": "object",
    "required": ["name", "token"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "token": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
    },
    "description": "Fenced write: refused (409 FencingError) once a newer lease of the "
    "lock exists; needs locks:<name>:read.",
}

#: Request bodies, patched into the generated document (the handlers read raw bodies so
#: that limits apply before buffering and msgpack works, so Litestar cannot infer them).
ANY_VALUE: dict[str, Any] = {
    "description": "Any JSON value: object, array, string, number, boolean or null."
}
BODIES: dict[str, tuple[dict[str, Any], str]] = {
    "putItem": (
        ANY_VALUE,
        "The value to store (JSON, or msgpack with Content-Type application/msgpack).",
    ),
    "queryItems": (
        {
            "type": "object",
            "properties": {
                "filter": {"type": "object"},
                "sort": {"type": "array", "items": {"type": "object"}},
                "page": {"type": "object"},
            },
        },
        "Dapr state-query JSON: filter, sort, page {limit, token}.",
    ),
    "getMany": (
        {
            "type": "object",
            "required": ["keys"],
            "properties": {"keys": {"type": "array", "items": {"type": "string"}}},
        },
        "Keys to read.",
    ),
    "putMany": (
        {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {
                    "type": "array",
                    "items": {"type": "array", "minItems": 2, "maxItems": 2},
                    "description": "[key, value] pairs, written atomically in order.",
                },
                "ttl": {"type": ["number", "null"]},
                "fence": FENCE,
            },
        },
        "Items to write atomically.",
    ),
    "transaction": (
        {
            "type": "object",
            "required": ["writes"],
            "properties": {
                "writes": {
                    "type": "array",
                    "items": {
                        # A delete takes no value, ttl or if_absent (refused, not ignored).
                        "oneOf": [
                            {
                                "type": "object",
                                "required": ["op", "namespace", "key", "value"],
                                "additionalProperties": False,
                                "properties": {
                                    "op": {"const": "put"},
                                    "namespace": {"type": "string"},
                                    "key": {"type": "string"},
                                    "value": {},
                                    "ttl": {"type": ["number", "null"]},
                                    "if_version": {
                                        "type": ["integer", "null"],
                                        "minimum": 1,
                                        "maximum": INT64_MAX,
                                    },
                                    "if_absent": {"type": "boolean"},
                                    "keep_ttl": {"type": "boolean"},
                                    "fence": FENCE,
                                },
                            },
                            {
                                "type": "object",
                                "required": ["op", "namespace", "key"],
                                "additionalProperties": False,
                                "properties": {
                                    "op": {"const": "delete"},
                                    "namespace": {"type": "string"},
                                    "key": {"type": "string"},
                                    "if_version": {
                                        "type": ["integer", "null"],
                                        "minimum": 1,
                                        "maximum": INT64_MAX,
                                    },
                                    "fence": FENCE,
                                },
                            },
                        ]
                    },
                },
                "events": TX_EVENTS,
            },
        },
        "Writes to commit atomically across namespaces of one backend, and event appends "
        "(tx.events) committed with them.",
    ),
    "acquireLock": (
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ttl": {"type": ["number", "string"], "description": 'Seconds or "30s".'},
                "wait": {"type": ["number", "string"], "minimum": 0, "maximum": 20},
                "owner": {"type": ["string", "null"]},
            },
        },
        "The lease's ttl (default 30 s), how long this request waits while the lock is "
        "held (default 0, at most 20), and the holder's name.",
    ),
    "renewLock": (
        {
            "type": "object",
            "required": ["token"],
            "additionalProperties": False,
            "properties": {
                "token": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
                "ttl": {"type": ["number", "string", "null"]},
            },
        },
        "The lease's fencing token, and its new ttl (default: the lease's own).",
    ),
    "putMachineDefinition": (
        {
            "type": "object",
            "required": ["initial", "states"],
            "properties": {
                "initial": {"type": "string"},
                "states": {"type": "array", "items": {"type": "string"}},
                "final": {"type": "array", "items": {"type": "string"}},
                "transitions": {"type": "array", "items": {"type": "object"}},
                "timeouts": {"type": "array", "items": {"type": "object"}},
                "migrate": {"type": "object"},
            },
        },
        "A data definition (states, transitions with query-filter guards, timeouts); "
        "a Python class is refused, an action naming a module path needs an admin.",
    ),
    "createMachineInstance": (
        {
            "type": "object",
            "required": ["id"],
            "additionalProperties": False,
            "properties": {"id": {"type": "string", "minLength": 1}, "data": {}},
        },
        "The new instance's id and its data (any JSON value).",
    ),
    "fireMachineEvent": (
        {
            "type": "object",
            "required": ["event"],
            "additionalProperties": False,
            "properties": {
                "event": {"type": "string", "minLength": 1},
                "payload": {},
                "expected_version": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": INT64_MAX,
                },
            },
        },
        "The event, its payload (guards see it), and the version the caller saw "
        "(absent: retried on a concurrent transition).",
    ),
    "createToken": (
        {
            "type": "object",
            "required": ["scopes"],
            "properties": {
                "scopes": {"type": "array", "items": {"type": "string"}},
                "ttl": {"type": ["number", "string", "null"]},
                "note": {"type": "string"},
                "rate": {"type": ["number", "null"]},
            },
        },
        "Scopes such as ns:carts:rw, events:orders-*:read, admin, metrics; ttl like 30d.",
    ),
    "scheduleTimer": (
        {
            "type": "object",
            "required": ["handler"],
            "additionalProperties": False,
            "properties": {
                "handler": {"type": "string", "description": '"package.module:function"'},
                "at": {"type": ["number", "null"], "minimum": 0, "maximum": 1e11},
                "after": {"type": ["number", "string", "null"], "description": '60 or "30m"'},
                "payload": {},
            },
        },
        "What the worker runs (a module:function it imports), when (exactly one of at, "
        "Unix seconds, and after, a delay on the server's clock) and with what payload.",
    ),
}


def openapi_doc(app: Litestar) -> dict[str, Any]:
    """Litestar's generated document, completed with what it cannot infer from the
    handlers (see the module docstring) and declared as OpenAPI 3.1."""
    schema = app.openapi_schema
    doc: dict[str, Any] = schema.to_schema()
    doc["openapi"] = "3.1.0"
    doc.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "cst_<id>_<secret>"}
    }
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            opid = op.get("operationId")
            for param in op.get("parameters", []):
                if param.get("in") == "path" and param.get("name") in PATH_SCHEMAS:
                    declared = dict(PATH_SCHEMAS[param["name"]])
                    param["description"] = declared.pop("description")
                    param["schema"] = declared
                example = EXAMPLES.get((param.get("in"), param.get("name")))
                if example is not None:
                    param.setdefault("example", example)
            for name, text in HEADERS.get(str(opid), ()):
                op.setdefault("parameters", []).append(
                    {
                        "name": name,
                        "in": "header",
                        "required": False,
                        "description": text,
                        "schema": {"type": "string"},
                    }
                )
            body = EVENT_BODIES.get(str(opid)) or BODIES.get(str(opid))
            if body is not None:
                schema_, text = body
                content = {JSON: {"schema": schema_}}
                if opid != "createToken":
                    content[MSGPACK] = {"schema": schema_}
                op["requestBody"] = {"required": True, "description": text, "content": content}
            answers = op.get("responses", {})
            if opid not in ("healthz", "readyz"):
                op["security"] = [{"bearer": []}]
            if opid in ("changes", "readAll", "subscribeEvents"):
                ok = answers.get("200", {})
                ok.setdefault("content", {})[SSE] = {"schema": {"type": "string"}}
            for status in ("200", "201"):
                if status in answers and opid not in ("metrics",):
                    content = answers[status].setdefault("content", {})
                    if JSON in content:
                        content.setdefault(MSGPACK, content[JSON])
            if path == ITEM_PATH.replace(":str", "") and method == "get":
                answers.setdefault("200", {}).setdefault("headers", {})["ETag"] = {
                    "schema": {"type": "string"}
                }
    return doc


@get("/openapi.json", opt={"auth": "public"}, sync_to_thread=False, include_in_schema=False)
def openapi_json(request: Request[Any, Any, Any]) -> ASGIApp:
    st = state_of(request)
    if st.openapi is None:
        st.openapi = json_encode(openapi_doc(request.app))
    return Raw(st.openapi)
