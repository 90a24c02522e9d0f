"""State machines over HTTP: ``RemoteStore.machine(name, definition=None)``.

Each operation is one ``_Call`` (``/v1/machines/...``, see ``server/machines.py``), run
by the sync or the async transport, so the two faces cannot drift apart.  The handle
has the embedded :class:`~clawstate.machines.Machine`'s methods; the checks on ids,
payloads and versions are the server's (the store's), answered as the same errors.

``render`` and ``counts`` are computed here from the stored definition and a walk of
:meth:`query` pages per state, as the embedded handle does over its namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from .._validate import check_int
from .._wire import quote_key
from ..errors import ConfigError, InvalidRequest
from ..machines.definition import Definition, check_machine_name, parse_definition
from ..machines.machine import InstancePage
from ..types import Instance, Transition
from ._calls import _NO_BODY, _Call

if TYPE_CHECKING:
    from ._transport import _AsyncTransport, _Transport

__all__ = ["AsyncRemoteMachine", "RemoteMachine", "list_call"]

_dec_instance = msgspec.msgpack.Decoder(Instance)
_dec_page = msgspec.msgpack.Decoder(InstancePage)
_dec_history = msgspec.msgpack.Decoder(list[Transition])
_dec_any = msgspec.msgpack.Decoder()


def _base(name: str) -> str:
    return f"/v1/machines/{quote_key(name)}"


def _inst(name: str, id: Any) -> str:
    if type(id) is not str or not id:
        raise InvalidRequest("id", "must be a non-empty string")
    return f"{_base(name)}/instances/{quote_key(id)}"


def list_call() -> _Call[list[str]]:
    return _Call(
        "GET",
        "/v1/machines",
        None,
        _NO_BODY,
        None,
        True,
        lambda s, d: list(_dec_any.decode(d)["machines"]),
    )


def _define_call(name: str, definition: Any) -> _Call[int]:
    if isinstance(definition, str):  # TOML text: checked and sent as its JSON form
        definition = parse_definition(definition).document
    elif not isinstance(definition, dict):
        raise ConfigError(
            "definition",
            "over HTTP a definition is data (a dict or TOML text); a class-based one is "
            "registered by the application that owns the class, on the store itself",
        )
    return _Call(
        "PUT",
        _base(name),
        None,
        definition,
        None,
        True,  # the same content keeps its version: storing twice is storing once
        lambda s, d: int(_dec_any.decode(d)["version"]),
        "definition",
    )


def _create_call(name: str, id: Any, data: Any) -> _Call[Instance]:
    # Not idempotent: a lost answer may have created it (a retry answers 409).
    return _Call(
        "POST",
        f"{_base(name)}/instances",
        None,
        {"id": id, "data": data},
        None,
        False,
        lambda s, d: _dec_instance.decode(d),
        "data",
    )


def _fire_call(name: str, id: Any, event: Any, payload: Any, expected: Any) -> _Call[Instance]:
    body: dict[str, Any] = {"event": event, "payload": payload}
    if expected is not None:
        # checked here too: a huge integer cannot even be encoded for the wire
        body["expected_version"] = check_int(expected, "expected_version", 1)
    return _Call(
        "POST",
        _inst(name, id) + "/fire",
        None,
        body,
        None,
        False,  # a lost answer may have fired it
        lambda s, d: _dec_instance.decode(d),
        "payload",
    )


def _get_call(name: str, id: Any) -> _Call[Instance | None]:
    def parse(status: int, data: Any) -> Instance | None:
        return None if status == 404 else _dec_instance.decode(data)

    return _Call("GET", _inst(name, id), None, _NO_BODY, None, True, parse)


def _history_call(name: str, id: Any) -> _Call[list[Transition]]:
    return _Call(
        "GET",
        _inst(name, id) + "/history",
        None,
        _NO_BODY,
        None,
        True,
        lambda s, d: _dec_history.decode(d),
    )


def _query_call(name: str, state: Any, limit: Any, cursor: Any) -> _Call[InstancePage]:
    if type(limit) is not int:
        raise InvalidRequest("limit", f"must be an integer, got {type(limit).__name__}")
    if state is not None and type(state) is not str:
        raise InvalidRequest("state", f"must be a state name, got {type(state).__name__}")
    if cursor is not None and (type(cursor) is not str or not cursor):
        raise InvalidRequest("cursor", "must be the cursor of a previous query() page")
    params: dict[str, Any] = {"limit": str(limit)}
    if state is not None:
        params["state"] = state
    if cursor is not None:
        params["cursor"] = cursor
    return _Call(
        "GET",
        f"{_base(name)}/instances",
        params,
        _NO_BODY,
        None,
        True,
        lambda s, d: _dec_page.decode(d),
    )


def _missing(name: str) -> ConfigError:
    return ConfigError(
        "machine",
        f"no definition stored for machine {name!r}: give one (store.machine({name!r}, "
        "definition))",
    )


def _counted(defn: Definition, counts: dict[str, int]) -> dict[str, int]:
    seen = set(defn.states)
    return {s: n for s, n in counts.items() if s in seen or n}


def _count_states(defn: Definition) -> list[str]:
    return [*defn.states, *(s for s in defn.migrate if s not in set(defn.states))]


class RemoteMachine:
    """``RemoteStore.machine(name)``: :class:`clawstate.machines.Machine` over HTTP."""

    def __init__(self, t: _Transport, name: str, definition: Any = None) -> None:
        self._t = t
        self.name = check_machine_name(name)
        if definition is not None:
            t.call(_define_call(self.name, definition))
        if t.call(_info_call_or_none(self.name)) is None:
            raise _missing(self.name)

    def __repr__(self) -> str:
        return f"<RemoteMachine {self.name!r}>"

    def _info(self) -> tuple[Definition, int]:
        info = self._t.call(_info_call_or_none(self.name))
        if info is None:
            raise _missing(self.name)
        return info

    @property
    def definition(self) -> Definition:
        """The newest stored definition."""
        return self._info()[0]

    @property
    def version(self) -> int:
        """Its version."""
        return self._info()[1]

    def create(self, id: str, data: Any = None) -> Instance:
        return self._t.call(_create_call(self.name, id, data))

    def fire(
        self, id: str, event: str, payload: Any = None, expected_version: int | None = None
    ) -> Instance:
        return self._t.call(_fire_call(self.name, id, event, payload, expected_version))

    def get(self, id: str) -> Instance | None:
        return self._t.call(_get_call(self.name, id))

    def history(self, id: str) -> list[Transition]:
        return self._t.call(_history_call(self.name, id))

    def query(
        self, state: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> InstancePage:
        return self._t.call(_query_call(self.name, state, limit, cursor))

    def counts(self) -> dict[str, int]:
        defn = self.definition
        out: dict[str, int] = {}
        for state in _count_states(defn):
            n, cursor = 0, None
            while True:
                page = self.query(state, 1000, cursor)
                n += len(page.items)
                cursor = page.cursor
                if cursor is None:
                    break
            out[state] = n
        return _counted(defn, out)

    def render(self, format: str = "mermaid", *, counts: bool = True) -> str:
        from ..machines.render import render

        if format not in ("mermaid", "dot"):
            raise InvalidRequest("format", f'must be "mermaid" or "dot", got {str(format)[:40]!r}')
        defn = self.definition
        return render(self.name, defn, self.counts() if counts else None, format)


class AsyncRemoteMachine:
    """``AsyncRemoteStore.machine(name)``: the awaitable :class:`RemoteMachine`.  The
    definition is sent (and the machine's existence checked) on the first awaited
    call, as the embedded :class:`~clawstate.machines.aio.AsyncMachine` does."""

    def __init__(self, t: _AsyncTransport, name: str, definition: Any = None) -> None:
        self._t = t
        self.name = check_machine_name(name)
        if definition is not None and not isinstance(definition, dict | str):
            _define_call(self.name, definition)  # raises the same ConfigError now
        self._definition = definition
        self._ready = False

    async def _ensure(self) -> None:
        if self._ready:
            return
        if self._definition is not None:
            await self._t.call(_define_call(self.name, self._definition))
        if await self._t.call(_info_call_or_none(self.name)) is None:
            raise _missing(self.name)
        self._ready = True

    async def info(self) -> tuple[Definition, int]:
        """The newest stored definition and its version."""
        await self._ensure()
        info = await self._t.call(_info_call_or_none(self.name))
        if info is None:
            raise _missing(self.name)
        return info

    async def create(self, id: str, data: Any = None) -> Instance:
        await self._ensure()
        return await self._t.call(_create_call(self.name, id, data))

    async def fire(
        self, id: str, event: str, payload: Any = None, expected_version: int | None = None
    ) -> Instance:
        await self._ensure()
        return await self._t.call(_fire_call(self.name, id, event, payload, expected_version))

    async def get(self, id: str) -> Instance | None:
        await self._ensure()
        return await self._t.call(_get_call(self.name, id))

    async def history(self, id: str) -> list[Transition]:
        await self._ensure()
        return await self._t.call(_history_call(self.name, id))

    async def query(
        self, state: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> InstancePage:
        await self._ensure()
        return await self._t.call(_query_call(self.name, state, limit, cursor))

    async def counts(self) -> dict[str, int]:
        defn, _ = await self.info()
        out: dict[str, int] = {}
        for state in _count_states(defn):
            n, cursor = 0, None
            while True:
                page = await self.query(state, 1000, cursor)
                n += len(page.items)
                cursor = page.cursor
                if cursor is None:
                    break
            out[state] = n
        return _counted(defn, out)

    async def render(self, format: str = "mermaid", *, counts: bool = True) -> str:
        from ..machines.render import render

        if format not in ("mermaid", "dot"):
            raise InvalidRequest("format", f'must be "mermaid" or "dot", got {str(format)[:40]!r}')
        defn, _ = await self.info()
        return render(self.name, defn, await self.counts() if counts else None, format)


def _info_call_or_none(name: str) -> _Call[tuple[Definition, int] | None]:
    """The stored definition and its version, or None (404) when the machine has none."""

    def parse(status: int, data: Any) -> tuple[Definition, int] | None:
        if status == 404:
            return None
        doc = _dec_any.decode(data)
        return parse_definition(doc["definition"]), int(doc["version"])

    return _Call("GET", _base(name), None, _NO_BODY, None, True, parse)
