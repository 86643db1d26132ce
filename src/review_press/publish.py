"""Publishing: which posts are due, the ledger filled, every message handed to the transport.

This is the only place that sends. One run holds a lock (`.review-press/publish.lock`), puts
rows a killed run left in `sending` back to `pending` (`ledger.resume`), then for each due
post, oldest first: fills the ledger, claims batches of `batch_size` rows (committed as
`sending` before they go to a server), sends them through the pool and settles the results
in batches (committed as `sent` after the server's 250). A post whose email breaks a lint rule
(the verdict `build` and `check` report) is refused before its campaign starts, and the others
are sent (`refuse_unmailable`).

The in-flight bound: a batch is claimed only while claimed-but-unsettled rows stay within
`delivery.run.in_flight_limit` = max(2 * batch_size, concurrency), so a kill -9 at any instant
can leave at most that many rows in `sending`, and only those can be sent twice on the next run.
Everyone else is either settled or still `pending`: no one is missed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from . import identity
from .config import Config, load_config
from .content import Post, load_posts
from .delivery import ledger
from .delivery.connect import connector_for
from .delivery.maildir import clean_tmp, outbox_path
from .delivery.run import CampaignRun, Progress, StopRequest, send_campaign, stop_on_signals
from .delivery.smtp import Connector, Envelope, Policy, Pool, RateLimiter
from .errors import DeliveryError, PressError, write_error
from .identity import Refusal
from .newsletter import message_id, newsletter_posts, require_since, require_web_url, sender, unsubscribe_url
from .site import make_site, scheduled
from .statedir import private_dir
from .store import Store, parse_address
from .theme import Theme
from .tokens import make_token, site_secret

MessageBuilder = Callable[..., bytes]
EditionMaker = Callable[[Post, Config, Theme], Any]


@dataclass(frozen=True)
class PublishReport:
    """What one run did: the posts it sent, where to, how many messages an interrupted run had
    left in flight (`resumed`, re-sent now), how many an earlier run had deferred (`retried`:
    temporary failures, tried again now), and whether a signal cut it short (`interrupted`;
    `signum` is SIGINT for Ctrl-C, SIGTERM from systemd, docker stop or timeout)."""

    posts: tuple[CampaignRun, ...]
    target: str
    resumed: int = 0
    interrupted: bool = False
    refused: tuple[Refusal, ...] = ()  # posts not sent: their identity is in doubt, or their email breaks a lint rule
    retried: int = 0
    signum: int | None = None
    warnings: tuple[PressError, ...] = ()  # email-lint warnings of the posts sent (an http: link): sent all the same

    @property
    def failed(self) -> int:
        """Messages refused permanently in this run (not bounces): `--retry-failed` tries them again."""
        return sum(p.failed for p in self.posts)

    @property
    def deferred(self) -> int:
        """Messages this run deferred (temporary failures): the next plain run retries them."""
        return sum(p.deferred for p in self.posts)


class SendingStopped(DeliveryError):
    """The circuit breaker stopped a run: the server refused nearly everything. `report` holds
    what the run did until then (the CLI prints it before the error)."""

    def __init__(self, message: str, *, hint: str | None = None, report: PublishReport | None = None, **kw: Any) -> None:
        super().__init__(message, hint=hint, **kw)
        self.report = report


@dataclass(frozen=True)
class PublishOptions:
    """How to publish. `connector`, `make_edition` and `build_message` are for tests and benchmarks."""

    slug: str | None = None
    batch_size: int = 100
    retry_failed: bool = False
    now: dt.datetime | None = None
    policy: Policy | None = None
    connector: Connector | None = None
    make_edition: EditionMaker | None = None
    build_message: MessageBuilder | None = None
    environ: dict[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Planned:
    """One message a publish would send (dry run)."""

    slug: str
    subject: str
    address: str
    name: str


def _now(options: PublishOptions) -> dt.datetime:
    return options.now or dt.datetime.now(dt.UTC)


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
    return next(ledger.would_receive(store, campaign.key, late_joiners=config.newsletter.late_joiners, batch=1), None) is not None


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
        post, facts = campaign.post, identity.facts(campaign.post, config.posts_dir)
        if campaign.key is None:
            key = ledger.start_campaign(store, facts, post.content_hash, now=now)
            ledger.fill(store, key, late_joiners=late, now=now)
        else:
            key = campaign.key
            ledger.adopt(store, key, facts)
            if next(ledger.would_receive(store, key, late_joiners=late, batch=1), None) is not None:
                ledger.fill(store, key, late_joiners=late, now=now)
        if ledger.counts(store, key)["pending"]:
            due.append(Campaign(post, key))
    return due


def campaign_message_id(key: str, subscriber_id: int, domain: str) -> str:
    """The Message-ID of campaign `key` to one subscriber (`newsletter.message_id`, kind campaign)."""
    return message_id("campaign", domain, slug=key, subscriber_id=subscriber_id)


def renderer(
    config: Config, edition: Any, secret: bytes, build: MessageBuilder, sign: Callable[[bytes], bytes] | None
) -> Callable[[ledger.Claim], Envelope]:
    """The function a sending thread calls to turn a claim into MIME bytes (DKIM-signed if configured)."""
    who = sender(config)

    def render(claim: ledger.Claim) -> Envelope:
        data = build(
            edition,
            to_name=claim.name,
            to_address=claim.envelope,  # ASCII (punycode domain) unless the local part needs SMTPUTF8
            from_name=who.name,
            from_address=who.address,
            reply_to=who.reply_to,
            list_id=who.list_id,
            unsubscribe_url=unsubscribe_url(config, make_token(secret, claim.subscriber_id)),
            unsubscribe_mailto=who.unsubscribe_mailto,
            message_id=claim.message_id,
            date=dt.datetime.now(dt.UTC),
        )
        return Envelope(who.envelope, claim.envelope, sign(data) if sign else data, smtputf8=not claim.envelope.isascii())

    return render


@contextmanager
def publish_lock(config: Config) -> Iterator[None]:
    """Hold the site's publish lock; a second `publish` at the same time is refused."""
    path = private_dir(config.state_dir) / "publish.lock"
    try:
        f = open(path, "w")  # noqa: SIM115 - closed below, after the lock is released
    except OSError as exc:
        raise write_error(path, exc) from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeliveryError("another publish of this site is running", hint="wait for it to finish, or stop it with Ctrl-C") from None
        yield


