"""Tests for clawstate.query: parsing, filter semantics, sort order, keyset paging.

The property tests check the module against a deliberately naive oracle written
here from the documented semantics (raw query dicts, ``functools.cmp_to_key``),
so the two share no code.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import random
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawstate.errors import InvalidRequest
from clawstate.query import (
    MAX_PATH_SEGMENTS,
    And,
    Compare,
    Eq,
    In,
    Or,
    Query,
    Scalar,
    SortKey,
    compile_filter,
    matches,
    parse_query,
    path_get,
    resume_key,
    run_query,
)

# ---------------------------------------------------------------------------
# Oracle
# ---------------------------------------------------------------------------

_ABSENT = object()


def ref_get(value: Any, dotted: str) -> Any:
    node = value
    for seg in dotted.split("."):
        if isinstance(node, dict):
            if seg not in node:
                return _ABSENT
            node = node[seg]
        elif isinstance(node, list):
            if not re.fullmatch(r"[0-9]+", seg) or int(seg) >= len(node):
                return _ABSENT
            node = node[int(seg)]
        else:
            return _ABSENT
    return node


def json_type(x: Any) -> str:
    if x is _ABSENT:
        return "missing"
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, int | float):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, list):
        return "array"
    assert isinstance(x, dict)
    return "object"


def ref_eq(x: Any, s: Any) -> bool:
    return x is not _ABSENT and json_type(x) == json_type(s) and x == s


def ref_matches(f: dict[str, Any], value: Any) -> bool:
    ((op, arg),) = f.items()
    if op == "AND":
        return all(ref_matches(c, value) for c in arg)
    if op == "OR":
        return any(ref_matches(c, value) for c in arg)
    ((path, operand),) = arg.items()
    x = ref_get(value, path)
    if op == "EQ":
        return ref_eq(x, operand)
    if op == "IN":
        return any(ref_eq(x, s) for s in operand)
    if json_type(x) != json_type(operand) or json_type(x) not in ("number", "string"):
        return False
    return bool(
        {
            "GT": x > operand,
            "GTE": x >= operand,
            "LT": x < operand,
            "LTE": x <= operand,
        }[op]
    )


_RANKS = {"null": 0, "string": 1, "number": 2, "boolean": 3, "array": 4, "object": 5, "missing": 6}


def _cmp(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def ref_cmp_values(a: Any, b: Any) -> int:
    ta, tb = json_type(a), json_type(b)
    if ta != tb:
        return _cmp(_RANKS[ta], _RANKS[tb])
    if ta in ("string", "number", "boolean"):
        return _cmp(a, b)
    if ta in ("array", "object"):
        return _cmp(len(a), len(b))
    return 0


def ref_sorted(rows: list[tuple[str, Any]], sort: list[dict[str, str]]) -> list[str]:
    def cmp_rows(r1: tuple[str, Any], r2: tuple[str, Any]) -> int:
        for spec in sort:
            c = ref_cmp_values(ref_get(r1[1], spec["key"]), ref_get(r2[1], spec["key"]))
            if spec.get("order", "ASC") == "DESC":
                c = -c
            if c:
                return c
        return _cmp(r1[0], r2[0])

    return [k for k, _ in sorted(rows, key=functools.cmp_to_key(cmp_rows))]


# ---------------------------------------------------------------------------
# Strategies (small domains, so ties and cross-type comparisons are common)
# ---------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, -1.5, 0.5, 2.0]),
    st.sampled_from(["", "a", "b", "ab", "B", "é", "😀", "\uffff"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "0"]), inner, max_size=3)
    ),
    max_leaves=8,
)
documents = st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values, max_size=3)
paths = st.sampled_from(["a", "b", "c", "a.a", "a.0", "a.b.0", "b.1"])
comparable = st.one_of(
    st.integers(-3, 3), st.sampled_from([0.5, -1.5, 1.0]), st.sampled_from(["", "a", "b", "é"])
)
leaves = st.one_of(
    st.builds(lambda p, v: {"EQ": {p: v}}, paths, scalars),
    st.builds(lambda p, vs: {"IN": {p: vs}}, paths, st.lists(scalars, min_size=1, max_size=4)),
    st.builds(
        lambda op, p, v: {op: {p: v}},
        st.sampled_from(["GT", "GTE", "LT", "LTE"]),
        paths,
        comparable,
    ),
)
filters = st.recursive(
    leaves,
    lambda inner: st.builds(
        lambda op, fs: {op: fs},
        st.sampled_from(["AND", "OR"]),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=6,
)
sort_specs = st.lists(
    st.builds(lambda k, o: {"key": k, "order": o}, paths, st.sampled_from(["ASC", "DESC"])),
    max_size=3,
    unique_by=lambda s: s["key"],
)
row_sets = st.lists(documents, max_size=40).map(
    lambda docs: [(f"k{i:03d}", d) for i, d in enumerate(docs)]
)


def page_of(query: Query, rows: Any) -> tuple[list[Any], str | None]:
    """The page and token of ``run_query`` (the tests below predate its counters)."""
    found = run_query(query, rows)
    return found.items, found.token


def all_pages(doc: dict[str, Any], rows: list[tuple[str, Any]]) -> tuple[list[str], int]:
    """Page through a query to the end; returns the keys and the number of pages."""
    keys: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page_doc = dict(doc)
        page_doc["page"] = {**doc.get("page", {}), "token": token}
        query = parse_query(page_doc, max_depth=64)
        items, token = page_of(query, [(k, v, k) for k, v in rows])
        pages += 1
        assert len(items) <= query.limit
        keys.extend(items)
        if token is None:
            return keys, pages
        assert len(items) == query.limit  # only the last page may be short
        assert pages < 10_000


def expect_invalid(doc: Any, field: str, limit: Any = None, **kw: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_query(doc, **kw)
    err = info.value
    assert err.field == field, str(err)
    assert err.limit == limit, str(err)
    if limit is not None:
        assert str(limit) in str(err)
    assert str(err).startswith(f"{field}: ")
    return err


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def test_parse_full_document() -> None:
    doc = {
        "filter": {
            "AND": [
                {"EQ": {"customer.id": "c1"}},
                {"OR": [{"IN": {"state": ["open", 1, None, True]}}, {"GTE": {"total": 10.5}}]},
            ]
        },
        "sort": [{"key": "total", "order": "DESC"}, {"key": "items.0.sku"}],
        "page": {"limit": 50, "token": None},
    }
    q = parse_query(doc)
    assert q.filter == And(
        (
            Eq(("customer", "id"), Scalar("string", "c1")),
            Or(
                (
                    In(
                        ("state",),
                        (
                            Scalar("string", "open"),
                            Scalar("number", 1),
                            Scalar("null", None),
                            Scalar("boolean", True),
                        ),
                    ),
                    Compare("GTE", ("total",), Scalar("number", 10.5)),
                )
            ),
        )
    )
    assert q.sort == [SortKey(("total",), True), SortKey(("items", "0", "sku"), False)]
    assert q.limit == 50
    assert q.token is None


def test_parse_json_text_and_bytes() -> None:
    doc = {"filter": {"EQ": {"a": 1}}, "sort": [{"key": "a"}], "page": {"limit": 3}}
    text = json.dumps(doc)
    assert parse_query(text) == parse_query(doc) == parse_query(text.encode())
    assert parse_query(bytearray(text.encode())) == parse_query(doc)


def test_parse_defaults() -> None:
    q = parse_query({})
    assert q == Query(filter=None, sort=[], limit=1_000, token=None)
    assert parse_query({"filter": None, "sort": None, "page": None}) == q
    assert parse_query({}, default_limit=7).limit == 7
    assert parse_query({}, default_limit=70, max_limit=20).limit == 20
    assert parse_query({"page": {"token": ""}}).token is None
    assert parse_query({"sort": [{"key": "a", "order": None}]}).sort == [SortKey(("a",))]


def test_scalar_equality_follows_json_not_python() -> None:
    assert Scalar("boolean", True) != Scalar("number", 1)
    assert Scalar("number", 1) == Scalar("number", 1.0)
    assert parse_query({"filter": {"EQ": {"a": True}}}) != parse_query({"filter": {"EQ": {"a": 1}}})


@pytest.mark.parametrize(
    ("doc", "field", "fragment"),
    [
        ([], "query", "JSON object"),
        ("[1]", "query", "JSON object"),
        ("{not json", "query", "not valid JSON"),
        ('{"filter": {"EQ": {"a": NaN}}}', "query", "NaN"),
        ('{"filter": {"EQ": {"a": 1}, "EQ": {"b": 2}}}', "query", "duplicate key 'EQ'"),
        ({"filters": {}}, "query.filters", "unknown field"),
        ({"filter": []}, "query.filter", "must be an object"),
        ({"filter": {}}, "query.filter", "exactly one operator"),
        ({"filter": {"EQ": {"a": 1}, "IN": {"b": [1]}}}, "query.filter", "exactly one"),
        ({"filter": {"NE": {"a": 1}}}, "query.filter.NE", "unknown operator 'NE'"),
        ({"filter": {"eq": {"a": 1}}}, "query.filter.eq", "unknown operator"),
        (
            {"filter": {"AND": [{"EQ": {"a": 1}}, {"EQ": {"b": [1]}}]}},
            "query.filter.AND[1].EQ",
            "a list",
        ),
        ({"filter": {"EQ": {"a": {"b": 1}}}}, "query.filter.EQ", "an object"),
        ({"filter": {"EQ": {"a": math.nan}}}, "query.filter.EQ", "not finite"),
        ({"filter": {"EQ": {"a": 1, "b": 2}}}, "query.filter.EQ", "exactly one path"),
        ({"filter": {"EQ": [1]}}, "query.filter.EQ", "takes an object"),
        ({"filter": {"EQ": {"": 1}}}, "query.filter.EQ", "path is empty"),
        ({"filter": {"EQ": {"a..b": 1}}}, "query.filter.EQ", "empty segment"),
        ({"filter": {"EQ": {"a.": 1}}}, "query.filter.EQ", "empty segment"),
        ({"filter": {"EQ": {1: 1}}}, "query.filter.EQ", "path must be a string"),
        ({"filter": {"GT": {"a": True}}}, "query.filter.GT", "number or a string"),
        ({"filter": {"GTE": {"a": None}}}, "query.filter.GTE", "number or a string"),
        ({"filter": {"LT": {"a": [1]}}}, "query.filter.LT", "number or a string"),
        ({"filter": {"LTE": {"a": {}}}}, "query.filter.LTE", "number or a string"),
        ({"filter": {"LT": {"a": math.inf}}}, "query.filter.LT", "not finite"),
        ({"filter": {"IN": {"a": 1}}}, "query.filter.IN", "must be a list"),
        ({"filter": {"IN": {"a": []}}}, "query.filter.IN", "empty"),
        ({"filter": {"IN": {"a": [1, [2]]}}}, "query.filter.IN", "[1]"),
        ({"filter": {"AND": []}}, "query.filter.AND", "at least one"),
        ({"filter": {"OR": {"EQ": {"a": 1}}}}, "query.filter.OR", "list of filters"),
        ({"filter": {"OR": [{"EQ": {"a": 1}}, 5]}}, "query.filter.OR[1]", "must be an object"),
        ({"sort": {"key": "a"}}, "query.sort", "must be a list"),
        ({"sort": ["a"]}, "query.sort[0]", "must be an object"),
        ({"sort": [{"order": "ASC"}]}, "query.sort[0].key", "no key"),
        ({"sort": [{"key": ""}]}, "query.sort[0].key", "empty"),
        ({"sort": [{"key": "a", "dir": "ASC"}]}, "query.sort[0].dir", "unknown field"),
        ({"sort": [{"key": "a", "order": "asc"}]}, "query.sort[0].order", "'ASC' or 'DESC'"),
        ({"sort": [{"key": "a", "order": 1}]}, "query.sort[0].order", "'ASC' or 'DESC'"),
        (
            {"sort": [{"key": "a.b"}, {"key": "c"}, {"key": "a.b", "order": "DESC"}]},
            "query.sort[2].key",
            "duplicate sort key 'a.b' (already at query.sort[0])",
        ),
        ({"page": 5}, "query.page", "must be an object"),
        ({"page": {"offset": 5}}, "query.page.offset", "unknown field"),
        ({"page": {"limit": True}}, "query.page.limit", "positive integer"),
        ({"page": {"limit": 0}}, "query.page.limit", "positive integer"),
        ({"page": {"limit": -3}}, "query.page.limit", "positive integer"),
        ({"page": {"limit": 2.0}}, "query.page.limit", "positive integer"),
        ({"page": {"limit": "10"}}, "query.page.limit", "positive integer"),
        ({"page": {"token": 5}}, "query.page.token", "must be a string"),
        ({"page": {"token": ["x"]}}, "query.page.token", "must be a string"),
    ],
)
def test_parse_errors_name_the_field(doc: Any, field: str, fragment: str) -> None:
    err = expect_invalid(doc, field)
    assert fragment in str(err)


def test_parse_limits_carry_the_bound() -> None:
    expect_invalid({"page": {"limit": 10_001}}, "query.page.limit", limit=10_000)
    expect_invalid({"page": {"limit": 51}}, "query.page.limit", limit=50, max_limit=50)
    assert parse_query({"page": {"limit": 50}}, max_limit=50).limit == 50

    expect_invalid({"filter": {"IN": {"a": [1, 2, 3, 4]}}}, "query.filter.IN", limit=3, max_in=3)
    assert parse_query({"filter": {"IN": {"a": [1, 2, 3]}}}, max_in=3).filter is not None

    many = {"filter": {"OR": [{"EQ": {"a": i}} for i in range(10)]}}
    # 1 OR + 10 EQ = 11 clauses; the 10th clause (OR[8]) is the one over the bound.
    expect_invalid(many, "query.filter.OR[8]", limit=9, max_clauses=9)
    assert parse_query(many, max_clauses=11).filter is not None

    deep_path = ".".join(["p"] * (MAX_PATH_SEGMENTS + 1))
    expect_invalid({"filter": {"EQ": {deep_path: 1}}}, "query.filter.EQ", limit=MAX_PATH_SEGMENTS)
    expect_invalid({"sort": [{"key": deep_path}]}, "query.sort[0].key", limit=MAX_PATH_SEGMENTS)

    sort = [{"key": f"k{i}"} for i in range(17)]
    expect_invalid({"sort": sort}, "query.sort", limit=16)
    assert len(parse_query({"sort": sort}, max_sort_keys=17).sort) == 17


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"EQ": {"a": 1}}
    for i in range(depth):
        node = {("AND", "OR")[i % 2]: [node]}
    return node


def test_depth_limit() -> None:
    assert parse_query({"filter": nested(8)}).filter is not None
    # The 9th nested combinator is the culprit: query.filter + 8 levels + its operator.
    ops = [("AND", "OR")[i % 2] for i in reversed(range(9))]
    field = "query.filter." + "".join(f"{op}[0]." for op in ops[:8]) + ops[8]
    expect_invalid({"filter": nested(9)}, field, limit=8)
    expect_invalid({"filter": nested(3)}, "query.filter.AND[0].OR[0].AND", limit=2, max_depth=2)
    expect_invalid({"filter": nested(1)}, "query.filter.AND", limit=0, max_depth=0)
    assert parse_query({"filter": {"EQ": {"a": 1}}}, max_depth=0).filter is not None


def test_deeply_nested_json_text_is_rejected_cleanly() -> None:
    text = '{"filter": ' + "[" * 100_000 + "]" * 100_000 + "}"
    expect_invalid(text, "query")


def test_fingerprint() -> None:
    base: dict[str, Any] = {
        "filter": {"AND": [{"EQ": {"a": 1}}, {"EQ": {"b": "x"}}]},
        "sort": [{"key": "a"}],
    }
    fp = parse_query(base).fingerprint
    assert re.fullmatch(r"[A-Za-z0-9_-]+", fp)
    assert parse_query(json.dumps(base)).fingerprint == fp
    assert parse_query({**base, "page": {"limit": 5}}).fingerprint == fp  # limit is not bound
    same_number = {
        "filter": {"AND": [{"EQ": {"a": 1.0}}, {"EQ": {"b": "x"}}]},
        "sort": base["sort"],
    }
    assert parse_query(same_number).fingerprint == fp
    others = [
        {**base, "filter": {"OR": base["filter"]["AND"]}},
        {**base, "filter": {"AND": [{"EQ": {"a": True}}, {"EQ": {"b": "x"}}]}},
        {**base, "filter": {"AND": [{"EQ": {"a": "1"}}, {"EQ": {"b": "x"}}]}},
        {**base, "sort": [{"key": "a", "order": "DESC"}]},
        {**base, "sort": [{"key": "a"}, {"key": "b"}]},
        {"filter": base["filter"]},  # same as "sort": []
        {"sort": base["sort"]},
    ]
    assert len({parse_query(o).fingerprint for o in others} | {fp}) == len(others) + 1
    assert parse_query({**base, "sort": []}).fingerprint == parse_query(others[5]).fingerprint


# ---------------------------------------------------------------------------
# Paths and filter semantics
# ---------------------------------------------------------------------------

ORDER = {
    "customer": {"id": "c1", "vip": True, "score": 1, "tags": None},
    "items": [{"sku": "x", "qty": 2}, {"sku": "y", "qty": 1.0}],
    "map": {"0": "zero", "01": "one-oh"},
    "n": 5,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("n", (True, 5)),
        ("customer.id", (True, "c1")),
        ("customer.tags", (True, None)),
        ("customer.missing", (False, None)),
        ("items.1.sku", (True, "y")),
        ("items.01.sku", (True, "y")),  # digits index lists, leading zeros included
        ("items.2.sku", (False, None)),
        ("items.-1.sku", (False, None)),
        ("items.x", (False, None)),
        ("items.١", (False, None)),  # ARABIC-INDIC DIGIT ONE is not an ASCII digit
        ("items." + "9" * 5000, (False, None)),
        ("map.0", (True, "zero")),  # a digit segment on an object is a key
        ("map.01", (True, "one-oh")),
        ("map.1", (False, None)),
        ("n.a", (False, None)),
        ("n.0", (False, None)),
    ],
)
def test_path_get(path: str, expected: tuple[bool, Any]) -> None:
    assert path_get(ORDER, path) == expected
    assert path_get(ORDER, tuple(path.split("."))) == expected


def test_path_get_non_json_values_are_missing() -> None:
    assert path_get({"a": math.nan}, "a") == (False, None)
    assert path_get({"a": math.inf}, "a") == (False, None)
    assert path_get({"a": b"x"}, "a") == (False, None)
    assert path_get({"a": (1, 2)}, "a.1") == (True, 2)


def m(f: dict[str, Any], value: Any) -> bool:
    q = parse_query({"filter": f})
    return matches(q.filter, value)


def test_eq_is_json_typed() -> None:
    assert m({"EQ": {"a": 1}}, {"a": 1})
    assert m({"EQ": {"a": 1}}, {"a": 1.0})
    assert m({"EQ": {"a": 1.0}}, {"a": 1})
    assert not m({"EQ": {"a": 1}}, {"a": True})
    assert not m({"EQ": {"a": True}}, {"a": 1})
    assert not m({"EQ": {"a": False}}, {"a": 0})
    assert not m({"EQ": {"a": 0}}, {"a": False})
    assert m({"EQ": {"a": False}}, {"a": False})
    assert not m({"EQ": {"a": "1"}}, {"a": 1})
    assert not m({"EQ": {"a": 1}}, {"a": [1]})
    assert m({"EQ": {"a": 2**70}}, {"a": 2**70})
    assert not m({"EQ": {"a": 2**53 + 1}}, {"a": float(2**53)})  # exact, like numeric


def test_null_versus_missing() -> None:
    assert m({"EQ": {"a": None}}, {"a": None})
    assert not m({"EQ": {"a": None}}, {})
    assert not m({"EQ": {"a": None}}, {"a": 0})
    assert not m({"EQ": {"a.b": None}}, {"a": None})
    assert m({"IN": {"a": [None]}}, {"a": None})
    assert not m({"IN": {"a": [None]}}, {})
    assert not m({"EQ": {"a": None}}, {"a": math.nan})  # non-JSON value = missing


def test_missing_path_matches_nothing() -> None:
    for f in (
        {"EQ": {"x.y": 1}},
        {"IN": {"x.y": [1, None, "", False]}},
        {"GT": {"x.y": -1e300}},
        {"LT": {"x.y": "\U0010ffff"}},
        {"GTE": {"x.y": ""}},
        {"LTE": {"x.y": 1e300}},
    ):
        assert not m(f, {"x": {}}), f
        assert not m(f, {"x": 5}), f
        assert not m(f, {}), f
        assert not m(f, None), f
        assert not m(f, [1, 2]), f


def test_nested_paths_and_list_indexes() -> None:
    assert m({"EQ": {"items.1.sku": "y"}}, ORDER)
    assert m({"EQ": {"items.1.qty": 1}}, ORDER)
    assert not m({"EQ": {"items.2.sku": "y"}}, ORDER)
    assert m({"EQ": {"map.0": "zero"}}, ORDER)
    assert m({"GT": {"items.0.qty": 1}}, ORDER)
    assert m({"EQ": {"0": "top"}}, ["top"])  # the root itself can be a list


def test_in() -> None:
    f = {"IN": {"a": [1, "1", None, True]}}
    assert m(f, {"a": 1.0})
    assert m(f, {"a": "1"})
    assert m(f, {"a": None})
    assert m(f, {"a": True})
    assert not m(f, {"a": False})
    assert not m(f, {"a": 2})
    assert not m(f, {"a": [1]})
    assert not m(f, {"a": {"1": 1}})
    assert not m({"IN": {"a": [1]}}, {"a": True})
    assert not m({"IN": {"a": [True]}}, {"a": 1})
    assert not m({"IN": {"a": [0]}}, {"a": False})
    assert not m({"IN": {"a": [1]}}, {"a": math.inf})


def test_range_numbers() -> None:
    v = {"a": 5, "f": 2.5}
    assert m({"GT": {"a": 4}}, v)
    assert m({"GT": {"a": 4.999}}, v)
    assert not m({"GT": {"a": 5}}, v)
    assert m({"GTE": {"a": 5.0}}, v)
    assert m({"LT": {"f": 3}}, v)
    assert m({"LTE": {"f": 2.5}}, v)
    assert not m({"LT": {"f": 2.5}}, v)
    # Only number-with-number compares: booleans, strings, null never do.
    assert not m({"GT": {"a": 0}}, {"a": True})
    assert not m({"LT": {"a": 2}}, {"a": False})
    assert not m({"GT": {"a": 0}}, {"a": "5"})
    assert not m({"GT": {"a": 0}}, {"a": None})
    assert not m({"GT": {"a": 0}}, {"a": [1]})
    assert not m({"GT": {"a": 0}}, {"a": math.inf})
    assert not m({"LT": {"a": 0}}, {"a": -math.inf})
    assert not m({"LT": {"a": 0}}, {"a": math.nan})


def test_range_strings_use_code_point_order() -> None:
    assert m({"LT": {"s": "a"}}, {"s": "Z"})  # not locale order
    assert m({"GT": {"s": "z"}}, {"s": "é"})
    # UTF-16 code-unit order would put U+1F600 (D83D DE00) before U+FFFF.
    assert m({"GT": {"s": "\uffff"}}, {"s": "😀"})
    assert m({"GT": {"s": "ab"}}, {"s": "abc"})
    assert m({"GTE": {"s": ""}}, {"s": ""})
    assert not m({"GT": {"s": "a"}}, {"s": 5})
    assert not m({"LT": {"s": "a"}}, {"s": None})
    assert not m({"LT": {"s": "a"}}, {"s": False})


def test_and_or() -> None:
    v = {"a": 1, "b": "x", "c": None}
    t, f = {"EQ": {"a": 1}}, {"EQ": {"a": 2}}
    for n in (1, 2, 3, 5):
        assert m({"AND": [t] * n}, v)
        assert not m({"AND": [t] * (n - 1) + [f]}, v)
        assert m({"OR": [f] * (n - 1) + [t]}, v)
        assert not m({"OR": [f] * n}, v)
    assert m({"OR": [{"AND": [t, {"EQ": {"c": None}}]}, f]}, v)


def test_matches_without_filter_and_compile_filter() -> None:
    assert matches(None, {"anything": 1})
    pred = compile_filter(parse_query({"filter": {"EQ": {"a": 1}}}).filter)
    assert [pred(v) for v in ({"a": 1}, {"a": True}, {})] == [True, False, False]


@settings(max_examples=400, deadline=None)
@given(f=filters, doc=documents)
def test_matches_agrees_with_oracle(f: dict[str, Any], doc: dict[str, Any]) -> None:
    q = parse_query({"filter": f}, max_depth=64)
    assert matches(q.filter, doc) == ref_matches(f, doc)


# ---------------------------------------------------------------------------
# Sort order
# ---------------------------------------------------------------------------

ASCENDING = [
    None,
    "",
    "A",
    "a",
    "ab",
    "é",
    "\uffff",
    "😀",
    -(2**70),
    -5,
    -0.5,
    0,
    1,
    1.5,
    2**70,
    False,
    True,
    [],
    ["z"],
    [1, 2],
    {},
    {"z": 0},
    {"a": 0, "b": 1},
    _ABSENT,
]


def _rows_for(values: list[Any]) -> list[tuple[str, Any, str]]:
    # Keys run opposite to the value order, so a key tie-break would show.
    rows = []
    for i, v in enumerate(values):
        key = f"k{len(values) - i:03d}"
        rows.append((key, {} if v is _ABSENT else {"v": v}, key))
    return rows


def test_sort_across_types_ascending_and_descending() -> None:
    rows = _rows_for(ASCENDING)
    expected = [k for k, _, _ in rows]
    asc, token = page_of(parse_query({"sort": [{"key": "v"}]}), rows)
    assert token is None
    assert asc == expected
    desc, _ = page_of(parse_query({"sort": [{"key": "v", "order": "DESC"}]}), rows)
    assert desc == expected[::-1]
    assert ref_sorted([(k, v) for k, v, _ in rows], [{"key": "v"}]) == expected


def test_sort_ties_break_by_key_ascending_in_both_directions() -> None:
    rows = [
        ("b", {"v": 1}, "b"),
        ("a", {"v": 1.0}, "a"),  # 1 and 1.0 tie
        ("d", {"v": [1]}, "d"),
        ("c", {"v": ["x"]}, "c"),  # arrays: length only
        ("f", {"v": {"a": 1}}, "f"),
        ("e", {"v": {"b": 2}}, "e"),  # objects: size only
        ("h", {}, "h"),
        ("g", {"w": 1}, "g"),  # both missing
    ]
    asc, _ = page_of(parse_query({"sort": [{"key": "v"}]}), rows)
    assert asc == ["a", "b", "c", "d", "e", "f", "g", "h"]
    desc, _ = page_of(parse_query({"sort": [{"key": "v", "order": "DESC"}]}), rows)
    assert desc == ["g", "h", "e", "f", "c", "d", "a", "b"]


def test_sort_descending_strings_prefixes_and_surrogates() -> None:
    values = ["", "a", "ab", "abc", "b", "\x00", "a\x00", "\ud800", "\ue000", "😀"]
    rows = [(f"k{i}", {"v": v}, v) for i, v in enumerate(values)]
    desc, _ = page_of(parse_query({"sort": [{"key": "v", "order": "DESC"}]}), rows)
    assert desc == sorted(values, reverse=True)
    asc, _ = page_of(parse_query({"sort": [{"key": "v"}]}), rows)
    assert asc == sorted(values)


def test_default_order_is_key_ascending() -> None:
    rows = [(k, {"v": i}, i) for i, k in enumerate(["c", "a", "b"])]
    items, token = page_of(parse_query({}), rows)
    assert items == [1, 2, 0]
    assert token is None


def test_multi_key_sort() -> None:
    rows = [
        ("1", {"g": "x", "n": 1}, "1"),
        ("2", {"g": "y", "n": 3}, "2"),
        ("3", {"g": "x", "n": 2}, "3"),
        ("4", {"g": "y", "n": 3}, "4"),
        ("5", {"n": 0}, "5"),
    ]
    q = parse_query({"sort": [{"key": "g", "order": "DESC"}, {"key": "n"}]})
    assert page_of(q, rows)[0] == ["5", "2", "4", "1", "3"]
    q = parse_query({"sort": [{"key": "g"}, {"key": "n", "order": "DESC"}, {"key": "x"}]})
    assert page_of(q, rows)[0] == ["3", "1", "2", "4", "5"]


# ---------------------------------------------------------------------------
# Paging
# ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=row_sets,
    f=st.none() | filters,
    sort=sort_specs,
    limit=st.integers(1, 7),
)
def test_pages_concatenate_to_the_sorted_filtered_list(
    rows: list[tuple[str, Any]], f: dict[str, Any] | None, sort: list[dict[str, str]], limit: int
) -> None:
    doc: dict[str, Any] = {"sort": sort, "page": {"limit": limit}}
    if f is not None:
        doc["filter"] = f
    keys, pages = all_pages(doc, rows)
    kept = [(k, v) for k, v in rows if f is None or ref_matches(f, v)]
    assert keys == ref_sorted(kept, sort)
    assert pages == max(1, math.ceil(len(kept) / limit))


def test_exact_multiple_of_limit_has_no_empty_trailing_page() -> None:
    rows = [(f"k{i}", {"v": i}, i) for i in range(6)]
    q = parse_query({"page": {"limit": 3}})
    first, token = page_of(q, rows)
    assert first == [0, 1, 2] and token is not None
    second, token = page_of(parse_query({"page": {"limit": 3, "token": token}}), rows)
    assert second == [3, 4, 5] and token is None
    assert page_of(parse_query({"page": {"limit": 6}}), rows) == ([0, 1, 2, 3, 4, 5], None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.lists(documents, min_size=1, max_size=40),
    sort=sort_specs,
    limit=st.integers(1, 5),
    seed=st.integers(0, 2**32),
)
def test_pages_are_stable_under_concurrent_inserts_and_deletes(
    initial: list[dict[str, Any]], sort: list[dict[str, str]], limit: int, seed: int
) -> None:
    rnd = random.Random(seed)
    table: dict[str, Any] = {f"k{i:03d}": d for i, d in enumerate(initial)}
    survivors = set(table)
    counter = len(initial)
    seen: list[str] = []
    token: str | None = None
    for _ in range(1000):
        q = parse_query({"sort": sort, "page": {"limit": limit, "token": token}})
        items, token = page_of(q, [(k, v, k) for k, v in table.items()])
        seen.extend(items)
        if token is None:
            break
        for _ in range(rnd.randint(0, 3)):  # deletes
            if table:
                victim = rnd.choice(sorted(table))
                del table[victim]
                survivors.discard(victim)
        for _ in range(rnd.randint(0, 3)):  # inserts of new keys
            table[f"n{counter:03d}"] = rnd.choice(initial)
            counter += 1
    else:
        pytest.fail("paging did not terminate")

    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert survivors <= set(seen), "a row that existed throughout was skipped"
    # Every page resumed after the previous one: the whole sequence is ordered.
    final = dict(table)
    final.update({k: v for i, v in enumerate(initial) if (k := f"k{i:03d}") not in final})
    order = ref_sorted([(k, final[k]) for k in seen if k in final], sort)
    assert [k for k in seen if k in final] == order


def test_token_is_url_safe_and_opaque() -> None:
    rows = [(f"k{i}", {"s": "é/+?" * i}, i) for i in range(10)]
    _, token = page_of(parse_query({"sort": [{"key": "s"}], "page": {"limit": 3}}), rows)
    assert token is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)


def test_limit_may_change_between_pages() -> None:
    rows = [(f"k{i:02d}", {"v": i % 4}, i) for i in range(20)]
    doc: dict[str, Any] = {"sort": [{"key": "v", "order": "DESC"}], "page": {"limit": 3}}
    first, token = page_of(parse_query(doc), rows)
    rest, token2 = page_of(parse_query({**doc, "page": {"limit": 100, "token": token}}), rows)
    assert token2 is None
    full, _ = page_of(parse_query({**doc, "page": {"limit": 100}}), rows)
    assert first + rest == full


def _token_for(doc: dict[str, Any], rows: list[tuple[str, Any, Any]]) -> str:
    _, token = page_of(parse_query(doc), rows)
    assert token is not None
    return token


def test_token_from_another_query_is_rejected() -> None:
    rows = [(f"k{i}", {"a": i, "b": -i}, i) for i in range(10)]
    base: dict[str, Any] = {"filter": {"GT": {"a": 0}}, "sort": [{"key": "a"}]}
    token = _token_for({**base, "page": {"limit": 2}}, rows)
    for other in (
        {"filter": {"GT": {"a": 1}}, "sort": [{"key": "a"}]},
        {"filter": {"GT": {"a": 0}}, "sort": [{"key": "a", "order": "DESC"}]},
        {"filter": {"GT": {"a": 0}}, "sort": [{"key": "b"}]},
        {"filter": {"GT": {"a": 0}}},
        {"sort": [{"key": "a"}]},
    ):
        q = parse_query({**other, "page": {"token": token}})
        with pytest.raises(InvalidRequest) as info:
            page_of(q, rows)
        assert info.value.field == "query.page.token"
        assert "different query" in str(info.value)
    # The same query accepts it.
    items, _ = page_of(parse_query({**base, "page": {"limit": 2, "token": token}}), rows)
    assert items == [3, 4]


def _b64(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_garbage_tokens_are_rejected() -> None:
    rows = [(f"k{i}", {"a": i}, i) for i in range(10)]
    doc: dict[str, Any] = {"sort": [{"key": "a"}], "page": {"limit": 2}}
    good = _token_for(doc, rows)
    fp = parse_query(doc).fingerprint
    bad = [
        "!!!",
        "a",
        "é",
        good[:-3],
        good + "A",
        _b64(b"\xff\xfe"),
        _b64(b"not json"),
        _b64({"fp": fp}),
        _b64([2, fp, [[2, 1]], "k1"]),  # unknown version
        _b64([True, fp, [[2, 1]], "k1"]),
        _b64([1, fp, [], "k1"]),  # wrong number of positions
        _b64([1, fp, [[2, 1], [2, 1]], "k1"]),
        _b64([1, fp, [[9, 1]], "k1"]),  # unknown rank
        _b64([1, fp, [[2, "1"]], "k1"]),  # number rank, string value
        _b64([1, fp, [[1, 1]], "k1"]),  # string rank, number value
        _b64([1, fp, [[3, 2]], "k1"]),  # boolean rank, not 0/1
        _b64([1, fp, [[4, -1]], "k1"]),  # negative length
        _b64([1, fp, [[0, 5]], "k1"]),  # null with a value
        _b64([1, fp, [[2, True]], "k1"]),
        _b64([1, fp, [[2]], "k1"]),
        _b64([1, fp, [[2, {"int": "0x1f"}]], "k1"]),  # big-int form: bare lowercase hex only
        _b64([1, fp, [[2, {"int": "ff", "x": 1}]], "k1"]),
        _b64([1, fp, [[1, {"int": "ff"}]], "k1"]),  # only numbers use it
        _b64([1, fp, [[2, 1]], 7]),  # key not a string
        _b64(b'[1, "' + fp.encode() + b'", [[2, NaN]], "k1"]'),
        _b64(b"[" * 50_000 + b"]" * 50_000),
    ]
    for token in bad:
        q = parse_query({**doc, "page": {"limit": 2, "token": token}})
        with pytest.raises(InvalidRequest) as info:
            page_of(q, rows)
        assert info.value.field == "query.page.token", token
    # A well-formed position is accepted even if no row sits exactly there.
    q = parse_query({**doc, "page": {"limit": 2, "token": _b64([1, fp, [[2, 4.5]], "zzz"])}})
    assert page_of(q, rows)[0] == [5, 6]


def test_tokens_survive_awkward_sort_values() -> None:
    values: list[Any] = [
        2**80,
        -(2**80),
        2**63,
        -(2**63) - 1,
        10**5000,  # past the 4300-digit str() limit
        -(10**5000),
        0.1,
        -0.0,
        1e308,
        "\ud800",
        "😀",
        "",
        None,
        True,
        [1, 2],
        {"a": 1},
    ]
    rows = [(f"k{i:02d}", {"v": v}, i) for i, v in enumerate(values)] + [("zz", {}, 99)]
    for order in ("ASC", "DESC"):
        doc = {"sort": [{"key": "v", "order": order}], "page": {"limit": 1}}
        keys, pages = all_pages(doc, [(k, v) for k, v, _ in rows])
        assert keys == ref_sorted([(k, v) for k, v, _ in rows], doc["sort"])  # type: ignore[arg-type]
        assert pages == len(rows)


def test_huge_client_values_keep_errors_short_and_tokens_working() -> None:
    huge = 10**5000
    err = expect_invalid({"page": {"limit": huge}}, "query.page.limit", limit=10_000)
    assert len(str(err)) < 200
    err = expect_invalid({"page": {"limit": -huge}}, "query.page.limit")
    assert len(str(err)) < 200
    expect_invalid({"page": {"token": huge}}, "query.page.token")
    expect_invalid({"sort": [{"key": "a", "order": [huge] * 1000}]}, "query.sort[0].order")
    with pytest.raises(InvalidRequest) as info:
        parse_query({"x" * 100_000: 1})
    assert info.value.field.startswith("query.'xxx") and len(info.value.field) < 80
    with pytest.raises(InvalidRequest) as info:
        parse_query({"filter": {"Z" * 100_000: 1}})
    assert info.value.field.startswith("query.filter.'ZZZ") and len(str(info.value)) < 300
    err = expect_invalid({"filter": {"EQ": {"a" * 100_000 + "..b": 1}}}, "query.filter.EQ")
    assert len(str(err)) < 300

    q = parse_query({"filter": {"GT": {"a": huge - 1}}, "sort": [{"key": "a"}]})
    assert matches(q.filter, {"a": huge}) and not matches(q.filter, {"a": 1e308})
    assert q.fingerprint != parse_query({"filter": {"GT": {"a": huge}}}).fingerprint
    rows = [(f"k{i}", {"a": huge + 2 - i}, i) for i in range(3)]
    doc: dict[str, Any] = {"filter": {"GT": {"a": huge - 1}}, "sort": [{"key": "a"}]}
    page, token = page_of(parse_query({**doc, "page": {"limit": 2}}), rows)
    assert page == [2, 1] and token is not None
    page, token = page_of(parse_query({**doc, "page": {"limit": 2, "token": token}}), rows)
    assert page == [0] and token is None


def test_payloads_are_returned_untouched() -> None:
    class Payload:
        """Not comparable: ordering must never look at payloads."""

    payloads = [Payload() for _ in range(5)]
    rows = [(f"k{i}", {"v": 1}, p) for i, p in enumerate(payloads)]
    items, token = page_of(parse_query({"sort": [{"key": "v"}], "page": {"limit": 2}}), rows)
    assert items == payloads[:2]
    assert token is not None


def test_rows_may_be_a_one_shot_iterator() -> None:
    rows = ((f"k{i}", {"v": i}, i) for i in range(10))
    q = parse_query({"filter": {"GTE": {"v": 5}}, "sort": [{"key": "v", "order": "DESC"}]})
    assert page_of(q, rows) == ([9, 8, 7, 6, 5], None)


def test_large_query_pages_correctly() -> None:
    rnd = random.Random(7)
    statuses = ["open", "closed", "pending"]
    rows = []
    for i in range(20_000):
        v: dict[str, Any] = {"status": rnd.choice(statuses), "c": {"id": f"c{rnd.randint(0, 99)}"}}
        if i % 7:
            v["amount"] = rnd.random() * 100 if i % 2 else rnd.randint(0, 100)
        rows.append((f"k{i:05d}", v, i))
    doc: dict[str, Any] = {
        "filter": {"IN": {"status": ["open", "pending"]}},
        "sort": [{"key": "c.id", "order": "DESC"}, {"key": "amount"}],
        "page": {"limit": 1000},
    }
    got: list[int] = []
    token: str | None = None
    while True:
        q = parse_query({**doc, "page": {"limit": 1000, "token": token}})
        items, token = page_of(q, rows)
        got.extend(items)
        if token is None:
            break
    expected = ref_sorted([(k, v) for k, v, _ in rows if v["status"] != "closed"], doc["sort"])
    assert [f"k{i:05d}" for i in got] == expected


# -- early exit (issue 12) -----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(0, 9), max_size=60),
    wanted=st.integers(0, 9),
    limit=st.integers(1, 8),
    pages=st.integers(1, 4),
)
def test_key_ordered_read_stops_after_the_page_and_pages_alike(
    values: list[int], wanted: int, limit: int, pages: int
) -> None:
    """Without a sort, a key-ordered stream is read only up to the (limit+1)-th match
    after the token, and every page equals the full evaluator's page."""
    rows = [(f"k{i:03d}", {"n": n}, f"k{i:03d}") for i, n in enumerate(values)]
    token: str | None = None
    for _ in range(pages):
        q = parse_query({"filter": {"EQ": {"n": wanted}}, "page": {"limit": limit, "token": token}})
        fast = run_query(q, rows, key_ordered=True)
        full = run_query(q, rows)
        assert (fast.items, fast.token) == (full.items, full.token)
        assert full.rows_read == len(rows) and not full.early_exit
        start = resume_key(q)
        after = [i for i, r in enumerate(rows) if start is None or r[0] > start]
        matches = [i for i in after if values[i] == wanted]
        if len(matches) > limit:
            assert fast.early_exit
            assert fast.rows_read == matches[limit] + 1
        else:
            assert not fast.early_exit and fast.rows_read == len(rows)
        token = fast.token
        if token is None:
            break


