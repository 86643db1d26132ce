"""Publishing: which posts are due, the ledger filled, every message handed to the transport.

This is the only place that sends. One run holds a lock (`.review-press/publish.lock`), puts
rows a killed run left in `sending` back to `pending` (`ledger.resume`), then for each due
post, oldest first: fills the ledger, claims batches of `batch_size` rows (committed as
`sending` before they go to a server), sends them through the pool and settles the results
in batches (committed as `sent` after the server's 250).

The in-flight bound: a batch is claimed only while claimed-but-unsettled rows stay within
`delivery.run.in_flight_limit` = max(2 * batch_size, concurrency), so a kill -9 at any instant
can leave at most that many rows in `sending`, and only those can be sent twice on the next run.
Everyone else is either settled or still `pending`: no one is missed.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .config import CONFIG_NAME, Config, load_config
from .content import Post, load_posts
from .delivery import ledger
from .delivery.maildir import MaildirConnector, outbox_path
from .delivery.run import CampaignRun, Progress, send_campaign
from .delivery.smtp import Connector, Envelope, Policy, Pool, RateLimiter, SmtpConnector
from .errors import DeliveryError
from .site import make_site
from .store import Store, parse_address
from .theme import Theme
from .tokens import make_token, site_secret, unsubscribe_url

MessageBuilder = Callable[..., bytes]
EditionMaker = Callable[[Post, Config, Theme], Any]


@dataclass(frozen=True)
class PublishReport:
    """What one run did: the posts it sent, where to, how many messages an interrupted run had
    left in flight (re-sent now), and whether Ctrl-C cut it short."""

    posts: tuple[CampaignRun, ...]
    target: str
    resumed: int = 0
    interrupted: bool = False


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


def newsletter_posts(config: Config, posts: tuple[Post, ...], now: dt.datetime) -> list[Post]:
    """Posts that go out by email, oldest first: dated on or after `since`, not drafts, not future."""
    since = config.newsletter.since
    if since is None:
        raise DeliveryError(
            "[newsletter] since is not set, so publish does not know which posts are newsletters",
            path=config.root / CONFIG_NAME,
            hint="add  since = YYYY-MM-DD  to [newsletter]: posts dated on or after it are emailed; older ones never are",
        )
    chosen = [p for p in posts if not p.draft and p.date <= now and p.date.astimezone(config.tz).date() >= since]
    return sorted(chosen, key=lambda p: (p.date, p.slug))


def chosen_posts(config: Config, posts: tuple[Post, ...], now: dt.datetime, slug: str | None = None) -> list[Post]:
    """The newsletter posts a run considers: all of them, or the one named `slug` (else `DeliveryError`)."""
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


def due_posts(config: Config, posts: tuple[Post, ...], store: Store, now: dt.datetime, slug: str | None = None) -> list[Post]:
    """Newsletter posts someone would receive if publish ran now (optionally only `slug`); writes nothing."""
    late = config.newsletter.late_joiners
    candidates = chosen_posts(config, posts, now, slug)
    return [p for p in candidates if next(ledger.would_receive(store, p.slug, late_joiners=late, batch=1), None) is not None]


def start_campaigns(config: Config, posts: tuple[Post, ...], store: Store, now: dt.datetime, slug: str | None = None) -> list[Post]:
    """Start the campaign of every chosen post not yet started (even one nobody is due: a
    reader who joins later is a late joiner), fill the ledger, and return the posts with
    pending rows, oldest first."""
    late = config.newsletter.late_joiners
    due = []
    for post in chosen_posts(config, posts, now, slug):
        fresh = ledger.campaign_started(store, post.slug) is None
        if fresh or next(ledger.would_receive(store, post.slug, late_joiners=late, batch=1), None) is not None:
            ledger.fill(store, post.slug, late_joiners=late, now=now)
        if ledger.counts(store, post.slug)["pending"]:
            due.append(post)
    return due


def message_id(slug: str, subscriber_id: int, domain: str) -> str:
    """The deterministic Message-ID of one post to one subscriber: a re-send has the same one."""
    digest = hashlib.sha256(f"{slug}\0{subscriber_id}\0{domain}".encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", slug).strip(".-")[:60] or "post"
    return f"<{safe}.{subscriber_id}.{digest}@{domain}>"


def connector_for(config: Config, environ: dict[str, str] | None = None) -> Connector:
    """The transport press.toml asks for: `[smtp]`, else the Maildir outbox. Reads the password here."""
    smtp = config.smtp
    if smtp is None:
        return MaildirConnector(outbox_path(config))
    env = os.environ if environ is None else environ
    password = ""
    if smtp.password_env:
        if smtp.password_env not in env:
            raise DeliveryError(
                f"[smtp] password_env names {smtp.password_env}, which is not set",
                path=config.root / CONFIG_NAME,
                hint=f"export {smtp.password_env}=... before publishing",
            )
        password = env[smtp.password_env]
    return SmtpConnector(
        host=smtp.host,
        port=smtp.port,
        username=smtp.username,
        password=password,
        starttls=smtp.starttls,
        ssl=smtp.ssl,
        timeout=smtp.timeout,
    )


def _sender(config: Config) -> tuple[str, str]:
    """(envelope sender, Message-ID domain) from `[newsletter] from`."""
    if not config.newsletter.from_address:
        raise DeliveryError("[newsletter] from is not set", path=config.root / CONFIG_NAME, hint='add  from = "Name <letters@example.org>"')
    envelope = parse_address(config.newsletter.from_address).envelope
    return envelope, envelope.rsplit("@", 1)[1]


def renderer(
    config: Config, edition: Any, secret: bytes, build: MessageBuilder, sign: Callable[[bytes], bytes] | None
) -> Callable[[ledger.Claim], Envelope]:
    """The function a sending thread calls to turn a claim into MIME bytes (DKIM-signed if configured)."""
    news = config.newsletter
    sender, _ = _sender(config)

    def render(claim: ledger.Claim) -> Envelope:
        data = build(
            edition,
            to_name=claim.name,
            to_address=claim.envelope,  # ASCII (punycode domain) unless the local part needs SMTPUTF8
            from_name=news.from_name,
            from_address=news.from_address,
            reply_to=news.reply_to,
            list_id=news.list_id,
            unsubscribe_url=unsubscribe_url(config, make_token(secret, claim.subscriber_id)),
            unsubscribe_mailto=news.unsubscribe_mailto,
            message_id=claim.message_id,
            date=dt.datetime.now(dt.UTC),
        )
        return Envelope(sender, claim.envelope, sign(data) if sign else data, smtputf8=not claim.envelope.isascii())

    return render


@contextmanager
def publish_lock(config: Config) -> Iterator[None]:
    """Hold the site's publish lock; a second `publish` at the same time is refused."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    with open(config.state_dir / "publish.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeliveryError("another publish of this site is running", hint="wait for it to finish, or stop it with Ctrl-C") from None
        yield


