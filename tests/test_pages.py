"""The site's pages: real builds in tmp_path, read back as HTML and XML."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import lxml.etree
import lxml.html
import pytest

from files import snapshot
from review_press import pages
from review_press.build import BuildOptions, build
from review_press.config import parse_config
from review_press.content import Body, Post
from review_press.errors import PressError
from review_press.site import FEEDS, make_site
from review_press.theme import Theme
from sites import post_text

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
OPTS = BuildOptions(now=NOW)
SITEMAP_NS = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
FEED_TYPES = {media for _, _, media in FEEDS}
SiteMaker = Callable[..., Path]  # the `make_site` fixture of conftest.py


def five_posts() -> dict[str, str]:
    """Five posts over two years and three months, with overlapping tags."""
    return {
        "a.md": post_text("Alpha", "2025-11-03", "First.", tags="[crime, C++]"),
        "b.md": post_text("Bravo", "2025-12-10", "Second.", tags="[crime]"),
        "c.md": post_text("Charlie", "2026-01-05", "Third.", tags="[crime, C#]", updated="2026-02-01"),
        "d.md": post_text("Delta", "2026-01-20", "Fourth.", tags="[drama]"),
        "e.md": post_text("Echo", "2026-03-02", "Fifth.", tags="[Crime, drama]"),
    }


def html(root: Path, rel: str) -> lxml.html.HtmlElement:
    return lxml.html.fromstring((root / "out" / rel).read_bytes())


def links(doc: lxml.html.HtmlElement, selector: str) -> list[str]:
    return [a.get("href") for a in doc.cssselect(selector)]


def html_pages(root: Path) -> list[str]:
    out = root / "out"
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))


def url_of(rel: str, base: str = "https://example.org/") -> str:
    return base + rel.removesuffix("index.html")


# --- what gets written ------------------------------------------------------------------


def test_every_expected_page_exists(make_site: SiteMaker) -> None:
    root = make_site(five_posts(), "posts_per_page = 2\n")
    build(root, OPTS)
    expected = {
        "index.html",
        "page/2/index.html",
        "page/3/index.html",
        *(f"posts/{slug}/index.html" for slug in ("a", "b", "c", "d", "e")),
        "archive/index.html",
        "archive/2025/index.html",
        "archive/2026/index.html",
        "tags/index.html",
        "tags/crime/index.html",
        "tags/crime/page/2/index.html",
        "tags/drama/index.html",
        "tags/c-plus-plus/index.html",
        "tags/c-sharp/index.html",
        "404.html",
    }
    assert set(html_pages(root)) == expected
    for name in ("sitemap.xml", "robots.txt", "assets/style.css", "assets/highlight.css"):
        assert (root / "out" / name).is_file(), name


def test_every_page_has_lang_canonical_open_graph_and_feeds(make_site: SiteMaker) -> None:
    root = make_site(five_posts(), 'posts_per_page = 2\nlanguage = "en-GB"\ndescription = "Reviews."\n')
    build(root, OPTS)
    for rel in html_pages(root):
        doc = html(root, rel)
        assert doc.get("lang") == "en-GB", rel
        assert doc.cssselect("meta[charset]"), rel
        assert "width=device-width" in doc.cssselect("meta[name=viewport]")[0].get("content"), rel
        assert doc.findtext(".//title").strip(), rel
        assert doc.cssselect("meta[name=description]")[0].get("content").strip(), rel
        assert links(doc, "link[rel=stylesheet]")[0].startswith("/assets/style.css"), rel
        og = {m.get("property"): m.get("content") for m in doc.cssselect("meta[property^='og:']")}
        assert og["og:site_name"] == "Test Site" and og["og:title"] and og["og:description"], rel
        assert og["og:type"] == ("article" if rel.startswith("posts/") else "website"), rel
        feeds = {(a.get("type"), a.get("href")) for a in doc.cssselect("link[rel=alternate]")}
        assert {("application/rss+xml", "https://example.org/feed.xml"), ("application/atom+xml", "https://example.org/atom.xml")} <= feeds
        assert ("application/feed+json", "https://example.org/feed.json") in feeds, rel
        assert all(a.get("title") for a in doc.cssselect("link[rel=alternate]")), rel
        if rel == "404.html":
            assert doc.cssselect("meta[name=robots]")[0].get("content") == "noindex"
            continue
        assert links(doc, "link[rel=canonical]") == [url_of(rel)], rel
        assert og["og:url"] == url_of(rel), rel


def test_tag_pages_also_link_their_own_feeds(make_site: SiteMaker) -> None:
    root = make_site(five_posts())
    build(root, OPTS)
    doc = html(root, "tags/drama/index.html")
    feeds = {(a.get("type"), a.get("href")) for a in doc.cssselect("link[rel=alternate]")}
    for _, name, media in FEEDS:
        assert (media, f"https://example.org/tags/drama/{name}") in feeds
        assert (media, f"https://example.org/{name}") in feeds
    assert {a.get("type") for a in doc.cssselect("link[rel=alternate]")} == FEED_TYPES


def test_a_post_page_shows_its_metadata_body_and_neighbours(make_site: SiteMaker) -> None:
    body = "Intro.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('hi')\n```\n"
    posts = five_posts() | {
        "c.md": post_text("Charlie", "2026-01-05T10:30:00+01:00", body, tags="[crime, C#]", author="Cee", image="/img/c.jpg")
    }
    root = make_site(posts, '[author]\nname = "Site Author"\n')
    build(root, OPTS)
    doc = html(root, "posts/c/index.html")
    assert doc.cssselect("h1")[0].text_content() == "Charlie"
    assert doc.cssselect(".post-header time")[0].get("datetime") == "2026-01-05T10:30:00+01:00"
    assert "Cee" in doc.cssselect(".author")[0].text_content()
    assert links(doc, ".post-header .tags a") == ["/tags/crime/", "/tags/c-sharp/"]
    assert [a.text_content() for a in doc.cssselect(".post-header .tags a")] == ["crime", "C#"]
    assert doc.cssselect("meta[property='og:image']")[0].get("content") == "https://example.org/img/c.jpg"
    assert doc.cssselect(".prose .table-scroll > table"), "tables scroll in their own box"
    assert doc.cssselect(".prose .highlight"), "code is highlighted"
    assert links(doc, ".neighbours a.newer") == ["/posts/d/"]
    assert links(doc, ".neighbours a.older") == ["/posts/b/"]
    assert "Delta" in doc.cssselect(".neighbours a.newer")[0].text_content()
    # the newest and oldest posts have one neighbour each
    assert not html(root, "posts/e/index.html").cssselect(".neighbours a.newer")
    assert not html(root, "posts/a/index.html").cssselect(".neighbours a.older")
    # a post without an author of its own is by the site's author
    assert "Site Author" in html(root, "posts/d/index.html").cssselect(".author")[0].text_content()


def test_home_and_tag_pages_paginate_with_prev_and_next(make_site: SiteMaker) -> None:
    root = make_site(five_posts(), "posts_per_page = 2\n")
    build(root, OPTS)
    first, second, third = (html(root, p) for p in ("index.html", "page/2/index.html", "page/3/index.html"))
    assert links(first, ".card-title a") == ["/posts/e/", "/posts/d/"]
    assert links(second, ".card-title a") == ["/posts/c/", "/posts/b/"]
    assert links(third, ".card-title a") == ["/posts/a/"]
    assert links(first, ".pager a[rel=next]") == ["/page/2/"] and not first.cssselect(".pager a[rel=prev]")
    assert links(second, ".pager a[rel=prev]") == ["/"] and links(second, ".pager a[rel=next]") == ["/page/3/"]
    assert links(third, ".pager a[rel=prev]") == ["/page/2/"] and not third.cssselect(".pager a[rel=next]")
    assert links(second, "link[rel=prev]") == ["https://example.org/"]
    assert links(second, "link[rel=next]") == ["https://example.org/page/3/"]
    tag1, tag2 = html(root, "tags/crime/index.html"), html(root, "tags/crime/page/2/index.html")
    assert links(tag1, ".card-title a") == ["/posts/e/", "/posts/c/"]
    assert links(tag2, ".card-title a") == ["/posts/b/", "/posts/a/"]
    assert links(tag1, ".pager a[rel=next]") == ["/tags/crime/page/2/"]
    assert links(tag2, ".pager a[rel=prev]") == ["/tags/crime/"]
    assert links(tag2, "link[rel=canonical]") == ["https://example.org/tags/crime/page/2/"]


def test_cpp_and_csharp_get_distinct_tag_pages(make_site: SiteMaker) -> None:
    root = make_site(five_posts())
    build(root, OPTS)
    cpp, csharp = html(root, "tags/c-plus-plus/index.html"), html(root, "tags/c-sharp/index.html")
    assert cpp.cssselect("h1")[0].text_content().strip() == "C++"
    assert csharp.cssselect("h1")[0].text_content().strip() == "C#"
    assert links(cpp, ".card-title a") == ["/posts/a/"]
    assert links(csharp, ".card-title a") == ["/posts/c/"]
    index = html(root, "tags/index.html")
    counts = {a.get("href"): a.cssselect(".count")[0].text_content() for a in index.cssselect(".tag-cloud a")}
    assert counts == {"/tags/c-plus-plus/": "1", "/tags/c-sharp/": "1", "/tags/crime/": "4", "/tags/drama/": "2"}


def test_archive_groups_posts_by_year_and_month(make_site: SiteMaker) -> None:
    root = make_site(five_posts())
    build(root, OPTS)
    doc = html(root, "archive/index.html")
    years = [
        (s.cssselect("h2")[0].text_content(), [m.cssselect("h3")[0].text_content() for m in s.cssselect(".month")])
        for s in doc.cssselect(".year")
    ]
    assert years == [("2026", ["March", "January"]), ("2025", ["December", "November"])]
    january = doc.cssselect("#m-2026-01")[0].getparent()
    assert links(january, "a") == ["/posts/d/", "/posts/c/"]
    year = html(root, "archive/2025/index.html")
    assert links(year, ".post-list a") == ["/posts/b/", "/posts/a/"]
    assert links(year, ".pager a[rel=prev]") == ["/archive/2026/"]
    assert links(html(root, "archive/2026/index.html"), ".pager a[rel=next]") == ["/archive/2025/"]


def test_sitemap_lists_every_page_with_lastmod_from_posts(make_site: SiteMaker) -> None:
    root = make_site(five_posts(), "posts_per_page = 2\n")
    build(root, OPTS)
    tree = lxml.etree.parse(str(root / "out" / "sitemap.xml"))
    entries = {
        u.findtext("s:loc", namespaces=SITEMAP_NS): u.findtext("s:lastmod", namespaces=SITEMAP_NS)
        for u in tree.findall("s:url", SITEMAP_NS)
    }
    assert set(entries) == {url_of(rel) for rel in html_pages(root) if rel != "404.html"}
    assert entries["https://example.org/posts/c/"] == "2026-02-01T00:00:00+00:00"  # `updated`, not `date`
    assert entries["https://example.org/posts/a/"] == "2025-11-03T00:00:00+00:00"
    assert entries["https://example.org/"] == "2026-03-02T00:00:00+00:00"
    assert entries["https://example.org/page/3/"] == "2025-11-03T00:00:00+00:00"
    assert entries["https://example.org/archive/2025/"] == "2025-12-10T00:00:00+00:00"
    robots = (root / "out" / "robots.txt").read_text()
    assert "Sitemap: https://example.org/sitemap.xml" in robots.splitlines()


def test_drafts_and_future_posts_are_left_out_unless_asked_for(make_site: SiteMaker) -> None:
    posts = five_posts() | {
        "draft.md": post_text("Draft", "2026-01-02", "Soon.", draft="true", tags="[secret]"),
        "future.md": post_text("Future", "2027-01-01", "Later."),
    }
    root = make_site(posts)
    build(root, OPTS)
    out = root / "out"
    assert not (out / "posts/draft").exists() and not (out / "posts/future").exists()
    assert not (out / "tags/secret").exists() and not (out / "archive/2027").exists()
    assert "/posts/draft/" not in (out / "sitemap.xml").read_text()
    build(root, BuildOptions(now=NOW, drafts=True, future=True))
    assert (out / "posts/draft/index.html").is_file() and (out / "posts/future/index.html").is_file()
    assert (out / "tags/secret/index.html").is_file() and (out / "archive/2027/index.html").is_file()
    assert links(html(root, "index.html"), ".card-title a")[0] == "/posts/future/"
    build(root, OPTS)
    assert not (out / "posts/draft").exists(), "a later build without drafts removes them again"


def test_subscribe_form_appears_only_with_a_web_url(make_site: SiteMaker) -> None:
    root = make_site(five_posts(), '[web]\nurl = "https://example.org/newsletter/"\n')
    build(root, OPTS)
    form = html(root, "posts/a/index.html").cssselect("form.subscribe-form")[0]
    assert form.get("method") == "post" and form.get("action") == "https://example.org/newsletter/subscribe"
    assert form.cssselect("input[name=email]")[0].get("type") == "email"
    assert form.cssselect("input[name=name]")
    honeypot = form.cssselect("input[name=website]")[0]
    assert honeypot.get("tabindex") == "-1" and honeypot.get("autocomplete") == "off"
    assert form.cssselect("button[type=submit]")
    plain = make_site(five_posts(), name="plain")
    build(plain, OPTS)
    assert not html(plain, "posts/a/index.html").cssselect("form")


def test_a_base_url_with_a_path_prefixes_every_link(make_site: SiteMaker) -> None:
    root = make_site(five_posts(), base_url="https://example.org/blog/")
    build(root, OPTS)
    doc = html(root, "posts/c/index.html")
    assert links(doc, "link[rel=canonical]") == ["https://example.org/blog/posts/c/"]
    assert links(doc, ".brand") == ["/blog/"]
    assert links(doc, ".post-header .tags a")[0] == "/blog/tags/crime/"
    assert links(doc, "link[rel=stylesheet]")[0].startswith("/blog/assets/style.css?v=")
    feeds = links(doc, "link[rel=alternate]")
    assert "https://example.org/blog/feed.xml" in feeds


def test_every_internal_link_and_stylesheet_resolves(make_site: SiteMaker) -> None:
    root = make_site(five_posts(), "posts_per_page = 2\n", base_url="https://example.org/blog/")
    build(root, OPTS)
    out = root / "out"
    checked = 0
    for rel in html_pages(root):
        doc = html(root, rel)
        for element in doc.cssselect("a[href], link[href], img[src]"):
            url = urlsplit(element.get("href") or element.get("src"))
            if url.netloc and url.netloc != "example.org":
                continue
            if not url.path:
                assert doc.get_element_by_id(url.fragment, None) is not None, f"{rel}: no #{url.fragment}"
                continue
            assert url.path.startswith("/blog/"), f"{rel}: {url.path} is outside the site"
            target = out / url.path.removeprefix("/blog/")
            assert (target / "index.html" if url.path.endswith("/") else target).is_file(), f"{rel} links to missing {url.path}"
            checked += 1
    assert checked > 100


def test_an_empty_site_still_has_its_pages(make_site: SiteMaker) -> None:
    root = make_site({})
    build(root, OPTS)
    assert set(html_pages(root)) == {"index.html", "archive/index.html", "tags/index.html", "404.html"}
    assert html(root, "index.html").cssselect(".empty")


# --- only what changed is rendered --------------------------------------------------------


def test_a_rebuild_with_nothing_changed_renders_nothing(make_site: SiteMaker) -> None:
    root = make_site(five_posts(), "posts_per_page = 2\n")
    _, first = build(root, OPTS)
    assert first.rendered > 0
    _, again = build(root, OPTS)
    assert again.rendered == 0 and again.written == ()


def test_editing_one_post_rerenders_only_the_pages_that_show_it(make_site: SiteMaker) -> None:
    root = make_site(five_posts(), "posts_per_page = 2\n")
    build(root, OPTS)
    out = root / "out"
    untouched = out / "posts/a/index.html"
    mtime = untouched.stat().st_mtime_ns
    time.sleep(0.01)
    (root / "posts/d.md").write_text(post_text("Delta", "2026-01-20", "Fourth, rewritten.", tags="[drama]"), "utf-8")
    _, report = build(root, OPTS)
    written_pages = {p for p in report.written if p.endswith(".html")}
    assert written_pages == {"posts/d/index.html", "index.html", "tags/drama/index.html"}
    assert "rewritten" in (out / "posts/d/index.html").read_text()
    assert untouched.stat().st_mtime_ns == mtime


def test_a_new_post_updates_the_count_on_every_page_of_its_tag(make_site: SiteMaker) -> None:
    root = make_site(five_posts(), "posts_per_page = 3\n")
    build(root, OPTS)
    (root / "posts/f.md").write_text(post_text("Foxtrot", "2024-01-01", "Oldest.", tags="[crime]"), "utf-8")
    _, report = build(root, OPTS)
    # page 1 of the tag shows the same three posts as before, but a new total
    assert {"tags/crime/index.html", "tags/crime/page/2/index.html"} <= set(report.written)
    assert "5 posts" in (root / "out/tags/crime/index.html").read_text()


def test_renaming_a_post_rerenders_its_neighbours_and_the_archive(make_site: SiteMaker) -> None:
    root = make_site(five_posts())
    build(root, OPTS)
    (root / "posts/c.md").write_text(
        post_text("Charlie Renamed", "2026-01-05", "Third.", tags="[crime, C#]", updated="2026-02-01"), "utf-8"
    )
    _, report = build(root, OPTS)
    written = set(report.written)
    assert {"posts/b/index.html", "posts/d/index.html", "archive/index.html", "archive/2026/index.html"} <= written
    assert "posts/a/index.html" not in written and "archive/2025/index.html" not in written
    assert "Charlie Renamed" in (root / "out/posts/d/index.html").read_text()


def test_incremental_builds_match_a_fresh_build_after_each_kind_of_edit(make_site: SiteMaker, tmp_path: Path) -> None:
    root = make_site(five_posts(), "posts_per_page = 2\n")
    build(root, OPTS)
    edits = [
        ("c.md", post_text("Charlie, retitled", "2026-01-05", "Third.", tags="[crime, C#]")),
        ("b.md", post_text("Bravo", "2026-04-01", "Moved to a new year-month.", tags="[drama, new tag]")),
        ("f.md", post_text("Foxtrot", "2024-05-05", "A new old post.", tags="[Crime]")),
        ("a.md", None),
        ("d.md", post_text("Delta", "2026-01-20", "Fourth.", tags="[C++]", image="pic.jpg")),
    ]
    for name, text in edits:
        if text is None:
            (root / "posts" / name).unlink()
        else:
            (root / "posts" / name).write_text(text, "utf-8")
        build(root, OPTS)
        fresh = tmp_path / f"fresh-{name}"
        shutil.copytree(root, fresh, ignore=shutil.ignore_patterns("out", ".review-press"))
        build(fresh, OPTS)
        assert snapshot(root / "out") == snapshot(fresh / "out"), f"after editing {name}"


def test_two_builds_are_byte_identical(make_site: SiteMaker) -> None:
    first, second = make_site(five_posts(), name="one"), make_site(five_posts(), name="two")
    build(first, OPTS)
    build(second, OPTS)
    for rel in html_pages(first):
        assert (first / "out" / rel).read_bytes() == (second / "out" / rel).read_bytes(), rel
    assert (first / "out/sitemap.xml").read_bytes() == (second / "out/sitemap.xml").read_bytes()


def test_planning_five_thousand_posts_renders_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config('title = "Big"\nbase_url = "https://example.org/"\n', tmp_path)
    start = dt.datetime(2010, 1, 1, tzinfo=dt.UTC)
    posts = tuple(
        Post(
            source=tmp_path / f"p{i}.md",
            slug=f"p{i}",
            title=f"Post {i}",
            date=start + dt.timedelta(hours=17 * i),
            body=Body.of("words " * 300, "<p>words</p>"),
            summary_html="<p>words</p>",
            summary_text="words",
            digest=f"{i:016x}",
            tags=(f"tag{i % 40}", f"series{i % 7}"),
        )
        for i in range(5000)
    )
    site = make_site(config, posts, now=NOW)
    theme = Theme.for_site(tmp_path / "templates", site=site, config=config)
    rendered: list[str] = []  # planning is cheap because it renders no page: it only computes keys
    monkeypatch.setattr(pages._Context, "render", lambda self, template, *a, **k: rendered.append(template) or b"")
    arts = pages.plan_pages(site, theme, "base")
    assert len(arts) > 5000 + 500
    assert rendered == [], f"planning rendered {len(rendered)} pages"
    again = pages.plan_pages(site, theme, "base")
    assert [a.key for a in arts] == [a.key for a in again]


# --- a broken theme, and the small helpers ------------------------------------------------


def test_a_broken_site_template_is_a_build_error_naming_it(make_site: SiteMaker) -> None:
    root = make_site(five_posts())
    (root / "templates").mkdir()
    (root / "templates/post.html").write_text('{% extends "base.html" %}\n{% block content %}{{ post.title }\n{% endblock %}\n')
    with pytest.raises(PressError) as caught:
        build(root, OPTS)
    assert "post.html" in str(caught.value) and "template error" in str(caught.value)
    assert not (root / "out").exists(), "nothing is written when a page cannot be rendered"


def test_truncate_cuts_at_a_word_and_marks_the_cut() -> None:
    assert pages.truncate("short text") == "short text"
    cut = pages.truncate("one two three four five", limit=12)
    assert cut == "one two…" and len(cut) <= 12


def test_wrap_tables_wraps_each_table_once() -> None:
    html_text = '<table class="x"><tr><td>1</td></tr></table><p>x</p><table><tr><td>2</td></tr></table>'
    wrapped = pages.wrap_tables(html_text)
    assert wrapped.count('<div class="table-scroll"') == 2
    assert wrapped.count("</table></div>") == 2
    assert '<table class="x">' in wrapped


def test_out_path_and_href() -> None:
    assert pages.out_path("") == "index.html"
    assert pages.out_path("posts/x/") == "posts/x/index.html"
    assert pages.out_path("404.html") == "404.html"
    assert pages.href_for("https://example.org/blog/")("tags/x/") == "/blog/tags/x/"
    assert pages.href_for("https://example.org/")("") == "/"


def test_highlight_css_has_light_and_dark_styles() -> None:
    css = pages.highlight_css()
    assert ".highlight" in css and "@media (prefers-color-scheme: dark)" in css
