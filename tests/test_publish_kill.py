"""kill -9 a real publish process at random instants, resume, and compare with what a real SMTP
server (in its own process) received: no one missed, and only rows the ledger held in `sending`
at a kill (never more than the in-flight limit) were sent twice. Ctrl-C (SIGINT) and SIGTERM
(systemd, docker stop, timeout) stop it cleanly instead: nothing in doubt, nothing sent twice."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import review_press
from publishing import NEWSLETTER, POSTS, in_doubt, kill_at_random, publish_command, smtp_table
from review_press.config import load_config
from review_press.delivery.run import in_flight_limit
from review_press.newsletter import campaign_message_id
from review_press.store import open_store
from review_press.tokens import site_secret
from smtp_servers import fast_recording_server, received, recording_server

CONCURRENCY = 2
# aiosmtpd without PIPELINING: a sending thread per connection; the fast sink offers PIPELINING:
# one thread drives every connection (`delivery.loop.SendLoop`). Each path is killed.
SERVERS = pytest.mark.parametrize("server", [recording_server, fast_recording_server], ids=["threads", "send-loop"])


@pytest.mark.slow
@SERVERS
def test_kill_9_at_random_points_then_resume_misses_no_one(make_site: Callable[..., Path], tmp_path: Path, server: Callable) -> None:
    with server(tmp_path) as (port, record):
        root = make_site(POSTS, NEWSLETTER + smtp_table(port) + "rate_per_second = 500\n")
        with open_store(load_config(root)) as store:
            ids = [store.add(f"reader{i}@example.org").id for i in range(400)]
        env = {**os.environ, "PYTHONPATH": str(Path(review_press.__file__).parents[1])}
        command, batch = publish_command(root)
        in_flight = in_flight_limit(batch, CONCURRENCY)  # the documented bound: max(2 * batch, concurrency)
        seed = int(os.environ.get("KILL_SEED", time.time()))
        doubtful, kills = kill_at_random(command, env, root, seed, signal.SIGKILL, in_flight)
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr
        before = sum(received(record).values())
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        got = received(record)
        assert sum(got.values()) == before  # a publish after a complete one sends nothing
    domain, secret = "example.org", site_secret(load_config(root))
    expected = {campaign_message_id(slug, i, domain, secret) for slug in ("first", "second") for i in ids}
    assert set(got) == expected  # no one missed, nothing extra
    duplicated = {mid for mid, n in got.items() if n > 1}
    assert duplicated <= doubtful  # only messages in flight at a kill went twice
    assert len(duplicated) <= kills * in_flight
    assert all(n <= 1 + kills for n in got.values())
    print(
        f"{'review-press publish' if '-m' in command else 'runner'}: kills={kills} duplicates={len(duplicated)} in-doubt={len(doubtful)} bound/kill={in_flight}"
    )


@pytest.mark.slow
@SERVERS
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signalled_real_publish_process_stops_cleanly_and_duplicates_nothing(
    make_site: Callable[..., Path], tmp_path: Path, signum: signal.Signals, code: int, server: Callable
) -> None:
    with server(tmp_path) as (port, record):
        root = make_site(POSTS, NEWSLETTER + smtp_table(port) + "rate_per_second = 300\n")
        with open_store(load_config(root)) as store:
            ids = [store.add(f"reader{i}@example.org").id for i in range(300)]
        env = {**os.environ, "PYTHONPATH": str(Path(review_press.__file__).parents[1])}
        command, _ = publish_command(root)
        assert "-m" in command  # the real `review-press publish`
        errors = tmp_path / "stderr.txt"
        with errors.open("w") as stderr:
            proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = time.monotonic() + 30
            while sum(received(record).values()) < 50 and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signum)
            proc.wait(timeout=30)
        said = errors.read_text()
        assert proc.returncode == code, said  # 130 after Ctrl-C, 143 after SIGTERM
        assert "after the messages in flight; run `review-press publish` again to send the rest" in said
        assert "Traceback" not in said
        assert in_doubt(root) == set()  # every claimed row settled or handed back
        partial = sum(received(record).values())
        assert 50 <= partial < 600
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr
    got = received(record)
    secret = site_secret(load_config(root))
    assert set(got) == {campaign_message_id(slug, i, "example.org", secret) for slug in ("first", "second") for i in ids}
    assert max(got.values()) == 1
