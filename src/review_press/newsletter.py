"""The newsletter's rules, each in one place: who sends, which posts are newsletters,
Message-IDs, and the links every email carries.

The build's preview (`out/email/<slug>/email.eml`), `publish` (and its test send) and the web
app's confirmation email all ask this module, so what a writer previews is what is sent.

- The sender (`sender`): `[newsletter] from`, with its display name, else the site's title;
  the envelope sender is its address (punycode domain), and Message-IDs use that domain.
- A newsletter post (`is_newsletter`): dated (in the site's timezone) on or after
  `[newsletter] since`, not a draft, and not in the future. Drafts and future posts are never
  mailed, so the build makes no email files for them either (`preview` renders any post).
- Message-IDs (`message_id`): `<label.part.hex12@domain>` for every kind.
- The return path (`return_paths`): a signed VERP address per message under `[newsletter]
  bounce_address`, else the sender's address.
- Links (`unsubscribe_url`, `manage_url`, `confirm_url`, `require_web_url`): under `[web] url`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from .bounces import verp
from .config import CONFIG_NAME, Config
from .content import Post
from .errors import DeliveryError
from .tokens import keyed_digest, purpose_key

if TYPE_CHECKING:
    from .store.ledger import Audience

MessageKind = Literal["campaign", "test", "preview", "confirm"]


@dataclass(frozen=True)
class Sender:
    """Who a newsletter or confirmation email is from."""

    name: str  # the From display name: `[newsletter] from`'s name, else the site title
    address: str  # as written in press.toml (a Unicode domain kept)
    envelope: str  # the SMTP envelope sender (punycode domain)
    domain: str  # the Message-ID domain: the envelope sender's
    reply_to: str
    list_id: str
    unsubscribe_mailto: str


def sender(config: Config, *, preview: bool = False) -> Sender:
    """The sender from `[newsletter] from` (`DeliveryError` when it is not set).

    With `preview` (the build's placeholder .eml), a site without one gets the author's address,
    else `newsletter@<base_url host>`, so a build never fails for want of a sender.
    """
    news = config.newsletter
    address = news.from_address
    if not address:
        if not preview:
            raise DeliveryError(
                "[newsletter] from is not set", path=config.root / CONFIG_NAME, hint='add  from = "Name <letters@example.org>"'
            )
        address = config.author.email or f"newsletter@{urlsplit(config.base_url).hostname or 'localhost'}"
    from .store import parse_address  # the store's modules: imported when an address is read

    envelope = parse_address(address).envelope
    return Sender(
        name=news.from_name or config.title,
        address=address,
        envelope=envelope,
        domain=envelope.rsplit("@", 1)[1],
        reply_to=news.reply_to,
        list_id=news.list_id,
        unsubscribe_mailto=news.unsubscribe_mailto,
    )


def require_since(config: Config) -> dt.date:
    """`[newsletter] since`; `DeliveryError` without it (publish would not know what to send)."""
    since = config.newsletter.since
    if since is None:
        raise DeliveryError(
            "[newsletter] since is not set, so publish does not know which posts are newsletters",
            path=config.root / CONFIG_NAME,
            hint="add  since = YYYY-MM-DD  to [newsletter]: posts dated on or after it are emailed; older ones never are",
        )
    return since


def is_newsletter(post: Post, config: Config, now: dt.datetime) -> bool:
    """Whether `post` is mailed: dated (site timezone) on or after `since`, not a draft, not after `now`."""
    since = config.newsletter.since
    return since is not None and not post.draft and post.date <= now and post.date.astimezone(config.tz).date() >= since


def newsletter_posts(config: Config, posts: Iterable[Post], now: dt.datetime) -> list[Post]:
    """The newsletter posts among `posts`, oldest first (none when `since` is not set)."""
    return sorted((p for p in posts if is_newsletter(p, config, now)), key=lambda p: (p.date, p.slug))


def post_topics(config: Config, post: Post) -> tuple[str, ...]:
    """The `[newsletter] topics` a post carries among its tags (compared case-insensitively, named
    as press.toml spells them, in its order); none: the post is for every reader."""
    tags = {t.casefold() for t in post.tags}
    return tuple(t for t in config.newsletter.topics if t.casefold() in tags)


def audience(config: Config, post: Post) -> Audience:
    """Who the post's campaign is for (`ledger.Audience`): its topics among those offered."""
    from .store.ledger import Audience  # the store's modules: imported when a campaign is filled

    return Audience(post_topics(config, post), config.newsletter.topics)


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip(".-")[:60] or "post"


def message_id(kind: MessageKind, domain: str, *, slug: str = "", subscriber_id: int = 0, seed: str = "", secret: bytes = b"") -> str:
    """A Message-ID, `<label.part.hex12@domain>` for every kind.

    campaign: one post (`slug`, the campaign key) to one subscriber, deterministic (a re-send has
    the same one), its hex12 an HMAC under a key derived from the site `secret`: a bounce or
    complaint naming it is about a message we sent, since no one else can make one (`bounces`);
    preview: the build's .eml of `slug`, deterministic from `seed`; test: a test send of `slug`, random;
    confirm: a confirmation email, random.
    """
    if kind == "campaign":
        return campaign_message_ids(slug, domain, secret)(subscriber_id)
    if kind == "preview":
        digest = hashlib.sha256(f"{slug}\0{seed}".encode()).hexdigest()[:12]
        return f"<{_label(slug)}.preview.{digest}@{domain}>"
    if kind == "test":
        return f"<{_label(slug)}.test.{os.urandom(6).hex()}@{domain}>"
    if kind == "confirm":
        return f"<confirm.{os.urandom(4).hex()}.{os.urandom(6).hex()}@{domain}>"
    raise ValueError(f"unknown Message-ID kind {kind!r}")


def campaign_message_id(key: str, subscriber_id: int, domain: str, secret: bytes) -> str:
    """The Message-ID of campaign `key` to one subscriber (`message_id`, kind campaign)."""
    return message_id("campaign", domain, slug=key, subscriber_id=subscriber_id, secret=secret)


def campaign_message_ids(key: str, domain: str, secret: bytes) -> Callable[[int], str]:
    """The Message-IDs of campaign `key`, by subscriber id (`message_id`, kind campaign): the
    label, the derived key and the domain made once, for a sender that claims thousands a second."""
    if not secret:
        raise ValueError("a campaign Message-ID needs the site secret")
    derived, label, tail = purpose_key(secret, b"campaign message-id"), _label(key), f"\0{domain}".encode()
    head = f"{key}\0".encode()

    def make(subscriber_id: int) -> str:
        digest = keyed_digest(derived, head + str(subscriber_id).encode() + tail).hex()[:12]
        return f"<{label}.{subscriber_id}.{digest}@{domain}>"

    return make


def return_paths(config: Config, secret: bytes, key: str | None) -> Callable[[int], str]:
    """The envelope sender of campaign `key`'s message to each reader (by subscriber id), where its
    bounces go: the signed VERP address under `[newsletter] bounce_address` when set
    (`bounces.verp`), else (and for a message outside any campaign, `key` None: a test send) the
    sender's own address. Made once per campaign: a sender asks it for every message."""
    bounce_address = config.newsletter.bounce_address
    if bounce_address and key is not None:
        return partial(verp.return_path, bounce_address, secret, key)
    envelope = sender(config).envelope
    return lambda subscriber_id: envelope


def require_web_url(config: Config) -> str:
    """`[web] url`, where the unsubscribe links in every email lead; `DeliveryError` without one
    (the site alone is static: a link there would 404, and a reader could not leave)."""
    if not config.web.url:
        raise DeliveryError(
            "[web] url is not set, so the unsubscribe link in every email would lead nowhere",
            path=config.root / CONFIG_NAME,
            hint='run `review-press web` (see README, "Subscriptions on the web") and add  [web] url = "https://your-site/newsletter/"',
        )
    return config.web.url


def web_base(config: Config) -> str:
    """The base of every emailed link, ending in `/`: `[web] url`, else the site's newsletter/ (previews only)."""
    base = config.web.url or config.url("newsletter/")
    return base if base.endswith("/") else base + "/"


def confirm_url(config: Config, token: str) -> str:
    """The double opt-in link mailed to a signup: `web_base` + `confirm/<token>` (the app checks `[web] url` first)."""
    return f"{web_base(config)}confirm/{token}"


def unsubscribe_url(config: Config, token: str) -> str:
    """The one-click unsubscribe URL for a token: `web_base` + `unsubscribe?token=`."""
    return f"{web_base(config)}unsubscribe?token={token}"


def manage_url(config: Config, token: str) -> str:
    """The reader's manage-your-subscription page (topics, every post or weekly): `web_base` +
    `manage?token=`, with the same token as their unsubscribe link."""
    return f"{web_base(config)}manage?token={token}"
