"""The senders: what one sending process needs (`Sender`), its loop over the due campaigns
(`send_due`), joining the campaigns in progress beside the other senders (`join`, the `worker`
command), and the fan-out of `publish --workers` to fresh processes. `publish` starts the
campaigns and calls these; every sender, in any process on any host, sends the same messages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from .campaigns import (
    Campaign,
    Campaigns,
    EditionMaker,
    MessageBuilder,
    identify,
    refuse_unmailable,
    renderer,
)
from .config import Config, load_config
from .content import Post, load_posts
from .delivery.connect import connector_for
from .delivery.pool import Pool
from .delivery.run import CampaignRun, Progress, StopRequest, send_campaign, stop_on_signals
from .delivery.smtp import Connector, Policy, RateLimiter
from .errors import DeliveryError, PressError
from .forked import when_parent_is_gone
from .identity import Refusal
from .newsletter import campaign_message_ids, require_since, require_web_url, sender
from .site import make_site
from .store import Store, feedback, ledger, open_store
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
    correction: str | None = None  # with `slug`: send the edited post to those who got it, with this note
    batch_size: int = 100
    retry_failed: bool = False
    resume: bool = False  # lift the guard rails' pause of the campaigns this run considers
    now: dt.datetime | None = None
    policy: Policy | None = None
    connector: Connector | None = None
    make_edition: EditionMaker | None = None
    build_message: MessageBuilder | None = None
    environ: dict[str, str] | None = field(default=None, repr=False)
    workers: int = 1  # sending processes (on SQLite they share the file under this publish's lock)
    follow: bool = False  # `join`: keep waiting for new campaigns until stopped
    poll_seconds: float = 2.0  # how often a waiting sender looks at the store again
    beside_publish: bool = False  # a sending process of `publish --workers`: others share the store, SQLite too


def run_time(options: PublishOptions) -> dt.datetime:
    return options.now or dt.datetime.now(dt.UTC)


def load_site(root: Path, now: dt.datetime) -> tuple[Config, tuple[Post, ...], Theme]:
    """The site's config, every post (drafts and future ones too: identity needs them all) and theme."""
    config = load_config(root)
    posts = load_posts(config)
    site = make_site(config, posts, now=now)
    return config, posts, Theme.for_site(config.templates_dir, site=site, config=config)


def edition_tools(options: PublishOptions) -> tuple[EditionMaker, MessageBuilder]:
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
class Sender:
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
    def for_run(cls, config: Config, theme: Theme, options: PublishOptions) -> Sender:
        from .delivery.dkim import signer_for

        make, build = edition_tools(options)
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


def check_clock(store: Store, config: Config) -> None:
    """Refuse to send from a host whose clock is off the database server's by more than an eighth
    of a lease: leases, rate windows and domain pauses are times, and a clock that far ahead would
    take rows a live sender still holds (docs/scaling.md)."""
    skew = store.clock_skew()
    if abs(skew) > config.store.lease_seconds / 8:
        raise DeliveryError(
            f"this host's clock is {abs(skew):.1f} s {'ahead of' if skew > 0 else 'behind'} the database server's;"
            f" senders share leases of {config.store.lease_seconds:g} s, so nothing was sent",
            hint="keep every sending host's clock in sync (NTP: systemd-timesyncd or chrony)",
        )


@dataclass(frozen=True)
class Outbound:
    """One campaign as a sender sends it: its ledger key, the name it is reported by (a post's slug
    now, `welcome email`, `digest 2026-11-23`, ...), its subject, and the edition each claimed reader
    gets (`digest`: claims carry what the edition depends on, `ledger.claim`)."""

    key: str
    slug: str
    subject: str
    edition_for: Callable[[ledger.Claim], Any]
    digest: bool = False
    held_by: str | None = None  # a correction: the campaign it corrects, whose guard pause holds it too

    def pause_reason(self, store: Store) -> str | None:
        """Why this campaign must not go now: its own pause, or (a correction) that of the post it
        corrects: a list the guard rails stopped mailing gets no more of that post until `--resume`."""
        return self._held(store) or feedback.pause_reason(store, self.key)

    def guard(self, store: Store, guard: feedback.Guard) -> Callable[[], str | None]:
        """What `send_campaign` asks as it sends: a pause of the post it corrects, else the rails' own check."""
        return lambda: self._held(store) or feedback.check(store, self.key, guard)

    def _held(self, store: Store) -> str | None:
        why = feedback.pause_reason(store, self.held_by) if self.held_by is not None else None
        return None if why is None else f"the post it corrects is paused: {why}"


@dataclass(frozen=True)
class _Shared:
    """What every campaign of one sender's run shares: the rate limits, the guard rails, the key."""

    limiter: RateLimiter
    quota: Callable[[int], int] | None
    guard: feedback.Guard
    secret: bytes
    shared: bool  # other senders share the store: a campaign is left only when nothing of it is pending or leased