def _site(root: Path, now: dt.datetime) -> tuple[Config, tuple[Post, ...], Theme]:
    """The site's config, every post (drafts and future ones too: identity needs them all) and theme."""
    config = load_config(root)
    posts = load_posts(config)
    site = make_site(config, posts, now=now)
    return config, posts, Theme.for_site(config.templates_dir, site=site, config=config)


def _tools(options: PublishOptions) -> tuple[EditionMaker, MessageBuilder]:
    make, build = options.make_edition, options.build_message
    if make is None:
        from .edition import make_edition as make
    if build is None:
        from .delivery.message import build_message as build
    return make, build


def publish(root: Path, options: PublishOptions = PublishOptions(), progress: Callable[[Progress], None] | None = None) -> PublishReport:
    """Send every due post (or `options.slug`) to everyone still due it; see the module doc.

    Rows an earlier run deferred go back to `pending` first and are retried (`retried`).
    SIGINT (Ctrl-C) or SIGTERM stops it after the messages in flight (handlers installed for the
    run's duration when it runs on the main thread): it returns with `interrupted=True` and the
    signal in `signum`. A run that the circuit breaker stops raises `SendingStopped` (a
    `DeliveryError`) saying why; this run's failures become deferred, unsent rows stay pending.
    """
    from .delivery.dkim import signer_for

    now = _now(options)
    config, posts, theme = _site(root, now)
    make, build = _tools(options)
    connector = options.connector or connector_for(config, options.environ)
    concurrency = config.smtp.concurrency if config.smtp else 1
    policy = options.policy or Policy(max_attempts=config.smtp.max_attempts if config.smtp else 3)
    sign = signer_for(config)
    domain = sender(config).domain  # every check that can fail does so before a campaign starts
    require_web_url(config)
    require_since(config)
    reports: list[CampaignRun] = []
    stop = StopRequest()
    with publish_lock(config), Store.for_site(config) as store, stop_on_signals(stop):
        resumed = ledger.resume(store)
        if options.connector is None and config.smtp is None:
            clean_tmp(outbox_path(config))  # what a killed run left half-written in outbox/tmp/
        campaigns = identify(config, posts, store, now, options.slug)
        if options.retry_failed:
            for campaign in campaigns.chosen:
                if campaign.key is not None:
                    ledger.requeue_failed(store, campaign.key)
        retried = sum(ledger.requeue_deferred(store, c.key) for c in campaigns.chosen if c.key is not None)
        judged = refuse_unmailable(config, theme, campaigns, store, make)
        campaigns = judged.campaigns

        def report() -> PublishReport:
            return PublishReport(
                posts=tuple(reports),
                target=connector.describe(),
                resumed=resumed,
                interrupted=stop.is_set(),
                refused=campaigns.refused,
                retried=retried,
                signum=stop.signum,
                warnings=judged.warnings,
            )

        due = start_campaigns(config, campaigns, store, now)
        if not due:
            return report()
        secret = site_secret(config)
        smtp = config.smtp
        limiter = RateLimiter(
            smtp.rate_per_second if smtp else 0.0,
            smtp.rate_per_hour if smtp else 0,
            used_this_hour=ledger.sent_since(store, now - dt.timedelta(hours=1)) if smtp and smtp.rate_per_hour else 0,
        )
        for campaign in due:
            if stop.is_set():
                break
            post, key = campaign.post, campaign.key
            assert key is not None
            edition = judged.editions.get(post.slug) or make(post, config, theme)
            subject = getattr(edition, "subject", post.title)
            pool = Pool(connector, concurrency, policy, limiter)
            done = send_campaign(
                store,
                key,
                subject,
                pool,
                renderer(config, edition, secret, build, sign),
                partial(campaign_message_id, key, domain=domain),
                options.batch_size,
                progress,
                stop,
            )
            reports.append(dataclasses.replace(done, slug=post.slug))  # the post's slug now, not the campaign's key
            if done.stopped:
                where, left = connector.describe(), ledger.counts(store, key)["pending"]
                raise SendingStopped(
                    f"stopped sending {post.slug!r}: {done.stopped}; {where} refuses nearly everything."
                    f" In this run: {done.sent} sent, {done.deferred} deferred (to retry), {left} not tried yet",
                    hint=f"check {where}; once it accepts mail, run publish again: it retries the deferred and sends the rest",
                    report=report(),
                )
            if stop.is_set():
                break
        return report()


