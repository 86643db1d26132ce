"""The one writer: every file of a build goes through `write_output`.

A build first plans its artifacts (path, key, how to render), then this module
1. refuses two artifacts at one path, naming what made each;
2. renders every artifact whose key or file changed since the last build, all before
   touching `out/`, so a failure leaves the last good site as it was;
3. writes only files whose bytes changed, each atomically (temporary file, then rename),
   so unchanged files keep their mtime;
4. removes files that no longer belong, and records a manifest for the next build: each
   file's key, size and mtime, and the stamp of each folder that held exactly the build's
   files (none after a prune), so that the next build lists no folder this one left as it
   was (`_scan`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import sitefiles
from .errors import BuildError, PressError, raise_all, write_error
from .forked import map_forked
from .statedir import private_dir

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Artifact:
    """One output file: where it goes, what it depends on (`key`), and how to make its bytes.

    `key` must change whenever the bytes could; two builds with equal keys may skip `render`.
    `origin` names what produced it (a post file, a tag, "feeds") for collision errors.
    """

    path: str
    key: str
    render: Callable[[], bytes]
    origin: str


@dataclass(frozen=True)
class WriteReport:
    """What a write did: counts of files rendered, written, unchanged and removed."""

    rendered: int
    written: tuple[str, ...]
    unchanged: int
    removed: tuple[str, ...]


def folders_of(path: str) -> Iterator[str]:
    """The folders an out/ path is in, innermost first: `a/b/c.html` -> `a/b`, `a`."""
    folder = path.rpartition("/")[0]
    while folder:
        yield folder
        folder = folder.rpartition("/")[0]


_TMP_PREFIX, _TMP_SUFFIX = ".tmp-", "~"  # the build's temporaries in out/ (`_temporary`)
_UNSAFE_HINT = "no empty, '.' or '..' part, backslash or NUL, and no part named .tmp-*~ (the build's temporaries)"


def _unsafe(path: str) -> bool:
    """Whether an out/ path could lead outside its folder, name no file or be taken for the
    build's own temporary: absolute, empty, with an empty, `.` or `..` part, a backslash, a NUL,
    or a part named `.tmp-*~` (the prune removes those whole)."""
    parts = path.split("/")
    return (
        path.startswith("/")
        or "" in parts
        or "." in parts
        or ".." in parts
        or "\\" in path
        or "\0" in path
        or (_TMP_PREFIX in path and any(_temporary(part) for part in parts))
    )


def check_paths(artifacts: Iterable[Artifact]) -> list[PressError]:
    """Every pair of artifacts that would write one path, and every unsafe path."""
    seen: dict[str, Artifact] = {}
    errors: list[PressError] = []
    for art in artifacts:
        if _unsafe(art.path):
            errors.append(BuildError(f"unsafe output path {art.path!r} from {art.origin}", hint=_UNSAFE_HINT))
        elif (other := seen.get(art.path.casefold())) is not None:
            errors.append(
                BuildError(f"{art.origin} and {other.origin} would both write out/{art.path}", hint="give one of them another slug")
            )
        else:
            seen[art.path.casefold()] = art
    for folded, art in seen.items():  # a file where another output needs a folder (`feed.xml` and `feed.xml/index.html`)
        other = None
        for folder in folders_of(folded):  # up from its own folder: the outermost such file is the one named
            other = seen.get(folder, other)
        if other is not None:
            errors.append(
                BuildError(f"{other.origin} writes out/{other.path}, where {art.origin} needs a folder", hint="rename one of them")
            )
    return errors


@dataclass(frozen=True)
class _Manifest:
    """What the last build left in out/: each file's [key, size, mtime_ns], and the `_stamp` of
    each folder whose entries were then exactly those files and folders (see `_scan`)."""

    files: dict[str, list]
    folders: dict[str, list[int]]


def _load_manifest(path: Path, checked: set[str] | None = None) -> _Manifest:
    """The last build's manifest; empty when it is missing or not one a build wrote. `checked`:
    paths already found safe (`check_paths`), so that a manifest naming just those is not checked again."""
    try:
        data = json.loads(path.read_text("utf-8"))
        files = data["files"] if data.get("version") == MANIFEST_VERSION else None
        if isinstance(files, dict) and all(type(entry) is list and len(entry) == 3 for entry in files.values()):
            folders = data.get("folders")
            # the scan walks the files' names as paths where the stamps hold: only names a build could write
            if not isinstance(folders, dict) or (folders and files.keys() != checked and any(_unsafe(name) for name in files)):
                folders = {}
            return _Manifest(files, folders)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        pass
    return _Manifest({}, {})  # no manifest, or one no build wrote: every artifact is rendered and compared


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file whole or not at all: a temporary file beside it, then a rename.

    A full disk or a read-only folder raises `StorageError` naming the file; no temporary is left.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


PARALLEL_FROM = 400  # artifacts to render: below this, a process pool costs more than it saves
Outcome = str | list[PressError]  # "staged", "same" or "checked"; or the artifact's errors


_MADE: set[str] = set()  # staging folders this process made in this build (`_render_many` empties it)


def _without_blocking(path: str, flags: int) -> int:
    """An `open` opener that never waits on what it opens (a FIFO)."""
    return os.open(path, flags | os.O_NONBLOCK)


def _render_one(art: Artifact, out_dir: str, staging: str | None) -> Outcome:
    """Render one artifact; with a `staging` folder, write its bytes there unless out/ holds the
    same already ("same"). Nothing is kept in memory past the call: a build of any size is flat."""
    try:
        data = art.render()
    except PressError as exc:
        return list(getattr(exc, "errors", (exc,)))
    if staging is None:
        return "checked"
    target = os.path.join(out_dir, art.path)
    try:  # without blocking (a FIFO put where a file was would wait for a writer forever); a folder is closed again
        with open(target, "rb", opener=_without_blocking) as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size == len(data) and f.read() == data:
                return "same"
    except OSError:
        pass
    staged = os.path.join(staging, art.path)
    try:
        folder = os.path.dirname(staged)
        if folder not in _MADE:
            os.makedirs(folder, exist_ok=True)
            _MADE.add(folder)
        with open(staged, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # readable by the web server whatever the umask
            f.write(data)
    except OSError as exc:
        return [write_error(Path(target), exc)]
    return "staged"


def _render_many(todo: list[Artifact], out_dir: Path, staging: Path | None) -> list[Outcome]:
    """Render artifacts, on every core when there are many (pages and feeds are a third of a cold
    build; `forked.map_forked`). Pure renders, so the bytes are the same whichever process makes
    them; the outcomes come back in order."""
    where = str(staging) if staging is not None else None
    _MADE.clear()
    return map_forked(partial(_render_one, out_dir=str(out_dir), staging=where), todo, PARALLEL_FROM)


def _due(artifacts: list[Artifact], manifest: dict[str, list], found: dict[str, tuple[int, int]]) -> list[Artifact]:
    """The artifacts whose key or file changed since the manifest (`found`: out/'s files as `_scan` saw them)."""
    todo = []
    for art in artifacts:
        entry = manifest.get(art.path)
        if entry and entry[0] == art.key and found.get(art.path) == (entry[1], entry[2]):
            continue
        todo.append(art)
    return todo


def _ours(name: str) -> bool:
    """Whether an entry of out/ is the build's to manage: every name but dot-files (.git,
    .nojekyll, .well-known), except the build's own temporaries (`_temporary`)."""
    return not name.startswith(".") or _temporary(name)


def _temporary(name: str) -> bool:
    """Whether a name is one the build gives its temporaries (`.tmp-*~`: a file being written, a
    staging or backup folder), which no artifact may take (`_unsafe`) and a prune removes whole."""
    return name.startswith(_TMP_PREFIX) and name.endswith(_TMP_SUFFIX)


Tree = dict[str, list[str]]  # an out/ folder ("" is out/) -> the names of what it holds, each folder's ending in "/"


@dataclass(frozen=True)
class _Scan:
    """out/ as one walk finds it: each file's (size, mtime) (a link's target's, as `os.stat`
    gives), the paths that are links, whether anything is there that the build would prune (a
    file it does not write, a temporary, an empty folder), and the stamps of the folders that
    held exactly the build's files and folders when they were read, or as the last build
    recorded them (for the next build)."""

    files: dict[str, tuple[int, int]]
    links: frozenset[str]
    prunable: bool
    stamps: dict[str, list[int]]
    tree: Tree  # the folders the build's files make (`_tree` of them)


def _tree(paths: Iterable[str]) -> Tree:
    """The folders that out/ paths make, each with the names of what it holds (a list each: a
    set per folder took 6 MB at 5,000 posts)."""
    tree: Tree = {"": []}
    for path in paths:
        folder, _, name = path.rpartition("/")
        held = tree.get(folder)
        if held is None:
            held = tree[folder] = []
            child = folder
            while child:  # up to the first folder already known, naming each in its parent
                parent, _, name_in_parent = child.rpartition("/")
                above = tree.get(parent)
                known = above is not None
                if above is None:
                    above = tree[parent] = []
                above.append(name_in_parent + "/")
                if known:
                    break
                child = parent
        held.append(name)
    return tree


def _stamp(st: os.stat_result) -> list[int]:
    """A folder's inode and times: adding, removing or renaming anything in it changes them (its
    ctime too, which no one can set back as `touch` sets back an mtime)."""
    return [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _vouches(st: os.stat_result, now_ns: int) -> bool:
    """Whether a folder's stamp, read at `now_ns`, may vouch for its entries next time: settled
    (`sitefiles.settled`), and on a file system whose ctime has parts of a second (`_fine`)."""
    return _fine(st) and sitefiles.settled(st, now_ns)


def _fine(st: os.stat_result) -> bool:
    """Whether a folder's ctime has parts of a second: one no one can set back. Not on FAT, whose
    ctime is its mtime in whole seconds (a copy tool setting the folder's mtime back would restore
    its whole stamp). A whole-second mtime alone (a folder `tar -x` or `cp -p` restored) is fine."""
    return st.st_ctime_ns % 1_000_000_000 != 0


def _scan(out_dir: Path, keep: set[str], last: _Manifest | None = None) -> _Scan:
    """Walk out/ once (links not followed) for `_due`, `_linked_folders` and `_prune`.

    A folder whose stamp is the one `last` recorded holds what it held then: the last build's
    files and folders there, which are not listed again (listing 7,000 folders was a fifth of a
    build with nothing to do), only each file's stat read. Every other folder is listed, its
    stamp taken first: it is recorded when it held exactly the files and folders `keep` makes
    and the stamp is settled, so a change later in the same tick of the file system's clock
    cannot leave the same stamp, and its ctime is one no one sets back (`_vouches`)."""
    last = last or _Manifest({}, {})
    files: dict[str, tuple[int, int]] = {}
    links: set[str] = set()
    stamps: dict[str, list[int]] = {}
    prunable = False
    now = time.time_ns()
    had = _tree(last.files) if last.folders else {}
    wanted = had if had and keep == last.files.keys() else _tree(keep)
    todo = [(str(out_dir).rstrip("/") or "/", "")] if out_dir.is_dir() else []  # folders to read, a stack: no recursion

    def take(path: str, rel: str, link: bool, st: os.stat_result | None = None) -> None:
        """An entry that is not a real folder (a file, or a link to anything): its size and mtime, a link's target's."""
        nonlocal prunable
        if link:
            links.add(rel)
        if rel not in keep:
            prunable = True
        with contextlib.suppress(OSError):  # a dangling link has no size
            st = os.stat(path) if link or st is None else st
            files[rel] = (st.st_size, st.st_mtime_ns)

    while todo:
        directory, prefix = todo.pop()
        folder = prefix[:-1]
        try:
            st = os.lstat(directory)
        except (OSError, ValueError):
            continue
        if not stat.S_ISDIR(st.st_mode):  # the last build's folder is now a file or a link
            take(directory, folder, stat.S_ISLNK(st.st_mode), st)
            continue
        stamp = _stamp(st)
        # as the last build left it: not listed (`_fine` again for a manifest an older version wrote)
        if last.folders.get(folder) == stamp and folder in had and _fine(st):
            held = had[folder]
            if wanted is had or sorted(wanted.get(folder, ())) == sorted(held):
                stamps[folder] = stamp
            for name in held:
                if name[0] == ".":  # not ours (no manifest with stamps names a temporary), as in the listing below
                    continue
                if name[-1] == "/":
                    todo.append((directory + "/" + name[:-1], prefix + name))
                    continue
                path = directory + "/" + name
                try:
                    st = os.lstat(path)
                except (OSError, ValueError):  # gone; or a name no file can have (a manifest edited by hand)
                    continue
                if st.st_mode & 0o170000 == stat.S_IFREG:  # a plain file, as the last build left it mostly
                    rel = prefix + name
                    files[rel] = (st.st_size, st.st_mtime_ns)
                    if rel not in keep:
                        prunable = True
                else:
                    take(path, prefix + name, stat.S_ISLNK(st.st_mode), st)
            continue
        names: set[str] = set()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    names.add(entry.name)
                    if entry.name[0] == ".":  # not ours (.git), or a temporary a kill left: the prune removes it whole
                        prunable = prunable or _temporary(entry.name)
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        todo.append((entry.path, prefix + entry.name + "/"))
                    else:
                        take(entry.path, prefix + entry.name, entry.is_symlink())
        except OSError as exc:
            raise write_error(directory, exc, "read") from None
        if not names and prefix:
            prunable = True
        expected = wanted.get(folder)
        if expected is not None and names == {name.rstrip("/") for name in expected} and _vouches(st, now):
            stamps[folder] = stamp
    return _Scan(files=files, links=frozenset(links), prunable=prunable, stamps=stamps, tree=wanted)


def render_all(artifacts: list[Artifact], out_dir: Path) -> int:
    """Render every artifact and keep nothing (what `check` does): raise every problem at once;
    return how many were rendered."""
    outcomes = _render_many(artifacts, out_dir, None)
    raise_all([e for o in outcomes if not isinstance(o, str) for e in o])
    return len(outcomes)


def _stage(todo: list[Artifact], out_dir: Path, staging: Path) -> list[str]:
    """Render `todo` into a new staging folder inside out/ (`staging`); return the paths whose
    bytes changed, in order. Any problem raises them all: out/ itself is untouched."""
    os.mkdir(staging)
    outcomes = _render_many(todo, out_dir, staging)
    raise_all([e for o in outcomes if not isinstance(o, str) for e in o])
    return [art.path for art, o in zip(todo, outcomes, strict=True) if o == "staged"]


def _temporary_path(out_dir: Path, kind: str) -> Path:
    """A fresh name in out/ for a temporary folder (`.tmp-KIND-*~`, removed whole by the next
    build's prune if a kill leaves it). Named before it is made, so that whoever made it always
    knows to remove it, whenever a Ctrl-C comes."""
    return out_dir / f"{_TMP_PREFIX}{kind}-{os.urandom(6).hex()}{_TMP_SUFFIX}"


def _remove_tree(path: Path | str) -> None:
    """Remove a folder and all it holds, never following a link, without recursion (Python
    3.11's `shutil.rmtree` recurses: a stray chain of 1,100 folders ended in RecursionError)."""
    folders, todo = [], [str(path)]
    while todo:
        folder = todo.pop()
        folders.append(folder)
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.path)
                else:
                    os.unlink(entry.path)
    for folder in reversed(folders):
        os.rmdir(folder)


def _discard(path: Path | None) -> None:
    """Remove a temporary folder of the build's if it is there, as well as it can."""
    if path is not None:
        with contextlib.suppress(OSError):
            _remove_tree(path)


def _prune(out_dir: Path, keep: set[str]) -> list[str]:
    """Delete files under out_dir that are not in `keep`, temporaries whole, then empty folders;
    return what went. A file or folder that cannot be removed is a `StorageError` naming it."""
    removed: list[str] = []
    held: set[str] = set()  # folders (as prefixes) left holding something
    visited: list[tuple[str, str]] = []  # every folder, each after the one it is in
    todo = [(str(out_dir), "")]  # a stack, not recursion: a stray chain of folders may be deep
    path = str(out_dir)
    try:
        while todo:
            directory, prefix = todo.pop()
            visited.append((directory, prefix))
            path = directory
            with os.scandir(directory) as entries:
                for entry in entries:
                    path, rel = entry.path, prefix + entry.name
                    if not _ours(entry.name) or (rel in keep and not entry.is_dir(follow_symlinks=False)):
                        held.add(prefix)  # .git, .nojekyll, .well-known, or a kept file
                    elif _temporary(entry.name) and entry.is_dir(follow_symlinks=False):  # a staging folder a kill left
                        _remove_tree(path)  # whole, with any dot-file the build staged in it
                        removed.append(rel + "/")
                    elif entry.is_dir(follow_symlinks=False):
                        todo.append((path, rel + "/"))
                    else:
                        os.unlink(path)
                        removed.append(rel)
        for directory, prefix in reversed(visited):  # innermost first
            if prefix in held or not prefix:
                parent = prefix[:-1].rpartition("/")[0]
                held.add(parent + "/" if parent else "")
            else:
                path = directory
                os.rmdir(directory)
    except OSError as exc:
        raise write_error(path, exc) from None
    return removed


def check_out_dir(out_dir: Path) -> None:
    """out/ must be a real folder (or not yet there), never a link: a build writes and prunes
    everything in it, so a link (`out -> .review-press`) would destroy what it points at."""
    if out_dir.is_symlink():
        raise BuildError(
            f"{out_dir.name}/ is a link (to {os.readlink(out_dir)}), not a folder",
            path=out_dir,
            hint="a build writes and removes files in out/: make it a real folder (deploy by copying it)",
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise BuildError(f"{out_dir.name} is a file, not a folder", path=out_dir, hint="move it away: the build writes out/")


Move = tuple[str, str]  # (path under out/, "new", "replace" or "displace"): see `_placements`


def _placements(out_dir: Path, staging: Path) -> list[Move]:
    """What moving the staging folder's tree into out/ takes, checked before anything moves.

    A staged folder that out/ lacks is one rename, whatever it holds ("new": a first build moves
    a few top-level entries, not every file); a staged file replaces out/'s ("replace"). What
    stands where the build needs the other kind, a file where it needs a folder or a folder of
    its own files where it needs a file (a static folder that became a file), is moved aside
    whole ("displace"): the prune would remove it. A link where a folder is needed, or a folder
    holding a dot-file (which the build never removes), is a `BuildError`."""
    moves: list[Move] = []

    def walk(folder: str, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = prefix + entry.name
                target = os.path.join(out_dir, rel)
                try:
                    st = os.lstat(target)
                except FileNotFoundError:
                    moves.append((rel, "new"))
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if stat.S_ISLNK(st.st_mode):
                        raise BuildError(
                            f"out/{rel} is a link", path=Path(target), hint="remove it: the build writes only real folders in out/"
                        )
                    if stat.S_ISDIR(st.st_mode):
                        walk(entry.path, rel + "/")
                    else:
                        moves.append((rel, "displace"))
                elif stat.S_ISDIR(st.st_mode):
                    if (kept := _not_ours_inside(target)) is not None:
                        raise BuildError(
                            f"out/{rel} is a folder where a file is needed, and holds out/{rel}/{kept}",
                            path=Path(target),
                            hint="move that out of it: the build never removes dot-files",
                        )
                    moves.append((rel, "displace"))
                else:
                    moves.append((rel, "replace"))

    walk(str(staging), "")
    return moves


def _not_ours_inside(folder: str) -> str | None:
    """The first entry in `folder` (its path there) that the prune would keep (`_ours`), if any;
    read without recursion, an unreadable folder an OSError."""
    todo = [""]
    while todo:
        prefix = todo.pop()
        with os.scandir(os.path.join(folder, prefix)) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if not _ours(entry.name):
                    return prefix + entry.name
                if entry.is_dir(follow_symlinks=False) and not _temporary(entry.name):  # the prune takes one whole
                    todo.append(prefix + entry.name + "/")
    return None


def _move_into_place(out_dir: Path, staging: Path) -> list[Move]:
    """Move the staged tree to its place in out/ (renames within one file system): a folder out/
    lacks in one rename, a changed file over its old version, what stands in the way aside
    (`_placements`). A link or a kept dot-file in the way, or a failure, leaves out/ as it was:
    what was moved in goes back to `staging`, old versions and what was moved aside come back.
    The caller removes `staging`."""
    moved: list[tuple[str, str, Path | None]] = []  # each path moving into place, how, and where its old version waits
    backup: Path | None = None  # the old versions, beside staging (`.tmp-old-*~`: a kill leaves it to the next prune)
    target = out_dir
    try:
        moves = _placements(out_dir, staging)
        for rel, how in moves:
            target, old = out_dir / rel, None
            if how != "new":  # kept until every file is in place, to put back
                if backup is None:
                    backup = _temporary_path(out_dir, "old")
                    os.mkdir(backup)
                old = backup / rel
                old.parent.mkdir(parents=True, exist_ok=True)
                if how == "replace":  # a hard link, else a copy: the old file stays in place until the new one takes it
                    try:
                        os.link(target, old, follow_symlinks=False)
                    except OSError:
                        shutil.copy2(target, old, follow_symlinks=False)
            moved.append((rel, how, old))  # undone from here on, by what is found where (a Ctrl-C may land between renames)
            if old is not None and how == "displace":
                os.replace(target, old)
            os.replace(staging / rel, target)
    except BaseException as exc:
        for rel, how, old in reversed(moved):
            with contextlib.suppress(OSError):
                if old is None or os.path.lexists(old):  # (a displaced entry only once it was moved aside)
                    if how != "replace" and not os.path.lexists(staging / rel):  # moved in: back where it came from
                        os.replace(out_dir / rel, staging / rel)
                    if old is not None:  # the old file's link (or copy), or what was moved aside, over whatever is there
                        os.replace(old, out_dir / rel)
        _discard(backup)
        if isinstance(exc, OSError):
            raise write_error(exc.filename or target, exc) from None
        raise
    _discard(backup)
    return moves


def _linked_folders(out_dir: Path, artifacts: list[Artifact], links: frozenset[str]) -> list[PressError]:
    """Every folder the artifacts live in that is a link in out/ (`links`, from `_scan`): refused
    before anything is rendered, or unchanged files would be found through it and the prune
    would remove it."""
    found: set[str] = set()
    for art in artifacts:
        for folder in folders_of(art.path):  # up from its own folder until one already found
            if folder in found:
                break
            found.add(folder)
    return [
        BuildError(f"out/{f} is a link", path=out_dir / f, hint="remove it: the build writes only real folders in out/")
        for f in sorted(found & links)
    ]


def write_output(out_dir: Path, artifacts: list[Artifact], manifest_path: Path) -> WriteReport:
    """Render, then write only what changed (all or nothing), then prune; see the module docstring.

    Rendered files go to a staging folder inside out/ as they are made (nothing is held in
    memory) and are renamed into place only when every artifact rendered: a failure anywhere
    leaves the last good site as it was."""
    raise_all(check_paths(artifacts))
    check_out_dir(out_dir)
    keep = {a.path for a in artifacts}
    last = _load_manifest(manifest_path, keep)
    scan = _scan(out_dir, keep, last)
    raise_all(_linked_folders(out_dir, artifacts, scan.links))
    manifest = last.files
    todo = _due(artifacts, manifest, scan.files)
    rendered = {art.path for art in todo}
    written: list[str] = []
    moved: list[Move] = []
    if todo:
        new_out = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = _temporary_path(out_dir, "build")
        try:
            written = _stage(todo, out_dir, staging)
            moved = _move_into_place(out_dir, staging)
        except BaseException:
            _discard(staging)
            if new_out:  # a first build that failed leaves no out/ behind
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
            raise
        _discard(staging)
    # moving the staged files in adds only kept files: the prune has work only when the scan saw some
    removed = _prune(out_dir, keep) if scan.prunable and out_dir.is_dir() else []
    removed = sorted([*removed, *(rel for rel, how in moved if how == "displace")])
    if scan.prunable:  # after a prune, the next build lists every folder
        folders = {}
    else:  # a build that staged nothing left out/ as the scan saw it
        folders = _folder_stamps(out_dir, scan, moved) if todo else scan.stamps
    files = manifest
    if todo or len(manifest) != len(artifacts):  # else every entry was just found to hold, and the manifest has no other
        files = {}
        for art in artifacts:
            # what was not rendered was just checked against the manifest: its entry still holds
            size_mtime = _stat(os.path.join(out_dir, art.path)) if art.path in rendered else tuple(manifest[art.path][1:])
            if size_mtime is not None:
                files[art.path] = [art.key, *size_mtime]
    if files != manifest or folders != last.folders:
        private_dir(manifest_path.parent)
        data = {"version": MANIFEST_VERSION, "files": files, "folders": folders}
        atomic_write(manifest_path, json.dumps(data, sort_keys=True).encode(), mode=0o600)
    return WriteReport(rendered=len(rendered), written=tuple(written), unchanged=len(artifacts) - len(written), removed=tuple(removed))


def _folder_stamps(out_dir: Path, scan: _Scan, moved: list[Move]) -> dict[str, list[int]]:
    """The folder stamps to record after a build that staged files (see `_scan`): the scan's,
    but for the folders this build moved something into (a rename changes the folder it lands
    in; out/ itself, where the staging folder came and went); and the stamps now of the folders
    it added where out/ had none ("new") and those in them, which hold just what was staged: the
    build's files (settled ones only: the folder a rename moved has just changed, and is listed
    by the next build)."""
    touched = {rel.rpartition("/")[0] for rel, _ in moved} | {""}
    stamps = {folder: stamp for folder, stamp in scan.stamps.items() if folder not in touched}
    new = {rel for rel, how in moved if how == "new" and rel in scan.tree}
    if new:
        now, inside = time.time_ns(), tuple(rel + "/" for rel in new)
        for folder in scan.tree:
            if folder in new or folder.startswith(inside):
                with contextlib.suppress(OSError):
                    st = os.stat(os.path.join(out_dir, folder))
                    if _vouches(st, now):
                        stamps[folder] = _stamp(st)
    return stamps


def make_key(*parts: object) -> str:
    """A short stable hash of an artifact's inputs, for `Artifact.key`."""
    text = "".join([str(part) + "\0" for part in parts])  # each part then a NUL, hashed in one go
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def file_artifact(path: str, source: Path, origin: str, site: Path | None = None) -> Artifact:
    """A file copied as it is; its key follows the source's size and mtime. With `site`, the file
    actually opened is checked to lie inside it (`sitefiles.read_inside`), whatever was swapped in."""
    st = source.stat()
    read = source.read_bytes if site is None else partial(sitefiles.read_inside, source, site, BuildError)
    return Artifact(path=path, key=make_key("file", source, st.st_size, st.st_mtime_ns), render=read, origin=origin)
