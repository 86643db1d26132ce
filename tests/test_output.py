"""The one writer: collisions refused, all-or-nothing rendering, atomic and minimal writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from files import snapshot_with_mtimes
from review_press.errors import BuildError, PressError
from review_press.output import Artifact, check_paths, write_output


def art(path: str, data: bytes, key: str = "k", origin: str = "test") -> Artifact:
    return Artifact(path=path, key=key + data.decode(errors="replace"), render=lambda: data, origin=origin)


def test_writes_files_and_manifest(tmp_path: Path) -> None:
    out, manifest = tmp_path / "out", tmp_path / "state" / "manifest.json"
    report = write_output(out, [art("index.html", b"home"), art("posts/a/index.html", b"a")], manifest)
    assert (out / "index.html").read_bytes() == b"home"
    assert (out / "posts/a/index.html").read_bytes() == b"a"
    assert report.rendered == 2 and set(report.written) == {"index.html", "posts/a/index.html"}
    assert manifest.exists()
    assert not list(out.rglob(".tmp-*"))


def test_two_artifacts_at_one_path_name_both(tmp_path: Path) -> None:
    arts = [art("posts/x/index.html", b"1", origin="posts/a.md"), art("posts/x/index.html", b"2", origin="posts/b.md")]
    with pytest.raises(BuildError, match=r"posts/b.md and posts/a.md would both write out/posts/x/index.html"):
        write_output(tmp_path / "out", arts, tmp_path / "m.json")
    assert not (tmp_path / "out").exists()


def test_paths_that_differ_only_in_case_collide() -> None:
    assert check_paths([art("tags/Crime/index.html", b""), art("tags/crime/index.html", b"")])


@pytest.mark.parametrize("bad", ["../escape.html", "/abs.html", "a//b.html", "a\\b.html"])
def test_unsafe_paths_refused(bad: str) -> None:
    assert check_paths([art(bad, b"x")])


def test_failed_render_leaves_previous_output_intact(tmp_path: Path) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, [art("index.html", b"good"), art("old.html", b"old")], manifest)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken() -> bytes:
        raise BuildError("template exploded", path="post.html", line=3)

    bad = [art("index.html", b"new"), Artifact("posts/b/index.html", "kb", broken, "b.md")]
    with pytest.raises(PressError, match="post.html:3: template exploded"):
        write_output(out, bad, manifest)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_unchanged_files_keep_mtime_and_are_not_rendered(tmp_path: Path) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, [art("a.html", b"a"), art("b.html", b"b")], manifest)
    old = 1_000_000_000_000_000_000
    os.utime(out / "a.html", ns=(old, old))
    write_output(out, [art("a.html", b"a"), art("b.html", b"b")], manifest)  # refreshes the manifest's stat
    calls: list[str] = []

    def counting(path: str, data: bytes) -> Artifact:
        def render() -> bytes:
            calls.append(path)
            return data

        return Artifact(path, "k" + data.decode(), render, "t")

    report = write_output(out, [counting("a.html", b"a"), counting("b.html", b"B")], manifest)
    assert calls == ["b.html"]  # a.html's key and file are unchanged: not even rendered
    assert report.written == ("b.html",)
    assert (out / "a.html").stat().st_mtime_ns == old


def test_same_bytes_under_a_new_key_are_not_rewritten(tmp_path: Path) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, [art("a.html", b"same", key="1")], manifest)
    mtime = (out / "a.html").stat().st_mtime_ns
    report = write_output(out, [art("a.html", b"same", key="2")], manifest)
    assert report.rendered == 1 and report.written == ()
    assert (out / "a.html").stat().st_mtime_ns == mtime


def test_a_file_changed_behind_our_back_is_rewritten(tmp_path: Path) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, [art("a.html", b"right")], manifest)
    (out / "a.html").write_bytes(b"tampered!")
    write_output(out, [art("a.html", b"right")], manifest)
    assert (out / "a.html").read_bytes() == b"right"


def test_removes_files_that_no_longer_belong(tmp_path: Path) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, [art("keep.html", b"k"), art("gone/index.html", b"g")], manifest)
    (out / "stray.txt").write_text("left by hand")
    report = write_output(out, [art("keep.html", b"k")], manifest)
    assert set(report.removed) == {"gone/index.html", "stray.txt"}
    assert not (out / "gone").exists()
    assert (out / "keep.html").exists()


def test_corrupt_manifest_means_full_render(tmp_path: Path) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, [art("a.html", b"a")], manifest)
    manifest.write_text("{not json")
    assert write_output(out, [art("a.html", b"a")], manifest).rendered == 1


def test_files_are_readable_by_all_whatever_the_umask(tmp_path: Path) -> None:
    """Pages are served by another user (the web server): 0644 files, both those moved in a new
    folder (one rename of the folder) and those replacing an old version."""
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    old = os.umask(0o077)
    try:
        write_output(out, [art("index.html", b"a"), art("posts/a/index.html", b"a")], manifest)
        write_output(out, [art("index.html", b"b"), art("posts/a/index.html", b"a"), art("tags/x/index.html", b"x")], manifest)
    finally:
        os.umask(old)
    for name in ("index.html", "posts/a/index.html", "tags/x/index.html"):
        assert oct((out / name).stat().st_mode & 0o777) == oct(0o644), name


def test_a_failure_while_moving_into_place_puts_every_move_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """New folders move in whole and changed files replace old ones; a failure on the way (here the
    fourth rename, after a new folder moved in) leaves out/ exactly as it was: moved folders go back, old versions are restored."""
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, [art("index.html", b"old"), art("posts/a/index.html", b"a")], manifest)
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real, calls = os.replace, []

    def failing(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    new = [art("index.html", b"new"), art("posts/a/index.html", b"a2"), art("posts/b/index.html", b"b"), art("tags/t/index.html", b"t")]
    with pytest.raises(PressError, match="no space left on device"):
        write_output(out, new, manifest)
    monkeypatch.setattr(os, "replace", real)
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and len(calls) >= 4
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_a_first_build_moves_a_new_folder_in_one_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """out/ absent: each top-level entry is one rename, not one per file (a cold build's cost)."""
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    real, moved = os.replace, []
    monkeypatch.setattr(os, "replace", lambda src, dst: (moved.append(os.path.relpath(dst, out)), real(src, dst)))
    arts = [art(f"posts/p{i}/index.html", b"p") for i in range(50)] + [art("index.html", b"i"), art("feed.xml", b"f")]
    report = write_output(out, arts, manifest)
    assert sorted(m for m in moved if not m.startswith("..")) == ["feed.xml", "index.html", "posts"]  # and the manifest, outside
    assert len(report.written) == 52 and (out / "posts/p49/index.html").read_bytes() == b"p"


def test_a_build_with_nothing_to_write_still_prunes_what_does_not_belong(tmp_path: Path) -> None:
    """The one walk of out/ (`_scan`) decides whether the prune has work: a file no artifact
    writes, an empty folder and a killed build's staging folder all go; dot-files stay."""
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    arts = [art("index.html", b"i"), art("posts/a/index.html", b"a")]
    write_output(out, arts, manifest)
    (out / "stray.html").write_bytes(b"x")
    (out / "empty/deeper").mkdir(parents=True)
    (out / ".tmp-build-dead~/posts").mkdir(parents=True)
    (out / ".tmp-build-dead~/posts/x.html").write_bytes(b"half")
    (out / ".tmp-build-dead~/.well-known").mkdir()  # a dot-folder the dead build staged goes with it
    (out / ".tmp-build-dead~/.well-known/security.txt").write_bytes(b"staged")
    (out / ".tmp-old-dead~").mkdir()
    (out / ".tmp-old-dead~/.nojekyll").write_bytes(b"")
    (out / ".well-known").mkdir()
    (out / ".well-known/security.txt").write_bytes(b"mine")
    report = write_output(out, arts, manifest)
    assert report.rendered == 0 and report.written == () and report.removed == (".tmp-build-dead~/", ".tmp-old-dead~/", "stray.html")
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert left == [".well-known", ".well-known/security.txt", "index.html", "posts", "posts/a", "posts/a/index.html"]
    assert write_output(out, arts, manifest).removed == ()


def test_a_file_where_another_output_needs_a_folder_names_the_outermost_file() -> None:
    errors = [str(e) for e in check_paths([art("a", b""), art("a/b", b""), art("a/b/c.html", b""), art("x/y.html", b"")])]
    assert errors == [
        "test writes out/a, where test needs a folder (rename one of them)",
        "test writes out/a, where test needs a folder (rename one of them)",
    ]
    assert check_paths([art("feed.xml", b""), art("feed.xml/index.html", b"")]) and not check_paths([art("a/b.html", b"")])


# --- folders the last build left as they were are not listed again ----------------------------

SITE = [art("index.html", b"home"), art("feed.xml", b"feed")] + [
    art(f"posts/p{i}/{name}", f"{name} {i}".encode()) for i in range(6) for name in ("index.html", "still.jpg")
]
LATER = 10**9  # a second on the clock: every folder's last change is a tick behind, so its stamp vouches


def _listed(monkeypatch: pytest.MonkeyPatch, out: Path) -> list[str]:
    """The folders of `out` that os.scandir lists from now on, as out/ paths."""
    import review_press.output as output

    listed: list[str] = []
    real = output.os.scandir

    def scandir(path: str | int) -> object:
        if isinstance(path, str) and os.path.realpath(path).startswith(os.path.realpath(out)):
            listed.append(os.path.relpath(path, out))
        return real(path)

    monkeypatch.setattr(output.os, "scandir", scandir)
    return listed


def _later(monkeypatch: pytest.MonkeyPatch, seconds: float = 1.0) -> None:
    import review_press.output as output

    real = output.time.time_ns
    monkeypatch.setattr(output.time, "time_ns", lambda: real() + int(seconds * 10**9))


def _past_the_tick(out: Path) -> None:
    """Wait until the file system's clock has moved past every folder's last change in `out`
    (a kernel with coarse timestamps could give a change within the tick the same stamp)."""
    newest = max(max(st.st_mtime_ns, st.st_ctime_ns) for st in map(os.stat, [out, *[p for p in out.rglob("*") if p.is_dir()]]))
    probe = out.parent / "tick-probe"
    while True:
        probe.write_bytes(b"")
        if os.stat(probe).st_mtime_ns > newest:
            probe.unlink()
            return
        time.sleep(0.001)


def _state(out: Path) -> dict[str, bytes | None]:
    """out/ as it is: each entry, a file's bytes (a link's target's), None for a folder."""
    return {p.relative_to(out).as_posix(): None if p.is_dir() else p.read_bytes() for p in sorted(out.rglob("*"))}


def test_a_build_with_nothing_changed_lists_no_folder_the_last_one_left_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    _later(monkeypatch)
    write_output(out, SITE, manifest)  # a first build: its new folders are recorded as it staged them
    listed = _listed(monkeypatch, out)
    assert write_output(out, SITE, manifest).rendered == 0
    assert listed == ["."]  # out/ itself, where the staging folder came and went; posts/ and each post's folder not
    listed.clear()
    assert write_output(out, SITE, manifest).rendered == 0 and listed == []
    (out / "posts/p3/index.html").write_bytes(b"edited in place")  # the folder's entries are the same: the file's stat tells
    report = write_output(out, SITE, manifest)
    assert report.written == ("posts/p3/index.html",) and (out / "posts/p3/index.html").read_bytes() == b"index.html 3"


def test_a_folder_changed_within_a_tick_of_its_listing_is_listed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stamp read within a tick of the folder's last change is not kept: a change later in
    that tick could leave the same stamp (`sitefiles.settled`)."""
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, SITE, manifest)
    listed = _listed(monkeypatch, out)
    changed = os.stat(out / "posts").st_ctime_ns
    for seconds, expected in ((0.05, True), (0.05, True), (0.5, True), (0.5, False)):
        import review_press.output as output

        monkeypatch.setattr(output.time, "time_ns", lambda s=seconds: changed + int(s * 10**9))
        listed.clear()
        write_output(out, SITE, manifest)
        assert ("posts" in listed) is expected, (seconds, listed)


MUTATIONS = {
    "a stray file": lambda out: (out / "posts/p1/stray.html").write_bytes(b"x"),
    "a stray file, the folder's mtime set back": lambda out: _behind_its_back(
        out / "posts/p1", lambda: (out / "posts/p1/stray.html").write_bytes(b"x")
    ),
    "an empty folder": lambda out: (out / "posts/p1/empty").mkdir(),
    "a stray folder": lambda out: ((out / "posts/p1/sub").mkdir(), (out / "posts/p1/sub/x.html").write_bytes(b"x")),
    "a file inside a stray folder's folder": lambda out: ((out / "posts/p9").mkdir(), (out / "posts/p9/index.html").write_bytes(b"x")),
    "a kept file removed": lambda out: (out / "posts/p2/still.jpg").unlink(),
    "a kept file removed, the folder's mtime set back": lambda out: _behind_its_back(out / "posts/p2", (out / "posts/p2/still.jpg").unlink),
    "a kept folder removed": lambda out: shutil.rmtree(out / "posts/p4"),
    "a kept file renamed": lambda out: os.rename(out / "posts/p2/still.jpg", out / "posts/p2/still.png"),
    "a kept file edited in place": lambda out: (out / "posts/p0/index.html").write_bytes(b"edited"),
    "a kept file made a link to another": lambda out: (
        (out / "posts/p5/index.html").unlink(),
        (out / "posts/p5/index.html").symlink_to("../p0/index.html"),
    ),
    "a dangling link": lambda out: (out / "posts/p5/gone.html").symlink_to("nowhere"),
    "a dot-file": lambda out: (out / "posts/p1/.keep").write_bytes(b""),
    "a dot-folder with a file": lambda out: ((out / "posts/.cache").mkdir(), (out / "posts/.cache/x").write_bytes(b"x")),
    "a killed build's staging folder": lambda out: (
        (out / "posts/.tmp-build-dead~").mkdir(),
        (out / "posts/.tmp-build-dead~/x.html").write_bytes(b"x"),
    ),
    "a file where a kept folder was": lambda out: (shutil.rmtree(out / "posts/p3"), (out / "posts/p3").write_bytes(b"x")),
}


def _behind_its_back(folder: Path, change: object) -> None:
    """Change a folder's entries, then set its mtime back (as `touch -d` or a careless copy
    can): its ctime still moves, which no one can set back."""
    st = os.stat(folder)
    change()  # type: ignore[operator]
    os.utime(folder, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(folder).st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_folder_changed_since_the_last_build_is_listed_and_the_build_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mutation: str
) -> None:
    """Whatever changes in out/ after a build, the scan with the recorded stamps finds what a
    full listing finds, and the build leaves out/ as a build without stamps would have."""
    import review_press.output as output

    runs: dict[str, dict[str, bytes | None] | str] = {}
    for mode in ("stamps", "listing"):
        out, manifest = tmp_path / mode / "out", tmp_path / mode / "m.json"
        _later(monkeypatch)
        write_output(out, SITE, manifest)
        write_output(out, SITE, manifest)  # out/ itself is recorded too
        last = output._load_manifest(manifest)
        assert last.folders.keys() >= {"", "posts", "posts/p1"}
        _past_the_tick(out)  # `_later` vouched for stamps within the tick: a change now must show
        MUTATIONS[mutation](out)
        keep = {a.path for a in SITE}
        with_stamps, full = output._scan(out, keep, last), output._scan(out, keep)
        assert (with_stamps.files, with_stamps.links, with_stamps.prunable) == (full.files, full.links, full.prunable)
        if mode == "listing":
            manifest.write_text(manifest.read_text().replace('"folders"', '"unused"'))  # the same manifest, no stamps
        try:
            write_output(out, SITE, manifest)
            runs[mode] = _state(out)
        except PressError as exc:
            runs[mode] = str(exc).replace(str(tmp_path / mode), "")
    assert runs["stamps"] == runs["listing"]
    if isinstance(runs["stamps"], dict):
        assert {p: b for p, b in runs["stamps"].items() if b is not None and "/." not in p} == {a.path: a.render() for a in SITE}


@pytest.mark.parametrize("folders", ['"garbage"', "[1, 2]", '{"posts": "x", "": [1]}', '{"posts": [1, 2, 3, 4, 5]}'])
def test_garbage_folder_stamps_in_the_manifest_mean_listing(tmp_path: Path, folders: str) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, SITE, manifest)
    (out / "posts/p1/stray.html").write_bytes(b"x")
    text = manifest.read_text()
    manifest.write_text(text[: text.index('"folders"')] + f'"folders": {folders}, ' + text[text.index('"version"') :])
    assert write_output(out, SITE, manifest).removed == ("posts/p1/stray.html",)


@pytest.mark.parametrize("bad", ["", "posts/p1/", "posts//p1/index.html", "posts/./p1", "posts/p1/a\x00b", "/etc/passwd", "../x"])
def test_a_manifest_naming_a_file_no_build_writes_has_its_stamps_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    """The stamps vouch for the manifest's file names: one that is no out/ path (empty, a folder,
    a NUL) beside valid stamps once crashed every build (IndexError, ValueError); now the build
    lists every folder, finds the stray and writes a sound manifest."""
    import review_press.output as output

    out, manifest = tmp_path / "out", tmp_path / "m.json"
    _later(monkeypatch)
    write_output(out, SITE, manifest)
    write_output(out, SITE, manifest)
    data = json.loads(manifest.read_text())
    assert data["folders"]
    data["files"][bad] = ["k", 1, 1]
    manifest.write_text(json.dumps(data))
    assert output._load_manifest(manifest).folders == {}
    (out / "posts/p1/stray.html").write_bytes(b"x")
    assert write_output(out, SITE, manifest).removed == ("posts/p1/stray.html",)
    assert bad not in json.loads(manifest.read_text())["files"]
    assert write_output(out, SITE, manifest).removed == ()


def _whole_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders read as on Linux's vfat: times in whole seconds (2 s steps), the ctime the mtime
    (so `os.utime` sets both). This machine has no FAT file system to mount."""
    import review_press.output as output

    real_stat, real_lstat = output.os.stat, output.os.lstat

    class Stat:
        def __init__(self, st: os.stat_result) -> None:
            self._st = st
            self.st_mtime_ns = self.st_ctime_ns = st.st_mtime_ns // 2_000_000_000 * 2_000_000_000

        def __getattr__(self, name: str) -> object:
            return getattr(self._st, name)

    def fat(real: Callable[..., os.stat_result]) -> Callable[..., object]:
        def fat_stat(path: str, *args: object, **kwargs: object) -> object:
            st = real(path, *args, **kwargs)
            return Stat(st) if stat.S_ISDIR(st.st_mode) else st

        return fat_stat

    monkeypatch.setattr(output.os, "stat", fat(real_stat))
    monkeypatch.setattr(output.os, "lstat", fat(real_lstat))


