"""The site's HTML pages, sitemap.xml and robots.txt, planned as `Artifact`s.

`plan_pages` decides every page and its key without rendering anything: a key holds
exactly what the page shows (each post's digest, neighbour titles, tag slugs, page
numbers), so a rebuild renders only the pages an edit touched. Templates read what
this module passes them; the default theme never walks `site.posts` itself.

`base.html` needs `meta` (a `PageMeta`), `href` (site path -> URL) and `css_version`
besides the theme's `config`; any page that extends it (the web endpoints' too) passes those.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from html import escape as html_escape
from typing import Any
from urllib.parse import urlsplit

import pygments
from markupsafe import Markup
from pygments.formatters import HtmlFormatter

from . import jsonld, markup
from .content import Post
from .errors import raise_all
from .output import Artifact, make_key
from .site import FEEDS, Page, Site, Tag, Year, paginate
from .theme import Theme

DESCRIPTION_CHARS = 200
WORDS_PER_MINUTE = 230
DARK_CODE_STYLE = "github-dark"
HIGHLIGHT_CSS = "assets/highlight.css"
_FEED_LABELS = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
_TABLE_OPEN = re.compile(r"<table\b[^>]*>", re.IGNORECASE)
_TABLE_CLOSE = re.compile(r"</table\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class TagRef:
    """A link to a tag page: the tag's canonical spelling and its site path."""

    name: str
    path: str


@dataclass(frozen=True)
class PostRef:
    """A link to a post (for prev/next): its title and site path."""

    title: str
    path: str


@dataclass(frozen=True)
class FeedLink:
    """One `<link rel="alternate">`: the feed's title, media type and absolute URL."""

    title: str
    type: str
    url: str


@dataclass(frozen=True)
class PageMeta:
    """What the `<head>` of a page says about it: title, description, URLs, feeds."""

    title: str
    description: str
    path: str
    canonical: str
    feeds: tuple[FeedLink, ...]
    og_title: str = ""
    og_type: str = "website"
    image: str | None = None
    prev_url: str | None = None
    next_url: str | None = None
    noindex: bool = False


@dataclass(frozen=True)
class SitemapEntry:
    """One `<url>` of sitemap.xml: an absolute URL and, when known, its last change."""

    loc: str
    lastmod: str | None


# --- small pure helpers -----------------------------------------------------------------


def out_path(path: str) -> str:
    """A site path (`posts/x/`, `` for the home page) -> the file in out/ that serves it."""
    return path + "index.html" if path == "" or path.endswith("/") else path


def href_for(base_url: str) -> Callable[[str], str]:
    """A function from site path to root-relative URL, honouring a base_url with a sub-path."""
    root = urlsplit(base_url).path or "/"
    return lambda path="": root + path.lstrip("/")


