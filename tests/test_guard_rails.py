"""The guard rails, end to end: complaints that arrive while a real `review-press publish` sends
to a real SMTP server pause the campaign (the rest stays pending, the run says why and exits 1),
a plain publish leaves it paused, and `publish --resume` sends the rest, each reader once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from publishing import NEWSLETTER, ledger_rows, smtp_table, subscribe
from review_press.config import load_config
from review_press.store import feedback, open_store
from review_press.store.model import Feedback
from sites import BASE_TOML, write_site
from smtp_servers import fast_recording_server, received

POST = {"2026-01-05-first.md": "---\ntitle: First\ndate: 2026-01-05\n---\n\nThe *first* letter.\n"}
READERS = 3000


def _publish(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "review_press", "publish", "--site", str(root), *extra], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_complaints_arriving_mid_campaign_pause_it_and_resume_sends_the_rest_once(tmp_path: Path) -> None:
    with fast_recording_server(tmp_path) as (port, record):
        toml = BASE_TOML + NEWSLETTER + smtp_table(port, rate_per_second=300) + "\n[bounces]\npause_min_sent = 200\n"
        root = write_site(tmp_path / "site", POST, toml)
        subscribe(root, READERS)
        sender = subprocess.Popen(
            [sys.executable, "-m", "review_press", "publish", "--site", str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        config = load_config(root)
        complainers: list[int] = []
        deadline = time.monotonic() + 120
        while not complainers and time.monotonic() < deadline and sender.poll() is None:
            with open_store(config) as store:
                sent = [r[0] for r in store.conn.execute("SELECT subscriber_id FROM deliveries WHERE status = 'sent' LIMIT 400")]
                if len(sent) >= 300:  # 5 complaints in at least 300 sent: over 0.3%
                    complainers = sent[:5]
                    reports = [Feedback(f"test:{sid}", "complaint", sid, "ses", "first", "abuse") for sid in complainers]
                    assert feedback.record(store, reports) == ["complained"] * 5
            time.sleep(0.05)
        out, err = sender.communicate(timeout=240)
        assert complainers, "the campaign ended before 300 messages were recorded as sent"
        assert sender.returncode == 1, out + err
        assert "paused first: complaints at" in err and "--resume" in err and "Traceback" not in err
        rows = ledger_rows(root)
        assert rows.get("pending", 0) > 0 and rows["sent"] < READERS  # the rest waits
        got = received(record)
        assert sum(got.values()) == rows["sent"] and set(got.values()) == {1}

        status = subprocess.run(
            [sys.executable, "-m", "review_press", "status", "--site", str(root)], capture_output=True, text=True, timeout=120
        )
        assert "PAUSED: complaints at" in status.stdout and "who complained: 5 (" in status.stdout, status.stdout

        again = _publish(root)
        assert again.returncode == 1 and "paused first" in again.stderr
        assert ledger_rows(root) == rows and received(record) == got  # nothing more went

        resumed = _publish(root, "--resume")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        final = received(record)
        assert len(final) == READERS and set(final.values()) == {1}  # everyone once: the complainers had it already
        assert ledger_rows(root) == {"sent": READERS}
        with open_store(config) as store:
            assert feedback.paused(store) == {}
            assert {store.get(sid).status for sid in complainers} == {"complained"}  # type: ignore[union-attr]
