"""The ``clawstate`` command: the store from a shell.

Every command opens the store named by ``--url`` / ``--config`` (or
``CLAWSTATE_URL`` / ``CLAWSTATE_CONFIG``, else the embedded default), prints
JSON for data and tables for humans, and carries an example in its ``--help``.
Errors print one line naming the field and exit with status 2 (bad input),
1 (conflict, integrity problem) or 3 (backend unavailable).
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from . import _open
from .errors import BackendUnavailable, ClawStateError, InvalidRequest, VersionConflict
from .store import Store
from .types import Change, Item

app = typer.Typer(
    name="clawstate",
    help="clawstate: persistent state for distributed apps — from the shell.\n\n"
    "Example:  clawstate put carts u42 '{\"items\": []}' && clawstate get carts u42",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
keys_app = typer.Typer(
    help="Key-encryption keys.\n\nExample:  clawstate keys rotate", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")

console = Console(stderr=False)
err_console = Console(stderr=True)


class _State:
    url: str | None = None
    config: str | None = None


_state = _State()


@app.callback()
def _main(
    url: Annotated[
        str | None,
        typer.Option(
            "--url", "-u", help="Store URL (default: CLAWSTATE_URL or the embedded store)"
        ),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="Path of clawstate.toml")
    ] = None,
) -> None:
    _state.url = url
    _state.config = config


@contextmanager
def _store() -> Iterator[Store]:
    try:
        store = _open.open(_state.url, config=_state.config, sweep_interval=0)
    except ClawStateError as exc:
        _fail(exc)
    try:
        yield store
    except ClawStateError as exc:
        _fail(exc)
    finally:
        store.close()


def _fail(exc: ClawStateError) -> Any:
    err_console.print(f"error: {type(exc).__name__}: {exc}", markup=False, highlight=False)
    if isinstance(exc, InvalidRequest):
        code = 2
    elif isinstance(exc, BackendUnavailable):
        code = 3
    else:
        code = 1
    raise typer.Exit(code)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _item_doc(item: Item) -> dict[str, Any]:
    return {
        "namespace": item.namespace,
        "key": item.key,
        "value": _jsonable(item.value),
        "version": item.version,
        "etag": item.etag,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "expires_at": item.expires_at,
    }


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, sort_keys=False) + "\n")
    sys.stdout.flush()


def _parse_value(text: str, raw: bool) -> Any:
    if text == "-":
        text = sys.stdin.read()
    if raw:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(InvalidRequest("value", f"is not valid JSON ({exc}); pass --raw to store a string"))


@app.command()
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
    with _store() as store:
        item = store.namespace(namespace).get(key)
        if item is None:
            err_console.print(f"not found: {namespace}/{key}", markup=False)
            raise typer.Exit(1)
        _print_json(_jsonable(item.value) if value_only else _item_doc(item))


@app.command()
def put(
    namespace: Annotated[str, typer.Argument(help="Namespace name")],
    key: Annotated[str, typer.Argument(help="Key")],
    value: Annotated[str, typer.Argument(help="JSON value, or - to read it from stdin")],
    ttl: Annotated[float | None, typer.Option(help="Expire after this many seconds")] = None,
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

    \b
    Example:
      clawstate put carts u42 '{"status": "open", "total": 19.5, "items": [{"sku": "a1"}]}' --ttl 1800
    """  # noqa: E501
    parsed = _parse_value(value, raw)
    with _store() as store:
        item = store.namespace(namespace).put(
            key,
            parsed,
            ttl=ttl,
            if_version=if_version,
            if_absent=if_absent,
            idempotency_key=idempotency_key,
        )
        doc = _item_doc(item)
        del doc["value"]
        _print_json(doc)


@app.command()
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
    with _store() as store:
        _print_json(store.namespace(namespace).delete(key, if_version=if_version))


@app.command()
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
    with _store() as store:
        page = store.namespace(namespace).scan(prefix=prefix, limit=limit, cursor=cursor)
        items: list[Any] = [i.key if keys_only else _item_doc(i) for i in page.items]
        _print_json({"items": items, "cursor": page.cursor})


@app.command()
def query(
    namespace: Annotated[str, typer.Argument(help="Namespace name")],
    query_json: Annotated[str, typer.Argument(help="Dapr state-query JSON, or - for stdin")],
) -> None:
    """Run a Dapr state query (filter / sort / page) and print the page as JSON.

    \b
    Example:
      clawstate query carts '{"filter": {"EQ": {"status": "open"}}, "sort": [{"key": "total", "order": "DESC"}], "page": {"limit": 10}}'
    """  # noqa: E501
    text = sys.stdin.read() if query_json == "-" else query_json
    with _store() as store:
        page = store.namespace(namespace).query(text)
        _print_json({"items": [_item_doc(i) for i in page.items], "cursor": page.cursor})


