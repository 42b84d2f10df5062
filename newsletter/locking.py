"""Only one daemon sends: an exclusive ``flock`` on a file next to the state database.

The lock file holds the PID of the process that owns it, so a second ``newsletter run``
can say who is in the way. The lock is tied to the open file, so it goes away with the
process however it ends (even SIGKILL): there is no stale lock to clean up, and the file
itself is never deleted (deleting it would let two processes lock two different files).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from newsletter.closing import Closing
from newsletter.errors import NewsletterError
from newsletter.state import lock_path_for


class AlreadyRunning(NewsletterError):
    """Another process holds the lock: a second daemon would send twice."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "another process"
        super().__init__(
            f"another newsletter daemon is running ({who}, lock {path}); "
            "stop it first, or give this one a different state database"
        )
        self.path = path
        self.pid = pid


def read_pid(path: Path) -> int | None:
    """The PID written in a lock file, or None when there is none to read."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def holder(path: Path) -> int | None:
    """The PID of the process holding the lock at ``path``, or None when it is free."""
    if not path.exists():
        return None
    with path.open("a+", encoding="ascii") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_pid(path)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None


class InstanceLock(Closing):
    """An exclusive, non-blocking lock on ``path``; use it as a context manager."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`AlreadyRunning` naming the holder's PID."""
        if self._handle is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="ascii")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise AlreadyRunning(self.path, read_pid(self.path)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            handle.seek(0)
            handle.truncate()
            handle.flush()
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    close = release

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self


__all__ = ["AlreadyRunning", "InstanceLock", "holder", "lock_path_for", "read_pid"]
