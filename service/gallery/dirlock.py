"""One process per data dir: an OS file lock on ``REID_DATA_DIR/reid.lock``.

The embedded gallery keeps its FAISS indexes in the memory of the process that opened it; a second process
on the same SQLite file (``uvicorn --workers 2``, two compose replicas on one volume) would see the other's
writes in SQLite but never in its indexes, and answer searches from a stale index. So the data dir is locked
with ``fcntl.flock`` (exclusive, non-blocking) for as long as a gallery is open in the process; the lock file
holds the holder's pid, for the error message. The kernel drops the lock when the holder exits, ``kill -9``
included.

flock locks belong to an open file, so within one process the lock is counted: the first :func:`acquire` of a
dir takes it, later ones (a restart test reopening a gallery) share it, and the last :func:`release` unlocks.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

LOCK_FILE = "reid.lock"
SHARED_GALLERY_HINT = "a shared gallery (REID_GALLERY=milvus)"


class DataDirLockedError(RuntimeError):
    """Another process holds the data dir.

    Args:
        data_dir: The locked data dir.
        pid: The holder's pid as written in the lock file (None if unreadable).
    """

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"the data dir {data_dir} is in use by {holder} (lock file {data_dir / LOCK_FILE}): an embedded "
            f"gallery belongs to one process; stop it, give this one another REID_DATA_DIR, or use "
            f"{SHARED_GALLERY_HINT} for several processes"
        )
        self.data_dir = data_dir
        self.pid = pid


_HELD: dict[Path, tuple[int, int]] = {}  # resolved data dir → (lock file descriptor, holders in this process)
_GUARD = threading.Lock()


def acquire(data_dir: str | Path) -> Path:
    """Lock ``data_dir`` for this process (created if missing); returns the resolved dir for :func:`release`.

    Raises:
        DataDirLockedError: Another process holds the lock.
    """
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    key = path.resolve()
    with _GUARD:
        if key in _HELD:
            fd, count = _HELD[key]
            _HELD[key] = (fd, count + 1)
            return key
        fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirLockedError(key, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = (fd, 1)
        return key


def release(key: Path) -> None:
    """Drop one hold taken by :func:`acquire`; the last one unlocks (the pid stays in the file, harmless)."""
    with _GUARD:
        held = _HELD.get(key)
        if held is None:
            return
        fd, count = held
        if count > 1:
            _HELD[key] = (fd, count - 1)
            return
        del _HELD[key]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None
