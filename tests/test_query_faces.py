"""The query faces of issue 12 that every backend shares: ``explain``, the scan bound
(``limits.max_query_scan`` / ``max_scan=``), ``Store.build_indexes`` and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import clawstate
from clawstate.errors import ConfigError, InvalidRequest

Q_USER = {"filter": {"EQ": {"user": "u7"}}, "page": {"limit": 5}}


def _fill(ns: Any, n: int = 300) -> None:
    ns.put_many({f"k{i:04d}": {"user": f"u{i % 50}", "total": i} for i in range(n)})


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/q.db"


def test_explain_is_off_unless_asked(url: str) -> None:
    with clawstate.open(url) as store:
        ns = store.namespace("s")
        _fill(ns)
        assert ns.query(Q_USER).plan is None
        plan = ns.query(Q_USER, explain=True).plan
        assert plan is not None and plan.strategy in {"scan", "sql"}
        assert plan.index is None
        assert plan.rows_read > 0


def test_a_bound_refuses_an_unserved_query_and_changes_nothing(url: str) -> None:
    with clawstate.open(url, limits={"max_query_scan": 100}) as store:
        ns = store.namespace("s")
        _fill(ns)
        with pytest.raises(InvalidRequest) as err:
            ns.query({"filter": {"EQ": {"user": "nobody"}}})
        assert err.value.field == "query" and err.value.limit == 100
        assert "indexes = ['user']" in str(err.value)
        # a per-call bound overrides the configured one; 0 is no bound
        assert ns.query({"filter": {"EQ": {"user": "nobody"}}}, max_scan=0).items == []
        assert len(ns.query({"filter": {"EQ": {"user": "nobody"}}}, max_scan=10**6).items) == 0
        assert ns.count() == 300


def test_declared_indexes_serve_and_are_never_refused(url: str) -> None:
    options: dict[str, Any] = {
        "limits": {"max_query_scan": 10},
        "namespaces": {"s": {"indexes": ["user"]}},
    }
    with clawstate.open(url, **options) as store:
        ns = store.namespace("s")
        _fill(ns)
        page = ns.query(Q_USER, explain=True)
        assert [it.key for it in page.items] == ["k0007", "k0057", "k0107", "k0157", "k0207"]
        assert page.plan is not None and page.plan.strategy == "index", page.plan
        assert page.plan.index is not None
        assert page.plan.rows_read <= 6


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10", 2**64, float("nan")])
def test_hostile_max_scan_is_refused_naming_it(bad: Any) -> None:
    with clawstate.open("memory://") as store:
        with pytest.raises(InvalidRequest) as err:
            store.namespace("s").query({}, max_scan=bad)
        assert err.value.field == "max_scan"


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "lots", True])
def test_hostile_max_query_scan_config_is_refused(bad: Any) -> None:
    with pytest.raises(ConfigError) as err:
        clawstate.open("memory://", limits={"max_query_scan": bad})
    assert err.value.field == "limits.max_query_scan"


def test_explain_must_be_a_flag() -> None:
    with clawstate.open("memory://") as store:
        with pytest.raises(InvalidRequest) as err:
            store.namespace("s").query({}, explain="yes")  # type: ignore[arg-type]
        assert err.value.field == "explain"


def test_build_indexes_backfills_with_progress_and_is_idempotent(url: str) -> None:
    with clawstate.open(url) as store:
        _fill(store.namespace("s"))
    seen: list[tuple[int, int]] = []
    with clawstate.open(url, namespaces={"s": {"indexes": ["user", "total"]}}) as store:
        if url == "memory://":  # nothing persists: opening the namespace builds them
            _fill(store.namespace("s"))
            seen.append((0, 0))
        names = store.build_indexes("s", progress=lambda d, t: seen.append((d, t)))
        assert len(names) == 2
        assert store.build_indexes("s") == names
        assert store.build_indexes("plain") == []
        page = store.namespace("s").query(Q_USER, explain=True)
        assert page.plan is not None and page.plan.strategy == "index"
    assert seen and seen[-1][0] == seen[-1][1]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clawstate.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_index_and_explain(tmp_path: Path) -> None:
    (tmp_path / "clawstate.toml").write_text('[namespaces.s]\nindexes = ["user"]\n')
    url = f"sqlite:///{tmp_path}/c.db"
    with clawstate.open(url) as store:
        _fill(store.namespace("other"))
        store.namespace("s")
    with clawstate.open(url) as store:
        _fill(store.namespace("s"))
    out = _cli(tmp_path, "--url", url, "index")
    assert out.returncode == 0, out.stderr
    assert list(json.loads(out.stdout)["indexes"]) == ["s"]
    out = _cli(tmp_path, "--url", url, "query", "s", json.dumps(Q_USER), "--explain")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert len(doc["items"]) == 5
    assert doc["plan"]["strategy"] == "index" and doc["plan"]["rows_read"] <= 6


# -- over HTTP ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server over a store whose namespace ``big`` holds more rows than the server's
    default scan bound (limits.max_query_scan unset)."""
    from clawstate.config.limits import SERVER_MAX_QUERY_SCAN
    from clawstate.server.testing import ServerProcess

    path = tmp_path_factory.mktemp("big") / "big.db"
    with clawstate.open(f"sqlite:///{path}") as store:
        ns = store.namespace("big")
        rows = SERVER_MAX_QUERY_SCAN + 50
        for start in range(0, rows, 1000):
            ns.put_many({f"k{i:06d}": {"user": f"u{i % 50}"} for i in range(start, start + 1000)})
    with ServerProcess(f"sqlite:///{path}") as server:
        yield server


def test_the_server_bounds_unserved_queries_by_default(big_server: Any) -> None:
    with clawstate.open(big_server.url, token=big_server.admin_token) as remote:
        ns = remote.namespace("big")
        with pytest.raises(InvalidRequest) as err:
            ns.query({"filter": {"EQ": {"user": "nobody"}}})
        assert err.value.field == "query" and err.value.limit == 100_000
        assert "indexes = ['user']" in str(err.value)
        # an early exit inside the bound answers, with its plan when asked
        page = ns.query({"filter": {"EQ": {"user": "u3"}}, "page": {"limit": 2}}, explain=True)
        assert [it.key for it in page.items] == ["k000003", "k000053"]
        assert page.plan is not None and page.plan.rows_read <= 104
        assert ns.query({"page": {"limit": 1}}).plan is None


@pytest.mark.parametrize("bad", ["maybe", "2", ""])
def test_a_hostile_explain_parameter_is_a_400_naming_it(big_server: Any, bad: str) -> None:
    with big_server.admin() as http:
        r = http.post("/v1/namespaces/big/query", params={"explain": bad}, json={})
    assert r.status_code == 400, r.text
    assert "explain" in r.text
