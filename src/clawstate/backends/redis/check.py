"""The Redis backend's ``check()``: verify the whole structure under the prefix — item
hashes against the key and expiry indexes, each item against its change-log entry and
back, the byte counters and length fields, and every ready secondary index against
the entries its items' values give.

Split out of :mod:`.backend` because it is a job of its own (about 200 lines that only
read) and keeps the backend module small; it runs over :class:`~._core.RedisCore`.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec

from ..base import NO_DOCUMENT, OP_NAMES, OP_PUT
from ._core import _PAGE, RedisCore, _glob_escape, _text
from .indexes import path_entries

__all__ = ["RedisCheck"]


class RedisCheck(RedisCore):
    """``check`` of :class:`~.backend.RedisBackend`."""

    def check(self) -> tuple[list[str], dict[str, int]]:
        return self._read("check", self._check)

    def _check(self) -> tuple[list[str], dict[str, int]]:
        r = self._r
        p = self.prefix
        problems: list[str] = []
        first, last = self._bounds()
        if r.exists(self._k_log):
            generated = _text(r.xinfo_stream(self._k_log)["last-generated-id"])
            if generated != f"0-{last}":
                problems.append(
                    f"the change log generated ID {generated} but its newest entry is 0-{last}: "
                    "the newest entry must never be trimmed"
                )
        names = self.namespaces()
        # One pass over the keyspace: every item hash and key index under the prefix.
        hashes: dict[str, set[str]] = {}
        indexed: set[str] = set()
        item_tag, index_tag = f"{p}i:".encode(), f"{p}k:".encode()
        for raw in r.scan_iter(match=_glob_escape(p) + "[ik]:*", count=1000):
            name = cast(bytes, raw)
            if name.startswith(item_tag):
                raw_ns, sep, raw_key = name[len(item_tag) :].partition(b"/")
                if sep:
                    hashes.setdefault(raw_ns.decode(), set()).add(raw_key.decode())
            elif name.startswith(index_tag):
                indexed.add(name[len(index_tag) :].decode())
        for ns in sorted(indexed - set(names)):
            problems.append(f"namespace {ns!r} has a key index but is missing from {p}namespaces")
        items = logged = 0
        for ns in names:
            members = [_text(m) for m in cast(list[bytes], r.zrange(f"{p}k:{ns}", 0, -1))]
            scores = {
                _text(m): float(sc)
                for m, sc in cast(list[Any], r.zrange(f"{p}x:{ns}", 0, -1, withscores=True))
            }
            member_set = set(members)
            for key in sorted(hashes.get(ns, set()) - member_set):
                problems.append(f"{ns}/{key}: item hash missing from the key index")
            for key in sorted(set(scores) - member_set):
                problems.append(f"{ns}/{key}: in the expiry index but not in the key index")
            total_bytes = 0
            with_seq: list[tuple[str, int, int]] = []
            for start in range(0, len(members), _PAGE):
                chunk = members[start : start + _PAGE]
                pipe = r.pipeline(transaction=False)
                for key in chunk:
                    pipe.hmget(self._ik(ns, key), "ver", "seq", "c", "u", "x", "n")
                    pipe.hstrlen(self._ik(ns, key), "v")
                got = pipe.execute()
                for j, key in enumerate(chunk):
                    h, length = got[2 * j], int(got[2 * j + 1])
                    where = f"{ns}/{key}"
                    if h[0] is None:
                        problems.append(f"{where}: in the key index but its item hash is missing")
                        continue
                    items += 1
                    total_bytes += length
                    ver, seq = int(h[0]), int(h[1])
                    if ver < 1 or seq < 1 or float(h[3]) < float(h[2]):
                        problems.append(f"{where}: impossible metadata (version/seq/timestamps)")
                    if seq > last:
                        problems.append(f"{where}: seq {seq} is beyond the last seq {last}")
                    if h[5] is None or int(h[5]) != length:
                        problems.append(f"{where}: its length field disagrees with its value")
                    if h[4] is None:
                        if key in scores:
                            problems.append(f"{where}: in the expiry index but has no expiry")
                    elif scores.get(key) != float(h[4]):
                        problems.append(f"{where}: expiry index disagrees with the item")
                    if first and seq >= first:
                        with_seq.append((key, ver, seq))
            counted = int(cast(bytes, r.hget(self._k_bytes, ns)) or 0)
            if counted != total_bytes:
                problems.append(
                    f"{ns}: the byte counter says {counted} but the values hold {total_bytes}"
                )
            # Each item's last write must be its retained change-log entry.
            for start in range(0, len(with_seq), _PAGE):
                batch = with_seq[start : start + _PAGE]
                pipe = r.pipeline(transaction=False)
                for _, _, seq in batch:
                    pipe.xrange(self._k_log, f"0-{seq}", f"0-{seq}")
                for (key, ver, _), entries in zip(batch, pipe.execute(), strict=True):
                    logged += 1
                    if not entries:
                        problems.append(f"{ns}/{key}: no change-log entry for its seq")
                        continue
                    f = entries[0][1]
                    found = (f[b"ns"].decode(), f[b"key"].decode(), int(f[b"ver"]), f[b"op"])
                    if found != (ns, key, ver, b"0"):
                        problems.append(f"{ns}/{key}: no matching change-log row")
        for ns in sorted(set(hashes) - set(names)):
            problems.append(f"namespace {ns!r} has item hashes but is missing from {p}namespaces")
        rows = int(r.xlen(self._k_log))
        if first and rows != last - first + 1:
            problems.append(
                f"the change log misses {last - first + 1 - rows} seqs between its first "
                f"({first}) and last ({last}): retention trims only from the front"
            )
        problems += self._check_log_items(set(names))
        for ns in names:
            problems += self._check_indexes(ns)
        return problems, {"items": items, "changes": rows, "log_matched": logged}

    def _check_indexes(self, ns: str) -> list[str]:
        """Every ready index of ``ns`` holds exactly the entries its items' values give
        (recomputed from the stored bytes), and each item's ``q`` field lists exactly
        the entries it holds in them (what an overwrite, delete or sweep will remove)."""
        r = self._r
        ix = self._load_indexes(ns)
        ready = list(ix.ready.values())
        if not ready:
            return []
        problems: list[str] = []
        want: dict[str, dict[str, float]] = {}
        for index in ready:
            for zk in (index.zlex, index.znum, index.zop):
                want[zk] = {}
        items = list(self._iter(ns, None))
        for start in range(0, len(items), _PAGE):
            chunk = items[start : start + _PAGE]
            pipe = r.pipeline(transaction=False)
            for item in chunk:
                pipe.hget(self._ik(ns, item.key), "q")
            for item, q in zip(chunk, pipe.execute(), strict=True):
                flat: list[str] = []
                for index in ready:
                    flat += path_entries(index, item.key, item.value, NO_DOCUMENT)
                expected = {(flat[i], flat[i + 2]) for i in range(0, len(flat), 3)}
                for i in range(0, len(flat), 3):
                    want[flat[i]][flat[i + 2]] = float(flat[i + 1])
                held: list[Any] = [] if q is None else list(msgspec.msgpack.decode(q))
                recorded = {
                    (str(held[i]), str(held[i + 2]))
                    for i in range(0, len(held), 3)
                    if str(held[i]) in want
                }
                if recorded != expected:
                    problems.append(f"{ns}/{item.key}: its index record disagrees with its value")
        for zk, members in want.items():
            found = {
                _text(m): float(sc)
                for m, sc in cast(list[Any], r.zrange(zk, 0, -1, withscores=True))
            }
            if found != members:
                extra = len(set(found) - set(members))
                missing = len(set(members) - set(found))
                problems.append(
                    f"{ns}: index set {zk} disagrees with the items "
                    f"({extra} extra, {missing} missing or mis-scored entries)"
                )
        return problems

    def _check_log_items(self, names: set[str]) -> list[str]:
        """The reverse direction: each key's newest retained log entry is what the items
        hold — a put: the item at exactly that seq and version; a delete or expire (every
        purge logs one): no item.  True whatever retention trimmed, since it trims a
        prefix and never the newest entry."""
        r = self._r
        problems: list[str] = []
        newest: dict[tuple[str, str], tuple[int, int, bytes]] = {}
        start = "-"
        ops = {str(op).encode() for op in OP_NAMES}
        while True:
            entries = cast(list[Any], r.xrange(self._k_log, start, "+", count=_PAGE))
            for entry_id, f in entries:
                seq = int(_text(entry_id)[2:])
                try:
                    where = (f[b"ns"].decode(), f[b"key"].decode())
                    op, ver = f[b"op"], int(f[b"ver"])
                except (KeyError, ValueError, UnicodeDecodeError):
                    problems.append(f"change-log entry {seq} is malformed")
                    continue
                if op not in ops or ver < 1:
                    problems.append(f"change-log entry {seq} has an impossible op or version")
                if where[0] not in names:
                    problems.append(f"change-log entry {seq} belongs to no namespace")
                newest[where] = (seq, ver, op)
            if len(entries) < _PAGE:
                break
            start = "(" + _text(entries[-1][0])
        found = list(newest.items())
        put = str(OP_PUT).encode()
        for begin in range(0, len(found), _PAGE):
            batch = found[begin : begin + _PAGE]
            pipe = r.pipeline(transaction=False)
            for (ns, key), _ in batch:
                pipe.hmget(self._ik(ns, key), "ver", "seq")
            for ((ns, key), (seq, ver, op)), held in zip(batch, pipe.execute(), strict=True):
                where_key = f"{ns}/{key}"
                if op != put:
                    if held[0] is not None:
                        problems.append(
                            f"{where_key}: exists although its newest change-log entry is a "
                            "delete or expire"
                        )
                elif held[0] is None:
                    problems.append(
                        f"{where_key}: last written by a put in the change log but has no item "
                        "(and no later delete or expire)"
                    )
                elif (int(held[1]), int(held[0])) != (seq, ver):
                    problems.append(
                        f"{where_key}: differs from its newest change-log entry (log: seq {seq} "
                        f"v{ver}, item: seq {int(held[1])} v{int(held[0])})"
                    )
        return problems
