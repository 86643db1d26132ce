"""`review-press publish --follow`: publishing as a service.

It builds and publishes (exactly as `publish` does: every run resumes what an earlier one left,
so a restart loses nothing and sends nothing twice), then sleeps until the soonest post dated in
the future is due, or `poll_seconds` have passed (a post written meanwhile is found then), and
does it again (a weekly digest is due when its window ends: the round then starts and sends it), until SIGTERM (systemd's stop) or SIGINT. A round that fails (a post with a bad
date, the server refusing everything) is reported and the next round tries again: one typo in a
post never stops the service. SIGTERM during a round stops it after the messages in flight.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .build import build
from .content import Post
from .delivery.run import StopRequest, stop_on_signals
from .errors import DeliveryError, PressError
from .letters import window
from .publish import PublishOptions, PublishReport, SendingStopped, publish


@dataclass(frozen=True)
class Round:
    """What one round did: its report (None when it failed before sending), the error that
    stopped it (None: it went through), and when the next round is due."""

    report: PublishReport | None
    error: PressError | None
    next_at: dt.datetime


def next_round(scheduled: tuple[Post, ...], now: dt.datetime, poll_seconds: float, digest_at: dt.datetime | None = None) -> dt.datetime:
    """When to look again: the soonest of the round's scheduled posts (its build's
    `Plan.scheduled`, soonest first; none when the build failed), the end of the digest window
    under way (`digest_at`), or `poll_seconds` from `now`."""
    latest = now + dt.timedelta(seconds=poll_seconds)
    return min([latest, *([scheduled[0].date] if scheduled else []), *([digest_at] if digest_at else [])])


def follow(
    root: Path,
    options: PublishOptions = PublishOptions(),
    *,
    poll_seconds: float = 60.0,
    on_round: Callable[[Round], None] | None = None,
    stop: StopRequest | None = None,
) -> int:
    """Build and publish in rounds until stopped (see the module doc); return the signal that
    stopped it (SIGTERM or SIGINT)."""
    stop = stop or StopRequest()
    with stop_on_signals(stop):
        while not stop.is_set():
            report: PublishReport | None = None
            error: PressError | None = None
            soonest: tuple[Post, ...] = ()
            digest_at: dt.datetime | None = None
            try:
                plan, _ = build(root)
                soonest = plan.scheduled
                digest_at = window(plan.config, dt.datetime.now(dt.UTC))[1] + dt.timedelta(days=7)
                if stop.is_set():  # SIGTERM while building: no campaign starts
                    break
                report = publish(root, options, stop=stop)  # the same stop request: a signal at any moment ends the round
            except OSError as exc:  # a file or folder that cannot be read or written just now: the next round tries again
                error = DeliveryError(f"this round failed: {exc.strerror or exc}")
            except SendingStopped as exc:
                report, error = exc.report, exc
            except PressError as exc:
                error = exc
            if report is not None and report.interrupted:
                stop.set(report.signum or signal.SIGTERM)
            wake = next_round(soonest, dt.datetime.now(dt.UTC), poll_seconds, digest_at)
            if on_round is not None:
                on_round(Round(report, error, wake))
            while not stop.is_set() and dt.datetime.now(dt.UTC) < wake:
                time.sleep(min(0.2, max(0.0, (wake - dt.datetime.now(dt.UTC)).total_seconds())))
    return stop.signum or signal.SIGTERM
