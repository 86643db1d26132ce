"""A destination domain that answers 421/450/451 is left alone for a while by every sender (the
pause is in the store), while the other domains' messages go on; the run waits for the pause to
end, and everyone still gets the post exactly once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from publishing import NEWSLETTER, options, smtp_table
from review_press.config import load_config
from review_press.publish import publish
from review_press.store import SQLiteStore, Store, ledger, open_store
from review_press.store.postgres import PostgresStore
from smtp_servers import Script, smtp_server

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
ONE_POST = {"2026-02-01-first.md": "---\ntitle: First\ndate: 2026-02-01\n---\n\nThe first letter.\n"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        with SQLiteStore.open(tmp_path / "press.db") as s:
            yield s
    else:
        url = request.getfixturevalue("pg_url")
        with PostgresStore.open(url) as s:
            yield s


def test_a_paused_domain_is_skipped_by_claims_until_its_pause_ends(store: Store) -> None:
    for i in range(3):
        store.add(f"s{i}@Slow.Example")
        store.add(f"f{i}@fast.example")
    ledger.fill(store, "p", late_joiners=True, now=T0)
    until = ledger.back_off(store, "slow.example", "421 4.7.0 slow down", 30, now=T0)
    assert until == "2026-11-30T09:00:30.000000Z"
    lease = ledger.Lease("me", 60)
    first = ledger.claim(store, "p", 10, lambda i: f"<{i}@x>", lease, now=T0 + dt.timedelta(seconds=1))
    assert sorted(c.address.split("@")[1] for c in first.claims) == ["fast.example"] * 3
    assert ledger.backoff_ends(store, "p", now=T0 + dt.timedelta(seconds=1)) == until
    assert ledger.claim(store, "p", 10, lambda i: f"<{i}@x>", lease, now=T0 + dt.timedelta(seconds=29)).claims == []
    later = ledger.claim(store, "p", 10, lambda i: f"<{i}@x>", lease, now=T0 + dt.timedelta(seconds=31))
    assert sorted(c.address for c in later.claims) == ["s0@slow.example", "s1@slow.example", "s2@slow.example"]
    assert ledger.backoff_ends(store, "p", now=T0 + dt.timedelta(seconds=31)) is None


def test_the_pause_doubles_when_the_domain_asks_again_and_starts_over_after_an_hour(store: Store) -> None:
    def pause(at: dt.datetime) -> float:
        until = ledger.back_off(store, "slow.example", "451 4.3.0 later", 10, now=at)
        return (dt.datetime.strptime(until, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC) - at).total_seconds()

    assert pause(T0) == 10
    assert pause(T0 + dt.timedelta(seconds=5)) == 5  # still paused: replies of messages in flight change nothing
    assert pause(T0 + dt.timedelta(seconds=11)) == 20
    assert pause(T0 + dt.timedelta(seconds=40)) == 40
    assert pause(T0 + dt.timedelta(hours=3)) == 10  # a quiet hour: back to the start


def test_publish_lets_a_slow_domain_wait_and_still_sends_everyone_once(make_site: Callable[..., Path], tmp_path: Path) -> None:
    script = Script(domain_reply={"slow.example": "421 4.7.0 too many messages, slow down"}, times=1)
    with smtp_server(script) as (server, port):
        root = make_site(ONE_POST, NEWSLETTER + smtp_table(port, domain_backoff_seconds=3))
        with open_store(load_config(root)) as store:
            slow = [store.add(f"s{i}@slow.example").id for i in range(20)]  # first in the ledger's order
            fast = [store.add(f"f{i}@fast.example").id for i in range(20)]
        report = publish(root, options(batch_size=5))
    assert report.posts[0].sent == 40 and report.posts[0].deferred == 0
    assert all(n == 1 for n in server.recipients().values()) and len(server.recipients()) == 40
    with open_store(load_config(root)) as store:
        (reason,) = store.conn.execute("SELECT reason FROM domain_backoff WHERE domain = 'slow.example'").fetchone()
        sent_at = dict(store.conn.execute("SELECT subscriber_id, sent_at FROM deliveries").fetchall())
    assert reason.startswith("421 4.7.0")
    # claims go in id order, so without the pause every slow.example message (ids 1-20) would be taken
    # before any fast.example one; with it, all but those in flight when the 421 came waited for the others
    waited = [sid for sid in slow if sent_at[sid] > max(sent_at[f] for f in fast)]
    assert len(waited) >= len(slow) - 10
