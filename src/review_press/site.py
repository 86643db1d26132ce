"""The site as plain data: posts newest first, tags, years, and the pagination plan.

Everything downstream (pages, feeds, editions) reads a `Site`; nothing here renders.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from itertools import groupby

from .config import Config
from .content import Post

# The feeds of a list (the whole site, or one tag), as (kind, file name, media type).
FEEDS = (
    ("rss", "feed.xml", "application/rss+xml"),
    ("atom", "atom.xml", "application/atom+xml"),
    ("json", "feed.json", "application/feed+json"),
)

# Symbols that carry meaning in tag names: `C++` and `C#` must not both become `c`.
_SYMBOLS = {"+": "-plus-", "#": "-sharp-", "&": "-and-", "@": "-at-", "%": "-percent-", "*": "-star-", "=": "-equals-"}


@dataclass(frozen=True)
class Tag:
    """A tag, its URL slug and its posts (newest first). Tags differing only in case are one tag."""

    name: str
    slug: str
    posts: tuple[Post, ...]

    @property
    def path(self) -> str:
        return f"tags/{self.slug}/"


@dataclass(frozen=True)
class Month:
    """Posts of one month, newest first."""

    year: int
    month: int
    posts: tuple[Post, ...]

    @property
    def name(self) -> str:
        return dt.date(self.year, self.month, 1).strftime("%B")


@dataclass(frozen=True)
class Year:
    """Posts of one year, by month."""

    year: int
    months: tuple[Month, ...]

    @property
    def path(self) -> str:
        return f"archive/{self.year}/"

    @cached_property
    def posts(self) -> tuple[Post, ...]:
        """The year's posts, newest first (made once: a plan and its page ask more than once)."""
        return tuple(p for m in self.months for p in m.posts)


@dataclass(frozen=True)
class Page:
    """One page of a paged list: its posts, its number, and where it and its neighbours live."""

    posts: tuple[Post, ...]
    number: int
    count: int
    base: str  # e.g. "" for the home index, "tags/crime/" for a tag

    def path_of(self, number: int) -> str:
        return self.base if number == 1 else f"{self.base}page/{number}/"

    @property
    def path(self) -> str:
        return self.path_of(self.number)

    @property
    def prev_path(self) -> str | None:
        """The newer page, or None on page 1."""
        return self.path_of(self.number - 1) if self.number > 1 else None

    @property
    def next_path(self) -> str | None:
        """The older page, or None on the last page."""
        return self.path_of(self.number + 1) if self.number < self.count else None


@dataclass(frozen=True)
class Site:
    """What gets published: the config, the visible posts newest first, tags and years."""

    config: Config
    posts: tuple[Post, ...]
    tags: tuple[Tag, ...]
    years: tuple[Year, ...]

    def url(self, path: str = "") -> str:
        return self.config.url(path)

    @cached_property
    def modified(self) -> dict[Post, dt.datetime]:
        """Each post's `last_modified` as a UTC instant (`utc_instant`): what the sitemap and the
        feeds compare, made once per site rather than once by each of them. By the post itself
        (posts hash by identity), so `modified.__getitem__` is a key function with no lambda."""
        return {p: utc_instant(p.last_modified) for p in self.posts}

    def neighbours(self) -> dict[str, tuple[Post | None, Post | None]]:
        """For each slug: (newer post, older post)."""
        posts = self.posts
        return {p.slug: (posts[i - 1] if i else None, posts[i + 1] if i + 1 < len(posts) else None) for i, p in enumerate(posts)}


def tag_slug(name: str) -> str:
    """A tag's URL slug: readable, lower case, with meaningful symbols spelled out."""
    text = unicodedata.normalize("NFKC", name).lower()
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    text = re.sub(r"[^\w]+", "-", text, flags=re.UNICODE).strip("-_")
    return text or "tag"


def _tag_slugs(names: list[str]) -> dict[str, str]:
    """Slugs for distinct tag names; where two still collide, each gets a short stable hash."""
    by_slug: dict[str, list[str]] = {}
    for name in names:
        by_slug.setdefault(tag_slug(name), []).append(name)
    slugs = {}
    for slug, group in by_slug.items():
        for name in group:
            slugs[name] = slug if len(group) == 1 else f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"
    return slugs


def paginate(posts: tuple[Post, ...], per_page: int, base: str) -> tuple[Page, ...]:
    """Split posts into pages at `base`, `base/page/2/`, ...; an empty list still has page 1."""
    chunks = [posts[i : i + per_page] for i in range(0, len(posts), per_page)] or [()]
    return tuple(Page(posts=c, number=n, count=len(chunks), base=base) for n, c in enumerate(chunks, start=1))


def utc_instant(when: dt.datetime) -> dt.datetime:
    """An aware datetime as the same instant in UTC: what sorting and comparing many posts'
    dates use. Two datetimes in different zones ask for both their UTC offsets at each
    comparison (over thousands of posts that was a tenth of a nothing-changed build); two with
    the one `dt.UTC` compare their fields alone, and making them is one call, a third of the cost
    of making a naive one (`replace` is slow). The order is the same: equal instants stay equal
    whatever their offsets."""
    return when.astimezone(dt.UTC)


def by_date(post: Post) -> tuple[dt.datetime, str]:
    """The order of posts by date (as instants), then slug."""
    return utc_instant(post.date), post.slug


def visible(post: Post, now: dt.datetime, drafts: bool, future: bool) -> bool:
    """Whether a post is published in this build."""
    return (drafts or not post.draft) and (future or post.date <= now)


def scheduled(posts: tuple[Post, ...], now: dt.datetime) -> tuple[Post, ...]:
    """Posts that are not drafts but dated after `now`, soonest first: they appear (and go out) when their date comes."""
    return tuple(sorted((p for p in posts if not p.draft and p.date > now), key=by_date))


def make_site(config: Config, posts: tuple[Post, ...], now: dt.datetime, drafts: bool = False, future: bool = False) -> Site:
    """Sort, filter and group the posts. `now` decides what counts as the future."""
    shown = sorted((p for p in posts if visible(p, now, drafts, future)), key=by_date, reverse=True)
    ordered = tuple(shown)
    names: dict[str, str] = {}  # casefolded -> the first spelling, in a stable order
    for post in reversed(ordered):  # oldest first: the first spelling met is the oldest post's
        for tag in post.tags:
            names.setdefault(tag.casefold(), tag)
    slugs = _tag_slugs(sorted(names.values(), key=str.casefold))
    tagged: dict[str, list[Post]] = {key: [] for key in names}
    for post in ordered:
        for key in dict.fromkeys(t.casefold() for t in post.tags):
            tagged[key].append(post)
    tags = tuple(Tag(name=name, slug=slugs[name], posts=tuple(tagged[key])) for key, name in sorted(names.items()))
    years = tuple(
        Year(
            year=year, months=tuple(Month(year=year, month=month, posts=tuple(ms)) for month, ms in groupby(ys, key=lambda p: p.date.month))
        )
        for year, ys in ((y, tuple(g)) for y, g in groupby(ordered, key=lambda p: p.date.year))
    )
    return Site(config=config, posts=ordered, tags=tags, years=years)
