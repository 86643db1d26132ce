"""What readers expect: the email's hero image, "View in browser" and dark code blocks;
dir="auto" on text blocks in page, feed and email; the RSS author without an email; local
images in email previews; heading levels, a favicon and schema.org JSON-LD on pages.

Real sites are built in tmp_path and read back with real parsers (html5lib, feedparser);
what a reader sees is checked in headless Chromium (tests/chromium.py).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import feedparser
import html5lib
import pytest
from lxml import etree
from typer.testing import CliRunner

from chromium import CHROMIUM, CHROMIUM_ARGS
from email_sites import HERO, REPO, hero_jpeg
from review_press import cli
from review_press.build import BuildOptions, build
from review_press.config import Config, load_config
from review_press.content import Post, load_posts
from review_press.edition import Edition, lint, make_edition
from review_press.errors import PressError
from review_press.serve import LiveServer
from review_press.theme import Theme
from sites import post_text, serve_directory, write_site

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
OPTS = BuildOptions(now=NOW)
BASE = "https://example.org/"
XHTML = "{http://www.w3.org/1999/xhtml}"
TOML = """\
title = "Test Site"
base_url = "https://example.org/"
language = "en"
timezone = "UTC"

[author]
name = "Tess Ter"
{email}
[newsletter]
since = 2026-01-01
from = "Test Letters <letters@example.org>"
postal_address = "Test Site, 1 Test Road, Testville"

[web]
url = "https://example.org/newsletter/"
"""
CODE = """\
```python
def score(parts):
    return round(sum(parts) / len(parts), 1)  # out of 5
```
"""
HEBREW = "זו פסקה בעברית, והיא נקראת מימין לשמאל."
ARABIC = "هذه فقرة باللغة العربية تقرأ من اليمين إلى اليسار."
MIXED_BODY = f"""\
An English paragraph first.

{HEBREW}

- {ARABIC}
- An English item.

> {HEBREW}

## {ARABIC}

| Name | Note |
|---|---|
| {HEBREW} | English |
"""
HOSTILE_TITLE = '</script><script>alert(1)</script><!-- & "quoted" >'


def site_with(tmp_path: Path, posts: dict[str, str], *, email: bool = True, hero: bool = False) -> Path:
    """A newsletter site at https://example.org/ with `posts` (and static/HERO when `hero`)."""
    toml = TOML.format(email='email = "tess@example.org"\n' if email else "")
    root = write_site(tmp_path / "site", posts, toml)
    if hero:
        (root / "static" / HERO).parent.mkdir(parents=True, exist_ok=True)
        (root / "static" / HERO).write_bytes(hero_jpeg())
    return root


def parse_html(path: Path) -> ElementTree.Element:
    """A page as a browser parses it (html5lib), for real-parser checks."""
    return html5lib.parse(path.read_bytes(), namespaceHTMLElements=True)


def json_ld(path: Path) -> list[dict]:
    """Every JSON-LD block of a built page, as html5lib finds the scripts and json reads them."""
    doc = parse_html(path)
    scripts = [s for s in doc.iter(f"{XHTML}script") if s.get("type") == "application/ld+json"]
    return [json.loads(s.text) for s in scripts]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def edition_for(root: Path) -> tuple[Edition, Post, Config]:
    """(edition, post, config) of the site's only post."""
    config = load_config(root)
    (post,) = load_posts(config, use_cache=False)
    return make_edition(post, config, Theme.for_site(config.templates_dir)), post, config


# --- the email: hero, View in browser -------------------------------------------------------


def test_the_email_opens_with_view_in_browser_and_the_hero_image(tmp_path: Path) -> None:
    root = site_with(
        tmp_path,
        {"2026-02-03-letter.md": post_text(title="A <b>bold</b> letter", date="2026-02-03", body="Hello.", image=f"/{HERO}")},
        hero=True,
    )
    edition, post, _config = edition_for(root)
    assert lint(edition, post) == []
    doc = html5lib.parse(edition.html, namespaceHTMLElements=False)
    container = doc.find(".//table[@class='container']")
    first_link = next(container.iter("a"))
    assert first_link.text == "View in browser" and first_link.get("href") == "https://example.org/posts/letter/"
    images = list(container.iter("img"))
    hero = images[0]
    assert hero.get("src") == f"{BASE}{HERO}"
    assert hero.get("alt") == "A <b>bold</b> letter"  # the title, as text
    assert int(hero.get("width")) <= 552 and "max-width:552px" in hero.get("style").replace(" ", "")
    assert "<b>bold</b>" not in edition.html  # front matter is text: escaped
    text_head = edition.text.split("\n\n", 3)[:3]
    assert any(f"Read on the web: {edition.url}" in part for part in text_head)  # the plain text says it at the top too


