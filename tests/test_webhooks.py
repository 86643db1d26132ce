"""The provider webhooks under a real uvicorn server on 127.0.0.1, on both stores: posts built
and signed here as Amazon SNS (for SES), Postmark, Mailgun and SendGrid make them, with keys of
our own. A good post changes the reader; a forged, stale, replayed, foreign or malformed one
is refused with a 4xx and changes nothing (not even the replay table), with no traceback."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from live_web import LOOSE, SECRET, SITE_TOML, Live, assert_clean, loopback_socket, serve
from review_press.bounces.webhook_sns import cert_path
from review_press.identity import PostFacts
from review_press.newsletter import campaign_message_id
from review_press.store import Subscriber, ledger
from review_press.web import create_app
from sites import post_text, write_site
from webhook_payloads import (
    BOUNCES_TOML,
    CERT_URL,
    ENV,
    MAILGUN_KEY,
    OTHER_CERT,
    OTHER_EC_KEY,
    OTHER_KEY,
    POSTMARK_PASSWORD,
    SNS_CERT,
    SUBSCRIBE_URL,
    basic_auth,
    mailgun_failed,
    mailgun_post,
    postmark_bounce,
    seed_cert,
    sendgrid_event,
    sendgrid_signed,
    ses_bounce,
    ses_complaint,
    sns_post,
)

DOMAIN = "example.org"  # the domain of our Message-IDs (the sender's)
SECRETS = (SECRET, POSTMARK_PASSWORD, MAILGUN_KEY)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on both stores (PostgreSQL through REVIEW_PRESS_DATABASE_URL, as a deployment sets it)."""
    if request.param == "postgresql":
        monkeypatch.setenv("REVIEW_PRESS_DATABASE_URL", request.getfixturevalue("pg_url"))
    return request.param


@dataclass
class Hooked:
    """A running site with webhooks, what its fake certificate fetcher was asked, and the store."""

    live: Live
    fetched: list[str] = field(default_factory=list)
    answers: dict[str, bytes] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.live.root / ".review-press"

    def post(self, provider: str, payload: Any = None, *, body: bytes | None = None, **kw: Any) -> httpx.Response:
        data = body if body is not None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
        r = self.live.http.post(f"webhooks/{provider}", content=data, headers=headers, **kw)
        assert_clean(r, *SECRETS)
        return r

    def add(self, *addresses: str) -> dict[str, int]:
        with self.live.store() as store:
            return {a: store.add(a, status="active").id for a in addresses}

    def campaign(self, slug: str = "hello") -> str:
        with self.live.store() as store:
            return ledger.start_campaign(store, PostFacts(slug, f"posts/{slug}.md", None, "2026-02-01", "Hello", "h"), "h")

    def reader(self, address: str) -> Subscriber:
        with self.live.store() as store:
            sub = store.find(address)
        assert sub is not None
        return sub

    def feedback(self) -> list[tuple[str, str, int, str | None, str]]:
        with self.live.store() as store:
            rows = store.conn.execute("SELECT event_key, kind, subscriber_id, campaign, source FROM feedback ORDER BY event_key")
            return [tuple(r) for r in rows]  # type: ignore[misc]

    def state(self) -> tuple[object, ...]:
        """Everything a refused post must leave as it was: readers, reports, remembered nonces."""
        with self.live.store() as store:
            subs = [(s.address, s.status, s.status_reason) for s in store.iter_subscribers()]
            seen = store.conn.execute("SELECT count(*) FROM webhook_seen").fetchone()[0]
        return (subs, self.feedback(), seen)


@contextmanager
def hook_site(tmp_path: Path, bounces: str = BOUNCES_TOML, *, real_fetch: bool = False) -> Iterator[Hooked]:
    """A site with [bounces] `bounces`, served; its SNS fetcher records every URL and returns
    `Hooked.answers[url]` (b"" by default), unless `real_fetch` (HTTPS for real)."""
    sock = loopback_socket()
    host, port = sock.getsockname()[:2]
    toml = SITE_TOML.format(url=f"http://{host}:{port}/") + bounces
    root = write_site(tmp_path / "site", {"2026-02-01-hello.md": post_text("Hello", "2026-02-01")}, toml)
    fetched: list[str] = []
    answers: dict[str, bytes] = {}

    def fake_fetch(url: str) -> bytes:
        fetched.append(url)
        return answers.get(url, b"")

    app = create_app(root, LOOSE, fetch=None if real_fetch else fake_fetch)
    with serve(app, sock) as url, httpx.Client(base_url=url, timeout=10.0, follow_redirects=False) as http:
        yield Hooked(Live(root, url, http), fetched, answers)


