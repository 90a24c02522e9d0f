"""Limits an operator may raise have an upper bound, and a snapshot's version is a
64-bit version named as such: a huge integer is refused with the field that carries
it, and changes nothing."""

from __future__ import annotations

import pytest

import clawstate
from clawstate import ConfigError, InvalidRequest
from clawstate.config.limits import MAX_BATCH, MAX_QUERY_DEPTH, MAX_QUERY_LIMIT, MAX_VALUE_BYTES


@pytest.mark.parametrize(
    ("field", "bound"),
    [
        ("max_batch", MAX_BATCH),
        ("max_query_depth", MAX_QUERY_DEPTH),
        ("max_query_limit", MAX_QUERY_LIMIT),
        ("default_query_limit", MAX_QUERY_LIMIT),
        ("max_value_bytes", MAX_VALUE_BYTES),
    ],
)
def test_a_limit_past_its_bound_is_refused_naming_it(field: str, bound: int) -> None:
    extra = {"max_query_limit": MAX_QUERY_LIMIT} if field == "default_query_limit" else {}
    with clawstate.open("memory://", limits={field: bound, **extra}) as store:
        assert getattr(store.config.limits, field) == bound
    for hostile in (bound + 1, 10**30):
        with pytest.raises(ConfigError) as info:
            clawstate.open("memory://", limits={field: hostile, **extra})
        assert info.value.field == f"limits.{field}"
        assert str(bound) in str(info.value)
        assert len(str(info.value)) < 400  # the 31-digit integer is not echoed whole


def test_snapshot_versions_are_64_bit_and_named() -> None:
    with clawstate.open("memory://") as store:
        snaps = store.events.snapshots
        for bad, field in ((2**63, "version"), (0, "version"), (True, "version")):
            with pytest.raises(InvalidRequest) as info:
                snaps.save("order-1", bad, {"x": 1})
            assert info.value.field == field
        with pytest.raises(InvalidRequest) as info:
            snaps.save("order-1", 3, {"x": 1}, schema=2**31)
        assert info.value.field == "schema"
        assert snaps.load("order-1") is None
        assert snaps.save("order-1", 2**63 - 1, {"x": 1}).version == 2**63 - 1
