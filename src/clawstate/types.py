"""The values the public API hands back: items, pages, changes.

They are immutable ``msgspec.Struct`` records: cheap to build on the hot path
(a get builds one per call) and safe to share between threads.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ["Change", "CheckReport", "Item", "Page", "WriteOp"]

#: What a change-log row records: a write, a delete, or a purge by TTL.
WriteOp = Literal["put", "delete", "expire"]


class Item(msgspec.Struct, frozen=True, gc=False):
    """One stored value and its metadata.

    ``version`` is 1 when the key is created and grows by one on every write;
    ``etag`` is an opaque string that changes on every write and is never
    reused for the same key, even across delete and re-create.  Times are Unix
    seconds (float); ``expires_at`` is ``None`` for items without a TTL.
    """

    key: str
    value: Any
    version: int
    etag: str
    created_at: float
    updated_at: float
    expires_at: float | None = None
    namespace: str = ""


class Page(msgspec.Struct, frozen=True, gc=False):
    """One page of a scan or query; ``cursor`` is ``None`` on the last page.

    Pass ``cursor`` back to get the next page.  Cursors are keyset positions,
    not offsets, so pages stay stable while other writers insert or delete.
    """

    items: list[Item]
    cursor: str | None = None

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class Change(msgspec.Struct, frozen=True, gc=False):
    """One row of the change log: what changed, at which sequence number.

    ``seq`` is gap-free and in commit order per backend; ``version`` is the
    item's version after the change (for a delete: the version it had).
    """

    seq: int
    namespace: str
    key: str
    op: WriteOp
    version: int
    ts: float


class CheckReport(msgspec.Struct, frozen=True):
    """The result of ``Store.check()``: ``ok`` when ``problems`` is empty."""

    problems: list[str]
    checked: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.problems