def test_no_image_no_hero(tmp_path: Path) -> None:
    root = site_with(tmp_path, {"2026-02-03-letter.md": post_text(title="Plain", date="2026-02-03", body="Hello.")})
    edition, post, _config = edition_for(root)
    assert lint(edition, post) == []
    assert 'class="hero"' not in edition.html and "View in browser" in edition.html


@pytest.mark.browser
def test_the_hero_is_never_wider_than_the_text(browser, tmp_path: Path) -> None:
    root = site_with(
        tmp_path, {"2026-02-03-letter.md": post_text(title="Wide", date="2026-02-03", body="Hello.", image=f"/{HERO}")}, hero=True
    )
    edition, _post, _config = edition_for(root)
    html, _text = edition.personalize("Ada", "https://example.org/newsletter/unsubscribe?token=t")
    for width in (800, 600, 375, 320):
        page = browser.new_page(viewport={"width": width, "height": 900})
        try:
            page.route(f"{BASE}{HERO}", lambda route: route.fulfill(status=200, content_type="image/jpeg", body=hero_jpeg()))
            page.set_content(html, wait_until="load")
            natural, shown, text_width = page.evaluate(
                "[document.querySelector('.hero img').naturalWidth, document.querySelector('.hero img').getBoundingClientRect().width,"
                " document.querySelector('.content p').getBoundingClientRect().width]"
            )
            assert natural == 1200, "the hero did not load"
            assert abs(shown - text_width) < 0.5, (width, shown, text_width)  # as wide as the text, never wider
            assert shown == 552 or width <= 620  # the 600 px layout's content width; phones drop the side padding
            assert page.evaluate("document.documentElement.scrollWidth") <= width
        finally:
            page.close()


# --- the email: code blocks in dark mode ------------------------------------------------------


