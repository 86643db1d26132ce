"""Post identity: which sent campaign (if any) each post is, whatever its file or slug is now.

A campaign belongs to a post, not to its file name or slug. The store remembers, for each
campaign, the post's `id`, file, slug(s), date and title when it was last published; this
module matches the posts of today against those records. It is a pure function of both, so
`publish`, `status` and the build (for redirects from old URLs) all see the same answer.

The rule (documented in the README):

1. A post with an `id` is the campaign with that `id` (or, for a campaign recorded before
   the post had one, the campaign whose key is that `id`). Two different ids never match.
2. Otherwise a post is a campaign when its date and title are both the campaign's (a post's
   date is to the second, or its day), or when both its slug (any slug the campaign was sent
   under) and its file are. So renaming the file (and with it the slug), moving it, or
   changing `slug:` keeps the campaign; so does editing the title of a post whose file and
   slug stay. A campaign recorded before review-press kept these facts matches by slug alone.
3. A post without an `id` that shares only one of slug, file or date with a campaign no
   other post is, is not surely new: it is refused, with both named and the fix (add the
   campaign's id if it is the same post; any new `id` if it is not), never sent on a guess.
4. A post that resembles more than one campaign, or a campaign claimed by more than one
   post, is refused likewise. Refusing sends nothing, so no rule here can mail a list twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .content import Post


@dataclass(frozen=True)
class CampaignRecord:
    """What the store remembers of one campaign: its key and the post it was sent for."""

    key: str  # the ledger's key: the post's slug when it first went out (never changes)
    started_at: str
    post_id: str | None = None
    source: str | None = None  # file relative to posts/, at the latest publish
    slug: str | None = None  # the post's slug at the latest publish
    post_date: str | None = None  # UTC, `store.now_iso` form
    title: str | None = None
    content_hash: str | None = None
    slugs: tuple[str, ...] = ()  # every slug it was published under, the key among them


@dataclass(frozen=True)
class PostFacts:
    """The facts of a post that identity compares; made by `facts`."""

    slug: str
    source: str
    post_id: str | None
    date: str
    title: str


@dataclass(frozen=True)
class Refusal:
    """A post that cannot be matched with certainty: it is not sent, and `message` says why and how to fix it."""

    post: Post
    message: str
    hint: str


@dataclass(frozen=True)
class Matching:
    """The verdict for a set of posts: each matched post's campaign, and the refused posts."""

    campaigns: dict[str, CampaignRecord]  # post slug -> its campaign
    refused: dict[str, Refusal]  # post slug -> why it is not sent

    def campaign_of(self, post: Post) -> CampaignRecord | None:
        return self.campaigns.get(post.slug)