@app.command()
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
    with _store() as store:
        seen = 0
        w = store.watch(from_seq, namespace=namespace, timeout=timeout)
        try:
            for change in w:
                _print_json(_change_doc(change))
                seen += 1
                if count is not None and seen >= count:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            w.close()


def _change_doc(change: Change) -> dict[str, Any]:
    return {
        "seq": change.seq,
        "namespace": change.namespace,
        "key": change.key,
        "op": change.op,
        "version": change.version,
        "ts": change.ts,
    }


@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Show the store: backend, namespaces with item counts and bytes, change log.

    \b
    Example:
      clawstate stats --json
    """
    with _store() as store:
        data = store.stats()
    if as_json:
        _print_json(data)
        return
    table = Table(title="clawstate namespaces")
    for col in ("namespace", "backend", "items", "bytes", "serializer", "compress>", "encrypted"):
        table.add_column(col, justify="right" if col in ("items", "bytes") else "left")
    for name, entry in data["namespaces"].items():
        policy = entry.get("policy", {})
        table.add_row(
            name,
            str(entry.get("backend", "")),
            str(entry.get("items", "")),
            str(entry.get("bytes", "")),
            str(policy.get("serializer", "")),
            str(policy.get("compress_above", "")),
            "yes" if policy.get("encrypt") else "no",
        )
    console.print(table)
    for bname, info in data["backends"].items():
        console.print(f"[bold]backend {bname}[/]: {info.get('backend', '')}", highlight=False)
        for key, value in info.items():
            if key != "backend":
                console.print(f"  {key}: {value}", highlight=False, markup=False)


@app.command()
def check(
    deep: Annotated[
        bool, typer.Option("--deep", help="Also decode every value (decrypt, decompress)")
    ] = False,
) -> None:
    """Verify the store's integrity; exit status 1 if a problem is found.

    \b
    Example:
      clawstate check --deep
    """
    with _store() as store:
        report = store.check(deep=deep)
    _print_json({"ok": report.ok, "problems": report.problems, "checked": report.checked})
    if not report.ok:
        raise typer.Exit(1)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new key-encryption key primary and re-wrap every encrypted value under it.

    \b
    Example:
      clawstate keys rotate
    """
    with _store() as store:
        with Progress(
            TextColumn("re-wrapping"), BarColumn(), MofNCompleteColumn(), console=err_console
        ) as progress:
            task = progress.add_task("rotate", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = store.rotate_keys(progress=report)
    _print_json(result)


@app.command()
def demo() -> None:
    """A short tour on the embedded store: write, query, watch, then stats.

    \b
    Example:
      clawstate demo
    """
    with _store() as store:
        start = store.last_seq
        orders = store.namespace("demo-orders")
        console.print(f"[bold]clawstate demo[/] on {store.backend.name}: {_where(store)}")
        for i, (status, total) in enumerate(
            [("open", 42.5), ("paid", 18.0), ("open", 99.9), ("shipped", 7.25), ("open", 12.0)]
        ):
            orders.put(f"o{i}", {"status": status, "total": total, "customer": {"id": f"c{i % 2}"}})
        console.print("wrote 5 orders to namespace [cyan]demo-orders[/]")
        first = orders.get("o0")
        assert first is not None
        try:
            orders.put("o0", {"status": "paid", "total": 42.5}, if_version=first.version + 5)
        except VersionConflict as exc:
            console.print(f"a stale compare-and-set was refused: {exc}", markup=False)
        orders.put("o0", {**first.value, "status": "paid"}, if_version=first.version)
        page = orders.query(
            {"filter": {"EQ": {"status": "open"}}, "sort": [{"key": "total", "order": "DESC"}]}
        )
        console.print("open orders, largest first:")
        for item in page.items:
            console.print(f"  {item.key}: {item.value}", markup=False, highlight=False)
        with store.transaction() as tx:
            tx.namespace("demo-orders").delete("o3")
            tx.namespace("demo-stock").put("sku-1", {"left": 9})
        console.print("a transaction deleted o3 and updated demo-stock atomically")
        console.print("the change log since the demo started:")
        for change in store.watch(start, timeout=0.2):
            console.print(
                f"  seq {change.seq}: {change.op} {change.namespace}/{change.key} "
                f"v{change.version}",
                markup=False,
                highlight=False,
            )
    console.print("")
    stats()


def _where(store: Store) -> str:
    path = store.stats()["backends"]["default"].get("path")
    return str(path) if path else "memory"


def main() -> None:
    """Entry point of the ``clawstate`` console script."""
    app()


if __name__ == "__main__":
    main()
