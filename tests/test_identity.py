"""Post identity: a campaign belongs to a post, not to its file name or slug.

Renaming a sent post's file, moving it, or changing its slug never mails it again, and the
old URL (linked from every sent email) keeps working as a redirect page. Where identity is in
doubt, that post is refused with both named, and the others go out. Real SQLite, a real
aiosmtpd server, real builds into out/.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from publishing import NEWSLETTER, options, smtp_table, subscribe
from review_press.build import build
from review_press.config import load_config
from review_press.content import load_posts
from review_press.errors import PressError
from review_press.identity import CampaignRecord, match, utc_text
from review_press.publish import dry_run, publish, publish_status
from review_press.store import SQLiteStore, db_path
from review_press.tokens import site_secret
from smtp_servers import smtp_server

FIRST = "---\ntitle: First\ndate: 2026-01-05\n---\n\nThe *first* letter.\n"
SECOND = "---\ntitle: Second\ndate: 2026-02-01\n---\n\nThe second letter.\n"


def make(make_site: Callable[..., Path], port: int, posts: dict[str, str]) -> Path:
    return make_site(dict(posts), NEWSLETTER + smtp_table(port))


def move(root: Path, old: str, new: str, text: str | None = None) -> None:
    """Rename posts/old to posts/new (folders made as needed), optionally with new text."""
    src, dst = root / "posts" / old, root / "posts" / new
    dst.parent.mkdir(parents=True, exist_ok=True)
    content = src.read_text("utf-8") if text is None else text
    src.unlink()
    dst.write_text(content, "utf-8")


@pytest.mark.parametrize(
    ("new_name", "new_text"),
    [
        ("2026-01-05-renamed.md", FIRST.replace("title: First\n", "title: First\nslug: first\n")),  # new file name, slug kept
        ("letters/2026/first.md", None),  # moved into a subfolder (the slug is still "first")
        ("2026-01-05-first.md", FIRST.replace("title: First\n", "title: First\nslug: first-letter\n")),  # only the slug changes
        ("2026-01-05-the-first-letter.md", None),  # file and slug both change: date and title still agree
    ],
)
def test_a_sent_post_renamed_moved_or_reslugged_is_never_sent_again(
    make_site: Callable[..., Path], new_name: str, new_text: str | None
) -> None:
    with smtp_server() as (server, port):
        root = make(make_site, port, {"2026-01-05-first.md": FIRST})
        subscribe(root, 4)
        assert [p.sent for p in publish(root, options()).posts] == [4]
        move(root, "2026-01-05-first.md", new_name, new_text)
        again = publish(root, options())
        assert again.posts == () and again.refused == ()
        assert list(dry_run(root)) == []
    assert len(server.received) == 4
    [sent] = publish_status(root).sent
    assert sent.post is not None and sent.post.source == root / "posts" / new_name
    assert (sent.ledger.sent, sent.edited) == (4, False)


def test_the_old_url_of_a_reslugged_sent_post_redirects_and_is_in_no_feed_or_sitemap(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (_, port):
        root = make(make_site, port, {"2026-01-05-first.md": FIRST, "2026-02-01-second.md": SECOND})
        subscribe(root, 2)
        publish(root, options())
        (root / "posts" / "2026-01-05-first.md").write_text(FIRST.replace("title: First\n", "title: First\nslug: one\n"), "utf-8")
        build(root)  # before any publish notices the rename: the store still knows the old slug
    old = (root / "out/posts/first/index.html").read_text("utf-8")
    assert '<meta http-equiv="refresh" content="0; url=https://example.org/posts/one/">' in old
    assert '<link rel="canonical" href="https://example.org/posts/one/">' in old
    assert '<a href="https://example.org/posts/one/">First</a>' in old
    assert (root / "out/posts/one/index.html").is_file()
    for name in ("sitemap.xml", "feed.xml", "atom.xml", "feed.json"):
        text = (root / "out" / name).read_text("utf-8")
        assert "posts/one/" in text and "posts/first/" not in text, name
    [first, _] = publish_status(root).sent
    assert first.old_slugs == ("first",) and first.post is not None and first.post.slug == "one"


def test_explicit_aliases_make_redirect_pages_and_one_over_a_real_page_is_an_error(make_site: Callable[..., Path]) -> None:
    posts = {
        "2026-01-05-first.md": FIRST.replace("title: First\n", "title: First\naliases: [/2019/01/first.html, old-first, /notes/first/]\n"),
        "2026-02-01-second.md": SECOND,
    }
    root = make_site(posts, NEWSLETTER)
    build(root)
    for path in ("2019/01/first.html", "posts/old-first/index.html", "notes/first/index.html"):
        assert 'url=https://example.org/posts/first/"' in (root / "out" / path).read_text("utf-8"), path
    before = {p: p.read_bytes() for p in (root / "out").rglob("*") if p.is_file()}
    (root / "posts/2026-02-01-second.md").write_text(SECOND.replace("title: Second\n", "title: Second\naliases: [first]\n"), "utf-8")
    with pytest.raises(PressError) as caught:
        build(root)
    assert "2026-02-01-second.md:3: alias /posts/first/ is a page of the site already" in str(caught.value)
    assert {p: p.read_bytes() for p in (root / "out").rglob("*") if p.is_file()} == before  # out/ untouched


@pytest.mark.parametrize(
    ("front", "message"),
    [
        ("id: [1, 2]", "2026-01-05-first.md:3: 'id' must be one line of text"),
        ("id: ''", "2026-01-05-first.md:3: 'id' must be one line of text"),
        ("aliases: 5", "2026-01-05-first.md:3: 'aliases' must be a list of old URLs, not int"),
        ("aliases: [../../etc/passwd]", "2026-01-05-first.md:3: alias '../../etc/passwd' is not a site path"),
        ("aliases: ['https://evil.example/x']", "is not a site path"),
        ("aliases: ['/a b/']", "is not a site path"),
        ("aliases: ['/x/?q=1']", "is not a site path"),
    ],
)
def test_garbage_id_and_aliases_are_errors_naming_file_and_line(make_site: Callable[..., Path], front: str, message: str) -> None:
    root = make_site({"2026-01-05-first.md": FIRST.replace("title: First\n", f"title: First\n{front}\n")}, NEWSLETTER)
    with pytest.raises(PressError, match=message.replace("?", r"\?").replace("[", r"\[")):
        load_posts(load_config(root))


def test_two_posts_with_one_id_are_an_error(make_site: Callable[..., Path]) -> None:
    root = make_site(
        {"a.md": FIRST.replace("---\n\n", "id: same\n---\n\n"), "b.md": SECOND.replace("---\n\n", "id: same\n---\n\n")}, NEWSLETTER
    )
    with pytest.raises(PressError, match=r"b\.md:4: id 'same' is also the id of .*a\.md: two posts cannot share one"):
        load_posts(load_config(root))


def test_a_post_with_an_id_keeps_its_campaign_whatever_else_changes(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = make(make_site, port, {"2026-01-05-first.md": FIRST.replace("title: First\n", "title: First\nid: post-7\n")})
        subscribe(root, 3)
        publish(root, options())
        rewritten = "---\ntitle: A new title\nid: post-7\ndate: 2026-01-06\nslug: elsewhere\n---\n\nRewritten.\n"
        move(root, "2026-01-05-first.md", "renamed.md", rewritten)
        assert publish(root, options()).posts == ()
    assert len(server.received) == 3
    [sent] = publish_status(root).sent
    assert sent.edited and sent.old_slugs == ("first",)


def test_a_new_post_that_reuses_a_sent_slug_is_refused_and_the_others_still_go(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = make(make_site, port, {"2026-01-05-first.md": FIRST})
        subscribe(root, 2)
        publish(root, options())
        (root / "posts/2026-01-05-first.md").unlink()
        different = "---\ntitle: Something else\ndate: 2026-03-01\nslug: first\n---\n\nNew.\n"
        write = {"2026-03-01-something-else.md": different, "2026-02-01-second.md": SECOND}
        for name, text in write.items():
            (root / "posts" / name).write_text(text, "utf-8")
        report = publish(root, options())
        assert [p.slug for p in report.posts] == ["second"]
        [refusal] = report.refused
        assert "posts/2026-03-01-something-else.md has the slug of the post sent as 'first' (posts/2026-01-05-first.md)" in refusal.message
        assert 'id: "first"' in refusal.hint and "an id of its own" in refusal.hint
        assert any(isinstance(item, type(refusal)) for item in dry_run(root))
    assert sorted(r.message["Subject"] for r in server.received) == ["First", "First", "Second", "Second"]
    # the writer says it is a new post by giving it an id: it goes out, under a campaign of its own
    (root / "posts/2026-03-01-something-else.md").write_text(different.replace("slug: first", "slug: first\nid: else"), "utf-8")
    with smtp_server() as (server2, port2):
        (root / "press.toml").write_text(_toml(root, port2), "utf-8")
        assert [(p.slug, p.sent) for p in publish(root, options()).posts] == [("first", 2)]  # campaign key first~2, shown by its slug
    assert len(server2.received) == 2


def _toml(root: Path, port: int) -> str:
    """press.toml of `root` pointed at another SMTP port."""
    text = (root / "press.toml").read_text("utf-8")
    return text[: text.index("[smtp]")] + smtp_table(port)


def test_two_posts_that_both_look_like_one_sent_post_are_both_refused(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = make(make_site, port, {"2026-01-05-first.md": FIRST})
        subscribe(root, 2)
        publish(root, options())
        (root / "posts/copy.md").write_text(FIRST.replace("title: First\n", "title: First\nslug: first-copy\n"), "utf-8")
        (root / "posts/2026-01-05-first.md").unlink()
        (root / "posts/again.md").write_text(FIRST.replace("title: First\n", "title: First\nslug: first-again\n"), "utf-8")
        report = publish(root, options())
    assert report.posts == () and len(report.refused) == 2
    assert all(
        "looks like the post sent as 'first' (posts/2026-01-05-first.md) (text the same), and so does posts/" in r.message
        for r in report.refused
    )
    assert len(server.received) == 2


def record(key: str, **kw: object) -> CampaignRecord:
    return CampaignRecord(key=key, started_at="2026-01-05T00:00:00.000000Z", slugs=(key,), **kw)  # type: ignore[arg-type]


def test_the_rule_is_the_same_whatever_the_order_of_posts_and_campaigns(make_site: Callable[..., Path]) -> None:
    root = make_site({"a.md": FIRST, "b.md": SECOND, "c.md": FIRST.replace("title: First", "title: Third")}, NEWSLETTER)
    config = load_config(root)
    posts = load_posts(config)
    by_slug = {p.slug: p for p in posts}
    campaigns = [
        record("a", source="a.md", post_date=utc_text(by_slug["a"].date), title="First"),
        record("gone", source="zzz.md", post_date=utc_text(by_slug["b"].date), title="Second"),
        record("c", source="elsewhere.md", post_date="2020-01-01T00:00:00.000000Z", title="Other"),
    ]
    verdicts = set()
    for posts_order in (posts, tuple(reversed(posts))):
        for campaign_order in (campaigns, list(reversed(campaigns))):
            m = match(posts_order, campaign_order, config.posts_dir)
            verdicts.add((tuple(sorted((s, c.key) for s, c in m.campaigns.items())), tuple(sorted(m.refused))))
    assert verdicts == {((("a", "a"), ("b", "gone")), ("c",))}


def test_a_store_from_before_post_identity_is_migrated_and_keeps_its_campaigns(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = make(make_site, port, {"2026-01-05-first.md": FIRST})
        path = db_path(load_config(root))
        path.parent.mkdir(parents=True)
        conn = sqlite3.connect(path)
        from review_press.store import MIGRATIONS

        conn.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
        conn.execute(
            "INSERT INTO subscribers (address, envelope, address_key, name, status, created_at, updated_at, consent_at)"
            " VALUES ('r0@example.org', 'r0@example.org', 'r0@example.org', '', 'active', '2026-01-01', '2026-01-01', '2026-01-01')"
        )
        conn.execute("INSERT INTO campaigns VALUES ('first', '2026-01-06T00:00:00.000000Z')")
        conn.execute("INSERT INTO deliveries (slug, subscriber_id, status, created_at, updated_at) VALUES ('first', 1, 'sent', 'x', 'x')")
        conn.commit()
        conn.close()
        move(root, "2026-01-05-first.md", "moved/first.md")  # a rename the old schema could not have followed
        assert publish(root, options()).posts == ()
        with SQLiteStore.open(path) as store:
            assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
            assert store.conn.execute("SELECT source, current_slug FROM campaigns").fetchall() == [("moved/first.md", "first")]
    assert server.received == []


@pytest.mark.slow
def test_the_cli_names_a_refused_post_exits_1_and_sends_the_others(make_site: Callable[..., Path]) -> None:
    import mailbox

    from sites import cli

    root = make_site({"2026-01-05-first.md": FIRST}, NEWSLETTER)  # no [smtp]: the Maildir outbox
    subscribe(root, 2)
    assert cli("publish", "--site", str(root)).returncode == 0
    (root / "posts/2026-01-05-first.md").unlink()
    (root / "posts/new.md").write_text("---\ntitle: Else\ndate: 2026-03-01\nslug: first\n---\n\nNew.\n", "utf-8")
    (root / "posts/2026-02-01-second.md").write_text(SECOND, "utf-8")
    dry = cli("publish", "--site", str(root), "--dry-run")
    assert dry.returncode == 1 and "2 messages would be sent" in dry.stderr and "new.md:1: not sent:" in dry.stderr
    result = cli("publish", "--site", str(root))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "new.md:1: not sent: " in result.stderr and "the post sent as 'first' (posts/2026-01-05-first.md)" in result.stderr
    assert "second: 2 sent" in result.stdout
    subjects = sorted(m["Subject"] for m in mailbox.Maildir(root / "outbox", create=False))
    assert subjects == ["First", "First", "Second", "Second"]


@pytest.mark.slow
def test_a_post_renamed_between_a_kill_9_and_the_resume_finishes_its_campaign_once(make_site: Callable[..., Path], tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    import review_press
    from publishing import in_doubt, publish_command
    from review_press.newsletter import campaign_message_id
    from smtp_servers import received, recording_server

    with recording_server(tmp_path) as (port, log):
        root = make_site({"2026-01-05-first.md": FIRST}, NEWSLETTER + smtp_table(port) + "rate_per_second = 300\n")
        ids = subscribe(root, 300)
        env = {**os.environ, "PYTHONPATH": str(Path(review_press.__file__).parents[1])}
        command, _ = publish_command(root)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while sum(received(log).values()) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        doubtful = in_doubt(root)
        assert 40 <= sum(received(log).values()) < 300
        move(root, "2026-01-05-first.md", "2026/renamed.md", FIRST.replace("title: First\n", "title: First\nslug: renamed\n"))
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr
    got = received(log)
    secret = site_secret(load_config(root))
    assert set(got) == {campaign_message_id("first", i, "example.org", secret) for i in ids}  # everyone once, under the campaign's own key
    assert {mid for mid, n in got.items() if n > 1} <= doubtful


_SITES = itertools.count()


def _site_posts(make_site: Callable[..., Path], posts: dict[str, str]) -> tuple[Path, dict[str, object]]:
    root = make_site(posts, NEWSLETTER, name=f"site-{next(_SITES)}")
    config = load_config(root)
    return config.posts_dir, {p.slug: p for p in load_posts(config)}


def sent(post: object, posts_dir: Path, key: str | None = None, **changes: object) -> CampaignRecord:
    """The record the store keeps of `post` once it went out (optionally under another key, or with other facts)."""
    from review_press.identity import facts

    f = facts(post, posts_dir)  # type: ignore[arg-type]
    fields: dict[str, object] = {
        "key": key or f.slug,
        "started_at": "2026-06-01T00:00:00.000000Z",
        "post_id": f.post_id,
        "source": f.source,
        "slug": f.slug,
        "post_date": f.date,
        "title": f.title,
        "content_hash": f.content_hash,
        "slugs": (key or f.slug,),
    }
    fields.update(changes)
    return CampaignRecord(**fields)  # type: ignore[arg-type]


def verdict(posts: dict[str, object], campaigns: list[CampaignRecord], posts_dir: Path) -> tuple[dict[str, str], set[str]]:
    m = match(list(posts.values()), campaigns, posts_dir)  # type: ignore[arg-type]
    return {slug: c.key for slug, c in m.campaigns.items()}, set(m.refused)


ALPHA = "---\ntitle: Alpha\ndate: 2026-02-01T09:00:00\nid: aaaa-1111\n---\n\nThe alpha letter.\n"


def test_a_copy_of_a_sent_post_is_refused_whichever_file_keeps_the_id(make_site: Callable[..., Path]) -> None:
    posts_dir, before = _site_posts(make_site, {"2026-02-01-alpha.md": ALPHA})
    record = sent(before["alpha"], posts_dir)
    no_id = ALPHA.replace("id: aaaa-1111\n", "")
    # the writer removed the id from the original: the copy holds the campaign by id, the original is a lookalike
    posts_dir, posts = _site_posts(make_site, {"2026-02-01-alpha.md": no_id, "2026-02-01-alpha-copy.md": ALPHA})
    assert verdict(posts, [record], posts_dir) == ({"alpha-copy": "alpha"}, {"alpha"})
    # ... or from the copy: the original keeps it, the copy is refused
    posts_dir, posts = _site_posts(make_site, {"2026-02-01-alpha.md": ALPHA, "2026-02-01-alpha-copy.md": no_id})
    assert verdict(posts, [record], posts_dir) == ({"alpha": "alpha"}, {"alpha-copy"})


def test_a_sent_post_whose_id_was_changed_is_refused_not_resent(make_site: Callable[..., Path]) -> None:
    posts_dir, posts = _site_posts(make_site, {"2026-02-01-alpha.md": ALPHA})
    record = sent(posts["alpha"], posts_dir, post_id="the-old-id")
    mapping, refused = verdict(posts, [record], posts_dir)
    assert mapping == {} and refused == {"alpha"}
    message = match(list(posts.values()), [record], posts_dir).refused["alpha"]  # type: ignore[arg-type]
    assert "another id ('aaaa-1111', not 'the-old-id')" in message.message and 'id: "the-old-id"' in message.hint


def test_a_post_renamed_and_redated_with_its_text_unchanged_keeps_its_campaign(make_site: Callable[..., Path]) -> None:
    text = ALPHA.replace("id: aaaa-1111\n", "")
    posts_dir, posts = _site_posts(make_site, {"2026-02-01-alpha.md": text})
    record = sent(
        posts["alpha"], posts_dir, post_date="2026-02-01T08:00:00.000000Z", source="old-name.md", slugs=("old-name",), key="old-name"
    )
    assert verdict(posts, [record], posts_dir) == ({"alpha": "old-name"}, set())


def test_a_campaign_from_before_identity_refuses_an_unknown_older_post_and_matches_its_slug(make_site: Callable[..., Path]) -> None:
    text = ALPHA.replace("id: aaaa-1111\n", "")
    posts_dir, posts = _site_posts(make_site, {"2026-02-01-renamed.md": text})
    legacy = CampaignRecord(key="alpha", started_at="2026-02-01T10:00:00.000000Z", slugs=("alpha",))
    assert verdict(posts, [legacy], posts_dir) == ({}, {"renamed"})  # renamed before any publish recorded its facts
    posts_dir, posts = _site_posts(make_site, {"2026-02-01-alpha.md": text})
    assert verdict(posts, [legacy], posts_dir) == ({"alpha": "alpha"}, set())
    later = CampaignRecord(key="zeta", started_at="2026-01-01T10:00:00.000000Z", slugs=("zeta",))  # older than the post
    assert verdict(posts, [legacy, later], posts_dir)[1] == set()


def test_an_id_that_names_an_old_slug_never_takes_another_posts_campaign(make_site: Callable[..., Path]) -> None:
    beta = "---\ntitle: Beta\ndate: 2026-02-02\nid: alpha\n---\n\nBeta.\n"
    alpha = "---\ntitle: Alpha\ndate: 2026-02-03\n---\n\nAlpha.\n"
    posts_dir, posts = _site_posts(make_site, {"beta.md": beta, "alpha.md": alpha})
    campaigns = [sent(posts["beta"], posts_dir), sent(posts["alpha"], posts_dir)]  # beta's campaign has post_id "alpha"
    assert verdict(posts, campaigns, posts_dir) == ({"alpha": "alpha", "beta": "beta"}, set())


def test_two_sent_posts_with_one_title_and_date_keep_their_own_campaigns(make_site: Callable[..., Path]) -> None:
    one = "---\ntitle: Links\ndate: 2026-02-01\n---\n\nOne.\n"
    posts_dir, posts = _site_posts(make_site, {"links-one.md": one, "links-two.md": one.replace("One.", "Two.")})
    campaigns = [sent(posts["links-one"], posts_dir), sent(posts["links-two"], posts_dir)]
    assert verdict(posts, campaigns, posts_dir) == ({"links-one": "links-one", "links-two": "links-two"}, set())
