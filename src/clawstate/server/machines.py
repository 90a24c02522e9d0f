"""State machine routes (``/v1/machines/...``): definitions, instances, fire, history.

======  ===============================================  =====================================
GET     ``/v1/machines``                                 names the caller may read
PUT     ``/v1/machines/{name}``                          store a data definition -> version
GET     ``/v1/machines/{name}``                          the stored definition and version
POST    ``/v1/machines/{name}/instances``                create ``{"id", "data"}`` -> Instance
GET     ``/v1/machines/{name}/instances``                query ``?state=&limit=&cursor=``
GET     ``/v1/machines/{name}/instances/{id}``           one instance, or 404
POST    ``/v1/machines/{name}/instances/{id}/fire``      ``{"event", "payload",
                                                         "expected_version"}`` -> Instance
GET     ``/v1/machines/{name}/instances/{id}/history``   the transitions, creation first
======  ===============================================  =====================================

Scopes: ``machines:<name>:read`` for the GETs, ``machines:<name>:write`` for the rest.
The guard checks the scope before a handler runs, so a caller without one gets 403
whether the machine exists or not (existence never leaks).

Every route calls one method of ``AsyncStore.machine(name)``: the checks (ids, JSON
payloads, versions, the definition itself) are the store's.  Two rules are the
server's own, because a request must not run code on the server:

* a definition sent over HTTP is data: a ``"class"`` (a Python ``StateMachine``
  subclass by module path) is refused — a class-based definition is registered by
  the application that owns the class;
* an action naming a handler by module path (``"pkg.mod:function"``) is run by the
  worker as a timer handler, i.e. it imports and calls that function: only an admin
  token may store such a definition.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post, put
from litestar.params import Parameter
from litestar.types import ASGIApp

from .._validate import INT64_MAX, check_int, parse_int
from .._wire import unquote_key
from ..errors import ConfigError, Forbidden, InvalidRequest
from ..machines import InstancePage, list_machines, parse_definition
from ..machines.definition import check_machine_name
from ..types import Instance, Transition
from .http import body_as, ctx_of, not_found, reply, state_of, value_limit
from .openapi import responses

__all__ = ["MACHINE_ROUTES"]

BASE = "/v1/machines"
MACHINE_PATH = BASE + "/{name:str}"
INSTANCES_PATH = MACHINE_PATH + "/instances"
INSTANCE_PATH = INSTANCES_PATH + "/{id:str}"
#: A definition is a small document (states and transitions).
_DEFINITION_LIMIT = 1 << 20


class MachineInfo(msgspec.Struct):
    """A machine's stored definition (its canonical JSON form) and version."""

    machine: str
    version: int
    definition: dict[str, Any] | None = None


class MachineList(msgspec.Struct):
    machines: list[str]


class CreateBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST .../instances``: the new instance's id and data (any JSON value)."""

    id: Any
    data: Any = None


class FireBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST .../instances/{id}/fire``: the event, its payload, the version the
    caller saw (absent: the store retries on a concurrent transition)."""

    event: Any
    payload: Any = None
    expected_version: Any = None


def _name(name: str) -> str:
    return check_machine_name(unquote_key(name))


def _id(id: str) -> str:
    return unquote_key(id)


def _version(value: Any) -> int | None:
    """``expected_version`` from a body: an integer 1..2**63-1 (bool, float, a huge
    integer and text are refused, as the embedded API refuses them)."""
    return None if value is None else check_int(value, "expected_version", 1)


def _check_remote_definition(doc: Any, admin: bool) -> Any:
    if not isinstance(doc, dict):
        raise InvalidRequest("definition", "must be a JSON object (a data definition)")
    if "class" in doc:
        raise InvalidRequest(
            "class",
            "a class-based definition is registered by the application that owns the "
            "class (store.machine(name, MyMachine)), not over HTTP",
        )
    try:
        defn = parse_definition(doc)
    except ConfigError as exc:
        raise InvalidRequest(exc.field or "definition", str(exc).split(": ", 1)[-1]) from None
    if not admin:
        for t in defn.transitions:
            for action in t.actions:
                if ":" in action:
                    raise Forbidden(
                        f"action {action[:120]!r} names a Python function the worker would "
                        "import and call; only an admin token may store it"
                    )
    return doc


async def _handle(request: Request[Any, Any, Any], name: str) -> Any:
    """The machine's sync-backed async handle, its stored definition loaded; 404 when
    the machine has none."""
    astore = ctx_of(request).astore
    m = astore.machine(_name(name))
    try:
        await m.sync()
    except ConfigError as exc:
        if exc.field == "machine":
            raise not_found() from None
        raise
    return m


@get(
    BASE,
    opt={"auth": "token"},
    operation_id="listMachines",
    summary="The names of the machines with a stored definition that the token may read.",
    responses=responses(MachineList),
    tags=["machines"],
)
async def list_machine_names(request: Request[Any, Any, Any]) -> ASGIApp:
    ctx = ctx_of(request)
    p = ctx.principal
    names = await ctx.astore._run(list_machines, ctx.store)
    visible = [n for n in names if p is not None and p.allows("machines", n, "read")]
    return reply(request, MachineList(visible))


@put(
    MACHINE_PATH,
    opt={"auth": ("machines", "write")},
    status_code=200,
    operation_id="putMachineDefinition",
    summary="Store a data definition; the same content keeps its version, new content "
    "gets the next one.",
    responses=responses(MachineInfo, 403, 409, 413, 415),
    tags=["machines"],
)
async def put_definition(request: Request[Any, Any, Any], name: str) -> ASGIApp:
    ctx = ctx_of(request)
    machine = _name(name)
    doc = await body_as(request, dict[str, Any], "definition", _DEFINITION_LIMIT)
    admin = ctx.principal is not None and ctx.principal.admin
    doc = _check_remote_definition(doc, admin)
    m = ctx.astore.machine(machine, doc)
    handle = await m.sync()
    return reply(request, MachineInfo(machine, handle.version))


@get(
    MACHINE_PATH,
    opt={"auth": ("machines", "read")},
    operation_id="getMachineDefinition",
    summary="The machine's stored definition (canonical JSON) and its version, or 404.",
    responses=responses(MachineInfo, 404),
    tags=["machines"],
)
async def get_definition(request: Request[Any, Any, Any], name: str) -> ASGIApp:
    m = await _handle(request, name)
    handle = await m.sync()
    defn, version = handle._current()
    return reply(request, MachineInfo(m.name, version, defn.document))


@post(
    INSTANCES_PATH,
    opt={"auth": ("machines", "write")},
    status_code=201,
    operation_id="createMachineInstance",
    summary="Create an instance in the initial state; 409 if the id exists.",
    responses=responses(Instance, 404, 409, 413, 415, ok_status=201),
    tags=["machines"],
)
async def create_instance(request: Request[Any, Any, Any], name: str) -> ASGIApp:
    m = await _handle(request, name)
    limit = value_limit(state_of(request), ctx_of(request).store) + 4096
    body = await body_as(request, CreateBody, "instance", limit)
    return reply(request, await m.create(body.id, body.data), 201)


@get(
    INSTANCES_PATH,
    opt={"auth": ("machines", "read")},
    operation_id="queryMachineInstances",
    summary="Instances (in one state with ?state=), in id order, a page at a time.",
    responses=responses(InstancePage, 404),
    tags=["machines"],
)
async def query_instances(
    request: Request[Any, Any, Any],
    name: str,
    in_state: Annotated[
        str | None, Parameter(query="state", required=False, description="Only this state.")
    ] = None,
    limit: Annotated[
        str | None, Parameter(query="limit", required=False, description="Page size.")
    ] = None,
    cursor: Annotated[
        str | None,
        Parameter(query="cursor", required=False, description="The previous page's cursor."),
    ] = None,
) -> ASGIApp:
    m = await _handle(request, name)
    n = 100 if limit is None else parse_int(limit, "limit", 1, INT64_MAX)
    return reply(request, await m.query(in_state, n, cursor))


@get(
    INSTANCE_PATH,
    opt={"auth": ("machines", "read")},
    operation_id="getMachineInstance",
    summary="One instance (state, data, version), or 404.",
    responses=responses(Instance, 404),
    tags=["machines"],
)
async def get_instance(request: Request[Any, Any, Any], name: str, id: str) -> ASGIApp:
    m = await _handle(request, name)
    inst = await m.get(_id(id))
    if inst is None:
        raise not_found()
    return reply(request, inst)


@post(
    INSTANCE_PATH + "/fire",
    opt={"auth": ("machines", "write")},
    status_code=200,
    operation_id="fireMachineEvent",
    summary="Fire an event; 409 InvalidTransition when not allowed, 409 VersionConflict "
    "when expected_version is stale.",
    responses=responses(Instance, 404, 409, 413, 415),
    tags=["machines"],
)
async def fire_event(request: Request[Any, Any, Any], name: str, id: str) -> ASGIApp:
    m = await _handle(request, name)
    limit = value_limit(state_of(request), ctx_of(request).store) + 4096
    body = await body_as(request, FireBody, "fire", limit)
    expected = _version(body.expected_version)
    return reply(request, await m.fire(_id(id), body.event, body.payload, expected))


@get(
    INSTANCE_PATH + "/history",
    opt={"auth": ("machines", "read")},
    operation_id="getMachineHistory",
    summary="An instance's transitions, its creation first (empty for an unknown id).",
    responses=responses(list[Transition], 404),
    tags=["machines"],
)
async def get_history(request: Request[Any, Any, Any], name: str, id: str) -> ASGIApp:
    m = await _handle(request, name)
    return reply(request, await m.history(_id(id)))


MACHINE_ROUTES: list[Any] = [
    list_machine_names,
    put_definition,
    get_definition,
    create_instance,
    query_instances,
    get_instance,
    fire_event,
    get_history,
]
