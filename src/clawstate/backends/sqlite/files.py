"""The SQLite store's file: created owner-only, refused on a network filesystem,
and the "no store at …" error of ``create=False`` opens."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import ConfigError

__all__ = ["NETWORK_FILESYSTEMS", "make_file", "no_store", "refuse_network_fs"]

#: Filesystems on which SQLite's POSIX locks (and so WAL) are unreliable.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smbfs",
        "smb3",
        "9p",
        "fuse.sshfs",
        "sshfs",
        "afs",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "lustre",
        "gpfs",
        "fuse.s3fs",
        "fuse.rclone",
        "davfs",
        "fuse.davfs2",
    }
)


def _mount_fstype(path: Path) -> str | None:
    """The filesystem type of the mount holding ``path`` (Linux /proc/mounts)."""
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            mounts = [line.split()[:3] for line in fh if line.strip()]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    target = str(path)
    for parts in mounts:
        if len(parts) < 3:
            continue
        mountpoint = parts[1].replace("\\040", " ")
        inside = target == mountpoint or target.startswith(mountpoint.rstrip("/") + "/")
        if inside and (best is None or len(mountpoint) > best[0]):
            best = (len(mountpoint), parts[2])
    return best[1] if best else None


def refuse_network_fs(path: Path) -> None:
    """Refuse a store on a network filesystem (where SQLite's locks are unreliable)."""
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    fstype = _mount_fstype(probe)
    if fstype is not None and fstype.lower() in NETWORK_FILESYSTEMS:
        raise ConfigError(
            "store.url",
            f"{path} is on a network filesystem ({fstype}); SQLite's file locks "
            "are unreliable there and concurrent writers could corrupt it — put the "
            "database on a local disk, or use a postgresql:// store",
        )


def make_file(path: Path) -> None:
    """Create the database file owner-only (0600), in directories created 0700.

    The store holds application data, so it gets the keyring's permissions.
    SQLite creates the ``-wal`` and ``-shm`` files with the database file's mode,
    so they are owner-only too.  Existing directories and files keep their modes
    (an operator who widened them meant it)."""
    missing: list[Path] = []
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        for directory in reversed(missing):
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass  # another process made it first
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except FileExistsError:
        pass  # the store exists (or another process just made it)
    except OSError as exc:
        raise ConfigError("store.url", f"cannot create {path}: {exc}") from exc


def no_store(path: Path, why: str = "no such file") -> ConfigError:
    """The error of a ``create=False`` open that finds no store at ``path``."""
    return ConfigError(
        "store.url",
        f"no store at {path} ({why}); a command that writes (put, serve…) creates it",
    )
