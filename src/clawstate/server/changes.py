"""``GET /v1/changes``: the change log, as a JSON batch or a live SSE stream.

A caller that may not read every namespace gets only positions of changes it may
read (or the one it sent): the store-wide end would tell it how much everyone else
wrote.  Both answers read through the log's :class:`~clawstate._follow.Cursor` (the
JSON batch on the pool; the SSE stream with :func:`.notify.sse_follow`, whose reads
every stream of the same namespace shares, and which waits on the log's hub without
a thread).  A start that retention trimmed is a 410 problem; a stream that retention
overtakes ends with an ``error`` event carrying that problem.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from litestar import Request, get
from litestar.params import Parameter
from litestar.types import ASGIApp

from .._follow import ChangeSource, Cursor
from .._validate import parse_int
from .._wire import SSE, ChangeBatch
from ..store import Store, Watch
from ..types import Change
from .auth import Principal
from .guard import deny
from .http import (
    HeartbeatParam,
    RawStream,
    ctx_of,
    header,
    heartbeat_seconds,
    json_encode,
    reply,
    state_of,
    strict_ints,
)
from .notify import Feed, PrefetchedSource, sse_follow
from .openapi import responses
from .state import ServerState

__all__ = ["CHANGE_ROUTES"]


def _sse_change(c: Change) -> bytes:
    return b"id: %d\nevent: change\ndata: %s\n\n" % (c.seq, json_encode(c))


def _sees_everything(p: Principal) -> bool:
    """May ``p`` read every namespace the change log holds (system ones included)?

    Only then may it learn store-wide positions: for anyone else every position it
    receives is the seq of a change it may read, or one it sent (see ``changes``)."""
    return p.admin


def _wanted(prefix: str) -> Callable[[Change], bool]:
    """What a caller is sent of the log: its key prefix, never a system namespace."""
    if prefix:
        return lambda c: not c.namespace.startswith("_") and c.key.startswith(prefix)
    return lambda c: not c.namespace.startswith("_")


def _newest_visible(store: Store, namespace: str | None, prefix: str, backend: str | None) -> int:
    """The seq of the newest retained change this watch would show (0: none): where a
    scoped caller's "start at the end" begins, instead of the store-wide end."""
    watch = store.watch(0, namespace=namespace, prefix=prefix, backend=backend)
    cursor, keep, newest = watch.cursor, _wanted(prefix), 0
    try:
        while True:
            before = cursor.position
            rows = cursor.read()
            for c in rows:
                if keep(c):
                    newest = c.seq
            if not rows and cursor.position == before:
                return newest
    finally:
        watch.close()


def _take(watch: Watch, limit: int, prefix: str) -> tuple[list[Change], int]:
    """Up to ``limit`` changes the caller may read, read without waiting, and the
    position the answer covers (every change up to it was read).  Each read asks for
    no more than is still wanted, so nothing read is left behind the position."""
    cursor, keep = watch.cursor, _wanted(prefix)
    out: list[Change] = []
    try:
        while len(out) < limit:
            cursor.limit = limit - len(out)
            before = cursor.position
            rows = cursor.read()
            out.extend(c for c in rows if keep(c))
            if not rows and cursor.position == before:
                break
        return out, cursor.position
    finally:
        watch.close()


def _stream_cursor(feed: Feed[Change], after: int, strict: bool | None) -> Cursor[Change]:
    """A stream's cursor on ``feed``, from where the request's watch started (its
    start check — a trimmed start — runs here, on the pool)."""
    return Cursor(PrefetchedSource(feed), after, limit=256, field="from_seq", strict=strict)


