"""Test support: snapshots of a folder's files, to compare before and after a build or a failure."""

from __future__ import annotations

import os
from pathlib import Path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (recursively): its POSIX path relative to `folder` -> its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def snapshot_with_mtimes(out: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and folder under out/ with its bytes and mtime: what "out/ is untouched" compares."""
    found: dict[str, tuple[bytes, int]] = {}
    for dirpath, dirnames, filenames in os.walk(out):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            info = path.lstat()
            found[path.relative_to(out).as_posix()] = (path.read_bytes() if path.is_file() else b"<folder>", info.st_mtime_ns)
    return found
