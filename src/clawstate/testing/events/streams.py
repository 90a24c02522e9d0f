"""Listing streams: ``store.events.streams(prefix=…, limit=…, cursor=…)``."""

from __future__ import annotations

from clawstate import Event, Store
from clawstate.events import StreamInfo

from .helpers import assert_events_refused


def _all_pages(store: Store, prefix: str = "", limit: int = 100) -> list[list[StreamInfo]]:
    """Every page of the listing, following cursors to the end."""
    pages: list[list[StreamInfo]] = []
    cursor: str | None = None
    while True:
        page = store.events.streams(prefix, limit=limit, cursor=cursor)
        pages.append(page.streams)
        if page.cursor is None:
            return pages
        assert page.streams, "a page with a cursor must hold streams"
        cursor = page.cursor


class StreamListingConformance:
    """Streams in name order (UTF-8 bytes), with version and last position, paged."""

    def test_streams_are_listed_in_name_order_with_version_and_last_position(
        self, store: Store
    ) -> None:
        events = store.events
        assert events.streams().streams == [] and events.streams().cursor is None
        names = ["b", "a-2", "a-10", "é", "z", "\U0001f600", "a"]
        for i, name in enumerate(names):
            events.append(name, [Event("E", {"i": i, "n": n}) for n in range(i % 3 + 1)])
        events.append("a-2", [Event("E", {"again": True})])
        listed = events.streams()
        assert listed.cursor is None
        expected = sorted(names, key=lambda n: n.encode())
        assert [s.stream for s in listed.streams] == expected
        by_name = {s.stream: s for s in listed.streams}
        for name in names:
            read = events.read(name)
            assert by_name[name].version == read[-1].version, name
            assert by_name[name].last_position == read[-1].position, name
        assert by_name["a-2"].version == 3 and by_name["a-2"].last_position == events.last_position

    def test_streams_page_with_a_cursor_and_filter_by_prefix(self, store: Store) -> None:
        events = store.events
        for i in range(5):
            events.append(f"order-{i}", [Event("OrderPlaced", {"i": i})])
        events.append("user-1", [Event("UserSeen", {})])
        events.append("orders", [Event("Other", {})])
        pages = _all_pages(store, "order-", limit=2)
        assert [[s.stream for s in page] for page in pages] == [
            ["order-0", "order-1"],
            ["order-2", "order-3"],
            ["order-4"],
        ]
        # A listing that ends exactly at a page boundary: one more, empty, page.
        exact = _all_pages(store, "order-", limit=5)
        assert [len(page) for page in exact] == [5, 0]
        everything = [s.stream for page in _all_pages(store, limit=3) for s in page]
        assert everything == sorted(everything) and len(everything) == 7
        assert "orders" in everything and "user-1" in everything
        assert events.streams("nothing-").streams == []
        assert [s.stream for s in events.streams("user").streams] == ["user-1"]

    def test_deleted_and_trimmed_streams_stay_listed(self, store: Store) -> None:
        events = store.events
        events.append("gone", [Event("E", {"n": n}) for n in range(2)])
        deleted = events.delete_stream("gone")
        events.append("short", [Event("E", {"i": i}) for i in range(5)])
        events.set_stream_metadata("short", max_count=1)
        store.sweep()
        listed = {s.stream: s for s in events.streams().streams}
        assert listed["gone"].version == deleted.version == 3  # the tombstone's
        assert listed["gone"].last_position == deleted.position
        assert events.stream_metadata("gone").deleted
        assert listed["short"].version == 5 and [e.version for e in events.read("short")] == [5]

    def test_bad_listing_requests_are_refused(self, store: Store) -> None:
        store.events.append("s", [Event("E", {})])
        listing = store.events.streams
        for field, call in [
            ("limit", lambda: listing(limit=0)),
            ("limit", lambda: listing(limit="2")),  # type: ignore[arg-type]
            ("cursor", lambda: listing(cursor="")),
            ("cursor", lambda: listing(cursor="@@not-base64@@")),
            ("cursor", lambda: listing(cursor=7)),  # type: ignore[arg-type]
            ("prefix", lambda: listing(5)),  # type: ignore[arg-type]
        ]:
            assert_events_refused(store, field, call)
