"""``clawstate events …``: append to streams, read them, follow the global log.

Events print as JSON lines, one per event.  Every command uses only the event-store
API a local store and a remote one share, so each works against a server too.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .._validate import parse_int
from ..errors import InvalidRequest
from ..types import ANY, NO_STREAM, STREAM_EXISTS, Event, ExpectedVersion, RecordedEvent
from ._common import fail, json_object, print_json, store

__all__ = ["event_doc", "events_app"]

events_app = typer.Typer(
    help="The event store: append to streams, read them, follow the global log.\n\n"
    "Example:  clawstate events tail --from-position 0 --timeout 1",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _expected(text: str) -> ExpectedVersion:
    for sentinel in (ANY, NO_STREAM, STREAM_EXISTS):
        if text == sentinel:
            return sentinel
    if not text.isascii() or not text.lstrip("-").isdigit():
        fail(
            InvalidRequest(
                "expected_version",
                f"must be a version number, any, no_stream or stream_exists; got {text!r}",
            )
        )
    try:
        return parse_int(text, "expected_version")
    except InvalidRequest as exc:
        fail(exc)


def event_doc(event: RecordedEvent) -> dict[str, Any]:
    """An event as the CLI (and JSON consumers) print it."""
    return {
        "position": event.position,
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "data": event.data,
        "metadata": event.metadata,
        "id": event.id,
        "recorded_at": event.recorded_at,
        "schema_version": event.schema_version,
    }


@events_app.command("append")
def append(
    stream: Annotated[str, typer.Argument(help="Stream name")],
    type: Annotated[str, typer.Argument(help="Event type")],
    data: Annotated[str, typer.Argument(help="Event data: a JSON object, or - for stdin")] = "{}",
    metadata: Annotated[
        str | None, typer.Option(help="Metadata JSON object (correlation_id, causation_id…)")
    ] = None,
    expected_version: Annotated[
        str,
        typer.Option(
            "--expected-version", help="A version number, any, no_stream or stream_exists"
        ),
    ] = "any",
    event_id: Annotated[
        str | None, typer.Option("--id", help="Event id (a UUID); a retry with it applies once")
    ] = None,
    schema_version: Annotated[
        int, typer.Option("--schema-version", help="Schema version of the data")
    ] = 1,
) -> None:
    """Append one event to a stream; prints its version and global position.

    \b
    Example:
      clawstate events append order-1 OrderPlaced '{"total": 9.5}' --expected-version no_stream
    """
    payload = json_object(data, "data")
    meta = None if metadata is None else json_object(metadata, "metadata")
    expected = _expected(expected_version)
    with store() as opened:
        kwargs: dict[str, Any] = {"schema_version": schema_version}
        if event_id is not None:
            kwargs["id"] = event_id
        event = Event(type, payload, meta, **kwargs)
        result = opened.events.append(stream, [event], expected_version=expected)
        print_json({"stream": stream, "version": result.version, "position": result.position})


@events_app.command("read")
def read(
    stream: Annotated[str, typer.Argument(help="Stream name")],
    from_version: Annotated[
        int | None, typer.Option("--from-version", help="First version (backwards: last)")
    ] = None,
    backwards: Annotated[bool, typer.Option("--backwards", help="Newest first")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many events")] = None,
) -> None:
    """Print a stream's events as JSON lines, oldest first.

    \b
    Example:
      clawstate events read order-1
    """
    with store(create=False) as opened:
        for event in opened.events.read(stream, from_version, backwards=backwards, limit=limit):
            print_json(event_doc(event))


@events_app.command("tail")
def tail(
    from_position: Annotated[
        str,
        typer.Option(
            "--from-position", help="Start after this global position, or end (only new events)"
        ),
    ] = "end",
    stream_prefix: Annotated[
        str, typer.Option("--stream-prefix", help="Only streams starting with this")
    ] = "",
    types: Annotated[
        list[str] | None, typer.Option("--type", help="Only this event type (repeatable)")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Durable subscription name: resume after its checkpoint")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many idle seconds")] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many events")] = None,
) -> None:
    """Follow the global log as JSON lines: past events after --from-position, then live ones.

    \b
    Example:
      clawstate events tail --from-position 0 --timeout 1
    """
    from ..events.store import EventFilter

    start: int | str = from_position
    if from_position != "end":
        try:
            start = parse_int(from_position, "from_position")
        except InvalidRequest as exc:
            fail(exc)
    flt = EventFilter(stream_prefix, tuple(types or ())) if stream_prefix or types else None
    with store(create=False) as opened:
        seen = 0
        sub = opened.events.subscribe(start, filter=flt, name=name, timeout=timeout)
        try:
            for event in sub:
                print_json(event_doc(event))
                seen += 1
                if count is not None and seen >= count:
                    sub.commit()
                    break
        except KeyboardInterrupt:
            pass
        finally:
            sub.close()
