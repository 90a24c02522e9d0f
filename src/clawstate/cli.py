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
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from . import _open
from .cli_events import events_app, projections_app, worker
from .errors import (
    BackendUnavailable,
    ClawStateError,
    IntegrityError,
    InvalidRequest,
    VersionConflict,
)
from .store import Store
from .types import Change, CheckReport, Item

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
token_app = typer.Typer(
    help="Bearer tokens for `clawstate serve` (stored as hashes in the store).\n\n"
    "Example:  clawstate token create --scope 'ns:carts:rw' --ttl 30d",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")
audit_app = typer.Typer(
    help="The server's hash-chained audit log.\n\nExample:  clawstate audit verify",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")
app.add_typer(events_app, name="events")
app.add_typer(projections_app, name="projections")
app.command("worker")(worker)

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
def _store(*, create: bool = True) -> Iterator[Store]:
    """The store the options name.  Read commands pass ``create=False``: on a missing
    store they fail with "no store at …" and create nothing (a typo in ``--url``
    must not leave a directory behind); write commands and ``serve`` create it."""
    try:
        store = _open.open(_state.url, config=_state.config, sweep_interval=0, create=create)
    except ClawStateError as exc:
        _fail(exc)
    try:
        yield store
    except ClawStateError as exc:
        _fail(exc)
    finally:
        store.close()


def _fail(exc: ClawStateError) -> Any:
    # One unwrapped line: a message (and a path in it) must survive grep and copy-paste.
    err_console.print(
        f"error: {type(exc).__name__}: {exc}", markup=False, highlight=False, soft_wrap=True
    )
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


def _bytes_doc(value: Any) -> Any:
    """``json.dumps``'s fallback: nested bytes (msgpack namespaces) print as top-level
    bytes do, ``{"$bytes": base64}``, instead of crashing the command."""
    if isinstance(value, bytes | bytearray | memoryview):
        return _jsonable(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _finite(doc: Any) -> Any:
    """``doc`` with NaN and infinities as None: how HTTP's JSON shows them."""
    if isinstance(doc, float) and not -math.inf < doc < math.inf:
        return None
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_finite(v) for v in doc]
    return doc


def _dumps(doc: Any) -> str:
    """JSON text, always valid JSON: ``json.dumps`` alone would print ``NaN``.

    New values cannot hold NaN or infinities (they are refused on every path), but
    values stored before that policy are read unchanged; they print as ``null``,
    exactly as a JSON reader over HTTP sees them.
    """
    try:
        return json.dumps(doc, ensure_ascii=False, allow_nan=False, default=_bytes_doc)
    except ValueError:
        return json.dumps(_finite(doc), ensure_ascii=False, allow_nan=False, default=_bytes_doc)


def _print_json(doc: Any) -> None:
    sys.stdout.write(_dumps(doc) + "\n")
    sys.stdout.flush()


def parse_json(text: str, field: str) -> Any:
    """JSON from the command line, parsed exactly as the HTTP API parses a JSON body
    (:func:`clawstate._wire.decode_body`): ``NaN``, ``1e999`` and duplicate object
    names are refused, naming ``field``, instead of being read as Python's ``json``
    would (NaN, inf, the last duplicate)."""
    from ._wire import JSON, decode_body

    return decode_body(text.encode("utf-8", "surrogateescape"), JSON, field)


def _parse_value(text: str, raw: bool) -> Any:
    if text == "-":
        text = sys.stdin.read()
    if raw:
        return text
    try:
        return parse_json(text, "value")
    except InvalidRequest as exc:
        if "is not valid JSON" in str(exc):  # perhaps plain text: point at --raw
            why = str(exc).split(": ", 1)[1]
            exc = InvalidRequest("value", f"{why}; pass --raw to store a string")
        _fail(exc)


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
    with _store(create=False) as store:
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
      clawstate put carts u42 '{"status": "open", "total": 19.5, "items": [{"sku": "a1"}]}' --ttl 1800
    """  # noqa: E501
    parsed = _parse_value(value, raw)
    with _store() as store:
        item = store.namespace(namespace).put(
            key,
            parsed,
            ttl=ttl,
            keep_ttl=keep_ttl,
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
    with _store(create=False) as store:
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
    with _store(create=False) as store:
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
    with _store(create=False) as store:
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
    with _store(create=False) as store:
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
    _print_cache_table(data.get("cache") or {})
    for bname, info in data["backends"].items():
        console.print(f"[bold]backend {bname}[/]: {info.get('backend', '')}", highlight=False)
        for key, value in info.items():
            if key != "backend":
                console.print(f"  {key}: {value}", highlight=False, markup=False)


def _print_cache_table(cache: dict[str, Any]) -> None:
    """Hit ratio per tier and namespace, evictions and bytes (cached namespaces only)."""
    namespaces = cache.get("namespaces") or {}
    if not namespaces:
        return
    table = Table(title="cache")
    for col in ("namespace", "mode", "hit ratio", "L1 hit", "L2 hit", "L1 bytes", "evictions"):
        table.add_column(col, justify="left" if col in ("namespace", "mode") else "right")
    for name, entry in namespaces.items():
        l1 = entry.get("l1") or {}
        l2 = entry.get("l2") or {}
        table.add_row(
            name,
            f"{entry.get('mode', '')} ({entry.get('consistency', '')})",
            f"{entry.get('hit_ratio', 0):.1%}",
            f"{l1.get('hit_ratio', 0):.1%}",
            f"{l2.get('hit_ratio', 0):.1%}" if l2 else "—",
            f"{l1.get('bytes', 0)} / {l1.get('max_bytes', 0)}",
            str(l1.get("evictions", 0)),
        )
    console.print(table)


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
    try:
        store = _open.open(_state.url, config=_state.config, sweep_interval=0, create=False)
    except IntegrityError as exc:  # too damaged to open: that is the finding
        report = CheckReport([str(exc)], {})
    except ClawStateError as exc:
        _fail(exc)
    else:
        try:
            report = store.check(deep=deep)
        except ClawStateError as exc:
            _fail(exc)
        finally:
            store.close()
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


# -- the server ---------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port)")] = 8720,
    workers: Annotated[int, typer.Option(help="Worker processes sharing the port")] = 1,
    certfile: Annotated[str | None, typer.Option(help="TLS certificate (PEM)")] = None,
    keyfile: Annotated[str | None, typer.Option(help="TLS private key (PEM)")] = None,
    rate_limit: Annotated[
        float, typer.Option("--rate-limit", help="Requests/s per token per worker (0: off)")
    ] = 1000.0,
    max_body: Annotated[
        str, typer.Option("--max-body", help="Largest request body read (e.g. 32MiB)")
    ] = "32MiB",
    public_metrics: Annotated[
        bool, typer.Option("--public-metrics", help="Serve /metrics without a token")
    ] = False,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="One JSON log line per request")
    ] = False,
    threads: Annotated[
        int, typer.Option(help="Store threads per worker (in-flight store calls)")
    ] = 8,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = "info",
    graceful_timeout: Annotated[
        float, typer.Option("--graceful-timeout", help="Seconds to drain on shutdown")
    ] = 30.0,
) -> None:
    """Serve the store over HTTP until Ctrl-C (SIGTERM drains in-flight requests).

    On a store's first start an admin token is created and printed once; only its
    hash is kept.  See docs/server.md.

    \b
    Example:
      clawstate serve --port 8720
    """
    from .config import parse_size

    try:
        from .server.app import ServerSettings
        from .server.run import serve as run_server
    except ImportError as exc:
        err_console.print(
            f"error: the server needs the 'server' extra ({exc.name} is missing): "
            "pip install 'clawstate[server]'",
            markup=False,
        )
        raise typer.Exit(3) from None

    def announce(url: str, admin: str | None) -> None:
        # Plain writes, not rich: a wrapped line would split the token.
        lines = [f"clawstate serve: {url}"]
        if admin is not None:
            lines.append(f"admin token (shown once; only its hash is stored): {admin}")
        else:
            lines.append(
                "admin token: created on first start; make another with "
                "`clawstate token create --scope admin`"
            )
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    try:
        settings = ServerSettings(
            max_body_bytes=parse_size(max_body, field="max_body"),
            rate_limit=rate_limit or None,
            public_metrics=public_metrics,
            access_log=access_log,
            threads=threads,
        )
        run_server(
            _state.url,
            config=_state.config,
            host=host,
            port=port,
            workers=workers,
            certfile=certfile,
            keyfile=keyfile,
            settings=settings,
            log_level=log_level,
            graceful_timeout=graceful_timeout,
            announce=announce,
        )
    except ClawStateError as exc:
        _fail(exc)
    except OSError as exc:
        err_console.print(f"error: cannot listen on {host}:{port}: {exc}", markup=False)
        raise typer.Exit(3) from None


def _audit_cli(store: Store, action: str, **detail: Any) -> None:
    """Admin actions taken from the shell go into the same audit chain as the server's."""
    import getpass
    import time

    from .server.audit import append

    append(
        store,
        [
            {
                "action": action,
                "status": 200,
                "actor": f"cli:{getpass.getuser()}",
                "route": "cli",
                "ts": time.time(),
                "detail": detail,
            }
        ],
    )


@token_app.command("create")
def token_create(
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="ns:<glob>:<read|write|rw|admin>, events:<glob>:<action>, admin or metrics",
        ),
    ],
    ttl: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 30d or 12h (default: none)")
    ] = None,
    note: Annotated[str, typer.Option(help="What the token is for")] = "",
    rate: Annotated[
        float | None, typer.Option(help="Requests/s for this token (default: the server's)")
    ] = None,
) -> None:
    """Create a token and print it once as JSON; the store keeps only its hash.

    \b
    Example:
      clawstate token create --scope 'ns:carts:rw' --scope 'events:orders-*:read' --ttl 30d
    """
    from .server.auth import TokenStore

    with _store() as store:
        plaintext, rec = TokenStore(store).create(list(scope), ttl=ttl, note=note, rate=rate)
        _audit_cli(store, "token.create", id=rec.id, scopes=rec.scopes)
        _print_json(
            {"id": rec.id, "token": plaintext, "scopes": rec.scopes, "expires_at": rec.expires_at}
        )


