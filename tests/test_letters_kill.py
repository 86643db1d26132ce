"""kill -9 a real `review-press publish` while it sends welcome emails, a weekly digest and posts,
at random instants, then let it finish, and compare with what a real SMTP server (in its own
process) received: every welcome, digest and post went to exactly the readers owed it, and only
rows the ledger held in `sending` at a kill (at most the in-flight limit each time) went twice."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import review_press
from publishing import NEWSLETTER, POSTS, kill_at_random, publish_command, smtp_table
from review_press.config import load_config
from review_press.content import load_posts
from review_press.delivery.run import in_flight_limit
from review_press.letters import window
from review_press.newsletter import campaign_message_id
from review_press.store import mailings, open_store
from review_press.tokens import site_secret
from smtp_servers import received, recording_server

WELCOME = "---\ntitle: Welcome aboard\ndate: 2026-01-01\n---\n\nThanks for joining.\n"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_at_random_while_sending_welcomes_a_digest_and_posts_then_resumed(
    make_site: Callable[..., Path], tmp_path: Path, signum: signal.Signals
) -> None:
    now = dt.datetime.now(dt.UTC)
    with recording_server(tmp_path) as (port, record):
        root = make_site({"_welcome.md": WELCOME}, NEWSLETTER + smtp_table(port) + "rate_per_second = 600\n")
        config = load_config(root)
        start, _ = window(config, now)  # the week that ended last, by the real clock (the CLI has no --now)
        posts = {}
        for i in range(2):
            day = (start + dt.timedelta(days=2 + i)).astimezone(dt.UTC)
            posts[f"p{i}"] = f"---\ntitle: Week post {i}\ndate: {day:%Y-%m-%dT%H:%M:%SZ}\n---\n\nPost {i}.\n"
            (root / "posts" / f"{day:%Y-%m-%d}-p{i}.md").write_text(posts[f"p{i}"])
        joined = start - dt.timedelta(days=1)
        with open_store(config) as store:
            each = [store.add(f"each{i}@example.org", welcome=True, now=joined).id for i in range(150)]
            weekly = [store.add(f"week{i}@example.org", welcome=True, frequency="weekly", now=joined).id for i in range(150)]
        env = {**os.environ, "PYTHONPATH": str(Path(review_press.__file__).parents[1])}
        command, batch = publish_command(root)
        assert "-m" in command  # the real `review-press publish`
        bound = in_flight_limit(batch, 2)
        doubtful, kills = kill_at_random(command, env, root, int(os.environ.get("KILL_SEED", time.time())), signum, bound)
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert final.returncode == 0, final.stderr
        before = sum(received(record).values())
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stderr
        got = received(record)
        assert sum(got.values()) == before  # a publish after a complete one sends nothing
    secret, domain = site_secret(config), "example.org"
    digest = mailings.digest_key(start.astimezone(config.tz).date())
    expected = {campaign_message_id(mailings.WELCOME, i, domain, secret) for i in each + weekly}
    expected |= {campaign_message_id(digest, i, domain, secret) for i in weekly}
    expected |= {campaign_message_id(f"p{n}", i, domain, secret) for n in range(2) for i in each}
    assert set(got) == expected  # no one missed, nothing extra: weekly readers got no post, every reader one welcome
    duplicated = {mid for mid, n in got.items() if n > 1}
    assert duplicated <= doubtful  # only messages in flight at a kill went twice
    assert len(duplicated) <= kills * bound
    with open_store(config) as store:
        (m,) = [m for m in mailings.mailings(store) if m.kind == "digest"]
        assert m.posts == ("p0", "p1")  # the digest started once, with both posts, whatever the kills
    print(f"{signum.name}: kills={kills} duplicates={len(duplicated)} in-doubt={len(doubtful)} bound/kill={bound}")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_at_random_while_sending_a_correction_then_resumed(
    make_site: Callable[..., Path], tmp_path: Path, signum: signal.Signals
) -> None:
    with recording_server(tmp_path) as (port, record):
        root = make_site(dict(POSTS), NEWSLETTER + smtp_table(port) + "rate_per_second = 600\n")
        config = load_config(root)
        with open_store(config) as store:
            ids = [store.add(f"reader{i}@example.org").id for i in range(300)]
            store.unsubscribe(ids[0])  # left before the post: neither it nor its correction
        env = {**os.environ, "PYTHONPATH": str(Path(review_press.__file__).parents[1])}
        command, batch = publish_command(root)
        assert subprocess.run(command, env=env, capture_output=True, timeout=180).returncode == 0  # the post, to everyone
        path = root / "posts" / "2026-01-05-first.md"
        path.write_text(path.read_text().replace("letter.", "letter, corrected."))
        with open_store(config) as store:
            store.unsubscribe(ids[1])  # left after the post: no correction
            store.add("late@example.org")  # joined after: no correction
        correct = [*command, "first", "--correction", "the first version was wrong"]
        doubtful, kills = kill_at_random(
            correct, env, root, int(os.environ.get("KILL_SEED", time.time())), signum, in_flight_limit(batch, 2)
        )
        final = subprocess.run(correct, env=env, capture_output=True, text=True, timeout=180)
        assert final.returncode == 0, final.stderr
        assert subprocess.run(command, env=env, capture_output=True, timeout=180).returncode == 0  # a plain publish sends nothing more
        got = received(record)
    (post,) = [p for p in load_posts(config) if p.slug == "first"]
    key = mailings.correction_key("first", post.content_hash)
    secret = site_secret(config)
    corrections = {m: n for m, n in got.items() if campaign_message_id(key, 0, "example.org", secret).split(".")[0] in m}
    assert set(corrections) == {campaign_message_id(key, i, "example.org", secret) for i in ids[2:]}
    duplicated = {m for m, n in corrections.items() if n > 1}
    assert duplicated <= doubtful and len(duplicated) <= kills * in_flight_limit(batch, 2)
    print(f"{signum.name}: kills={kills} duplicates={len(duplicated)} in-doubt={len(doubtful)}")
