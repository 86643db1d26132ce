"""Campaigns: which newsletter posts a run considers, the campaign each one is (by post
identity), which may be sent (the email-lint verdict), starting and filling them, and the
function that turns a claimed ledger row into the message a sender hands to a server.

`publish` (the first sender, which also starts campaigns) and every joining sender (`worker`)
call these, so each reader's message is the same whichever process sends it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import identity
from .config import Config
from .content import Post
from .delivery.smtp import Envelope
from .errors import DeliveryError, PressError
from .identity import Refusal
from .newsletter import audience, manage_url, newsletter_posts, require_since, return_paths, sender, unsubscribe_url
from .store import Store, ledger
from .theme import Theme
from .tokens import make_token

MessageBuilder = Callable[..., bytes]
EditionMaker = Callable[[Post, Config, Theme], Any]


def chosen_posts(config: Config, posts: tuple[Post, ...], now: dt.datetime, slug: str | None = None) -> list[Post]:
    """The newsletter posts a run considers: all of them, or the one named `slug` (else `DeliveryError`)."""
    require_since(config)
    candidates = newsletter_posts(config, posts, now)
    if slug is None:
        return candidates
    candidates = [p for p in candidates if p.slug == slug]
    if not candidates:
        raise DeliveryError(
            f"no newsletter post with slug {slug!r}",
            hint=f"a post is mailed when it is not a draft, not in the future and dated on or after {config.newsletter.since}",
        )
    return candidates


@dataclass(frozen=True)
class Campaign:
    """A newsletter post and the key of its campaign in the ledger (None: never started)."""

    post: Post
    key: str | None


@dataclass(frozen=True)
class Campaigns:
    """The newsletter posts a run considers, each with its campaign, and those refused because
    their identity is in doubt (see `identity`): a refused post is not sent, the others are."""

    chosen: tuple[Campaign, ...]
    refused: tuple[Refusal, ...]


def identify(
    config: Config,
    posts: tuple[Post, ...],
    store: Store,
    now: dt.datetime,
    slug: str | None = None,
    matching: identity.Matching | None = None,
) -> Campaigns:
    """Match the chosen newsletter posts (all of them, or `slug`) to their campaigns by post identity.

    `posts` must be every post of the site (drafts and future ones too), so that a copy of a
    sent post is noticed wherever it is. Writes nothing.
    """
    matching = matching or identity.match(posts, ledger.campaigns(store), config.posts_dir)
    chosen, refused = [], []
    for post in chosen_posts(config, posts, now, slug):
        if (refusal := matching.refused.get(post.slug)) is not None:
            refused.append(refusal)
        else:
            record = matching.campaign_of(post)
            chosen.append(Campaign(post, record.key if record else None))
    return Campaigns(tuple(chosen), tuple(refused))


@dataclass(frozen=True)
class EmailRefusal(Refusal):
    """A post not sent because its email edition breaks a lint rule: `problems` are the errors
    (`EmailProblem`s, each at its file:line); `message` and `hint` are the first one's."""

    problems: tuple[PressError, ...] = ()


@dataclass(frozen=True)
class Judged:
    """The chosen campaigns that may be sent, the editions of those with someone to send to, and their warnings."""

    campaigns: Campaigns
    editions: dict[str, Any]  # post slug -> its edition, made once and judged mailable
    warnings: tuple[PressError, ...]


def has_recipients(config: Config, campaign: Campaign, store: Store) -> bool:
    """Whether a run could send this campaign anything: a post never started, or one with
    messages pending or readers still due it."""
    if campaign.key is None:
        return True
    if ledger.counts(store, campaign.key)["pending"]:
        return True
    late, owed = config.newsletter.late_joiners, audience(config, campaign.post)
    return next(ledger.would_receive(store, campaign.key, late_joiners=late, batch=1, audience=owed), None) is not None


def refuse_unmailable(config: Config, theme: Theme, campaigns: Campaigns, store: Store, make: EditionMaker) -> Judged:
    """Judge the email of every chosen post a run could send (`lint.judge`, the one verdict the
    build and `check` use too): a post whose email breaks a lint rule is refused, so its campaign
    is neither started nor continued, and the others go on. Posts with nobody left to send to are
    not rendered at all."""
    from .edition.lint import judge

    chosen, refused, editions, warnings = [], list(campaigns.refused), {}, []
    for campaign in campaigns.chosen:
        if has_recipients(config, campaign, store):
            edition = make(campaign.post, config, theme)
            verdict = judge(edition, campaign.post)
            if not verdict.mailable:
                first = verdict.errors[0]
                refused.append(EmailRefusal(campaign.post, first.message, first.hint or "", problems=verdict.errors))
                continue
            editions[campaign.post.slug] = edition
            warnings.extend(verdict.warnings)
        chosen.append(campaign)
    return Judged(Campaigns(tuple(chosen), tuple(refused)), editions, tuple(warnings))


def start_campaigns(config: Config, campaigns: Campaigns, store: Store, now: dt.datetime) -> list[Campaign]:
    """Start the campaign of every chosen post not yet started (even one nobody is due: a
    reader who joins later is a late joiner), record where each post lives now (so a renamed
    post keeps its campaign and its old URL), fill the ledger, and return the campaigns with
    pending rows, oldest first."""
    late = config.newsletter.late_joiners
    due = []
    for campaign in campaigns.chosen:
        post, facts, owed = campaign.post, identity.facts(campaign.post, config.posts_dir), audience(config, campaign.post)
        if campaign.key is None:
            key = ledger.start_campaign(store, facts, post.content_hash, now=now, topics=owed.topics)
            ledger.fill(store, key, late_joiners=late, now=now, audience=owed)
        else:
            key = campaign.key
            ledger.adopt(store, key, facts, topics=owed.topics)
            if next(ledger.would_receive(store, key, late_joiners=late, batch=1, audience=owed), None) is not None:
                ledger.fill(store, key, late_joiners=late, now=now, audience=owed)
        if ledger.counts(store, key)["pending"]:
            due.append(Campaign(post, key))
    return due


def renderer(
    config: Config,
    edition_for: Callable[[ledger.Claim], Any],
    secret: bytes,
    build: MessageBuilder,
    sign: Callable[[bytes], bytes] | None,
    key: str | None,
) -> Callable[[ledger.Claim], Envelope]:
    """The function a sending thread calls to turn a claim of campaign `key` (None: a test send)
    into MIME bytes (DKIM-signed if configured) and the envelope (`newsletter.return_paths`);
    `edition_for` gives the edition the claim's reader gets (one for all, but a digest's depends
    on the reader's topics)."""
    who = sender(config)
    envelope_from = return_paths(config, secret, key)

    def render(claim: ledger.Claim) -> Envelope:
        data = build(
            edition_for(claim),
            to_name=claim.name,
            to_address=claim.envelope,  # ASCII (punycode domain) unless the local part needs SMTPUTF8
            from_name=who.name,
            from_address=who.address,
            reply_to=who.reply_to,
            list_id=who.list_id,
            unsubscribe_url=unsubscribe_url(config, token := make_token(secret, claim.subscriber_id)),
            manage_url=manage_url(config, token),
            unsubscribe_mailto=who.unsubscribe_mailto,
            message_id=claim.message_id,
            date=dt.datetime.now(dt.UTC),
        )
        return Envelope(
            envelope_from(claim.subscriber_id), claim.envelope, sign(data) if sign else data, smtputf8=not claim.envelope.isascii()
        )

    return render
