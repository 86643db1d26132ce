"""The subscription endpoints under a real uvicorn server on 127.0.0.1, driven with httpx.

Every hostile input of issue 5 has a test here: malformed and oversized addresses and bodies,
forged, expired and truncated tokens, a token for a deleted subscriber, replayed confirm and
unsubscribe, header injection, bursts over the rate limits. No answer may carry a stack
trace, a token or the secret.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_web import SECRET, Live, assert_clean, confirm_link, loopback_socket, outbox, running, serve, start_site, tampered
from review_press.config import load_config
from review_press.store import SQLiteStore, ledger
from review_press.tokens import make_token, site_secret
from review_press.web import Rate, SiteApp, WebLimits
from review_press.web.app import limit_key
from review_press.web.confirm import BadToken, check_confirm_token, confirm_key, make_confirm_token
from review_press.web.ratelimit import TokenBuckets, retry_after
from review_press.web.service import Subscriptions
from waiting import wait_for


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """The web app of a test site, served; every test runs on both stores (PostgreSQL through
    REVIEW_PRESS_DATABASE_URL, as a deployment sets it)."""
    if request.param == "postgresql":
        monkeypatch.setenv("REVIEW_PRESS_DATABASE_URL", request.getfixturevalue("pg_url"))
    with running(tmp_path) as app:
        yield app


# --- the happy path -----------------------------------------------------------------------


def test_healthz_and_wal(live: Live) -> None:
    r = live.http.get("healthz")
    assert (r.status_code, r.json()) == (200, {"ok": True})
    with live.store() as store:
        if isinstance(store, SQLiteStore):
            assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        else:
            assert store.conn.execute("SELECT version FROM schema_version").fetchone()[0] >= 4


def test_subscribe_stores_pending_and_mails_a_mime_confirmation(live: Live) -> None:
    r = live.subscribe("Ann@Example.org", "Ann Example")
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert 'href="https://example.org/blog/assets/style.css' in r.text  # the site's theme, from the site
    assert wait_for(lambda: len(outbox(live.root)) == 1)
    with live.store() as store:
        sub = store.find("ann@example.org")
    assert sub is not None and (sub.status, sub.name, sub.consent_source) == ("pending", "Ann Example", "web form")
    msg = outbox(live.root)[0]
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"] == "Confirm your subscription to Test Site"
    assert msg["From"].addresses[0].addr_spec == "letters@example.org"
    to = msg["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == ("", "Ann@example.org")  # the confirmation never echoes the name
    assert msg["Date"] and msg["Message-ID"].endswith("@example.org>")
    link = confirm_link(msg)
    assert link.startswith(live.url + "confirm/")
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert f'href="{link}"' in html


def test_confirm_activates_records_consent_and_is_idempotent(live: Live) -> None:
    link = live.subscribe_and_confirm_link("bo@example.org")
    first = live.http.get(link)
    assert first.status_code == 200 and "You are subscribed" in first.text
    with live.store() as store:
        sub = store.find("bo@example.org")
    assert sub is not None and sub.status == "active"
    assert (sub.consent_source, sub.consent_ip) == ("web form", "127.0.0.1")
    assert sub.consent_at and dt.datetime.fromisoformat(sub.consent_at.replace("Z", "+00:00")) > dt.datetime.now(dt.UTC) - dt.timedelta(
        minutes=1
    )
    replay = live.http.get(link)
    assert replay.status_code == 200 and "already subscribed" in replay.text
    assert_clean(replay, link.rsplit("/", 1)[1])
    with live.store() as store:
        assert store.find("bo@example.org").consent_at == sub.consent_at  # type: ignore[union-attr]


def test_json_subscribe_and_cors_for_the_site(live: Live) -> None:
    origin = {"Origin": "https://example.org"}
    pre = live.http.options(
        "subscribe", headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    )
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://example.org"
    r = live.http.post("subscribe", json={"email": "cy@example.org", "name": "Cy"}, headers=origin)
    assert r.status_code == 200 and r.json()["ok"] is True and "Check your inbox" in r.json()["message"]
    assert r.headers["access-control-allow-origin"] == "https://example.org"
    evil = live.http.options("subscribe", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers
    assert wait_for(lambda: live.status("cy@example.org") == "pending")


def test_the_answer_is_the_same_whoever_subscribes(live: Live) -> None:
    with live.store() as store:
        store.add("known@example.org", status="active")
        store.add("gone@example.org", status="bounced")
    answers = {a: live.subscribe(a) for a in ("new@example.org", "known@example.org", "gone@example.org")}
    assert {r.status_code for r in answers.values()} == {200}
    assert len({r.text for r in answers.values()}) == 1
    assert wait_for(lambda: len(outbox(live.root)) >= 1)
    time.sleep(0.3)  # give a wrong second email the chance to show up
    assert [str(m["To"]) for m in outbox(live.root)] == ["new@example.org"]
    assert (live.status("known@example.org"), live.status("gone@example.org")) == ("active", "bounced")


def test_honeypot_gets_the_same_answer_and_nothing_happens(live: Live) -> None:
    r = live.http.post("subscribe", data={"email": "bot@example.org", "website": "http://spam.example"})
    assert r.status_code == 200 and "Check your inbox" in r.text
    time.sleep(0.3)
    assert live.status("bot@example.org") is None and outbox(live.root) == []


def test_subscribe_page_works_without_javascript(live: Live) -> None:
    r = live.http.get("subscribe")
    assert r.status_code == 200 and 'method="post" action="subscribe"' in r.text and 'name="website"' in r.text


# --- unsubscribe --------------------------------------------------------------------------


def _active(live: Live, address: str) -> tuple[int, str]:
    with live.store() as store:
        sub = store.add(address, status="active")
    return sub.id, make_token(SECRET.encode(), sub.id)


def test_unsubscribe_page_masks_the_address_and_changes_nothing(live: Live) -> None:
    _, token = _active(live, "dora.explorer@example.org")
    r = live.http.get(f"unsubscribe/{token}")
    assert r.status_code == 200 and "d•••@e•••.org" in r.text and '<form method="post">' in r.text
    assert_clean(r, "dora.explorer@example.org", token)
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["x-frame-options"] == "DENY"
    assert live.status("dora.explorer@example.org") == "active"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("unsubscribe/{t}", b"List-Unsubscribe=One-Click"),
        ("unsubscribe/{t}", b""),
        ("unsubscribe?token={t}", b"List-Unsubscribe=One-Click"),
    ],
)
def test_one_click_unsubscribe_is_immediate_200_and_idempotent(live: Live, path: str, body: bytes) -> None:
    _, token = _active(live, "eve@example.org")
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    for _ in range(2):  # the replay answers the same
        r = live.http.post(path.format(t=token), content=body, headers=headers)
        assert r.status_code == 200 and "You are unsubscribed" in r.text
        assert_clean(r, token, "eve@example.org")
    assert live.status("eve@example.org") == "unsubscribed"
    again = live.http.get(path.format(t=token))
    assert again.status_code == 200 and "is not subscribed" in again.text


def test_unsubscribe_stops_pending_deliveries(live: Live) -> None:
    sub_id, token = _active(live, "fay@example.org")
    other_id, _ = _active(live, "gil@example.org")
    with live.store() as store:
        assert ledger.fill(store, "2026-02-01-hello", late_joiners=True) == 2
    assert live.http.post(f"unsubscribe/{token}", content=b"List-Unsubscribe=One-Click").status_code == 200
    with live.store() as store:
        rows = dict(store.conn.execute("SELECT subscriber_id, status FROM deliveries").fetchall())
        claimed = ledger.claim(store, "2026-02-01-hello", 10, lambda i: f"<{i}@x>", ledger.Lease("test", 60))
    assert rows == {sub_id: "skipped", other_id: "pending"}
    assert [c.subscriber_id for c in claimed.claims] == [other_id] and claimed.skipped == 0


def test_an_old_confirm_link_does_not_undo_an_unsubscribe(live: Live) -> None:
    link = live.subscribe_and_confirm_link("hal@example.org")
    assert live.http.get(link).status_code == 200
    with live.store() as store:
        sub_id = store.find("hal@example.org").id  # type: ignore[union-attr]
    assert live.http.post(f"unsubscribe/{make_token(SECRET.encode(), sub_id)}").status_code == 200
    replay = live.http.get(link)
    assert replay.status_code == 400 and "does not work" in replay.text
    assert live.status("hal@example.org") == "unsubscribed"


def test_an_unsubscribed_reader_may_subscribe_again_with_a_new_confirmation(live: Live) -> None:
    _, token = _active(live, "ivy@example.org")
    live.http.post(f"unsubscribe/{token}")
    assert live.subscribe("ivy@example.org").status_code == 200
    assert wait_for(lambda: len(live.mails_to("ivy@example.org")) == 1)
    assert live.status("ivy@example.org") == "pending"
    assert live.http.get(confirm_link(live.mails_to("ivy@example.org")[0])).status_code == 200
    assert live.status("ivy@example.org") == "active"


# --- hostile tokens -----------------------------------------------------------------------


def _confirm_token(live: Live, address: str, expires: dt.datetime) -> str:
    with live.store() as store:
        sub = store.find(address) or store.add(address, status="pending")
    return make_confirm_token(confirm_key(SECRET.encode()), sub.id, sub.address, expires)


def test_expired_confirm_token_is_refused(live: Live) -> None:
    token = _confirm_token(live, "jo@example.org", dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    r = live.http.get(f"confirm/{token}")
    assert r.status_code == 400 and "does not work" in r.text
    assert_clean(r, token)
    assert live.status("jo@example.org") == "pending"


def test_confirm_links_expire_after_confirm_days(live: Live) -> None:
    link = live.subscribe_and_confirm_link("kim@example.org")
    token = link.rsplit("/", 1)[1]
    from review_press.web.confirm import read_confirm_token

    expires = read_confirm_token(token)[0].expires
    assert abs((expires - dt.datetime.now(dt.UTC)) - dt.timedelta(days=7)) < dt.timedelta(minutes=1)


@pytest.mark.parametrize("kind", ["confirm", "unsubscribe"])
def test_forged_and_truncated_tokens_are_refused_without_leaking(live: Live, kind: str) -> None:
    if kind == "confirm":
        good = _confirm_token(live, "lee@example.org", dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    else:
        _, good = _active(live, "lee@example.org")
    for bad in tampered(good):
        r = live.http.get(f"{kind}/{bad}") if kind == "confirm" else live.http.post(f"{kind}/{bad}")
        assert r.status_code == 400, bad
        assert_clean(r, bad, "lee@example.org")
    assert live.status("lee@example.org") == ("pending" if kind == "confirm" else "active")


@pytest.mark.parametrize(
    "path", ["confirm/%00%0d%0a", "confirm/" + "A" * 5000, "unsubscribe/..%2f..%2fetc", "unsubscribe?token=" + "x" * 3000]
)
def test_garbage_tokens_are_a_plain_400_or_404(live: Live, path: str) -> None:
    r = live.http.get(path)
    assert r.status_code in (400, 404)
    assert_clean(r)


def test_tokens_for_a_deleted_subscriber_are_refused(live: Live) -> None:
    _active(live, "first@example.org")
    confirm = _confirm_token(live, "max@example.org", dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    with live.store() as store:
        unsub = make_token(SECRET.encode(), store.find("max@example.org").id)  # type: ignore[union-attr]
        assert store.forget("max@example.org", SECRET.encode()).value == "erased"
    for r in (live.http.get(f"confirm/{confirm}"), live.http.get(f"unsubscribe/{unsub}"), live.http.post(f"unsubscribe/{unsub}")):
        assert r.status_code == 400 and "does not work" in r.text
        assert_clean(r, unsub, confirm)


def test_a_confirm_token_is_bound_to_its_address() -> None:
    key, later = confirm_key(SECRET.encode()), dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    token = make_confirm_token(key, 7, "Max@Example.org", later)
    assert check_confirm_token(key, token, "max@example.org", dt.datetime.now(dt.UTC)).subscriber_id == 7
    with pytest.raises(BadToken):
        check_confirm_token(key, token, "zed@example.org", dt.datetime.now(dt.UTC))  # same id, someone else
    with pytest.raises(BadToken):
        check_confirm_token(confirm_key(b"another secret of enough length 0123456789"), token, "max@example.org", dt.datetime.now(dt.UTC))


def test_an_unsubscribe_token_of_a_deleted_subscriber_never_hits_the_next_one(live: Live) -> None:
    _, unsub = _active(live, "max@example.org")
    with live.store() as store:
        store.forget("max@example.org", SECRET.encode())
        store.add("zed@example.org", status="active", secret=SECRET.encode())
    live.http.post(f"unsubscribe/{unsub}")
    assert live.status("zed@example.org") == "active"


def test_a_token_of_one_purpose_never_passes_for_the_other(live: Live) -> None:
    sub_id, unsub = _active(live, "ned@example.org")
    assert live.http.get(f"confirm/{unsub}").status_code == 400
    with live.store() as store:
        store.set_status(sub_id, "pending")
    confirm = _confirm_token(live, "ned@example.org", dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    assert live.http.post(f"unsubscribe/{confirm}").status_code == 400
    assert live.status("ned@example.org") == "pending"


# --- hostile forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "",
        "   ",
        "plainaddress",
        "@example.org",
        "a@",
        "a@@example.org",
        "a b@example.org",
        "a@example",
        "<a@example.org>",
        "a@example.org, b@example.org",
    ],
)
def test_malformed_addresses_are_refused(live: Live, address: str) -> None:
    r = live.subscribe(address)
    assert r.status_code == 400 and "email address" in r.text
    assert_clean(r)
    time.sleep(0.05)
    assert outbox(live.root) == []


def test_oversized_address_name_and_bodies_are_refused(live: Live) -> None:
    long_address = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".org"
    assert live.subscribe(long_address).status_code == 400
    assert live.subscribe("a" * 65 + "@example.org").status_code == 400
    assert live.subscribe("ok@example.org", "n" * 201).status_code == 400
    big = live.http.post(
        "subscribe", content=b"email=a%40example.org&x=" + b"y" * 9000, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert big.status_code == 413 and "too large" in big.text

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"z" * 1024

    streamed = live.http.post("subscribe", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413
    lying = live.http.post("unsubscribe/x", content=b"x" * 9000)
    assert lying.status_code == 413
    with live.store() as store:
        assert store.count()["pending"] == 0


@pytest.mark.parametrize(
    ("content", "ctype", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'["a@example.org"]', "application/json", 400),
        (b'{"email": ["a@example.org"]}', "application/json", 400),
        (b'{"email": 5}', "application/json", 400),
        (b"email=%ff%fe", "application/x-www-form-urlencoded", 400),
        (b"email=a%40example.org", "text/xml", 415),
        (b"&".join(b"f%d=1" % i for i in range(40)), "application/x-www-form-urlencoded", 400),
        (
            b'--xx\r\nContent-Disposition: form-data; name="email"; filename="a.txt"\r\n\r\na@example.org\r\n--xx--\r\n',
            "multipart/form-data; boundary=xx",
            400,
        ),
        (b"garbage without a boundary", "multipart/form-data", 400),
    ],
)
def test_malformed_bodies_are_refused(live: Live, content: bytes, ctype: str, status: int) -> None:
    r = live.http.post("subscribe", content=content, headers={"Content-Type": ctype})
    assert r.status_code == status
    assert_clean(r)


def test_a_multipart_form_is_read(live: Live) -> None:
    r = live.http.post("subscribe", files={"email": (None, "mp@example.org"), "name": (None, "Multi Part")})
    assert r.status_code == 200 and wait_for(lambda: live.status("mp@example.org") == "pending")


@pytest.mark.parametrize(
    "fields",
    [
        {"email": "ok@example.org", "name": "Ann\r\nBcc: victim@example.org"},
        {"email": "ok@example.org", "name": "Ann\nX-Injected: yes"},
        {"email": "ok@example.org", "name": "Ann\u2028Bcc: victim@example.org"},
        {"email": "ok@example.org\r\nBcc: victim@example.org", "name": ""},
        {"email": "ok@example.org%0d%0aBcc:victim@example.org", "name": ""},
        {"email": "ok@example.org\x00", "name": ""},
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_header_injection_is_refused(live: Live, fields: dict[str, str], as_json: bool) -> None:
    r = live.http.post("subscribe", json=fields) if as_json else live.http.post("subscribe", data=fields)
    assert r.status_code == 400
    assert_clean(r)
    time.sleep(0.05)
    with live.store() as store:
        assert sum(store.count().values()) == 0
    assert outbox(live.root) == []


# --- rate limits ----------------------------------------------------------------------------


def test_a_burst_from_one_ip_gets_429_with_retry_after(tmp_path: Path) -> None:
    with running(tmp_path, WebLimits(per_ip=Rate.per(3, 60), per_address=Rate.per(100, 1))) as live:
        codes = [live.subscribe(f"p{i}@example.org").status_code for i in range(3)]
        over = live.subscribe("p9@example.org")
        assert codes == [200, 200, 200]
        assert over.status_code == 429 and 1 <= int(over.headers["retry-after"]) <= 20
        assert "Too many requests" in over.text and live.status("p9@example.org") is None
        as_json = live.http.post("subscribe", json={"email": "p10@example.org"})
        assert as_json.status_code == 429 and as_json.json()["ok"] is False and as_json.headers["retry-after"]


def test_list_bombing_one_address_gets_429(tmp_path: Path) -> None:
    with running(tmp_path, WebLimits(per_ip=Rate.per(100, 1), per_address=Rate.per(2, 3600))) as live:
        codes = [live.subscribe(a).status_code for a in ("bomb@example.org", "BOMB@example.org", "Bomb@Example.org")]
        assert codes == [200, 200, 429]
        assert int(live.subscribe("bomb@example.org").headers["retry-after"]) > 60
        assert live.subscribe("other@example.org").status_code == 200
        assert wait_for(lambda: len(live.mails_to("other@example.org")) == 1)
        assert len(live.mails_to("bomb@example.org")) == 2


def test_token_buckets_refill_and_stay_bounded() -> None:
    now = [0.0]
    buckets = TokenBuckets(Rate.per(2, 10), max_keys=4, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(5.0)]
    now[0] = 5.0
    assert buckets.take("a") == 0.0 and buckets.take("a") == pytest.approx(5.0)
    for i in range(50):
        buckets.take(f"k{i}")
    assert len(buckets) <= 4
    assert retry_after(0.01) == "1" and retry_after(4.2) == "5"


def test_ipv6_clients_are_limited_by_their_64() -> None:
    assert limit_key("2001:db8:1:2:aaaa::1") == limit_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert limit_key("2001:db8:1:3::1") != limit_key("2001:db8:1:2::1")
    assert limit_key("::ffff:192.0.2.7") == "192.0.2.7" == limit_key("192.0.2.7")
    assert limit_key("unknown") == "unknown"


# --- errors never leak ------------------------------------------------------------------------


def test_error_pages_are_themed_and_clean(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = live.http.get("no/such/page")
    assert missing.status_code == 404 and "Page not found" in missing.text and "assets/style.css" in missing.text
    assert live.http.put("subscribe").status_code == 405

    def explode(*args: object) -> None:
        raise RuntimeError(f"database on fire, key {SECRET}")

    monkeypatch.setattr(Subscriptions, "confirm", explode)
    boom = live.http.get("confirm/AAAA")
    assert boom.status_code == 500 and "Something went wrong" in boom.text
    assert_clean(boom, "on fire", "RuntimeError")


def test_the_generated_secret_never_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REVIEW_PRESS_SECRET")
    with running(tmp_path) as live:
        secret = site_secret(load_config(live.root)).decode()
        pages = [live.subscribe("q@example.org"), live.http.get("confirm/x"), live.http.get("unsubscribe/x"), live.http.get("nope")]
        assert wait_for(lambda: len(outbox(live.root)) == 1)
        assert live.http.get(confirm_link(outbox(live.root)[0])).status_code == 200
        for r in pages:
            assert secret not in r.text
        assert secret not in outbox(live.root)[0].as_string()
        assert (live.root / ".review-press" / "secret").stat().st_mode & 0o077 == 0


# --- deployment ----------------------------------------------------------------------------


def test_module_app_finds_the_site_from_the_environment(tmp_path: Path) -> None:
    root, sock, _ = start_site(tmp_path)
    with serve(SiteApp({"REVIEW_PRESS_SITE": str(root)}), sock) as url:
        assert httpx.get(url + "healthz", timeout=5).json() == {"ok": True}


def test_the_app_works_without_lifespan_events(tmp_path: Path) -> None:
    root, sock, _ = start_site(tmp_path)
    with serve(SiteApp({"REVIEW_PRESS_SITE": str(root)}), sock, lifespan="off") as url, httpx.Client(base_url=url) as http:
        assert http.get("healthz").json() == {"ok": True}
        assert http.post("subscribe", data={"email": "nolife@example.org"}).status_code == 200
        assert wait_for(lambda: len(outbox(root)) == 1)


def test_module_app_refuses_to_start_without_a_site(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="did not start"),
        serve(SiteApp({"REVIEW_PRESS_SITE": str(tmp_path / "nowhere")}), loopback_socket()),
    ):
        pass
