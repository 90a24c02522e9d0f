"""The Python evaluator: one page of a query over a stream of decoded rows.

Backends without a query compiler (memory, SQLite, Redis) feed it every candidate row;
the PostgreSQL backend feeds it the ``limit + 1`` rows its SQL returned, so that tokens
and the order of ties stay this module's.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from .nodes import Query
from .order import _Plan

T = TypeVar("T")


def _first(entry: tuple[tuple[Any, ...], Any, Any]) -> tuple[Any, ...]:
    return entry[0]


def run_query(query: Query, rows: Iterable[tuple[str, Any, T]]) -> tuple[list[T], str | None]:
    """One page of ``rows`` (``(key, decoded_value, payload)``) for the query.

    Filters in one pass, orders by the query's sort (by key when it has none),
    resumes strictly after ``query.token`` and returns the payloads of at most
    ``query.limit`` rows plus the token of the next page (``None`` on the last
    page).  Keys must be unique among ``rows``.  Raises InvalidRequest
    (``query.page.token``) for a malformed token or one from another query.
    """
    plan = _Plan(query)
    after = plan.decode_token(query.token) if query.token else None
    predicate = plan.predicate
    key_fn = plan.key_fn()

    def candidates() -> Iterator[tuple[tuple[Any, ...], Any, T]]:
        for key, value, payload in rows:
            if predicate is not None and not predicate(value):
                continue
            sort_key = key_fn(key, value)
            if after is not None and sort_key <= after:
                continue
            yield sort_key, value, payload

    # A bounded heap over a stream: O(n log limit), and only limit + 1 rows are
    # ever held, instead of materialising and sorting every match.
    limit = query.limit
    page = heapq.nsmallest(limit + 1, candidates(), key=_first)
    has_more = len(page) > limit
    del page[limit:]

    token = None
    if has_more and page:
        last_key: str = page[-1][0][-1]
        token = plan.token_for(last_key, page[-1][1])
    return [entry[2] for entry in page], token
