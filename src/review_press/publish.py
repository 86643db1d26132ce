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
import multiprocessing
import os
import queue
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from . import identity
from .campaigns import (
    Campaign,
    Campaigns,
    EditionMaker,
    MessageBuilder,
    campaign_message_id,
    identify,
    refuse_unmailable,
    renderer,
    start_campaigns,
)
from .config import Config, load_config
from .content import Post, load_posts
from .delivery.connect import connector_for
from .delivery.maildir import clean_tmp, outbox_path
from .delivery.run import CampaignRun, Progress, StopRequest, send_campaign, stop_on_signals
from .delivery.smtp import Connector, Policy, Pool, RateLimiter
from .errors import DeliveryError, PressError, write_error
from .identity import Refusal
from .newsletter import message_id, newsletter_posts, require_since, require_web_url, sender
from .site import make_site, scheduled
from .statedir import private_dir
from .store import Store, ledger, open_store, parse_address
from .theme import Theme
from .tokens import site_secret


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
    workers: int = 1  # sending processes (PostgreSQL only)
    follow: bool = False  # `join`: keep waiting for new campaigns until stopped
    poll_seconds: float = 2.0  # how often a waiting sender looks at the store again


@dataclass(frozen=True)
class Planned:
    """One message a publish would send (dry run)."""

    slug: str
    subject: str
    address: str
    name: str


def _now(options: PublishOptions) -> dt.datetime:
    return options.now or dt.datetime.now(dt.UTC)


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


