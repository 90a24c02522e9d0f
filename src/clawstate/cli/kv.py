"""The key/value commands: ``put``, ``get``, ``delete``, ``scan``, ``query``, ``watch``.

They use only the API a local store and a remote one (``--url http://…``) share, so
each works the same against a server.  :mod:`clawstate.cli` mounts them.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import msgspec
import typer

from ._common import (
    EXIT_FAILED,
    change_doc,
    err_console,
    item_doc,
    jsonable,
    parse_seconds,
    parse_value,
    print_json,
    store,
)

__all__ = ["delete", "get", "put", "query", "scan", "watch"]


def get(
    namespace: Annotated[str, typer.Argument(help="Namespace name")],
    key: Annotated[str, typer.Argument(help="Key")],
    value_only: Annotated[
        bool, typer.Option("--value", help="Print only the value, not the metadata")
    ] = False,
) -> None:
    """Print one item as JSON (exit status 1 if it does not exist).

    \b
    Example:
      clawstate get carts u42
    """
    with store(create=False) as opened:
        item = opened.namespace(namespace).get(key)
        if item is None:
            err_console.print(f"not found: {namespace}/{key}", markup=False)
            raise typer.Exit(EXIT_FAILED)
        print_json(jsonable(item.value) if value_only else item_doc(item))


def put(
    namespace: Annotated[str, typer.Argument(help="Namespace name")],
    key: Annotated[str, typer.Argument(help="Key")],
    value: Annotated[str, typer.Argument(help="JSON value, or - to read it from stdin")],
    ttl: Annotated[
        str | None,
        typer.Option(help="Expire after this long: seconds, or 30s, 15m, 2h, 1d"),
    ] = None,
    keep_ttl: Annotated[
        bool,
        typer.Option("--keep-ttl", help="Keep the item's current expiry (a put drops it)"),
    ] = False,
    if_version: Annotated[
        int | None, typer.Option("--if-version", help="Only if the current version is this")
    ] = None,
    if_absent: Annotated[
        bool, typer.Option("--if-absent", help="Only if the key does not exist")
    ] = False,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Apply a retried request once")
    ] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Store VALUE as a plain string")] = False,
) -> None:
    """Store a JSON value and print the new item's metadata.

    A put without --ttl drops an existing expiry (as Redis SET does); --keep-ttl keeps it.

    \b
    Example:
      clawstate put carts u42 '{"status": "open", "total": 19.5, "items": [{"sku": "a1"}]}' --ttl 30m
    """  # noqa: E501
    seconds = None if ttl is None else parse_seconds(ttl, "ttl")
    parsed = parse_value(value, raw)
    with store() as opened:
        item = opened.namespace(namespace).put(
            key,
            parsed,
            ttl=seconds,
            keep_ttl=keep_ttl,
            if_version=if_version,
            if_absent=if_absent,
            idempotency_key=idempotency_key,
        )
        doc = item_doc(item)
        del doc["value"]
        print_json(doc)


def delete(
    namespace: Annotated[str, typer.Argument(help="Namespace name")],
    key: Annotated[str, typer.Argument(help="Key")],
    if_version: Annotated[
        int | None, typer.Option("--if-version", help="Only if the current version is this")
    ] = None,
) -> None:
    """Delete a key; prints true if it existed.

    \b
    Example:
      clawstate delete carts u42 --if-version 1
    """
    with store() as opened:
        print_json(opened.namespace(namespace).delete(key, if_version=if_version))


def scan(
    namespace: Annotated[str, typer.Argument(help="Namespace name")],
    prefix: Annotated[str, typer.Option(help="Only keys starting with this")] = "",
    limit: Annotated[int, typer.Option(help="Items per page")] = 100,
    cursor: Annotated[str | None, typer.Option(help="Cursor from a previous page")] = None,
    keys_only: Annotated[bool, typer.Option("--keys", help="Print only the keys")] = False,
) -> None:
    """List items in key order, one page: JSON with items and the next cursor.

    \b
    Example:
      clawstate scan carts --prefix u4 --limit 10
    """
    with store(create=False) as opened:
        page = opened.namespace(namespace).scan(prefix=prefix, limit=limit, cursor=cursor)
        items: list[Any] = [i.key if keys_only else item_doc(i) for i in page.items]
        print_json({"items": items, "cursor": page.cursor})


def query(
    namespace: Annotated[str, typer.Argument(help="Namespace name")],
    query_json: Annotated[str, typer.Argument(help="Dapr state-query JSON, or - for stdin")],
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="Also print how it was answered: index, strategy, rows read"
        ),
    ] = False,
) -> None:
    """Run a Dapr state query (filter / sort / page) and print the page as JSON.

    With --explain the output also holds "plan": the index that served the query (or
    null), the strategy (index, sql or scan), how many rows were read, whether the
    read stopped early, and the database's own plan lines.

    \b
    Example:
      clawstate query carts '{"filter": {"EQ": {"status": "open"}}, "sort": [{"key": "total", "order": "DESC"}], "page": {"limit": 10}}'
      clawstate query carts '{"filter": {"EQ": {"status": "open"}}}' --explain
    """  # noqa: E501
    text = sys.stdin.read() if query_json == "-" else query_json
    with store(create=False) as opened:
        page = opened.namespace(namespace).query(text, explain=explain)
        doc: dict[str, Any] = {"items": [item_doc(i) for i in page.items], "cursor": page.cursor}
        if page.plan is not None:
            doc["plan"] = msgspec.to_builtins(page.plan)
        print_json(doc)


def watch(
    namespace: Annotated[
        str | None, typer.Argument(help="Namespace to follow (default: all)")
    ] = None,
    from_seq: Annotated[
        int | None,
        typer.Option("--from-seq", help="Start after this seq (default: only new changes)"),
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many idle seconds")] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many changes")] = None,
) -> None:
    """Print changes as JSON lines: past ones after --from-seq, then live ones.

    \b
    Example:
      clawstate watch carts --from-seq 0 --timeout 1
    """
    with store(create=False) as opened:
        seen = 0
        w = opened.watch(from_seq, namespace=namespace, timeout=timeout)
        try:
            for change in w:
                print_json(change_doc(change))
                seen += 1
                if count is not None and seen >= count:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            w.close()