@pytest.fixture
def hooked(store_kind: str, tmp_path: Path) -> Iterator[Hooked]:
    """Every provider set up; SNS's certificate for `CERT_URL` already in the cache."""
    with hook_site(tmp_path) as h:
        seed_cert(h.state_dir, CERT_URL)
        yield h


def refused(h: Hooked, status: int, provider: str, payload: Any = None, **kw: Any) -> httpx.Response:
    """Post, expect `status`, and check that nothing in the store changed."""
    before = h.state()
    r = h.post(provider, payload, **kw)
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["ok"] is False
    assert h.state() == before
    return r


# --- Amazon SES through SNS --------------------------------------------------------------


def test_ses_hard_bounce_by_message_id_bounces_the_reader(hooked: Hooked) -> None:
    ids = hooked.add("ann@example.org", "bo@example.org")
    key = hooked.campaign()
    mid = campaign_message_id(key, ids["ann@example.org"], DOMAIN, SECRET.encode())
    r = hooked.post("ses", sns_post("Notification", ses_bounce(["Ann@Example.org"], "Permanent", mid)))
    assert r.status_code == 200 and r.json() == {"ok": True, "events": 1, "ignored": 0, "bounced": 1}
    ann = hooked.reader("ann@example.org")
    assert ann.status == "bounced" and "(ses)" in ann.status_reason and "5.1.1" in ann.status_reason
    [(event_key, kind, sid, campaign, source)] = hooked.feedback()
    assert (kind, sid, campaign, source) == ("hard", ids["ann@example.org"], key, "ses") and event_key.startswith("ses:")
    assert hooked.reader("bo@example.org").status == "active"
    assert hooked.fetched == []  # the certificate came from the cache


def test_ses_complaint_with_signature_version_2(hooked: Hooked) -> None:
    hooked.add("cy@example.org")
    r = hooked.post("ses", sns_post("Notification", ses_complaint(["cy@example.org"]), version="2", subject=None))
    assert r.status_code == 200 and r.json()["complained"] == 1
    cy = hooked.reader("cy@example.org")
    assert cy.status == "complained" and cy.status_reason == "complaint (ses): abuse"
    assert [row[1:] for row in hooked.feedback()] == [("complaint", cy.id, None, "ses")]


def test_ses_soft_bounces_count_until_the_limit(hooked: Hooked) -> None:
    hooked.add("dee@example.org")
    first = hooked.post("ses", sns_post("Notification", ses_bounce(["dee@example.org"], "Transient")))
    assert first.json()["soft"] == 1 and hooked.reader("dee@example.org").status == "active"
    second = hooked.post("ses", sns_post("Notification", ses_bounce(["dee@example.org"], "Undetermined")))
    assert second.json()["bounced"] == 1  # [bounces] soft_limit = 2
    dee = hooked.reader("dee@example.org")
    assert dee.status == "bounced" and "2 soft bounces" in dee.status_reason and "(ses)" in dee.status_reason
    assert [row[1] for row in hooked.feedback()] == ["soft", "soft"]


def test_ses_events_for_nobody_and_deliveries_are_ignored(hooked: Hooked) -> None:
    hooked.add("eve@example.org")
    r = hooked.post("ses", sns_post("Notification", ses_bounce(["stranger@example.net", "eve@example.org"])))
    assert r.status_code == 200 and r.json() == {"ok": True, "events": 2, "ignored": 1, "bounced": 1}
    delivery = json.dumps({"notificationType": "Delivery", "mail": {}, "delivery": {"recipients": ["eve@example.org"]}})
    assert hooked.post("ses", sns_post("Notification", delivery)).json() == {"ok": True, "events": 0, "ignored": 0}
    assert len(hooked.feedback()) == 1 and hooked.reader("eve@example.org").status == "bounced"


