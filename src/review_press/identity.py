"""Post identity: which sent campaign (if any) each post is, whatever its file or slug is now.

A campaign belongs to a post, not to its file name or slug. The store remembers, for each
campaign, the post's `id`, file, slug(s), date, title and text when it was published; this
module matches the posts of today against those records. It is a pure function of both, so
`publish`, `status` and the build (for redirects from old URLs) all see the same answer.

The rule (documented in the README), strongest evidence first:

1. The same `id` (which `new` writes). For a campaign recorded before its post had an id,
   an `id` equal to the campaign's key also counts, when the post shares any other fact
   with it (this is the fix a refusal suggests).
2. The same slug (any slug the campaign went out under) and the same file.
3. The same text: title, subject and body unchanged since it went out.
4. The same date and title.

A campaign recorded before review-press kept these facts matches by slug alone. Each post
takes its strongest match; a campaign claimed by two posts goes to the stronger claim.

A post is refused (not sent, named with the fix), never sent on a guess, when:
- it shares evidence of rule 2-4 with a campaign that another post is (a copy of a sent post);
- it ties between two campaigns, or two posts tie for one campaign;
- its `id` differs from the campaign's while its slug and file, or its text, are the same
  (an id changed on a sent post);
- it has no `id` and shares only its slug, its file or its date with a campaign no post is;
- it has no `id`, no campaign, and is dated before a campaign whose post is unknown
  (recorded before review-press kept posts' files and dates) started.
Refusing sends nothing, so no rule here can mail a list twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .content import Post

SAME_ID, ID_AS_KEY, SLUG_AND_FILE, SAME_TEXT, DATE_AND_TITLE = 5, 4, 3, 2, 1
_RANK_WORDS = {
    SAME_ID: "id",
    ID_AS_KEY: "id",
    SLUG_AND_FILE: "slug and file",
    SAME_TEXT: "text",
    DATE_AND_TITLE: "date and title",
}


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
    content_hash: str | None = None  # of the text when it first went out
    slugs: tuple[str, ...] = ()  # every slug it was published under, the key among them

    @property
    def legacy(self) -> bool:
        """Recorded before review-press kept posts' files and dates: only its slug is known."""
        return self.source is None and self.post_date is None


@dataclass(frozen=True)
class PostFacts:
    """The facts of a post that identity compares; made by `facts`."""

    slug: str
    source: str
    post_id: str | None
    date: str
    title: str
    content_hash: str


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

    def posts_by_campaign(self, posts: Iterable[Post]) -> dict[str, Post]:
        """Campaign key -> the post among `posts` it is now (a campaign whose post is gone is absent)."""
        return {record.key: post for post in posts if (record := self.campaign_of(post)) is not None}


