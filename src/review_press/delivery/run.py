"""One post's campaign run: claim rows from the ledger, hand them to the pool, settle the results.

All database work happens on the calling thread. Rows are claimed (committed as `sending`) a
batch at a time, and only while claimed-but-unsettled rows stay within
`in_flight_limit(batch, concurrency) = max(2 * batch, concurrency)`: that is the most a kill -9
can leave in `sending`, so the most a resumed run can send twice. Results are settled
(committed as sent / failed / bounced / deferred) a batch at a time, or every half second.

A stop request (`StopRequest`: SIGINT or SIGTERM through `stop_on_signals`, or a
KeyboardInterrupt) stops claiming, lets each thread finish the message it is sending, settles
what came back, and puts the rest back to `pending`. A tripped breaker stops the same way, and
the rows this run marked `failed` become `deferred`: refusals from a server that refuses
everything say nothing about the readers, so a plain re-run tries them again.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..store import Store, ledger
from .pool import Pool
from .smtp import Envelope, Job

SETTLE_EVERY = 0.5  # seconds: results never wait longer than this to be committed
QUOTA_WAIT = 0.05  # seconds between asks when the shared rate limit is used up for now
GATHER = 0.005  # seconds the loop waits after a result for more to come (each wake-up costs the sending threads a GIL hand-off)
GUARD_EVERY = 2.0  # seconds between looks at a campaign's complaint and bounce rates (the guard rails)


@dataclass(frozen=True)
class Progress:
    """Where one post's sending stands; handed to the progress callback after each settled batch."""

    slug: str
    subject: str
    total: int
    sent: int
    failed: int
    bounced: int
    skipped: int
    deferred: int
    elapsed: float

    @property
    def done(self) -> int:
        """Rows settled so far (sent, failed, bounced, skipped or deferred) out of `total`."""
        return self.sent + self.failed + self.bounced + self.skipped + self.deferred

    @property
    def rate(self) -> float:
        """Messages settled per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @classmethod
    def combined(cls, shares: Iterable[Progress]) -> Progress:
        """One post's progress where several senders share it (`publish --workers`), from where
        each one's share stands: their counts added up; the total, the most rows any found pending."""
        each = list(shares)
        first = each[0]
        counts = {name: sum(getattr(p, name) for p in each) for name in COUNTS}
        return cls(first.slug, first.subject, max(p.total for p in each), **counts, elapsed=max(p.elapsed for p in each))


COUNTS = ("sent", "failed", "bounced", "skipped", "deferred")  # what a run counts of its rows, as `Progress` names them


@dataclass(frozen=True)
class CampaignRun:
    """What one run did for one post; `interrupted` when a stop request or the breaker cut it short.

    `failed` counts permanent refusals of readers (`failure`: the most common reply among them),
    `deferred` temporary failures a later plain run retries; `stopped` is the breaker's reason
    when it tripped (then this run's failures were deferred instead).
    """

    slug: str
    subject: str
    sent: int
    failed: int
    bounced: int
    skipped: int
    seconds: float
    interrupted: bool
    deferred: int = 0
    failure: str = ""
    stopped: str | None = None
    lost: int = 0  # results not recorded: the lease on their rows had passed to another sender
    paused: str | None = None  # why the guard rails paused the campaign (complaint or bounce rate): resumable


