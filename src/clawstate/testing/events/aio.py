"""The event store through :class:`~clawstate.AsyncStore` (:class:`AsyncEventStoreConformance`)."""

from __future__ import annotations

import pytest

from clawstate import (
    NO_STREAM,
    AppendResult,
    AsyncStore,
    Event,
    RecordedEvent,
    WrongExpectedVersion,
)
from clawstate.testing.conformance import AsyncStoreFactory


class AsyncEventStoreConformance:
    """The event store through :class:`AsyncStore`: one implementation, awaitable."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def astore(self, async_store_factory: AsyncStoreFactory) -> AsyncStore:
        return async_store_factory()

    @pytest.mark.anyio
    async def test_async_append_read_and_transaction(self, astore: AsyncStore) -> None:
        events = astore.events
        assert await events.append("s", [Event("A")], expected_version=NO_STREAM) == AppendResult(
            1, 1
        )
        with pytest.raises(WrongExpectedVersion):
            await events.append("s", [Event("B")], expected_version=NO_STREAM)
        async with astore.transaction() as tx:
            await tx.events.append("s", [Event("B")], expected_version=1)
            await tx.namespace("n").put("k", 1)
        assert tx.appended == [AppendResult(2, 2)]
        assert [e.type for e in await events.read("s")] == ["A", "B"]
        assert [e.position for e in await events.read_all()] == [1, 2]
        assert await events.last_position() == 2
        report = await astore.check(deep=True)
        assert report.ok, report.problems

    @pytest.mark.anyio
    async def test_async_transaction_writes_buffer_when_called(self, astore: AsyncStore) -> None:
        # A forgotten ``await`` must not lose a write: the call itself buffers it.
        async with astore.transaction() as tx:
            tx.namespace("n").put("k", 1)
            tx.events.append("s", [Event("A")])
            tx.events.set_stream_metadata("s", max_count=10)
            assert (await tx.namespace("n").get("k")).value == 1  # type: ignore[union-attr]
        assert (await astore.namespace("n").get("k")).value == 1  # type: ignore[union-attr]
        assert [e.type for e in await astore.events.read("s")] == ["A"]
        assert (await astore.events.stream_metadata("s")).max_count == 10

    @pytest.mark.anyio
    async def test_async_snapshots_and_projection_runner(self, astore: AsyncStore) -> None:
        from clawstate.events import FailurePolicy, ProjectionStopped, ReadModel, handles
        from clawstate.events.projections import Projection

        class Count(Projection):
            name = "async-count"
            failure = FailurePolicy(retries=0)

            @handles("E")
            def counted(self, event: RecordedEvent, view: ReadModel) -> None:
                if event.data.get("poison"):
                    raise ValueError("poison")
                view.update("n", lambda n: (n or 0) + 1)

        events = astore.events
        await events.snapshots.save("s", 1, {"n": 1})
        snap = await events.snapshots.load("s")
        assert snap is not None and snap.state == {"n": 1}
        await events.append("s", [Event("E"), Event("E", {"poison": True}), Event("E")])
        runner = events.projection_runner([Count()])
        with pytest.raises(ProjectionStopped):
            await runner.run_until_idle()
        [status] = await runner.status()
        assert (status.stuck_position, status.stopped, status.error_type) == (
            2,
            True,
            "ValueError",
        )
        await runner.skip("async-count")
        assert await runner.run_until_idle() == 1
        assert (await astore.namespace("async-count").get("n")).value == 2  # type: ignore[union-attr]

    @pytest.mark.anyio
    async def test_async_subscribe_catches_up_then_goes_live(self, astore: AsyncStore) -> None:
        import anyio

        events = astore.events
        await events.append("s", [Event("E", {"i": 0})])
        got: list[int] = []
        async with events.subscribe(0, timeout=5, name="async-sub") as sub:

            async def later() -> None:
                await anyio.sleep(0.05)
                await events.append("s", [Event("E", {"i": 1})])

            async with anyio.create_task_group() as tg:
                tg.start_soon(later)
                async for event in sub:
                    got.append(event.data["i"])
                    if len(got) == 2:
                        break
            await sub.commit()
        assert got == [0, 1]
        stats = await events.stats()
        assert stats["subscriptions"]["async-sub"]["position"] == 2
