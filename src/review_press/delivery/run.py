"""One post's campaign run: claim rows from the ledger, hand them to the pool, settle the results.

All database work happens on the calling thread. Rows are claimed (committed as `sending`) a
batch at a time, and only while claimed-but-unsettled rows stay within
`in_flight_limit(batch, concurrency) = max(2 * batch, concurrency)`: that is the most a kill -9
can leave in `sending`, so the most a resumed run can send twice. Results are settled
(committed as sent / failed / bounced) a batch at a time, or every half second.

Ctrl-C (KeyboardInterrupt) stops claiming, lets each thread finish the message it is sending,
settles what came back, and puts the rest back to `pending`.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..store import Store
from . import ledger
from .smtp import Envelope, Job, Pool

SETTLE_EVERY = 0.5  # seconds: results never wait longer than this to be committed


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
    elapsed: float

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.bounced + self.skipped

    @property
    def rate(self) -> float:
        """Messages settled per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class CampaignRun:
    """What one run did for one post; `interrupted` when Ctrl-C or the breaker cut it short."""

    slug: str
    subject: str
    sent: int
    failed: int
    bounced: int
    skipped: int
    seconds: float
    interrupted: bool


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
    progress: Callable[[Progress], None] | None = None,
) -> CampaignRun:
    """Send one post's pending rows through `pool` (which this closes), keeping within the in-flight limit."""
    limit = in_flight_limit(batch, len(pool.threads))
    total = ledger.counts(store, slug)["pending"]
    tally = {"sent": 0, "failed": 0, "bounced": 0, "skipped": 0}
    started = time.monotonic()
    outstanding, exhausted, buffer, settled_at = 0, False, [], started

    def settle() -> None:
        nonlocal outstanding, buffer, settled_at
        ledger.record(store, slug, buffer)
        for r in buffer:
            if r.status in tally:
                tally[r.status] += 1
        outstanding -= len(buffer)
        buffer, settled_at = [], time.monotonic()
        tally["skipped"] = ledger.counts(store, slug)["skipped"]
        if progress:
            progress(Progress(slug, subject, total, **tally, elapsed=time.monotonic() - started))

    def halted() -> bool:
        return pool.stopping.is_set() or pool.breaker.tripped is not None

    if progress:
        progress(Progress(slug, subject, total, 0, 0, 0, 0, 0.0))
    try:
        while True:
            try:
                while not exhausted and not halted() and outstanding + batch <= limit:
                    claims = ledger.claim(store, slug, batch, message_id)
                    exhausted = not claims
                    for c in claims:
                        pool.submit(Job(c, render))
                        outstanding += 1
                if outstanding == 0 and (exhausted or halted()):
                    break
                try:
                    buffer.append(pool.results.get(timeout=0.2))
                    while True:
                        buffer.append(pool.results.get_nowait())
                except queue.Empty:
                    pass
                if pool.breaker.tripped:
                    pool.stop()
                if buffer and (len(buffer) >= batch or len(buffer) == outstanding or time.monotonic() - settled_at > SETTLE_EVERY):
                    settle()
            except KeyboardInterrupt:
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
        ledger.resume(store, slug)  # rows claimed but never handed to a thread (an interrupt mid-claim)
    seconds = time.monotonic() - started
    return CampaignRun(slug, subject, tally["sent"], tally["failed"], tally["bounced"], tally["skipped"], seconds, halted())
