"""Review 14: a failed move into out/ leaves the last good site exactly as it was.

The streamed build stages every file in one folder and renames them into place at the end; a
folder standing where a file now goes (static/docs/ became static/docs), or any rename that
fails half-way, must not leave out/ half old and half new (nor a staging folder behind): the
old folder is moved aside and put back on failure."""

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


def _docs_becomes_a_file(root: Path) -> None:
    (root / "posts/one.md").write_text(post_text("One, changed"))
    (root / "static/docs/a.txt").unlink()
    (root / "static/docs").rmdir()
    (root / "static/docs").write_text("now a file\n")


def test_a_folder_of_the_last_build_where_a_file_now_goes_is_replaced(tmp_path: Path) -> None:
    """static/docs/ became static/docs: the old out/docs/ goes (the prune would remove it) and the
    file takes its place; and back again. This used to stop every build until out/ was mended."""
    root = _site(tmp_path)
    _docs_becomes_a_file(root)
    report = build(root, NOW)[1]
    assert (root / "out/docs").read_text() == "now a file\n" and b"One, changed" in (root / "out/posts/one/index.html").read_bytes()
    assert "docs" in report.removed and "docs" in report.written
    (root / "static/docs").unlink()
    (root / "static/docs").mkdir()
    (root / "static/docs/b.txt").write_text("b\n")
    build(root, NOW)
    assert (root / "out/docs/b.txt").read_text() == "b\n"
    fresh = tmp_path / "fresh"
    os.rename(root / "out", fresh)
    build(root, NOW)  # the same out/ as a build from nothing
    assert snapshot(root / "out") == snapshot(fresh)


def test_a_folder_in_the_way_holding_a_dot_file_is_refused_before_anything_is_replaced(tmp_path: Path) -> None:
    """The build never removes a dot-file it did not write (.well-known, .git): a folder holding one
    where a file now goes is an error naming it, and out/ is left exactly as it was."""
    root = _site(tmp_path)
    (root / "out/docs/.keep").write_text("mine\n")
    before = snapshot_with_mtimes(root / "out")
    _docs_becomes_a_file(root)
    with pytest.raises(PressError) as caught:
        build(root, NOW)
    assert "out/docs is a folder where a file is needed, and holds out/docs/.keep" in str(caught.value)
    assert snapshot_with_mtimes(root / "out") == before  # no page replaced, no staging folder left
    (root / "out/docs/.keep").unlink()
    build(root, NOW)
    assert (root / "out/docs").read_text() == "now a file\n"


@pytest.mark.parametrize("failing_call", [1, 2, 3])
def test_a_failure_while_moving_a_folder_aside_puts_it_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: int) -> None:
    """The old folder in the way is moved aside (one rename), then the new file in (another): a
    failure at either, or at a later one, leaves out/ as it was, the old folder back in place."""
    root = _site(tmp_path)
    before = _files_with_mtimes(root / "out")
    _docs_becomes_a_file(root)
    real_replace, calls = os.replace, []

    def failing(src: str | Path, dst: str | Path) -> None:
        if Path(src).name == "docs" or Path(dst).name == "docs" or calls:
            calls.append(dst)
            if len(calls) == failing_call:
                raise OSError(errno.EROFS, "Read-only file system", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(output.os, "replace", failing)
    with pytest.raises(PressError):
        build(root, NOW)
    monkeypatch.setattr(output.os, "replace", real_replace)
    assert len(calls) >= failing_call
    assert _files_with_mtimes(root / "out") == before
    assert not [p for p in (root / "out").rglob("*") if p.name.startswith(".tmp-")]


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
