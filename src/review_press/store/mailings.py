"""Mailings that are not a post's campaign, kept in the same ledger: the welcome email, the
weekly digests and corrections. Each is a campaign of its own `kind`, with a key no post's slug
can take (a slug never holds a colon), so post identity (`ledger.campaigns`) never sees them,
and claims, leases, fences and the in-flight bound are the ledger's, unchanged.

- The welcome (`WELCOME`): one campaign; a reader's row is added, pending, in the transaction
  that makes them active (`queue_welcome`: a confirm click, `subscribers add --welcome`), so a
  crash can neither lose it nor make it twice; the next publish sends it. Once per reader: a
  reader who comes back later is not welcomed again (unless theirs was never sent).
- A digest (`digest_key`): started in one transaction with the post campaigns it carries
  (`digest_posts`, each post in one digest at most: none is repeated, and a post left out of a
  digest that is on record is carried by the next one) and a row for each weekly reader owed it.
- A correction (`correction_key`): its rows are the readers the corrected campaign was sent to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from .base import WELCOME, Store, queue_welcome
from .ledger import GOT, Audience, _joined, _marks
from .model import now_iso

KINDS = ("welcome", "digest", "correction")
__all__ = [  # the welcome's key and queueing live in `base` (a confirm queues it); they are named here too
    "KINDS",
    "WELCOME",
    "Mailing",
    "correction_key",
    "digest_key",
    "digested",
    "mailings",
    "pending_readers",
    "post_topics",
    "queue_welcome",
    "requeue_deferred",
    "start_correction",
    "start_digest",
    "with_pending",
]


def digest_key(window_start: dt.date) -> str:
    """The key of the weekly digest whose window starts on `window_start` (a Monday)."""
    return f":digest:{window_start.isoformat()}"


def correction_key(campaign: str, content_hash: str) -> str:
    """The key of the correction of `campaign` to the version of its post with `content_hash`:
    the same edit corrected twice is one correction."""
    return f":correction:{campaign}:{content_hash[:12]}"


@dataclass(frozen=True)
class Mailing:
    """One welcome, digest or correction campaign as the store keeps it."""

    key: str
    kind: str
    started_at: str
    window_start: str | None = None  # digest: its window [start, end), now_iso form
    window_end: str | None = None
    corrects: str | None = None  # correction: the campaign it corrects
    note: str = ""  # correction: what changed
    posts: tuple[str, ...] = ()  # digest: the post campaigns it carries, in key order


def mailings(store: Store) -> list[Mailing]:
    """Every welcome, digest and correction campaign, oldest first."""
    carried: dict[str, list[str]] = {}
    for digest, campaign in store.conn.execute("SELECT digest, campaign FROM digest_posts ORDER BY digest, campaign"):
        carried.setdefault(digest, []).append(campaign)
    rows = store.conn.execute(
        "SELECT slug, kind, started_at, window_start, window_end, corrects, note FROM campaigns WHERE kind <> 'post'"
        " ORDER BY started_at, slug"
    ).fetchall()
    return [Mailing(r[0], r[1], r[2], r[3], r[4], r[5], r[6] or "", tuple(carried.get(r[0], ()))) for r in rows]


def with_pending(store: Store) -> list[str]:
    """The welcome, digest and correction campaigns with rows still to send (pending), oldest
    first; paused ones too (`feedback.pause`: the caller reports them)."""
    rows = store.conn.execute(
        "SELECT slug FROM campaigns c WHERE c.kind <> 'post'"
        " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.slug = c.slug AND d.status = 'pending') ORDER BY started_at, slug"
    ).fetchall()
    return [r[0] for r in rows]


def pending_readers(store: Store, key: str) -> list[tuple[str, str]]:
    """(address, name) of every reader a campaign's pending rows are for, by id (a dry run lists them)."""
    rows = store.conn.execute(
        "SELECT s.address, s.name FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
        " WHERE d.slug = ? AND d.status IN ('pending', 'deferred') AND s.status = 'active' ORDER BY s.id",
        (key,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def digested(store: Store) -> tuple[set[str], str | None]:
    """(the post campaigns some digest carried, the start of the first digest's window or None)."""
    keys = {r[0] for r in store.conn.execute("SELECT campaign FROM digest_posts").fetchall()}
    first = store.conn.execute("SELECT min(window_start) FROM campaigns WHERE kind = 'digest'").fetchone()[0]
    return keys, first


def post_topics(store: Store, keys: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The topics each post campaign of `keys` was stored with (`ledger.start_campaign`, `adopt`)."""
    if not keys:
        return {}
    rows = store.conn.execute(f"SELECT slug, topics FROM campaigns WHERE slug IN ({_marks(len(keys))})", tuple(keys)).fetchall()
    return {r[0]: tuple(t for t in (r[1] or "").split("\n") if t) for r in rows}


def start_digest(
    store: Store,
    key: str,
    window: tuple[dt.datetime, dt.datetime],
    posts: Sequence[tuple[str, Sequence[str]]],
    offered: Sequence[str],
    *,
    late_joiners: bool,
    now: dt.datetime | None = None,
) -> int:
    """Start the digest `key` of `window` carrying the post campaigns `posts` (each with its
    topics), with a pending row for each reader owed it, all in one transaction; return how many
    rows. Owed: active, a weekly reader, joined before the window ended (unless `late_joiners`),
    and with at least one carried post that their topics let through (`ledger.Audience`) and that
    they did not get, and will not get, on its own (a row in its campaign: they chose every post
    until lately). A digest already on record (a run killed after starting it) is left as it is:
    0. A campaign another digest carries already is a `ValueError` (nothing written): no post goes
    out in two digests."""
    stamp = now_iso(now)
    start, end = now_iso(window[0]), now_iso(window[1])
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM campaigns WHERE slug = ?", (key,)).fetchone():
            return 0
        conn.execute(
            "INSERT INTO campaigns (slug, started_at, kind, window_start, window_end) VALUES (?, ?, 'digest', ?, ?)",
            (key, stamp, start, end),
        )
        owed, params = [], []
        for campaign, topics in posts:
            if conn.execute("SELECT 1 FROM digest_posts WHERE campaign = ?", (campaign,)).fetchone():
                raise ValueError(f"{campaign} is in a digest already")
            conn.execute("INSERT INTO digest_posts (digest, campaign) VALUES (?, ?)", (key, campaign))
            where, values = Audience(tuple(topics), tuple(offered), "weekly").where()
            owed.append(
                f"({where} AND NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.slug = ? AND r.subscriber_id = s.id AND r.status IN {GOT}))"
            )
            params += [*values, campaign]
        if not owed:
            return 0
        cur = conn.execute(
            "INSERT INTO deliveries (slug, subscriber_id, status, created_at, updated_at) SELECT ?, s.id, 'pending', ?, ? FROM subscribers s"
            f" WHERE s.status = 'active' AND ({' OR '.join(owed)}) AND (? OR {_joined(store)} < ?)",
            (key, stamp, stamp, *params, late_joiners, end),
        )
    if cur.rowcount > 0:
        store.refresh_statistics()
    return cur.rowcount


def start_correction(store: Store, key: str, corrects: str, note: str, now: dt.datetime | None = None) -> int:
    """Start the correction `key` of campaign `corrects` with a pending row for every reader its
    message was sent to who is still active, in one transaction; return how many rows. It
    supersedes every earlier correction of that campaign: their rows not sent yet are skipped (a
    correction is made from the post as it is when it goes, so two pending corrections would
    mail one reader the same text twice). One on record already (the same edit corrected again,
    or a run killed after starting it) is left as it is: 0."""
    stamp = now_iso(now)
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM campaigns WHERE slug = ?", (key,)).fetchone():
            return 0
        conn.execute(
            "INSERT INTO campaigns (slug, started_at, kind, corrects, note) VALUES (?, ?, 'correction', ?, ?)", (key, stamp, corrects, note)
        )
        cur = conn.execute(
            "INSERT INTO deliveries (slug, subscriber_id, status, created_at, updated_at)"
            " SELECT ?, d.subscriber_id, 'pending', ?, ? FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
            " WHERE d.slug = ? AND d.status = 'sent' AND s.status = 'active'",
            (key, stamp, stamp, corrects),
        )
        conn.execute(
            "UPDATE deliveries SET status = 'skipped', last_error = 'superseded by a later correction', updated_at = ?"
            " WHERE status IN ('pending', 'deferred') AND slug IN"
            " (SELECT slug FROM campaigns WHERE kind = 'correction' AND corrects = ? AND slug <> ?)",
            (stamp, corrects, key),
        )
    if cur.rowcount > 0:
        store.refresh_statistics()
    return cur.rowcount


def requeue_deferred(store: Store) -> int:
    """Put the deferred rows of every welcome, digest and correction (temporary failures of an
    earlier run) back to `pending`, as `ledger.requeue_deferred` does for a post; return how many."""
    with store.transaction() as conn:
        cur = conn.execute(
            "UPDATE deliveries SET status = 'pending' WHERE status = 'deferred' AND slug IN (SELECT slug FROM campaigns WHERE kind <> 'post')"
        )
    return cur.rowcount