def test_a_sorted_query_reads_every_row_even_when_key_ordered() -> None:
    rows = [(f"k{i}", {"n": i % 3}, i) for i in range(10)]
    q = parse_query({"sort": [{"key": "n"}], "page": {"limit": 2}})
    found = run_query(q, rows, key_ordered=True)
    assert found.rows_read == 10 and not found.early_exit
    assert found.items == [0, 3]


def test_resume_key_is_the_last_key_of_an_unsorted_page_and_checks_the_token() -> None:
    rows = [(f"k{i}", {}, i) for i in range(5)]
    first = run_query(parse_query({"page": {"limit": 2}}), rows)
    assert resume_key(parse_query({"page": {"limit": 2}})) is None
    assert resume_key(parse_query({"page": {"limit": 2, "token": first.token}})) == "k1"
    sorted_q = parse_query({"sort": [{"key": "n"}], "page": {"limit": 2, "token": first.token}})
    assert resume_key(sorted_q) is None
    with pytest.raises(InvalidRequest):
        resume_key(parse_query({"filter": {"EQ": {"a": 1}}, "page": {"token": first.token}}))


def test_serving_path_follows_and_or_rules() -> None:
    from clawstate.query import serving_path, wanted_paths

    q = parse_query(
        {"filter": {"AND": [{"EQ": {"status": "open"}}, {"GT": {"customer.id": 3}}]}}
    ).filter
    assert serving_path(q, {("customer", "id")}) == ("customer", "id")
    assert serving_path(q, {("status",), ("customer", "id")}) == ("status",)
    assert serving_path(q, set()) is None
    either = parse_query({"filter": {"OR": [{"EQ": {"a": 1}}, {"EQ": {"b": 2}}]}}).filter
    assert serving_path(either, {("a",)}) is None  # one unserved branch reads every row
    assert serving_path(either, {("a",), ("b",)}) == ("a",)
    assert wanted_paths(q) == [("status",), ("customer", "id")]


def test_a_scan_past_max_read_is_refused_naming_the_index_that_would_serve() -> None:
    rows = [(f"k{i:03d}", {"user": f"u{i % 50}"}, i) for i in range(200)]
    q = parse_query({"filter": {"EQ": {"user": "u7"}}, "page": {"limit": 10}})
    with pytest.raises(InvalidRequest) as err:
        run_query(q, rows, max_read=100)
    assert err.value.field == "query" and err.value.limit == 100
    assert "indexes = ['user']" in str(err.value)
    # an early exit inside the bound is not refused
    small = parse_query({"filter": {"EQ": {"user": "u7"}}, "page": {"limit": 1}})
    assert run_query(small, rows, key_ordered=True, max_read=100).items == [7]
