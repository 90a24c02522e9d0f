"""Property-based API tests: schemathesis against the live server's ``/openapi.json``.

Every generated request must get a non-5xx answer whose status, content type, headers
and body the document declares (zero server errors, zero schema violations).

The server runs as in production (``clawstate serve``: write batching on, no test
control; only the rate limit is off).  The document it serves is augmented here, for
the test only, so that generated requests reach the store instead of bouncing off it:

* **links** (OpenAPI 3.1 ``links``): a successful ``PUT`` of an item leads to a ``GET``
  and a ``DELETE`` of the same namespace and key, an append to a stream to reading that
  stream, a created token to revoking it — the stateful phase follows them, so reads
  hit items that exist (a plain fuzzing run mostly reads random keys: 404);
* **examples** for every request body, so the examples phase sends well-formed writes;
* **msgpack**: a hooks file registers a msgpack serializer (request bodies go out as
  msgpack too) and deserializer (so responses in
  ``application/msgpack`` are validated against the same schemas as JSON) and asks for
  msgpack in every other request (``Accept``).  The hooks tally what came back, and
  the test asserts that msgpack answers were validated, that reads found items and
  that writes succeeded: a run that never reached the store fails.

``CLAWSTATE_TEST_SCHEMATHESIS_EXAMPLES`` sets ``--max-examples`` (default 25, about a
minute here); the ``slow`` variant uses 200.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services import require_module

require_module("litestar")
require_module("schemathesis")
httpx = require_module("httpx")

from clawstate.server.testing import ServerProcess  # noqa: E402

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
EXAMPLES = int(os.environ.get("CLAWSTATE_TEST_SCHEMATHESIS_EXAMPLES", "25"))

#: Request bodies that the store accepts, one per operation with a body.
BODY_EXAMPLES: dict[str, Any] = {
    "putItem": {"status": "open", "total": 19.5, "items": [{"sku": "a1"}]},
    "queryItems": {"filter": {"EQ": {"status": "open"}}, "page": {"limit": 10}},
    "getMany": {"keys": ["u42", "u43"]},
    "putMany": {"items": [["u42", {"status": "open"}], ["u43", 1]]},
    "transaction": {
        "writes": [
            {"op": "put", "namespace": "carts", "key": "u42", "value": {"status": "paid"}},
            {"op": "delete", "namespace": "stock", "key": "sku9"},
        ]
    },
    "appendEvents": {
        "events": [{"type": "OrderPlaced", "data": {"total": 9}}],
        "expected_version": "any",
    },
    "createToken": {"scopes": ["ns:carts:read"], "ttl": "1h", "note": "schemathesis"},
    "acquireLock": {"ttl": 30, "wait": 0, "owner": "schemathesis"},
    "renewLock": {"token": 1, "ttl": 30},
    "putMachineDefinition": {
        "initial": "pending",
        "states": ["pending", "paid", "cancelled"],
        "final": ["cancelled"],
        "transitions": [
            {"event": "pay", "from": "pending", "to": "paid"},
            {"event": "cancel", "from": ["pending", "paid"], "to": "cancelled"},
        ],
    },
    "createMachineInstance": {"id": "o1", "data": {"total": 9}},
    "fireMachineEvent": {"event": "pay", "payload": {"amount": 9}},
    "scheduleTimer": {"handler": "myapp.jobs:remind", "after": 60, "payload": {"n": 1}},
}

#: operationId -> {status: {link name: link}}
LINKS: dict[str, dict[str, dict[str, Any]]] = {
    "putItem": {
        status: {
            "GetTheItem": {
                "operationId": "getItem",
                "parameters": {
                    "namespace": "$request.path.namespace",
                    "key": "$request.path.key",
                },
            },
            "DeleteTheItem": {
                "operationId": "deleteItem",
                "parameters": {
                    "namespace": "$request.path.namespace",
                    "key": "$request.path.key",
                },
            },
            "ScanTheNamespace": {
                "operationId": "scanItems",
                "parameters": {"namespace": "$request.path.namespace"},
            },
        }
        for status in ("200", "201")
    },
    "appendEvents": {
        "200": {
            "ReadTheStream": {
                "operationId": "readStream",
                "parameters": {"stream": "$request.path.stream"},
            }
        }
    },
    "createToken": {
        "201": {
            "RevokeIt": {
                "operationId": "revokeToken",
                "parameters": {"token_id": "$response.body#/id"},
            }
        }
    },
}

HOOKS = '''
"""Written by tests/test_server_schemathesis.py: msgpack validation and a tally."""
import itertools
import json
import os

import msgspec
import schemathesis

_TALLY = os.environ["CLAWSTATE_TEST_ST_TALLY"]
_n = itertools.count()
_counts = {}


@schemathesis.serializer("application/msgpack")
def _msgpack_body(ctx, value):
    _bump("msgpack_sent")
    try:
        return {"data": msgspec.msgpack.encode(value)}
    except (OverflowError, TypeError):  # an integer beyond 64 bits has no msgpack form
        return {"data": msgspec.msgpack.encode(str(value))}


@schemathesis.deserializer("application/msgpack")
def _msgpack(ctx, response):
    _bump("msgpack_validated")
    return msgspec.msgpack.decode(response.content)


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if next(_n) % 2:
        if case.headers is None:
            case.headers = {}
        case.headers.setdefault("Accept", "application/msgpack")


@schemathesis.hook
def after_call(ctx, case, response):
    op = case.operation.definition.raw.get("operationId", "?")
    _bump(f"{op} {response.status_code}")


def _bump(name):
    _counts[name] = _counts.get(name, 0) + 1
    with open(_TALLY, "w") as fh:
        json.dump(_counts, fh)
'''


def augmented(doc: dict[str, Any]) -> dict[str, Any]:
    """The served document plus links and request-body examples (test only).

    A lock acquire may wait (up to 20 s) while the lock is held, as documented; here
    its ``wait`` is kept under a second, or a generated request would outlast
    schemathesis' own 10 s request timeout."""
    for item in doc["paths"].values():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            opid = op.get("operationId")
            if opid == "acquireLock":
                for media in op["requestBody"]["content"].values():
                    media["schema"] = json.loads(json.dumps(media["schema"]))
                    media["schema"]["properties"]["wait"] = {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                    }
            body = op.get("requestBody")
            if opid in BODY_EXAMPLES and body:
                for media in body["content"].values():
                    media["example"] = BODY_EXAMPLES[opid]
            for status, links in LINKS.get(str(opid), {}).items():
                response = op["responses"].setdefault(status, {"description": "Success."})
                response["links"] = links
    return doc


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(extra_args=["--rate-limit", "0"]) as proc:
        yield proc


