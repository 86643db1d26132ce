"""The one writer: collisions refused, all-or-nothing rendering, atomic and minimal writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    (out / ".well-known").mkdir()
    (out / ".well-known/security.txt").write_bytes(b"mine")
    report = write_output(out, arts, manifest)
    assert report.rendered == 0 and report.written == () and report.removed == (".tmp-build-dead~/posts/x.html", "stray.html")
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