def test_on_a_file_system_of_whole_seconds_no_folder_stamp_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the ctime is the mtime (FAT), a copy tool that sets a folder's mtime back restores
    its whole stamp: no stamp is recorded there, so a stray hidden that way is still pruned."""
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    _whole_seconds(monkeypatch)
    _later(monkeypatch, 5)
    write_output(out, SITE, manifest)
    old = 1_600_000_000 * 10**9
    os.utime(out / "posts/p1", ns=(old, old))
    write_output(out, SITE, manifest)
    assert json.loads(manifest.read_text())["folders"] == {}
    (out / "posts/p1/stray.html").write_bytes(b"x")
    os.utime(out / "posts/p1", ns=(old, old))
    assert write_output(out, SITE, manifest).removed == ("posts/p1/stray.html",)


def test_a_fifo_where_a_kept_file_was_is_replaced_without_waiting_for_a_writer(tmp_path: Path) -> None:
    """Reading out/'s old file to compare it must not block: a named pipe there waited forever."""
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, SITE, manifest)
    (out / "posts/p1/index.html").unlink()
    os.mkfifo(out / "posts/p1/index.html")

    def hung(signum: int, frame: object) -> None:
        raise AssertionError("the build waited on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)  # a guard against hanging the suite, not a timing: the build takes milliseconds
    try:
        assert write_output(out, SITE, manifest).written == ("posts/p1/index.html",)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert (out / "posts/p1/index.html").is_file() and (out / "posts/p1/index.html").read_bytes() == b"index.html 1"


@pytest.mark.parametrize("bad", ["posts/p1/index.html/x", "index.html/x", "feed.xml/a/b", "\ud800.html", "posts/p1/\udfff"])
def test_a_manifest_name_that_takes_a_file_for_a_folder_beside_stamps_is_survived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    """The stamped walk follows the manifest's folders: one that is a file now is taken as a file
    (it once listed it and crashed every build with NotADirectoryError); a name no file can have
    (a lone surrogate, valid in JSON) is passed over (os.lstat's UnicodeEncodeError was a traceback)."""
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    _later(monkeypatch)
    write_output(out, SITE, manifest)
    write_output(out, SITE, manifest)
    data = json.loads(manifest.read_text())
    data["files"][bad] = ["k", 1, 1]
    manifest.write_text(json.dumps(data))
    (out / "posts/p3/stray.html").write_bytes(b"x")
    assert write_output(out, SITE, manifest).removed == ("posts/p3/stray.html",)
    assert write_output(out, SITE, manifest).removed == ()


@pytest.mark.parametrize("entry", ["5", '{"0": 1}', "true", '["k"]', "null", '"k"'])
def test_a_manifest_entry_that_is_not_key_size_mtime_means_rendering_and_comparing_all(tmp_path: Path, entry: str) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, SITE, manifest)
    data = json.loads(manifest.read_text())
    data["files"]["index.html"] = json.loads(entry)
    manifest.write_text(json.dumps(data))
    (out / "index.html").write_bytes(b"tampered")
    report = write_output(out, SITE, manifest)
    assert report.rendered == len(SITE) and report.written == ("index.html",) and (out / "index.html").read_bytes() == b"home"