def run_schemathesis(server: ServerProcess, tmp_path: Path, examples: int) -> dict[str, int]:
    doc = httpx.get(server.url + "/openapi.json").json()
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(augmented(doc)))
    hooks = tmp_path / "st_hooks.py"
    hooks.write_text(HOOKS)
    tally = tmp_path / "tally.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_") or "TEST" in k}
    env.update(SCHEMATHESIS_HOOKS=str(hooks), CLAWSTATE_TEST_ST_TALLY=str(tally))
    cli = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [
            str(cli),
            "run",
            str(schema),
            "--url",
            server.url,
            "--header",
            f"Authorization: Bearer {server.admin_token}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(examples),
            "--seed",
            "20260101",
            # one worker: hypothesis' ast use is not thread-safe on CPython 3.11
            "--workers",
            "1",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )
    summary = proc.stdout[-6000:]
    assert proc.returncode == 0, summary + proc.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary.split("SUMMARY")[-1], summary
    assert "Stateful" in summary or "stateful" in summary, summary
    counts: dict[str, int] = json.loads(tally.read_text())
    sent = sum(v for k, v in counts.items() if not k.startswith("msgpack_"))
    print(f"\nschemathesis requests {sent} tally " + json.dumps(dict(sorted(counts.items()))))
    with server.admin() as http:
        assert http.get("/readyz").status_code == 200  # still healthy afterwards
    return counts


def _hits(counts: dict[str, int], op: str, statuses: tuple[int, ...]) -> int:
    return sum(counts.get(f"{op} {s}", 0) for s in statuses)


def assert_deep(counts: dict[str, int]) -> None:
    """The run reached the store: writes succeeded, reads found what they wrote, and
    msgpack answers were validated against the schema."""
    assert counts.get("msgpack_validated", 0) > 0, counts
    assert _hits(counts, "putItem", (200, 201)) > 0, counts
    assert _hits(counts, "getItem", (200, 304)) > 0, counts
    assert _hits(counts, "deleteItem", (200,)) > 0, counts
    assert _hits(counts, "appendEvents", (200,)) > 0, counts
    assert _hits(counts, "transaction", (200,)) > 0, counts
    assert _hits(counts, "queryItems", (200,)) > 0, counts


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    server: ServerProcess, tmp_path: Path
) -> None:
    counts = run_schemathesis(server, tmp_path, EXAMPLES)
    assert_deep(counts)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_schemathesis_large(
    server: ServerProcess, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A longer run: 200 examples when selected (``pytest -m slow``), else the default
    size again with the same checks (it still runs, never skips)."""
    expr = request.config.getoption("markexpr") or ""
    selected = "slow" in expr and "not slow" not in expr
    assert_deep(run_schemathesis(server, tmp_path, 200 if selected else EXAMPLES))


def test_augmented_document_links_writes_to_reads() -> None:
    """The links point at operations and parameters that exist in the served document,
    so the stateful phase can follow them (a typo would silently leave it idle)."""
    import clawstate
    from clawstate.server.app import create_app

    with clawstate.open("memory://") as store:
        app = create_app(store)
        from clawstate.server.openapi import openapi_doc

        doc = augmented(openapi_doc(app.app))  # Edge wraps the Litestar app
    ops = {
        op["operationId"]: op
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    for source, by_status in LINKS.items():
        assert source in ops, source
        for status, links in by_status.items():
            assert ops[source]["responses"][status]["links"] == links
            for link in links.values():
                target = ops[link["operationId"]]
                names = {p["name"] for p in target.get("parameters", [])}
                assert set(link["parameters"]) <= names, (link, names)
    for opid, example in BODY_EXAMPLES.items():
        for media in ops[opid]["requestBody"]["content"].values():
            assert media["example"] == example