def dry_run(root: Path, slug: str | None = None, now: dt.datetime | None = None) -> Iterator[Planned | Refusal]:
    """Everyone a publish would send each post to, streamed, then the posts it would refuse; sends and records nothing."""
    from .edition import make_edition

    now = now or dt.datetime.now(dt.UTC)
    config, posts, theme = _site(root, now)
    with Store.for_site(config) as store:
        campaigns = refuse_unmailable(config, theme, identify(config, posts, store, now, slug), store, make_edition).campaigns
        for campaign in campaigns.chosen:
            post = campaign.post
            for _, address, name in ledger.would_receive(store, campaign.key, late_joiners=config.newsletter.late_joiners):
                yield Planned(post.slug, post.subject or post.title, address, name)
        yield from campaigns.refused


def send_test(root: Path, to: str, options: PublishOptions = PublishOptions()) -> str:
    """Send one post (`options.slug`, else the newest newsletter post) to `to` alone; the ledger is untouched.

    Returns the server's reply.
    """
    from .delivery.dkim import signer_for

    now = _now(options)
    config, posts, theme = _site(root, now)
    require_since(config)
    candidates = newsletter_posts(config, posts, now)
    if options.slug is not None:
        candidates = [p for p in candidates if p.slug == options.slug]
    if not candidates:
        raise DeliveryError("no newsletter post to send" + (f" with slug {options.slug!r}" if options.slug else ""))
    try:
        address = parse_address(to)
    except ValueError as exc:
        raise DeliveryError(f"{to!r}: {exc}") from None
    require_web_url(config)
    make, build = _tools(options)
    post = candidates[-1]
    render = renderer(config, make(post, config, theme), site_secret(config), build, signer_for(config))
    test_id = message_id("test", sender(config).domain, slug=post.slug)
    envelope = render(ledger.Claim(0, address.address, address.envelope, "", test_id))
    connection = (options.connector or connector_for(config, options.environ)).open()
    try:
        return connection.send(envelope)
    except Exception as exc:
        raise DeliveryError(f"the test message to {address.address} was refused: {exc}") from None
    finally:
        connection.close()


@dataclass(frozen=True)
class SentPost:
    """One campaign in `status`: its ledger counts and the post it is now (None: the file is gone)."""

    ledger: ledger.PostStatus
    post: Post | None
    edited: bool  # title, subject or body changed since it first went out
    old_slugs: tuple[str, ...]  # slugs it went out under before its current one (their URLs redirect)


@dataclass(frozen=True)
class StatusReport:
    """What `status` shows: sent campaigns, newsletter posts not sent yet, scheduled posts, refused ones."""

    sent: tuple[SentPost, ...]
    unsent: tuple[Post, ...]
    scheduled: tuple[Post, ...]
    refused: tuple[Refusal, ...]


def publish_status(root: Path, now: dt.datetime | None = None) -> StatusReport:
    """Every campaign with its counts, matched to the post it is now; newsletter posts not yet
    sent; posts scheduled for later; posts a publish would refuse. Writes nothing."""
    now = now or dt.datetime.now(dt.UTC)
    config = load_config(root)
    posts = load_posts(config)
    with Store.for_site(config) as store:
        records = ledger.campaigns(store)
        counts = {s.slug: s for s in ledger.status(store)}
        matching = identity.match(posts, records, config.posts_dir)
        campaigns = identify(config, posts, store, now, matching=matching) if config.newsletter.since else Campaigns((), ())
    post_of = {record.key: post for post in posts if (record := matching.campaign_of(post)) is not None}
    sent = []
    for record in sorted(records, key=lambda r: (r.started_at, r.key)):
        post = post_of.get(record.key)
        sent.append(
            SentPost(
                ledger=counts[record.key],
                post=post,
                edited=post is not None and record.content_hash is not None and post.content_hash != record.content_hash,
                old_slugs=tuple(s for s in record.slugs if post is None or s != post.slug),
            )
        )
    unsent = tuple(c.post for c in campaigns.chosen if c.key is None)
    return StatusReport(tuple(sent), unsent, scheduled(posts, now), campaigns.refused)
