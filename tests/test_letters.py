"""The welcome email, topics, weekly digests and corrections end to end: real sites in tmp_path,
a real SQLite file, a real SMTP server on loopback (aiosmtpd), `publish` as the CLI calls it."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from publishing import NEWSLETTER, POSTS, options, smtp_table
from review_press.config import load_config
from review_press.errors import DeliveryError, PressError
from review_press.letters import escape_markdown, window
from review_press.publish import publish, publish_status
from review_press.store import ledger, open_store
from review_press.store import mailings as stored
from smtp_servers import smtp_server

JAN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # readers who joined before every post
WELCOME = "---\ntitle: Welcome aboard\ndate: 2026-01-01\n---\n\nThanks for joining *The Press*.\n"


def _site(make_site: Callable[..., Path], port: int, posts: dict[str, str] | None = None, extra: str = "") -> Path:
    toml = NEWSLETTER.replace("[web]", extra + "\n[web]") + smtp_table(port)
    return make_site(dict(POSTS if posts is None else posts), toml)


def _topics_toml() -> str:
    return 'topics = ["TV review", "Film"]'


def _by_reader(server: object) -> dict[str, list[str]]:
    got: dict[str, list[str]] = {}
    for r in server.received:  # type: ignore[attr-defined]
        got.setdefault(r.recipient, []).append(r.message["Subject"])
    return {k: sorted(v) for k, v in got.items()}


def _text(message: email.message.Message) -> str:
    part = message.get_body(preferencelist=("plain",)) if hasattr(message, "get_body") else message
    return part.get_content()


def _parsed(raw: email.message.Message) -> email.message.EmailMessage:
    return email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)  # type: ignore[return-value]


# --- welcome ---------------------------------------------------------------------------


def test_the_welcome_goes_once_to_each_reader_who_confirms_and_an_edit_changes_what_later_readers_get(
    make_site: Callable[..., Path],
) -> None:
    with smtp_server() as (server, port):
        root = _site(make_site, port, {**POSTS, "_welcome.md": WELCOME})
        config = load_config(root)
        with open_store(config) as store:
            ada = store.add("ada@example.org", "Ada", welcome=True)
            bob = store.add("bob@example.org", "Bob", status="pending")
            assert store.confirm(bob.id, source="web form", ip=None, secret=b"s" * 32, welcome=True)
            assert not store.confirm(bob.id, source="web form", ip=None, secret=b"s" * 32, welcome=True)  # a replayed click
            store.add("cid@example.org", "Cid")  # added without --welcome: no welcome
        first = publish(root, options())
        assert sorted(p.slug for p in first.posts) == ["first", "second", "welcome email"]
        assert first.refused == ()
        again = publish(root, options())
        assert again.posts == ()
        (root / "posts" / "_welcome.md").write_text(WELCOME.replace("Thanks for joining", "Glad you are here at"))
        with open_store(config) as store:
            store.add("dee@example.org", "Dee", welcome=True)
            store.unsubscribe(ada.id)  # who left after their welcome: nothing changes for them
        publish(root, options())
    welcomes = [r for r in server.received if r.message["Subject"] == "Welcome aboard"]
    assert Counter(r.recipient for r in welcomes) == {"ada@example.org": 1, "bob@example.org": 1, "dee@example.org": 1}
    text = {r.recipient: _text(_parsed(r.message)) for r in welcomes}
    assert "Thanks for joining" in text["ada@example.org"] and "Glad you are here" in text["dee@example.org"]
    assert "posts/welcome" not in text["dee@example.org"]  # a welcome is no page of the site: its links lead home
    assert not (root / "out" / "posts" / "welcome").exists() and not (root / "out" / "posts" / "_welcome").exists()


def test_a_reader_who_left_before_their_welcome_went_is_not_mailed_and_is_welcomed_if_they_come_back(
    make_site: Callable[..., Path],
) -> None:
    with smtp_server() as (server, port):
        root = _site(make_site, port, {"_welcome.md": WELCOME})
        config = load_config(root)
        with open_store(config) as store:
            ada = store.add("ada@example.org", welcome=True)
            store.unsubscribe(ada.id)
        publish(root, options())
        assert server.received == []
        with open_store(config) as store:
            store.reopen(ada.id, "unsubscribed", name="", source="web form", ip=None)
            store.confirm(ada.id, source="web form", ip=None, secret=b"s" * 32, welcome=True)
        publish(root, options())
        publish(root, options())
    assert [r.recipient for r in server.received] == ["ada@example.org"]


def test_a_welcome_whose_file_is_gone_is_refused_and_stays_pending(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = _site(make_site, port, {"_welcome.md": WELCOME})
        with open_store(load_config(root)) as store:
            store.add("ada@example.org", welcome=True)
        (root / "posts" / "_welcome.md").unlink()
        gone = publish(root, options())
        assert gone.posts == () and any("_welcome.md is gone" in r.message for r in gone.refused)
        (root / "posts" / "_welcome.md").write_text(WELCOME)
        done = publish(root, options())
        assert [p.sent for p in done.posts] == [1]
    assert [r.recipient for r in server.received] == ["ada@example.org"]


def test_welcome_in_press_toml_names_a_file_and_garbage_there_is_refused_at_its_line(make_site: Callable[..., Path]) -> None:
    for value in ('"/etc/passwd"', '"../outside.md"', '"posts/welcome.txt"', "3"):
        with pytest.raises(PressError) as caught:
            load_config(make_site({}, NEWSLETTER.replace("[web]", f"welcome = {value}\n[web]")))
        assert "welcome" in str(caught.value) and "press.toml" in str(caught.value)


# --- topics ------------------------------------------------------------------------------


TAGGED = {
    "2026-01-05-tv.md": "---\ntitle: A show\ndate: 2026-01-05\ntags: [tv review]\n---\n\nTelevision.\n",
    "2026-01-06-film.md": "---\ntitle: A film\ndate: 2026-01-06\ntags: [Film, Netflix]\n---\n\nCinema.\n",
    "2026-01-07-news.md": "---\ntitle: News\ndate: 2026-01-07\ntags: [Netflix]\n---\n\nFor everyone.\n",
}


def test_a_reader_who_chose_topics_gets_only_posts_carrying_one_and_posts_for_everyone(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = _site(make_site, port, TAGGED, _topics_toml())
        with open_store(load_config(root)) as store:
            store.add("all@example.org")
            store.add("film@example.org", topics=["Film"])
            store.add("tv@example.org", topics=["TV review"])
            store.add("both@example.org", topics=["TV review", "Film"])
            store.add("gone@example.org", topics=["Opera"])  # a topic the site no longer offers: every post
        publish(root, options())
    assert _by_reader(server) == {
        "all@example.org": ["A film", "A show", "News"],
        "film@example.org": ["A film", "News"],
        "tv@example.org": ["A show", "News"],
        "both@example.org": ["A film", "A show", "News"],
        "gone@example.org": ["A film", "A show", "News"],
    }


def test_changing_topics_owes_a_reader_only_what_starts_after_never_the_back_catalogue(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = _site(make_site, port, TAGGED, _topics_toml() + "\nlate_joiners = true")
        config = load_config(root)
        with open_store(config) as store:
            reader = store.add("film@example.org", topics=["Film"])
        publish(root, options())
        with open_store(config) as store:
            assert store.set_preferences(reader.id, topics=["TV review"], now=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
            assert not store.set_preferences(999, topics=["Film"])
            with pytest.raises(DeliveryError):
                store.set_preferences(reader.id, frequency="daily")
        (root / "posts" / "2026-03-01-tv2.md").write_text("---\ntitle: Another show\ndate: 2026-03-01\ntags: [TV review]\n---\n\nMore.\n")
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        publish(root, options(now=later))
    assert _by_reader(server) == {"film@example.org": ["A film", "Another show", "News"]}  # never "A show", even with late_joiners


def test_topics_in_press_toml_garbage_is_refused_at_its_line(make_site: Callable[..., Path]) -> None:
    for value in ("[1, 2]", '["Film", "film"]', '[" padded"]', '["a\\nb"]', '"Film"', '["' + "x" * 61 + '"]', '["a;b"]', '["a, b"]'):
        with pytest.raises(PressError) as caught:
            load_config(make_site({}, NEWSLETTER.replace("[web]", f"topics = {value}\n[web]")))
        assert "topics" in str(caught.value) and ":" in str(caught.value)


def test_reads_is_the_same_rule_as_the_sql_audience() -> None:
    offered = ("TV review", "Film")
    assert ledger.reads((), ("Film",), offered)
    assert ledger.reads(("Film",), (), offered)
    assert ledger.reads(("Film",), ("Film", "TV review"), offered)
    assert not ledger.reads(("Film",), ("TV review",), offered)
    assert ledger.reads(("Opera",), ("TV review",), offered)  # chose only topics no longer offered: everything


# --- digests -----------------------------------------------------------------------------


def _week_posts(start: dt.datetime, n: int, tag: str = "") -> dict[str, str]:
    posts = {}
    for i in range(n):
        day = (start + dt.timedelta(days=i + 1)).date()
        tags = f"tags: [{tag}]\n" if tag else ""
        posts[f"{day}-p{i}.md"] = (
            f"---\ntitle: Week post {i}\ndate: {day}T10:00:00Z\n{tags}summary: Summary {i} [with] *marks*\n---\n\nBody {i}.\n"
        )
    return posts


def test_a_weekly_reader_gets_one_digest_per_window_and_no_post_twice_or_missed(make_site: Callable[..., Path]) -> None:
    now = dt.datetime(2026, 2, 3, 12, tzinfo=dt.UTC)  # a Tuesday: the week of Monday 26 January has ended
    posts = {**POSTS, "2026-01-27-a.md": "---\ntitle: In the window\ndate: 2026-01-27\nsummary: A *summary*.\n---\n\nA.\n"}
    with smtp_server() as (server, port):
        root = _site(make_site, port, posts)
        config = load_config(root)
        assert window(config, now) == (
            dt.datetime(2026, 1, 26, tzinfo=config.tz),
            dt.datetime(2026, 2, 2, tzinfo=config.tz),
        )
        with open_store(config) as store:
            store.add("each@example.org", now=JAN)
            store.add("week@example.org", frequency="weekly", now=JAN)
        publish(root, options(now=now))
        assert publish(root, options(now=now + dt.timedelta(hours=1))).posts == ()  # the same window: nothing
        # a post dated in the finished week but written late, and one in the next week
        (root / "posts" / "2026-01-28-late.md").write_text("---\ntitle: Written late\ndate: 2026-01-28\n---\n\nLate.\n")
        (root / "posts" / "2026-02-04-next.md").write_text("---\ntitle: Next week\ndate: 2026-02-04\n---\n\nNext.\n")
        publish(root, options(now=dt.datetime(2026, 2, 10, 9, tzinfo=dt.UTC)))
        publish(root, options(now=dt.datetime(2026, 2, 17, 9, tzinfo=dt.UTC)))  # an empty week: no digest
        status = publish_status(root, now=dt.datetime(2026, 2, 17, 9, tzinfo=dt.UTC))
    got = _by_reader(server)
    assert got["each@example.org"] == ["First", "In the window", "Next week", "Second", "Written late"]
    digests = [r for r in server.received if r.recipient == "week@example.org"]
    assert [r.message["Subject"] for r in digests] == ["Test Site: the week of January 26, 2026", "Test Site: the week of February 2, 2026"]
    first, second = (_text(_parsed(r.message)) for r in digests)
    assert "In the window" in first and "Second" in first and "First" not in first  # before the first digest's window
    assert "A summary." in first and "posts/a/" in first, first
    assert "Written late" in second and "Next week" in second and "In the window" not in second
    kinds = [(x.mailing.kind, len(x.mailing.posts), x.ledger.sent) for x in status.letters]
    assert kinds == [("digest", 2, 1), ("digest", 2, 1)]


def test_a_digest_lists_only_the_posts_a_readers_topics_let_through(make_site: Callable[..., Path]) -> None:
    now = dt.datetime(2026, 1, 13, 9, tzinfo=dt.UTC)  # the week of 5 January has ended
    with smtp_server() as (server, port):
        root = _site(make_site, port, TAGGED, _topics_toml())
        with open_store(load_config(root)) as store:
            store.add("film@example.org", frequency="weekly", topics=["Film"], now=JAN)
            store.add("all@example.org", frequency="weekly", now=JAN)
        publish(root, options(now=now))
    texts = {r.recipient: _text(_parsed(r.message)) for r in server.received}
    assert set(texts) == {"film@example.org", "all@example.org"}
    assert "A film" in texts["film@example.org"] and "News" in texts["film@example.org"] and "A show" not in texts["film@example.org"]
    assert all(t in texts["all@example.org"] for t in ("A film", "News", "A show"))


def test_digest_windows_follow_digest_day_and_the_sites_timezone(make_site: Callable[..., Path]) -> None:
    root = make_site({}, NEWSLETTER)
    toml = root / "press.toml"
    toml.write_text(toml.read_text().replace('timezone = "UTC"', 'timezone = "America/New_York"'))
    config = load_config(root)
    # 2026-03-09 03:00 UTC is Sunday 8 March 23:00 in New York: the week that began on 2 March has not ended there
    start, end = window(config, dt.datetime(2026, 3, 9, 3, tzinfo=dt.UTC))
    assert (start.date(), end.date()) == (dt.date(2026, 2, 23), dt.date(2026, 3, 2))
    start, end = window(config, dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC))
    assert (start.date(), end.date()) == (dt.date(2026, 3, 2), dt.date(2026, 3, 9))
    assert (start.utcoffset(), end.utcoffset()) == (dt.timedelta(hours=-5), dt.timedelta(hours=-4))  # summer time began on 8 March
    assert end.astimezone(dt.UTC) - start.astimezone(dt.UTC) == dt.timedelta(days=7, hours=-1)  # midnight to midnight
    toml.write_text(toml.read_text().replace("[web]", 'digest_day = "friday"\n[web]'))
    start, end = window(load_config(root), dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC))
    assert (start.date(), end.date()) == (dt.date(2026, 2, 27), dt.date(2026, 3, 6))
    for bad in ('"someday"', '"Monday"', "1"):
        with pytest.raises(PressError, match="digest_day"):
            load_config(make_site({}, NEWSLETTER.replace("[web]", f"digest_day = {bad}\n[web]"), name=f"bad{len(bad)}"))


def test_escape_markdown_renders_as_the_text_itself() -> None:
    from review_press import markup

    for text in ("*not em*", "[a](b)", "<script>x</script>", "1. list", "# head", "a_b_c", "back\\slash", "`code`", "&amp;"):
        assert markup.plain_text(markup.render(escape_markdown(text))).strip() == text


# --- corrections -------------------------------------------------------------------------


def test_a_correction_goes_once_to_exactly_those_who_got_the_post(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = _site(make_site, port)
        config = load_config(root)
        with open_store(config) as store:
            store.add("ada@example.org")
            bob = store.add("bob@example.org")
        publish(root, options())
        with pytest.raises(DeliveryError, match="unchanged since it was sent"):
            publish(root, options(slug="first", correction="nothing really"))
        path = root / "posts" / "2026-01-05-first.md"
        path.write_text(path.read_text().replace("The *first* letter.", "The *first* letter, corrected."))
        with open_store(config) as store:
            store.add("late@example.org")  # joined after: never got the post, gets no correction
            store.unsubscribe(bob.id)  # left: gets nothing more
        report = publish(root, options(slug="first", correction="the first draft said the wrong thing"))
        assert [(p.slug, p.sent) for p in report.posts] == [("correction of first", 1)]
        assert publish(root, options(slug="first", correction="the first draft said the wrong thing")).posts == ()
        assert [p.slug for p in publish(root, options()).posts] == []  # a plain publish sends nothing more
        with pytest.raises(DeliveryError, match="never sent|no newsletter post"):
            publish(root, options(slug="future", correction="x"))
        with pytest.raises(DeliveryError, match="note"):
            publish(root, options(slug="first", correction="  "))
    corrections = [r for r in server.received if r.message["Subject"].startswith("Correction:")]
    assert [(r.recipient, r.message["Subject"]) for r in corrections] == [("ada@example.org", "Correction: First")]
    text = _text(_parsed(corrections[0].message))
    assert "Correction: the first draft said the wrong thing" in text and "corrected." in text
    with open_store(config) as store:
        (m,) = stored.mailings(store)
        assert (m.kind, m.corrects, m.note) == ("correction", "first", "the first draft said the wrong thing")
        assert m.key not in [r.key for r in ledger.campaigns(store)]  # never taken for a post's campaign


def test_a_correction_cli_needs_a_slug_and_refuses_dry_run(make_site: Callable[..., Path]) -> None:
    from sites import cli

    root = make_site(POSTS, NEWSLETTER)
    for args in (["publish", "--correction", "x"], ["publish", "first", "--correction", "x", "--dry-run"]):
        done = cli(*args, "--site", str(root))
        assert done.returncode != 0 and "--correction needs the slug" in done.stderr and "Traceback" not in done.stderr


def test_check_reads_the_welcome_and_names_its_file_and_line(make_site: Callable[..., Path]) -> None:
    from sites import cli

    root = make_site({**POSTS, "_welcome.md": "---\ntitle: Welcome\n---\n\nNo date.\n"}, NEWSLETTER)
    done = cli("check", "--site", str(root))
    assert done.returncode != 0 and "_welcome.md" in done.stderr and "date" in done.stderr and "Traceback" not in done.stderr
    (root / "posts" / "_welcome.md").write_text(WELCOME)
    assert cli("check", "--site", str(root)).returncode == 0


def test_welcome_topics_digest_and_correction_on_postgresql(make_site: Callable[..., Path], pg_url: str) -> None:
    import pg_server as pg
    from review_press.store.postgres import PostgresStore

    env = {"REVIEW_PRESS_DATABASE_URL": pg_url, "PGPASSWORD": pg.PASSWORD}
    now = dt.datetime(2026, 1, 13, 9, tzinfo=dt.UTC)
    with smtp_server() as (server, port):
        root = _site(make_site, port, {**TAGGED, "_welcome.md": WELCOME}, _topics_toml())
        with PostgresStore.open(pg_url) as store:
            store.add("film@example.org", topics=["Film"], welcome=True, now=JAN)
            store.add("week@example.org", frequency="weekly", topics=["TV review"], now=JAN)
        publish(root, options(now=now, environ=env))
        assert publish(root, options(now=now, environ=env)).posts == ()
        path = root / "posts" / "2026-01-06-film.md"
        path.write_text(path.read_text().replace("Cinema.", "Cinema, corrected."))
        publish(root, options(now=now, environ=env, slug="film", correction="a typo"))
        publish(root, options(now=now, environ=env, slug="film", correction="a typo"))
    assert _by_reader(server) == {
        "film@example.org": ["A film", "Correction: A film", "News", "Welcome aboard"],
        "week@example.org": ["Test Site: the week of January 5, 2026"],
    }
    digest = next(r for r in server.received if r.recipient == "week@example.org")
    text = _text(_parsed(digest.message))
    assert "A show" in text and "News" in text and "A film" not in text


def test_a_confirmation_on_the_web_queues_the_welcome_and_publish_sends_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from live_web import SECRET, outbox, running

    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)
    with running(tmp_path) as live:
        early = live.subscribe_and_confirm_link("early@example.org")
        assert live.http.get(early.removeprefix(live.url)).status_code == 200  # confirmed before the site had a welcome
        (live.root / "posts" / "_welcome.md").write_text(WELCOME)
        link = live.subscribe_and_confirm_link("ada@example.org", "Ada")
        for _ in range(2):  # the click, and the click again
            assert live.http.get(link.removeprefix(live.url)).status_code == 200
        toml = live.root / "press.toml"  # mail links must be https: the live app listens on plain loopback
        toml.write_text(toml.read_text().replace(f'url = "{live.url}"', 'url = "https://example.org/newsletter/"'))
        publish(live.root, options())
        publish(live.root, options())
        welcomes = [str(m["To"]) for m in outbox(live.root) if m["Subject"] == "Welcome aboard"]
    assert welcomes == ["Ada <ada@example.org>"]
