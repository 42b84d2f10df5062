"""Writing files: the package's one atomic writer, and the lock beside an edited file.

:func:`atomic_write` replaces a file all at once (temporary file in the same folder,
fsync, ``os.replace``, fsync of the folder): a crash, a kill or a full disk leaves the
old file as it was and no temporary file behind; the ``OSError`` goes up to the caller
(the CLI prints it as one ``error:`` line).

Modes: a new file holding addresses (subscriber lists, their backups, outbox messages)
is created :data:`PRIVATE_MODE`, or :data:`GROUP_MODE` and given to ``group`` when the
deploy configures one (the ``file_group`` setting: the web service's group reads the
list the CLI edits). A replaced file keeps its mode (and group). Files meant for
everyone (the static archive) pass ``public=True``.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

PRIVATE_MODE = 0o600
"""A new file holding addresses: the owner only."""

GROUP_MODE = 0o640
"""A new file holding addresses when a group is configured: the group may read it."""

PUBLIC_MODE = 0o644
"""A new file anyone may read (archive pages)."""

LOCK_SUFFIX = ".lock"
"""The sidecar file an edit locks: ``subscribers.yaml.lock``."""


def atomic_write(
    path: str | os.PathLike[str], data: bytes, *, public: bool = False, group: str | None = None
) -> None:
    """Replace ``path`` with ``data`` all at once; on any failure the old file is left alone."""
    target = Path(path)
    folder = target.parent
    mode, gid = _mode_for(target, public=public, group=group)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            if gid is not None:
                with contextlib.suppress(PermissionError):  # not a member: stays ours
                    os.fchown(out.fileno(), -1, gid)
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):  # name the real file
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from None
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _mode_for(target: Path, *, public: bool, group: str | None) -> tuple[int, int | None]:
    """(mode, group id or None) of the new file: the old file's, else the defaults."""
    try:
        old = target.stat()
    except FileNotFoundError:
        if public:
            return PUBLIC_MODE, None
        if group:
            return GROUP_MODE, _gid(group)
        return PRIVATE_MODE, None
    gid = old.st_gid if old.st_gid != os.getegid() else None
    return old.st_mode & 0o777, gid


def _gid(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise OSError(f"file_group: no group named {group!r}") from None


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (blocks until the other holder is done).

    The lock file is empty; it is opened read-only so another user of the group can lock it.
    """
    lock_path = os.fspath(path) + LOCK_SUFFIX
    fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, PUBLIC_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
