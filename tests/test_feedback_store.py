"""The store's rules for bounces and complaints after sending, on both databases: each report
once, what it does to the reader and their unsent messages, the soft-bounce window, webhook
replays, the guard rails' pause and resume, and the schema upgrade that brought the tables."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from review_press.store import SQLiteStore, Store, feedback, ledger
from review_press.store.model import Feedback

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
RULE = feedback.SoftRule(limit=3, days=7)


def _reader(store: Store, address: str, status: str = "active") -> int:
    return store.add(address, status=status, now=T0 - dt.timedelta(days=30)).id


def _status(store: Store, sid: int) -> tuple[str, str, str | None]:
    sub = store.get(sid)
    assert sub is not None
    return sub.status, sub.status_reason, sub.status_at


def test_a_hard_bounce_stops_the_reader_once_and_skips_their_unsent_messages(any_store: Store) -> None:
    store = any_store
    ann, bob = _reader(store, "ann@example.org"), _reader(store, "bob@example.org")
    ledger.fill(store, "first", late_joiners=True, now=T0)
    ledger.fill(store, "second", late_joiners=True, now=T0)
    hard = Feedback("mail:dsn-1:ann", "hard", ann, "maildir", "first", "5.1.1", "550 5.1.1 user unknown")
    assert feedback.record(store, [hard], RULE, now=T0) == ["bounced"]
    status, reason, at = _status(store, ann)
    assert (status, at) == ("bounced", "2026-11-30T09:00:00.000000Z")
    assert "5.1.1" in reason and "maildir" in reason
    rows = dict(store.conn.execute("SELECT slug || ':' || subscriber_id, status FROM deliveries").fetchall())
    assert rows == {f"first:{ann}": "skipped", f"second:{ann}": "skipped", f"first:{bob}": "pending", f"second:{bob}": "pending"}
    # the same report again (a mailbox re-read after a crash): nothing changes, not even the time
    assert feedback.record(store, [hard], RULE, now=T0 + dt.timedelta(hours=1)) == ["duplicate"]
    assert _status(store, ann)[2] == at
    assert store.conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == 1
    assert feedback.per_campaign(store)["first"].hard == 1


def test_a_complaint_is_the_strongest_way_of_leaving(any_store: Store) -> None:
    store = any_store
    left, bounced, active = (
        _reader(store, "left@example.org", "unsubscribed"),
        _reader(store, "gone@example.org", "bounced"),
        _reader(store, "on@example.org"),
    )
    events = [Feedback(f"ses:e{i}:{sid}", "complaint", sid, "ses", None, "abuse") for i, sid in enumerate((left, bounced, active))]
    assert feedback.record(store, events, RULE, now=T0) == ["complained"] * 3
    assert {_status(store, sid)[0] for sid in (left, bounced, active)} == {"complained"}
    assert _status(store, active)[1] == "complaint (ses): abuse"
    again = Feedback("ses:e9", "complaint", active, "ses")
    assert feedback.record(store, [again], RULE, now=T0) == ["unchanged"]  # a second report: counted, status kept
    # a hard bounce never turns a complaint back into a mere bounce
    assert feedback.record(store, [Feedback("x:1", "hard", active, "maildir", code="5.1.1")], RULE, now=T0) == ["unchanged"]
    assert _status(store, active)[0] == "complained"


def test_soft_bounces_bounce_a_reader_only_within_the_window(any_store: Store) -> None:
    store = any_store
    ann = _reader(store, "ann@example.org")

    def soft(n: int, when: dt.datetime) -> str:
        (outcome,) = feedback.record(
            store, [Feedback(f"mail:s{n}:{ann}", "soft", ann, "imap", code="4.2.2", detail="mailbox full")], RULE, now=when
        )
        return outcome

    assert soft(1, T0) == "soft"
    assert soft(2, T0 + dt.timedelta(days=8)) == "soft"  # the first is out of the 7-day window now
    assert soft(3, T0 + dt.timedelta(days=9)) == "soft"
    assert _status(store, ann)[0] == "active"
    assert soft(4, T0 + dt.timedelta(days=10)) == "bounced"  # three within seven days
    status, reason, _ = _status(store, ann)
    assert status == "bounced" and reason.startswith("3 soft bounces in 7 days; last: soft bounce (imap): 4.2.2 mailbox full")
    assert soft(5, T0 + dt.timedelta(days=11)) == "unchanged"


def test_a_report_for_a_reader_erased_meanwhile_is_unknown_and_erasure_takes_their_reports(any_store: Store) -> None:
    store = any_store
    ann, bob = _reader(store, "ann@example.org"), _reader(store, "bob@example.org")
    feedback.record(store, [Feedback("k:1", "soft", bob, "maildir")], RULE, now=T0)
    store.forget("bob@example.org", b"s" * 32)
    assert store.conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == 0  # nothing of them is kept
    outcomes = feedback.record(store, [Feedback("k:2", "hard", bob, "maildir"), Feedback("k:3", "hard", ann, "maildir")], RULE, now=T0)
    assert outcomes == ["unknown", "bounced"]


def test_a_webhook_nonce_is_taken_once_and_forgotten_only_after_it_could_no_longer_be_replayed(any_store: Store) -> None:
    store = any_store

    def first_seen(nonce: str, when: dt.datetime) -> bool:  # a post with no report in it: only its nonce is taken
        return feedback.record(store, [], RULE, now=when, nonce=nonce, keep_seconds=600) is not None

    assert first_seen("mailgun:tok-1", T0) is True
    assert first_seen("mailgun:tok-1", T0 + dt.timedelta(seconds=599)) is False
    assert first_seen("mailgun:tok-2", T0) is True
    assert first_seen("mailgun:tok-1", T0 + dt.timedelta(seconds=1300)) is True  # long expired
    assert store.conn.execute("SELECT count(*) FROM webhook_seen").fetchone()[0] == 1


def test_the_guard_pauses_past_a_rate_and_resume_weighs_only_what_comes_after(any_store: Store) -> None:
    store = any_store
    ids = [_reader(store, f"r{i}@example.org") for i in range(20)]
    ledger.fill(store, "first", late_joiners=True, now=T0)
    guard = feedback.Guard(complaint_rate=0.1, bounce_rate=0.5, min_sent=10)
    store.conn.execute("UPDATE deliveries SET status = 'sent' WHERE subscriber_id IN (" + ",".join(str(i) for i in ids[:10]) + ")")
    assert feedback.check(store, "first", guard) is None  # no report at all
    feedback.record(store, [Feedback(f"c:{sid}", "complaint", sid, "ses", "first", "abuse") for sid in ids[:1]], RULE, now=T0)
    assert feedback.check(store, "first", guard) is None  # 1 of 10: 10%, not over
    feedback.record(store, [Feedback("c:x", "complaint", ids[1], "ses", "first", "abuse")], RULE, now=T0)
    why = feedback.check(store, "first", guard, now=T0)
    assert why == "complaints at 20.00% (2 of 10 sent), over the 10.00% limit"
    assert feedback.pause_reason(store, "first") == why and feedback.paused(store) == {"first": ("2026-11-30T09:00:00.000000Z", why)}
    assert "first" not in ledger.in_progress(store)  # no joining sender takes it up
    assert feedback.pause(store, "first", "again") is False
    assert feedback.resume(store, ["other"]) == [] and feedback.resume(store) == ["first"]
    assert feedback.check(store, "first", guard) is None  # what came before was weighed by the writer
    assert "first" in ledger.in_progress(store)
    store.conn.execute("UPDATE deliveries SET status = 'sent' WHERE subscriber_id IN (" + ",".join(str(i) for i in ids[10:]) + ")")
    assert feedback.check(store, "first", guard) is None  # 0 new complaints in 10 new messages
    feedback.record(store, [Feedback(f"h:{sid}", "hard", sid, "maildir", "first", "5.1.1") for sid in ids[10:16]], RULE, now=T0)
    assert feedback.check(store, "first", guard) == "hard bounces at 60.00% (6 of 10), over the 50.00% limit"


def test_an_sqlite_store_of_schema_4_upgrades_keeping_every_reader_and_when_they_changed(tmp_path: Path) -> None:
    from review_press.store.sqlite import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for i, step in enumerate(MIGRATIONS[:4], start=1):
        conn.executescript(step)
        conn.execute(f"PRAGMA user_version = {i}")
    conn.execute(
        "INSERT INTO subscribers (address, envelope, address_key, status, created_at, updated_at)"
        " VALUES ('a@example.org', 'a@example.org', 'a@example.org', 'bounced', '2025-01-01T00:00:00.000000Z', '2025-02-01T00:00:00.000000Z')"
    )
    conn.commit()
    conn.close()
    with SQLiteStore.open(path) as store:
        assert store.schema_version() == len(MIGRATIONS)
        sub = store.find("a@example.org")
        assert sub is not None and (sub.status, sub.status_at, sub.status_reason) == ("bounced", "2025-02-01T00:00:00.000000Z", "")
        assert feedback.record(store, [Feedback("k", "complaint", sub.id, "maildir")], RULE) == ["complained"]


@pytest.mark.usefixtures("pg_server")
def test_a_postgresql_store_of_schema_4_is_refused_until_store_upgrade_then_works(pg_url: str) -> None:
    from review_press.errors import StorageError
    from review_press.store.postgres import NEWEST, SCHEMA, PostgresStore

    with PostgresStore.open(pg_url, create=False, check=False) as raw:
        raw.pg.execute(SCHEMA)  # what review-press 4 made
        raw.conn.execute(
            "INSERT INTO subscribers (address, envelope, address_key, status, created_at, updated_at)"
            " VALUES ('a@example.org', 'a@example.org', 'a@example.org', 'active', '2025-01-01T00:00:00.000000Z', ?)",
            ("2025-02-01T00:00:00.000000Z",),
        )
    with pytest.raises(StorageError, match="older than this review-press"):
        PostgresStore.open(pg_url)
    with PostgresStore.open(pg_url, check=False) as store:
        assert store.upgrade() == (4, NEWEST)
    with PostgresStore.open(pg_url) as store:
        sub = store.find("a@example.org")
        assert sub is not None and sub.status_at == "2025-02-01T00:00:00.000000Z"
        assert feedback.record(store, [Feedback("k", "hard", sub.id, "maildir", code="5.1.1")], RULE) == ["bounced"]


def test_store_migrate_knows_every_table_and_column_of_the_schema(tmp_path: Path) -> None:
    from review_press.store.copy import LEFT_BEHIND, TABLES

    with SQLiteStore.open(tmp_path / "press.db") as store:
        tables = [r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        tables = [t for t in tables if t not in LEFT_BEHIND]
        schema = {t: {r[1] for r in store.conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    assert {t: set(cols) for t, cols, _ in TABLES} == schema  # a table or column left out would not move to PostgreSQL


def test_a_webhook_post_is_taken_with_its_reports_or_not_at_all(any_store: Store) -> None:
    from review_press.errors import PressError

    store = any_store
    ann = _reader(store, "ann@example.org")
    broken = Feedback("pm:1", "bogus", ann, "postmark")  # the database refuses it: the transaction rolls back
    with pytest.raises(PressError):
        feedback.record(store, [broken], RULE, now=T0, nonce="postmark:1", keep_seconds=600)
    good = Feedback("pm:1", "hard", ann, "postmark", code="5.1.1")
    assert feedback.record(store, [good], RULE, now=T0, nonce="postmark:1", keep_seconds=600) == ["bounced"]  # the retry is taken
    assert feedback.record(store, [good], RULE, now=T0, nonce="postmark:1", keep_seconds=600) is None  # a replay is not
    assert store.conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == 1