def utc_text(moment: dt.datetime) -> str:
    """A datetime in the store's fixed UTC form (the same as `store.now_iso`)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def facts(post: Post, posts_dir: Path) -> PostFacts:
    """The identity facts of a post whose file lies under `posts_dir`."""
    try:
        source = post.source.relative_to(posts_dir).as_posix()
    except ValueError:
        source = post.source.as_posix()
    return PostFacts(post.slug, source, post.id, utc_text(post.date), post.title, post.content_hash)


def shared_facts(post: PostFacts, campaign: CampaignRecord) -> tuple[str, ...]:
    """Which facts the post shares with the campaign: "slug", "file", "text", "date", "title"."""
    found = []
    if post.slug == campaign.key or post.slug in campaign.slugs:
        found.append("slug")
    if campaign.source is not None and post.source == campaign.source:
        found.append("file")
    if campaign.content_hash is not None and post.content_hash == campaign.content_hash:
        found.append("text")
    if campaign.post_date == post.date:
        found.append("date")
    if campaign.title is not None and campaign.title == post.title:
        found.append("title")
    return tuple(found)


def rank(shared: tuple[str, ...], campaign: CampaignRecord) -> int:
    """How surely shared facts (no id) make a post this campaign: 0 (not surely) to SLUG_AND_FILE."""
    if {"slug", "file"} <= set(shared) or (campaign.legacy and "slug" in shared):
        return SLUG_AND_FILE
    if "text" in shared:
        return SAME_TEXT
    if {"date", "title"} <= set(shared):
        return DATE_AND_TITLE
    return 0


def describe(campaign: CampaignRecord) -> str:
    """A campaign as a person knows it: its slug and file at its latest publish."""
    where = f" (posts/{campaign.source})" if campaign.source else ""
    return f"the post sent as {campaign.slug or campaign.key!r}{where}"


def id_line(value: str) -> str:
    """`id: "..."` as it must be written in front matter (quoted, so `yes` or `1.5` stay text)."""
    return f"id: {json.dumps(value, ensure_ascii=False)}"


def _name(f: PostFacts) -> str:
    return f"posts/{f.source}"


def _id_of(campaign: CampaignRecord) -> str:
    return campaign.post_id or campaign.key


def _new_id_hint(post: Post) -> str:
    return f"if it is a new post, give it an id of its own ({id_line(f'{post.slug}-{post.date:%Y%m%d}')})"


class _Index:
    """Campaigns by each fact a post may share with them: matching costs O(posts), not O(posts x campaigns)."""

    def __init__(self, records: Iterable[CampaignRecord]) -> None:
        self.by: dict[tuple[str, str], list[CampaignRecord]] = {}
        for c in sorted(records, key=lambda c: c.key):
            keys = {("key", c.key), ("file", c.source or ""), ("date", c.post_date or ""), ("text", c.content_hash or "")}
            keys |= {("slug", s) for s in (c.key, *c.slugs)}
            if c.post_id:
                keys.add(("id", c.post_id))
            for fact in keys:
                if fact[1]:
                    self.by.setdefault(fact, []).append(c)
        self.legacy = [c for c in sorted(records, key=lambda c: c.key) if c.legacy]

    def by_id(self, f: PostFacts) -> tuple[CampaignRecord, int] | None:
        """The campaign the post's id names (rule 1), with its rank."""
        if not f.post_id:
            return None
        if found := self.by.get(("id", f.post_id)):
            return found[0], SAME_ID
        for c in self.by.get(("key", f.post_id), ()):
            if c.post_id is None and (c.legacy or shared_facts(f, c)):
                return c, ID_AS_KEY
        return None

    def near(self, f: PostFacts) -> list[CampaignRecord]:
        """Every campaign sharing a fact with the post, in key order."""
        kinds = (("slug", f.slug), ("file", f.source), ("date", f.date), ("text", f.content_hash))
        found = {c.key: c for kind, value in kinds for c in self.by.get((kind, value), ())}
        return [found[key] for key in sorted(found)]


