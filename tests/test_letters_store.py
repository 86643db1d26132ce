"""The store's side of the welcome, topics, digests and corrections, on both stores (a real SQLite
file and a real PostgreSQL): who a fill owes (the SQL rule against `ledger.reads`, its Python
twin, over random readers), the welcome queued once, a post carried by one digest only,
corrections to the readers sent only, and stores of schema 5 brought to 6 with their data."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from pathlib import Path

import pytest

from review_press.identity import PostFacts
from review_press.store import SQLiteStore, Store, ledger, mailings

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
OFFERED = ("TV review", "Film", "Books")


def _facts(slug: str) -> PostFacts:
    return PostFacts(slug=slug, source=f"{slug}.md", post_id=None, date="2026-01-02T00:00:00.000000Z", title=slug, content_hash="h")


def test_a_fill_owes_exactly_the_readers_reads_lets_through(any_store: Store) -> None:
    rng = random.Random(15)
    store = any_store
    readers = {}
    for i in range(120):
        chosen = tuple(t for t in (*OFFERED, "Opera") if rng.random() < 0.3)
        frequency = "weekly" if rng.random() < 0.25 else "each"
        readers[store.add(f"r{i}@example.org", topics=chosen, frequency=frequency, now=T0).id] = (chosen, frequency)
    for n, topics in enumerate([(), ("Film",), ("TV review", "Books"), OFFERED]):
        key = ledger.start_campaign(store, _facts(f"p{n}"), "h", now=T0 + dt.timedelta(days=1), topics=topics)
        ledger.fill(store, key, late_joiners=False, now=T0 + dt.timedelta(days=1), audience=ledger.Audience(topics, OFFERED))
        got = {r[0] for r in store.conn.execute("SELECT subscriber_id FROM deliveries WHERE slug = ?", (key,)).fetchall()}
        want = {sid for sid, (chosen, freq) in readers.items() if freq == "each" and ledger.reads(chosen, topics, OFFERED)}
        assert got == want, topics
        would = {r[0] for r in ledger.would_receive(store, None, late_joiners=False, audience=ledger.Audience(topics, OFFERED))}
        assert would == want  # a post not started yet: the same rule


def test_the_welcome_is_queued_once_and_again_only_if_it_never_went(any_store: Store) -> None:
    store = any_store
    ada = store.add("ada@example.org", welcome=True, now=T0)
    bob = store.add("bob@example.org", status="pending", now=T0)
    assert store.add("cid@example.org", status="pending", welcome=True, now=T0)  # not active: nothing queued
    assert store.confirm(bob.id, source="web form", ip=None, secret=b"k" * 32, welcome=True)
    rows = dict(store.conn.execute("SELECT subscriber_id, status FROM deliveries WHERE slug = ?", (mailings.WELCOME,)).fetchall())
    assert rows == {ada.id: "pending", bob.id: "pending"}
    store.conn.execute("UPDATE deliveries SET status = 'sent' WHERE subscriber_id = ?", (ada.id,))
    store.unsubscribe(bob.id)  # bob's unsent welcome is skipped with him
    for sid in (ada.id, bob.id):
        store.reopen(sid, "active" if sid == ada.id else "unsubscribed", name="", source="web form", ip=None)
        store.confirm(sid, source="web form", ip=None, secret=b"k" * 32, welcome=True)
    rows = dict(store.conn.execute("SELECT subscriber_id, status FROM deliveries WHERE slug = ?", (mailings.WELCOME,)).fetchall())
    assert rows == {ada.id: "sent", bob.id: "pending"}  # never twice; once more for whom it never went
    assert mailings.with_pending(store) == [mailings.WELCOME]
    assert [r.key for r in ledger.campaigns(store)] == []  # not a post's campaign


def test_a_post_is_carried_by_one_digest_only_and_a_digest_starts_once(any_store: Store) -> None:
    store = any_store
    store.add("week@example.org", frequency="weekly", now=T0)
    store.add("each@example.org", now=T0)
    keys = [ledger.start_campaign(store, _facts(f"p{n}"), "h", now=T0) for n in range(2)]
    span = (T0, T0 + dt.timedelta(days=7))
    carried = [(k, ()) for k in keys]
    first = mailings.digest_key(T0.date())
    assert mailings.start_digest(store, first, span, carried, OFFERED, late_joiners=False, now=span[1]) == 1
    assert mailings.start_digest(store, first, span, carried, OFFERED, late_joiners=False, now=span[1]) == 0  # on record: left as it is
    second = mailings.digest_key((T0 + dt.timedelta(days=7)).date())
    with pytest.raises(ValueError, match="in a digest already"):
        mailings.start_digest(store, second, (span[1], span[1] + dt.timedelta(days=7)), carried[:1], OFFERED, late_joiners=False)
    assert [m.key for m in mailings.mailings(store)] == [first]  # the refused one left nothing behind
    carried, floor = mailings.digested(store)
    assert carried == set(keys) and floor is not None and floor.startswith("2026-01-01")


def test_a_correction_goes_to_the_readers_sent_who_are_still_active(any_store: Store) -> None:
    store = any_store
    ids = [store.add(f"r{i}@example.org", now=T0).id for i in range(5)]
    key = ledger.start_campaign(store, _facts("p"), "h", now=T0)
    ledger.fill(store, key, late_joiners=False, now=T0)
    store.conn.execute(f"UPDATE deliveries SET status = 'sent' WHERE subscriber_id IN ({ids[0]}, {ids[1]}, {ids[2]})")
    store.conn.execute(f"UPDATE deliveries SET status = 'failed' WHERE subscriber_id = {ids[3]}")
    store.set_status(ids[2], "complained")
    fix = mailings.correction_key(key, "abcdef0123456789")
    assert mailings.start_correction(store, fix, key, "a typo", now=T0) == 2
    assert mailings.start_correction(store, fix, key, "another note", now=T0) == 0
    got = {r[0] for r in store.conn.execute("SELECT subscriber_id FROM deliveries WHERE slug = ?", (fix,)).fetchall()}
    assert got == {ids[0], ids[1]}
    (m,) = mailings.mailings(store)
    assert (m.kind, m.corrects, m.note) == ("correction", key, "a typo")


def test_an_sqlite_store_of_schema_5_upgrades_with_its_campaigns_as_posts(tmp_path: Path) -> None:
    from review_press.store.sqlite import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for i, step in enumerate(MIGRATIONS[:5], start=1):
        conn.executescript(step)
        conn.execute(f"PRAGMA user_version = {i}")
    stamp = "2025-01-01T00:00:00.000000Z"
    conn.execute(
        "INSERT INTO subscribers (address, envelope, address_key, status, created_at, updated_at) VALUES (?, ?, ?, 'active', ?, ?)",
        ("a@example.org", "a@example.org", "a@example.org", stamp, stamp),
    )
    conn.execute("INSERT INTO campaigns (slug, started_at, title) VALUES ('old', ?, 'Old')", (stamp,))
    conn.execute(
        "INSERT INTO deliveries (slug, subscriber_id, status, created_at, updated_at) VALUES ('old', 1, 'sent', ?, ?)", (stamp, stamp)
    )
    conn.commit()
    conn.close()
    with SQLiteStore.open(path) as store:
        assert store.schema_version() == len(MIGRATIONS) == 6
        sub = store.find("a@example.org")
        assert sub is not None and (sub.frequency, sub.topics, sub.prefs_at) == ("each", (), None)
        assert [r.key for r in ledger.campaigns(store)] == ["old"] and mailings.mailings(store) == []
        assert mailings.start_correction(store, mailings.correction_key("old", "0" * 16), "old", "fixed", now=T0) == 1


@pytest.mark.usefixtures("pg_server")
def test_a_postgresql_store_of_schema_5_upgrades_with_its_campaigns_as_posts(pg_url: str) -> None:
    from review_press.store.postgres import NEWEST, SCHEMA, UPGRADES, PostgresStore

    with PostgresStore.open(pg_url, create=False, check=False) as raw:
        raw.pg.execute(SCHEMA)
        raw.pg.execute(UPGRADES[4])
        raw.conn.execute("UPDATE schema_version SET version = 5")
        stamp = "2025-01-01T00:00:00.000000Z"
        raw.conn.execute(
            "INSERT INTO subscribers (address, envelope, address_key, status, created_at, updated_at) VALUES (?, ?, ?, 'active', ?, ?)",
            ("a@example.org", "a@example.org", "a@example.org", stamp, stamp),
        )
        raw.conn.execute("INSERT INTO campaigns (slug, started_at, title) VALUES ('old', ?, 'Old')", (stamp,))
    with PostgresStore.open(pg_url, check=False) as store:
        assert store.upgrade() == (5, NEWEST) and NEWEST == 6
    with PostgresStore.open(pg_url) as store:
        sub = store.find("a@example.org")
        assert sub is not None and (sub.frequency, sub.topics) == ("each", ())
        assert [r.key for r in ledger.campaigns(store)] == ["old"]
        assert store.set_preferences(sub.id, topics=["Film"], frequency="weekly")
        assert store.get(sub.id).topics == ("Film",)  # type: ignore[union-attr]
