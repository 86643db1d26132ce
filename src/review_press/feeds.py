"""Site -> feeds: RSS 2.0, Atom 1.0 and JSON Feed 1.1, for the site and for each tag, with RFC 5005 archives.

Where they go (paths under out/; `site.FEEDS` names the three files of a list):

    feed.xml  atom.xml  feed.json                   the site's newest `feed_length` posts
    tags/<slug>/feed.xml  atom.xml  feed.json       the same for one tag
    feeds/archive/<k>/feed.xml  atom.xml  feed.json archive k: posts (k-1)*N+1 .. k*N, counted from the oldest

Archives (RFC 5005 section 4). Only complete chunks of N = `feed_length` posts are archived, so an
archive document does not change once written (unless a post in it is edited, or a post older than
it is added or removed, which shifts the chunk boundaries). The subscription feed links
rel="prev-archive" to the newest archive; each archive carries <fh:archive/>, rel="current" (the
subscription feed), rel="prev-archive" (the older archive) and rel="next-archive" (the newer one) where
they exist. The newest posts not yet in a complete archive (fewer than N) are always in the
subscription feed, so walking prev-archive from it reaches every post; a reader dedupes the overlap
between the subscription feed and the newest archive by entry id, as RFC 5005 expects. One case the
W3C validator warns about (ArchiveIncomplete) cannot be avoided with fixed chunks: while a site has
exactly one archive (N <= posts < 2N), that archive has neither prev- nor next-archive.

Tag feeds get no archives: a tag is a view of posts that are all archived in the site feed's chain, and
65 tags x (posts / N) archives x 3 formats would multiply the documents for no reader that asks for them.
JSON Feed has no archive marker, so its archives are pages: feed.json's `next_url` is the newest
archive's feed.json, whose `next_url` is the one before, down to archive 1; they move only as archives do.

Output is deterministic: no clock anywhere. `updated`/lastBuildDate come from the posts (an empty feed
says EMPTY_UPDATED); entry ids are permalinks; every URL in content is absolute. Content and summaries
are sanitised by the site's one allowlist (`markup.sanitize`, see `feed_html`): feed readers are not
the author's site, and the W3C validator warns about scripts, handlers, iframes and the like.

feedgen 1.0.0 faults worked around (in `feedxml`, which makes the RSS and Atom documents), each
pinned by a test in tests/test_feeds.py:
1. add_entry() prepends by default (python-feedgen#55, #70) -> add_entry(order="append"), newest first.
2. Atom entry <link> loses rel and type (lkiesow/python-feedgen#135) -> `_EntryExtras` puts them back.
3. content(type="CDATA") writes type="CDATA", invalid Atom (python-feedgen#123) -> only type="html".
4. RSS <channel><link> is the href of the LAST fg.link() call (feed.py: `__rss_link = __atom_link[-1]`;
   seen in python/peps#3976) -> the alternate link is added last.
5. lastBuildDate and atom:updated default to the clock -> always set from the posts.
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote, urlsplit, urlunsplit

from . import markup
from .content import Post
from .output import Artifact, make_key
from .site import FEEDS, Site

FEED_FORMAT = "feeds-4"  # part of every key: bump when this module renders the same input differently
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
ARCHIVE_DIR = "feeds/archive"
EMPTY_UPDATED = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # the `updated` of a feed with no posts
FILE_OF = {kind: name for kind, name, _ in FEEDS}
_PCHAR = "-._~!$&'()*+,;=:@"  # RFC 3986 pchar minus unreserved letters/digits: never percent-encoded


@dataclass(frozen=True)
class FeedLink:
    """An RFC 5005 link of a feed document: its relation, absolute URL and media type."""

    rel: str
    href: str
    media: str


@dataclass(frozen=True)
class FeedDoc:
    """One feed document before rendering: where it goes, what it lists and how it links onwards."""

    kind: str  # "rss", "atom" or "json" (see site.FEEDS)
    path: str  # e.g. "tags/crime/atom.xml"
    title: str
    subtitle: str
    home: str  # absolute URL of the HTML page the feed mirrors
    posts: tuple[Post, ...]  # newest first
    history: tuple[FeedLink, ...] = ()  # current / prev-archive / next-archive
    archive: bool = False
    origin: str = "feeds"


@dataclass(frozen=True)
class Entry:
    """What every format says about one post: computed once per post, shared by all documents."""

    post: Post
    url: str
    updated: dt.datetime
    published: dt.datetime
    content: str  # absolute-URL HTML of the whole post; "" in summary mode
    summary: str  # absolute-URL HTML of the summary; "" when the post has none worth giving
    image: str | None = None  # the absolute URL of the post's `image`


@dataclass(frozen=True, eq=False)
class FeedContext:
    """The site, each post's unique `updated`, and caches filled as documents render: each post's
    `Entry`, and its JSON Feed item as text (a post is listed by its tags' feeds and an archive)."""

    site: Site
    updated: Mapping[str, dt.datetime]
    entries: dict[str, Entry] = field(default_factory=dict)
    json_items: dict[str, str] = field(default_factory=dict)

    def entry(self, post: Post) -> Entry:
        """The `Entry` of a post (built on first use)."""
        if (found := self.entries.get(post.slug)) is None:
            found = self.entries[post.slug] = make_entry(self.site, post, self.updated[post.slug])
        return found

    def json_text(self, entry: Entry, *, keep: bool) -> str:
        """The entry's JSON Feed item as `json_text` writes it inside "items", encoded once if
        `keep` (a subscription feed's: the site's and its tags' list the newest posts again and
        again); an archive's posts are in no other archive, so theirs are not kept (a worker
        rendering thousands of archived posts would hold every item's text)."""
        if (found := self.json_items.get(entry.post.slug)) is None:
            found = json_text(json_item(entry), depth=2)
            if keep:
                self.json_items[entry.post.slug] = found
        return found


# --- planning (cheap: no rendering) ----------------------------------------------------


def plan_feeds(site: Site, base_key: str) -> list[Artifact]:
    """Every feed document of the site as an `Artifact` whose key covers all its bytes depend on."""
    ctx = FeedContext(site=site, updated=unique_updated(site))
    said = {p.slug: f"{p.slug}|{p.digest}|{ctx.updated[p.slug].isoformat()}" for p in site.posts}  # once per post, not per document
    return [Artifact(doc.path, doc_key(doc, base_key, said), _renderer(ctx, doc), doc.origin) for doc in feed_docs(site)]


def feed_docs(site: Site) -> list[FeedDoc]:
    """The subscription feeds, the tag feeds and the archives, three formats each."""
    config, n = site.config, site.config.feed_length
    archives = archive_chunks(site.posts, n)
    docs = list(_list_docs(site, "", config.title, config.description or config.title, site.posts[:n], len(archives), "feeds"))
    for tag in site.tags:
        title, subtitle = f"{config.title}: {tag.name}", f"Posts tagged {tag.name} on {config.title}"
        docs += _list_docs(site, tag.path, title, subtitle, tag.posts[:n], 0, f"feeds of tag {tag.name!r}")
    for number, chunk in enumerate(archives, start=1):
        docs += _archive_docs(site, number, len(archives), chunk)
    return docs


def archive_chunks(posts: tuple[Post, ...], size: int) -> list[tuple[Post, ...]]:
    """Complete chunks of `size` posts counted from the oldest; each chunk newest first."""
    oldest_first = posts[::-1]
    return [oldest_first[i : i + size][::-1] for i in range(0, len(oldest_first) - size + 1, size)]


def archive_path(number: int, kind: str) -> str:
    """Where archive `number` of the site feed in format `kind` lives."""
    return f"{ARCHIVE_DIR}/{number}/{FILE_OF[kind]}"


def _list_docs(site: Site, base: str, title: str, subtitle: str, posts: tuple[Post, ...], archives: int, origin: str) -> Iterable[FeedDoc]:
    """The three subscription documents of a list (the site at base "", or a tag)."""
    for kind, name, media in FEEDS:
        history = (FeedLink("prev-archive", site_uri(site, archive_path(archives, kind)), media),) if archives else ()
        yield FeedDoc(kind, base + name, title, subtitle, site_uri(site, base), posts, history, origin=origin)


def _archive_docs(site: Site, number: int, count: int, posts: tuple[Post, ...]) -> Iterable[FeedDoc]:
    """The three documents of archive `number` of `count`, linked to their neighbours."""
    title, subtitle = f"{site.config.title} (archive {number})", site.config.description or site.config.title
    for kind, name, media in FEEDS:
        history = [FeedLink("current", site_uri(site, name), media)]
        if number > 1:
            history.append(FeedLink("prev-archive", site_uri(site, archive_path(number - 1, kind)), media))
        if number < count:
            history.append(FeedLink("next-archive", site_uri(site, archive_path(number + 1, kind)), media))
        path, origin = archive_path(number, kind), f"feed archive {number}"
        yield FeedDoc(kind, path, title, subtitle, site_uri(site), posts, tuple(history), archive=True, origin=origin)


def doc_key(doc: FeedDoc, base_key: str, said: Mapping[str, str]) -> str:
    """A document's key: base_key (code, theme, press.toml), its place and links, and its posts in
    order (`said`: what the key says of each post, slug, digest and feed `updated`, made once a plan)."""
    links = (f"{link.rel} {link.href}" for link in doc.history)
    posts = (said[p.slug] for p in doc.posts)
    return make_key(FEED_FORMAT, base_key, doc.kind, doc.path, doc.title, doc.subtitle, doc.home, doc.archive, *links, "|", *posts)


def unique_updated(site: Site) -> dict[str, dt.datetime]:
    """Each post's feed `updated`: its last_modified in UTC to the second, unique across the site.

    Two posts with one instant (say, both dated 2026-01-05) would give two entries with equal
    atom:updated, which the W3C validator warns about; the later one (by date, then slug) moves on
    by whole seconds. Unique site-wide, so a post says the same in every document that lists it.
    The site's posts are newest first by date, then slug (`site.by_date`), all different: taken
    oldest first, a stable sort by the last_modified instant (`Site.modified`) alone puts them by
    (last_modified, date, slug) without working out each date's instant again.
    """
    modified = site.modified
    result: dict[str, dt.datetime] = {}
    last: dt.datetime | None = None
    for post in sorted(reversed(site.posts), key=modified.__getitem__):
        when = modified[post]  # in UTC: to the second, as every format writes it
        when = when.replace(microsecond=0) if when.microsecond else when
        if last is not None and when <= last:
            when = last + dt.timedelta(seconds=1)
        result[post.slug] = last = when
    return result


# --- entries and URLs ------------------------------------------------------------------


def site_uri(site: Site, path: str = "") -> str:
    """The canonical absolute URI of a site path (see `canonical_uri`)."""
    return canonical_uri(site.url(path))


@lru_cache(maxsize=8192)
def canonical_uri(url: str) -> str:
    """`url` as the W3C validator's canonical form: lower-case scheme and host, no default port,
    the path in NFC with non-ASCII and unsafe characters percent-encoded (upper-case hex).
    Memoised: thousands of feed documents ask for the same few URLs."""
    parts = urlsplit(url)
    scheme, netloc = parts.scheme.lower(), parts.netloc.lower()
    default_port = {"http": ":80", "https": ":443"}.get(scheme)
    if default_port and netloc.endswith(default_port):
        netloc = netloc[: -len(default_port)]
    path = quote(unicodedata.normalize("NFC", parts.path), safe="/%" + _PCHAR) or "/"
    return urlunsplit((scheme, netloc, path, parts.query, parts.fragment))


def feed_html(fragment: str, url: str) -> str:
    """A post's HTML as a feed carries it: sanitised by the one allowlist (`markup.sanitize`:
    no scripts, handlers, `javascript:` URLs, forms or iframes), then every URL absolute."""
    return markup.absolute_urls(markup.sanitize(fragment), url)


def make_entry(site: Site, post: Post, updated: dt.datetime) -> Entry:
    """One post's feed entry: permalink, dates in UTC, and content per `feed_content`, all sanitised."""
    url = site_uri(site, post.path)
    summary = feed_html(post.summary_html, url) if post.summary_html.strip() else ""
    if site.config.feed_content == "full":
        content = feed_html(post.html, url)
        summary = "" if summary == content else summary
    else:
        content, summary = "", summary or feed_html(post.html, url)
    published = post.date.astimezone(dt.UTC).replace(microsecond=0)
    image = canonical_uri(site.config.link(post.image, post.path)) if post.image else None
    return Entry(post=post, url=url, updated=updated, published=published, content=content, summary=summary, image=image)


def newest_update(entries: Iterable[Entry]) -> dt.datetime:
    """A document's own `updated`: its newest entry's, never the clock."""
    return max((e.updated for e in entries), default=EMPTY_UPDATED)


# --- rendering -------------------------------------------------------------------------


def _renderer(ctx: FeedContext, doc: FeedDoc) -> Callable[[], bytes]:
    """The zero-argument render callable of an `Artifact`."""
    return lambda: render_doc(ctx, doc)


def render_doc(ctx: FeedContext, doc: FeedDoc) -> bytes:
    """The bytes of one feed document."""
    entries = [ctx.entry(p) for p in doc.posts]
    if doc.kind == "json":
        return render_json(ctx, doc, entries)
    from .feedxml import build_feedgen  # feedgen (and dateutil): imported by the first RSS or Atom render, not by planning

    fg = build_feedgen(ctx.site, doc, entries, self_url=site_uri(ctx.site, doc.path), updated=newest_update(entries))
    return fg.atom_str(pretty=True) if doc.kind == "atom" else fg.rss_str(pretty=True)


def render_json(ctx: FeedContext, doc: FeedDoc, entries: list[Entry]) -> bytes:
    """A JSON Feed 1.1 document, by hand (feedgen has no JSON Feed), keys sorted: `json_text` of
    the whole, each item's text made once per post (`FeedContext.json_text`) and put in place of
    a marker, which gives the very bytes `json_text` of the whole with its items would."""
    site, config = ctx.site, ctx.site.config
    feed: dict[str, object] = {
        "version": JSON_FEED_VERSION,
        "title": doc.title,
        "description": doc.subtitle,
        "home_page_url": doc.home,
        "feed_url": site_uri(site, doc.path),
        "language": config.language,
        "items": [_ITEMS] if entries else [],
    }
    if config.author.name:  # JSON Feed 1.1: an author object needs a name (or a url or avatar)
        feed["authors"] = [{"name": config.author.name}]
    older = [link.href for link in doc.history if link.rel == "prev-archive"]
    if older:
        feed["next_url"] = older[0]
    text = json_text(feed)
    if entries:  # the marker's line: no string in the document holds a line break, so no other line is it
        text = text.replace(_ITEMS_LINE, "\n" + ",\n".join(ctx.json_text(e, keep=not doc.archive) for e in entries) + "\n", 1)
    return (text + "\n").encode("utf-8")


_ITEMS = "\0items\0"  # stands for the items in `render_json`; written \u0000items\u0000
_ITEMS_LINE = '\n    "\\u0000items\\u0000"\n'


def json_text(value: object, depth: int = 0) -> str:
    """`value` as JSON Feed documents write it (keys sorted, UTF-8 as is, two-space indent), its
    lines indented as at `depth` levels inside a document (its first line too)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, indent=2)
    return text if depth == 0 else "\n".join("  " * depth + line for line in text.split("\n"))


def json_item(entry: Entry) -> dict[str, object]:
    """One JSON Feed item."""
    post = entry.post
    item: dict[str, object] = {
        "id": entry.url,
        "url": entry.url,
        "title": post.title,
        "content_html": entry.content or entry.summary,
        "date_published": entry.published.isoformat(),
        "date_modified": entry.updated.isoformat(),
    }
    if post.summary_text:
        item["summary"] = post.summary_text
    if post.tags:
        item["tags"] = list(post.tags)
    if post.author:
        item["authors"] = [{"name": post.author}]
    if entry.image:
        item["image"] = entry.image
    return item
