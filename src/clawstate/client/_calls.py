"""The ``_Call`` core: every key/value operation described once (path, parameters,
body, retry-safety, how to read the answer), and a transaction's buffered writes.

The sync and async faces only hand these calls to a transport, so the two faces
cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from .._fence import check_fence
from .._validate import (
    check_flag,
    check_key,
    check_key_list,
    check_limit,
    check_pairs,
    check_position,
    check_timeout,
    check_ttl,
    check_value,
    check_version,
)
from .._validate import is_utf8 as _is_utf8
from .._wire import (
    IDEMPOTENCY_KEY,
    ChangeBatch,
    ItemMeta,
    ItemsByKey,
    ItemsMeta,
    quote_key,
)
from ..config import Limits
from ..errors import InvalidRequest
from ..events.store import SNAPSHOTS_NS
from ..locks import fence_to_wire
from ..types import (
    AppendResult,
    Change,
    Item,
    Page,
)

T = TypeVar("T")


# -- calls: each operation described once ------------------------------------------------

_NO_BODY = object()


class _Call(NamedTuple, Generic[T]):
    method: str
    path: str
    params: dict[str, Any] | None
    body: Any
    headers: dict[str, str] | None
    #: may be sent again after an ambiguous failure (a read, or an idempotency key)
    idempotent: bool
    parse: Callable[[int, Any], T]
    #: the field an unencodable body is blamed on
    field: str = "value"


_encode = msgspec.msgpack.Encoder().encode
_dec_any = msgspec.msgpack.Decoder()
_dec_item = msgspec.msgpack.Decoder(Item)
_dec_page = msgspec.msgpack.Decoder(Page)
_dec_meta = msgspec.msgpack.Decoder(ItemMeta)
_dec_items_by_key = msgspec.msgpack.Decoder(ItemsByKey)
_dec_items_meta = msgspec.msgpack.Decoder(ItemsMeta)
_dec_changes = msgspec.msgpack.Decoder(ChangeBatch)
_dec_change_json = msgspec.json.Decoder(Change)


def _ns_path(name: str) -> str:
    return f"/v1/namespaces/{name}"


def _item_path(ns: str, key: str) -> str:
    return f"/v1/namespaces/{ns}/items/{quote_key(key)}"


def _check_idem(idem: Any) -> None:
    if idem is not None:
        check_key(idem, 256, field="idempotency_key")


class _NsSpec:
    """One namespace as the client addresses it: name and limits.  Its policy is the
    server's (its configuration), so nothing about it travels with a request."""

    __slots__ = ("limits", "name")

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits


def _get_call(ns: _NsSpec, key: Any) -> _Call[Item | None]:
    check_key(key, ns.limits.max_key_bytes)

    def parse(status: int, data: Any) -> Item | None:
        return None if status == 404 else _dec_item.decode(data)

    return _Call("GET", _item_path(ns.name, key), None, _NO_BODY, None, True, parse)


def _get_many_call(ns: _NsSpec, keys: Iterable[Any]) -> _Call[dict[str, Item]]:
    keys = check_key_list(keys, ns.limits.max_batch, ns.limits.max_key_bytes)
    return _Call(
        "POST",
        _ns_path(ns.name) + "/batch/get",
        None,
        {"keys": keys},
        None,
        True,
        lambda s, d: _dec_items_by_key.decode(d).items,
        "keys",
    )


def _put_call(
    ns: _NsSpec,
    key: Any,
    value: Any,
    ttl: Any,
    if_version: Any,
    if_absent: bool,
    idem: Any,
    keep_ttl: bool = False,
    fence: Any = None,
) -> _Call[Item]:
    check_key(key, ns.limits.max_key_bytes)
    check_flag(if_absent, "if_absent")
    _check_keep_ttl(keep_ttl, ttl)
    if if_version is not None:
        check_version(if_version)
    if ttl is not None:
        check_ttl(ttl, ns.limits.max_ttl_seconds)
    _check_value(value)
    _check_idem(idem)
    params: dict[str, Any] = {}
    if ttl is not None:
        params["ttl"] = repr(float(ttl))
    if keep_ttl:
        params["keep_ttl"] = "true"
    if if_version is not None:
        params["if_version"] = str(if_version)
    if fence is not None:
        _fence_params(params, fence)
    headers: dict[str, str] = {}
    if if_absent:
        headers["if-none-match"] = "*"
    if idem is not None:
        headers[IDEMPOTENCY_KEY] = idem

    def parse(status: int, data: Any) -> Item:
        return _dec_meta.decode(data).with_value(value)

    return _Call(
        "PUT",
        _item_path(ns.name, key),
        params or None,
        value,
        headers or None,
        idem is not None,
        parse,
    )


