"""The store on a real PostgreSQL server (see `pg_server`): the password never shown, schema
versions checked, `store migrate` copying a SQLite store whole, publish on PostgreSQL, and many
senders (`publish --workers`, `worker`) sharing a campaign while some are killed with SIGKILL or
paused past their lease with SIGSTOP."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import pg_server as pg
import review_press
from publishing import NEWSLETTER, sending_processes, smtp_table
from review_press.config import load_config
from review_press.delivery.run import in_flight_limit
from review_press.newsletter import campaign_message_id
from review_press.store import SQLiteStore, db_path, feedback, ledger
from review_press.store.model import Feedback
from review_press.store.postgres import NEWEST, PostgresStore
from review_press.tokens import site_secret
from smtp_servers import fast_recording_server, received, recording_server

ONE_POST = {"2026-02-01-first.md": "---\ntitle: First\ndate: 2026-02-01\n---\n\nThe first letter.\n"}
ENV = {"PYTHONPATH": str(Path(review_press.__file__).parents[1]), "NO_COLOR": "1", "COLUMNS": "200"}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m review_press ARGS` in a subprocess, with the test's environment plus `env`."""
    full = {**os.environ, **ENV, **(env or {})}
    return subprocess.run([sys.executable, "-m", "review_press", *args], capture_output=True, text=True, env=full, timeout=timeout)


def pg_env(url: str) -> dict[str, str]:
    return {"REVIEW_PRESS_DATABASE_URL": url, "PGPASSWORD": pg.PASSWORD}


def add_readers(root: Path, n: int, env: dict[str, str]) -> None:
    """`n` readers through a real CSV import (r<i>@example.org)."""
    csv = root / "readers.csv"
    csv.write_text("email,name\n" + "".join(f"r{i}@example.org,Reader {i}\n" for i in range(n)))
    done = cli("subscribers", "import", str(csv), "--site", str(root), env=env)
    assert done.returncode == 0, done.stderr


# --- the password, the URL, the schema ----------------------------------------------------------


def test_a_password_in_press_toml_is_refused_without_being_shown(make_site: Callable[..., Path], pg_server: pg.Server) -> None:
    root = make_site(ONE_POST, NEWSLETTER + f'[store]\nurl = "postgresql://press:{pg.PASSWORD}@127.0.0.1:{pg_server.port}/postgres"\n')
    done = cli("subscribers", "count", "--site", str(root))
    assert done.returncode == 1
    assert "press.toml:" in done.stderr and "PGPASSWORD or ~/.pgpass" in done.stderr
    assert pg.PASSWORD not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_the_password_comes_from_pgpassword_and_is_never_shown(make_site: Callable[..., Path], pg_url: str, tmp_path: Path) -> None:
    root = make_site(ONE_POST, NEWSLETTER)
    wrong = cli("subscribers", "add", "ann@example.org", "--site", str(root), env={**pg_env(pg_url), "PGPASSWORD": "not-it-" + pg.PASSWORD})
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "cannot use the database at postgresql://press@127.0.0.1" in wrong.stderr
    assert pg.PASSWORD not in wrong.stdout + wrong.stderr
    good = cli("subscribers", "add", "ann@example.org", "--site", str(root), env=pg_env(pg_url))
    assert good.returncode == 0, good.stderr
    counted = cli("subscribers", "count", "--site", str(root), env=pg_env(pg_url))
    assert "active" in counted.stdout and "1" in counted.stdout
    # ~/.pgpass works as libpq's other source
    (tmp_path / "pgpass").write_text(f"127.0.0.1:*:*:press:{pg.PASSWORD}\n")
    (tmp_path / "pgpass").chmod(0o600)
    via_file = cli(
        "subscribers",
        "count",
        "--site",
        str(root),
        env={"REVIEW_PRESS_DATABASE_URL": pg_url, "PGPASSWORD": "", "PGPASSFILE": str(tmp_path / "pgpass")},
    )
    assert via_file.returncode == 0, via_file.stderr
    assert not (root / ".review-press" / "press.db").exists()  # the SQLite file was never made
    for done in (wrong, good, counted, via_file):
        assert pg.PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize("url", ["mysql://x/y", "postgresql://h:notaport/x", "not a url at all"])