class StopRequest:
    """A request to stop sending after the messages in flight, checked by the send loop.

    Set by the handler `stop_on_signals` installs (`signum` says which signal: SIGINT for Ctrl-C,
    SIGTERM from systemd, docker stop or timeout) or by a KeyboardInterrupt the loop catches.
    A plain flag, not a lock or an Event: a signal handler may run in the middle of any code on
    the main thread, and setting it must never wait.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._set = False

    def set(self, signum: int = signal.SIGINT) -> None:
        """Ask to stop; the first signal is the one reported."""
        if self.signum is None:
            self.signum = signum
        self._set = True

    def is_set(self) -> bool:
        return self._set


@contextmanager
def stop_on_signals(stop: StopRequest, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[bool]:
    """While the block runs, `signals` set `stop` instead of killing the process or raising
    KeyboardInterrupt at a random point; the previous handlers come back afterwards.

    Yields whether the handlers are installed: only the main thread can install them, so on any
    other thread this does nothing and the signals keep their usual effect. A signal the process
    ignores (SIG_IGN, as a shell sets SIGINT for a background job) stays ignored.
    """
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: object) -> None:
        stop.set(signum)

    try:
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                if signal.getsignal(sig) == signal.SIG_IGN:
                    continue
                try:
                    previous[sig] = signal.signal(sig, handle)
                except ValueError:  # not the main interpreter
                    break
        yield bool(previous)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def in_flight_limit(batch: int, concurrency: int) -> int:
    """The most rows a run keeps in `sending` at once: the bound on duplicates after a kill."""
    return max(2 * batch, concurrency)


def send_campaign(
    store: Store,
    slug: str,
    subject: str,
    pool: Pool,
    render: Callable[[ledger.Claim], Envelope],
    message_id: Callable[[int], str],
    batch: int,
    lease: ledger.Lease,
    progress: Callable[[Progress], None] | None = None,
    stop: StopRequest | None = None,
    quota: Callable[[int], int] | None = None,
    backoff_base: float = 60.0,
    guard: Callable[[], str | None] | None = None,
    *,
    digest: bool = False,
) -> CampaignRun:
    """Send one post's pending rows through `pool` (which this closes), keeping within the in-flight limit.

    Rows are claimed under `lease` and the lease is renewed while they are in flight, so other
    senders sharing the campaign (PostgreSQL) never take them; a row whose lease this sender lost
    is not settled by it (`lost`). `quota(n)` (the rate limits all senders share, counted in the
    store) says how many of a batch may be claimed now; 0 pauses claiming briefly. A destination
    domain that answers 421/450/451 backs off for every sender (`ledger.back_off`, from
    `backoff_base` seconds): its rows wait while the others go, and those still waiting when the
    rest is done are deferred (the next plain run retries them). Stops after the messages in flight when `stop` is set (or a
    KeyboardInterrupt arrives, which then sets it) or the breaker trips. Rows deferred in this run
    are not claimed again in it, so a run always ends. `guard()` (the guard rails,
    `feedback.check`) is asked at the start and every `GUARD_EVERY` seconds: a reason stops the
    run after the messages in flight, leaving the rest pending (`paused`).
    """
    limit = in_flight_limit(batch, pool.concurrency)
    total = ledger.counts(store, slug)["pending"]  # once per campaign: never a count per batch
    tally = dict.fromkeys(COUNTS, 0)
    failed: list[int] = []  # rows this run marked failed: deferred instead if the breaker trips
    failures: Counter[str] = Counter()
    started = time.monotonic()
    outstanding, exhausted, buffer, settled_at, renewed_at, lost = 0, False, [], started, started, 0
    throttled_until = 0.0
    paused = guard() if guard is not None else None
    guarded_at = started
    if paused is not None:
        pool.stop()

    def report() -> None:
        if progress:
            progress(Progress(slug, subject, total, **tally, elapsed=time.monotonic() - started))

    def settle() -> None:
        nonlocal outstanding, buffer, settled_at, lost
        refused = {id(r) for r in ledger.record(store, slug, buffer)}
        lost += len(refused)
        for r in buffer:
            if id(r) in refused:  # another claim holds its row now: counted there, not here
                continue
            if r.status in tally:
                tally[r.status] += 1
            if r.status == "failed":
                failed.append(r.subscriber_id)
                failures[r.error] += 1
        outstanding -= len(buffer)
        buffer, settled_at = [], time.monotonic()
        report()

    def halted() -> bool:
        return pool.stopping.is_set() or pool.breaker.tripped is not None

    report()
    try:
        while True:
            try:
                if stop is not None and stop.is_set():
                    pool.stop()
                if guard is not None and paused is None and time.monotonic() - guarded_at > GUARD_EVERY:
                    guarded_at = time.monotonic()
                    if (paused := guard()) is not None:
                        pool.stop()
                while True:
                    try:
                        domain, reply = pool.backoffs.get_nowait()
                    except queue.Empty:
                        break
                    ledger.back_off(store, domain, reply, backoff_base)
                if outstanding and time.monotonic() - renewed_at > lease.seconds / 4:
                    ledger.renew(store, slug, lease)
                    renewed_at = time.monotonic()
                while not exhausted and not halted() and outstanding + batch <= limit and time.monotonic() >= throttled_until:
                    allowed = quota(batch) if quota is not None else batch
                    if allowed == 0:  # every sender's share of this window is used up
                        throttled_until = time.monotonic() + QUOTA_WAIT
                        break
                    claimed = ledger.claim(store, slug, allowed, message_id, lease, digest=digest)
                    tally["skipped"] += claimed.skipped
                    exhausted = not claimed.claims and not claimed.skipped
                    for c in claimed.claims:
                        pool.submit(Job(c, render))
                        outstanding += 1
                if outstanding == 0 and exhausted and not halted():
                    tally["deferred"] += ledger.defer_paused(store, slug)  # left: only domains that asked for a pause
                if outstanding == 0 and (exhausted or halted()):
                    break
                try:
                    buffer.append(pool.results.get(timeout=0.2))
                    if outstanding - len(buffer) > pool.concurrency:  # more on the way: let them gather, one wake-up for many
                        time.sleep(GATHER)
                    while True:
                        buffer.append(pool.results.get_nowait())
                except queue.Empty:
                    pass
                if pool.breaker.tripped:
                    pool.stop()
                if buffer and (len(buffer) >= batch or len(buffer) == outstanding or time.monotonic() - settled_at > SETTLE_EVERY):
                    settle()
            except KeyboardInterrupt:
                if stop is not None:
                    stop.set(signal.SIGINT)
                pool.stop()
    finally:
        if outstanding:
            pool.stop()
        pool.close()
        while True:
            try:
                buffer.append(pool.results.get_nowait())
            except queue.Empty:
                break
        if buffer:
            settle()
        if pool.breaker.tripped and failed:  # the server refused everything: that says nothing about these readers
            ledger.defer_failed(store, slug, failed, lease)
            tally["failed"] -= len(failed)
            tally["deferred"] += len(failed)
            failures.clear()
            report()
        ledger.release(store, slug, lease)  # rows claimed but never handed to a thread (an interrupt mid-claim)
    seconds = time.monotonic() - started
    failure = failures.most_common(1)[0][0] if failures else ""
    return CampaignRun(
        slug,
        subject,
        tally["sent"],
        tally["failed"],
        tally["bounced"],
        tally["skipped"],
        seconds,
        halted(),
        deferred=tally["deferred"],
        failure=failure,
        stopped=pool.breaker.tripped,
        lost=lost,
        paused=paused,
    )
