"""`publish --workers` on SQLite: the processes of one publish share the file (its publish holds
the lock that keeps any other publish out), every reader gets the post once, and a sending
process killed with SIGKILL loses nothing: its rows come back when its lease expires, and only
what it had in flight may go twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from publishing import NEWSLETTER, in_doubt, ledger_rows, sending_processes, smtp_table, subscribe
from review_press.config import load_config
from review_press.delivery.run import in_flight_limit
from review_press.newsletter import campaign_message_id
from review_press.tokens import site_secret
from sites import BASE_TOML, write_site
from smtp_servers import fast_recording_server, received

POST = {"2026-01-05-first.md": "---\ntitle: First\ndate: 2026-01-05\n---\n\nThe *first* letter.\n"}


@pytest.mark.slow
def test_three_processes_share_a_campaign_on_sqlite_one_killed_with_sigkill(tmp_path: Path) -> None:
    readers, concurrency = 6000, 2
    rng = random.Random(int(os.environ.get("KILL_SEED", "20261130")))
    with fast_recording_server(tmp_path) as (port, record):
        toml = BASE_TOML + NEWSLETTER + smtp_table(port, rate_per_second=1500) + "\n[store]\nlease_seconds = 3\n"
        root = write_site(tmp_path / "site", POST, toml)
        ids = subscribe(root, readers)
        publisher = subprocess.Popen(
            [sys.executable, "-m", "review_press", "publish", "--workers", "3", "--site", str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while sum(received(record).values()) < 300 and time.monotonic() < deadline and publisher.poll() is None:
            time.sleep(0.02)
        senders = sending_processes(publisher.pid)
        assert len(senders) == 3
        victim = rng.choice(senders)
        time.sleep(rng.uniform(0.05, 0.5))
        doubtful = in_doubt(root)  # every row in flight anywhere just before the kill: a superset of the victim's
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        doubtful |= in_doubt(root)
        out, err = publisher.communicate(timeout=300)
        assert "Traceback" not in err, err
        assert publisher.returncode == 1 and "ended with exit code -9" in out + err  # it says one of its senders died
        rerun = subprocess.run(
            [sys.executable, "-m", "review_press", "publish", "--site", str(root)], capture_output=True, text=True, timeout=120
        )
        assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stdout + rerun.stderr
        got = received(record)
    assert ledger_rows(root) == {"sent": readers}
    secret = site_secret(load_config(root))
    assert set(got) == {campaign_message_id("first", i, "example.org", secret) for i in ids}  # every reader
    duplicated = {m for m, n in got.items() if n > 1}
    assert duplicated <= doubtful and max(got.values()) <= 2  # only what was in flight at the kill, at most twice
    assert len(duplicated) <= in_flight_limit(100, concurrency)


@pytest.mark.slow
def test_sending_processes_whose_publish_was_killed_stop_and_a_new_publish_finishes(tmp_path: Path) -> None:
    readers = 3000
    with fast_recording_server(tmp_path) as (port, record):
        toml = BASE_TOML + NEWSLETTER + smtp_table(port, rate_per_second=300)
        root = write_site(tmp_path / "site", POST, toml)
        ids = subscribe(root, readers)
        publisher = subprocess.Popen(
            [sys.executable, "-m", "review_press", "publish", "--workers", "2", "--site", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while sum(received(record).values()) < 300 and time.monotonic() < deadline and publisher.poll() is None:
            time.sleep(0.02)
        senders = sending_processes(publisher.pid)
        assert len(senders) == 2
        publisher.send_signal(signal.SIGKILL)  # the publish dies; its lock goes with it
        publisher.wait(10)
        _, alive = psutil.wait_procs(senders, timeout=60)  # they notice and stop after the messages in flight
        assert not alive  # (their exit status is their dead parent's to read)
        assert sum(received(record).values()) < readers  # they stopped: killing the publish stops the sending
        doubtful = in_doubt(root)  # what they had handed over but not settled: may go twice
        rerun = subprocess.run(
            [sys.executable, "-m", "review_press", "publish", "--site", str(root)], capture_output=True, text=True, timeout=120
        )
        assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stdout + rerun.stderr
        got = received(record)
    secret = site_secret(load_config(root))
    assert set(got) == {campaign_message_id("first", i, "example.org", secret) for i in ids}
    assert {m for m, n in got.items() if n > 1} <= doubtful and max(got.values()) <= 2


def test_the_sending_processes_progress_reaches_the_publish_that_started_them(tmp_path: Path) -> None:
    """`publish --workers` showed no progress until the end: its processes reported only when
    done. Each now says where its share stands as it goes, and the parent adds them up."""
    from review_press.delivery.run import Progress
    from review_press.publish import PublishOptions, publish

    readers = 600
    seen: list[Progress] = []
    with fast_recording_server(tmp_path) as (port, record):
        root = write_site(tmp_path / "site", POST, BASE_TOML + NEWSLETTER + smtp_table(port))
        subscribe(root, readers)
        report = publish(root, PublishOptions(workers=2, batch_size=50, environ={}), progress=seen.append)
        got = received(record)
    assert report.posts[0].sent == readers and sum(got.values()) == readers
    assert {p.slug for p in seen} == {"first"}
    done = [p.done for p in seen]
    assert len(done) >= 4 and done == sorted(done) and done[0] < readers  # many reports on the way, never going back
    assert (seen[-1].sent, seen[-1].done, seen[-1].total) == (readers, readers, readers)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_publish_reaches_its_sending_processes_which_stop_cleanly(tmp_path: Path, signum: int) -> None:
    """SIGTERM (systemd, docker stop) or Ctrl-C to a `publish --workers 2` is passed on to its
    sending processes over their pipes: each finishes the messages it has in flight and settles
    them, so nothing is left `sending` and nothing went twice; the exit says which signal, and a
    new publish sends the rest, every reader once in all."""
    readers = 3000
    with fast_recording_server(tmp_path) as (port, record):
        root = write_site(tmp_path / "site", POST, BASE_TOML + NEWSLETTER + smtp_table(port, rate_per_second=300))
        ids = subscribe(root, readers)
        publisher = subprocess.Popen(
            [sys.executable, "-m", "review_press", "publish", "--workers", "2", "--site", str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while sum(received(record).values()) < 300 and time.monotonic() < deadline and publisher.poll() is None:
            time.sleep(0.02)
        assert len(sending_processes(publisher.pid)) == 2
        publisher.send_signal(signum)
        out, err = publisher.communicate(timeout=120)
        assert publisher.returncode == 128 + signum and "Traceback" not in err, out + err
        rows = ledger_rows(root)
        assert "sending" not in rows and rows.get("sent", 0) < readers  # stopped early, every message settled
        before = received(record)
        assert max(before.values()) == 1 and sum(before.values()) == rows["sent"]  # what the server took is what the store says went
        rerun = subprocess.run(
            [sys.executable, "-m", "review_press", "publish", "--site", str(root)], capture_output=True, text=True, timeout=120
        )
        assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stdout + rerun.stderr
        got = received(record)
    secret = site_secret(load_config(root))
    assert ledger_rows(root) == {"sent": readers}
    assert got == {campaign_message_id("first", i, "example.org", secret): 1 for i in ids}  # every reader, once
