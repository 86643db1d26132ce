"""Review of issue 13 (bounces and complaints after the SMTP session): the cases a review found
broken, each kept as a test that failed before its fix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest

from live_web import LOOSE, SECRET, SITE_TOML, loopback_socket, serve
from review_press.store import Store, feedback, ledger
from review_press.store.model import Feedback
from review_press.web import create_app
from sites import write_site
from webhook_payloads import BOUNCES_TOML, CERT_URL, ENV, SUBSCRIBE_URL, seed_cert, sns_post

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
RULE = feedback.SoftRule(limit=3, days=7)


def test_one_reader_reporting_their_own_message_again_and_again_cannot_pause_a_campaign(any_store: Store) -> None:
    # A reader knows their own return path and Message-ID: mailing in four complaints about
    # their one message (or a feedback loop and a webhook both reporting it) is one complaint.
    store = any_store
    ids = [store.add(f"r{i}@example.org", now=T0 - dt.timedelta(days=30)).id for i in range(1000)]
    ledger.fill(store, "first", late_joiners=True, now=T0)
    store.conn.execute("UPDATE deliveries SET status = 'sent'")
    guard = feedback.Guard()  # the defaults: 0.3% of at least 1,000
    complaints = [Feedback(f"mail:report-{n}:{ids[0]}", "complaint", ids[0], "maildir", "first", "abuse") for n in range(4)]
    hard = [Feedback(f"{src}:dsn-{n}:{ids[1]}", "hard", ids[1], src, "first", "5.1.1") for n, src in enumerate(("maildir", "ses"))]
    assert feedback.record(store, complaints + hard, RULE, now=T0) == ["complained"] + ["unchanged"] * 3 + ["bounced", "unchanged"]
    assert feedback.check(store, "first", guard, now=T0) is None
    seen = feedback.per_campaign(store)["first"]
    assert (seen.complaints, seen.hard) == (1, 1)
    # four readers' complaints are four: 0.4% of 1,000 pauses it
    others = [Feedback(f"mail:c:{sid}", "complaint", sid, "maildir", "first", "abuse") for sid in ids[2:5]]
    feedback.record(store, others, RULE, now=T0)
    assert feedback.check(store, "first", guard, now=T0) == "complaints at 0.40% (4 of 1,000 sent), over the 0.30% limit"


def test_a_window_longer_than_any_date_means_forever_not_a_traceback(any_store: Store) -> None:
    # press.toml accepts `soft_days = 1e12` and `webhook_max_age = inf` (greater than 0): the
    # window then reaches back before every report, rather than overflowing a timedelta
    store = any_store
    ann = store.add("ann@example.org", now=T0 - dt.timedelta(days=30)).id
    for n, days in enumerate((1e12, float("inf"))):
        event = Feedback(f"mail:soft-{n}:{ann}", "soft", ann, "maildir", code="4.2.2")
        when = T0 + dt.timedelta(days=400 * n)
        assert feedback.record(store, [event], feedback.SoftRule(limit=2, days=days), now=when) == [["soft"], ["bounced"]][n]
    assert feedback.record(store, [], now=T0, nonce="mailgun:tok", keep_seconds=float("inf")) is not None  # taken
    assert feedback.record(store, [], now=T0 + dt.timedelta(days=9000), nonce="mailgun:tok", keep_seconds=float("inf")) is None  # a replay


def test_an_sns_subscription_whose_confirmation_failed_is_confirmed_when_sns_sends_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The confirming GET failed (502): SNS sends the same SubscriptionConfirmation again, and that
    # one must be confirmed, not refused as a replay of a post that was never taken.
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REVIEW_PRESS_DATABASE_URL", raising=False)
    sock = loopback_socket()
    host, port = sock.getsockname()[:2]
    root = write_site(tmp_path / "site", {}, SITE_TOML.format(url=f"http://{host}:{port}/") + BOUNCES_TOML)
    seed_cert(root / ".review-press", CERT_URL)
    fetched: list[str] = []

    def flaky_fetch(url: str) -> bytes:
        fetched.append(url)
        if len(fetched) == 1:
            raise OSError("connection reset")
        return b""

    post = sns_post("SubscriptionConfirmation", "You have chosen to subscribe")
    with serve(create_app(root, LOOSE, fetch=flaky_fetch), sock) as url, httpx.Client(base_url=url, timeout=10.0) as http:
        first = http.post("webhooks/ses", json=post)
        assert first.status_code == 502
        again = http.post("webhooks/ses", json=post)
        assert again.status_code == 200 and again.json()["confirmed"] == 1, again.text
        assert fetched == [SUBSCRIBE_URL, SUBSCRIBE_URL]
        assert http.post("webhooks/ses", json=post).status_code == 409  # now it is a replay


def test_one_soft_bounce_reported_by_the_mailbox_and_a_webhook_counts_once(any_store: Store) -> None:
    # SES both mails the DSN to the return path and posts it to SNS: one message, one soft bounce
    store = any_store
    ann = store.add("ann@example.org", now=T0 - dt.timedelta(days=30)).id
    rule = feedback.SoftRule(limit=2, days=7)

    def soft(source: str, campaign: str, day: int) -> list[str] | None:
        event = Feedback(f"{source}:{campaign}:{ann}", "soft", ann, source, campaign, "4.2.2")
        return feedback.record(store, [event], rule, now=T0 + dt.timedelta(days=day))

    assert soft("maildir", "first", 0) == ["soft"]
    assert soft("ses", "first", 0) == ["soft"]  # the same message: still one
    assert store.get(ann).status == "active"  # type: ignore[union-attr]
    assert soft("maildir", "second", 1) == ["bounced"]  # two messages within the window