def _shared(s: Sender, store: Store, options: PublishOptions) -> _Shared:
    config, now = s.config, run_time(options)
    smtp = config.smtp
    limits = ledger.Limits(smtp.rate_per_second, smtp.rate_per_hour) if smtp else ledger.Limits()
    quota = None
    shared = store.dialect.many_senders or options.beside_publish
    if shared and (limits.per_second or limits.per_hour):
        # shared by every sender through the store; the local buckets only smooth this process's share
        quota = partial(ledger.take_quota, store, limits=limits)
        limiter = RateLimiter(limits.per_second, 0)
    else:
        limiter = RateLimiter(
            limits.per_second,
            limits.per_hour,
            used_this_hour=ledger.sent_since(store, now - dt.timedelta(hours=1)) if limits.per_hour else 0,
        )
    bounces = config.bounces
    guard = feedback.Guard(bounces.pause_complaint_rate, bounces.pause_bounce_rate, bounces.pause_min_sent)
    return _Shared(limiter, quota, guard, site_secret(config), shared)


def send_due(
    s: Sender,
    store: Store,
    due: list[Campaign],
    editions: dict[str, Any],
    options: PublishOptions,
    progress: Callable[[Progress], None] | None,
    stop: StopRequest,
    partial_report: Callable[[list[CampaignRun]], PublishReport],
) -> list[CampaignRun]:
    """Send each due post's campaign in turn, oldest first (`send_outbound`), its edition the one
    judged already (`editions`, by post slug) or made now."""

    def outbound() -> Iterator[Outbound]:
        for campaign in due:
            post, key = campaign.post, campaign.key
            assert key is not None
            edition = editions.get(post.slug) or s.make(post, s.config, s.theme)
            yield Outbound(key, post.slug, getattr(edition, "subject", post.title), lambda claim, e=edition: e)

    return send_outbound(s, store, outbound(), options, progress, stop, partial_report)


def send_outbound(
    s: Sender,
    store: Store,
    due: Iterable[Outbound],
    options: PublishOptions,
    progress: Callable[[Progress], None] | None,
    stop: StopRequest,
    partial_report: Callable[[list[CampaignRun]], PublishReport],
) -> list[CampaignRun]:
    """Send each campaign in turn, but one the guard rails paused (reported with `paused`, until
    `publish --resume`); stop early on a stop request. Where other senders share the store, a campaign is left only when no row of it
    is pending or leased (rows a dead sender leased come back when the lease expires, and this
    sender takes them). The breaker raises `SendingStopped` with what was done so far (`partial_report`)."""
    config = s.config
    smtp = config.smtp
    run = _shared(s, store, options)
    runs: list[CampaignRun] = []
    for item in due:
        key = item.key
        if (why := item.pause_reason(store)) is not None:
            runs.append(CampaignRun(item.slug, item.subject, 0, 0, 0, 0, 0.0, False, paused=why))
            continue
        render = renderer(config, item.edition_for, run.secret, s.build, s.sign, key)
        while not stop.is_set():
            done = send_campaign(
                store,
                key,
                item.subject,
                Pool(s.connector, s.concurrency, s.policy, run.limiter),
                render,
                campaign_message_ids(key, s.domain, run.secret),
                options.batch_size,
                s.lease,
                progress,
                stop,
                run.quota,
                smtp.domain_backoff_seconds if smtp else 60.0,
                item.guard(store, run.guard),
                digest=item.digest,
            )
            runs.append(dataclasses.replace(done, slug=item.slug))  # the post's slug now, not the campaign's key
            if done.stopped:
                where, left = s.connector.describe(), ledger.counts(store, key)["pending"]
                raise SendingStopped(
                    f"stopped sending {item.slug!r}: {done.stopped}; {where} refuses nearly everything."
                    f" In this run: {done.sent} sent, {done.deferred} deferred (to retry), {left} not tried yet",
                    hint=f"check {where}; once it accepts mail, run publish again: it retries the deferred and sends the rest",
                    report=partial_report(runs),
                )
            if done.paused or not run.shared or not _wait_for_others(store, key, stop, options.poll_seconds):
                break
            if not (done.sent or done.failed or done.bounced or done.deferred or done.skipped):
                _sleep(stop, options.poll_seconds)  # rows pending but locked by another sender's claim: no busy loop
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
            paused=seen.paused or r.paused,
        )
    return list(by_slug.values())


