"""Test support for `publish`: the newsletter site every publishing test starts from (press.toml
tables and posts), fast publish options, subscribers, the delivery ledger, and the command that
publishes in a separate process (for kill -9 and signal tests)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

from review_press.config import load_config
from review_press.delivery.smtp import Policy
from review_press.publish import PublishOptions
from review_press.store import db_path, open_store
from smtp_servers import message_builder

TESTS = Path(__file__).parent
NEWSLETTER = """
[newsletter]
since = 2026-01-01
from = "The Press <letters@example.org>"
reply_to = "editor@example.org"
list_id = "The Press <press.example.org>"

[web]
url = "https://example.org/newsletter/"
"""
POSTS = {
    "2025-12-01-old.md": "---\ntitle: Old\ndate: 2025-12-01\n---\n\nBefore since.\n",
    "2026-01-05-first.md": "---\ntitle: First\ndate: 2026-01-05\n---\n\nThe *first* letter.\n",
    "2026-02-01-second.md": "---\ntitle: Second\ndate: 2026-02-01\n---\n\nThe second letter.\n",
    "2026-02-02-draft.md": "---\ntitle: Draft\ndate: 2026-02-02\ndraft: true\n---\n\nNot yet.\n",
    "2099-01-01-future.md": "---\ntitle: Future\ndate: 2099-01-01\n---\n\nLater.\n",
}
FAST = Policy(max_attempts=2, backoff_base=0.01, backoff_cap=0.02, window=1000, min_samples=1000)
BATCH = 10
# Until the CLI has `publish`, this runner stands in for `review-press publish` (same API, same process model).
RUNNER = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from pathlib import Path
from smtp_servers import message_builder
from review_press.publish import PublishOptions, publish
publish(Path(sys.argv[1]), PublishOptions(batch_size={BATCH}, build_message=message_builder()))
"""


def smtp_table(port: int, **extra: Any) -> str:
    """An [smtp] table for a server on 127.0.0.1:`port` (no STARTTLS), plus `extra` settings."""
    lines = ["[smtp]", 'host = "127.0.0.1"', f"port = {port}", "starttls = false", "concurrency = 2", "max_attempts = 2", "timeout = 5"]
    lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {str(v).lower()}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def options(**kw: Any) -> PublishOptions:
    """PublishOptions for tests: quick retries, batches of 5, no environment; `kw` overrides."""
    return PublishOptions(**{"build_message": message_builder(), "policy": FAST, "batch_size": 5, "environ": {}, **kw})


def subscribe(site: Path, n: int, prefix: str = "r") -> list[int]:
    """Add `n` subscribers <prefix><i>@example.org ("Reader <i>"); their ids."""
    with open_store(load_config(site)) as store:
        return [store.add(f"{prefix}{i}@example.org", f"Reader {i}").id for i in range(n)]


def ledger_rows(site: Path) -> dict[str, int]:
    """How many deliveries the ledger holds in each status."""
    with open_store(load_config(site)) as store:
        return dict(store.conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())


def publish_command(root: Path) -> tuple[list[str], int]:
    """The real `review-press publish` once the CLI has it, else the runner; and the batch size it uses."""
    from review_press import cli

    if any((c.name or c.callback.__name__) == "publish" for c in cli.app.registered_commands if c.callback):
        return [sys.executable, "-m", "review_press", "publish", "--site", str(root)], PublishOptions().batch_size
    return [sys.executable, "-c", RUNNER, str(root)], BATCH


def in_doubt(site: Path) -> set[str]:
    """Message-IDs of rows a killed run left in `sending`: the only ones that may go twice."""
    conn = sqlite3.connect(db_path(load_config(site)))
    try:
        return {row[0] for row in conn.execute("SELECT message_id FROM deliveries WHERE status = 'sending'")}
    finally:
        conn.close()


def wait_out_pauses(site: Path) -> None:
    """Sleep until every destination domain's pause (421/450/451, `ledger.back_off`) is over, so a
    re-run may send to it again (a wait for the store's clock, never a check on how long things took)."""
    import datetime as dt
    import time

    with open_store(load_config(site)) as store:
        (until,) = store.conn.execute("SELECT max(until) FROM domain_backoff").fetchone()
    if until:
        end = dt.datetime.strptime(until, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        time.sleep(max(0.0, (end - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05)


def sending_processes(pid: int) -> list[Any]:
    """The sending processes a `publish --workers` (process `pid`) started: its spawned Python
    children, not multiprocessing's resource tracker (psutil processes)."""
    import psutil

    return [c for c in psutil.Process(pid).children() if "spawn_main" in " ".join(c.cmdline())]


def kill_at_random(
    command: list[str],
    env: dict[str, str],
    root: Path,
    seed: int,
    signum: int,
    bound: int,
    rounds: int = 6,
    naps: tuple[float, float] = (0.5, 2.5),
) -> tuple[set[str], int]:
    """Start `command` (a real publish) up to `rounds` times, each stopped with `signum` after a
    random nap (`seed`), until one finishes by itself; after each stop at most `bound` rows may be
    left in `sending` (none after SIGTERM, which ends after the messages in flight: exit 143, or
    -15 when it came during the build, before anything was sent). Returns (the Message-IDs left in
    doubt at the stops, how many stops)."""
    import random
    import signal
    import subprocess
    import time

    rng, doubtful, kills = random.Random(seed), set(), 0
    for _ in range(rounds):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(*naps))
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
            break
        proc.send_signal(signum)
        proc.wait(timeout=60)
        kills += 1
        left = in_doubt(root)
        assert len(left) <= bound
        if signum == signal.SIGTERM:
            assert left == set() and proc.returncode in (0, 143, -signal.SIGTERM)
        doubtful |= left
    return doubtful, kills
