"""The site's private folder, `.review-press/`: the database, the signing key, caches, the
build manifest and the publish lock. It holds every address and consent IP, so it is made
readable by its owner only (0700), and a folder an older version made wider is tightened.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DeliveryError, write_error

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Make `path` (and its parents) if missing, and leave it 0700; `StorageError` if it cannot be."""
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR:
            os.chmod(path, PRIVATE_DIR)
    except OSError as exc:
        raise write_error(path, exc) from None
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 if missing (SQLite gives its -wal and -shm files the same mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
        os.close(fd)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, PRIVATE_FILE)
    except OSError as exc:
        raise write_error(path, exc) from None
    return path


@contextmanager
def publish_lock(state_dir: Path) -> Iterator[None]:
    """Hold the site's publish lock (one SQLite sender; `store migrate` takes it too); a second holder is refused."""
    path = private_dir(state_dir) / "publish.lock"
    try:
        f = open(path, "w")  # noqa: SIM115 - closed below, after the lock is released
    except OSError as exc:
        raise write_error(path, exc) from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeliveryError("another publish of this site is running", hint="wait for it to finish, or stop it with Ctrl-C") from None
        yield
