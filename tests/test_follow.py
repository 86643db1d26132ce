"""`publish --follow`, a real process: a post dated a few seconds ahead goes out when its date
comes (not before), a post written while it runs is found, a broken post is reported without
stopping the service, and SIGTERM (systemd's stop) ends it with 143 and no traceback."""

from __future__ import annotations

import datetime as dt
import mailbox
import signal
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from publishing import NEWSLETTER, subscribe
from sites import BASE_TOML, write_site

FIRST = "---\ntitle: First\ndate: 2026-01-05\n---\n\nThe first letter.\n"


def _subjects(root: Path) -> list[str]:
    box = root / "outbox"
    return sorted(str(m["Subject"]) for m in mailbox.Maildir(box, create=False)) if (box / "new").is_dir() else []


def _wait_for(check: object, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_follow_sends_each_post_when_its_date_comes_and_stops_on_sigterm(tmp_path: Path) -> None:
    root = write_site(tmp_path / "site", {"2026-01-05-first.md": FIRST}, BASE_TOML + NEWSLETTER)
    subscribe(root, 2)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)).replace(microsecond=0)
    (root / "posts" / "soon.md").write_text(f"---\ntitle: Soon\ndate: {soon.isoformat()}\n---\n\nOn time.\n", "utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "review_press", "publish", "--follow", "--poll", "1", "--site", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: _subjects(root) == ["First", "First"]), _subjects(root)
        assert _wait_for(lambda: _subjects(root).count("Soon") == 2)
        sent_at = [parsedate_to_datetime(str(m["Date"])) for m in mailbox.Maildir(root / "outbox", create=False) if m["Subject"] == "Soon"]
        assert min(sent_at) >= soon  # not before its date (the Date header is the moment it was made)
        (root / "posts" / "broken.md").write_text("---\ntitle: Broken\ndate: whenever\n---\n\nNo.\n", "utf-8")
        time.sleep(2.5)  # at least one round sees the broken post (and reports it)
        (root / "posts" / "broken.md").unlink()
        (root / "posts" / "later.md").write_text("---\ntitle: Later\ndate: 2026-02-01\n---\n\nWritten while it ran.\n", "utf-8")
        assert _wait_for(lambda: _subjects(root).count("Later") == 2), _subjects(root)
        assert proc.poll() is None  # still running after the broken post
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "broken.md:3" in err and "stopped by SIGTERM" in err
    assert sorted(_subjects(root)) == ["First", "First", "Later", "Later", "Soon", "Soon"]  # each once