def utc_text(moment: dt.datetime) -> str:
    """A datetime in the store's fixed UTC form (the same as `store.now_iso`)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def facts(post: Post, posts_dir: Path) -> PostFacts:
    """The identity facts of a post whose file lies under `posts_dir`."""
    try:
        source = post.source.relative_to(posts_dir).as_posix()
    except ValueError:
        source = post.source.as_posix()
    return PostFacts(slug=post.slug, source=source, post_id=post.id, date=utc_text(post.date), title=post.title)


def _ids_clash(post: PostFacts, campaign: CampaignRecord) -> bool:
    return post.post_id is not None and campaign.post_id is not None and post.post_id != campaign.post_id


def _same_id(post: PostFacts, campaign: CampaignRecord) -> bool:
    if post.post_id is None:
        return False
    return post.post_id == campaign.post_id or (campaign.post_id is None and post.post_id == campaign.key)


def evidence(post: PostFacts, campaign: CampaignRecord) -> tuple[str, ...]:
    """Which facts the post shares with the campaign: "slug", "file", "date and title" or "date"."""
    found = []
    if post.slug == campaign.key or post.slug in campaign.slugs:
        found.append("slug")
    if campaign.source is not None and post.source == campaign.source:
        found.append("file")
    if campaign.post_date == post.date:
        found.append("date and title" if campaign.title == post.title else "date")
    return tuple(found)


def is_sure(shared: tuple[str, ...], campaign: CampaignRecord) -> bool:
    """Whether shared facts make a post surely this campaign (rule 2 of the module doc)."""
    legacy = campaign.source is None and campaign.post_date is None
    return "date and title" in shared or {"slug", "file"} <= set(shared) or (legacy and "slug" in shared)


def describe(campaign: CampaignRecord) -> str:
    """A campaign as a person knows it: its slug and file at its latest publish."""
    where = f" ({campaign.source})" if campaign.source else ""
    return f"the post sent as {campaign.slug or campaign.key!r}{where}"


def _index(records: Iterable[CampaignRecord]) -> dict[tuple[str, str], list[CampaignRecord]]:
    """Campaigns by each fact a post may share with them, so matching costs O(posts), not O(posts x campaigns)."""
    index: dict[tuple[str, str], list[CampaignRecord]] = {}
    for c in sorted(records, key=lambda c: c.key):
        facts_of = {("id", c.post_id or c.key), ("file", c.source or ""), ("date", c.post_date or "")}
        facts_of |= {("slug", s) for s in (c.key, *c.slugs)}
        for fact in facts_of:
            if fact[1]:
                index.setdefault(fact, []).append(c)
    return index


def _candidates(index: dict[tuple[str, str], list[CampaignRecord]], f: PostFacts) -> list[CampaignRecord]:
    found = {c.key: c for kind, value in (("slug", f.slug), ("file", f.source), ("date", f.date)) for c in index.get((kind, value), ())}
    return [found[key] for key in sorted(found)]


def match(posts: Sequence[Post], campaigns: Iterable[CampaignRecord], posts_dir: Path) -> Matching:
    """Match each post to the campaign it is (see the module doc); the same verdict in any input order."""
    index = _index(campaigns)
    known = {p.slug: facts(p, posts_dir) for p in posts}
    by_slug = {p.slug: p for p in posts}
    sure: dict[str, list[CampaignRecord]] = {}  # post slug -> campaigns it surely is
    unsure: dict[str, list[tuple[CampaignRecord, tuple[str, ...]]]] = {}
    claimed_by_id: dict[str, str] = {}  # campaign key -> post slug that has its id
    for slug in sorted(known):
        f = known[slug]
        for c in index.get(("id", f.post_id or ""), ()) if f.post_id else ():
            if _same_id(f, c):
                sure[slug] = [c]
                claimed_by_id[c.key] = slug
                break
    for slug in sorted(known):
        if slug in sure:
            continue
        f = known[slug]
        for c in _candidates(index, f):
            if _ids_clash(f, c) or (c.key in claimed_by_id and claimed_by_id[c.key] != slug):
                continue
            shared = evidence(f, c)
            if is_sure(shared, c):
                sure.setdefault(slug, []).append(c)
            elif shared and f.post_id is None:
                unsure.setdefault(slug, []).append((c, shared))
    claims: dict[str, list[str]] = {}
    for slug, found in sure.items():
        for c in found:
            claims.setdefault(c.key, []).append(slug)
    matched: dict[str, CampaignRecord] = {}
    refused: dict[str, Refusal] = {}
    for slug in sorted(known):
        post, found = by_slug[slug], sure.get(slug, [])
        if len(found) > 1:
            refused[slug] = Refusal(
                post,
                f"{post.source} looks like more than one sent post: " + "; ".join(describe(c) for c in found),
                f"add  id: {found[0].post_id or found[0].key}  (the one it is) to its front matter",
            )
        elif found and len(claims[found[0].key]) > 1:
            others = [by_slug[s].source.as_posix() for s in claims[found[0].key] if s != slug]
            refused[slug] = Refusal(
                post,
                f"{post.source} and {', '.join(others)} both look like {describe(found[0])}",
                f"add  id: {found[0].post_id or found[0].key}  to the one that is it, and a new id (or slug) to the other",
            )
        elif found:
            matched[slug] = found[0]
        elif doubts := [(c, shared) for c, shared in unsure.get(slug, []) if c.key not in claims]:
            c, shared = doubts[0]  # a campaign surely another post's is no doubt about this one
            refused[slug] = Refusal(
                post,
                f"{post.source} has the {' and '.join(shared)} of {describe(c)} but nothing else: is it the same post?",
                f"if it is, add  id: {c.post_id or c.key}  to its front matter; if it is a new post, give it an id of its own"
                f" (any new text, e.g.  id: {post.slug}-{post.date:%Y%m%d})",
            )
    return Matching(campaigns=matched, refused=refused)
