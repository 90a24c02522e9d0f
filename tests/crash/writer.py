"""Child process of the crash tests: acknowledged writes, each logged after its ack.

``writer.py URL_OR_SQLITE_PATH LOGDIR CYCLE [--put-threads N] [--idempotent-tx]``

Three or more threads write concurrently (so kills land inside group-committed
batches): puts of unique keys, compare-and-set increments of one counter, and
two-key transactions.  Each thread appends one JSON line to its own ack log
(``put``, ``put2``…, ``cas``, ``tx``) *after* the store acknowledged the write; the
parent SIGKILLs this process at a random moment and then checks the store against
the logs.  One script for every backend (SQLite in ``test_crash.py``, PostgreSQL and
Redis in their test modules), started through ``_backends.start_crash_writer``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading

import clawstate


def _logger(path: str) -> tuple[int, threading.Lock]:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), threading.Lock()


def _ack(fd: int, doc: dict[str, object]) -> None:
    os.write(fd, (json.dumps(doc) + "\n").encode())


def put_key(cycle: int, i: int) -> str:
    """The key of cycle ``cycle``'s ``i``-th put (the parent derives keys the same way)."""
    return f"p-{cycle}-{i}"


def put_value(cycle: int, i: int) -> dict[str, object]:
    """The value of that put, so the parent can check values, not just keys."""
    return {"cycle": cycle, "i": i, "pad": "x" * (i % 300)}


def tx_id(cycle: int, i: int) -> str:
    """The id of cycle ``cycle``'s ``i``-th transaction."""
    return f"t-{cycle}-{i}"


def puts(store: clawstate.Store, cycle: int, fd: int) -> None:
    ns = store.namespace("puts")
    i = 0
    while True:
        key = put_key(cycle, i)
        item = ns.put(key, put_value(cycle, i))
        _ack(fd, {"op": "put", "key": key, "version": item.version, "i": i})
        i += 1


def cas(store: clawstate.Store, fd: int) -> None:
    ns = store.namespace("counter")
    while True:
        cur = ns.get("c")
        try:
            if cur is None:
                item = ns.put("c", {"n": 0}, if_absent=True)
            else:
                item = ns.put("c", {"n": cur.value["n"] + 1}, if_version=cur.version)
        except clawstate.VersionConflict:
            continue
        _ack(fd, {"op": "cas", "version": item.version, "n": item.value["n"]})


def transactions(store: clawstate.Store, cycle: int, fd: int, idempotent: bool) -> None:
    i = 0
    while True:
        tid = tx_id(cycle, i)
        with store.transaction(idempotency_key=tid if idempotent else None) as tx:
            tx.namespace("tx-a").put(tid, {"tid": tid})
            tx.namespace("tx-b").put(tid, {"tid": tid})
            tx.namespace("puts").delete(f"p-{cycle}-{i}-never")
        _ack(fd, {"op": "tx", "tid": tid})
        i += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a store URL, or the path of a SQLite file")
    parser.add_argument("logdir")
    parser.add_argument("cycle", type=int)
    parser.add_argument("--put-threads", type=int, default=1)
    parser.add_argument("--idempotent-tx", action="store_true")
    args = parser.parse_args()
    url = args.target if "://" in args.target else f"sqlite:///{args.target}"
    cycle = args.cycle
    store = clawstate.open(url, sweep_interval=0)

    def log(name: str) -> int:
        return _logger(os.path.join(args.logdir, f"{name}-{cycle}.log"))[0]

    put_logs = ["put", *(f"put{n}" for n in range(2, args.put_threads + 1))]
    threads = [
        *(
            threading.Thread(target=puts, args=(store, cycle, log(name)), daemon=True)
            for name in put_logs
        ),
        threading.Thread(target=cas, args=(store, log("cas")), daemon=True),
        threading.Thread(
            target=transactions, args=(store, cycle, log("tx"), args.idempotent_tx), daemon=True
        ),
    ]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