def _site(root: Path, now: dt.datetime) -> tuple[Config, tuple[Post, ...], Theme]:
    config = load_config(root)
    site = make_site(config, load_posts(config), now=now)
    return config, site.posts, Theme.for_site(config.templates_dir, site=site, config=config)


def _tools(options: PublishOptions) -> tuple[EditionMaker, MessageBuilder]:
    make, build = options.make_edition, options.build_message
    if make is None:
        from .edition import make_edition as make
    if build is None:
        from .delivery.message import build_message as build
    return make, build


def publish(root: Path, options: PublishOptions = PublishOptions(), progress: Callable[[Progress], None] | None = None) -> PublishReport:
    """Send every due post (or `options.slug`) to everyone still due it; see the module doc.

    Ctrl-C stops after the messages in flight and returns with `interrupted=True`. A run
    that the circuit breaker stops raises `DeliveryError` saying why; unsent rows stay pending.
    """
    from .delivery.dkim import signer_for

    now = _now(options)
    config, posts, theme = _site(root, now)
    make, build = _tools(options)
    connector = options.connector or connector_for(config, options.environ)
    concurrency = config.smtp.concurrency if config.smtp else 1
    policy = options.policy or Policy(max_attempts=config.smtp.max_attempts if config.smtp else 3)
    sign = signer_for(config)
    _, domain = _sender(config)  # every check that can fail does so before a campaign starts
    newsletter_posts(config, posts, now)
    reports: list[CampaignRun] = []
    with publish_lock(config), Store.for_site(config) as store:
        resumed = ledger.resume(store)
        if options.retry_failed:
            for post in chosen_posts(config, posts, now, options.slug):
                ledger.requeue_failed(store, post.slug)
        due = start_campaigns(config, posts, store, now, options.slug)
        if not due:
            return PublishReport(posts=(), target=connector.describe(), resumed=resumed)
        secret = site_secret(config)
        smtp = config.smtp
        limiter = RateLimiter(
            smtp.rate_per_second if smtp else 0.0,
            smtp.rate_per_hour if smtp else 0,
            used_this_hour=ledger.sent_since(store, now - dt.timedelta(hours=1)) if smtp and smtp.rate_per_hour else 0,
        )
        for post in due:
            edition = make(post, config, theme)
            subject = getattr(edition, "subject", post.title)
            pool = Pool(connector, concurrency, policy, limiter)
            done = send_campaign(
                store,
                post.slug,
                subject,
                pool,
                renderer(config, edition, secret, build, sign),
                partial(message_id, post.slug, domain=domain),
                options.batch_size,
                progress,
            )
            reports.append(done)
            if pool.breaker.tripped:
                raise DeliveryError(
                    f"stopped sending {post.slug!r}: {pool.breaker.tripped}; {done.sent} sent in this run, the rest stay pending",
                    hint=f"check {connector.describe()}, then run publish again to continue",
                )
            if pool.stopping.is_set():
                return PublishReport(posts=tuple(reports), target=connector.describe(), resumed=resumed, interrupted=True)
    return PublishReport(posts=tuple(reports), target=connector.describe(), resumed=resumed)


