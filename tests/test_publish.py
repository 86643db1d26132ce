"""`publish` end to end: real sites in tmp_path, real SQLite, a real aiosmtpd server (or the
Maildir outbox), and the rules: due posts, exactly once, unsubscribes, late joiners, Ctrl-C."""

from __future__ import annotations

import dataclasses
import mailbox
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from publishing import NEWSLETTER, POSTS, ledger_rows, options, smtp_table, subscribe
from review_press.config import load_config
from review_press.delivery.smtp import Policy
from review_press.errors import DeliveryError
from review_press.newsletter import message_id
from review_press.publish import dry_run, publish, publish_status, send_test
from review_press.statedir import publish_lock
from review_press.store import now_iso, open_store
from review_press.tokens import site_secret, verify_token
from smtp_servers import Script, smtp_server


@pytest.fixture
def site(make_site: Callable[..., Path]) -> Callable[..., Path]:
    def make(port: int | None = None, extra: str = "", posts: dict[str, str] = POSTS) -> Path:
        return make_site(dict(posts), NEWSLETTER.replace("[web]", extra + "\n[web]") + (smtp_table(port) if port else ""))

    return make


def test_every_due_post_goes_to_everyone_once_and_a_second_run_sends_nothing(site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = site(port)
        ids = subscribe(root, 12)
        report = publish(root, options())
        assert [(p.slug, p.sent) for p in report.posts] == [("first", 12), ("second", 12)]
        again = publish(root, options())
        assert again.posts == () and again.resumed == 0
    assert server.recipients() == {f"r{i}@example.org": 2 for i in range(12)}
    subjects = sorted({r.message["Subject"] for r in server.received})
    assert subjects == ["First", "Second"]  # not the old post, the draft or the future one
    first = next(r.message for r in server.received if r.recipient == "r3@example.org" and r.message["Subject"] == "First")
    secret = site_secret(load_config(root))
    assert first["Message-ID"] == message_id("campaign", "example.org", slug="first", subscriber_id=ids[3], secret=secret)
    assert "Reader 3" in first["To"]
    token = first["List-Unsubscribe"].split("token=")[1].rstrip(">")
    assert verify_token(site_secret(load_config(root)), token) == ids[3]
    assert {s.ledger.slug: (s.ledger.sent, s.ledger.pending, s.ledger.failed, s.ledger.bounced) for s in publish_status(root).sent} == {
        "first": (12, 0, 0, 0),
        "second": (12, 0, 0, 0),
    }


def test_idn_domains_go_out_as_punycode_and_unicode_local_parts_with_smtputf8(site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = site(port)
        with open_store(load_config(root)) as store:
            store.add("Ann@Bücher.de", "Änn")
            store.add("josé@example.org", "José")
        assert publish(root, options(slug="first")).posts[0].sent == 2
    assert server.recipients() == {"Ann@xn--bcher-kva.de": 1, "josé@example.org": 1}
    to = {r.recipient: r.message["To"] for r in server.received}
    assert to["Ann@xn--bcher-kva.de"].addresses[0].display_name == "Änn"
    assert "josé@example.org" in str(to["josé@example.org"])


def test_a_site_without_a_from_address_is_refused_before_any_campaign_starts(make_site: Callable[..., Path]) -> None:
    root = make_site(POSTS, NEWSLETTER.replace('from = "The Press <letters@example.org>"\n', ""))
    subscribe(root, 1)
    with pytest.raises(DeliveryError, match=r"\[newsletter\] from is not set"):
        publish(root, options())
    assert publish_status(root).sent == ()


def test_a_site_without_since_is_refused(make_site: Callable[..., Path]) -> None:
    root = make_site(POSTS, NEWSLETTER.replace("since = 2026-01-01\n", ""))
    subscribe(root, 1)
    with pytest.raises(DeliveryError, match=r"since is not set") as info:
        publish(root, options())
    assert "older ones never are" in str(info.value)
    assert not (root / "outbox").exists()


def test_publish_slug_sends_one_post_and_refuses_others(site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = site(port)
        subscribe(root, 3)
        assert [p.slug for p in publish(root, options(slug="second")).posts] == ["second"]
        for slug in ("old", "draft", "future", "nope"):
            with pytest.raises(DeliveryError, match=f"no newsletter post with slug '{slug}'"):
                publish(root, options(slug=slug))
    assert {r.message["Subject"] for r in server.received} == {"Second"}


def test_dry_run_lists_who_gets_what_and_changes_nothing(site: Callable[..., Path]) -> None:
    root = site()
    subscribe(root, 3)
    planned = list(dry_run(root))
    assert [(p.slug, p.address) for p in planned] == [(s, f"r{i}@example.org") for s in ("first", "second") for i in range(3)]
    assert planned[0].subject == "First" and planned[0].name == "Reader 0"
    assert ledger_rows(root) == {} and publish_status(root).sent == ()
    assert not (root / "outbox").exists()


def test_test_to_sends_one_message_and_leaves_the_ledger_alone(site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = site(port)
        subscribe(root, 3)
        reply = send_test(root, "me@example.org", options())
    assert reply.startswith("250")
    assert server.recipients() == {"me@example.org": 1}
    assert server.received[0].message["Subject"] == "Second"
    assert ledger_rows(root) == {} and publish_status(root).sent == ()


def test_bounces_and_failures_are_counted_and_suppressed(site: Callable[..., Path]) -> None:
    script = Script(rcpt={"r1@example.org": "550 5.1.1 no such user", "r2@example.org": "554 5.7.1 policy"})
    with smtp_server(script) as (server, port):
        root = site(port)
        ids = subscribe(root, 5)
        publish(root, options(slug="first"))
        status = {s.ledger.slug: s.ledger for s in publish_status(root).sent}["first"]
        assert (status.sent, status.bounced, status.failed, status.pending) == (3, 1, 1, 0)
        with open_store(load_config(root)) as store:
            assert store.get(ids[1]).status == "bounced"  # type: ignore[union-attr]
            row = store.conn.execute("SELECT attempts, last_error FROM deliveries WHERE subscriber_id = ?", (ids[2],)).fetchone()
        assert row == (1, "554 5.7.1 policy")
        publish(root, options())  # the second post: never to the bounced address
        assert "r1@example.org" not in server.recipients()
        assert publish(root, options(slug="first", retry_failed=True)).posts[0].failed == 1  # retried, refused again


def test_an_unsubscribe_mid_campaign_gets_nothing_more(site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = site(port)
        ids = subscribe(root, 40)
        done: list[bool] = []

        def progress(p: Any) -> None:
            if p.sent and not done:
                with open_store(load_config(root)) as store:
                    store.set_status(ids[-1], "unsubscribed")
                done.append(True)

        report = publish(root, options(), progress=progress)
    assert done and "r39@example.org" not in server.recipients()
    assert [(p.sent, p.skipped) for p in report.posts] == [(39, 1), (39, 1)]  # both campaigns started before they left


@pytest.mark.parametrize("late_joiners", [False, True])
def test_late_joiners_do_not_get_posts_whose_campaign_started_before_they_joined(site: Callable[..., Path], late_joiners: bool) -> None:
    with smtp_server() as (server, port):
        root = site(port, extra=f"late_joiners = {str(late_joiners).lower()}")
        subscribe(root, 2, prefix="early")
        publish(root, options(slug="first"))  # starts (and finishes) the first post's campaign
        subscribe(root, 1, prefix="late")
        publish(root, options())
    got = {(r.recipient, r.message["Subject"]) for r in server.received}
    assert {("early0@example.org", "First"), ("early0@example.org", "Second"), ("late0@example.org", "Second")} <= got
    assert (("late0@example.org", "First") in got) is late_joiners


def test_a_reader_who_left_and_came_back_does_not_get_what_went_out_meanwhile(site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = site(port)
        (reader,) = subscribe(root, 1, prefix="back")
        with open_store(load_config(root)) as store:
            store.set_status(reader, "unsubscribed")
        publish(root, options(slug="first"))  # goes out while they are away
        with open_store(load_config(root)) as store, store.transaction() as conn:  # they sign up and confirm again
            conn.execute("UPDATE subscribers SET status = 'active', consent_at = ? WHERE id = ?", (now_iso(), reader))
        publish(root, options())
    assert {r.message["Subject"] for r in server.received} == {"Second"}


def test_without_smtp_mail_goes_to_the_maildir_outbox(site: Callable[..., Path]) -> None:
    root = site()
    subscribe(root, 3)
    report = publish(root, options(slug="first"))
    assert report.target.startswith("the Maildir") and report.posts[0].sent == 3
    box = mailbox.Maildir(root / "outbox", create=False)
    delivered = sorted(m["Delivered-To"] for m in box)
    assert delivered == ["r0@example.org", "r1@example.org", "r2@example.org"]
    assert all(m["Subject"] == "First" and b"\r\n" not in m.as_bytes() for m in box)


def test_ctrl_c_stops_after_the_messages_in_flight_and_a_rerun_finishes(site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = site(port)
        subscribe(root, 60)

        def interrupt(p: Any) -> None:
            if p.sent >= 5:
                raise KeyboardInterrupt

        report = publish(root, options(slug="first"), progress=interrupt)
        assert report.interrupted
        assert 5 <= report.posts[0].sent < 60
        assert "sending" not in ledger_rows(root)  # settled or handed back: nothing left in doubt
        publish(root, options(slug="first"))
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(60)}  # a clean stop duplicates nothing


def test_the_breaker_stops_the_run_and_says_so(site: Callable[..., Path]) -> None:
    policy = Policy(max_attempts=3, backoff_base=0.01, backoff_cap=0.02, window=10, min_samples=10, threshold=0.8)
    with smtp_server(Script(data_reply="451 4.3.0 queue full")) as (server, port):
        root = site(port)
        subscribe(root, 100)
        with pytest.raises(DeliveryError, match=r"stopped sending 'first': \d+ of the last 10 attempts failed .*451 4.3.0") as info:
            publish(root, options(policy=policy))
    assert "run publish again" in str(info.value)
    assert server.recipients() == {}
    rows = ledger_rows(root)
    assert rows.get("sending", 0) == 0 and rows["pending"] >= 90


def test_a_missing_password_variable_is_named_and_a_wrong_password_never_shown(site: Callable[..., Path]) -> None:
    with smtp_server(auth=("ann", "right")) as (_, port):
        root = site(port, extra="")
        (root / "press.toml").write_text((root / "press.toml").read_text() + 'username = "ann"\npassword_env = "PRESS_SMTP_PW"\n')
        subscribe(root, 1)
        with pytest.raises(DeliveryError, match="PRESS_SMTP_PW, which is not set"):
            publish(root, options())
        with pytest.raises(DeliveryError, match="refused the login") as info:
            publish(root, options(environ={"PRESS_SMTP_PW": "hunter2-wrong"}))
        assert "hunter2" not in str(info.value)
        assert publish(root, options(environ={"PRESS_SMTP_PW": "right"})).posts[0].sent == 1


def test_two_publishes_at_once_are_refused(site: Callable[..., Path]) -> None:
    root = site()
    subscribe(root, 1)
    with publish_lock(load_config(root).state_dir), pytest.raises(DeliveryError, match="another publish"):
        publish(root, options())


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        options().slug = "x"  # type: ignore[misc]


def test_messages_left_in_flight_are_counted_once_and_sent_again(site: Callable[..., Path]) -> None:
    import sqlite3

    from review_press.store import db_path

    with smtp_server() as (server, port):
        root = site(port)
        subscribe(root, 5)
        publish(root, options(slug="first"))
        conn = sqlite3.connect(db_path(load_config(root)))
        with conn:  # as a kill -9 between "sending" and "sent" leaves two rows
            conn.execute(
                "UPDATE deliveries SET status = 'sending' WHERE subscriber_id IN (SELECT subscriber_id FROM deliveries ORDER BY subscriber_id LIMIT 2)"
            )
        conn.close()
        report = publish(root, options(slug="first"))
        assert report.resumed == 2
        assert [(p.slug, p.sent) for p in report.posts] == [("first", 2)]
    assert sum(server.recipients().values()) == 7  # 5, then the 2 in doubt once more
