"""Dapr state-query documents: parsed into a small typed AST, evaluated in Python.

Why this package exists
=======================

Every backend answers the same query language (Dapr's state-query API), and the
answers must not depend on the backend: a page token handed out by the SQLite
backend means the same position as one from the in-memory backend, and the
PostgreSQL backend compiles the very same AST to SQL over ``jsonb``.
So the query is parsed once, here, into a closed set of frozen nodes whose
meaning is pinned down below, and the in-memory and SQLite backends share the
pure-Python evaluator (:func:`matches`, :func:`run_query`).  Every rule was
chosen so that it is expressible in PostgreSQL, and the notes below say how.

The document::

    {"filter": {...}, "sort": [{"key": "a.b", "order": "ASC"}], "page": {"limit": 50, "token": "…"}}

All three fields are optional (JSON ``null`` counts as absent); anything else
at the top level is an error.  Every error is :class:`InvalidRequest` whose
``field`` is the JSON path of the culprit (``query.filter.AND[1].EQ``,
``query.sort[0].order``, ``query.page.limit``…) and whose ``limit`` is the bound
that was broken, when there is one.

Paths
-----
``"customer.address.0.city"`` splits on ``.``; no segment may be empty (keys
that contain a dot cannot be addressed).  At each step an object is indexed by
the segment as a key; a list is indexed only by a segment made of ASCII digits
(``"0"``, ``"12"``, ``"01"`` == 1); anything else — a scalar node, an absent
key, an index past the end, ``"-1"`` — makes the path *missing*.  A digit
segment on an object is an ordinary key (``{"0": x}``).  Python values that JSON
cannot represent (NaN, ±Infinity, bytes, sets, …) count as missing too.

PostgreSQL: ``v #> '{customer,address,0,city}'`` has exactly this behaviour
except that ``#>`` also accepts signed integers (``-1``, ``+1``) on arrays; the
compiler must guard such segments with ``jsonb_typeof(…) = 'object'`` or use a
chain of ``->`` operators.  A missing path is SQL ``NULL``, a present JSON null
is ``'null'::jsonb`` — the two stay distinct, as here.

Filters
-------
For each operator: when it matches, and its PostgreSQL form (``x`` stands for
``v #> path``).

``EQ {p: s}``
    ``p`` is present and its value has the same JSON type as the scalar ``s``
    and is equal to it.  Numbers compare numerically (``1`` = ``1.0``), but
    ``true`` ≠ ``1``; ``null`` matches a present null only, never a missing
    path.  PG: ``x = s::jsonb`` (jsonb equality is already typed and numeric).
``IN {p: [s, …]}``
    ``EQ`` against any element; 1 ≤ n ≤ ``max_in``.  PG: ``x = ANY($1::jsonb[])``.
``GT / GTE / LT / LTE {p: n | "s"}``
    ``p`` is present, and value and operand are both numbers (numeric order)
    or both strings (code-point order = UTF-8 byte order = ``COLLATE "C"``);
    any other combination does not match.  PG: ``jsonb_typeof(x) = 'number'
    AND x::numeric > n``, or ``jsonb_typeof(x) = 'string' AND (x #>> '{}')
    COLLATE "C" > s``.  (Not the ``jsonb > jsonb`` operator: it orders across
    types and by the database collation.)
``AND [f, …]`` / ``OR [f, …]``
    every / some ``f`` matches; the list is never empty.  PG: ``AND`` / ``OR``.

``EQ``/``IN`` operands must be JSON scalars (null, boolean, number, string);
range operands must be a number or a string.  Each operator object and each
``EQ``/``IN``/range operand object has exactly one key.  ``max_depth`` bounds
the nesting of ``AND``/``OR``; ``max_clauses`` bounds the number of operator
objects (combinators included).  Duplicate keys in a JSON text are rejected,
so ``{"EQ": …, "EQ": …}`` cannot smuggle a second operator past the
one-key rule.

Numbers are compared as Python does after decoding: ints exactly, floats as
IEEE doubles.  PostgreSQL's ``numeric`` is decimal, so two literals that differ
only beyond double precision (``0.1`` vs ``0.10000000000000000001``) are equal
here and distinct there; no realistic query depends on that.

Sort order
----------
One total order, so that every backend returns the same pages.  Per sort key,
ascending::

    null < strings < numbers < booleans < arrays < objects < MISSING

* the type ranks are PostgreSQL's jsonb btree order (``Object > Array >
  Boolean > Number > String > Null``); ``false < true``;
* strings by code point (``COLLATE "C"``), numbers numerically;
* arrays by length only, objects by number of members only (``jsonb_array_length``,
  ``count(jsonb_object_keys)``) — contents do not take part;
* a missing path sorts after everything ascending and before everything
  descending: PostgreSQL's default ``NULLS LAST`` for ``ASC`` and ``NULLS FIRST``
  for ``DESC``.  ``DESC`` is the exact reverse of ``ASC``.

Ties are broken by the item key, ascending, whatever the sort orders — keys are
unique, so the order is total.  Without a sort the order is by key ascending.
The PostgreSQL backend must not ``ORDER BY`` the raw ``jsonb``: its string
order follows the database collation, and an empty top-level array sorts before
``null`` there.  It orders by ``(rank, typed value)`` pairs built from
``jsonb_typeof`` instead, as :func:`run_query` does here.

Pages
-----
``page.limit`` (default ``default_limit``, at most ``max_limit``) bounds a
page.  A page token is a *keyset position*, not an offset: url-safe base64 of
``[1, fingerprint, sort positions of the last row, last key]``.  The next page
starts strictly after that position, so rows inserted or deleted between two
requests neither duplicate nor skip the rows that existed throughout (a row
whose sort values change in between may of course move across the boundary).
The fingerprint hashes filter and sort, so a token only works with the query
that issued it (the limit may change between pages).  Tokens are not signed:
forging one only chooses where the same query resumes.

The package
-----------
Each module imports only those above it; every name is imported from
``clawstate.query``:

* ``_json``: strict JSON in (no duplicate keys, no NaN) and out (big ints in hex);
* ``nodes``: the AST and the query's fingerprint — what a query compiler reads;
* ``parse``: the document to the AST (:func:`parse_query`), every bound enforced;
* ``paths``: values at paths and their JSON type ranks (:func:`path_get`);
* ``filters``: filters compiled to predicates (:func:`compile_filter`, :func:`matches`);
* ``order``: sort keys and page tokens;
* ``indexable``: which declared index can serve a filter (:func:`serving_path`);
* ``run``: one page over a stream of rows (:func:`run_query`), stopping early when
  the rows arrive in the page's order.
"""

from __future__ import annotations

from .filters import compile_filter, matches
from .indexable import dotted, serving_path, wanted_paths
from .nodes import (
    MAX_PATH_SEGMENTS,
    And,
    Compare,
    CompareOp,
    Eq,
    Filter,
    In,
    Or,
    Query,
    Scalar,
    ScalarKind,
    SortKey,
)
from .parse import parse_query
from .paths import path_get
from .run import QueryRun, resume_key, run_query, scan_refused

__all__ = [
    "MAX_PATH_SEGMENTS",
    "And",
    "Compare",
    "CompareOp",
    "Eq",
    "Filter",
    "In",
    "Or",
    "Query",
    "QueryRun",
    "Scalar",
    "ScalarKind",
    "SortKey",
    "compile_filter",
    "dotted",
    "matches",
    "parse_query",
    "path_get",
    "resume_key",
    "run_query",
    "scan_refused",
    "serving_path",
    "wanted_paths",
]
