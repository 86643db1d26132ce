"""Posts: front matter (YAML and TOML), dates, slugs, summaries, and every kind of bad input."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from review_press.config import load_config
from review_press.content import load_posts, slug_from_filename
from review_press.errors import PressError
from review_press.site import make_site, tag_slug
from sites import BASE_TOML, post_text, write_site

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def load(tmp_path: Path, posts: dict[str, str | bytes], toml: str = BASE_TOML):
    return load_posts(load_config(write_site(tmp_path, posts, toml)))


def problems(tmp_path: Path, posts: dict[str, str | bytes], toml: str = BASE_TOML) -> list[str]:
    with pytest.raises(PressError) as info:
        load(tmp_path, posts, toml)
    return [str(e) for e in getattr(info.value, "errors", (info.value,))]


def test_yaml_post(tmp_path: Path) -> None:
    text = post_text("Hi", "2026-01-02 10:30", "First para with [a link](/x/).\n\nSecond.", tags="[Crime, TV]", rating="4.5")
    [post] = load(tmp_path, {"2026-01-02-hello.md": text})
    assert post.slug == "hello"
    assert post.title == "Hi"
    assert post.date == dt.datetime(2026, 1, 2, 10, 30, tzinfo=load_config(tmp_path).tz)
    assert post.tags == ("Crime", "TV")
    assert post.meta == {"rating": 4.5}
    assert '<a href="/x/">a link</a>' in post.summary_html and "Second" not in post.summary_html
    assert post.summary_text == "First para with a link."  # inline tags join the words they wrap
    assert post.body_line == 7  # the line after the closing ---


def test_toml_front_matter_as_hugo_writes_it(tmp_path: Path) -> None:
    text = '+++\ntitle = "Hugo post"\ndate = 2026-02-03T04:05:06+01:00\ntags = ["a"]\ndraft = true\n+++\n\nBody\n'
    [post] = load(tmp_path, {"hugo.md": text})
    assert (post.title, post.draft, post.tags) == ("Hugo post", True, ("a",))
    assert post.date.utcoffset() == dt.timedelta(hours=1)


def test_naive_date_is_in_site_timezone(tmp_path: Path) -> None:
    [post] = load(tmp_path, {"a.md": post_text(date="2026-07-01T12:00:00")})
    assert post.date.utcoffset() == dt.timedelta(hours=1)  # Europe/London in summer


def test_more_marker_sets_summary(tmp_path: Path) -> None:
    body = "One.\n\nTwo.\n\n<!-- more -->\n\nThree."
    [post] = load(tmp_path, {"a.md": post_text(body=body)})
    assert "One." in post.summary_html and "Two." in post.summary_html and "Three" not in post.summary_html


def test_markdown_extensions(tmp_path: Path) -> None:
    body = "| a | b |\n|---|---|\n| 1 | 2 |\n\n~~gone~~ note[^1]\n\n[^1]: A footnote.\n\n```python\ndef f():\n    return 1\n```\n"
    [post] = load(tmp_path, {"a.md": post_text(body=body)})
    assert "<table>" in post.html
    assert "<s>gone</s>" in post.html
    assert 'class="footnotes"' in post.html
    assert 'class="highlight"' in post.html and '<span class="k">def</span>' in post.html


def test_drafts_and_future_left_out_unless_asked(tmp_path: Path) -> None:
    posts = load(tmp_path, {"a.md": post_text("A", draft="true"), "b.md": post_text("B", date="2030-01-01"), "c.md": post_text("C")})
    config = load_config(tmp_path)
    assert [p.title for p in make_site(config, posts, NOW).posts] == ["C"]
    assert {p.title for p in make_site(config, posts, NOW, drafts=True, future=True).posts} == {"A", "B", "C"}


def test_distinct_tags_keep_distinct_slugs() -> None:
    assert len({tag_slug("C++"), tag_slug("C#"), tag_slug("C")}) == 3
    assert tag_slug("TV review") == "tv-review"


def test_tags_differing_in_case_are_one_tag(tmp_path: Path) -> None:
    posts = load(tmp_path, {"a.md": post_text("A", tags="[Crime]"), "b.md": post_text("B", tags="[crime]")})
    site = make_site(load_config(tmp_path), posts, NOW)
    assert [(t.name, len(t.posts)) for t in site.tags] == [("Crime", 2)]


def test_slug_from_filename() -> None:
    assert slug_from_filename(Path("2026-01-05-run-away.md")) == "run-away"
    assert slug_from_filename(Path("post-3.md")) == "post-3"


# --- bad input: each names the file and line, with a hint -------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Just text, no front matter.\n", "a.md:1: missing front matter"),
        ("---\ntitle: x\ndate: 2026-01-01\n", "a.md:1: front matter is not closed"),
        ("---\ntitle: [unclosed\ndate: 2026-01-01\n---\n", "a.md:3: front matter is not valid YAML"),
        ("+++\ntitle = \ndate = 2026-01-01\n+++\n", "a.md:2: front matter is not valid TOML"),
        ("---\n- just\n- a list\n---\n", "a.md:2: front matter must be a set of key: value lines"),
        ("---\ndate: 2026-01-01\n---\nBody\n", "a.md:1: missing 'title'"),
        ("---\ntitle: T\n---\nBody\n", "a.md:1: missing 'date'"),
        ("---\ntitle: T\ndate: next tuesday\n---\n", "a.md:3: cannot read date 'next tuesday'"),
        ("---\ntitle: T\ndate: 2026-13-45\n---\n", "a.md:3: cannot read date"),
        ("---\ntitle: T\ndate: 2026-01-01\ntags: crime\n---\n", "a.md:4: 'tags' must be a list, not str"),
        ("---\ntitle: T\ndate: 2026-01-01\ntags: [ok, '']\n---\n", "a.md:4: every tag must be non-empty text"),
        ("---\ntitle: T\ndate: 2026-01-01\nslug: a/b\n---\n", "a.md:4: slug 'a/b' must not contain '/'"),
        ("---\ntitle: T\ndate: 2026-01-01\nslug: ../up\n---\n", "a.md:4: slug '../up' must not contain"),
        ("---\ntitle: T\ndate: 2026-01-01\ndraft: maybe\n---\n", "a.md:4: 'draft' must be true or false"),
        ("---\ntitle: [1, 2]\ndate: 2026-01-01\n---\n", "a.md:2: 'title' must be text, not list"),
        ("", "a.md:1: file is empty"),
        ("\n  \n", "a.md:1: file is empty"),
    ],
)
def test_bad_post(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, {"a.md": text})
    assert any(expected in m for m in found), found
    assert all("(" in m and m.endswith(")") for m in found if "missing" in m or "cannot" in m)  # each carries a hint


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    [message] = problems(tmp_path, {"a.md": b"---\ntitle: caf\xe9\ndate: 2026-01-01\n---\n"})
    assert "a.md:2: not UTF-8 text (byte 0xe9)" in message


def test_file_over_size_limit(tmp_path: Path) -> None:
    toml = BASE_TOML.replace("feed_length = 3", "feed_length = 3\nmax_post_bytes = 1000")
    [message] = problems(tmp_path, {"big.md": post_text(body="x" * 2000)}, toml)
    assert "big.md:1: file is 2," in message and "over the limit of 1,000" in message


def test_duplicate_slug_names_both_files(tmp_path: Path) -> None:
    [message] = problems(tmp_path, {"2026-01-01-same.md": post_text("A"), "same.md": post_text("B")})
    assert "same.md:1: slug 'same' is also used by" in message and "2026-01-01-same.md" in message


def test_all_problems_in_one_run(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.md": "", "b.md": "---\ntitle: T\n---\n", "c.md": post_text(tags="x"), "ok.md": post_text()})
    assert len(found) == 3
    assert [m.split(":")[0].rsplit("/", 1)[-1] for m in found] == ["a.md", "b.md", "c.md"]


def test_crlf_and_bom_are_fine(tmp_path: Path) -> None:
    raw = ("\ufeff" + post_text("Windows")).replace("\n", "\r\n").encode()
    [post] = load(tmp_path, {"w.md": raw})
    assert post.title == "Windows"


def test_cache_is_used_and_invalidated(tmp_path: Path) -> None:
    first = load(tmp_path, {"a.md": post_text("One")})
    config = load_config(tmp_path)
    again = load_posts(config)
    assert again[0] is not first[0] and again[0].html == first[0].html  # from the pickle cache
    (tmp_path / "posts" / "a.md").write_text(post_text("Two"), "utf-8")
    assert load_posts(config)[0].title == "Two"


def test_the_cache_keeps_bodies_in_files_and_reads_back_an_edit(tmp_path: Path) -> None:
    [first] = load(tmp_path, {"a.md": post_text("One", body="A summary.\n\nThe first body.")})
    config = load_config(tmp_path)
    [cached] = load_posts(config)
    assert cached.body.file is not None and cached.body.markdown == cached.body.html == ""  # slim: the text is in its file
    assert cached.html == first.html and "The first body." in cached.html and cached.body_markdown.strip().endswith("The first body.")
    assert b"The first body." not in (tmp_path / ".review-press/cache/posts.pickle").read_bytes()  # only the summary is
    (tmp_path / "posts" / "a.md").write_text(post_text("One", body="An edited body."), "utf-8")
    [edited] = load_posts(config)
    assert "An edited body." in edited.html and "first" not in edited.html
    assert [f.name for f in (tmp_path / ".review-press/cache/bodies").rglob("*") if f.is_file()] == [Path(edited.body.file).name]


def test_packs_of_bodies_do_not_pile_up_as_posts_are_edited(tmp_path: Path) -> None:
    """Bodies go to one pack per build and parsing process; a pack goes when none of its bodies is
    in use, so editing one post again and again leaves two packs (the first, still holding the
    other posts, and the newest), not one per edit."""
    load(tmp_path, {f"{name}.md": post_text(name.upper()) for name in "abc"})
    config = load_config(tmp_path)
    packs = tmp_path / ".review-press/cache/bodies"
    assert len(list(packs.iterdir())) == 1
    for i in range(5):
        (tmp_path / "posts" / "a.md").write_text(post_text("A", body=f"Edit {i}."), "utf-8")
        posts = {p.slug: p for p in load_posts(config)}
        assert len(list(packs.iterdir())) == 2
        assert f"Edit {i}." in posts["a"].html and posts["b"].title == "B"
    (tmp_path / "posts" / "b.md").unlink()
    (tmp_path / "posts" / "c.md").unlink()
    [a] = load_posts(config)
    assert [f.name for f in packs.iterdir()] == [Path(a.body.file or "").name] and "Edit 4." in a.html


def test_a_pack_left_by_a_killed_build_is_swept_but_not_one_being_written(tmp_path: Path) -> None:
    """A build killed while parsing leaves a pack no cache names: the next build that changes
    something removes it once it is an hour old; a younger one may be another build's, running
    now, and stays. Empty folders (the one-file-per-body cache before packs) go too."""
    import os

    load(tmp_path, {"a.md": post_text("A"), "b.md": post_text("B")})
    config = load_config(tmp_path)
    packs = tmp_path / ".review-press/cache/bodies"
    [kept] = list(packs.iterdir())
    old, young = packs / "1-dead-1.pack", packs / "2-running-2.pack"
    old.write_bytes(b"half a body")
    young.write_bytes(b"being written")
    two_hours_ago = (os.stat(old).st_mtime_ns - 7200 * 10**9) / 1e9
    os.utime(old, (two_hours_ago, two_hours_ago))
    (packs / "ab").mkdir()
    load_posts(config)  # nothing changed: nothing swept (a nothing-changed build does no cleaning)
    assert old.exists()
    (tmp_path / "posts" / "b.md").write_text(post_text("B", body="Edited."), "utf-8")
    load_posts(config)
    left = {f.name for f in packs.iterdir()}
    assert kept.name in left and young.name in left and old.name not in left and "ab" not in left


@pytest.mark.parametrize("damage", ["delete", "truncate", "garble"])
def test_a_body_file_deleted_or_damaged_is_rebuilt_not_a_crash(tmp_path: Path, damage: str) -> None:
    [first] = load(tmp_path, {"a.md": post_text("One", body="The body.")})
    config = load_config(tmp_path)
    assert first.body.file is not None
    file = Path(first.body.file)
    if damage == "delete":
        file.unlink()
    elif damage == "truncate":
        file.write_bytes(file.read_bytes()[:-5])
    else:  # same size, other bytes: found when read (an error naming build again), then parsed again
        file.write_bytes(file.read_bytes().replace(b"body", b"bodY"))
        with pytest.raises(PressError, match=r"a\.md:1: cannot read the cached text of this post .*: it is damaged \(build again\)"):
            first.html  # noqa: B018
    [again] = load_posts(config)
    assert "The body." in again.html and again.body_markdown.strip() == "The body."


def test_a_post_file_unchanged_since_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import time

    import review_press.content as content

    config = load_config(write_site(tmp_path, {"a.md": post_text("One"), "b.md": post_text("Bee")}))
    later = time.time_ns() + 10 * 10**9
    monkeypatch.setattr(content.time, "time_ns", lambda: later)  # as if the files were written long before the build
    load_posts(config)
    read: list[str] = []
    real = content.sitefiles.read_inside
    monkeypatch.setattr(content.sitefiles, "read_inside", lambda path, *a: read.append(path.name) or real(path, *a))
    assert [p.title for p in load_posts(config)] == ["One", "Bee"] and read == []
    mtime = (tmp_path / "posts" / "a.md").stat().st_mtime_ns
    (tmp_path / "posts" / "a.md").write_text(post_text("Two"), "utf-8")  # the same size and mtime, but a new ctime
    os.utime(tmp_path / "posts" / "a.md", ns=(mtime, mtime))
    assert [p.title for p in load_posts(config)] == ["Two", "Bee"] and read == ["a.md"]


def test_a_post_file_changed_within_a_tick_of_the_build_is_read_again_next_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import review_press.content as content

    config = load_config(write_site(tmp_path, {"a.md": post_text("One")}))
    changed = (tmp_path / "posts" / "a.md").stat().st_ctime_ns
    read: list[str] = []
    real = content.sitefiles.read_inside
    monkeypatch.setattr(content.sitefiles, "read_inside", lambda path, *a: read.append(path.name) or real(path, *a))

    def build_at(seconds_after: float) -> None:
        monkeypatch.setattr(content.time, "time_ns", lambda: changed + int(seconds_after * 10**9))
        load_posts(config)

    build_at(0.05)  # within a tick of the change: its stat may not tell a write later in that tick
    build_at(0.05)
    assert read == ["a.md", "a.md"]
    build_at(0.5)  # a tick after: the stamp is kept, and the next build reads nothing
    build_at(0.5)
    assert read == ["a.md", "a.md", "a.md"]
    whole = changed // 10**9 * 10**9  # times in whole seconds: a file system with a 2 s tick (FAT)
    os.utime(tmp_path / "posts" / "a.md", ns=(whole, whole))
    changed = (tmp_path / "posts" / "a.md").stat().st_ctime_ns
    build_at(1)
    build_at(1)
    assert read[3:] == ["a.md", "a.md"]
    build_at(3)
    build_at(3)
    assert read[3:] == ["a.md", "a.md", "a.md"]


def test_errors_survive_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import review_press.content as content

    monkeypatch.setattr(content, "PARALLEL_FROM", 2)
    posts = {f"p{i}.md": post_text(f"P{i}") for i in range(6)}
    posts["bad.md"] = "---\ntitle: T\ndate: 2026-01-01\ntags: nope\n---\n"
    found = problems(tmp_path, posts)
    assert len(found) == 1 and "bad.md:4: 'tags' must be a list" in found[0] and "(write  tags: [crime, tv])" in found[0]
    (tmp_path / "posts/bad.md").unlink()
    assert len(load_posts(load_config(tmp_path))) == 6
