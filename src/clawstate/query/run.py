"""The Python evaluator: one page of a query over a stream of decoded rows.

Backends that cannot compile a query (memory, Redis, encrypted namespaces on SQLite
and PostgreSQL) feed it every candidate row; a compiling backend feeds it the
``limit + 1`` rows its SQL returned, so that tokens and the order of ties stay this
module's.

**Early exit.**  A query without a sort pages in key order, the order every backend
streams rows in (``key_ordered=True``).  Then the first ``limit + 1`` matches after the
token *are* the page: the stream is read only that far, instead of through a bounded
heap over every row of the namespace (issue 12 measured 4 s for one user's sessions
among 1.6 M items; the matches lay in the first few thousand keys).  With a sort, every
candidate must be seen, and the heap keeps only ``limit + 1`` of them.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator, Iterable
from typing import Any, Generic, NamedTuple, TypeVar

from ..errors import InvalidRequest
from .indexable import dotted, wanted_paths
from .nodes import Query
from .order import _Plan

T = TypeVar("T")


class QueryRun(NamedTuple, Generic[T]):
    """One page: the payloads of its rows, the next page's token (``None`` on the last
    page), how many rows of the stream were read, and whether the read stopped early."""

    items: list[T]
    token: str | None
    rows_read: int
    early_exit: bool


def _first(entry: tuple[tuple[Any, ...], Any, Any]) -> tuple[Any, ...]:
    return entry[0]


def resume_key(query: Query) -> str | None:
    """The key a key-ordered read may start strictly after: the last key of the page
    the token ends, for a query without a sort; ``None`` without a token or with a sort
    (then the position is not a key).  Raises InvalidRequest (``query.page.token``) for
    a malformed token or one from another query, as :func:`run_query` would."""
    if query.token is None or query.sort:
        return None
    position = _Plan(query).decode_token(query.token)
    last: str = position[-1]
    return last


def scan_refused(query: Query, rows: int, max_scan: int) -> InvalidRequest:
    """The error of a query that would read more than ``max_scan`` rows without an
    index serving it: it names the count, the limit and the index that would serve it
    (the first filter path), so the fix is one line of configuration."""
    paths = wanted_paths(query.filter)
    hint = (
        f"declare indexes = [{', '.join(repr(dotted(p)) for p in paths[:3])}] for the "
        "namespace so an index serves it"
        if paths
        else "add a filter on an indexed field, or page with scan()"
    )
    return InvalidRequest(
        "query",
        f"the query must read more than {max_scan} rows ({rows} at least) without an "
        f"index: {hint}, or raise limits.max_query_scan knowingly",
        limit=max_scan,
    )


def run_query(
    query: Query,
    rows: Iterable[tuple[str, Any, T]],
    *,
    key_ordered: bool = False,
    max_read: int | None = None,
    prefiltered: bool = False,
) -> QueryRun[T]:
    """One page of ``rows`` (``(key, decoded_value, payload)``) for the query.

    Filters in one pass, orders by the query's sort (by key when it has none),
    resumes strictly after ``query.token`` and returns the payloads of at most
    ``query.limit`` rows plus the token of the next page (``None`` on the last
    page).  Keys must be unique among ``rows``.  ``key_ordered`` promises that
    ``rows`` arrive in ascending key order (UTF-8 byte order, which is code-point
    order): a query without a sort then stops reading after ``limit + 1`` matches.
    Raises InvalidRequest (``query.page.token``) for a malformed token or one from
    another query, and (``query``, :func:`scan_refused`) when more than ``max_read``
    rows would be read — before the read goes further, so nothing is decoded past it.
    ``prefiltered`` promises that every row matches the filter (a backend's compiled
    SQL evaluated it exactly): the predicate is not run again, and a query without a
    sort then never looks at the values (they may be ``None``, undecoded).
    """
    plan = _Plan(query)
    after = plan.decode_token(query.token) if query.token else None
    predicate = None if prefiltered else plan.predicate
    key_fn = plan.key_fn()
    read = 0

    def candidates() -> Generator[tuple[tuple[Any, ...], Any, T], None, None]:
        nonlocal read
        for key, value, payload in rows:
            read += 1
            if max_read is not None and read > max_read:
                raise scan_refused(query, read, max_read)
            if predicate is not None and not predicate(value):
                continue
            sort_key = key_fn(key, value)
            if after is not None and sort_key <= after:
                continue
            yield sort_key, value, payload

    limit = query.limit
    early = False
    if key_ordered and not query.sort:
        # Rows arrive in page order: the first limit + 1 candidates are the page.
        page: list[tuple[tuple[Any, ...], Any, T]] = []
        stream = candidates()
        for entry in stream:
            page.append(entry)
            if len(page) > limit:
                early = True
                break
        stream.close()
    else:
        # A bounded heap over a stream: O(n log limit), and only limit + 1 rows are
        # ever held, instead of materialising and sorting every match.
        page = heapq.nsmallest(limit + 1, candidates(), key=_first)
    has_more = len(page) > limit
    del page[limit:]

    token = None
    if has_more and page:
        last_key: str = page[-1][0][-1]
        token = plan.token_for(last_key, page[-1][1])
    return QueryRun([entry[2] for entry in page], token, read, early)