def test_a_bad_database_url_in_the_environment_is_a_clear_error(make_site: Callable[..., Path], url: str) -> None:
    root = make_site(ONE_POST, NEWSLETTER)
    done = cli("subscribers", "count", "--site", str(root), env={"REVIEW_PRESS_DATABASE_URL": url})
    assert done.returncode == 1 and "REVIEW_PRESS_DATABASE_URL" in done.stderr and "Traceback" not in done.stderr


def test_an_older_or_newer_schema_is_refused_and_store_upgrade_creates_one(make_site: Callable[..., Path], pg_url: str) -> None:
    root = make_site(ONE_POST, NEWSLETTER)
    created = cli("store", "upgrade", "--site", str(root), env=pg_env(pg_url))
    assert created.returncode == 0 and f"schema version none -> {NEWEST}" in created.stdout, created.stdout + created.stderr
    again = cli("store", "upgrade", "--site", str(root), env=pg_env(pg_url))
    assert "up to date" in again.stdout
    for version, words in ((3, ["older", "review-press store upgrade"]), (99, ["newer", "upgrade review-press"])):
        with PostgresStore.open(pg_url, check=False) as store:
            store.conn.execute("UPDATE schema_version SET version = ?", (version,))
        done = cli("subscribers", "count", "--site", str(root), env=pg_env(pg_url))
        assert done.returncode == 1 and all(w in done.stderr for w in words), done.stderr
        assert "Traceback" not in done.stderr


# --- the store's rules, on PostgreSQL ----------------------------------------------------------


def test_suppression_erasure_and_import_keep_their_rules_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    from review_press.importers import import_csv

    secret = b"k" * 32
    with PostgresStore.open(pg_url) as store:
        ann, bob = store.add("ann@example.org", "Ann"), store.add("Bob@Example.org")
        assert ledger.fill(store, "p1", late_joiners=True) == 2
        assert store.unsubscribe(ann.id)
        claimed = ledger.claim(store, "p1", 10, lambda i: f"<{i}@x>", ledger.Lease("me", 60))
        assert [c.subscriber_id for c in claimed.claims] == [bob.id]  # the unsubscribe committed first stops her message
        assert store.forget("bob@example.org", secret).value == "erased"
        with pytest.raises(review_press.DeliveryError, match="erased at the reader's request"):
            store.add("BOB@example.org", secret=secret)
    # the erased reader's id is never given again; an import suppresses, never revives, and refuses the erased
    export = tmp_path / "list.csv"
    export.write_text(
        "email,name,status\ncarl@example.org,Carl,active\nann@example.org,Ann,active\n"
        "bob@example.org,Bob,active\ndee@example.org,Dee,unsubscribed\ncarl@example.org,Carl,bounced\n"
    )
    with PostgresStore.open(pg_url) as store:
        report = import_csv(store, export, secret=secret)
        assert (report.bounced, report.already, report.forgotten, report.unsubscribed) == (1, 2, 1, 1), report
        statuses = {s.address: s.status for s in store.iter_subscribers()}
        assert statuses == {"ann@example.org": "unsubscribed", "carl@example.org": "bounced", "dee@example.org": "unsubscribed"}
        assert min(s.id for s in store.iter_subscribers() if s.address != "ann@example.org") > bob.id


# --- store migrate ---------------------------------------------------------------------------


