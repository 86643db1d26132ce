"""A destination domain that answers 421/450/451 is left alone for a while by every sender (the
pause is in the store), while the other domains' messages go on; what still waits when the rest is sent is
deferred, and everyone still gets the post exactly once."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from publishing import NEWSLETTER, options, smtp_table
from review_press.config import load_config
from review_press.publish import publish
from review_press.store import Store, ledger, open_store
from smtp_servers import Script, smtp_server

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
ONE_POST = {"2026-02-01-first.md": "---\ntitle: First\ndate: 2026-02-01\n---\n\nThe first letter.\n"}


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


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
    assert ledger.claim(store, "p", 10, lambda i: f"<{i}@x>", lease, now=T0 + dt.timedelta(seconds=29)).claims == []
    later = ledger.claim(store, "p", 10, lambda i: f"<{i}@x>", lease, now=T0 + dt.timedelta(seconds=31))
    assert sorted(c.address for c in later.claims) == ["s0@slow.example", "s1@slow.example", "s2@slow.example"]


def test_rows_still_waiting_for_a_paused_domain_are_deferred_with_the_reason(store: Store) -> None:
    store.add("s0@slow.example")
    store.add("f0@fast.example")
    ledger.fill(store, "p", late_joiners=True, now=T0)
    ledger.back_off(store, "slow.example", "450 4.2.1 rate limited", 30, now=T0)
    assert ledger.defer_paused(store, "p", now=T0 + dt.timedelta(seconds=1)) == 1
    rows = dict(store.conn.execute("SELECT status, last_error FROM deliveries").fetchall())
    assert rows == {"deferred": "waiting for slow.example: 450 4.2.1 rate limited", "pending": None}
    assert ledger.requeue_deferred(store, "p") == 1  # the next run's start
    assert ledger.defer_paused(store, "p", now=T0 + dt.timedelta(seconds=31)) == 0  # the pause is over: claims take it


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
        root = make_site(ONE_POST, NEWSLETTER + smtp_table(port, domain_backoff_seconds=2))
        with open_store(load_config(root)) as store:
            slow = [store.add(f"s{i}@slow.example").id for i in range(20)]  # first in the ledger's order
            fast = [store.add(f"f{i}@fast.example").id for i in range(20)]
        first = publish(root, options(batch_size=5)).posts[0]
        with open_store(load_config(root)) as store:
            (until,) = store.conn.execute("SELECT until FROM domain_backoff WHERE domain = 'slow.example'").fetchone()
            rows = {
                sid: (status, error)
                for sid, status, error in store.conn.execute("SELECT subscriber_id, status, last_error FROM deliveries")
            }
        # claims go in id order, so without the pause every slow.example message (ids 1-20) would be taken before any
        # fast.example one; with it, all but those in flight when the 421 came waited, and were deferred with the reason
        waited = [sid for sid in slow if rows[sid][0] == "deferred"]
        assert len(waited) >= len(slow) - 10 and first.deferred == len(waited)
        assert all(rows[sid][1].startswith("waiting for slow.example: 421 4.7.0") for sid in waited)
        assert all(rows[sid][0] == "sent" for sid in fast) and first.sent == 40 - len(waited)
        end = dt.datetime.strptime(until, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        time.sleep(max(0.0, (end - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05)  # the pause is over (a wait, not a check)
        second = publish(root, options(batch_size=5)).posts[0]
    assert second.sent == len(waited) and second.deferred == 0
    assert len(server.recipients()) == 40 and all(n == 1 for n in server.recipients().values())