def join(
    root: Path,
    options: PublishOptions = PublishOptions(),
    keys: tuple[str, ...] | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> PublishReport:
    """Send, beside the other senders, the campaigns in progress (started by a `publish` on any
    host; only `keys` if given): `review-press worker`. Never starts or fills a campaign.

    Returns when no campaign has a row pending or leased, or with `options.follow` keeps waiting
    for new ones until SIGINT/SIGTERM. Needs a store many senders share (PostgreSQL), or to be
    one of the processes of a `publish --workers`, whose publish holds the SQLite store's lock.
    """
    now = run_time(options)
    config, posts, theme = load_site(root, now)
    s = Sender.for_run(config, theme, options)
    stop = StopRequest()
    runs: list[CampaignRun] = []

    refused: dict[str, Refusal] = {}

    def report(done: list[CampaignRun]) -> PublishReport:
        return PublishReport(
            posts=tuple(_merged(runs + done)),
            target=s.connector.describe(),
            interrupted=stop.is_set(),
            signum=stop.signum,
            refused=tuple({id(r): r for r in refused.values()}.values()),
        )

    with open_store(config, options.environ) as store, stop_on_signals(stop):
        if not (store.dialect.many_senders or options.beside_publish):
            raise DeliveryError(
                "worker needs PostgreSQL: SQLite allows one writer, and publish is its one sender",
                hint="set [store] url or REVIEW_PRESS_DATABASE_URL (README: Scaling out), or run review-press publish",
            )
        check_clock(store, config)
        while not stop.is_set():
            active = [k for k in ledger.in_progress(store) if (keys is None or k in keys) and k not in refused]
            due = [c for c in identify(config, posts, store, run_time(options), options.slug).chosen if c.key in active]
            if due:
                judged = refuse_unmailable(config, theme, Campaigns(tuple(due), ()), store, s.make)
                for refusal in judged.campaigns.refused:  # its email breaks a lint rule here: not sent by this worker
                    refused.update({c.key: refusal for c in due if c.post.slug == refusal.post.slug and c.key})
                done = send_due(s, store, list(judged.campaigns.chosen), judged.editions, options, progress, stop, report)
                runs.extend(done)
                if any(r.sent or r.failed or r.bounced or r.deferred or r.skipped for r in done):
                    continue
            elif not options.follow and not [k for k in ledger.leased_campaigns(store) if keys is None or k in keys]:
                break
            _sleep(stop, options.poll_seconds)  # nothing to take now (other senders hold it, or none): never a busy loop
    return report([])


def _sender_process(root: str, options: PublishOptions, keys: tuple[str, ...], link: Any, parent: int) -> None:
    """The body of one sending process of `publish --workers`: `join`, saying on `link` (its own
    pipe to the parent) where its share stands as it goes, then its report."""
    # when the publish that started it is gone (killed, out of memory), stop after the messages in
    # flight, as SIGTERM does: its lock is released, and a new publish will put rows still
    # `sending` back to pending (at most the in-flight messages go twice, as after any kill)
    when_parent_is_gone(parent, lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        report = join(Path(root), options, keys, progress=lambda p: link.send(("progress", p)))
        link.send(("done", report.posts, None))
    except SendingStopped as exc:
        link.send(("done", exc.report.posts if exc.report else (), str(exc)))
    except PressError as exc:
        link.send(("done", (), str(exc)))
    finally:
        link.close()


class _Tally:
    """What the sending processes of a `publish --workers` say as they go, added up per campaign
    for the parent's progress callback: each says where its own share stands (`Progress` of its
    run), and the campaign's is `Progress.combined` of the latest from each."""

    def __init__(self, progress: Callable[[Progress], None] | None) -> None:
        self.progress = progress
        self.latest: dict[str, dict[int, Progress]] = {}

    def add(self, pid: int, p: Progress) -> None:
        if self.progress is None:
            return
        shares = self.latest.setdefault(p.slug, {})
        shares[pid] = p
        self.progress(Progress.combined(shares.values()))


def send_in_processes(
    root: Path,
    options: PublishOptions,
    keys: list[str],
    stop: StopRequest,
    partial_report: Callable[[list[CampaignRun]], PublishReport],
    progress: Callable[[Progress], None] | None = None,
) -> list[CampaignRun]:
    """Send the campaigns `keys` with `options.workers` processes (each a `join`), forwarding a
    stop request to them, passing on their progress added up (`_Tally`) and adding up what they
    did. A process that failed is a `DeliveryError` (after the others finished); a breaker that
    tripped in any of them is a `SendingStopped`."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no connection or thread is inherited
    child = dataclasses.replace(options, workers=1, follow=False, connector=None, beside_publish=True)
    links: dict[Any, Any] = {}  # each process's own pipe (no lock shared with the others, which a kill could leave held) -> it
    for _ in range(options.workers):
        reader, writer = context.Pipe(duplex=False)
        proc = context.Process(target=_sender_process, args=(str(root), child, tuple(keys), writer, os.getpid()))
        proc.start()
        writer.close()  # the process holds the only writer left: its end, however it comes, is the end of the pipe here
        links[reader] = proc
    procs = list(links.values())
    runs: list[CampaignRun] = []
    problems: list[str] = []
    forwarded = False
    tally = _Tally(progress)
    while links:
        if stop.is_set() and not forwarded:
            for proc in procs:
                if proc.pid is not None and proc.is_alive():
                    os.kill(proc.pid, stop.signum or signal.SIGTERM)
            forwarded = True
        for reader in wait(list(links), timeout=0.2):
            proc = links[reader]
            try:
                message = reader.recv()
            except (EOFError, OSError):  # it ended without a report (killed): its leased rows come back after the lease
                del links[reader]
                reader.close()
                proc.join()
                problems.append(f"a sending process (pid {proc.pid}) ended with exit code {proc.exitcode} before reporting")
                continue
            if message[0] == "progress":
                tally.add(proc.pid or 0, message[1])
                continue
            del links[reader]
            reader.close()
            _, posts, problem = message
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
