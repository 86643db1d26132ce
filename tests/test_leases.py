"""The fence on both stores: a row is settled only by the claim that handed it out, even when the
same sender has claimed the row again since (a pause past its lease, another sender that took
the row and died, then this sender's second claim)."""

from __future__ import annotations

import datetime as dt

from review_press.store import Store, ledger

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def test_a_stale_result_of_an_earlier_claim_is_fenced_out_even_by_the_same_sender(any_store: Store) -> None:
    store = any_store
    ann = store.add("ann@example.org")
    ledger.fill(store, "p", late_joiners=True, now=T0)
    a, b = ledger.Lease("host-a:1:aa", 10), ledger.Lease("host-b:2:bb", 10)
    mid = lambda i: f"<{i}@x>"  # noqa: E731
    (first,) = ledger.claim(store, "p", 5, mid, a, now=T0).claims  # A claims, then is paused past its lease
    (taken,) = ledger.claim(store, "p", 5, mid, b, now=T0 + dt.timedelta(seconds=11)).claims  # B takes it, then dies
    assert ledger.claim(store, "p", 5, mid, a, now=T0 + dt.timedelta(seconds=15)).claims == []  # B's lease still holds
    (again,) = ledger.claim(store, "p", 5, mid, a, now=T0 + dt.timedelta(seconds=22)).claims  # A claims it once more
    assert len({first.token, taken.token, again.token}) == 3
    stale = ledger.Result(ann.id, "pending", token=first.token)  # the result of A's first attempt, arriving late
    assert ledger.record(store, "p", [stale]) == [stale]  # fenced out
    assert len(ledger.record(store, "p", [ledger.Result(ann.id, "sent", 1, "250 ok", token=taken.token)])) == 1  # B is gone too
    assert store.conn.execute("SELECT status FROM deliveries").fetchone()[0] == "sending"
    current = ledger.Result(ann.id, "sent", 1, "250 ok", token=again.token)
    late = ledger.Result(ann.id, "deferred", 1, error="452 4.2.2 mailbox busy", token=first.token)
    assert ledger.record(store, "p", [current, late]) == [late]  # both in one batch: only the current claim's result counts
    assert store.conn.execute("SELECT status, smtp_reply FROM deliveries").fetchone() == ("sent", "250 ok")
    assert len(ledger.record(store, "p", [ledger.Result(ann.id, "deferred", token=again.token)])) == 1  # settled: a repeat changes nothing


def test_renew_and_release_cover_every_claim_of_one_sender_and_no_other(any_store: Store) -> None:
    store = any_store
    for i in range(4):
        store.add(f"r{i}@example.org")
    ledger.fill(store, "p", late_joiners=True, now=T0)
    a, b = ledger.Lease("host-a:1:aa", 10), ledger.Lease("host-b:2:bb", 10)
    mid = lambda i: f"<{i}@x>"  # noqa: E731
    ledger.claim(store, "p", 1, mid, a, now=T0)
    ledger.claim(store, "p", 1, mid, a, now=T0)  # two claims of A, two tokens
    ledger.claim(store, "p", 1, mid, b, now=T0)
    assert ledger.renew(store, "p", a, now=T0 + dt.timedelta(seconds=5)) == 2
    assert ledger.release(store, "p", a) == 2
    assert dict(store.conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()) == {"pending": 3, "sending": 1}