def _fence_params(params: dict[str, Any], fence: Any) -> None:
    """A fenced item write's ``?fence=<lock>&fence_token=<token>`` (server/locks.py)."""
    name, token = check_fence(fence)
    params["fence"] = name
    params["fence_token"] = str(token)


def _check_keep_ttl(keep_ttl: Any, ttl: Any) -> None:
    """As the facade checks it: a bool, and never together with ``ttl``."""
    check_flag(keep_ttl, "keep_ttl")
    if keep_ttl and ttl is not None:
        raise InvalidRequest("keep_ttl", "cannot be combined with ttl")


def _check_value(value: Any) -> None:
    t = type(value)
    if t is bytes or t is bytearray or t is memoryview:
        return
    check_value(value, json=False)


def _put_many_call(
    ns: _NsSpec,
    items: Mapping[str, Any] | Iterable[tuple[str, Any]],
    ttl: Any,
    idem: Any,
    fence: Any = None,
) -> _Call[list[Item]]:
    pairs = check_pairs(items, ns.limits.max_batch)
    for k, v in pairs:
        check_key(k, ns.limits.max_key_bytes)
        if ttl is not None:
            check_ttl(ttl, ns.limits.max_ttl_seconds)
        _check_value(v)
    _check_idem(idem)
    values = [v for _, v in pairs]

    def parse(status: int, data: Any) -> list[Item]:
        metas = _dec_items_meta.decode(data).items
        return [m.with_value(v) for m, v in zip(metas, values, strict=True)]

    headers = {IDEMPOTENCY_KEY: idem} if idem is not None else None
    body: dict[str, Any] = {"items": [[k, v] for k, v in pairs], "ttl": ttl}
    if fence is not None:
        body["fence"] = fence_to_wire(fence)
    return _Call(
        "POST",
        _ns_path(ns.name) + "/batch/put",
        None,
        body,
        headers or None,
        idem is not None,
        parse,
    )


def _delete_call(
    ns: _NsSpec, key: Any, if_version: Any, idem: Any, fence: Any = None
) -> _Call[bool]:
    check_key(key, ns.limits.max_key_bytes)
    if if_version is not None:
        check_version(if_version)
    _check_idem(idem)
    params: dict[str, Any] | None = None if if_version is None else {"if_version": str(if_version)}
    if fence is not None:
        params = params or {}
        _fence_params(params, fence)
    headers = {IDEMPOTENCY_KEY: idem} if idem is not None else None
    return _Call(
        "DELETE",
        _item_path(ns.name, key),
        params,
        _NO_BODY,
        headers or None,
        idem is not None,
        lambda s, d: bool(_dec_any.decode(d)["deleted"]),
    )


def _scan_call(ns: _NsSpec, prefix: Any, limit: Any, cursor: Any) -> _Call[Page]:
    if not isinstance(prefix, str) or "\x00" in prefix or not _is_utf8(prefix):
        raise InvalidRequest("prefix", "must be a valid Unicode string without NUL")
    check_limit(limit, ns.limits.max_query_limit)
    if cursor is not None and not isinstance(cursor, str):
        raise InvalidRequest("cursor", f"must be a string, got {type(cursor).__name__}")
    if cursor is not None and not _is_utf8(cursor):
        raise InvalidRequest("cursor", "is not a cursor this store issued")
    params: dict[str, Any] = {"limit": str(limit)}
    if prefix:
        params["prefix"] = prefix
    if cursor is not None:
        params["cursor"] = cursor
    return _Call(
        "GET",
        _ns_path(ns.name) + "/items",
        params,
        _NO_BODY,
        None,
        True,
        lambda s, d: _dec_page.decode(d),
    )


