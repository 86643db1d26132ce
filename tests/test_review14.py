"""Review 14: a failed move into out/ leaves the last good site exactly as it was.

The streamed build stages every file in one folder and renames them into place at the end; a
folder standing where a file now goes (static/docs/ became static/docs), or any rename that
fails half-way, must not leave out/ half old and half new (nor a staging folder behind)."""

from __future__ import annotations

import datetime as dt
import errno
import os
from pathlib import Path

import pytest

from files import snapshot, snapshot_with_mtimes
from review_press import output
from review_press.build import BuildOptions, build
from review_press.errors import PressError
from sites import post_text, write_site

NOW = BuildOptions(now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))


def _site(tmp_path: Path) -> Path:
    root = write_site(tmp_path / "site", {"one.md": post_text("One"), "two.md": post_text("Two", date="2026-01-03")})
    (root / "static/docs").mkdir(parents=True)
    (root / "static/docs/a.txt").write_text("a\n")
    build(root, NOW)
    return root


def _files_with_mtimes(out: Path) -> dict[str, tuple[bytes, int]]:
    return {rel: data for rel, data in snapshot_with_mtimes(out).items() if data[0] != b"<folder>"}


def test_a_folder_where_a_file_now_goes_is_refused_before_anything_is_replaced(tmp_path: Path) -> None:
    root = _site(tmp_path)
    before = snapshot_with_mtimes(root / "out")
    (root / "posts/one.md").write_text(post_text("One, changed"))
    (root / "static/docs/a.txt").unlink()
    (root / "static/docs").rmdir()
    (root / "static/docs").write_text("now a file\n")
    with pytest.raises(PressError) as caught:
        build(root, NOW)
    assert "out/docs is a folder where a file is needed" in str(caught.value)
    assert snapshot_with_mtimes(root / "out") == before  # no page replaced, no staging folder left
    (root / "out/docs/a.txt").unlink()
    (root / "out/docs").rmdir()
    build(root, NOW)
    assert (root / "out/docs").read_text() == "now a file\n" and b"One, changed" in (root / "out/posts/one/index.html").read_bytes()


def test_a_rename_failing_half_way_puts_back_every_file_already_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _site(tmp_path)
    before = _files_with_mtimes(root / "out")
    (root / "posts/one.md").write_text(post_text("One, changed"))
    (root / "posts/three.md").write_text(post_text("Three", date="2026-01-04"))  # new files and folders too
    real_replace, calls = os.replace, []

    def failing(src: str | Path, dst: str | Path) -> None:
        calls.append(dst)
        if len(calls) == 4:  # a read-only folder, say: the first three are in place already
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(output.os, "replace", failing)
    with pytest.raises(PressError) as caught:
        build(root, NOW)
    monkeypatch.setattr(output.os, "replace", real_replace)
    assert "read-only" in str(caught.value).lower()
    assert _files_with_mtimes(root / "out") == before
    assert not [p for p in (root / "out").rglob("*") if p.name.startswith(".tmp-")]
    build(root, NOW)
    assert b"One, changed" in snapshot(root / "out")["posts/one/index.html"]


def test_follow_starts_no_campaign_after_a_sigterm_that_came_while_it_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """publish installs its own signal handlers: a SIGTERM that follow caught during the build
    must stop the round there, not after a whole campaign has gone out."""
    import signal

    from review_press import follow as follow_mod
    from review_press.delivery.run import StopRequest

    stop = StopRequest()
    published: list[Path] = []
    root = _site(tmp_path)
    real_build = follow_mod.build

    def build_then_signal(root: Path) -> object:  # the signal arrives mid-build
        built = real_build(root)
        stop.set(signal.SIGTERM)
        return built

    monkeypatch.setattr(follow_mod, "build", build_then_signal)
    monkeypatch.setattr(follow_mod, "publish", lambda root, options, **kw: published.append(root))
    assert follow_mod.follow(root, poll_seconds=0.1, stop=stop) == signal.SIGTERM
    assert published == []


def test_a_link_where_an_unchanged_folder_was_is_refused_not_pruned_away(tmp_path: Path) -> None:
    """out/posts/one -> a copy elsewhere: the pages in it are found unchanged through the link,
    and the prune used to remove the link, leaving a site without those pages (exit 0)."""
    root = _site(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (root / "out/posts/one").rename(elsewhere)
    (root / "out/posts/one").symlink_to(elsewhere)
    with pytest.raises(PressError) as caught:
        build(root, NOW)
    assert "out/posts/one is a link" in str(caught.value)
    assert (root / "out/posts/one").is_symlink() and (elsewhere / "index.html").is_file()
