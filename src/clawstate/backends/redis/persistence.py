"""How durable a Redis server is: what ``RedisBackend`` reports as ``capabilities.durable``
and in ``stats()``, read from its ``CONFIG`` and ``INFO persistence``."""

from __future__ import annotations

from typing import Any

__all__ = ["persistence_mode"]


def persistence_mode(
    config: dict[str, str] | None, info: dict[str, Any]
) -> tuple[str, bool, dict[str, Any]]:
    """Describe the server's persistence: ``(summary, durable, details)``.

    ``config`` holds ``CONFIG GET appendonly / appendfsync / save`` (None where
    CONFIG is disabled, as on several managed services); ``info`` is ``INFO
    persistence``.  ``durable`` means an acknowledged write survives a killed server
    process (the AOF is written before the reply).
    """
    details: dict[str, Any] = {}
    if config is not None:
        aof = config.get("appendonly", "no") == "yes"
        fsync = config.get("appendfsync", "everysec")
        save = config.get("save", "").strip()
        details.update(appendonly=aof, appendfsync=fsync, save=save, source="CONFIG GET")
    else:
        aof = str(info.get("aof_enabled", 0)) == "1"
        fsync = "unknown"
        save = "unknown"
        details.update(appendonly=aof, source="INFO persistence (CONFIG GET is not allowed)")
    for name in ("rdb_last_save_time", "rdb_changes_since_last_save", "aof_last_write_status"):
        if name in info:
            details[name] = info[name]
    rdb = "" if save in ("", "unknown") else f"; RDB snapshots too (save {save})"
    if aof:
        if fsync == "always":
            text = (
                "AOF, appendfsync always: every write is fsynced before Redis replies — it "
                "survives a server crash and a power loss"
            )
        elif fsync == "no":
            text = (
                "AOF, appendfsync no: survives a killed server process; a power loss may lose "
                "what the OS had not flushed yet (up to ~30 s)"
            )
        elif fsync == "everysec":
            text = (
                "AOF, appendfsync everysec: survives a killed server process; a power loss may "
                "lose about the last second of writes"
            )
        else:
            text = "AOF (fsync policy unknown: CONFIG GET is not allowed): survives a killed "
            text += "server process"
        return text + rdb, True, details
    if save == "unknown":
        return (
            "no AOF; RDB snapshot settings unknown (CONFIG GET is not allowed): writes since "
            "the last snapshot, if any, are lost when the server stops",
            False,
            details,
        )
    if save:
        return (
            f"RDB snapshots only (save {save}): writes since the last snapshot are lost when "
            "the server stops uncleanly",
            False,
            details,
        )
    return "none (no RDB, no AOF): data is lost when the server stops", False, details


# -- the backend ---------------------------------------------------------------------------
