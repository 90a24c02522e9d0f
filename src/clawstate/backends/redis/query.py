"""The Redis backend's queries: ``query()`` served by a declared index or by a bounded
scan, and ``ensure_index`` with its online, resumable backfill.

Split out of :mod:`.backend` by job, as the PostgreSQL backend's :mod:`..postgres.query`
is: the index entries and lookups themselves live in :mod:`.indexes`, the Lua in
:mod:`.scripts`; this mixin drives them over :class:`~._core.RedisCore`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from ...errors import InvalidRequest
from ...types import QueryPlan
from .._docindex import parse_index_path
from ..base import NO_DOCUMENT, Decoder, Progress, QueryResult, StoredItem
from ._core import _PAGE, RedisCore, _text
from .indexes import NsIndexes, candidate_lookups, path_entries
from .scripts import _BACKFILL, _CANDIDATES, _DECLARE, _GET_MANY

if TYPE_CHECKING:
    from ...query import Query

__all__ = ["RedisQueries"]

#: Items one backfill script call indexes.
_BACKFILL_CHUNK = 500


class RedisQueries(RedisCore):
    """``query`` and ``ensure_index`` of :class:`~.backend.RedisBackend`."""

    def ensure_index(
        self, namespace: str, fields: Sequence[str], progress: Progress | None = None
    ) -> list[str]:
        """Declare an index on each of ``fields`` (dotted paths) of ``namespace``,
        backfill the ones still building, and return their names in ``fields`` order.

        Declaring bumps the namespace's index generation, so from then on every write
        maintains the new index (a writer that computed its entries before is refused
        by the script and resends).  The backfill then walks the items stored before,
        in key order, in chunks of 500: one script call per chunk adds their entries
        (skipping items a writer changed meanwhile) and records how far it got, so a
        kill leaves the index "building" and the next ``ensure_index`` resumes there.
        ``progress(done, total)`` hears each chunk.  Only the last chunk marks the
        index ready; until then queries read without it."""
        if isinstance(fields, str):
            raise InvalidRequest("indexes", "must be a list of dotted paths, not one string")
        paths = [parse_index_path(f) for f in fields]
        if not paths:
            return []
        dotted = [".".join(p) for p in paths]
        args = [self.prefix, namespace, *dotted]
        got = cast(list[Any], self._read("ensure_index", lambda: self._evalsha(_DECLARE, args)))
        ix = self._load_indexes(namespace)
        for path, state in zip(paths, got[1:], strict=True):
            if state != b"r":
                self._backfill(namespace, ix, path, progress)
        ix = self._load_indexes(namespace)
        return [ix.paths[p].name for p in paths]

    def _backfill(
        self, namespace: str, ix: NsIndexes, path: tuple[str, ...], progress: Progress | None
    ) -> None:
        index = ix.paths[path]
        field = index.field
        total = int(self._read("backfill", lambda: self._call("ZCARD", self._k_index(namespace))))
        cursor = self._read(
            "backfill", lambda: self._call("HGET", f"{self.prefix}qcur:{namespace}", field)
        )
        after = None if cursor is None else _text(cursor)
        done = 0
        if after is not None:
            bound = "[" + after
            done = int(
                self._read(
                    "backfill",
                    lambda: self._call("ZLEXCOUNT", self._k_index(namespace), "-", bound),
                )
            )
        while True:
            page = self._scan(namespace, "", after, _BACKFILL_CHUNK, None)
            last = len(page) < _BACKFILL_CHUNK
            args: list[Any] = [
                self.prefix,
                namespace,
                field,
                index.zprefix,
                page[-1].key if page else "",
                "1" if last else "",
            ]
            for item in page:
                entries = path_entries(index, item.key, item.value, NO_DOCUMENT)
                args += (
                    item.key,
                    item.version,
                    item.seq,
                    hashlib.sha1(item.value).hexdigest(),
                    len(entries) // 3,
                    *entries,
                )
            self._read("backfill", partial(self._evalsha, _BACKFILL, args))
            done += len(page)
            if progress is not None:
                progress(done, max(total, done))
            if last:
                return
            after = page[-1].key

    def query(
        self,
        namespace: str,
        query: Query,
        decode: Decoder,
        now: float,
        explain: bool = False,
        max_scan: int | None = None,
    ) -> QueryResult:
        from ...query import serving_path

        ix = self._indexes.get(namespace)
        if ix is None or ix.building:
            ix = self._load_indexes(namespace)
        ready = ix.ready
        path = serving_path(query.filter, ready)
        if path is not None and query.filter is not None:
            return self._query_index(namespace, query, decode, now, explain, ix, path)
        return self._query_scan(namespace, query, decode, now, max_scan)

    def _query_index(
        self,
        namespace: str,
        query: Query,
        decode: Decoder,
        now: float,
        explain: bool,
        ix: NsIndexes,
        path: tuple[str, ...],
    ) -> QueryResult:
        """A query an index serves: its candidate keys (one script call), then those
        items in key order, fetched in chunks as :func:`run_query` reads them (so a
        query without a sort stops after ``limit + 1`` matches), each checked for
        liveness and decoded and filtered in full like a scanned row."""
        from ...query import resume_key, run_query

        assert query.filter is not None
        lookups = candidate_lookups(query.filter, ix)
        args = [self.prefix, *lookups]
        raw = cast(list[bytes], self._read("query", lambda: self._evalsha(_CANDIDATES, args)))
        keys = sorted(raw)  # UTF-8 byte order is key order
        after = resume_key(query)
        if after is not None:
            start = after.encode()
            keys = [k for k in keys if k > start]
        fetched = 0

        def rows() -> Iterator[tuple[str, Any, StoredItem]]:
            nonlocal fetched
            pos, chunk = 0, max(64, query.limit + 1)
            while pos < len(keys):
                part = keys[pos : pos + chunk]
                pos += len(part)
                batch = [self.prefix, namespace, *part]
                flat = cast(
                    list[Any], self._read("query", partial(self._evalsha, _GET_MANY, batch))
                )
                fetched += len(part)
                for it in self._items(namespace, flat, now):
                    yield it.key, decode(it), it
                chunk = min(_PAGE, chunk * 2)

        run = run_query(query, rows(), key_ordered=True)
        name = ix.paths[path].name
        detail = [f"candidates {len(keys)} from index {name}"] if explain else []
        plan = QueryPlan("redis", "index", fetched, run.early_exit, name, detail)
        return QueryResult(run.items, run.token, plan)

    def _query_scan(
        self, namespace: str, query: Query, decode: Decoder, now: float, max_scan: int | None
    ) -> QueryResult:
        from ...query import run_query

        live = self.count(namespace, now)
        if live > self.max_query_scan:
            raise InvalidRequest(
                "query",
                f"namespace {namespace!r} holds {live} items, more than max_query_scan "
                f"({self.max_query_scan}): on Redis a query scans every item of the namespace "
                "and filters in Python; raise ?max_query_scan= in the store URL knowingly, or "
                "keep queryable namespaces on PostgreSQL or SQLite",
                limit=self.max_query_scan,
            )
        rows = ((it.key, decode(it), it) for it in self._iter(namespace, now))
        run = run_query(query, rows, key_ordered=True, max_read=max_scan)
        plan = QueryPlan("redis", "scan", run.rows_read, run.early_exit)
        return QueryResult(run.items, run.token, plan)