def dry_run(root: Path, slug: str | None = None, now: dt.datetime | None = None) -> Iterator[Planned]:
    """Everyone a publish would send each due post to, streamed; sends and records nothing."""
    now = now or dt.datetime.now(dt.UTC)
    config, posts, _ = _site(root, now)
    with Store.for_site(config) as store:
        for post in due_posts(config, posts, store, now, slug):
            subject = post.subject or post.title
            for _, address, name in ledger.would_receive(store, post.slug, late_joiners=config.newsletter.late_joiners):
                yield Planned(post.slug, subject, address, name)


def send_test(root: Path, to: str, options: PublishOptions = PublishOptions()) -> str:
    """Send one post (`options.slug`, else the newest newsletter post) to `to` alone; the ledger is untouched.

    Returns the server's reply.
    """
    from .delivery.dkim import signer_for

    now = _now(options)
    config, posts, theme = _site(root, now)
    candidates = newsletter_posts(config, posts, now)
    if options.slug is not None:
        candidates = [p for p in candidates if p.slug == options.slug]
    if not candidates:
        raise DeliveryError("no newsletter post to send" + (f" with slug {options.slug!r}" if options.slug else ""))
    try:
        address = parse_address(to)
    except ValueError as exc:
        raise DeliveryError(f"{to!r}: {exc}") from None
    make, build = _tools(options)
    post = candidates[-1]
    _, domain = _sender(config)
    render = renderer(config, make(post, config, theme), site_secret(config), build, signer_for(config))
    test_id = f"<{re.sub(r'[^A-Za-z0-9.-]+', '-', post.slug)}.test.{os.urandom(6).hex()}@{domain}>"
    envelope = render(ledger.Claim(0, address.address, address.envelope, "", test_id))
    connection = (options.connector or connector_for(config, options.environ)).open()
    try:
        return connection.send(envelope)
    except Exception as exc:
        raise DeliveryError(f"the test message to {address.address} was refused: {exc}") from None
    finally:
        connection.close()


def publish_status(root: Path) -> list[ledger.PostStatus]:
    """Every campaign with its sent / pending / failed / bounced counts."""
    config = load_config(root)
    with Store.for_site(config) as store:
        return ledger.status(store)