def test_a_manifest_nested_too_deep_for_json_means_rendering_and_comparing_all(tmp_path: Path) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, SITE, manifest)
    manifest.write_text("[" * 100_000)  # RecursionError, not ValueError, from json.loads
    report = write_output(out, SITE, manifest)
    assert report.rendered == len(SITE) and report.written == ()


def test_a_stray_chain_of_folders_deeper_than_the_recursion_limit_is_pruned(tmp_path: Path) -> None:
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, SITE, manifest)
    _chain(out)
    try:
        report = write_output(out, SITE, manifest)
        assert len(report.removed) == 1 and report.removed[0].endswith("a/a/stray.html") and not (out / "a").exists()
    finally:  # pytest's own clean-up of its folders recurses
        subprocess.run(["rm", "-rf", str(out / "a")], check=True)


def test_a_folder_whose_mtime_a_restore_set_to_a_whole_second_is_still_stamped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tar -x`, `rsync -t`, `cp -p` give folders whole-second mtimes; their ctime still vouches."""
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    _later(monkeypatch, 5)
    write_output(out, SITE, manifest)
    for i in range(6):
        os.utime(out / f"posts/p{i}", ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
    write_output(out, SITE, manifest)
    assert {f"posts/p{i}" for i in range(6)} <= json.loads(manifest.read_text())["folders"].keys()


@pytest.mark.parametrize("path", [".tmp-x~", "css/.tmp-cache~/a.css", ".tmp-~"])
def test_an_output_path_named_like_the_builds_temporaries_is_refused(path: str) -> None:
    """The prune removes `.tmp-*~` entries whole: a static file or folder named so would be
    published, then removed by the next build."""
    (error,) = check_paths([art(path, b"x"), art("index.html", b"i")])
    assert str(error).startswith(f"unsafe output path {path!r} from test") and ".tmp-*~" in str(error)


def test_comparing_with_a_folder_where_a_file_goes_leaks_no_descriptor(tmp_path: Path) -> None:
    import review_press.output as output

    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, [art("docs/a.txt", b"a")], manifest)
    before = len(os.listdir("/proc/self/fd"))
    for i in range(5):
        assert output._render_one(art("docs", b"now a file"), str(out), str(tmp_path / f"staging{i}")) == "staged"
    assert len(os.listdir("/proc/self/fd")) == before


def _chain(top: Path, depth: int = 1100) -> None:
    """A stray chain of `depth` folders `a/a/a/...` under `top` (deeper than Python's recursion
    limit, within PATH_MAX), with a file at the bottom. Remove it with `rm -rf`: pytest's own
    clean-up of its folders recurses."""
    top.mkdir(parents=True, exist_ok=True)
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            fd, parent = os.open("a", os.O_RDONLY, dir_fd=fd), fd
            os.close(parent)
        with open("stray.html", "wb", opener=lambda name, flags: os.open(name, flags, dir_fd=fd)) as f:
            f.write(b"x")
    finally:
        os.close(fd)


# --- a Ctrl-C, or a deep tree, while out/ is changed ------------------------------------------

SHAPES = {  # the last build's files, then this one's: an entry of out/ becomes the other kind
    "a folder becomes a file": (
        [art("index.html", b"i"), art("docs/a.txt", b"a"), art("docs/sub/b.txt", b"b"), art("z.html", b"z")],
        [art("index.html", b"i2"), art("docs", b"now a file"), art("z.html", b"z2")],
    ),
    "a file becomes a folder": (
        [art("index.html", b"i"), art("docs", b"a file"), art("z.html", b"z")],
        [art("index.html", b"i2"), art("docs/a.txt", b"a"), art("z.html", b"z2")],
    ),
    "a deep folder becomes a file": (
        [art("a/index.html", b"i"), art("a/b/docs/x.txt", b"x"), art("a/b/z.html", b"z")],
        [art("a/index.html", b"i2"), art("a/b/docs", b"D"), art("a/b/z.html", b"z2")],
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("moment", ["after the move aside", "after the move in", "after the backup folder is made"])
def test_a_ctrl_c_between_the_moves_leaves_out_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str, moment: str) -> None:
    """Python raises KeyboardInterrupt when the call it came in returns: a rename done, the
    bookkeeping not. Whatever was moved goes back, nothing named .tmp-* is left, every mtime holds
    (the entry moved aside was once lost with the backup folder, and the backup folder left)."""
    import review_press.output as output

    last, now = SHAPES[shape]
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, last, manifest)
    before = _files_and_folders(out)
    real_replace, real_mkdir = os.replace, os.mkdir

    def replace(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        if (moment == "after the move aside" and ".tmp-old-" in str(dst)) or (
            moment == "after the move in" and ".tmp-build-" in str(src) and Path(dst).name == "docs"
        ):
            raise KeyboardInterrupt

    def mkdir(path: str | Path, *args: object, **kwargs: object) -> None:
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]
        if moment == "after the backup folder is made" and Path(path).name.startswith(".tmp-old-"):
            raise KeyboardInterrupt

    monkeypatch.setattr(output.os, "replace", replace)
    monkeypatch.setattr(output.os, "mkdir", mkdir)
    with pytest.raises(KeyboardInterrupt):
        write_output(out, now, manifest)
    monkeypatch.undo()
    assert _files_and_folders(out) == before
    assert write_output(out, now, manifest).written  # and the next build finishes the change
    assert {p: b for p, (b, _) in _files_and_folders(out).items() if b != b"<folder>"} == {a.path: a.render() for a in now}


def _files_and_folders(out: Path) -> dict[str, tuple[bytes, int | None]]:
    """out/'s entries: each file's bytes and mtime, each folder (whose mtime moves as entries come and go)."""
    return {rel: (data, None if data == b"<folder>" else mtime) for rel, (data, mtime) in snapshot_with_mtimes(out).items()}


@pytest.mark.parametrize("where", ["docs", ".tmp-build-dead~"])
def test_a_chain_of_folders_deeper_than_the_recursion_limit_goes_whole(tmp_path: Path, where: str) -> None:
    """Python 3.11's os.walk and shutil.rmtree recurse: a deep chain in a folder where a file now
    goes, or in a killed build's staging folder, ended every build in RecursionError."""
    out, manifest = tmp_path / "out", tmp_path / "m.json"
    write_output(out, [art("index.html", b"i"), art("docs/a.txt", b"a")], manifest)
    _chain(out / where)
    now = [art("index.html", b"i"), art("docs", b"now a file")] if where == "docs" else [art("index.html", b"i"), art("docs/a.txt", b"a")]
    try:
        report = write_output(out, now, manifest)
        assert report.removed == (("docs",) if where == "docs" else (".tmp-build-dead~/",))
        assert sorted(p.name for p in out.iterdir()) == ["docs", "index.html"]
    finally:
        subprocess.run(["rm", "-rf", str(out)], check=True)


def test_a_folder_the_prune_cannot_list_is_the_one_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import review_press.output as output

    out = tmp_path / "out"
    for rel in ("b/c/stray", "b/d/x", "z/kept"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("x")
    real = os.scandir

    def scandir(path: str) -> object:
        if path.endswith("/b/c"):
            raise OSError(5, "Input/output error", path)
        return real(path)

    monkeypatch.setattr(output.os, "scandir", scandir)
    with pytest.raises(PressError) as caught:
        output._prune(out, {"z/kept"})
    assert "out/b/c: input/output error" in str(caught.value)
