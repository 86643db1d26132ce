"""Kill it and see: a real `review-press bounces fetch` reading a Maildir of 300 bounce reports
is SIGKILLed (and SIGTERMed) at random points, then run to the end. Every message must end in
exactly one place (`.processed/`), and every report must be on record exactly once: each
reader's soft-bounce count equals the reports written about them, and the hard bounces and
complaints took effect once."""

from __future__ import annotations

import mailbox
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bounce_corpus import Sent, postfix_dsn, yahoo_arf
from publishing import NEWSLETTER, POSTS, options, subscribe
from review_press.config import load_config
from review_press.publish import publish
from review_press.store import feedback, open_store

SEED = int(os.environ.get("KILL_SEED", "20261130"))
READERS = 8
REPORTS = 300
TOML = NEWSLETTER.replace("[web]", 'bounce_address = "bounces@example.org"\n\n[web]') + (
    '\n[bounces]\nsource = "maildir:bouncebox"\nsoft_limit = 100000\n'
)


def _outbox(root: Path) -> dict[str, Sent]:
    """The message of the first post each reader got: its real Message-ID and VERP return path."""
    found = {}
    for msg in mailbox.Maildir(root / "outbox", create=False):
        if str(msg["Subject"]) == "First":
            rcpt = str(msg["Delivered-To"])
            found[rcpt] = Sent(str(msg["Message-ID"]), str(msg["Return-Path"]).strip("<>"), rcpt)
    return found


def _files(root: Path, folder: str) -> int:
    path = root / "bouncebox" / folder
    return len(os.listdir(path)) if path.is_dir() else 0


@pytest.mark.slow
def test_bounces_fetch_killed_at_random_points_records_every_report_once_and_loses_no_message(make_site: Callable[..., Path]) -> None:
    rng = random.Random(SEED)
    root = make_site(dict(POSTS), TOML)
    ids = subscribe(root, READERS)
    publish(root, options())
    sent = _outbox(root)
    readers = sorted(sent)
    box = root / "bouncebox"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    written: Counter[str] = Counter()
    for n in range(REPORTS):  # each a distinct report (its own Message-ID), about one of the readers
        rcpt = readers[n % (READERS - 2)]  # the last two readers: one hard bounce, one complaint
        data = postfix_dsn(sent[rcpt], status="4.2.2", diagnostic=f"smtp; 452 4.2.2 <{rcpt}>: mailbox full (try {n})")
        (box / "new" / f"1767603607.{n:04d}.mx").write_bytes(data)
        written[rcpt] += 1
    (box / "new" / "1767603608.hard.mx").write_bytes(postfix_dsn(sent[readers[-2]], status="5.1.1"))
    (box / "new" / "1767603608.arf.mx").write_bytes(yahoo_arf(sent[readers[-1]]))
    total = REPORTS + 2

    command = [sys.executable, "-m", "review_press", "bounces", "fetch", "--site", str(root)]
    kills = 0
    for signum in (signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
        target = _files(root, ".processed/cur") + rng.randint(5, 60)
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while proc.poll() is None and _files(root, ".processed/cur") < target and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signum)
            kills += 1
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err or signum == signal.SIGTERM, err
        # at every instant a message is in exactly one place
        assert _files(root, "new") + _files(root, "cur") + _files(root, ".processed/cur") + _files(root, ".unparsed/cur") == total
    assert kills >= 2, "the fetches ended before they could be killed"
    final = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0 and "Traceback" not in final.stderr, final.stdout + final.stderr
    assert _files(root, "new") == _files(root, "cur") == _files(root, ".unparsed/cur") == 0
    assert _files(root, ".processed/cur") == total  # nothing lost, nothing copied

    with open_store(load_config(root)) as store:
        by_address = {s.address: s for s in store.iter_subscribers()}
        for rcpt in readers[:-2]:
            assert feedback.of_reader(store, by_address[rcpt].id) == {"hard": 0, "soft": written[rcpt], "complaint": 0}
            assert by_address[rcpt].status == "active"
        assert feedback.of_reader(store, by_address[readers[-2]].id)["hard"] == 1 and by_address[readers[-2]].status == "bounced"
        assert feedback.of_reader(store, by_address[readers[-1]].id)["complaint"] == 1
        assert by_address[readers[-1]].status == "complained"
    assert sorted(s.id for s in by_address.values()) == sorted(ids)
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.startswith("0 messages")