def _luminance(css: str) -> float:
    """WCAG relative luminance of a computed `rgb(...)` colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


CODE_COLOURS = """
(() => {
  const pre = document.querySelector('pre.highlight');
  const spans = [...pre.querySelectorAll('span')].filter(s => s.textContent.trim());
  return [getComputedStyle(pre).backgroundColor, spans.map(s => getComputedStyle(s).color)];
})()
"""


@pytest.mark.browser
def test_code_blocks_are_dark_in_dark_mode_and_light_in_light(browser, tmp_path: Path) -> None:
    root = site_with(tmp_path, {"2026-02-03-letter.md": post_text(title="Code", date="2026-02-03", body="Look:\n\n" + CODE)})
    edition, post, _config = edition_for(root)
    assert lint(edition, post) == []
    html, _text = edition.personalize("Ada", "https://example.org/newsletter/unsubscribe?token=t")
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": 600, "height": 900})
        try:
            page.route("**/*", lambda route: route.abort())
            page.emulate_media(color_scheme=scheme)
            page.set_content(html, wait_until="load")
            background, colours = page.evaluate(CODE_COLOURS)
            assert len(colours) > 5
            if scheme == "dark":
                assert _luminance(background) < 0.02, background
            else:
                assert _luminance(background) > 0.8, background
            worst = min(_contrast(background, c) for c in colours)
            assert worst >= 4.5, f"{scheme}: a token has contrast {worst:.2f} on {background}"
            if scheme == "dark":
                assert len(set(colours)) >= 3, "dark code keeps its highlighting"
        finally:
            page.close()


@pytest.mark.browser
def test_outlook_dark_mode_rules_stay_in_the_head_and_apply(browser, tmp_path: Path) -> None:
    root = site_with(tmp_path, {"2026-02-03-letter.md": post_text(title="Code", date="2026-02-03", body="Look:\n\n" + CODE)})
    edition, _post, _config = edition_for(root)
    doc = html5lib.parse(edition.html, namespaceHTMLElements=False)
    head_css = "".join(s.text or "" for s in doc.find("head").iter("style"))
    assert "[data-ogsc]" in head_css and "[data-ogsb]" in head_css
    assert "prefers-color-scheme: dark" in head_css
    html, _text = edition.personalize("Ada", "https://example.org/newsletter/unsubscribe?token=t")
    page = browser.new_page(viewport={"width": 600, "height": 900})
    try:
        page.route("**/*", lambda route: route.abort())
        page.set_content(html, wait_until="load")
        # what Outlook.com's dark mode does to the email: mark the recoloured ancestors
        page.evaluate(
            "document.querySelector('.container').setAttribute('data-ogsc', '#1f1d1a');"
            "document.querySelector('.container').setAttribute('data-ogsb', '#ffffff')"
        )
        background, colours = page.evaluate(CODE_COLOURS)
        assert _luminance(background) < 0.02 and min(_contrast(background, c) for c in colours) >= 4.5
    finally:
        page.close()


# --- dir="auto": page, feed and email -----------------------------------------------------------

DIRECTIONS = """
[...document.querySelectorAll('.prose [dir], .post [dir], h1[dir]')].filter(e => e.textContent.trim()).map(e => [e.tagName, e.textContent.trim().slice(0, 12), getComputedStyle(e).direction])
"""


def _expected_direction(text: str) -> str:
    return "rtl" if re.match(r"[\u0590-\u06ff]", text) else "ltr"


@pytest.mark.browser
def test_right_to_left_paragraphs_read_right_to_left_in_page_feed_and_email(browser, tmp_path: Path) -> None:
    root = site_with(tmp_path, {"2026-02-03-mixed.md": post_text(title=HEBREW, date="2026-02-03", body=MIXED_BODY)})
    build(root, OPTS)
    out = root / "out"
    # the feeds carry the attribute (feedparser reads the content back)
    for name in ("atom.xml", "feed.xml"):
        content = feedparser.parse(str(out / name)).entries[0].content[0].value
        tags = re.findall(r"<(p|li|ul|blockquote|h2|th|td)\b[^>]*>", content)
        assert {"p", "li", "ul", "blockquote", "h2", "th", "td"} <= set(tags), name
        assert all(" dir=" in tag for tag in re.findall(r"<(?:p|li|ul|blockquote|h2|th|td)\b[^>]*>", content)), name
        assert '<blockquote dir="rtl">' in content and '<ul dir="rtl">' in content, name  # what dir="auto" would miss
    item = json.loads((out / "feed.json").read_text("utf-8"))["items"][0]
    assert f'<p dir="auto">{HEBREW}</p>' in item["content_html"]
    # the page and the email, as a browser lays them out
    edition = (out / "email" / "mixed" / "index.html").read_text("utf-8")
    for where in ("page", "email"):
        page = browser.new_page(viewport={"width": 600, "height": 900})
        try:
            if where == "page":  # with the theme's stylesheet, from the built site
                with serve_directory(out) as url:
                    page.goto(url + "posts/mixed/", wait_until="load")
            else:
                page.route("**/*", lambda route: route.abort())
                page.set_content(edition, wait_until="load")
            found = page.evaluate(DIRECTIONS)
            kinds = {tag for tag, _text, _dir in found}
            assert {"P", "LI", "UL", "BLOCKQUOTE", "H1", "H2", "TH", "TD"} <= kinds, (where, kinds)
            for tag, text, direction in found:
                assert direction == _expected_direction(text), (where, tag, text, direction)
            hebrew = page.locator(f"p:text-is('{HEBREW}')").first
            box = hebrew.bounding_box()
            parent = page.evaluate("(p => p.parentElement.getBoundingClientRect().right)", hebrew.element_handle())
            assert box is not None and abs(box["x"] + box["width"] - parent) < 2  # set against the right edge
            # the quote's rule and the list's indent are on the right, where the text starts
            quote, items = page.evaluate(
                "[getComputedStyle(document.querySelector('blockquote')), getComputedStyle(document.querySelector('ul[dir=rtl]'))]"
                ".map(s => [s.borderRightWidth, s.borderLeftWidth, s.paddingRight, s.paddingLeft])"
            )
            assert quote[0] == "4px" and quote[1] == "0px", (where, quote)
            assert float(items[2][:-2]) > 10 and items[3] == "0px", (where, items)
        finally:
            page.close()


# --- feeds: the author without an email ---------------------------------------------------------


def test_rss_names_an_author_who_has_no_email(tmp_path: Path) -> None:
    root = site_with(
        tmp_path,
        {
            "2026-02-03-own.md": post_text(title="Own", date="2026-02-03"),
            "2026-02-04-guest.md": post_text(title="Guest", date="2026-02-04", author="Guest Writer"),
        },
        email=False,
    )
    build(root, OPTS)
    out = root / "out"
    rss = feedparser.parse(str(out / "feed.xml"))
    assert not rss.bozo
    assert [e.author for e in rss.entries] == ["Guest Writer", "Tess Ter"]
    raw = (out / "feed.xml").read_text("utf-8")
    assert raw.count("<dc:creator>") == 2 and "<author>" not in raw  # RSS <author> is for email addresses only
    atom = feedparser.parse(str(out / "atom.xml"))
    assert [e.author_detail.name for e in atom.entries] == ["Guest Writer", "Tess Ter"]
    assert atom.feed.author_detail.name == "Tess Ter" and "email" not in atom.feed.author_detail
    feed = json.loads((out / "feed.json").read_text("utf-8"))
    assert feed["authors"] == [{"name": "Tess Ter"}] and feed["items"][0]["authors"] == [{"name": "Guest Writer"}]


def test_rss_with_an_author_email_needs_no_dublin_core(tmp_path: Path) -> None:
    root = site_with(tmp_path, {"2026-02-03-own.md": post_text(title="Own", date="2026-02-03")})
    build(root, OPTS)
    raw = (root / "out" / "feed.xml").read_text("utf-8")
    assert "<author>tess@example.org (Tess Ter)</author>" in raw and "dc:creator" not in raw and "xmlns:dc" not in raw


# --- previews show the local build's images ------------------------------------------------------


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read()


@pytest.mark.browser
def test_serve_shows_the_email_with_images_from_the_local_build(browser, tmp_path: Path) -> None:
    root = site_with(
        tmp_path,
        {"2026-02-03-letter.md": post_text(title="Letter", date="2026-02-03", body=f"Hi.\n\n![A still](/{HERO})\n", image=f"/{HERO}")},
        hero=True,
    )
    server = LiveServer(root, port=0, debounce_ms=50)
    server.start()
    try:
        assert server.state.error is None, server.state.error
        status, served = get(server.url + "email/letter/")
        assert status == 200
        sources = re.findall(r'<img\b[^>]*\ssrc="([^"]*)"', served.decode("utf-8"))
        assert sources and all(src == f"/{HERO}" for src in sources)  # from this server, whatever its address
        page = browser.new_page(viewport={"width": 600, "height": 900})
        try:
            page.route("https://**/*", lambda route: route.abort())  # the public site does not exist yet
            page.goto(server.url + "email/letter/", wait_until="load")
            loaded = page.evaluate("[...document.querySelectorAll('img')].map(i => i.naturalWidth)")
            assert loaded and all(w == 1200 for w in loaded)
        finally:
            page.close()
    finally:
        server.stop()
    built = (root / "out/email/letter/index.html").read_text("utf-8")
    eml = (root / "out/email/letter/email.eml").read_bytes()
    assert f'src="{BASE}{HERO}"' in built and "127.0.0.1" not in built
    assert b"127.0.0.1" not in eml and b"file:" not in eml


@pytest.mark.browser
def test_preview_open_shows_the_images_from_this_machine(browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = site_with(
        tmp_path, {"2026-02-03-letter.md": post_text(title="Letter", date="2026-02-03", body="Hi.", image=f"/{HERO}")}, hero=True
    )
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    result = CliRunner().invoke(cli.app, ["preview", "letter", "--site", str(root), "--open"])
    assert result.exit_code == 0, result.output
    (url,) = opened
    assert url.startswith("file://") and "/.review-press/preview/" in url
    shown = Path(urllib.request.url2pathname(url.removeprefix("file://"))).read_text("utf-8")
    assert f'src="{(root / "static" / HERO).resolve().as_uri()}"' in shown  # out/ is not built yet: static/ has it
    emailed = (root / "out/email/letter/index.html").read_text("utf-8")
    assert f'src="{BASE}{HERO}"' in emailed and "file:" not in emailed
    assert b"file:" not in (root / "out/email/letter/email.eml").read_bytes()
    page = browser.new_page(viewport={"width": 600, "height": 900})
    try:
        page.goto(url, wait_until="load")
        assert page.evaluate("document.querySelector('.hero img').naturalWidth") == 1200
    finally:
        page.close()
    build(root, OPTS)  # once built, the preview takes the copy in out/
    opened.clear()
    assert CliRunner().invoke(cli.app, ["preview", "letter", "--site", str(root), "--open"]).exit_code == 0
    shown = Path(urllib.request.url2pathname(opened[0].removeprefix("file://"))).read_text("utf-8")
    assert f'src="{(root / "out" / HERO).resolve().as_uri()}"' in shown


# --- pages: headings, favicon ------------------------------------------------------------------


def _levels(path: Path) -> list[int]:
    doc = parse_html(path)
    body = doc.find(f".//{XHTML}body")
    return [int(el.tag[-1]) for el in body.iter() if isinstance(el.tag, str) and re.fullmatch(rf"{re.escape(XHTML)}h[1-6]", el.tag)]


def test_no_page_skips_a_heading_level(tmp_path: Path) -> None:
    posts = {
        f"2025-0{m}-0{m}-p{m}.md": post_text(title=f"Post {m}", date=f"2025-0{m}-0{m}", body="## Part\n\n### Detail\n") for m in (1, 2, 3)
    }
    posts["2026-01-05-new.md"] = post_text(title="New", date="2026-01-05")
    root = site_with(tmp_path, posts)
    build(root, OPTS)
    out = root / "out"
    assert _levels(out / "archive/2025/index.html")[:2] == [1, 2]
    for page in sorted(out.rglob("*.html")):
        if "email" in page.parts:
            continue
        levels = _levels(page)
        assert levels and levels[0] == 1, page
        jumps = [(a, b) for a, b in itertools.pairwise(levels) if b > a + 1]
        assert not jumps, f"{page.relative_to(out)}: heading levels {levels}"


def test_every_page_links_the_theme_favicon(tmp_path: Path) -> None:
    root = site_with(tmp_path, {"2026-01-05-new.md": post_text(title="New", date="2026-01-05")})
    build(root, OPTS)
    out = root / "out"
    for rel in ("index.html", "posts/new/index.html", "archive/2026/index.html", "404.html"):
        icons = [link for link in parse_html(out / rel).iter(f"{XHTML}link") if link.get("rel") == "icon"]
        assert len(icons) == 1 and icons[0].get("href") == "/assets/favicon.svg" and icons[0].get("type") == "image/svg+xml", rel
    svg = (out / "assets/favicon.svg").read_bytes()
    assert etree.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"


# --- pages: schema.org JSON-LD ----------------------------------------------------------------


def test_a_post_describes_itself_as_a_blog_posting(tmp_path: Path) -> None:
    root = site_with(
        tmp_path,
        {
            "2026-01-05-new.md": post_text(
                title="New", date="2026-01-05T10:00:00+00:00", updated="2026-01-07", tags="[Crime]", image=f"/{HERO}"
            )
        },
        hero=True,
    )
    build(root, OPTS)
    (data,) = json_ld(root / "out/posts/new/index.html")
    assert data["@context"] == "https://schema.org" and data["@type"] == "BlogPosting"
    assert data["headline"] == "New" and data["url"] == f"{BASE}posts/new/"
    assert data["datePublished"] == "2026-01-05T10:00:00+00:00" and data["dateModified"] == "2026-01-07T00:00:00+00:00"
    assert data["author"] == {"@type": "Person", "name": "Tess Ter"} and data["image"] == f"{BASE}{HERO}"
    assert "reviewRating" not in data and "itemReviewed" not in data


def test_a_rated_post_is_a_review_of_what_it_names(tmp_path: Path) -> None:
    root = site_with(
        tmp_path,
        {
            "2026-01-05-run.md": post_text(
                title="Run Away", date="2026-01-05", rating="4.5", reviewed='"Run Away"', reviewed_type="TVSeries"
            ),
            "2026-01-06-ten.md": post_text(title="Ten", date="2026-01-06", rating="7", rating_max="10", rating_min="0"),
        },
    )
    build(root, OPTS)
    (run,) = json_ld(root / "out/posts/run/index.html")
    assert run["@type"] == ["BlogPosting", "Review"]
    assert run["reviewRating"] == {"@type": "Rating", "ratingValue": 4.5, "bestRating": 5, "worstRating": 1}
    assert run["itemReviewed"] == {"@type": "TVSeries", "name": "Run Away"}
    (ten,) = json_ld(root / "out/posts/ten/index.html")
    assert ten["reviewRating"] == {"@type": "Rating", "ratingValue": 7, "bestRating": 10, "worstRating": 0}
    assert "itemReviewed" not in ten


def test_the_sample_post_is_a_review_of_a_tv_series(tmp_path: Path) -> None:
    posts = {p.name: p.read_text("utf-8") for p in (REPO / "posts").glob("*.md")}
    root = write_site(tmp_path / "sample", posts, (REPO / "press.toml").read_text("utf-8"))
    build(root, OPTS)
    (data,) = json_ld(root / "out/posts/run-away-season-1-review/index.html")
    assert data["itemReviewed"] == {"@type": "TVSeries", "name": "Run Away"}
    assert data["reviewRating"]["ratingValue"] == 4.5 and data["author"]["name"] == "Boxofficehype"


def test_json_ld_survives_a_title_that_closes_the_script(tmp_path: Path) -> None:
    title = HOSTILE_TITLE.replace('"', '\\"')
    root = site_with(
        tmp_path, {"2026-01-05-x.md": post_text(title=title, date="2026-01-05", body="Body.", reviewed=f'"{title}"', rating="3")}
    )
    build(root, OPTS)
    page = root / "out/posts/x/index.html"
    doc = parse_html(page)
    assert not [s for s in doc.iter(f"{XHTML}script") if s.get("type") != "application/ld+json"], "no script escaped the JSON"
    (data,) = json_ld(page)
    assert data["headline"] == HOSTILE_TITLE and data["itemReviewed"]["name"] == HOSTILE_TITLE
    raw = re.search(rb'<script type="application/ld\+json">(.*?)</script>', page.read_bytes(), re.DOTALL).group(1)
    assert b"<" not in raw and b">" not in raw and b"&" not in raw


@pytest.mark.parametrize(
    ("front", "message"),
    [
        ({"rating": '"four"'}, "'rating' must be a number"),
        ({"rating": "6"}, "rating 6 is outside 1..5"),
        ({"rating": "3", "rating_max": "3", "rating_min": "3"}, "rating_min 3 must be below rating_max 3"),
        ({"rating": "3", "reviewed_type": "Spaceship"}, "reviewed_type 'Spaceship' is not a schema.org type"),
    ],
)
def test_bad_review_keys_are_errors_at_their_line(tmp_path: Path, front: dict[str, str], message: str) -> None:
    root = site_with(tmp_path, {"2026-01-05-x.md": post_text(title="X", date="2026-01-05", **front)})
    with pytest.raises(PressError) as caught:
        build(root, OPTS)
    text = str(caught.value)
    assert message in text
    key = "reviewed_type" if "reviewed_type" in front else "rating_min" if "rating_min" in front else "rating"
    line = 1 + next(i for i, row in enumerate(post_text(title="X", date="2026-01-05", **front).splitlines()) if row.startswith(key + ":"))
    assert f"2026-01-05-x.md:{line}:" in text


# --- the same bytes under any hash seed, in any folder ------------------------------------------

BUILD_SCRIPT = """
import datetime as dt, sys
from pathlib import Path
from review_press.build import BuildOptions, build
build(Path(sys.argv[1]), BuildOptions(now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC)))
"""


def test_the_same_site_gives_the_same_bytes_under_any_hash_seed_and_folder(tmp_path: Path) -> None:
    posts = {
        "2026-02-03-mixed.md": post_text(
            title=HEBREW, date="2026-02-03", body=MIXED_BODY + "\n" + CODE, image=f"/{HERO}", rating="4", reviewed="Show"
        ),
        "2026-02-04-guest.md": post_text(title="Guest", date="2026-02-04", author="Guest Writer"),
    }
    outputs = []
    for folder, seed in (("one", "1"), ("two/deeper", "2")):
        root = site_with(tmp_path / folder, posts, email=False, hero=True)
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", BUILD_SCRIPT, str(root)], check=True, env=env, timeout=300)
        outputs.append(root / "out")
    names = (
        "posts/mixed/index.html",
        "feed.xml",
        "atom.xml",
        "feed.json",
        "email/mixed/index.html",
        "email/mixed/email.eml",
        "archive/2026/index.html",
    )
    for name in names:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