def truncate(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """`text` cut at a word boundary to at most `limit` characters, with an ellipsis if cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:.—-– ")
    return cut + "…"


def reading_minutes(post: Post) -> int:
    """A post's reading time in whole minutes, at least 1."""
    return max(1, round(post.body.words / WORDS_PER_MINUTE))


def wrap_tables(html: str) -> str:
    """Put each `<table>` in a scrolling box, so a wide table never widens a phone's page."""
    html = _TABLE_OPEN.sub(lambda m: f'<div class="table-scroll" tabindex="0" role="region" aria-label="Table">{m.group(0)}', html)
    return _TABLE_CLOSE.sub("</table></div>", html)


def page_html(site: Site, fragment: str) -> str:
    """The author's HTML as pages show it: as written (the author is trusted, as in Pelican), or
    through the one allowlist feeds and email use (`markup.sanitize`) with `[content] sanitize_pages`."""
    return markup.sanitize(fragment) if site.config.content.sanitize_pages else fragment


def feed_links(site: Site, base: str = "", label: str = "") -> tuple[FeedLink, ...]:
    """The feeds of a list at site path `base` (the site's when ``), as autodiscovery links."""
    name = f"{site.config.title} — {label}" if label else site.config.title
    return tuple(
        FeedLink(title=f"{name} ({_FEED_LABELS.get(kind, kind)})", type=media, url=site.url(base + file)) for kind, file, media in FEEDS
    )


def _scoped(css: str) -> list[str]:
    """Pygments' rules for `.highlight` only: its bare `pre { line-height }` would restyle every pre."""
    return [line for line in css.splitlines() if line.startswith(".highlight")]


def highlight_css() -> str:
    """The code highlighting stylesheet: the house light style, a dark one for dark mode."""
    light = "\n".join(_scoped(markup.highlight_css()))
    dark = "\n".join("  " + line for line in _scoped(HtmlFormatter(style=DARK_CODE_STYLE).get_style_defs(".highlight")))
    return f"/* Generated from Pygments {pygments.__version__}; do not edit. */\n{light}\n\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"


def lastmod(posts: Iterable[Post], instants: Mapping[Post, dt.datetime]) -> str | None:
    """The newest `last_modified` of some posts, as W3C datetime; None for no posts. `instants`
    (`Site.modified`: each post's `last_modified` as a UTC instant) spares comparing datetimes in many zones."""
    latest = max(posts, key=instants.__getitem__, default=None)
    return latest.last_modified.isoformat() if latest else None


def sitemap_xml(entries: Iterable[SitemapEntry]) -> bytes:
    """A sitemaps.org urlset for the entries, in the order given."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">']
    for e in entries:
        mod = f"<lastmod>{html_escape(e.lastmod, quote=False)}</lastmod>" if e.lastmod else ""
        lines.append(f"  <url><loc>{html_escape(e.loc, quote=False)}</loc>{mod}</url>")  # &, < and > only, as XML text needs
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode()


def robots_txt(site: Site) -> bytes:
    """Allow everything and point crawlers at the sitemap."""
    return f"User-agent: *\nAllow: /\n\nSitemap: {site.url('sitemap.xml')}\n".encode()


# --- rendering --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What every page's render shares: the theme, the site, URL helpers, tag links."""

    theme: Theme
    site: Site
    href: Callable[[str], str]
    css_version: str
    tags_of: dict[str, tuple[TagRef, ...]]
    _minutes: dict[str, int] = field(default_factory=dict)
    _summaries: dict[str, str] = field(default_factory=dict)

    def reading_minutes(self, post: Post) -> int:
        """`reading_minutes`, counted once per post however many lists show it."""
        if (minutes := self._minutes.get(post.slug)) is None:
            minutes = self._minutes[post.slug] = reading_minutes(post)
        return minutes

    def summary_html(self, post: Post) -> str:
        """A post's summary as its cards show it (`page_html`), made once however many lists show it."""
        if (found := self._summaries.get(post.slug)) is None:
            found = self._summaries[post.slug] = page_html(self.site, post.summary_html)
        return found

    def render(self, template: str, meta: PageMeta, **context: Any) -> bytes:
        """One template -> UTF-8 bytes, with the shared context added."""
        html = self.theme.render(
            template,
            meta=meta,
            href=self.href,
            css_version=self.css_version,
            tags_of=self.tags_of,
            reading_minutes=self.reading_minutes,
            summary_html=self.summary_html,
            **context,
        )
        return html.encode("utf-8")


def _meta(site: Site, path: str, title: str, description: str, feeds: tuple[FeedLink, ...], **extra: Any) -> PageMeta:
    full = f"{title} — {site.config.title}" if title else site.config.title
    extra.setdefault("og_title", title or site.config.title)
    return PageMeta(
        title=full,
        description=truncate(description or site.config.description or site.config.title),
        path=path,
        canonical=site.url(path),
        feeds=feeds,
        **extra,
    )


def _list_meta(site: Site, page: Page, title: str, description: str, feeds: tuple[FeedLink, ...]) -> PageMeta:
    if page.number > 1:
        title = f"{title} — page {page.number}" if title else f"Page {page.number}"
    return _meta(
        site,
        page.path,
        title,
        description,
        feeds,
        prev_url=site.url(page.prev_path) if page.prev_path is not None else None,
        next_url=site.url(page.next_path) if page.next_path is not None else None,
    )


def _render_index(ctx: _Context, page: Page) -> bytes:
    meta = _list_meta(ctx.site, page, "", ctx.site.config.description, feed_links(ctx.site))
    return ctx.render("index.html", meta, page=page)


def _render_post(ctx: _Context, post: Post, newer: Post | None, older: Post | None) -> bytes:
    site = ctx.site
    image = site.config.link(post.image, post.path) if post.image else None
    meta = _meta(site, post.path, post.title, post.summary_text, feed_links(site), og_type="article", image=image)
    author = post.author or site.config.author.name
    structured = jsonld.post_data(post, url=meta.canonical, image=image, author=author, language=site.config.language)
    return ctx.render(
        "post.html",
        meta,
        post=post,
        body=wrap_tables(page_html(site, post.html)),
        author=author,
        json_ld=Markup(jsonld.script_json(structured)),  # safe in <script>: <, > and & are \u escapes
        newer=PostRef(newer.title, newer.path) if newer else None,
        older=PostRef(older.title, older.path) if older else None,
    )


def _render_tag(ctx: _Context, tag: Tag, page: Page) -> bytes:
    site = ctx.site
    description = f"Posts tagged “{tag.name}” on {site.config.title}."
    feeds = (*feed_links(site), *feed_links(site, tag.path, tag.name))
    return ctx.render("tag.html", _list_meta(site, page, f"Tagged “{tag.name}”", description, feeds), tag=tag, page=page)


def _render_tags(ctx: _Context) -> bytes:
    site = ctx.site
    meta = _meta(site, "tags/", "Tags", f"Every tag on {site.config.title}, with its posts.", feed_links(site))
    return ctx.render("tags.html", meta, tags=sorted(site.tags, key=lambda t: (t.name.casefold(), t.name)))


def _render_archive(ctx: _Context) -> bytes:
    site = ctx.site
    meta = _meta(site, "archive/", "Archive", f"Every post on {site.config.title}, by year and month.", feed_links(site))
    return ctx.render("archive.html", meta, years=site.years)


def _render_year(ctx: _Context, year: Year, newer: Year | None, older: Year | None) -> bytes:
    site = ctx.site
    meta = _meta(site, year.path, f"Archive {year.year}", f"Posts of {year.year} on {site.config.title}.", feed_links(site))
    return ctx.render("archive_year.html", meta, year=year, newer=newer, older=older)


def _render_404(ctx: _Context) -> bytes:
    site = ctx.site
    meta = _meta(site, "404.html", "Page not found", "There is no page at this address.", feed_links(site), noindex=True)
    return ctx.render("404.html", meta)


# --- planning ---------------------------------------------------------------------------


def _tag_refs(site: Site) -> dict[str, tuple[TagRef, ...]]:
    """For each post slug, links to its tags in the site's canonical spelling (made once for each
    set of tags as written: many posts share theirs)."""
    by_name = {t.name.casefold(): TagRef(t.name, t.path) for t in site.tags}
    refs: dict[tuple[str, ...], tuple[TagRef, ...]] = {}
    result = {}
    for p in site.posts:
        if (found := refs.get(p.tags)) is None:
            found = refs[p.tags] = tuple(by_name[k] for k in dict.fromkeys(t.casefold() for t in p.tags) if k in by_name)
        result[p.slug] = found
    return result


@dataclass(frozen=True)
class _KeyParts:
    """Each post's contribution to keys, computed once per plan (keys are made for every page).

    `card`: what a list shows of a post (its digest covers title, date, summary, tags as
    written) plus its tags' canonical names and paths; `link`: slug, title and date.
    """

    card: dict[str, str]
    link: dict[str, str]

    @classmethod
    def of(cls, site: Site, tags_of: dict[str, tuple[TagRef, ...]]) -> _KeyParts:
        said: dict[tuple[str, ...], str] = {}  # what a card says of its tags, by the tags as written (as `_tag_refs`)
        card = {}
        for p in site.posts:
            if (tags := said.get(p.tags)) is None:
                tags = said[p.tags] = "".join(f"\x1f{t.name}\x1e{t.path}" for t in tags_of[p.slug])
            card[p.slug] = p.digest + tags
        link = {p.slug: f"{p.slug}\x1f{p.title}\x1f{p.date.isoformat()}" for p in site.posts}
        return cls(card=card, link=link)

    def cards(self, posts: Iterable[Post]) -> str:
        """The cards of some posts, in order, as one text for a key (no post's text holds a control
        character, so the separators cannot be mistaken; a tuple's repr was slow to make)."""
        return "\x1d".join([self.card[p.slug] for p in posts])

    def links(self, posts: Iterable[Post]) -> str:
        """The links of some posts, in order, as one text for a key (as `cards`)."""
        return "\x1d".join([self.link[p.slug] for p in posts])


def css_version(theme: Theme) -> str:
    """A short hash of the stylesheets, appended to their URLs so browsers fetch new ones."""
    h = hashlib.sha256(pygments.__version__.encode())
    for rel, path in sorted(theme.assets().items()):
        if rel.endswith(".css"):
            h.update(path.read_bytes())
    return h.hexdigest()[:8]


def _sitemap_entries(site: Site, pages: Iterable[tuple[str, Iterable[Post]]]) -> tuple[SitemapEntry, ...]:
    return tuple(SitemapEntry(site.url(path), lastmod(posts, site.modified)) for path, posts in pages)


def _sitemap_key(entries: Iterable[SitemapEntry]) -> str:
    """What the sitemap's key says of its entries: each URL and lastmod, on a line of its own
    (neither holds a control character; one joined text, as a tuple's repr was slow to make)."""
    return "\n".join([f"{e.loc}\x1f{e.lastmod}" for e in entries])


def plan_pages(site: Site, theme: Theme, base_key: str) -> list[Artifact]:
    """Every HTML page, the code stylesheet, sitemap.xml and robots.txt of the site.

    Raises the problems of posts' review keys (`jsonld.review_meta`) first, each at its line.
    """
    raise_all(jsonld.review_errors(site.posts))
    tags_of = _tag_refs(site)
    parts = _KeyParts.of(site, tags_of)
    ctx = _Context(theme=theme, site=site, href=href_for(site.config.base_url), css_version=css_version(theme), tags_of=tags_of)
    per_page = site.config.posts_per_page
    arts: list[Artifact] = []
    listed: list[tuple[str, Iterable[Post]]] = []

    def add(path: str, key: tuple[Any, ...], render: Callable[[], bytes], origin: str, posts: Iterable[Post] | None = None) -> None:
        arts.append(Artifact(path=out_path(path), key=make_key(base_key, ctx.css_version, *key), render=render, origin=origin))
        if posts is not None:
            listed.append((path, posts))

    for page in paginate(site.posts, per_page, ""):
        add(
            page.path,
            ("index", page.number, page.count, parts.cards(page.posts)),
            partial(_render_index, ctx, page),
            "the home page",
            page.posts,
        )
    neighbours = site.neighbours()
    for post in site.posts:
        newer, older = neighbours[post.slug]
        key = ("post", parts.card[post.slug], parts.link[newer.slug] if newer else "", parts.link[older.slug] if older else "")
        add(post.path, key, partial(_render_post, ctx, post, newer, older), str(post.source), (post,))
    add("archive/", ("archive", parts.links(site.posts)), partial(_render_archive, ctx), "the archive", site.posts)
    for i, year in enumerate(site.years):
        newer = site.years[i - 1] if i else None
        older = site.years[i + 1] if i + 1 < len(site.years) else None
        key = ("year", year.year, parts.links(year.posts), newer and newer.year, older and older.year)
        add(year.path, key, partial(_render_year, ctx, year, newer, older), f"the archive of {year.year}", year.posts)
    add(
        "tags/", ("tags", tuple((t.name, t.slug, len(t.posts)) for t in site.tags)), partial(_render_tags, ctx), "the tag index", site.posts
    )
    for tag in site.tags:
        for page in paginate(tag.posts, per_page, tag.path):
            key = ("tag", tag.name, tag.slug, len(tag.posts), page.number, page.count, parts.cards(page.posts))
            add(page.path, key, partial(_render_tag, ctx, tag, page), f"tag {tag.name!r}", page.posts)
    add("404.html", ("404",), partial(_render_404, ctx), "the 404 page")
    entries = _sitemap_entries(site, listed)
    add("sitemap.xml", ("sitemap", _sitemap_key(entries)), partial(sitemap_xml, entries), "the sitemap")
    add("robots.txt", ("robots",), partial(robots_txt, site), "robots.txt")
    css = highlight_css()
    add(HIGHLIGHT_CSS, ("highlight.css", hashlib.sha256(css.encode()).hexdigest()), css.encode, "code highlighting")
    return arts