def test_a_message_id_of_another_reader_is_attributed_by_address(hooked: Hooked) -> None:
    ids = hooked.add("fay@example.org", "gus@example.org")
    key = hooked.campaign()
    mid = campaign_message_id(key, ids["fay@example.org"], DOMAIN, SECRET.encode())  # Fay's message, Gus's bounce
    assert hooked.post("ses", sns_post("Notification", ses_bounce(["gus@example.org"], message_id=mid))).status_code == 200
    assert (hooked.reader("fay@example.org").status, hooked.reader("gus@example.org").status) == ("active", "bounced")
    assert [row[2:4] for row in hooked.feedback()] == [(ids["gus@example.org"], None)]  # campaign unknown


def test_ses_subscription_is_confirmed_on_sns_only(hooked: Hooked) -> None:
    hooked.add("hal@example.org")
    r = hooked.post("ses", sns_post("SubscriptionConfirmation", "You have chosen to subscribe"))
    assert r.status_code == 200 and r.json()["confirmed"] == 1
    assert hooked.fetched == [SUBSCRIBE_URL]
    evil = sns_post("SubscriptionConfirmation", "subscribe", subscribe_url="https://evil.example/?Action=ConfirmSubscription")
    refused(hooked, 400, "ses", evil)
    assert hooked.fetched == [SUBSCRIBE_URL]  # no request to the hostile URL
    assert hooked.post("ses", sns_post("UnsubscribeConfirmation", "unsubscribed")).json()["events"] == 0
    assert hooked.feedback() == [] and hooked.reader("hal@example.org").status == "active"


def test_ses_forged_signatures_wrong_key_and_foreign_topics_are_refused(hooked: Hooked) -> None:
    hooked.add("ida@example.org")
    tampered = sns_post("Notification", ses_complaint(["someone@example.org"]))
    tampered["Message"] = ses_complaint(["ida@example.org"])
    refused(hooked, 403, "ses", tampered)
    refused(hooked, 403, "ses", sns_post("Notification", ses_complaint(["ida@example.org"]), key=OTHER_KEY))
    refused(hooked, 403, "ses", {**sns_post("Notification", ses_complaint(["ida@example.org"])), "Signature": "bm90IGEgc2lnbmF0dXJl"})
    foreign = "arn:aws:sns:us-east-1:999999999999:attacker-topic"  # validly signed by SNS, but not our topic
    r = refused(hooked, 403, "ses", sns_post("Notification", ses_complaint(["ida@example.org"]), topic=foreign))
    assert "topic" in r.json()["message"]
    refused(hooked, 400, "ses", sns_post("Notification", ses_complaint(["ida@example.org"]), version="3"))
    assert hooked.reader("ida@example.org").status == "active" and hooked.fetched == []


HOSTILE_CERT_URLS = (
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
    "https://evil.example/SimpleNotificationService-x.pem",
    "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
    "https://sns.us-east-1.amazonaws.com:443@evil.example/x.pem",
    "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
    "https://sns.us-east-1.amazonaws.com:8443/x.pem",
    "https://sns.us-east-1.amazonaws.com/x.txt",
    "https://sns.us-east-1.amazonaws.com/x.pem?x=1",
    "https://sns.us-east-1.amazonaws.com/x.pem#frag",
    "https://evil.example/?sns.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com%2F@evil.example/x.pem",
    "https://SNS.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com/../x.pem",
    "ftp://sns.us-east-1.amazonaws.com/x.pem",
    "//sns.us-east-1.amazonaws.com/x.pem",
)