@get(
    "/v1/changes",
    opt={"auth": "token"},
    operation_id="changes",
    summary="The change log after from_seq: a JSON batch, or a live SSE stream "
    "(Accept: text/event-stream; id: = seq, Last-Event-ID resumes).",
    responses=responses(ChangeBatch),
    tags=["store"],
)
async def changes(
    request: Request[Any, Any, Any],
    from_seq: Annotated[
        int | None,
        Parameter(query="from_seq", required=False, description="Omit to start at the end."),
    ] = None,
    namespace: Annotated[str | None, Parameter(query="namespace", required=False)] = None,
    prefix: Annotated[str, Parameter(query="prefix", required=False)] = "",
    timeout: Annotated[
        float | None,
        Parameter(
            query="timeout",
            required=False,
            description="SSE: end after this many seconds without a change (omit: never).",
        ),
    ] = None,
    limit: Annotated[int, Parameter(query="limit", required=False, ge=0, le=10000)] = 1000,
    heartbeat: HeartbeatParam = None,
    backend: Annotated[str | None, Parameter(query="backend", required=False)] = None,
    last_event_id: Annotated[str | None, Parameter(header="last-event-id", required=False)] = None,
) -> ASGIApp:
    st, ctx = state_of(request), ctx_of(request)
    p = ctx.principal
    assert p is not None
    if namespace is not None:
        ok = (p.admin or not namespace.startswith("_")) and p.allows("ns", namespace, "read")
    else:
        ok = p.allows_all("ns", "read")
    if not ok:
        await deny(st, request, p)
    sse = SSE in (header(request, "accept") or "")
    beat = heartbeat_seconds(heartbeat, st.settings)  # checked on every path
    strict_ints(request, "from_seq", "limit")
    if last_event_id:
        from_seq = parse_int(last_event_id, "last-event-id")  # a seq: 0 to 2**63-1
    # A caller that may not read every namespace gets only positions of changes it may
    # read (or the one it sent): the store-wide end would tell it how much everyone else
    # wrote.  "Start at the end" is then the newest change it could read.
    scoped = not _sees_everything(p)
    if scoped and from_seq is None:
        from_seq = await st.run(_newest_visible, ctx.store, namespace, prefix, backend)
    watch: Watch = await st.run(
        ctx.store.watch,
        from_seq,
        namespace=namespace,
        prefix=prefix,
        timeout=timeout,
        backend=backend,
    )
    start = watch.last_seq
    if not sse:
        if limit == 0:
            await st.run(watch.close)
            return reply(request, ChangeBatch([], start))
        got, resume = await st.run(_take, watch, limit, prefix)
        if scoped:
            resume = got[-1].seq if got else start
        return reply(request, ChangeBatch(got, resume))
    source = watch.cursor.source
    assert isinstance(source, ChangeSource)
    watch.close()
    store, bname = ctx.store, backend
    feed = st.feeds.feed(
        (source.backend, source.namespace, "changes"),
        lambda: Feed(
            ChangeSource(source.backend, source.namespace),
            _sse_change,
            st.run,
            lambda: store._settle(bname),
        ),
    )
    try:
        cursor = await st.run(_stream_cursor, feed, start, None)
    except BaseException:
        st.feeds.release(feed)
        raise
    return RawStream(
        _stream(st, feed, cursor, prefix, timeout, beat, start if scoped else None),
        SSE,
        {"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def _stream(
    st: ServerState,
    feed: Feed[Change],
    cursor: Cursor[Change],
    prefix: str,
    timeout: float | None,
    beat: float,
    scoped: int | None,
) -> AsyncIterator[bytes]:
    """The SSE stream.  ``scoped`` is None for a caller that may read everything (the
    end event carries the store-wide position), else its start position: the end
    event then carries the seq of the last change it was sent, or that start."""

    def end(position: int, last: Change | None) -> bytes:
        shown = position if scoped is None else scoped if last is None else last.seq
        return b"event: end\ndata: %s\n\n" % json_encode({"last_seq": shown})

    st.metrics.watches.inc()
    try:
        async for chunk in sse_follow(
            st.feeds, feed, cursor, keep=_wanted(prefix), timeout=timeout, beat=beat, end=end
        ):
            yield chunk
    finally:
        st.metrics.watches.dec()


CHANGE_ROUTES: list[Any] = [changes]
