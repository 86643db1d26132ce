"""The whole pipeline: determinism, a failed build keeps the last good site, check writes nothing."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from files import snapshot
from review_press.build import BuildOptions, build, check
from review_press.errors import PressError
from sites import post_text, write_site

NOW = BuildOptions(now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
REPO = Path(__file__).resolve().parents[1]


def sample_copy(dest: Path) -> Path:
    shutil.copy(REPO / "press.toml", dest / "press.toml")
    shutil.copytree(REPO / "posts", dest / "posts")
    return dest


def test_sample_site_builds(tmp_path: Path) -> None:
    _, report = build(sample_copy(tmp_path), NOW)
    out = tmp_path / "out"
    assert (out / "index.html").exists()
    assert (out / "posts/run-away-season-1-review/index.html").exists()
    for name in ("feed.xml", "atom.xml", "feed.json", "sitemap.xml", "robots.txt", "404.html", "archive/index.html", "tags/index.html"):
        assert (out / name).is_file(), name
    assert report.written and not report.removed


def test_two_builds_in_two_places_are_byte_identical(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    build(sample_copy(tmp_path / "a"), NOW)
    build(sample_copy(tmp_path / "b"), NOW)
    first, second = snapshot(tmp_path / "a/out"), snapshot(tmp_path / "b/out")
    assert first.keys() == second.keys()
    assert first == second


def test_rebuild_from_scratch_is_byte_identical(tmp_path: Path) -> None:
    root = sample_copy(tmp_path)
    build(root, NOW)
    first = snapshot(root / "out")
    shutil.rmtree(root / "out")
    shutil.rmtree(root / ".review-press")
    build(root, NOW)
    assert snapshot(root / "out") == first


def test_nothing_changed_renders_nothing(tmp_path: Path) -> None:
    root = sample_copy(tmp_path)
    build(root, NOW)
    _, report = build(root, NOW)
    assert report.rendered == 0 and report.written == () and report.removed == ()


def test_a_build_with_nothing_to_render_loads_no_parser_template_engine_or_image_library(tmp_path: Path) -> None:
    """Start-up is most of a nothing-changed rebuild: what only rendering needs (Markdown, YAML,
    Jinja, lxml, Pillow's images, the email package, feedgen, premailer; the thread pool that
    resizes images and logging, which only the CSS lint's cssutils needs) is imported by the
    render that needs it, so a build that renders nothing never loads it."""
    import subprocess
    import sys

    root = sample_copy(tmp_path)
    build(root, NOW)
    heavy = (
        "markdown_it",
        "yaml",
        "jinja2",
        "lxml.html",
        "PIL.Image",
        "email.policy",
        "feedgen",
        "premailer",
        "concurrent.futures",
        "logging",
    )
    code = (
        "import sys, datetime as dt; from pathlib import Path; from review_press.build import build, BuildOptions;"
        f"_, r = build(Path({str(root)!r}), BuildOptions(now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC)));"
        f"print(r.rendered, [m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "0 []"


def test_failed_build_leaves_last_good_site(tmp_path: Path) -> None:
    root = write_site(tmp_path, {"a.md": post_text("A"), "b.md": post_text("B", date="2026-01-03")})
    build(root, NOW)
    before = snapshot(root / "out")
    (root / "posts/b.md").write_text("---\ntitle: B\ndate: whenever\n---\n", "utf-8")
    (root / "posts/c.md").write_text(post_text("C"), "utf-8")
    with pytest.raises(PressError, match="b.md:3: cannot read date"):
        build(root, NOW)
    assert snapshot(root / "out") == before


def test_broken_template_fails_before_writing(tmp_path: Path) -> None:
    root = write_site(tmp_path, {"a.md": post_text("A")})
    build(root, NOW)
    before = snapshot(root / "out")
    (root / "templates").mkdir()
    (root / "templates/post.html").write_text("{% block x %}\n{{ broken( }}\n", "utf-8")
    (root / "posts/a.md").write_text(post_text("A changed"), "utf-8")
    with pytest.raises(PressError, match=r"post.html:2: template error"):
        build(root, NOW)
    assert snapshot(root / "out") == before


def test_site_template_overrides_one_file(tmp_path: Path) -> None:
    root = write_site(tmp_path, {"a.md": post_text("A")})
    (root / "templates").mkdir()
    (root / "templates/404.html").write_text("<!doctype html><title>gone</title><p>Custom 404 for {{ config.title }}</p>\n", "utf-8")
    build(root, NOW)
    assert "Custom 404 for Test Site" in (root / "out/404.html").read_text()
    assert "<html" in (root / "out/index.html").read_text()  # everything else from the default theme


def test_check_validates_without_writing(tmp_path: Path) -> None:
    root = write_site(tmp_path, {"a.md": post_text("A")})
    plan = check(root, NOW)
    assert plan.artifacts and not (root / "out").exists()
    (root / "posts/b.md").write_text("no front matter", "utf-8")
    with pytest.raises(PressError, match="b.md:1: missing front matter"):
        check(root, NOW)


def test_static_folder_copied_as_is(tmp_path: Path) -> None:
    root = write_site(tmp_path, {"a.md": post_text("A")})
    (root / "static/images").mkdir(parents=True)
    (root / "static/images/still.jpg").write_bytes(b"\xff\xd8jpeg")
    build(root, NOW)
    assert (root / "out/images/still.jpg").read_bytes() == b"\xff\xd8jpeg"
    assert (root / "out/assets/style.css").is_file()


def test_static_file_colliding_with_a_page_is_an_error(tmp_path: Path) -> None:
    root = write_site(tmp_path, {"a.md": post_text("A")})
    (root / "static").mkdir()
    (root / "static/index.html").write_text("mine", "utf-8")
    with pytest.raises(PressError, match="would both write out/index.html"):
        build(root, NOW)


def test_a_build_reads_bodies_back_from_the_cache_and_rebuilds_a_lost_one(tmp_path: Path) -> None:
    root = write_site(tmp_path, {"a.md": post_text("A", body="Intro.\n\nThe first body."), "b.md": post_text("B", body="Bee.")})
    build(root, NOW)
    page = root / "out/posts/a/index.html"
    assert "The first body." in page.read_text("utf-8")
    before = snapshot(root / "out")
    [pack] = [f for f in (root / ".review-press/cache/bodies").rglob("*") if f.is_file()]  # both bodies, in one pack
    pack.write_bytes(pack.read_bytes()[:-10])  # cut short: the second is parsed again, not a crash, and out/ is what it was
    _, report = build(root, NOW)
    assert report.written == () and snapshot(root / "out") == before
    for left in (root / ".review-press/cache/bodies").rglob("*"):
        left.unlink()  # lost: both parsed again
    _, report = build(root, NOW)
    assert report.written == () and snapshot(root / "out") == before
    (root / "posts/a.md").write_text(post_text("A", body="Intro.\n\nAn edited body."), "utf-8")
    _, report = build(root, NOW)
    assert "posts/a/index.html" in report.written
    assert "An edited body." in page.read_text("utf-8") and "The first body." not in page.read_text("utf-8")