def match(posts: Sequence[Post], campaigns: Iterable[CampaignRecord], posts_dir: Path) -> Matching:
    """Match each post to the campaign it is (see the module doc); the same verdict in any input order."""
    index = _Index(campaigns)
    ordered = sorted(posts, key=lambda p: p.slug)
    known = {p.slug: facts(p, posts_dir) for p in ordered}
    refused: dict[str, Refusal] = {}
    best: dict[str, tuple[int, list[CampaignRecord]]] = {}  # post slug -> (rank, campaigns at that rank)
    by_id: dict[str, str] = {}  # campaign key -> the post whose id names it
    for post in ordered:
        if (hit := index.by_id(known[post.slug])) is not None:
            best[post.slug] = (hit[1], [hit[0]])
            by_id[hit[0].key] = post.slug
    doubts: dict[str, list[tuple[CampaignRecord, tuple[str, ...]]]] = {}
    for post in ordered:
        f = known[post.slug]
        if post.slug in best:
            continue
        for c in index.near(f):
            shared = shared_facts(f, c)
            strength = rank(shared, c)
            if c.key in by_id:
                if strength and f.post_id is None:
                    owner = by_id[c.key]
                    refused[post.slug] = Refusal(
                        post,
                        f"{_name(f)} looks like {describe(c)}, which is now {owner!r} (by its id): is it a copy?",
                        _new_id_hint(post),
                    )
                continue
            if f.post_id is not None and c.post_id is not None:  # two ids: different posts, unless all else is the same
                if {"slug", "file"} <= set(shared) or "text" in shared:
                    refused[post.slug] = Refusal(
                        post,
                        f"{_name(known[post.slug])} has the {' and '.join(shared)} of {describe(c)} but another id ({f.post_id!r}, not {c.post_id!r})",
                        f"if it is the same post, put back  {id_line(c.post_id)}; if it is new, give it another slug and file",
                    )
                continue
            if strength:
                level, found = best.get(post.slug, (0, []))
                if strength > level:
                    best[post.slug] = (strength, [c])
                elif strength == level:
                    found.append(c)
            elif f.post_id is None and {"slug", "file", "date"} & set(shared):
                doubts.setdefault(post.slug, []).append((c, tuple(s for s in shared if s in ("slug", "file", "date"))))
    claims: dict[str, list[tuple[int, str]]] = {}
    for slug, (level, found) in best.items():
        if slug in refused:
            continue
        if len(found) > 1:
            post = next(p for p in ordered if p.slug == slug)
            refused[slug] = Refusal(
                post,
                f"{_name(known[post.slug])} looks as much like " + " as like ".join(describe(c) for c in found),
                f"add the id of the one it is to its front matter ({id_line(_id_of(found[0]))} or {id_line(_id_of(found[1]))})",
            )
            continue
        claims.setdefault(found[0].key, []).append((level, slug))
    matched: dict[str, CampaignRecord] = {}
    record_of = {c.key: c for found in (f for _, f in best.values()) for c in found}
    for key, claimants in sorted(claims.items()):
        claimants.sort(reverse=True)
        top = claimants[0][0]
        winners = [slug for level, slug in claimants if level == top]
        c = record_of[key]
        if len(winners) == 1:
            matched[winners[0]] = c
        for level, slug in claimants:
            if len(winners) == 1 and slug == winners[0]:
                continue
            post = next(p for p in ordered if p.slug == slug)
            others = ", ".join(_name(known[s]) for _, s in sorted(claimants, key=lambda c: c[1]) if s != slug)
            refused[slug] = Refusal(
                post,
                f"{_name(known[post.slug])} looks like {describe(c)} ({_RANK_WORDS[level]} the same), and so does {others}",
                f"add  {id_line(_id_of(c))}  to the one that is it; {_new_id_hint(post)}",
            )
    claimed = {c.key for c in matched.values()}
    for post in ordered:
        if post.slug in matched or post.slug in refused or known[post.slug].post_id is not None:
            continue
        if doubt := [d for d in doubts.get(post.slug, ()) if d[0].key not in claimed]:
            c, shared = doubt[0]
            refused[post.slug] = Refusal(
                post,
                f"{_name(known[post.slug])} has the {' and '.join(shared)} of {describe(c)} but nothing else: is it the same post?",
                f"if it is, add  {id_line(_id_of(c))}  to its front matter; {_new_id_hint(post)}",
            )
            continue
        f = known[post.slug]
        for c in index.legacy:
            if c.key not in claimed and f.date <= c.started_at:
                refused[post.slug] = Refusal(
                    post,
                    f"{_name(known[post.slug])} may be {describe(c)}, recorded (on {c.started_at[:10]}) before review-press kept"
                    " posts' files and dates, and no post has its slug now",
                    f"if it is, add  {id_line(c.key)}  to its front matter; {_new_id_hint(post)}",
                )
                break
    return Matching(campaigns=matched, refused=refused)
