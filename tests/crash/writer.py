"""Child process of the crash test: acknowledged writes, each logged after its ack.

Three threads write concurrently (so kills land inside group-committed batches):
single puts of unique keys, compare-and-set increments of one counter, and
two-key transactions.  Each thread appends one JSON line to its own ack log
*after* the store acknowledged the write; the parent SIGKILLs this process at a
random moment and then checks the store against the logs.
"""

from __future__ import annotations

import json
import os
import sys
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


def transactions(store: clawstate.Store, cycle: int, fd: int) -> None:
    i = 0
    while True:
        tid = tx_id(cycle, i)
        with store.transaction() as tx:
            tx.namespace("tx-a").put(tid, {"tid": tid})
            tx.namespace("tx-b").put(tid, {"tid": tid})
            tx.namespace("puts").delete(f"p-{cycle}-{i}-never")
        _ack(fd, {"op": "tx", "tid": tid})
        i += 1


def main() -> None:
    path, logdir, cycle = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = clawstate.open(f"sqlite:///{path}", sweep_interval=0)
    fds = [_logger(os.path.join(logdir, f"{name}-{cycle}.log"))[0] for name in ("put", "cas", "tx")]
    threads = [
        threading.Thread(target=puts, args=(store, cycle, fds[0]), daemon=True),
        threading.Thread(target=cas, args=(store, fds[1]), daemon=True),
        threading.Thread(target=transactions, args=(store, cycle, fds[2]), daemon=True),
    ]
    for t in threads:
        t.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