def test_hostile_signing_cert_urls_are_refused_even_with_a_cached_certificate(hooked: Hooked) -> None:
    hooked.add("jo@example.org")
    for url in HOSTILE_CERT_URLS:
        seed_cert(hooked.state_dir, url)  # were the URL not checked, this certificate would verify the post
        r = refused(hooked, 403, "ses", sns_post("Notification", ses_bounce(["jo@example.org"]), cert_url=url))
        assert "certificate URL" in r.json()["message"], url
    assert hooked.fetched == [] and hooked.reader("jo@example.org").status == "active"


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - one list per test, set by the test

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(SNS_CERT)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_no_request_reaches_a_server_named_by_a_hostile_cert_url(store_kind: str, tmp_path: Path) -> None:
    hits: list[str] = []
    handler = type("Handler", (_Counting,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with hook_site(tmp_path, real_fetch=True) as h:
            h.add("kim@example.org")
            for url in (
                f"http://127.0.0.1:{port}/cert.pem",
                f"https://127.0.0.1:{port}/cert.pem",
                f"https://sns.us-east-1.amazonaws.com@127.0.0.1:{port}/cert.pem",
                f"http://sns.us-east-1.amazonaws.com@127.0.0.1:{port}/cert.pem",
            ):
                r = refused(h, 403, "ses", sns_post("Notification", ses_bounce(["kim@example.org"]), cert_url=url))
                assert "certificate URL" in r.json()["message"]
            evil = sns_post("SubscriptionConfirmation", "x", subscribe_url=f"http://127.0.0.1:{port}/confirm")
            seed_cert(h.state_dir, CERT_URL)
            refused(h, 400, "ses", evil)
            assert h.reader("kim@example.org").status == "active"
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []


def test_the_certificate_cache_is_per_url(hooked: Hooked) -> None:
    hooked.add("lu@example.org")
    other_url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-other.pem"
    seed_cert(hooked.state_dir, other_url, OTHER_CERT)  # CERT_URL's file holds our key; this URL's another
    refused(hooked, 403, "ses", sns_post("Notification", ses_bounce(["lu@example.org"]), cert_url=other_url))
    assert hooked.post("ses", sns_post("Notification", ses_bounce(["lu@example.org"]))).status_code == 200
    assert hooked.fetched == [] and hooked.reader("lu@example.org").status == "bounced"


def test_a_certificate_is_fetched_once_then_kept(hooked: Hooked) -> None:
    hooked.add("max@example.org", "ned@example.org")
    url = "https://sns.ap-south-1.amazonaws.com/SimpleNotificationService-new.pem"
    hooked.answers[url] = SNS_CERT
    assert hooked.post("ses", sns_post("Notification", ses_bounce(["max@example.org"]), cert_url=url)).status_code == 200
    assert cert_path(hooked.state_dir, url).read_bytes() == SNS_CERT
    assert hooked.post("ses", sns_post("Notification", ses_bounce(["ned@example.org"]), cert_url=url)).status_code == 200
    assert hooked.fetched == [url]
    assert {hooked.reader(a).status for a in ("max@example.org", "ned@example.org")} == {"bounced"}
    unfetchable = "https://sns.ap-south-2.amazonaws.com/SimpleNotificationService-gone.pem"  # the fake answers b""
    hooked.add("oz@example.org")
    refused(hooked, 503, "ses", sns_post("Notification", ses_bounce(["oz@example.org"]), cert_url=unfetchable))
    assert not cert_path(hooked.state_dir, unfetchable).exists()


def test_ses_timestamps_older_than_an_hour_or_in_the_future_are_refused(hooked: Hooked) -> None:
    hooked.add("pam@example.org")
    now = dt.datetime.now(dt.UTC)
    for stamp in (now - dt.timedelta(minutes=61), now + dt.timedelta(minutes=10)):
        refused(hooked, 400, "ses", sns_post("Notification", ses_bounce(["pam@example.org"]), timestamp=stamp))
    late = sns_post("Notification", ses_bounce(["pam@example.org"]), timestamp=now - dt.timedelta(minutes=50))
    assert hooked.post("ses", late).status_code == 200  # SNS retries for a while: within the hour is fine
    assert hooked.reader("pam@example.org").status == "bounced"


# --- replays, garbage, limits ------------------------------------------------------------


def _posts(h: Hooked, address: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    """One good post per provider (a hard bounce of `address`), as body and headers."""
    sg_body, sg_headers = sendgrid_signed(json.dumps([sendgrid_event(address, "bounce", type="bounce", status="5.1.1")]).encode())
    return {
        "ses": (json.dumps(sns_post("Notification", ses_bounce([address]))).encode(), {}),
        "postmark": (json.dumps(postmark_bounce(address)).encode(), basic_auth()),
        "mailgun": (json.dumps(mailgun_post(mailgun_failed(address))).encode(), {}),
        "sendgrid": (sg_body, sg_headers),
    }


def test_a_replayed_post_is_refused_and_recorded_once(hooked: Hooked) -> None:
    for provider in ("ses", "postmark", "mailgun", "sendgrid"):
        address = f"{provider}@example.org"
        hooked.add(address)
        body, headers = _posts(hooked, address)[provider]
        first = hooked.post(provider, body=body, headers=headers)
        assert first.status_code == 200 and first.json()["bounced"] == 1, (provider, first.text)
        refused(hooked, 409, provider, body=body, headers=headers)
        assert hooked.reader(address).status == "bounced" and f"({provider})" in hooked.reader(address).status_reason
    assert sorted(row[4] for row in hooked.feedback()) == ["mailgun", "postmark", "sendgrid", "ses"]


GARBAGE = (b"not json at all", b"\xff\xfe\x00", b"[]", b"{}", b"null", b'"a string"', b"[" * 5000 + b"]" * 5000, b'{"a": [1, 2]}')


def test_garbage_bodies_are_refused_without_a_trace(hooked: Hooked) -> None:
    hooked.add("rae@example.org")
    for body in GARBAGE:
        refused(hooked, 400, "ses", body=body)
        refused(hooked, 400, "postmark", body=body, headers=basic_auth())
        refused(hooked, 400, "mailgun", body=body)
        if body != b"[]":  # a signed empty batch is a good post of no events
            signed, headers = sendgrid_signed(body)
            refused(hooked, 400, "sendgrid", body=signed, headers=headers)
    # the right shape, a field missing or of the wrong type
    good = sns_post("Notification", ses_bounce(["rae@example.org"]))
    refused(hooked, 400, "ses", {k: v for k, v in good.items() if k != "MessageId"})
    refused(hooked, 400, "ses", {**good, "Timestamp": 12})
    no_recipients = json.dumps({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent"}, "mail": {}})
    refused(hooked, 400, "ses", sns_post("Notification", no_recipients))
    refused(hooked, 400, "ses", sns_post("Notification", "not json"))
    refused(hooked, 400, "postmark", {k: v for k, v in postmark_bounce("rae@example.org").items() if k != "Email"}, headers=basic_auth())
    refused(hooked, 400, "postmark", {**postmark_bounce("rae@example.org"), "ID": [1]}, headers=basic_auth())
    refused(hooked, 400, "mailgun", {"signature": "x", "event-data": {}})
    refused(hooked, 400, "mailgun", mailgun_post({"event": "failed", "severity": "permanent"}))
    signed, headers = sendgrid_signed(json.dumps([{"event": "bounce", "sg_event_id": "x"}]).encode())
    refused(hooked, 400, "sendgrid", body=signed, headers=headers)
    assert hooked.reader("rae@example.org").status == "active"


def test_oversized_bodies_are_refused(hooked: Hooked) -> None:
    hooked.add("sam@example.org")
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    for provider in ("ses", "postmark", "mailgun", "sendgrid"):
        refused(hooked, 413, provider, body=big, headers=basic_auth())

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused as it passes the limit
        for _ in range(20):
            yield b"a" * 65536

    before = hooked.state()
    r = hooked.live.http.post("webhooks/mailgun", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and hooked.state() == before


# --- Postmark ------------------------------------------------------------------------------


def test_postmark_bounces_and_complaints(hooked: Hooked) -> None:
    hooked.add("tia@example.org", "uma@example.org", "val@example.org")
    r = hooked.post("postmark", postmark_bounce("tia@example.org", "HardBounce", 4323372036854775807), headers=basic_auth())
    assert r.status_code == 200 and r.json()["bounced"] == 1
    tia = hooked.reader("tia@example.org")
    assert tia.status == "bounced" and tia.status_reason.startswith("bounced (postmark): HardBounce smtp;550 5.1.1")
    assert hooked.post("postmark", postmark_bounce("uma@example.org", "SpamComplaint"), headers=basic_auth()).json()["complained"] == 1
    assert hooked.reader("uma@example.org").status_reason.startswith("complaint (postmark)")
    assert hooked.post("postmark", postmark_bounce("val@example.org", "SoftBounce"), headers=basic_auth()).json()["soft"] == 1
    ignored = hooked.post("postmark", postmark_bounce("val@example.org", "AutoResponder"), headers=basic_auth())
    assert ignored.json() == {"ok": True, "events": 0, "ignored": 0}
    assert hooked.reader("val@example.org").status == "active"
    assert [row[0] for row in hooked.feedback() if row[2] == tia.id] == [f"postmark:4323372036854775807:{tia.id}"]


def test_postmark_refuses_bad_credentials(hooked: Hooked) -> None:
    hooked.add("wes@example.org")
    payload = postmark_bounce("wes@example.org")
    for headers in (
        {},
        basic_auth(password="wrong"),
        basic_auth(user="someone"),
        basic_auth(password=POSTMARK_PASSWORD + "x"),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer " + POSTMARK_PASSWORD},
        {"Authorization": "Basic " + "cG9zdG1hcmstaG9vaw=="},  # the user without a colon or password
    ):
        r = refused(hooked, 401, "postmark", payload, headers=headers)
        assert r.headers["www-authenticate"].startswith("Basic")
    assert hooked.reader("wes@example.org").status == "active"


# --- Mailgun -------------------------------------------------------------------------------


def test_mailgun_failures_and_complaints(hooked: Hooked) -> None:
    ids = hooked.add("xia@example.org", "yan@example.org", "zed@example.org")
    key = hooked.campaign()
    mid = campaign_message_id(key, ids["xia@example.org"], DOMAIN, SECRET.encode())
    r = hooked.post("mailgun", mailgun_post(mailgun_failed("xia@example.org", "permanent", mid)))
    assert r.status_code == 200 and r.json()["bounced"] == 1
    assert [row[1:4] for row in hooked.feedback()] == [("hard", ids["xia@example.org"], key)]  # the Message-ID without <> found it
    assert hooked.reader("xia@example.org").status_reason == "bounced (mailgun): 5.1.1 mailbox does not exist"
    complaint = {"event": "complained", "id": "c1", "recipient": "yan@example.org", "message": {"headers": {}}}
    assert hooked.post("mailgun", mailgun_post(complaint)).json()["complained"] == 1
    assert hooked.reader("yan@example.org").status_reason == "complaint (mailgun)"
    assert hooked.post("mailgun", mailgun_post(mailgun_failed("zed@example.org", "temporary"))).json()["soft"] == 1
    assert hooked.reader("zed@example.org").status == "active"


def test_mailgun_refuses_wrong_keys_and_stale_timestamps(hooked: Hooked) -> None:
    hooked.add("abe@example.org")
    event = mailgun_failed("abe@example.org")
    refused(hooked, 403, "mailgun", mailgun_post(event, key="not-the-key"))
    forged = mailgun_post(event)
    forged["signature"]["timestamp"] = str(int(forged["signature"]["timestamp"]) + 1)
    refused(hooked, 403, "mailgun", forged)
    now = dt.datetime.now(dt.UTC).timestamp()
    refused(hooked, 400, "mailgun", mailgun_post(event, timestamp=now - 301))
    refused(hooked, 400, "mailgun", mailgun_post(event, timestamp=now + 400))
    assert hooked.reader("abe@example.org").status == "active"


# --- SendGrid ------------------------------------------------------------------------------


def test_sendgrid_batch(hooked: Hooked) -> None:
    ids = hooked.add("bea@example.org", "cal@example.org", "dan@example.org", "eli@example.org", "flo@example.org")
    key = hooked.campaign()
    mid = campaign_message_id(key, ids["bea@example.org"], DOMAIN, SECRET.encode())
    events = [
        sendgrid_event("bea@example.org", "bounce", mid, type="bounce", status="5.1.1", reason="550 unknown user"),
        sendgrid_event("cal@example.org", "bounce", type="blocked", status="4.0.0", reason="blocked"),
        sendgrid_event("dan@example.org", "dropped", reason="Bounced Address"),
        sendgrid_event("eli@example.org", "spamreport"),
        sendgrid_event("flo@example.org", "open"),
        sendgrid_event("flo@example.org", "dropped", reason="Unsubscribed Address"),
        sendgrid_event("nobody@example.org", "bounce", type="bounce"),
    ]
    body, headers = sendgrid_signed(json.dumps(events).encode())
    r = hooked.post("sendgrid", body=body, headers=headers)
    assert r.status_code == 200 and r.json() == {"ok": True, "events": 5, "ignored": 1, "bounced": 2, "soft": 1, "complained": 1}
    status = {a: hooked.reader(a).status for a in ids}
    assert status == {
        "bea@example.org": "bounced",
        "cal@example.org": "active",
        "dan@example.org": "bounced",
        "eli@example.org": "complained",
        "flo@example.org": "active",
    }
    assert hooked.reader("bea@example.org").status_reason == "bounced (sendgrid): 5.1.1 550 unknown user"
    assert [row[3] for row in hooked.feedback() if row[2] == ids["bea@example.org"]] == [key]


def test_sendgrid_refuses_forged_unsigned_and_stale_posts(hooked: Hooked) -> None:
    hooked.add("gil@example.org")
    body = json.dumps([sendgrid_event("gil@example.org", "spamreport")]).encode()
    signed, headers = sendgrid_signed(body)
    refused(hooked, 403, "sendgrid", body=signed.replace(b"spamreport", b"spamreporx"), headers=headers)
    _, other = sendgrid_signed(body, key=OTHER_EC_KEY)
    refused(hooked, 403, "sendgrid", body=body, headers=other)
    refused(hooked, 403, "sendgrid", body=body, headers={**headers, "X-Twilio-Email-Event-Webhook-Signature": "bm90IGEgc2ln"})
    refused(hooked, 403, "sendgrid", body=body, headers={**headers, "X-Twilio-Email-Event-Webhook-Timestamp": "1"})
    refused(hooked, 401, "sendgrid", body=body)
    now = dt.datetime.now(dt.UTC).timestamp()
    for stamp in (now - 301, now + 400):
        stale_body, stale = sendgrid_signed(body, timestamp=stamp)
        refused(hooked, 400, "sendgrid", body=stale_body, headers=stale)
    assert hooked.reader("gil@example.org").status == "active"


# --- set-up --------------------------------------------------------------------------------


def test_providers_not_configured_are_404(store_kind: str, tmp_path: Path) -> None:
    with hook_site(tmp_path, "") as h:
        h.add("hu@example.org")
        for provider, (body, headers) in _posts(h, "hu@example.org").items():
            before = h.state()
            r = h.post(provider, body=body, headers=headers)
            assert r.status_code == 404 and h.state() == before, provider
        assert h.reader("hu@example.org").status == "active"


def test_a_configured_provider_without_its_secret_is_503(store_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_POSTMARK_PASSWORD")
    monkeypatch.delenv("TEST_MAILGUN_KEY")
    with hook_site(tmp_path) as h:
        h.add("ivy@example.org")
        posts = _posts(h, "ivy@example.org")
        refused(h, 503, "postmark", body=posts["postmark"][0], headers=posts["postmark"][1])
        refused(h, 503, "mailgun", body=posts["mailgun"][0])
        assert h.post("sendgrid", body=posts["sendgrid"][0], headers=posts["sendgrid"][1]).status_code == 200
        assert h.reader("ivy@example.org").status == "bounced"  # by the one provider that has its key


def test_a_bad_sendgrid_key_stops_the_app_from_starting(tmp_path: Path) -> None:
    from review_press.errors import ConfigError

    root = write_site(tmp_path / "bad", {}, SITE_TOML.format(url="http://127.0.0.1:9/") + '\n[bounces]\nsendgrid_public_key = "AAAA"\n')
    with pytest.raises(ConfigError, match="sendgrid_public_key"):
        create_app(root, LOOSE)
    assert not (root / ".review-press" / "press.db").exists()