def _query_call(ns: _NsSpec, query: Any, explain: bool = False) -> _Call[Page]:
    return _Call(
        "POST",
        _ns_path(ns.name) + "/query",
        {"explain": "true"} if check_flag(explain, "explain") else None,
        query,
        None,
        True,
        lambda s, d: _dec_page.decode(d),
        "query",
    )


def _count_call(ns: _NsSpec) -> _Call[int]:
    return _Call(
        "GET",
        _ns_path(ns.name) + "/count",
        None,
        _NO_BODY,
        None,
        True,
        lambda s, d: int(_dec_any.decode(d)["count"]),
    )


def _changes_call(
    from_seq: Any,
    namespace: str | None,
    prefix: str,
    timeout: Any,
    limit: int,
    backend: str | None,
) -> _Call[ChangeBatch]:
    params = _watch_params(from_seq, namespace, prefix, timeout, backend)
    params["limit"] = str(limit)
    return _Call(
        "GET", "/v1/changes", params, _NO_BODY, None, True, lambda s, d: _dec_changes.decode(d)
    )


def _watch_params(
    from_seq: Any, namespace: str | None, prefix: str, timeout: Any, backend: str | None
) -> dict[str, Any]:
    if from_seq is not None:
        check_position(from_seq, "from_seq")
    if timeout is not None:
        check_timeout(timeout)
    if not isinstance(prefix, str) or not _is_utf8(prefix):
        raise InvalidRequest("prefix", "must be a valid Unicode string")
    params: dict[str, Any] = {}
    if from_seq is not None:
        params["from_seq"] = str(from_seq)
    if namespace is not None:
        params["namespace"] = namespace
    if prefix:
        params["prefix"] = prefix
    if timeout is not None:
        params["timeout"] = repr(float(timeout))
    if backend is not None:
        params["backend"] = backend
    return params


class _TxReply(msgspec.Struct):
    """``POST /v1/transactions``' answer: one entry per write, one result per append."""

    result: list[ItemMeta | bool]
    appended: list[AppendResult] = msgspec.field(default_factory=list)


_dec_tx = msgspec.msgpack.Decoder(_TxReply)


def _tx_call(
    writes: list[dict[str, Any]],
    idem: Any,
    values: list[Any],
    appends: list[dict[str, Any]] | None = None,
) -> _Call[tuple[list[Item | bool], list[AppendResult]]]:
    """The transaction: its writes, and ``tx.events``' appends (sent only when there are
    some, so a state-only transaction is the same request it always was)."""
    _check_idem(idem)

    def parse(status: int, data: Any) -> tuple[list[Item | bool], list[AppendResult]]:
        reply = _dec_tx.decode(data)
        out: list[Item | bool] = []
        for r, v in zip(reply.result, values, strict=True):
            out.append(r if isinstance(r, bool) else r.with_value(v))
        return out, reply.appended

    body: dict[str, Any] = {"writes": writes}
    if appends:
        body["events"] = appends
    headers = {IDEMPOTENCY_KEY: idem} if idem is not None else None
    # An events-only retry is safe by event id too, but ids are new in every retried
    # transaction: only an idempotency key makes a transaction safe to send again.
    return _Call("POST", "/v1/transactions", None, body, headers, idem is not None, parse)


def _simple(method: str, path: str, params: dict[str, Any] | None = None) -> _Call[Any]:
    return _Call(
        method, path, params, _NO_BODY, None, method == "GET", lambda s, d: _dec_any.decode(d)
    )