def sender_name() -> str:
    """This sender's name on the rows it leases: host, process and a random part (a restarted
    process is another sender, so it never settles a row its previous life claimed)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class _Sender:
    """What one process needs to send any campaign: made once, before a campaign starts, so a
    setting that fails (no web URL, a bad DKIM key) fails before anything is sent."""

    config: Config
    theme: Theme
    make: EditionMaker
    build: MessageBuilder
    connector: Connector
    concurrency: int
    policy: Policy
    sign: Callable[[bytes], bytes] | None
    domain: str
    lease: ledger.Lease

    @classmethod
    def for_run(cls, config: Config, theme: Theme, options: PublishOptions) -> _Sender:
        from .delivery.dkim import signer_for

        make, build = _tools(options)
        sign = signer_for(config)
        domain = sender(config).domain
        require_web_url(config)
        require_since(config)
        return cls(
            config=config,
            theme=theme,
            make=make,
            build=build,
            connector=options.connector or connector_for(config, options.environ),
            concurrency=config.smtp.concurrency if config.smtp else 1,
            policy=options.policy or Policy(max_attempts=config.smtp.max_attempts if config.smtp else 3),
            sign=sign,
            domain=domain,
            lease=ledger.Lease(sender_name(), config.store.lease_seconds),
        )


def _send(
    s: _Sender,
    store: Store,
    due: list[Campaign],
    editions: dict[str, Any],
    options: PublishOptions,
    progress: Callable[[Progress], None] | None,
    stop: StopRequest,
    partial_report: Callable[[list[CampaignRun]], PublishReport],
) -> list[CampaignRun]:
    """Send each due campaign in turn, oldest first; stop early on a stop request. Where other
    senders share the store, a campaign is left only when no row of it is pending or leased
    (rows a dead sender leased come back when the lease expires, and this sender takes them).
    The breaker raises `SendingStopped` with what was done so far (`partial_report`)."""
    config, now = s.config, _now(options)
    smtp = config.smtp
    limits = ledger.Limits(smtp.rate_per_second, smtp.rate_per_hour) if smtp else ledger.Limits()
    quota = None
    if store.dialect.many_senders and (limits.per_second or limits.per_hour):
        # shared by every sender through the store; the local buckets only smooth this process's share
        quota = partial(ledger.take_quota, store, limits=limits)
        limiter = RateLimiter(limits.per_second, 0)
    else:
        limiter = RateLimiter(
            limits.per_second,
            limits.per_hour,
            used_this_hour=ledger.sent_since(store, now - dt.timedelta(hours=1)) if limits.per_hour else 0,
        )
    secret = site_secret(config)
    runs: list[CampaignRun] = []
    for campaign in due:
        post, key = campaign.post, campaign.key
        assert key is not None
        edition = editions.get(post.slug) or s.make(post, config, s.theme)
        subject = getattr(edition, "subject", post.title)
        render = renderer(config, edition, secret, s.build, s.sign)
        while not stop.is_set():
            done = send_campaign(
                store,
                key,
                subject,
                Pool(s.connector, s.concurrency, s.policy, limiter),
                render,
                partial(campaign_message_id, key, domain=s.domain),
                options.batch_size,
                s.lease,
                progress,
                stop,
                quota,
                smtp.domain_backoff_seconds if smtp else 60.0,
            )
            runs.append(dataclasses.replace(done, slug=post.slug))  # the post's slug now, not the campaign's key
            if done.stopped:
                where, left = s.connector.describe(), ledger.counts(store, key)["pending"]
                raise SendingStopped(
                    f"stopped sending {post.slug!r}: {done.stopped}; {where} refuses nearly everything."
                    f" In this run: {done.sent} sent, {done.deferred} deferred (to retry), {left} not tried yet",
                    hint=f"check {where}; once it accepts mail, run publish again: it retries the deferred and sends the rest",
                    report=partial_report(runs),
                )
            if not store.dialect.many_senders or not _wait_for_others(store, key, stop, options.poll_seconds):
                break
        if stop.is_set():
            break
    return _merged(runs)


def _wait_for_others(store: Store, key: str, stop: StopRequest, poll: float) -> bool:
    """While other senders hold rows of campaign `key`, wait; True when some of them came back to
    be taken (their lease expired), False when the campaign has nothing pending or leased."""
    while not stop.is_set():
        if key in ledger.in_progress(store):
            return True
        if not ledger.leased(store, key):
            return False
        _sleep(stop, poll)
    return False


def _sleep(stop: StopRequest, seconds: float) -> None:
    """Sleep up to `seconds`, waking early on a stop request."""
    end = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < end:
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))


def _merged(runs: list[CampaignRun]) -> list[CampaignRun]:
    """One `CampaignRun` per post: the rounds (or processes) that sent the same post, added up."""
    by_slug: dict[str, CampaignRun] = {}
    for r in runs:
        if (seen := by_slug.get(r.slug)) is None:
            by_slug[r.slug] = r
            continue
        by_slug[r.slug] = dataclasses.replace(
            seen,
            sent=seen.sent + r.sent,
            failed=seen.failed + r.failed,
            bounced=seen.bounced + r.bounced,
            skipped=seen.skipped + r.skipped,
            deferred=seen.deferred + r.deferred,
            lost=seen.lost + r.lost,
            seconds=max(seen.seconds, r.seconds),
            interrupted=seen.interrupted or r.interrupted,
            failure=seen.failure or r.failure,
            stopped=seen.stopped or r.stopped,
        )
    return list(by_slug.values())


@contextmanager
def _sole_sender(config: Config, store: Store) -> Iterator[None]:
    """One sender per SQLite store: hold the publish lock file. A store that many senders share
    (PostgreSQL) needs none: leases keep them apart, and `Store.preparing` serialises the starts."""
    if store.dialect.many_senders:
        yield
    else:
        with publish_lock(config):
            yield


def publish(root: Path, options: PublishOptions = PublishOptions(), progress: Callable[[Progress], None] | None = None) -> PublishReport:
    """Send every due post (or `options.slug`) to everyone still due it; see the module doc.

    Rows an earlier run deferred go back to `pending` first and are retried (`retried`).
    SIGINT (Ctrl-C) or SIGTERM stops it after the messages in flight (handlers installed for the
    run's duration when it runs on the main thread): it returns with `interrupted=True` and the
    signal in `signum`. A run that the circuit breaker stops raises `SendingStopped` (a
    `DeliveryError`) saying why; this run's failures become deferred, unsent rows stay pending.
    With `options.workers` > 1 (PostgreSQL only) the sending is done by that many processes.
    """
    now = _now(options)
    config, posts, theme = _site(root, now)
    s = _Sender.for_run(config, theme, options)  # every check that can fail does so before a campaign starts
    stop = StopRequest()
    with open_store(config, options.environ) as store, _sole_sender(config, store), stop_on_signals(stop):
        many = store.dialect.many_senders
        if options.workers > 1 and not many:
            raise DeliveryError(
                f"--workers {options.workers} needs PostgreSQL: SQLite allows one writer, so one process sends",
                hint="set [store] url or REVIEW_PRESS_DATABASE_URL (README: Scaling out), or publish without --workers",
            )
        resumed = 0 if many else ledger.resume(store)  # many senders: an expired lease returns rows instead
        if not many and options.connector is None and config.smtp is None:
            clean_tmp(outbox_path(config))  # what a killed run left half-written in outbox/tmp/
        with store.preparing():
            campaigns = identify(config, posts, store, now, options.slug)
            if options.retry_failed:
                for campaign in campaigns.chosen:
                    if campaign.key is not None:
                        ledger.requeue_failed(store, campaign.key)
            retried = sum(ledger.requeue_deferred(store, c.key) for c in campaigns.chosen if c.key is not None)
            judged = refuse_unmailable(config, theme, campaigns, store, s.make)
            due = start_campaigns(config, judged.campaigns, store, now)

        def report(runs: list[CampaignRun]) -> PublishReport:
            return PublishReport(
                posts=tuple(runs),
                target=s.connector.describe(),
                resumed=resumed,
                interrupted=stop.is_set(),
                refused=judged.campaigns.refused,
                retried=retried,
                signum=stop.signum,
                warnings=judged.warnings,
            )

        if not due:
            return report([])
        if options.workers > 1:
            return report(_send_in_processes(root, options, [c.key for c in due if c.key], stop, report))
        return report(_send(s, store, due, judged.editions, options, progress, stop, report))


def join(root: Path, options: PublishOptions = PublishOptions(), keys: tuple[str, ...] | None = None) -> PublishReport:
    """Send, beside the other senders, the campaigns in progress (started by a `publish` on any
    host; only `keys` if given): `review-press worker`. Never starts or fills a campaign.

    Returns when no campaign has a row pending or leased, or with `options.follow` keeps waiting
    for new ones until SIGINT/SIGTERM. Needs a store many senders share (PostgreSQL).
    """
    now = _now(options)
    config, posts, theme = _site(root, now)
    s = _Sender.for_run(config, theme, options)
    stop = StopRequest()
    runs: list[CampaignRun] = []

    def report(done: list[CampaignRun]) -> PublishReport:
        return PublishReport(
            posts=tuple(_merged(runs + done)), target=s.connector.describe(), interrupted=stop.is_set(), signum=stop.signum
        )

    with open_store(config, options.environ) as store, stop_on_signals(stop):
        if not store.dialect.many_senders:
            raise DeliveryError(
                "worker needs PostgreSQL: SQLite allows one writer, and publish is its one sender",
                hint="set [store] url or REVIEW_PRESS_DATABASE_URL (README: Scaling out), or run review-press publish",
            )
        while not stop.is_set():
            active = [k for k in ledger.in_progress(store) if keys is None or k in keys]
            due = [c for c in identify(config, posts, store, _now(options), options.slug).chosen if c.key in active]
            if due:
                judged = refuse_unmailable(config, theme, Campaigns(tuple(due), ()), store, s.make)
                runs.extend(_send(s, store, list(judged.campaigns.chosen), judged.editions, options, None, stop, report))
                continue
            if not options.follow and not [k for k in ledger.leased_campaigns(store) if keys is None or k in keys]:
                break
            _sleep(stop, options.poll_seconds)
    return report([])


def _sender_process(root: str, options: PublishOptions, keys: tuple[str, ...], results: Any) -> None:
    """The body of one sending process of `publish --workers`: `join`, then its report on `results`."""
    try:
        report = join(Path(root), options, keys)
        results.put((os.getpid(), report.posts, None))
    except SendingStopped as exc:
        results.put((os.getpid(), exc.report.posts if exc.report else (), str(exc)))
    except PressError as exc:
        results.put((os.getpid(), (), str(exc)))


def _send_in_processes(
    root: Path,
    options: PublishOptions,
    keys: list[str],
    stop: StopRequest,
    partial_report: Callable[[list[CampaignRun]], PublishReport],
) -> list[CampaignRun]:
    """Send the campaigns `keys` with `options.workers` processes (each a `join`), forwarding a
    stop request to them and adding up what they did. A process that failed is a `DeliveryError`
    (after the others finished); a breaker that tripped in any of them is a `SendingStopped`."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no connection or thread is inherited
    results = context.Queue()
    child = dataclasses.replace(options, workers=1, follow=False, connector=None)
    procs = [context.Process(target=_sender_process, args=(str(root), child, tuple(keys), results)) for _ in range(options.workers)]
    for proc in procs:
        proc.start()
    runs: list[CampaignRun] = []
    problems: list[str] = []
    reported: set[int] = set()
    forwarded = False
    while len(reported) < len(procs):
        if stop.is_set() and not forwarded:
            for proc in procs:
                if proc.pid is not None and proc.is_alive():
                    os.kill(proc.pid, stop.signum or signal.SIGTERM)
            forwarded = True
        try:
            pid, posts, problem = results.get(timeout=0.2)
        except queue.Empty:
            gone = [p for p in procs if not p.is_alive() and p.pid not in reported]
            for p in gone:  # died without a report (killed): its leased rows come back after the lease
                reported.add(p.pid or 0)
                problems.append(f"a sending process (pid {p.pid}) ended with exit code {p.exitcode} before reporting")
            continue
        reported.add(pid)
        runs.extend(posts)
        if problem:
            problems.append(problem)
    for proc in procs:
        proc.join()
    merged = _merged(runs)
    stopped = next((r for r in merged if r.stopped), None)
    if stopped is not None:
        raise SendingStopped(f"stopped sending {stopped.slug!r}: {stopped.stopped}", report=partial_report(merged))
    if problems:
        raise DeliveryError(
            problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""), hint="run publish again: it sends the rest"
        )
    return merged


def dry_run(root: Path, slug: str | None = None, now: dt.datetime | None = None) -> Iterator[Planned | Refusal]:
    """Everyone a publish would send each post to, streamed, then the posts it would refuse; sends and records nothing."""
    from .edition import make_edition

    now = now or dt.datetime.now(dt.UTC)
    config, posts, theme = _site(root, now)
    with open_store(config) as store:
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
    with open_store(config) as store:
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
