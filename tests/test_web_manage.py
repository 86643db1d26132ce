"""Issue 15, topics on the web: the manage-your-subscription page (GET /manage?token=, POST
/manage) and the subscribe forms' topics and frequency, under a real uvicorn server on
127.0.0.1 driven with httpx, on a real SQLite file (and PostgreSQL where it is installed).

Every input has its garbage: forged, truncated and missing tokens, unknown topics, a bad
frequency, oversized and mistyped bodies, the wrong method. A GET never changes anything, an
unknown topic is never stored, and no answer carries a stack trace or the secret.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import lxml.html
import pytest

from live_web import SECRET, Live, assert_clean, outbox, running, tampered
from review_press.build import BuildOptions, build
from review_press.store import Subscriber
from review_press.tokens import make_token
from review_press.web.forms import MAX_BODY, FormError, check_preferences, check_signup
from review_press.web.logs import mask_tokens
from sites import post_text, write_site
from waiting import wait_for

TOPICS = 'topics = ["Film", "TV Series", "Books"]'
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """The web app of a test site whose [newsletter] offers three topics, served, on each store."""
    if request.param == "postgresql":
        monkeypatch.setenv("REVIEW_PRESS_DATABASE_URL", request.getfixturevalue("pg_url"))
    with running(tmp_path, newsletter=TOPICS) as app:
        yield app


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Live]:
    """The web app of a test site without topics (SQLite)."""
    with running(tmp_path, name="plain") as app:
        yield app


def reader(live: Live, address: str, status: str = "active", **kw: object) -> tuple[Subscriber, str]:
    """A stored reader and their unsubscribe (= manage) token."""
    with live.store() as store:
        sub = store.add(address, status=status, **kw)  # type: ignore[arg-type]
    return sub, make_token(SECRET.encode(), sub.id)


def stored(live: Live, address: str) -> Subscriber:
    with live.store() as store:
        sub = store.find(address)
    assert sub is not None
    return sub


def page(response: httpx.Response) -> lxml.html.HtmlElement:
    return lxml.html.fromstring(response.text)


# --- the manage page ------------------------------------------------------------------------


def test_the_manage_page_shows_the_choice_and_changes_nothing(live: Live) -> None:
    sub, token = reader(live, "dora.explorer@example.org", topics=["Books"], frequency="weekly")
    r = live.http.get(f"manage?token={token}")
    assert r.status_code == 200 and "Manage your subscription" in r.text and "d•••@e•••.org" in r.text
    assert_clean(r, "dora.explorer@example.org")
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
    doc = page(r)
    [save, leave] = doc.cssselect("form")
    assert (save.get("method"), save.get("action")) == ("post", "manage")
    assert save.cssselect("input[name=token]")[0].get("value") == token
    boxes = {b.get("value"): b.get("checked") is not None for b in save.cssselect("input[type=checkbox][name=topics]")}
    assert boxes == {"Film": False, "TV Series": False, "Books": True}
    radios = {b.get("value"): b.get("checked") is not None for b in save.cssselect("input[type=radio][name=frequency]")}
    assert radios == {"each": False, "weekly": True}
    assert save.cssselect("button[type=submit]")[0].text_content() == "Save"
    assert (leave.get("method"), leave.get("action")) == ("post", f"unsubscribe?token={token}")
    assert leave.cssselect("button")[0].text_content() == "Leave the list"
    after = stored(live, "dora.explorer@example.org")
    assert (after.topics, after.frequency, after.prefs_at, after.updated_at) == (("Books",), "weekly", None, sub.updated_at)


def test_saving_stores_topics_in_the_sites_spelling_and_the_frequency(live: Live) -> None:
    _, token = reader(live, "eve@example.org")
    r = live.http.post("manage", data={"token": token, "topics": ["tv series", " FILM ", "Film"], "frequency": "weekly"})
    assert r.status_code == 200 and "Your choices are saved" in r.text
    assert "e•••@e•••.org will get a weekly digest of the posts on Film, TV Series" in r.text
    assert_clean(r, token, "eve@example.org")
    sub = stored(live, "eve@example.org")
    assert (set(sub.topics), sub.frequency) == ({"Film", "TV Series"}, "weekly") and sub.prefs_at is not None
    boxes = page(live.http.get(f"manage?token={token}")).cssselect("input[type=checkbox][checked]")
    assert sorted(b.get("value") for b in boxes) == ["Film", "TV Series"]
    # no box ticked: every post again; no frequency sent: it stays as it is
    again = live.http.post("manage", data={"token": token})
    assert again.status_code == 200 and "a weekly digest of all new posts" in again.text
    sub = stored(live, "eve@example.org")
    assert (sub.topics, sub.frequency) == ((), "weekly")
    each = live.http.post("manage", data={"token": token, "frequency": "each", "topics": "Books"})
    assert each.status_code == 200 and "an email for each of the posts on Books" in each.text
    assert (stored(live, "eve@example.org").topics, stored(live, "eve@example.org").frequency) == (("Books",), "each")


def test_the_token_may_come_in_the_url_and_json_is_answered_in_json(live: Live) -> None:
    _, token = reader(live, "fay@example.org", status="pending")
    r = live.http.post(f"manage?token={token}", json={"topics": ["books", "film"], "frequency": "weekly"})
    assert r.status_code == 200 and r.json()["ok"] is True and "Your choices are saved" in r.json()["message"]
    got = live.http.get(f"manage?token={token}", headers={"Accept": "application/json"}).json()
    assert got == {
        "ok": True,
        "address": "f•••@e•••.org",
        "subscribed": True,
        "topics": ["Film", "Books"],
        "offered": ["Film", "TV Series", "Books"],
        "frequency": "weekly",
    }
    assert stored(live, "fay@example.org").status == "pending"  # choosing changes what they get, not whether


def test_many_topics_all_ticked_fit_in_one_form(tmp_path: Path) -> None:
    names = [f"Topic {i}" for i in range(40)]
    with running(tmp_path, newsletter="topics = [" + ", ".join(f'"{n}"' for n in names) + "]") as live:
        _, token = reader(live, "many@example.org")
        r = live.http.post("manage", data={"token": token, "topics": names, "frequency": "each"})
        assert r.status_code == 200
        assert len(stored(live, "many@example.org").topics) == 40
        too_many = live.http.post("manage", data={"token": token, "topics": names * 3})
        assert too_many.status_code == 400
        assert len(stored(live, "many@example.org").topics) == 40


def test_the_leave_button_unsubscribes_and_the_page_then_says_so(live: Live) -> None:
    _, token = reader(live, "gil@example.org")
    leave = page(live.http.get(f"manage?token={token}")).cssselect("form.manage-leave")[0]
    fields = {i.get("name"): i.get("value") for i in leave.cssselect("input")}
    r = live.http.post(leave.get("action"), data=fields)
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert stored(live, "gil@example.org").status == "unsubscribed"
    gone = live.http.get(f"manage?token={token}")
    assert gone.status_code == 200 and "is not subscribed" in gone.text and not page(gone).cssselect("form")
    refused = live.http.post("manage", data={"token": token, "topics": "Film", "frequency": "weekly"})
    assert refused.status_code == 409 and "nothing to change" in refused.text
    sub = stored(live, "gil@example.org")
    assert (sub.status, sub.topics, sub.frequency, sub.prefs_at) == ("unsubscribed", (), "each", None)
    as_json = live.http.post("manage", json={"token": token})
    assert as_json.status_code == 409 and as_json.json()["ok"] is False


# --- the manage page's garbage ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"topics": "Poetry"}, "topics"),
        ({"topics": ["Film", "Film Noir"]}, "topics"),
        ({"topics": "<script>alert(1)</script>"}, "topics"),
        ({"topics": ""}, "topics"),
        ({"frequency": "daily"}, "frequency"),
        ({"frequency": "weekly\r\nBcc: x@example.org"}, "frequency"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_unknown_topics_and_frequencies_are_refused_and_never_stored(
    live: Live, fields: dict[str, object], needle: str, as_json: bool
) -> None:
    _, token = reader(live, "hal@example.org", topics=["Books"])
    body = {"token": token, **fields}
    r = live.http.post("manage", json=body) if as_json else live.http.post("manage", data=body)  # type: ignore[arg-type]
    assert r.status_code == 400
    message = r.json()["message"] if as_json else r.text
    assert needle in message
    if not as_json:  # the HTML page escapes what it shows (JSON is JSON, served with nosniff)
        assert "<script>alert" not in r.text
    assert_clean(r, token)
    sub = stored(live, "hal@example.org")
    assert (sub.topics, sub.frequency, sub.prefs_at) == (("Books",), "each", None)


def test_forged_truncated_and_missing_tokens_get_the_invalid_link_notice(live: Live) -> None:
    _, good = reader(live, "ivy@example.org", topics=["Books"])
    for bad in [*tampered(good), "", "x" * 3000, "%00%0d%0a", "../../etc/passwd"]:
        shown = live.http.get("manage", params={"token": bad})
        saved = live.http.post("manage", data={"token": bad, "topics": "Film", "frequency": "weekly"})
        for r in (shown, saved):
            assert r.status_code == 400 and "This link does not work" in r.text, (bad, r.status_code)
            assert_clean(r, "ivy@example.org")
    assert live.http.get("manage").status_code == 400
    assert live.http.post("manage", data={"topics": "Film"}).status_code == 400
    as_json = live.http.post("manage", json={"token": good[:-2], "topics": ["Film"]})
    assert as_json.status_code == 400 and as_json.json()["ok"] is False
    sub = stored(live, "ivy@example.org")
    assert (sub.topics, sub.frequency, sub.prefs_at) == (("Books",), "each", None)


def test_the_token_of_a_deleted_reader_is_refused(live: Live) -> None:
    _, token = reader(live, "max@example.org")
    with live.store() as store:
        store.forget("max@example.org", SECRET.encode())
        store.add("zed@example.org", status="active", secret=SECRET.encode())
    for r in (live.http.get(f"manage?token={token}"), live.http.post("manage", data={"token": token, "topics": "Film"})):
        assert r.status_code == 400 and "does not work" in r.text
    assert stored(live, "zed@example.org").topics == ()


def test_oversized_mistyped_and_wrongly_sent_bodies_are_refused(live: Live) -> None:
    _, token = reader(live, "kim@example.org")
    big = live.http.post("manage", content=b"token=" + token.encode() + b"&topics=" + b"F" * MAX_BODY, headers=FORM)
    assert big.status_code == 413 and "too large" in big.text

    def chunks() -> Iterator[bytes]:
        yield b"token=" + token.encode() + b"&pad="
        for _ in range(12):
            yield b"p" * 1024

    assert live.http.post("manage", content=chunks(), headers=FORM).status_code == 413
    assert live.http.post("manage", content=b"token=" + token.encode(), headers={"Content-Type": "text/plain"}).status_code == 415
    assert live.http.post("manage", content=b"token=" + token.encode()).status_code == 415  # no Content-Type: nothing guessed
    assert live.http.post("manage", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    nested = live.http.post("manage", json={"token": token, "topics": [["Film"]]})
    assert nested.status_code == 400
    not_strings = live.http.post("manage", json={"token": token, "topics": [1, 2]})
    assert not_strings.status_code == 400 and "list of strings" in not_strings.text
    token_list = live.http.post("manage", json={"token": [token], "topics": ["Film"]})
    assert token_list.status_code == 400
    for method in ("PUT", "DELETE", "PATCH"):
        r = live.http.request(method, f"manage?token={token}")
        assert r.status_code == 405
        assert_clean(r)
    assert live.http.get(f"manage/{token}").status_code == 404
    sub = stored(live, "kim@example.org")
    assert (sub.topics, sub.prefs_at) == ((), None)


def test_the_manage_page_links_only_to_the_site_and_relative_actions(live: Live) -> None:
    _, token = reader(live, "lee@example.org")
    r = live.http.get(f"manage?token={token}", headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert "evil" not in r.text
    doc = page(r)
    for el in doc.iter():
        for attr in ("href", "src", "action"):
            link = el.get(attr)
            if link is not None:
                assert link.startswith("https://example.org/blog/") or "://" not in link, link


# --- the subscribe forms --------------------------------------------------------------------


def test_the_subscribe_page_offers_the_topics_and_the_frequency(live: Live) -> None:
    form = page(live.http.get("subscribe")).cssselect("form.subscribe-form")[0]
    assert [b.get("value") for b in form.cssselect("input[type=checkbox][name=topics]")] == ["Film", "TV Series", "Books"]
    assert not form.cssselect("input[type=checkbox][checked]")
    radios = {b.get("value"): b.get("checked") is not None for b in form.cssselect("input[type=radio][name=frequency]")}
    assert radios == {"each": True, "weekly": False}


def test_without_topics_the_subscribe_page_is_as_before(plain: Live) -> None:
    r = plain.http.get("subscribe")
    assert r.status_code == 200 and 'method="post" action="subscribe"' in r.text
    assert "<fieldset" not in r.text and 'name="topics"' not in r.text and 'name="frequency"' not in r.text


def test_a_signup_stores_its_topics_and_frequency_on_the_pending_reader(live: Live) -> None:
    r = live.http.post("subscribe", data={"email": "ann@example.org", "topics": ["film", "BOOKS"], "frequency": "weekly", "website": ""})
    assert r.status_code == 200 and "Check your inbox" in r.text
    as_json = live.http.post("subscribe", json={"email": "bo@example.org", "topics": ["TV series"]})
    assert as_json.status_code == 200 and as_json.json()["ok"] is True
    bare = live.subscribe("cy@example.org")
    assert bare.status_code == 200
    assert wait_for(lambda: all(live.status(a) == "pending" for a in ("ann@example.org", "bo@example.org", "cy@example.org")))
    ann, bo, cy = (stored(live, a) for a in ("ann@example.org", "bo@example.org", "cy@example.org"))
    assert (set(ann.topics), ann.frequency) == ({"Film", "Books"}, "weekly")
    assert (bo.topics, bo.frequency) == (("TV Series",), "each")
    assert (cy.topics, cy.frequency) == ((), "each")  # nothing ticked: every post as it goes out


def test_a_signup_with_an_unknown_topic_is_refused_naming_the_field(live: Live) -> None:
    r = live.http.post("subscribe", data={"email": "dee@example.org", "topics": "Poetry", "frequency": "weekly"})
    assert r.status_code == 400 and "topics" in r.text and "Poetry" in r.text
    doc = page(r)
    assert doc.cssselect("input[name=email]")[0].get("value") == "dee@example.org"  # the form again, with the reason
    assert doc.cssselect("input[type=radio][value=weekly]")[0].get("checked") is not None
    as_json = live.http.post("subscribe", json={"email": "dee@example.org", "topics": ["Film", "Nope"]})
    assert as_json.status_code == 400 and "topics" in as_json.json()["message"]
    bad_frequency = live.http.post("subscribe", data={"email": "dee@example.org", "frequency": "hourly"})
    assert bad_frequency.status_code == 400 and "frequency" in bad_frequency.text
    time.sleep(0.2)  # a wrong background task would have written by now
    assert live.status("dee@example.org") is None and outbox(live.root) == []


def test_without_topics_any_topic_is_unknown(plain: Live) -> None:
    r = plain.http.post("subscribe", data={"email": "eli@example.org", "topics": "Film"})
    assert r.status_code == 400 and "topics" in r.text
    assert plain.status("eli@example.org") is None


def test_a_reader_who_left_and_signs_up_again_gets_the_new_choice(live: Live) -> None:
    _, token = reader(live, "fox@example.org", topics=["Books"], frequency="weekly")
    assert live.http.post(f"unsubscribe/{token}").status_code == 200
    r = live.http.post("subscribe", data={"email": "fox@example.org", "topics": "Film", "frequency": "each"})
    assert r.status_code == 200
    assert wait_for(lambda: live.status("fox@example.org") == "pending")
    assert wait_for(lambda: stored(live, "fox@example.org").topics == ("Film",))
    assert stored(live, "fox@example.org").frequency == "each"


def test_a_known_active_reader_is_not_changed_by_someone_elses_signup(live: Live) -> None:
    reader(live, "gus@example.org", topics=["Books"])
    assert live.http.post("subscribe", data={"email": "gus@example.org", "topics": "Film", "frequency": "weekly"}).status_code == 200
    time.sleep(0.2)
    sub = stored(live, "gus@example.org")
    assert (sub.status, sub.topics, sub.frequency) == ("active", ("Books",), "each")


def test_a_bot_that_ticks_topics_stores_nothing(live: Live) -> None:
    r = live.http.post("subscribe", data={"email": "bot@example.org", "website": "http://spam.example", "topics": "Film"})
    assert r.status_code == 200
    time.sleep(0.2)
    assert live.status("bot@example.org") is None


def test_the_built_site_form_offers_the_topics_only_when_there_are_some(tmp_path: Path) -> None:
    toml = 'title = "T"\nbase_url = "https://example.org/"\ntimezone = "UTC"\n[web]\nurl = "https://example.org/newsletter/"\n'
    posts = {"a.md": post_text("Alpha", "2026-01-02")}
    with_topics = write_site(tmp_path / "topics", posts, toml.replace("[web]", f"[newsletter]\n{TOPICS}\n[web]"))
    without = write_site(tmp_path / "plain", posts, toml)
    for root in (with_topics, without):
        build(root, BuildOptions())
    form = lxml.html.fromstring((with_topics / "out/posts/a/index.html").read_bytes()).cssselect("form.subscribe-form")[0]
    assert form.get("action") == "https://example.org/newsletter/subscribe"
    assert [b.get("value") for b in form.cssselect("input[type=checkbox][name=topics]")] == ["Film", "TV Series", "Books"]
    assert [b.get("value") for b in form.cssselect("input[type=radio][name=frequency]")] == ["each", "weekly"]
    plain = (without / "out/posts/a/index.html").read_text("utf-8")
    assert 'class="subscribe-form"' in plain and "<fieldset" not in plain and 'name="topics"' not in plain


# --- the checks themselves --------------------------------------------------------------------


def test_check_preferences_matches_without_case_and_refuses_the_unknown() -> None:
    offered = ("Film", "TV Series")
    prefs = check_preferences({"frequency": " Weekly "}, ["tv SERIES", "film", "Film"], offered)
    assert (prefs.topics, prefs.frequency) == (("TV Series", "Film"), "weekly")
    assert check_preferences({}, [], offered).frequency is None
    for chosen, fields in ((["Films"], {}), (["Film\x00"], {}), (["x" * 5000], {}), ([], {"frequency": "monthly"})):
        with pytest.raises(FormError) as info:
            check_preferences(fields, chosen, offered)
        assert info.value.status == 400 and len(info.value.message) < 200
    with pytest.raises(FormError, match="topics"):
        check_preferences({}, ["Film"], ())
    signup = check_signup({"email": "a@example.org"}, [], offered)
    assert (signup.topics, signup.frequency) == ((), "each")


def test_a_manage_link_in_a_log_line_is_masked() -> None:
    line = 'GET /manage?token=BpmyQYnT4jFn3ASHLRWUrnQq3GhoV380 HTTP/1.1" 200'
    assert "BpmyQYnT" not in mask_tokens(line) and "/manage?***" in mask_tokens(line)