class _TxBuffer:
    """A transaction's buffered writes, checked as they are added (like the facade's)."""

    def __init__(self, limits: Limits, idem: Any) -> None:
        _check_idem(idem)
        self.limits = limits
        self.idem = idem
        self.writes: list[dict[str, Any]] = []
        self.values: list[Any] = []
        self.done = False
        self.result: list[Item | bool] = []
        #: ``tx.events`` appends, checked: ``{"stream", "events", "expected_version"}``
        self.appends: list[dict[str, Any]] = []
        #: one AppendResult per append, after commit
        self.appended: list[AppendResult] = []

    def check_open(self) -> None:
        if self.done:
            raise InvalidRequest("transaction", "already committed or rolled back")

    def add(self, write: dict[str, Any], value: Any) -> None:
        self.check_open()
        limit = self.limits.max_batch
        if len(self.writes) >= limit:
            raise InvalidRequest(
                "transaction", f"more than {limit} writes; the limit is {limit}", limit=limit
            )
        self.writes.append(write)
        self.values.append(value)

    def put(
        self,
        ns: str,
        key: Any,
        value: Any,
        ttl: Any,
        if_version: Any,
        if_absent: bool,
        keep_ttl: bool = False,
        fence: Any = None,
    ) -> None:
        check_key(key, self.limits.max_key_bytes)
        check_flag(if_absent, "if_absent")
        _check_keep_ttl(keep_ttl, ttl)
        if if_version is not None:
            check_version(if_version)
            if if_absent:
                raise InvalidRequest("if_absent", "cannot be combined with if_version")
        if ttl is not None:
            check_ttl(ttl, self.limits.max_ttl_seconds)
        _check_value(value)
        write: dict[str, Any] = {"op": "put", "namespace": ns, "key": key, "value": value}
        if ttl is not None:
            write["ttl"] = ttl
        if if_version is not None:
            write["if_version"] = if_version
        if if_absent:
            write["if_absent"] = True
        if keep_ttl:
            write["keep_ttl"] = True
        if fence is not None:
            write["fence"] = fence_to_wire(fence)
        self.add(write, value)

    def delete(self, ns: str, key: Any, if_version: Any, fence: Any = None) -> None:
        check_key(key, self.limits.max_key_bytes)
        if if_version is not None:
            check_version(if_version)
        write: dict[str, Any] = {"op": "delete", "namespace": ns, "key": key}
        if if_version is not None:
            write["if_version"] = if_version
        if fence is not None:
            write["fence"] = fence_to_wire(fence)
        self.add(write, None)

    def overlay(
        self, ns: str, key: str, committed: Item | None, start: float, now: float
    ) -> Item | None:
        """``key`` as the commit would leave it: ``committed`` with this transaction's
        buffered writes to it applied in order — what ``TxNamespace.get`` answers
        in-process.  A buffered put reads back with ``version == 0`` and no etag; its
        expiry is the put's ``ttl`` from the transaction's ``start`` (or the live item's,
        with ``keep_ttl``), and it reads as absent once that passed by ``now``."""
        item = committed
        for write, value in zip(self.writes, self.values, strict=True):
            if write["namespace"] != ns or write["key"] != key:
                continue
            if write["op"] == "delete":
                item = None
                continue
            if write.get("keep_ttl") and item is not None:
                expires = item.expires_at
            else:
                ttl = write.get("ttl")
                expires = None if ttl is None else start + float(ttl)
            created = start if item is None else item.created_at
            item = Item(key, value, 0, "", created, start, expires, ns)
        if item is not None and item.expires_at is not None and item.expires_at <= now:
            return None
        return item

    def touches(self, ns: str, key: str) -> bool:
        return any(w["namespace"] == ns and w["key"] == key for w in self.writes)

    def append(self, entry: dict[str, Any]) -> None:
        """Buffer one checked append (``tx.events.append``)."""
        self.check_open()
        limit = self.limits.max_batch
        if len(self.appends) >= limit:
            raise InvalidRequest(
                "transaction", f"more than {limit} appends; the limit is {limit}", limit=limit
            )
        self.appends.append(entry)

    def snapshot(self, stream: Any, doc: dict[str, Any]) -> None:
        """Buffer a snapshot (``snapshots.save_in``): a put of the stream's entry in the
        event store's ``_snapshots`` namespace, which the server authorizes by stream."""
        check_key(stream, self.limits.max_key_bytes, field="stream")
        _check_value(doc)
        self.add({"op": "put", "namespace": SNAPSHOTS_NS, "key": stream, "value": doc}, doc)

    def commit_call(self) -> _Call[tuple[list[Item | bool], list[AppendResult]]] | None:
        self.check_open()
        self.done = True
        if not self.writes and not self.appends:
            return None
        return _tx_call(self.writes, self.idem, self.values, self.appends)

    def committed(self, done: tuple[list[Item | bool], list[AppendResult]]) -> None:
        self.result.extend(done[0])
        self.appended.extend(done[1])

    def rollback(self) -> None:
        self.done = True
        self.writes.clear()
        self.appends.clear()
