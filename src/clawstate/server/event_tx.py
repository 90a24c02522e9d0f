"""``tx.events`` over HTTP: appends in ``POST /v1/transactions``, committed with its writes.

The transactional outbox is the point of the event store's design (a state change and
the events announcing it commit together or not at all), so a remote transaction
carries both: ``writes`` as before, and ``events`` — ``{"stream", "events",
"expected_version"}`` appends, replayed through ``tx.events.append`` in the same facade
transaction.  An entry with ``metadata`` instead of ``events`` is a
``tx.events.set_stream_metadata`` (the settings given; an omitted one keeps its value).
The answer adds ``appended``, one :class:`~clawstate.AppendResult` per entry.

Two of the event store's own namespaces may be written in such a transaction, because
what runs in a client process needs them there:

* ``_projections`` — a projection runner commits a page's read-model writes and its
  checkpoint together.  A checkpoint is the bookmark of a reader of the whole log, so it
  needs ``events:*:read`` (as the checkpoint routes do); the read models are ordinary
  namespaces and need their ``ns:`` write scope.
* ``_subscriptions`` — a durable subscription run by a client saves its checkpoint
  and renews its lease with conditional one-write transactions; the same scope as a
  projection's checkpoint, ``events:*:read``.
* ``_snapshots`` — a repository saves a snapshot with the events it summarises.  The key
  is the stream, so it needs ``events:<stream>:write``, and the value is checked by
  ``snapshots.save_in`` itself (``{"version", "state", "schema"}``).

Any other ``_`` namespace stays the admin's.  This module names no route helper, so the
transaction route imports it without a loop.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .._validate import INT64_MAX, check_int, check_key
from .._wire import TxResult, TxWrite, TxWrites
from ..errors import InvalidRequest
from ..events.store import PROJECTIONS_NS, SNAPSHOTS_NS, SUBSCRIPTIONS_NS
from ..locks import fence_from_wire
from ..store import Store
from ..types import AppendResult, Event, Item
from .auth import Principal

__all__ = ["TxAppend", "TxBody", "TxReply", "run_event_tx", "tx_allowed"]

#: ``set_stream_metadata``'s settings (``expected_version`` travels beside them)
META_FIELDS = ("max_age", "max_count", "truncate_before")
#: the event store's namespaces a remote transaction may write (see the docstring)
EVENT_NAMESPACES = frozenset({PROJECTIONS_NS, SUBSCRIPTIONS_NS, SNAPSHOTS_NS})
#: the fields of a durable subscription's checkpoint (its position and its lease)
_SUBSCRIPTION_FIELDS = frozenset({"position", "updated_at", "owner", "lease_until"})


class TxAppend(msgspec.Struct, forbid_unknown_fields=True):
    """One ``tx.events.append`` of a remote transaction — or, with ``metadata`` instead
    of ``events``, one ``tx.events.set_stream_metadata`` (the settings given)."""

    stream: Any
    events: list[Event] | None = None
    expected_version: Any = "any"
    metadata: dict[str, Any] | None = None


class TxBody(TxWrites, forbid_unknown_fields=True):
    """``POST /v1/transactions`` body: the writes, and the appends committed with them."""

    events: list[TxAppend] = msgspec.field(default_factory=list)


class TxReply(TxResult):
    """The answer: one entry per write, and one :class:`~clawstate.AppendResult` per
    append (empty when the transaction appended nothing)."""

    appended: list[AppendResult] = msgspec.field(default_factory=list)


def check_tx(body: TxBody, max_key_bytes: int) -> None:
    """What the scope check needs to read safely: stream names are strings, a snapshot
    write is a put keyed by a stream."""
    for i, a in enumerate(body.events):
        check_key(a.stream, max_key_bytes, field=f"events[{i}].stream")
        if (a.events is None) == (a.metadata is None):
            raise InvalidRequest(
                f"events[{i}]", "takes events (an append) or metadata (stream settings)"
            )
        for key in a.metadata or ():
            if key not in META_FIELDS:
                raise InvalidRequest(
                    f"events[{i}].metadata.{str(key)[:64]}",
                    f"is not a stream setting (they are {', '.join(META_FIELDS)})",
                )
    for i, w in enumerate(body.writes):
        if w.namespace == SNAPSHOTS_NS:
            check_key(w.key, max_key_bytes, field=f"writes[{i}].key")
            if w.op != "put":
                raise InvalidRequest(
                    f"writes[{i}].op", "a snapshot is written with put (snapshots.save_in)"
                )


def tx_allowed(p: Principal | None, body: TxBody) -> bool:
    """Every namespace written and every stream appended to is within the token's
    scopes (one answer for the whole transaction: a refusal names nothing)."""
    if p is None:
        return False
    for w in body.writes:
        name = w.namespace
        if name in (PROJECTIONS_NS, SUBSCRIPTIONS_NS):
            ok = p.allows_all("events", "read")
        elif name == SNAPSHOTS_NS:
            ok = not w.key.startswith("_") or p.admin
            ok = ok and p.allows("events", w.key, "write")
        elif name.startswith("_"):
            ok = p.admin
        else:
            ok = p.allows("ns", name, "write")
        if not ok:
            return False
    for a in body.events:
        if (a.stream.startswith("_") and not p.admin) or not p.allows("events", a.stream, "write"):
            return False
    return True


def _checkpoint(i: int, value: Any) -> None:
    """A projection checkpoint as the runner reads it back: an object with a position."""
    if type(value) is not dict:
        raise InvalidRequest(f"writes[{i}].value", "a projection checkpoint is an object")
    check_int(value.get("position"), f"writes[{i}].value.position", 0, INT64_MAX)
    for field in ("events", "skipped"):
        if field in value:
            check_int(value[field], f"writes[{i}].value.{field}", 0, INT64_MAX)
    if "namespace" in value and not isinstance(value["namespace"], str):
        raise InvalidRequest(f"writes[{i}].value.namespace", "must be a namespace name")


def _subscription(i: int, value: Any) -> None:
    """A durable subscription's checkpoint as the in-process follower writes and reads
    it: its position, and its lease (``owner``, ``lease_until``)."""
    if type(value) is not dict or not set(value) <= _SUBSCRIPTION_FIELDS:
        raise InvalidRequest(
            f"writes[{i}].value",
            f"a subscription checkpoint is {{{', '.join(sorted(_SUBSCRIPTION_FIELDS))}}}",
        )
    check_int(value.get("position"), f"writes[{i}].value.position", 0, INT64_MAX)
    owner = value.get("owner")
    if owner is not None and (not isinstance(owner, str) or len(owner) > 64):
        raise InvalidRequest(f"writes[{i}].value.owner", "must be null or an id of 64 characters")
    for field in ("updated_at", "lease_until"):
        t = value.get(field)
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float)):
            raise InvalidRequest(f"writes[{i}].value.{field}", "must be null or a time")


def _snapshot(i: int, value: Any) -> dict[str, Any]:
    if type(value) is not dict or set(value) - {"version", "state", "schema"}:
        raise InvalidRequest(f"writes[{i}].value", "a snapshot is {version, state, schema}")
    if "version" not in value or "state" not in value:
        raise InvalidRequest(f"writes[{i}].value", "a snapshot needs version and state")
    check_int(value["version"], "version", 1, INT64_MAX)
    return value


def _apply(tx: Any, store: Store, i: int, w: TxWrite) -> None:
    fence = None if w.fence is None else fence_from_wire(w.fence, f"writes[{i}].fence")
    if w.namespace == SNAPSHOTS_NS:
        if fence is not None:
            raise InvalidRequest(f"writes[{i}].fence", "a snapshot write is not fenced")
        doc = _snapshot(i, w.value)
        store.events.snapshots.save_in(
            tx, w.key, doc["version"], doc["state"], schema=doc.get("schema", 1)
        )
        return
    if w.namespace in (PROJECTIONS_NS, SUBSCRIPTIONS_NS):
        txns = tx._system_namespace(w.namespace)
        if w.op == "put":
            check = _checkpoint if w.namespace == PROJECTIONS_NS else _subscription
            check(i, w.value)
    else:
        txns = tx.namespace(w.namespace)
    if w.op == "put":
        ttl, if_absent, keep_ttl = w.put_options()
        txns.put(
            w.key,
            w.value,
            ttl=ttl,
            if_version=w.if_version,
            if_absent=if_absent,
            keep_ttl=keep_ttl,
            fence=fence,
        )
    else:
        txns.delete(w.key, if_version=w.if_version, fence=fence)


def run_event_tx(
    store: Store, body: TxBody, idem: str | None
) -> tuple[list[Item | bool], list[AppendResult]]:
    """The body's writes, then its appends, in ONE facade transaction (committed when
    the block ends, rolled back whole if anything is refused)."""
    with store.transaction(idempotency_key=idem) as tx:
        for i, w in enumerate(body.writes):
            _apply(tx, store, i, w)
        for a in body.events:
            if a.events is not None:
                tx.events.append(a.stream, a.events, expected_version=a.expected_version)
            else:  # check_tx made sure it is one or the other
                tx.events.set_stream_metadata(
                    a.stream, **(a.metadata or {}), expected_version=a.expected_version
                )
    return tx.result, tx.appended
