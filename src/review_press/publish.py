"""Publishing: which posts are due, their campaigns started and filled, then sent (`senders`).

The only place a campaign starts. On SQLite one run holds a lock (`.review-press/publish.lock`),
puts rows a killed run left in `sending` back to `pending` (`ledger.resume`) and sends itself; on
PostgreSQL it starts campaigns under an advisory lock and sends beside any other senders
(`--workers`, `worker`), whose leases replace the lock (docs/scaling.md). For each due
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import identity, letters
from .campaigns import Campaigns, identify, refuse_unmailable, renderer, start_campaigns
from .config import Config, load_config
from .content import Post, load_posts
from .delivery.connect import connector_for
from .delivery.maildir import clean_tmp, outbox_path
from .delivery.run import CampaignRun, Progress, StopRequest, stop_on_signals
from .errors import DeliveryError
from .identity import Refusal
from .newsletter import audience, message_id, newsletter_posts, require_since, require_web_url, sender
from .senders import (
    PublishOptions,
    PublishReport,
    Sender,
    SendingStopped,
    check_clock,
    edition_tools,
    join,
    load_site,
    run_time,
    send_due,
    send_in_processes,
    send_outbound,
)
from .site import scheduled
from .statedir import publish_lock
from .store import Store, feedback, ledger, mailings, open_store, parse_address
from .tokens import site_secret

__all__ = ["PublishOptions", "PublishReport", "SendingStopped", "dry_run", "join", "publish", "publish_status", "send_test"]


@dataclass(frozen=True)
class Planned:
    """One message a publish would send (dry run)."""

    slug: str
    subject: str
    address: str
    name: str


@contextmanager
def _sole_sender(config: Config, store: Store) -> Iterator[None]:
    """One sender per SQLite store: hold the publish lock file. A store that many senders share
    (PostgreSQL) needs none: leases keep them apart, and `Store.preparing` serialises the starts."""
    if store.dialect.many_senders:
        yield
    else:
        with publish_lock(config.state_dir):
            yield


def publish(
    root: Path,
    options: PublishOptions = PublishOptions(),
    progress: Callable[[Progress], None] | None = None,
    stop: StopRequest | None = None,
) -> PublishReport:
    """Send every due post (or `options.slug`) to everyone still due it; see the module doc.

    Rows an earlier run deferred go back to `pending` first and are retried (`retried`).
    SIGINT (Ctrl-C) or SIGTERM stops it after the messages in flight (handlers installed for the
    run's duration when it runs on the main thread): it returns with `interrupted=True` and the
    signal in `signum`. A run that the circuit breaker stops raises `SendingStopped` (a
    `DeliveryError`) saying why; this run's failures become deferred, unsent rows stay pending.
    With `options.workers` > 1 (PostgreSQL only) the sending is done by that many processes.
    """
    now = run_time(options)
    config, posts, theme = load_site(root, now)
    s = Sender.for_run(config, theme, options)  # every check that can fail does so before a campaign starts
    stop = stop or StopRequest()  # a caller's own (publish --follow): a signal it heard already stops this run too
    with open_store(config, options.environ) as store, _sole_sender(config, store), stop_on_signals(stop):
        many = store.dialect.many_senders  # SQLite: this run holds the publish lock; its own --workers share the file
        check_clock(store, config)
        resumed = 0 if many else ledger.resume(store)  # many senders: an expired lease returns rows instead
        if not many and options.connector is None and config.smtp is None:
            clean_tmp(outbox_path(config))  # what a killed run left half-written in outbox/tmp/
        with store.preparing():
            campaigns = identify(config, posts, store, now, options.slug)
            letters_too = options.slug is None or options.correction is not None  # the welcome, digests and corrections
            if options.correction is not None:
                key = _start_correction(config, campaigns, store, options.correction, now)
                campaigns = Campaigns((), ())
            if options.resume:
                feedback.resume(store, [c.key for c in campaigns.chosen if c.key is not None])
                if letters_too:
                    feedback.resume(store, [m.key for m in mailings.mailings(store)])
            if options.retry_failed:
                for campaign in campaigns.chosen:
                    if campaign.key is not None:
                        ledger.requeue_failed(store, campaign.key)
            retried = sum(ledger.requeue_deferred(store, c.key) for c in campaigns.chosen if c.key is not None)
            if letters_too:
                retried += mailings.requeue_deferred(store)
            judged = refuse_unmailable(config, theme, campaigns, store, s.make)
            due = start_campaigns(config, judged.campaigns, store, now)
            if options.slug is None and (plan := letters.digest_due(config, posts, store, now)) is not None:
                letters.start_digest(config, plan, store, now)
            if letters_too:  # a correction run: only its own; one post named: only its campaign
                extra = letters.prepare(config, theme, posts, store, s.make, now, None if options.correction is None else [key])
            else:
                extra = letters.Prepared((), (), ())
        welcome = [o for o in extra.outbound if o.key == mailings.WELCOME]
        later = [o for o in extra.outbound if o.key != mailings.WELCOME]

        def report(runs: list[CampaignRun]) -> PublishReport:
            return PublishReport(
                posts=tuple(runs),
                target=s.connector.describe(),
                resumed=resumed,
                interrupted=stop.is_set(),
                refused=judged.campaigns.refused + extra.refused,
                retried=retried,
                signum=stop.signum,
                warnings=judged.warnings + extra.warnings,
            )

        runs = send_outbound(s, store, welcome, options, progress, stop, report)
        if due and not stop.is_set():
            if options.workers > 1:
                runs += send_in_processes(root, options, [c.key for c in due if c.key], stop, report, progress)
            else:
                runs += send_due(s, store, due, judged.editions, options, progress, stop, lambda done: report(runs + done))
        if later and not stop.is_set():
            runs += send_outbound(s, store, later, options, progress, stop, lambda done: report(runs + done))
        return report(runs)


def _start_correction(config: Config, campaigns: Campaigns, store: Store, note: str, now: dt.datetime) -> str:
    """Start the correction of the one post `campaigns` holds (`publish SLUG --correction`): its
    edited version to everyone its campaign was sent to (`store.mailings.start_correction`);
    return the correction's key. `DeliveryError` when the post was never sent or is unchanged."""
    note = letters.check_note(note)
    if campaigns.refused:
        refusal = campaigns.refused[0]
        raise DeliveryError(refusal.message, hint=refusal.hint)
    campaign = campaigns.chosen[0]
    post = campaign.post
    if campaign.key is None:
        raise DeliveryError(f"{post.slug!r} was never sent, so there is nothing to correct", hint=f"publish {post.slug} sends it")
    record = next(r for r in ledger.campaigns(store) if r.key == campaign.key)
    if record.content_hash == post.content_hash:
        raise DeliveryError(
            f"{post.slug!r} is unchanged since it was sent ({post.source})", hint="edit the post first, then send the correction"
        )
    key = mailings.correction_key(campaign.key, post.content_hash)
    mailings.start_correction(store, key, campaign.key, note, now=now)
    return key


def dry_run(root: Path, slug: str | None = None, now: dt.datetime | None = None) -> Iterator[Planned | Refusal]:
    """Everyone a publish would send each post to, streamed, then the posts it would refuse, then
    the readers of the welcome, digests and corrections still to send; sends and records nothing
    (a digest whose week has ended but that no publish has started yet is not listed)."""
    from .edition import make_edition

    now = now or dt.datetime.now(dt.UTC)
    config, posts, theme = load_site(root, now)
    with open_store(config) as store:
        campaigns = refuse_unmailable(config, theme, identify(config, posts, store, now, slug), store, make_edition).campaigns
        for campaign in campaigns.chosen:
            post = campaign.post
            owed = audience(config, post)
            for _, address, name in ledger.would_receive(store, campaign.key, late_joiners=config.newsletter.late_joiners, audience=owed):
                yield Planned(post.slug, post.subject or post.title, address, name)
        yield from campaigns.refused
        if slug is None:  # and the welcome, digests and corrections with readers still to send to
            found = {m.key: m for m in mailings.mailings(store)}
            matching = identity.match(posts, ledger.campaigns(store), config.posts_dir)
            post_of = matching.posts_by_campaign(posts)
            for key in mailings.with_pending(store):
                label = letters.mailing_label(config, found[key], post_of)
                for address, name in mailings.pending_readers(store, key):
                    yield Planned(label, label, address, name)


def send_test(root: Path, to: str, options: PublishOptions = PublishOptions()) -> str:
    """Send one post (`options.slug`, else the newest newsletter post) to `to` alone; the ledger is untouched.

    Returns the server's reply.
    """
    from .delivery.dkim import signer_for

    now = run_time(options)
    config, posts, theme = load_site(root, now)
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
    make, build = edition_tools(options)
    post = candidates[-1]
    edition = make(post, config, theme)
    render = renderer(config, lambda claim: edition, site_secret(config), build, signer_for(config), None)
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
    feedback: feedback.CampaignFeedback | None = None  # bounces and complaints reported after sending
    paused: str | None = None  # why the guard rails paused it (None: not paused)


@dataclass(frozen=True)
class SentLetter:
    """A welcome, digest or correction in `status`: its name (`letters.mailing_label`), what the
    store keeps of it, its ledger counts, and why the guard rails paused it (None: not paused)."""

    label: str
    mailing: mailings.Mailing
    ledger: ledger.PostStatus
    paused: str | None = None


@dataclass(frozen=True)
class StatusReport:
    """What `status` shows: sent campaigns, newsletter posts not sent yet, scheduled posts, refused ones."""

    sent: tuple[SentPost, ...]
    unsent: tuple[Post, ...]
    scheduled: tuple[Post, ...]
    refused: tuple[Refusal, ...]
    letters: tuple[SentLetter, ...] = ()  # the welcome, digests and corrections


def publish_status(root: Path, now: dt.datetime | None = None) -> StatusReport:
    """Every campaign with its counts, matched to the post it is now; newsletter posts not yet
    sent; posts scheduled for later; posts a publish would refuse. Writes nothing."""
    now = now or dt.datetime.now(dt.UTC)
    config = load_config(root)
    posts = load_posts(config)
    with open_store(config) as store:
        records = ledger.campaigns(store)
        counts = {s.slug: s for s in ledger.status(store)}
        reports, paused = feedback.per_campaign(store), feedback.paused(store)
        found = mailings.mailings(store)
        matching = identity.match(posts, records, config.posts_dir)
        campaigns = identify(config, posts, store, now, matching=matching) if config.newsletter.since else Campaigns((), ())
    post_of = matching.posts_by_campaign(posts)
    sent = []
    for record in sorted(records, key=lambda r: (r.started_at, r.key)):
        post = post_of.get(record.key)
        sent.append(
            SentPost(
                ledger=counts[record.key],
                post=post,
                edited=post is not None and record.content_hash is not None and post.content_hash != record.content_hash,
                old_slugs=tuple(s for s in record.slugs if post is None or s != post.slug),
                feedback=dataclasses.replace(
                    reports.get(record.key, feedback.CampaignFeedback(record.key)),
                    sent=counts[record.key].sent,
                    smtp_bounced=counts[record.key].bounced,
                ),
                paused=paused[record.key][1] if record.key in paused else None,
            )
        )
    unsent = tuple(c.post for c in campaigns.chosen if c.key is None)
    letters_sent = tuple(
        SentLetter(letters.mailing_label(config, m, post_of), m, counts[m.key], paused[m.key][1] if m.key in paused else None)
        for m in found
    )
    return StatusReport(tuple(sent), unsent, scheduled(posts, now), campaigns.refused, letters_sent)