def _tables(conn: object, query: Callable[[str], list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    from review_press.store.copy import TABLES

    return {t: [tuple(r) for r in query(f"SELECT {', '.join(cols)} FROM {t} ORDER BY {order}")] for t, cols, order in TABLES}


def test_store_migrate_copies_everything_and_refuses_a_used_database(make_site: Callable[..., Path], pg_url: str) -> None:
    root = make_site(ONE_POST, NEWSLETTER)
    secret_env = {"REVIEW_PRESS_SECRET": "s" * 40}
    for address in ("ann@example.org", "bob@example.org", "zoë@example.org", "dan@example.org", "eve@example.org"):
        assert cli("subscribers", "add", address, "--site", str(root), env=secret_env).returncode == 0
    assert cli("subscribers", "unsubscribe", "bob@example.org", "--site", str(root), env=secret_env).returncode == 0
    assert cli("subscribers", "forget", "eve@example.org", "--site", str(root), env=secret_env).returncode == 0
    sent = cli("publish", "--site", str(root), env=secret_env)  # into the Maildir outbox
    assert sent.returncode == 0, sent.stderr
    with SQLiteStore.open(db_path(load_config(root))) as source:
        source.conn.execute("UPDATE deliveries SET status = 'sending', lease_owner = 'gone', lease_until = 'x' WHERE subscriber_id = 1")
        # bounces and complaints after sending, a replay guard, a paused campaign: all of it moves
        reports = [Feedback("mail:1", "soft", 3, "maildir", "first", "4.2.2", "full"), Feedback("ses:2", "complaint", 4, "ses", "first")]
        assert feedback.record(source, reports) == ["soft", "complained"]
        assert feedback.record(source, [], nonce="mailgun:tok", keep_seconds=600) == []
        assert feedback.pause(source, "first", "complaints at 50%")
        high = source.id_high_water()
        before = _tables(source, lambda q: source.conn.execute(q).fetchall())
    moved = cli("store", "migrate", "--to", pg_url, "--site", str(root), env={"PGPASSWORD": pg.PASSWORD})
    assert moved.returncode == 0, moved.stderr
    assert "subscribers: 4" in moved.stdout and "deliveries: 3" in moved.stdout and pg.PASSWORD not in moved.stdout
    assert "feedback: 2" in moved.stdout and "webhook_seen: 1" in moved.stdout
    with PostgresStore.open(pg_url) as target:
        after = _tables(target, lambda q: target.conn.execute(q).fetchall())
        assert target.id_high_water() == high == 5
    in_doubt = [r for r in before["deliveries"] if r[2] == "sending"]
    assert len(in_doubt) == 1
    expected = {
        **before,
        "deliveries": [(*r[:2], "pending", *r[3:10], None, None) if r[2] == "sending" else r for r in before["deliveries"]],
    }
    assert after == expected  # every row of every table, the in-flight one put back to pending
    again = cli("store", "migrate", "--to", pg_url, "--site", str(root), env={"PGPASSWORD": pg.PASSWORD})
    assert again.returncode == 1 and "is not empty" in again.stderr and "Traceback" not in again.stderr
    # the site on PostgreSQL: the forgotten reader stays refused, the sent post is not sent again
    env = {**secret_env, **pg_env(pg_url)}
    assert cli("subscribers", "add", "eve@example.org", "--site", str(root), env=env).returncode == 1
    paused = cli("publish", "--site", str(root), env=env)
    assert paused.returncode == 1 and "paused first: complaints at 50%" in paused.stderr  # the pause moved too
    rerun = cli("publish", "--resume", "--site", str(root), env=env)
    assert rerun.returncode == 0 and "1 sent" in rerun.stdout, rerun.stdout + rerun.stderr  # only the in-doubt row, once more


# --- publish and workers ---------------------------------------------------------------------


def test_a_worker_on_sqlite_says_why_it_cannot_join(make_site: Callable[..., Path]) -> None:
    root = make_site(ONE_POST, NEWSLETTER)
    joined = cli("worker", "--site", str(root))
    assert joined.returncode == 1 and "worker needs PostgreSQL" in joined.stderr and "Traceback" not in joined.stderr


def test_publish_on_postgresql_sends_everyone_once(make_site: Callable[..., Path], pg_url: str, tmp_path: Path) -> None:
    with recording_server(tmp_path) as (port, record):
        root = make_site(ONE_POST, NEWSLETTER + smtp_table(port))
        env = pg_env(pg_url)
        add_readers(root, 60, env)
        first = cli("publish", "--site", str(root), env=env)
        assert first.returncode == 0 and "60 sent" in first.stdout, first.stdout + first.stderr
        again = cli("publish", "--site", str(root), env=env)
        assert again.returncode == 0 and "nothing to send" in again.stdout
        got = received(record)
    with PostgresStore.open(pg_url) as store:
        ids = [s.id for s in store.iter_subscribers()]
    secret = site_secret(load_config(root))
    assert got == {campaign_message_id("first", i, "example.org", secret): 1 for i in ids}


def _in_doubt_of(url: str, pid: int) -> set[str]:
    """Message-IDs of rows a killed sender (by its pid) held in `sending`: the only ones that may go twice."""
    with PostgresStore.open(url) as store:
        rows = store.conn.execute("SELECT message_id, lease_owner FROM deliveries WHERE status = 'sending'").fetchall()
    return {m for m, owner in rows if owner and owner.split(":")[1] == str(pid)}


@pytest.mark.slow
def test_four_workers_and_a_joining_worker_share_a_campaign_two_killed_with_sigkill(
    make_site: Callable[..., Path], pg_url: str, tmp_path: Path
) -> None:
    readers, batch, concurrency = 20_000, 100, 2
    with fast_recording_server(tmp_path) as (port, record):
        root = make_site(ONE_POST, NEWSLETTER + smtp_table(port) + "\n[store]\nlease_seconds = 3\n")
        env = pg_env(pg_url)
        add_readers(root, readers, env)
        full = {**os.environ, **ENV, **env}
        rng = random.Random(int(os.environ.get("KILL_SEED", time.time())))
        publisher = subprocess.Popen(
            [sys.executable, "-m", "review_press", "publish", "--workers", "4", "--site", str(root)],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while sum(received(record).values()) < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        joiner = subprocess.Popen(
            [sys.executable, "-m", "review_press", "worker", "--site", str(root)],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        senders = sending_processes(publisher.pid)
        assert len(senders) == 4
        doubtful: set[str] = set()
        for victim in rng.sample(senders, 2):
            time.sleep(rng.uniform(0.2, 2.0))
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            doubtful |= _in_doubt_of(pg_url, victim.pid)
        out, err = publisher.communicate(timeout=600)
        _, joined_err = joiner.communicate(timeout=600)
        assert "Traceback" not in err + joined_err
        assert joiner.returncode == 0, joined_err
        assert "ended with exit code -9" in out + err  # publish says two of its senders died
        rerun = cli("publish", "--site", str(root), env=env)
        assert rerun.returncode == 0 and "nothing to send" in rerun.stdout, rerun.stdout + rerun.stderr
        got = received(record)
    with PostgresStore.open(pg_url) as store:
        ids = [s.id for s in store.iter_subscribers()]
        left = dict(store.conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
    assert left == {"sent": readers}
    secret = site_secret(load_config(root))
    assert set(got) == {campaign_message_id("first", i, "example.org", secret) for i in ids}  # every reader
    duplicated = {m for m, n in got.items() if n > 1}
    assert duplicated <= doubtful  # only what a killed sender had in flight
    assert len(duplicated) <= 2 * in_flight_limit(batch, concurrency)
    assert max(got.values()) <= 2
    print(f"workers: {readers} readers, duplicates={len(duplicated)}, in doubt at the kills={len(doubtful)}")


@pytest.mark.slow
def test_a_sender_paused_past_its_lease_does_not_record_over_the_one_that_took_its_rows(
    make_site: Callable[..., Path], pg_url: str, tmp_path: Path
) -> None:
    readers = 1500
    with recording_server(tmp_path) as (port, record):
        root = make_site(ONE_POST, NEWSLETTER + smtp_table(port, rate_per_second=150) + "\n[store]\nlease_seconds = 2\n")
        env = pg_env(pg_url)
        add_readers(root, readers, env)
        full = {**os.environ, **ENV, **env}
        paused = subprocess.Popen(
            [sys.executable, "-m", "review_press", "publish", "--site", str(root)],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while sum(received(record).values()) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        paused.send_signal(signal.SIGSTOP)
        with PostgresStore.open(pg_url) as store:
            held = store.conn.execute("SELECT subscriber_id, lease_owner FROM deliveries WHERE status = 'sending'").fetchall()
        assert held  # it was paused with messages in flight
        taker = cli("worker", "--site", str(root), env=env, timeout=300)  # takes the rest, and the paused one's rows after 2 s
        assert taker.returncode == 0, taker.stderr
        paused.send_signal(signal.SIGCONT)
        _, err = paused.communicate(timeout=120)
        assert "Traceback" not in err
        got = received(record)
    # paused between transactions it finds its rows taken and says so; paused inside one, the server ended
    # that transaction (its row locks held up the taker) and it stops with the reason: either way nothing
    # it does after waking overwrites the taker
    assert "results not recorded: another sender had taken those messages over" in err or "the connection is lost" in err, err
    with PostgresStore.open(pg_url) as store:
        rows = dict(store.conn.execute("SELECT subscriber_id, lease_owner FROM deliveries").fetchall())
        statuses = dict(store.conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
    assert statuses == {"sent": readers}
    paused_owner = held[0][1]
    assert all(rows[sid] != paused_owner for sid, _ in held)  # each taken row recorded once, by the sender that took it
    assert len(got) == readers and max(got.values()) <= 2
    assert sum(n - 1 for n in got.values()) <= len(held)  # duplicates: at most what it had in flight


# --- rate limits every sender shares ---------------------------------------------------------

QUOTA_RACE = """
import os, sys, datetime as dt
from review_press.store import ledger
from review_press.store.postgres import PostgresStore
now = dt.datetime(2026, 11, 30, 9, 0, 0, 500000, tzinfo=dt.UTC)  # one fixed second: every grant is from the same window
with PostgresStore.open(sys.argv[1]) as store:
    got = sum(ledger.take_quota(store, 3, ledger.Limits(per_second=100, per_hour=1000), now=now) for _ in range(60))
print(got)
"""


def test_the_shared_rate_limit_is_never_over_granted_by_senders_racing_for_it(pg_url: str) -> None:
    with PostgresStore.open(pg_url):
        pass  # the schema
    env = {**os.environ, **ENV, "PGPASSWORD": pg.PASSWORD}
    racers = [subprocess.Popen([sys.executable, "-c", QUOTA_RACE, pg_url], env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    granted = [int(p.communicate(timeout=120)[0]) for p in racers]
    assert sum(granted) == 100  # 4 processes x 60 asks x 3 each, one second's allowance of 100: exactly that, never more
    later = dt.datetime(2026, 11, 30, 9, 0, 1, tzinfo=dt.UTC)
    with PostgresStore.open(pg_url) as store:
        limits = ledger.Limits(per_second=100, per_hour=300)  # the race used 100 of this hour
        assert ledger.take_quota(store, 250, limits, now=later) == 100  # the next second has its own allowance
        assert ledger.take_quota(store, 1000, limits, now=later + dt.timedelta(seconds=5)) == 100
        assert ledger.take_quota(store, 1000, limits, now=later + dt.timedelta(seconds=9)) == 0  # the hour's 300 are used
        assert ledger.take_quota(store, 10, limits, now=later + dt.timedelta(hours=1)) == 10
        names = [r[0] for r in store.conn.execute("SELECT name FROM send_windows ORDER BY name").fetchall()]
    assert len(names) == 3  # finished windows are removed: this second's, this hour's and the hour before


def test_slow_rates_get_windows_longer_than_a_second(pg_url: str) -> None:
    limits = ledger.Limits(per_second=0.25)
    start = dt.datetime(2026, 11, 30, 9, 0, 0, tzinfo=dt.UTC)
    with PostgresStore.open(pg_url) as store:
        grants = [ledger.take_quota(store, 5, limits, now=start + dt.timedelta(seconds=s)) for s in range(8)]
    assert grants == [1, 0, 0, 0, 1, 0, 0, 0]  # one message per four seconds


def test_workers_with_a_shared_rate_limit_still_send_everyone_once(make_site: Callable[..., Path], pg_url: str, tmp_path: Path) -> None:
    with recording_server(tmp_path) as (port, record):
        root = make_site(ONE_POST, NEWSLETTER + smtp_table(port, rate_per_second=150))
        env = pg_env(pg_url)
        add_readers(root, 300, env)
        done = cli("publish", "--workers", "2", "--site", str(root), env=env)
        assert done.returncode == 0 and "300 sent" in done.stdout, done.stdout + done.stderr
        got = received(record)
    assert len(got) == 300 and max(got.values()) == 1


# --- what the review found -------------------------------------------------------------------


def test_a_password_libpq_cannot_read_is_never_quoted_back(make_site: Callable[..., Path], pg_server: pg.Server) -> None:
    """libpq's message for an unreadable URL quotes the part it choked on, here the password."""
    root = make_site(ONE_POST, NEWSLETTER)
    secret = "S3cret%PassW0rd"
    url = f"postgresql://press:{secret}@127.0.0.1:{pg_server.port}/postgres"
    for args in (("subscribers", "count"), ("store", "migrate", "--to", url)):
        done = cli(*args, "--site", str(root), env={"REVIEW_PRESS_DATABASE_URL": url} if args[0] != "store" else {})
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert "S3cret" not in done.stdout + done.stderr and "PassW0rd" not in done.stdout + done.stderr
        assert "cannot be read" in done.stderr


def test_a_password_hidden_in_an_escaped_query_key_is_refused_in_press_toml(make_site: Callable[..., Path]) -> None:
    root = make_site(ONE_POST, NEWSLETTER + '[store]\nurl = "postgresql://press@db.example.org/press?passwor%64=hunter2"\n')
    done = cli("subscribers", "count", "--site", str(root))
    assert done.returncode == 1 and "must not hold a password" in done.stderr and "hunter2" not in done.stderr


def test_store_migrate_prints_the_url_to_use_with_its_settings_but_no_password() -> None:
    from review_press.store.postgres import without_password

    assert (
        without_password("postgresql://press:pw@db:5432/press?sslmode=verify-full")
        == "postgresql://press@db:5432/press?sslmode=verify-full"
    )
    assert without_password("postgresql:///press?host=/var/run/postgresql") == "postgresql:///press?host=/var/run/postgresql"
    assert without_password("postgresql://u@h/d?password=x&sslmode=require") == "postgresql://u@h/d?sslmode=require"


def test_a_lagging_sender_at_a_second_boundary_finds_its_window_not_a_fresh_one(pg_url: str) -> None:
    limits = ledger.Limits(per_second=100)
    second = dt.datetime(2026, 11, 30, 9, 0, 0, 900000, tzinfo=dt.UTC)
    with PostgresStore.open(pg_url) as store:
        assert ledger.take_quota(store, 100, limits, now=second) == 100
        assert ledger.take_quota(store, 10, limits, now=second + dt.timedelta(seconds=0.2)) == 10  # the next second begins
        assert ledger.take_quota(store, 50, limits, now=second) == 0  # a sender still in the old one: it is used up
    assert ledger.Limits(per_second=1.5).windows(second)[0][1] == 3  # 1.5 a second: 3 every 2 s, not 2 a second


def test_a_host_whose_clock_is_off_the_servers_refuses_to_send() -> None:
    from review_press.config import StoreConfig
    from review_press.errors import DeliveryError
    from review_press.senders import check_clock

    class Skewed:  # the one thing this machine cannot have: a second host with a wrong clock
        def clock_skew(self) -> float:
            return 30.0

    config = load_config(Path(__file__).parents[1])
    config = dataclasses.replace(config, store=StoreConfig(lease_seconds=120))
    with pytest.raises(DeliveryError, match="clock is 30.0 s ahead of the database server"):
        check_clock(Skewed(), config)  # type: ignore[arg-type]


def test_the_real_clock_skew_against_the_server_is_small(pg_url: str) -> None:
    with PostgresStore.open(pg_url) as store:
        assert abs(store.clock_skew()) < 1.0  # same machine, same clock


def test_store_migrate_waits_for_no_publish(make_site: Callable[..., Path], pg_url: str) -> None:
    from review_press.statedir import publish_lock

    root = make_site(ONE_POST, NEWSLETTER)
    assert cli("subscribers", "add", "ann@example.org", "--site", str(root)).returncode == 0
    with publish_lock(load_config(root).state_dir):
        done = cli("store", "migrate", "--to", pg_url, "--site", str(root), env={"PGPASSWORD": pg.PASSWORD})
    assert done.returncode == 1 and "another publish" in done.stderr
    with PostgresStore.open(pg_url) as target:
        assert target.count()["active"] == 0  # nothing copied


def test_a_reply_with_a_nul_is_recorded_on_postgresql(pg_url: str) -> None:
    with PostgresStore.open(pg_url) as store:
        ann = store.add("ann@example.org")
        ledger.fill(store, "p", late_joiners=True)
        lease = ledger.Lease("me", 60)
        (claim,) = ledger.claim(store, "p", 10, lambda i: f"<{i}@x>", lease).claims
        assert ledger.record(store, "p", [ledger.Result(ann.id, "sent", 1, "250 ok\x00queued", token=claim.token)]) == []
        assert store.conn.execute("SELECT status, smtp_reply FROM deliveries").fetchone() == ("sent", "250 okqueued")


def test_a_worker_refusing_a_broken_post_exits_instead_of_spinning(make_site: Callable[..., Path], pg_url: str) -> None:
    from review_press import identity
    from review_press.content import load_posts

    root = make_site(ONE_POST, NEWSLETTER)
    env = pg_env(pg_url)
    add_readers(root, 5, env)
    config = load_config(root)
    post = next(p for p in load_posts(config) if p.slug == "first")
    with PostgresStore.open(pg_url) as store:  # a campaign a publish started, as another host saw the post
        key = ledger.start_campaign(store, identity.facts(post, config.posts_dir), post.content_hash)
        ledger.fill(store, key, late_joiners=True)
    (root / "posts" / "2026-02-01-first.md").write_text(
        "---\ntitle: First\ndate: 2026-02-01\n---\n\nThe first letter, edited here:\n\n"
        '<blockquote class="instagram-media"><a href="https://www.instagram.com/p/abc/">'
        '<img src="https://scontent.example.com/p.jpg"></a></blockquote>\n'  # an embed the email cannot show: refused
    )
    done = cli("worker", "--site", str(root), env=env, timeout=120)  # a spin would never end: the timeout fails the test
    assert done.returncode == 1 and "not sent" in done.stderr and "Traceback" not in done.stderr


def test_the_web_app_reconnects_after_the_server_cut_its_connection(
    tmp_path: Path, pg_url: str, pg_server: pg.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from live_web import SECRET, running
    from review_press.tokens import make_token

    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)
    monkeypatch.setenv("REVIEW_PRESS_DATABASE_URL", pg_url)
    with running(tmp_path) as live:
        with live.store() as store:
            ann = store.add("ann@example.org")
        assert live.http.get("healthz").status_code == 200  # the app's connection is open
        database = pg_url.rsplit("/", 1)[1]
        pg_server.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")  # a restart, a failover
        answer = live.http.post(f"unsubscribe/{make_token(SECRET.encode(), ann.id)}", content=b"List-Unsubscribe=One-Click")
        assert answer.status_code == 200
        assert live.status("ann@example.org") == "unsubscribed"


def test_two_web_instances_share_one_database(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a load balancer: a reader subscribes through one instance, confirms through the
    other, and unsubscribes through the first; each sees what the other wrote."""
    from live_web import SECRET, running
    from review_press.tokens import make_token

    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)
    monkeypatch.setenv("REVIEW_PRESS_DATABASE_URL", pg_url)
    with running(tmp_path, name="one") as one, running(tmp_path, name="two") as two:
        link = one.subscribe_and_confirm_link("ann@example.org")
        assert two.http.get(link.replace(one.url.rstrip("/"), two.url.rstrip("/"))).status_code == 200
        assert one.status("ann@example.org") == "active"
        with two.store() as store:
            ann = store.find("ann@example.org")
        assert ann is not None
        assert one.http.post(f"unsubscribe/{make_token(SECRET.encode(), ann.id)}", content=b"List-Unsubscribe=One-Click").status_code == 200
        assert two.status("ann@example.org") == "unsubscribed"


def test_worker_follow_waits_for_campaigns_and_stops_cleanly_on_sigterm(
    make_site: Callable[..., Path], pg_url: str, tmp_path: Path
) -> None:
    with recording_server(tmp_path) as (port, record):
        root = make_site(ONE_POST, NEWSLETTER + smtp_table(port, rate_per_second=100))
        env = pg_env(pg_url)
        add_readers(root, 400, env)
        full = {**os.environ, **ENV, **env}
        follower = subprocess.Popen(
            [sys.executable, "-m", "review_press", "worker", "--follow", "--site", str(root)],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        published = cli("publish", "--site", str(root), env=env)  # starts the campaign; the follower may join it
        assert published.returncode == 0, published.stderr
        assert follower.poll() is None  # nothing left to send, and it is still waiting for the next campaign
        follower.send_signal(signal.SIGTERM)
        _, err = follower.communicate(timeout=60)
        got = received(record)
    assert follower.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert len(got) == 400 and max(got.values()) == 1  # the two senders together: everyone once


def test_the_urls_own_options_are_kept(pg_url: str, pg_server: pg.Server) -> None:
    """A site that keeps its tables in a schema of its own (`options=-c search_path=...` in the URL)."""
    import psycopg

    with psycopg.connect(pg_url, password=pg.PASSWORD, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA mail")
    with PostgresStore.open(pg_url + "?options=-c%20search_path%3Dmail") as store:
        store.add("ann@example.org")
        assert store.conn.execute("SELECT to_regclass('mail.subscribers') IS NOT NULL").fetchone()[0]
        assert store.conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "1min"
    from review_press.store.postgres import without_password

    assert without_password(pg_url + "?options=-c%20search_path%3Dmail") == pg_url + "?options=-c%20search_path%3Dmail"


def test_an_hourly_limit_alone_keeps_only_recent_windows(pg_url: str) -> None:
    limits = ledger.Limits(per_hour=1000)
    start = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    with PostgresStore.open(pg_url) as store:
        for hour in range(6):
            assert ledger.take_quota(store, 10, limits, now=start + dt.timedelta(hours=hour)) == 10
        names = [r[0] for r in store.conn.execute("SELECT name FROM send_windows ORDER BY name").fetchall()]
    assert names == ["h:2026-11-30T12", "h:2026-11-30T13", "h:2026-11-30T14"]
