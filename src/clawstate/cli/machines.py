"""``clawstate machines …``: define machines, create and fire instances, read them, draw them.

Instances and transitions print as JSON; ``show`` prints the machine as Mermaid
``stateDiagram-v2`` text (``--dot``: Graphviz) with how many instances are in each
state.  Every command uses only the handle API a local store and a remote one share
(``store.machine(name)``, see :mod:`clawstate.machines`), so each works against a
server too (``--url http://…``, with a ``machines:<name>:read|write`` scope).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .._validate import INT64_MAX, parse_int
from ..errors import InvalidRequest
from ..types import Instance, Transition
from ._common import EXIT_FAILED, err_console, fail, is_local, parse_json, print_json, store

if TYPE_CHECKING:
    from ..api import StoreAPI
    from ..client import RemoteStore
    from ..client._machines import RemoteMachine
    from ..machines import Machine

__all__ = ["instance_doc", "machines_app", "transition_doc"]

machines_app = typer.Typer(
    help="Persisted state machines: define one, create and fire instances, read and draw "
    "them.\n\nExample:  clawstate machines show order",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def instance_doc(inst: Instance) -> dict[str, Any]:
    """An instance as the CLI (and JSON consumers) print it."""
    return {
        "machine": inst.machine,
        "id": inst.id,
        "state": inst.state,
        "data": inst.data,
        "version": inst.version,
        "created_at": inst.created_at,
        "updated_at": inst.updated_at,
        "definition_version": inst.definition_version,
    }


def transition_doc(t: Transition) -> dict[str, Any]:
    """One transition of an instance's history as the CLI prints it."""
    return {
        "version": t.version,
        "event": t.event,
        "source": t.source,
        "target": t.target,
        "payload": t.payload,
        "at": t.at,
    }


def _json_arg(text: str | None, field: str) -> Any:
    """A JSON value from the command line (``-`` reads stdin), strict as HTTP."""
    if text is None:
        return None
    if text == "-":
        import sys

        text = sys.stdin.read()
    try:
        return parse_json(text, field)
    except InvalidRequest as exc:
        fail(exc)


def _definition(text: str) -> Any:
    """``define``'s argument: a JSON object, ``-`` (stdin), or a .json/.toml file."""
    if text == "-":
        import sys

        text = sys.stdin.read()
    elif not text.lstrip().startswith("{"):
        path = Path(text)
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(InvalidRequest("definition", f"cannot read {text!r}: {exc}"))
        if path.suffix == ".toml":
            return content  # the store parses TOML text itself
        text = content
    try:
        return parse_json(text, "definition")
    except InvalidRequest as exc:
        fail(exc)


def _remote(opened: StoreAPI) -> RemoteStore:
    from ..client import RemoteStore

    if not isinstance(opened, RemoteStore):
        fail(InvalidRequest("url", f"cannot use machines on {type(opened).__name__}"))
    return opened


def _machine(opened: StoreAPI, name: str, definition: Any = None) -> Machine | RemoteMachine:
    """The handle on machine ``name``: the store's own, or the HTTP client's (same
    methods)."""
    if is_local(opened):
        return opened.machine(name, definition)
    return _remote(opened).machine(name, definition)


@machines_app.command("define")
def define(
    name: Annotated[str, typer.Argument(help="Machine name")],
    definition: Annotated[
        str,
        typer.Argument(help="The definition: a JSON object, a .json or .toml file, or - for stdin"),
    ],
) -> None:
    """Store a machine's definition; prints its version (the same content keeps its
    version, a changed one gets the next).

    \b
    Example:
      clawstate machines define order '{"initial": "pending", "states": ["pending", "paid", "cancelled"], "final": ["cancelled"], "transitions": [{"event": "pay", "from": "pending", "to": "paid"}, {"event": "cancel", "from": ["pending", "paid"], "to": "cancelled"}]}'
    """  # noqa: E501
    doc = _definition(definition)
    with store() as opened:
        m = _machine(opened, name, doc)
        print_json({"machine": name, "version": m.version})


@machines_app.command("ls")
def ls() -> None:
    """List the machines that have a stored definition, one JSON line each (name and
    definition version).

    \b
    Example:
      clawstate machines ls
    """
    with store(create=False) as opened:
        if is_local(opened):
            from ..machines import list_machines

            names = list_machines(opened)
        else:
            names = _remote(opened).list_machines()
        for name in names:
            print_json({"machine": name, "version": _machine(opened, name).version})


@machines_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Machine name")],
    dot: Annotated[bool, typer.Option("--dot", help="Graphviz dot instead of Mermaid")] = False,
    no_counts: Annotated[
        bool, typer.Option("--no-counts", help="Leave out the instance counts per state")
    ] = False,
) -> None:
    """Print the machine as a Mermaid stateDiagram-v2 (or Graphviz dot) with how many
    instances are in each state.

    \b
    Example:
      clawstate machines show order --dot
    """
    with store(create=False) as opened:
        text = _machine(opened, name).render("dot" if dot else "mermaid", counts=not no_counts)
        typer.echo(text.rstrip("\n"))


@machines_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Machine name (its definition is stored)")],
    id: Annotated[str, typer.Argument(help="Instance id")],
    data: Annotated[str | None, typer.Option(help="Instance data: JSON, or - for stdin")] = None,
) -> None:
    """Create an instance in the machine's initial state; prints it.

    \b
    Example:
      clawstate machines create order o1 --data '{"total": 9}'
    """
    value = _json_arg(data, "data")
    with store() as opened:
        print_json(instance_doc(_machine(opened, name).create(id, value)))


@machines_app.command("fire")
def fire(
    name: Annotated[str, typer.Argument(help="Machine name")],
    id: Annotated[str, typer.Argument(help="Instance id")],
    event: Annotated[str, typer.Argument(help="Event to fire")],
    payload: Annotated[str | None, typer.Option(help="Event payload: JSON, or - for stdin")] = None,
    expected_version: Annotated[
        str | None,
        typer.Option(
            "--expected-version",
            help="Fire only if the instance is at this version (else VersionConflict)",
        ),
    ] = None,
) -> None:
    """Fire an event on an instance; prints the instance after the transition (exit 1
    with InvalidTransition when the event is not allowed in its state).

    \b
    Example:
      clawstate machines fire order o1 pay --payload '{"card": "visa"}' --expected-version 1
    """
    value = _json_arg(payload, "payload")
    expected: int | None = None
    if expected_version is not None:
        try:
            expected = parse_int(expected_version, "expected_version", 1, INT64_MAX)
        except InvalidRequest as exc:
            fail(exc)
    with store() as opened:
        inst = _machine(opened, name).fire(id, event, value, expected)
        print_json(instance_doc(inst))


@machines_app.command("get")
def get(
    name: Annotated[str, typer.Argument(help="Machine name")],
    id: Annotated[str, typer.Argument(help="Instance id")],
) -> None:
    """Print an instance (state, data, version); "not found" and exit 1 if there is none.

    \b
    Example:
      clawstate machines get order o1
    """
    with store(create=False) as opened:
        inst = _machine(opened, name).get(id)
        if inst is None:
            err_console.print(f"not found: machine {name} instance {id[:200]}", markup=False)
            raise typer.Exit(EXIT_FAILED)
        print_json(instance_doc(inst))


@machines_app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Machine name")],
    id: Annotated[str, typer.Argument(help="Instance id")],
) -> None:
    """Print an instance's transitions as JSON lines, its creation first.

    \b
    Example:
      clawstate machines history order o1
    """
    with store(create=False) as opened:
        for t in _machine(opened, name).history(id):
            print_json(transition_doc(t))
