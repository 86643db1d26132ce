"""The adversarial review of the welcome, topics, digests and corrections, one test per finding:
real sites, a real SQLite file (PostgreSQL where the finding was about it), a real SMTP server."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from publishing import NEWSLETTER, POSTS, options, smtp_table
from review_press import senders
from review_press.config import load_config
from review_press.content import load_posts
from review_press.errors import DeliveryError
from review_press.publish import dry_run, publish, publish_status
from review_press.store import Store, feedback, ledger, open_store
from review_press.store import mailings as stored
from sites import cli
from smtp_servers import smtp_server

JAN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
WELCOME = "---\ntitle: Welcome aboard\ndate: 2026-01-01\n---\n\nThanks.\n"
TAGGED = {
    "2026-01-05-tv.md": "---\ntitle: A show\ndate: 2026-01-05\ntags: [TV review]\n---\n\nTelevision.\n",
    "2026-01-06-film.md": "---\ntitle: A film\ndate: 2026-01-06\ntags: [Film]\n---\n\nCinema.\n",
}
AFTER_WEEK = dt.datetime(2026, 1, 13, 9, tzinfo=dt.UTC)  # the week of 5 January has ended


def _site(make_site: Callable[..., Path], port: int, posts: dict[str, str], extra: str = "") -> Path:
    return make_site(dict(posts), NEWSLETTER.replace("[web]", extra + "\n[web]") + smtp_table(port))


def _text(raw: email.message.Message) -> str:
    msg = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
    return msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def test_a_correction_refused_then_fixed_and_two_corrections_in_a_row_mail_each_reader_once(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = _site(make_site, port, POSTS)
        with open_store(load_config(root)) as store:
            store.add("ada@example.org")
        publish(root, options())
        path = root / "posts" / "2026-01-05-first.md"
        original = path.read_text()
        path.write_text(original.replace("letter.", "letter, fixed. ![pic](http://example.com/a.png)"))
        refused = publish(root, options(slug="first", correction="fixed"))
        assert refused.refused and refused.posts == ()  # an http: image is refused in a correction as in a post
        path.write_text(original.replace("letter.", "letter, fixed."))
        publish(root, options(slug="first", correction="fixed"))
        path.write_text(original.replace("letter.", "letter, fixed twice."))
        with open_store(load_config(root)) as store:  # a correction started, not sent, then superseded by another
            edited = next(p for p in load_posts(load_config(root)) if p.slug == "first")
            key = stored.correction_key("first", edited.content_hash)
            stored.start_correction(store, key, "first", "fixed twice")
        publish(root, options())
        publish(root, options())
    subjects = [r.message["Subject"] for r in server.received]
    assert subjects.count("Correction: First") == 2  # the fixed one, then the one fixed twice: never the same text twice
    texts = [_text(r.message) for r in server.received if r.message["Subject"] == "Correction: First"]
    assert "fixed." in texts[0] and "fixed twice." in texts[1]


def test_a_reader_who_switches_to_the_digest_gets_no_post_twice(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = _site(make_site, port, TAGGED)
        config = load_config(root)
        with open_store(config) as store:
            reader = store.add("ada@example.org", now=JAN)
            other = store.add("bob@example.org", frequency="weekly", now=JAN)
        publish(root, options(now=dt.datetime(2026, 1, 7, 9, tzinfo=dt.UTC)))  # ada gets both posts on their own
        with open_store(config) as store:
            store.set_preferences(reader.id, frequency="weekly", now=dt.datetime(2026, 1, 8, tzinfo=dt.UTC))
        publish(root, options(now=AFTER_WEEK))
        with open_store(config) as store:
            row = store.conn.execute(
                "SELECT count(*) FROM deliveries WHERE subscriber_id = ? AND slug LIKE ':digest:%'", (reader.id,)
            ).fetchone()
    got = sorted((r.recipient, r.message["Subject"]) for r in server.received)
    assert got == [
        ("ada@example.org", "A film"),
        ("ada@example.org", "A show"),
        ("bob@example.org", "Test Site: the week of January 5, 2026"),
    ]
    assert row == (0,) and other.id != reader.id  # not even a row: the digest held nothing new for her


def test_a_reader_whose_topics_change_after_a_digest_started_gets_nothing_they_did_not_choose(make_site: Callable[..., Path]) -> None:
    from review_press import letters

    with smtp_server() as (server, port):
        root = _site(make_site, port, TAGGED, 'topics = ["TV review", "Film", "Opera"]')
        config = load_config(root)
        with open_store(config) as store:
            reader = store.add("ada@example.org", frequency="weekly", topics=["Film"], now=JAN)
            store.add("bob@example.org", frequency="weekly", now=JAN)
        publish(root, options(now=dt.datetime(2026, 1, 7, 9, tzinfo=dt.UTC)))
        with open_store(config) as store:
            plan = letters.digest_due(config, load_posts(config), store, AFTER_WEEK)
            assert plan is not None and letters.start_digest(config, plan, store, AFTER_WEEK) == 2
            store.set_preferences(reader.id, topics=["Opera"], now=AFTER_WEEK)
        report = publish(root, options(now=AFTER_WEEK + dt.timedelta(minutes=1)))
        assert [(p.slug, p.sent, p.skipped) for p in report.posts] == [("digest 2026-01-05", 1, 1)]
    assert [r.recipient for r in server.received] == ["bob@example.org"]


def test_a_paused_welcome_is_reported_and_publish_resume_sends_it(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = make_site({"_welcome.md": WELCOME}, NEWSLETTER + smtp_table(port))
        config = load_config(root)
        with open_store(config) as store:
            store.add("ada@example.org", welcome=True)
            feedback.pause(store, stored.WELCOME, "complaints at 5.00% (1 of 20), over the 0.30% limit")
        paused = publish(root, options())
        assert [(p.slug, p.sent, p.paused is not None) for p in paused.posts] == [("welcome email", 0, True)]
        said = cli("publish", "--site", str(root))
        assert said.returncode == 1 and "review-press publish --resume" in said.stdout + said.stderr, said.stdout + said.stderr
        status = cli("status", "--site", str(root))
        assert "welcome email: 0 sent, 1 pending" in status.stdout and "PAUSED" in status.stdout
        resumed = publish(root, options(resume=True))
        assert [(p.slug, p.sent) for p in resumed.posts] == [("welcome email", 1)]
    assert [r.recipient for r in server.received] == ["ada@example.org"]


@pytest.mark.parametrize("broken", ["no date", "missing file", "symlink out"])
def test_a_broken_welcome_is_refused_and_the_posts_go_all_the_same(make_site: Callable[..., Path], tmp_path: Path, broken: str) -> None:
    secret = tmp_path / "secret.md"
    secret.write_text(WELCOME.replace("Thanks.", "AWS_SECRET=hunter2"))
    with smtp_server() as (server, port):
        extra = 'welcome = "letters/welcome.md"' if broken != "no date" else ""
        root = _site(make_site, port, POSTS, extra)
        if broken == "no date":
            (root / "posts" / "_welcome.md").write_text("---\ntitle: Welcome\n---\n\nNo date.\n")
        elif broken == "symlink out":
            (root / "letters").mkdir()
            os.symlink(secret, root / "letters" / "welcome.md")
        with open_store(load_config(root)) as store:
            store.add("ada@example.org", welcome=True)
        report = publish(root, options())
        assert sorted(p.slug for p in report.posts) == ["first", "second"]
        assert len(report.refused) == 1 and "welcome email" in report.refused[0].message
        with open_store(load_config(root)) as store:
            assert stored.with_pending(store) == [stored.WELCOME]  # kept for after the fix
    assert sorted(r.message["Subject"] for r in server.received) == ["First", "Second"]
    assert not any("hunter2" in _text(r.message) for r in server.received)


def test_a_post_withdrawn_after_its_digest_started_is_left_out(make_site: Callable[..., Path]) -> None:
    from review_press import letters

    with smtp_server() as (server, port):
        root = _site(make_site, port, TAGGED)
        config = load_config(root)
        with open_store(config) as store:
            store.add("ada@example.org", frequency="weekly", now=JAN)
        publish(root, options(now=dt.datetime(2026, 1, 7, 9, tzinfo=dt.UTC)))
        with open_store(config) as store:
            plan = letters.digest_due(config, load_posts(config), store, AFTER_WEEK)
            assert plan is not None and letters.start_digest(config, plan, store, AFTER_WEEK) == 1
        path = root / "posts" / "2026-01-05-tv.md"
        path.write_text(path.read_text().replace("tags:", "draft: true\ntags:"))
        publish(root, options(now=AFTER_WEEK))
    (digest,) = server.received
    assert "A film" in _text(digest.message) and "A show" not in _text(digest.message)


def test_a_topic_whose_spelling_changes_in_press_toml_keeps_its_readers(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = _site(make_site, port, TAGGED, 'topics = ["TV review", "Film"]')
        with open_store(load_config(root)) as store:
            store.add("ada@example.org", topics=["Film"])
        toml = root / "press.toml"
        toml.write_text(toml.read_text().replace('"Film"', '"FILM"'))
        publish(root, options())
        with open_store(load_config(root)) as store:
            assert store.find("ada@example.org").topics == ("Film",)  # type: ignore[union-attr]  # shown as chosen
    assert [r.message["Subject"] for r in server.received] == ["A film"]


def test_a_dry_run_lists_the_welcomes_to_send(make_site: Callable[..., Path]) -> None:
    root = make_site({**POSTS, "_welcome.md": WELCOME}, NEWSLETTER)
    with open_store(load_config(root)) as store:
        store.add("ada@example.org", welcome=True)
    planned = [(p.slug, p.address) for p in dry_run(root) if hasattr(p, "address")]
    assert ("welcome email", "ada@example.org") in planned and ("first", "ada@example.org") in planned
    done = cli("publish", "--dry-run", "--site", str(root))
    assert done.returncode == 0 and "welcome email\tada@example.org" in done.stdout and "3 messages would be sent" in done.stderr


def test_an_audience_with_topics_but_none_offered_is_everyone_on_both_stores(any_store: Store) -> None:
    store = any_store
    ids = {store.add(f"r{i}@example.org", topics=["Film"] if i else []).id for i in range(3)}
    where, params = ledger.Audience(("Film",), ()).where()
    got = {r[0] for r in store.conn.execute(f"SELECT s.id FROM subscribers s WHERE {where}", params).fetchall()}
    assert got == ids and ledger.reads(("Film",), ("Opera",), ())


@pytest.mark.parametrize("note", ["\x1b[31mred", "a\x00b", "tab\there", "line\nbreak", "x" * 501])
def test_a_correction_note_with_a_control_character_is_refused(make_site: Callable[..., Path], note: str) -> None:
    root = make_site(POSTS, NEWSLETTER)
    with pytest.raises(DeliveryError, match="no control character"):
        publish(root, options(slug="first", correction=note))
    assert publish_status(root).letters == ()


def test_a_second_signup_cannot_rewrite_the_choice_of_a_reader_waiting_to_confirm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from live_web import SECRET, running
    from waiting import wait_for

    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)
    with running(tmp_path, newsletter='topics = ["Film", "Books"]') as live:
        form = {"email": "vic@example.org", "topics": ["Books"], "frequency": "each", "website": ""}
        assert live.http.post("subscribe", data=form).status_code == 200
        assert wait_for(lambda: len(live.mails_to("vic@example.org")) == 1)
        attack = {**form, "topics": ["Film"], "frequency": "weekly"}  # someone who knows only the address
        assert live.http.post("subscribe", data=attack).status_code == 200
        assert wait_for(lambda: len(live.mails_to("vic@example.org")) == 2)  # a fresh confirm link, to the reader
        with live.store() as store:
            sub = store.find("vic@example.org")
    assert sub is not None and (sub.status, sub.topics, sub.frequency) == ("pending", ("Books",), "each")


def test_a_correction_waits_while_the_guard_rails_hold_the_post_it_corrects(make_site: Callable[..., Path]) -> None:
    """The guard rails paused a post (its complaints passed the limit): a correction of it went
    to the same readers all the same, more mail to a list that had just complained. It now waits,
    reported paused, until the post is resumed; then each reader gets it once."""
    with smtp_server() as (server, port):
        root = _site(make_site, port, POSTS)
        config = load_config(root)
        with open_store(config) as store:
            store.add("ada@example.org")
            store.add("bob@example.org")
        publish(root, options())
        with open_store(config) as store:
            assert feedback.pause(store, "first", "complaints: 2 of 2 (limit 0.3%)")
        path = root / "posts" / "2026-01-05-first.md"
        path.write_text(path.read_text().replace("letter.", "letter, fixed."))
        held = publish(root, options(slug="first", correction="fixed"))
        again = publish(root, options())
        corrections = [r for r in server.received if r.message["Subject"] == "Correction: First"]
        assert corrections == []
        assert [p.paused for p in held.posts] == ["the post it corrects is paused: complaints: 2 of 2 (limit 0.3%)"]
        assert [p.paused for p in again.posts if p.paused] == [held.posts[0].paused]
        with open_store(config) as store:  # what a run asks as it sends, should the post be paused mid-way
            correction = senders.Outbound(":correction:x", "x", "x", lambda claim: None, held_by="first")
            assert correction.guard(store, feedback.Guard())() == held.posts[0].paused
            assert (
                senders.Outbound("first", "first", "x", lambda claim: None).guard(store, feedback.Guard())()
                == "complaints: 2 of 2 (limit 0.3%)"
            )
        publish(root, options(slug="first", resume=True))
        publish(root, options())
        publish(root, options())
    got = sorted(r.recipient for r in server.received if r.message["Subject"] == "Correction: First")
    assert got == ["ada@example.org", "bob@example.org"]
