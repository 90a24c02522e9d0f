"""One home for each thing (issue #11, "Smaller"): one ``RateLimited``, rebuilt from
its problem document by the client; the input checks every entry point shares live in
``clawstate._validate``, and the old private copies are gone."""

from __future__ import annotations

import importlib

import pytest

import clawstate
from clawstate import _validate
from clawstate._wire import error_from_problem, problem_doc
from clawstate.errors import BackendUnavailable, InvalidRequest, LogTrimmed, RateLimited
from clawstate.events.store import EventFilter
from services import require_module


def test_one_rate_limited_class_everywhere() -> None:
    require_module("litestar")  # the server's modules import it
    from clawstate import client

    assert clawstate.RateLimited is RateLimited
    assert client.RateLimited is RateLimited
    assert issubclass(RateLimited, BackendUnavailable)  # "not now": retrying may help
    assert RateLimited(2.5).http_status == 429
    modules = ["clawstate.client._transport", "clawstate.server.guard", "clawstate.server.problems"]
    for module in modules:
        defined = importlib.import_module(module).__dict__.get("RateLimited")
        assert defined in (None, RateLimited), f"{module} defines its own RateLimited"


@pytest.mark.parametrize(
    "error",
    [RateLimited(2.5), RateLimited(None, "slow down"), LogTrimmed(3, 10, field="from_position")],
    ids=["rate-limited", "rate-limited-no-hint", "log-trimmed"],
)
def test_the_problem_document_rebuilds_the_same_error(error: Exception) -> None:
    assert isinstance(error, RateLimited | LogTrimmed)
    doc = problem_doc(error)
    back = error_from_problem(doc, doc["status"])
    assert type(back) is type(error) and str(back) == str(error)
    if isinstance(error, RateLimited):
        assert isinstance(back, RateLimited) and back.retry_after == error.retry_after
    else:
        assert isinstance(back, LogTrimmed)
        assert (back.requested, back.first_available, back.field) == (3, 10, "from_position")


def test_a_bare_429_is_rate_limited() -> None:
    err = error_from_problem({}, 429)
    assert isinstance(err, RateLimited) and err.retry_after is None


def test_the_checks_live_in_validate() -> None:
    assert _validate.is_utf8("ok") and not _validate.is_utf8("\ud800")
    _validate.check_event_filter(None)
    _validate.check_event_filter(EventFilter("order-", ("Placed",)))
    with pytest.raises(InvalidRequest, match=r"^filter: must be a clawstate\.events\.EventFilter"):
        _validate.check_event_filter({"stream_prefix": ""})
    with pytest.raises(InvalidRequest, match=r"^filter\.types: "):
        _validate.check_event_filter(EventFilter("", ["a"]))  # type: ignore[arg-type]
    assert _validate.check_event_json(0, "data", {"a": 1}) == b'{"a":1}'
    with pytest.raises(InvalidRequest, match=r"^events\[2\]\.metadata: must be a JSON object"):
        _validate.check_event_json(2, "metadata", [1])
    with pytest.raises(InvalidRequest, match=r"^events\[0\]\.data: has a non-finite float"):
        _validate.check_event_json(0, "data", {"x": float("nan")})
    with pytest.raises(InvalidRequest, match=r"^value: "):
        _validate.check_value({"x": float("inf")}, json=True)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("clawstate.store", "_is_utf8"),
        ("clawstate.events.store", "_check_limit"),
        ("clawstate.events.store", "_check_position"),
        ("clawstate.events.store", "_check_filter"),
        ("clawstate.events.store", "_json_text"),
        ("clawstate._wire", "REQUEST_ID"),
    ],
)
def test_the_old_copies_are_gone(module: str, name: str) -> None:
    assert not hasattr(importlib.import_module(module), name)