@token_app.command("list")
def token_list() -> None:
    """List tokens as JSON: ids, scopes, expiry, revocation (never secrets or hashes).

    \b
    Example:
      clawstate token list
    """
    import msgspec

    from .server.auth import TokenStore

    with _store(create=False) as store:
        tokens = TokenStore(store).list()
        _audit_cli(store, "token.list")
        _print_json(msgspec.to_builtins(tokens))


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id")]) -> None:
    """Revoke a token by id; prints whether a token was revoked.

    \b
    Example:
      clawstate token revoke 0123456789abcdef
    """
    from .server.auth import TokenStore

    with _store() as store:
        revoked = TokenStore(store).revoke(token_id)
        _audit_cli(store, "token.revoke", id=token_id[:64], revoked=revoked)
        _print_json({"id": token_id, "revoked": revoked})


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's MAC chain (keyed from the store's keyring); exit status 1
    if it is broken, naming the first bad record.  Compare the printed seq and head
    with a copy kept elsewhere (the server logs them, /metrics exports them).

    \b
    Example:
      clawstate audit verify
    """
    import msgspec

    from .server.audit import verify

    with _store(create=False) as store:
        report = verify(store)
    _print_json(msgspec.to_builtins(report))
    if not report.ok:
        where = "" if report.first_bad is None else f" at record {report.first_bad}"
        err_console.print(
            f"error: the audit log is broken{where}: {report.problems[0]}", markup=False
        )
        raise typer.Exit(1)
    if report.records and not report.keyed:
        err_console.print(
            "warning: the audit log is an unkeyed hash chain (this store has no keyring): "
            "anyone able to write the database could have rewritten it",
            markup=False,
        )


@audit_app.command("seal")
def audit_seal() -> None:
    """Pin an audit log written before the chain was keyed under the keyring's MAC
    (one ``audit.keyed`` record); a no-op on a keyed or empty log.

    \b
    Example:
      clawstate audit seal
    """
    from .server.audit import seal

    with _store(create=False) as store:
        sealed = seal(store)
    _print_json({"sealed": sealed})


@audit_app.command("prune")
def audit_prune(
    keep_days: Annotated[
        float | None,
        typer.Option(help="Delete records older than this many days (default: [audit] keep_days)"),
    ] = None,
    keep_records: Annotated[
        int | None,
        typer.Option(help="Keep at most this many newest records (default: [audit] keep_records)"),
    ] = None,
) -> None:
    """Apply the audit log's retention: delete the oldest records and leave a sealed
    checkpoint (number and MAC of the last one deleted) that `audit verify` checks.
    The part deleted is verified first; a broken chain is not pruned (exit status 1).

    \b
    Example:
      clawstate audit prune --keep-days 90
    """
    import math

    import msgspec

    from .server.audit import prune

    with _store(create=False) as store:
        days = keep_days if keep_days is not None else store.config.audit_keep_days
        records = keep_records if keep_records is not None else store.config.audit_keep_records
        if days is not None and not (math.isfinite(days) and 0 < days <= 36500):
            _fail(InvalidRequest("keep_days", f"must be > 0 and <= 36500 days, got {days}"))
        if records is not None and records < 1:
            _fail(InvalidRequest("keep_records", f"must be >= 1, got {records}"))
        if days is None and records is None:
            _fail(
                InvalidRequest(
                    "keep_days",
                    "give --keep-days or --keep-records (or set [audit] keep_days / "
                    "keep_records in clawstate.toml)",
                )
            )
        report = prune(store, keep_days=days, keep_records=records)
    _print_json(msgspec.to_builtins(report))


def main() -> None:
    """Entry point of the ``clawstate`` console script."""
    app()


if __name__ == "__main__":
    # ``python -m clawstate.cli`` runs this file as ``__main__``; cli_events imports
    # ``clawstate.cli``, a second copy whose options (``--url``…) this one never set.
    # Run the imported module's app so that both share one set of options.
    from clawstate.cli import main as _imported_main

    _imported_main()
