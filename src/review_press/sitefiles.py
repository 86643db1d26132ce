"""Walking a site's own folders (posts/, static/, templates/) without ever leaving the site.

A symlink is followed only while its real path stays inside the site folder. One that
leads out (`static/env.txt -> /proc/self/environ`, `posts/old -> /home/me`) would copy
whatever it points at into out/ and onto the web, secrets included, so it is an error
naming the link, and the build stops before writing anything. A link that stays inside
the site, to a file or to a folder, is followed, unless it leads into `.review-press/` (the
subscriber database, the signing key) or `out/`. A link to itself, or a folder link that
leads back into a folder it is in, is a loop: an error, never a hang. FIFOs, sockets and
devices are refused as well (reading one blocks or never ends).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PressError

PRIVATE = (".review-press", "out")  # inside the site, yet never published through a link


@dataclass(frozen=True)
class Listing:
    """What a walk found: files by the path they have in the site (links not resolved), and every problem."""

    files: tuple[Path, ...]
    errors: tuple[PressError, ...]
    stats: Mapping[str, os.stat_result] = field(default_factory=dict)  # the plain files' stat, as the walk read it


def settled(st: os.stat_result, now_ns: int) -> bool:
    """Whether a stat taken at `now_ns` vouches for what was read with it from then on: a
    file's bytes (the posts cache) or a folder's entries (out/'s scan, `output`).

    Not when the file or folder changed within one tick of its file system's clock: a change
    later in that tick would leave the same size and times. The tick is taken to be under 0.1 s
    where the times have parts of a second (ext4, XFS, APFS, NTFS...), and 2 s where they are
    whole seconds (FAT, ext3, some network shares); such a one is read again next time.
    """
    newest = max(st.st_mtime_ns, st.st_ctime_ns)
    coarse = st.st_mtime_ns % 1_000_000_000 == 0 or st.st_ctime_ns % 1_000_000_000 == 0
    return newest < now_ns - (2_000_000_000 if coarse else 100_000_000)


def _within(real: str, bound: str) -> bool:
    """True when the resolved path `real` is `bound` or lies below it."""
    return real == bound or real.startswith(bound.rstrip(os.sep) + os.sep)


def is_inside(path: Path | str, root: Path | str) -> bool:
    """True when `path`, every symlink on the way resolved, lies inside `root` (resolved too)."""
    return _within(os.path.realpath(path), os.path.realpath(root))


def _target(link: str, real: str, bound: str) -> str:
    """Where a link that leaves the site points, for its error: as written when that already
    lies outside (`/proc/self/environ`), else the real path the chain of links ends at."""
    try:
        text = os.readlink(link)
    except OSError:
        return real
    return text if os.path.isabs(text) and not _within(os.path.realpath(text), bound) else real


def _accept_all(_name: str) -> bool:
    return True


def walk(
    top: Path,
    *,
    site: Path | None,
    error: type[PressError],
    hidden: bool = True,
    keep: Callable[[str], bool] = _accept_all,
) -> Listing:
    """Every file under the folder `top`, following symlinks that stay inside `site`.

    `site=None` sets no bound (for the packaged theme): links are followed wherever they
    go, loops are still refused. `hidden=False` skips names starting with "." (and does not
    look inside them). `keep(name)` picks the files wanted; links that leave the site are
    refused wherever they are, wanted or not. A broken link that stays inside the site is
    listed (reading it names the problem; callers that only copy files skip it). Errors are
    built with `error` (a `PressError` child) and name the path as it is in the site.
    """
    bound = os.path.realpath(site) if site is not None else None
    files: list[str] = []
    stats: dict[str, os.stat_result] = {}
    errors: list[tuple[str, PressError]] = []

    private: list[frozenset[tuple[int, int]]] = []

    def private_of() -> frozenset[tuple[int, int]]:
        """The site's private inodes, read once and only when a hard-linked file turns up."""
        if not private and bound is not None:
            private.append(private_inodes(Path(bound)))
        return private[0] if private else frozenset()

    def refuse(path: str, message: str, hint: str) -> None:
        errors.append((path, error(message, path=path, hint=hint)))

    # (path in the site, its name, the real path of its folder, the real paths of the folders it is in)
    stack: list[tuple[str, str, str | None, frozenset[str]]] = [(str(top), top.name, None, frozenset())]
    while stack:
        path, name, folder, ancestors = stack.pop()
        is_top = folder is None
        try:
            info = os.lstat(path)
        except OSError:
            continue  # gone since the folder was listed (or no such folder at all)
        link = stat.S_ISLNK(info.st_mode)
        # the real path: resolved for a link (or `top`), else the real path of its folder plus its name
        real = os.path.realpath(path) if link or folder is None else os.path.join(folder, name)
        if bound is not None and not _within(real, bound):
            refuse(path, "links outside the site", f"to {_target(path, real, bound)}")
            continue
        if link and bound is not None and any(_within(real, os.path.join(bound, private)) for private in PRIVATE):
            refuse(
                path, "links into the site's private files", f"to {real}: the database, the signing key or the build are never published"
            )
            continue
        if link:
            try:
                info = os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    refuse(path, "is a symlink loop", "the link leads back to itself: remove it")
                elif not is_top and keep(name):
                    files.append(path)
                continue
        if stat.S_ISDIR(info.st_mode):
            if real in ancestors:
                refuse(path, "is a symlink loop", "the link leads back to a folder it is in: remove it")
                continue
            try:
                with os.scandir(path) as entries:
                    children = sorted(((e.name, e) for e in entries if hidden or not e.name.startswith(".")), reverse=True)
            except OSError as exc:
                refuse(path, f"cannot read this folder: {exc.strerror}", "check its permissions")
                continue
            inner = ancestors | {real}
            for child, entry in children:
                if entry.is_file(follow_symlinks=False) and (bound is None or entry.stat(follow_symlinks=False).st_nlink == 1):
                    if keep(child):  # a plain file (the common case): nothing to resolve
                        files.append(entry.path)
                        if bound is not None:  # read above: a caller needing its size and times need not ask again
                            stats[entry.path] = entry.stat(follow_symlinks=False)
                else:  # a folder, a link or something odd: looked at closely
                    stack.append((entry.path, child, real, inner))
        elif is_top:
            continue  # `top` is not a folder: nothing to walk
        elif keep(name):
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1 and bound is not None and (info.st_dev, info.st_ino) in private_of():
                refuse(
                    path, "is a hard link to the site's private files", "the database and the signing key are never published: remove it"
                )
            elif stat.S_ISREG(info.st_mode):
                files.append(path)
            else:
                refuse(path, "is not a regular file", "a FIFO, socket or device cannot be read as a file: remove it")
    return Listing(
        files=tuple(Path(p) for p in sorted(files)),
        errors=tuple(e for _, e in sorted(errors, key=lambda pair: pair[0])),
        stats=stats,
    )


def private_inodes(site: Path) -> frozenset[tuple[int, int]]:
    """(device, inode) of every file in the site's private folders: a hard link to one of them,
    anywhere in the site, would publish it, so `walk` and `read_inside` refuse it."""
    found = set()
    for private in PRIVATE[:1]:  # .review-press: out/ is what a build writes, not a secret
        for dirpath, _dirs, names in os.walk(os.path.join(site, private)):
            for name in names:
                with contextlib.suppress(OSError):
                    info = os.lstat(os.path.join(dirpath, name))
                    found.add((info.st_dev, info.st_ino))
    return frozenset(found)


def read_inside(path: Path, site: Path, error: type[PressError]) -> bytes:
    """The bytes of `path`, verified on the file actually opened: a regular file whose real path
    lies inside `site` and outside its private folders, and no hard link to a private file.

    `walk` checks paths before a build; this closes the race in which a file is swapped for a
    link to a secret between that check and the copy.
    """
    bound = os.path.realpath(site)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = os.path.realpath(path)  # no /proc: the path's real path, checked just after opening
        if not stat.S_ISREG(info.st_mode):
            raise error("is not a regular file", path=path, hint="a FIFO, socket or device cannot be read as a file: remove it")
        if not _within(real, bound) or any(_within(real, os.path.join(bound, p)) for p in PRIVATE):
            raise error("links outside the site or into its private files", path=path, hint=f"to {real}: remove the link")
        if info.st_nlink > 1 and (info.st_dev, info.st_ino) in private_inodes(site):
            raise error(
                "is a hard link to the site's private files",
                path=path,
                hint="the database and the signing key are never published: remove it",
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)
