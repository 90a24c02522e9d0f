"""Looking after a store: ``stats``, ``check``, ``index``, ``keys rotate`` and the
``demo`` tour.

``stats``, ``check`` and ``demo`` work against a server too (``--url http://…``,
an admin token for the first two); ``keys rotate`` needs the store's keyring and
``index`` builds indexes in the database itself, so they are local-only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from .. import _open
from ..api import StoreAPI
from ..errors import ClawStateError, IntegrityError, VersionConflict
from ..types import CheckReport
from ._common import (
    EXIT_FAILED,
    add_columns,
    console,
    fail,
    is_local,
    local_store,
    print_json,
    print_table,
    progress_bar,
    state,
    store,
)

__all__ = ["check", "demo", "index", "keys_app", "stats"]

keys_app = typer.Typer(
    help="Key-encryption keys.\n\nExample:  clawstate keys rotate",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_T = TypeVar("_T")


def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Show the store: backend, namespaces with item counts and bytes, change log.

    \b
    Example:
      clawstate stats --json
    """
    with store(create=False) as opened:
        data = opened.stats()
    if as_json:
        print_json(data)
        return
    table = Table(title="clawstate namespaces")
    add_columns(
        table,
        ("namespace", "backend", "items", "bytes", "serializer", "compress>", "encrypted"),
        {"items", "bytes"},
    )
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
    print_table(table)
    _print_cache_table(data.get("cache") or {})
    timers = data.get("timers")
    if timers:
        age = timers.get("oldest_overdue_age")
        console.print(
            f"timers: {timers.get('pending')} pending, {timers.get('overdue')} overdue"
            + ("" if age is None else f", oldest overdue {age:.1f} s"),
            highlight=False,
            markup=False,
        )
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
    headers = ("namespace", "mode", "hit ratio", "L1 hit", "L2 hit", "L1 bytes", "evictions")
    add_columns(table, headers, set(headers) - {"namespace", "mode"})
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
    print_table(table)


def run_with_bar(
    label: str,
    work: Callable[[], _T],
    poll: Callable[[], tuple[int, int | None]],
) -> _T:
    """``work()`` in a thread while a progress bar (stderr, terminals only) shows
    ``poll()``'s ``(done, total)`` every tenth of a second; its result or error is
    the caller's.  For work whose API reports progress only through state another
    call can read (a projection's checkpoint)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name="clawstate-cli-work", daemon=True)
    with progress_bar(label) as report:
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
            try:
                report(*poll())
            except ClawStateError:
                pass  # a bar is a courtesy: a failed poll must not fail the command
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


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
    report: CheckReport
    try:
        opened = _open.open(state.url, config=state.config, sweep_interval=0, create=False)
    except IntegrityError as exc:  # too damaged to open: that is the finding
        report = CheckReport([str(exc)], {})
    except ClawStateError as exc:
        fail(exc)
    else:
        try:
            if deep and is_local(opened):
                with progress_bar("checking values") as bar:
                    report = opened.check(deep=True, progress=bar)
            else:
                report = opened.check(deep=deep)
        except ClawStateError as exc:
            fail(exc)
        finally:
            opened.close()
    print_json({"ok": report.ok, "problems": report.problems, "checked": report.checked})
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def index(
    namespaces: Annotated[
        list[str] | None,
        typer.Argument(help="Namespaces (default: every namespace whose policy has indexes)"),
    ] = None,
) -> None:
    """Build the indexes the configuration declares (``indexes = [...]``) and list them.

    An index added to a namespace that already holds data is backfilled while writes
    go on; this shows its progress (opening the namespace would build it too, silently).
    Queries use an index only once it is complete.

    \b
    Example:
      clawstate index carts
    """
    with local_store("index", "it builds indexes in the database itself", create=False) as opened:
        wanted = namespaces or [
            name for name in opened.namespaces() if opened.config.policy_for(name).indexes
        ]
        built: dict[str, list[str]] = {}
        try:
            for name in wanted:
                with progress_bar(f"indexing {name}") as bar:
                    built[name] = opened.build_indexes(name, progress=bar)
        except ClawStateError as exc:
            fail(exc)
        print_json({"indexes": built})


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new key-encryption key primary and re-wrap every encrypted value under it.

    \b
    Example:
      clawstate keys rotate
    """
    with local_store("keys rotate", "it needs the store's keyring") as opened:
        with progress_bar("re-wrapping") as bar:
            result = opened.rotate_keys(progress=bar)
    print_json(result)


def demo() -> None:
    """A short tour: write, query, watch, then stats (embedded store, or --url's server).

    \b
    Example:
      clawstate demo
    """
    with store() as opened:
        start = opened.last_seq
        orders = opened.namespace("demo-orders")
        console.print(f"[bold]clawstate demo[/] on {_where(opened)}", highlight=False)
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
        with opened.transaction() as tx:
            tx.namespace("demo-orders").delete("o3")
            tx.namespace("demo-stock").put("sku-1", {"left": 9})
        console.print("a transaction deleted o3 and updated demo-stock atomically")
        console.print("the change log since the demo started:")
        w = opened.watch(start, timeout=0.5)
        try:
            for change in w:
                console.print(
                    f"  seq {change.seq}: {change.op} {change.namespace}/{change.key} "
                    f"v{change.version}",
                    markup=False,
                    highlight=False,
                )
        finally:
            w.close()
    console.print("")
    stats()


def _where(opened: StoreAPI) -> str:
    """What the demo runs on: the backend and its file, or the server's URL."""
    if not is_local(opened):
        return f"the server at {opened.config.url}"
    path = opened.stats()["backends"]["default"].get("path")
    return f"{opened.backend.name}: {path if path else 'memory'}"
