"""Child process of case ``kv_sqlite.rss``: load N keys, print peak RSS as JSON.

``python -m bench.kv_sqlite_rss {clawstate|diskcache} N DIR`` — run in a fresh
interpreter so ``ru_maxrss`` measures this load alone.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from .harness import current_rss_bytes, dir_bytes, peak_rss_bytes, peak_rss_hwm_bytes

BATCH = 1000


def small_value(size: int = 100) -> dict[str, Any]:
    """A small dict whose ``json.dumps`` is ``size`` bytes."""
    value: dict[str, Any] = {"id": 7, "user": "user-00042", "active": True, "note": ""}
    value["note"] = "x" * max(size - len(json.dumps(value)), 0)
    return value


def load_clawstate(n: int, path: Path, value: Any) -> None:
    import clawstate

    with clawstate.open(f"sqlite:///{path / 'state.db'}", sweep_interval=0) as store:
        ns = store.namespace("b")
        for start in range(0, n, BATCH):
            ns.put_many([(f"key-{i:08d}", value) for i in range(start, min(n, start + BATCH))])


def load_diskcache(n: int, path: Path, value: Any) -> None:
    import diskcache

    with diskcache.Cache(str(path / "dc")) as cache:
        cset = cache.set
        for start in range(0, n, BATCH):
            with cache.transact():
                for i in range(start, min(n, start + BATCH)):
                    cset(f"key-{i:08d}", value)


def main(argv: list[str]) -> int:
    system, n, path = argv[0], int(argv[1]), Path(argv[2])
    value = small_value()
    loader = {"clawstate": load_clawstate, "diskcache": load_diskcache}[system]
    if system == "clawstate":
        import clawstate  # noqa: F401  (count the import in "before", like diskcache's)
    else:
        import diskcache  # noqa: F401
    before = current_rss_bytes()
    start = time.perf_counter()
    loader(n, path, value)
    seconds = time.perf_counter() - start
    result = {
        "system": system,
        "items": n,
        "value_bytes": len(json.dumps(value)),
        "rss_before": before,
        "peak_rss": peak_rss_hwm_bytes() or peak_rss_bytes(),
        "ru_maxrss": peak_rss_bytes(),
        "disk_bytes": dir_bytes(path),
        "seconds": seconds,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
