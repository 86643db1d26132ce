"""The delivery ledger: one row per (post, subscriber), moving pending -> sending -> sent | failed.

The promise it keeps: a row is committed as `sending` before its message is handed to a
server, and as `sent` only after the server's 250. Rows are claimed and settled in batches
(one transaction each), so after a kill -9 the only messages that can go out twice are the
rows left in `sending`, and `publish` never lets more than its in-flight limit be in that
state at once. `resume` puts those rows back to `pending` at the start of the next run.

Other states: `bounced` (5.1.x, the subscriber is marked bounced too), `skipped` (the
subscriber left the list before their turn came) and `deferred` (a temporary failure, or a
refusal while the server refused everything: not claimed again in the same run, put back to
`pending` by the next run). All functions run on the store's thread.

Campaigns are keyed by the post's slug when it first went out; `identity` decides which
post each campaign is today, and `campaigns`, `start_campaign` and `adopt` keep the facts it
compares (id, file, slugs, date, title).
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..identity import CampaignRecord, PostFacts
from .base import Store
from .model import now_iso, topic_key


def _joined(store: Store) -> str:
    """When a subscriber `s` joined, for the late-joiner rule: their latest consent, never before they were stored."""
    return f"{store.dialect.greatest}(coalesce(s.consent_at, s.created_at), s.created_at)"


MAX_BACKOFF = 3600.0  # seconds: the longest a domain's pause grows to
RECORD_CHUNK = 500  # rows settled per statement (5 parameters each: far below SQLite's 32,766)
LEDGER_STATUSES = ("pending", "sending", "sent", "failed", "bounced", "skipped", "deferred")
GOT = "('pending', 'sending', 'sent', 'deferred')"  # a post's row in one of these: the reader got it, or still gets it, on its own


@dataclass(frozen=True)
class Claim:
    """One message to send: who gets it and its Message-ID. Marked `sending` when handed out."""

    subscriber_id: int
    address: str
    envelope: str
    name: str
    message_id: str
    token: str = ""  # the claim's own lease mark (`Lease.owner` + a part new for every claim): the fence
    topics: tuple[str, ...] = ()  # a digest's claim: the topics the reader chose (`topic_key`s)
    received: tuple[str, ...] = ()  # a digest's claim: the post campaigns it carries that the reader got (or gets) on their own


@dataclass(frozen=True)
class Result:
    """How one claimed message ended. `status` is sent, failed, bounced, deferred, or pending (not tried)."""

    subscriber_id: int
    status: str
    attempts: int = 0
    reply: str = ""
    error: str = ""
    token: str = ""  # the token of the claim whose message this is (`Claim.token`): the fence


@dataclass(frozen=True)
class PostStatus:
    """The ledger of one post's campaign, counted by status."""

    slug: str
    started_at: str
    pending: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0
    deferred: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.sending + self.sent + self.failed + self.bounced + self.skipped + self.deferred


@dataclass(frozen=True)
class Audience:
    """Who a post's campaign is for: readers of every post (frequency 'each') who chose none of the
    `offered` topics, or one of the post's `topics`; a post with no topic is for all of them.
    Topics compare by `topic_key` (case-folded), as they are stored."""

    topics: tuple[str, ...] = ()
    offered: tuple[str, ...] = ()
    frequency: str = "each"  # a digest's audience: the weekly readers

    def where(self) -> tuple[str, tuple[object, ...]]:
        """The condition on a subscriber `s`, and its parameters (the same rule as `reads`)."""
        topics, offered = sorted({topic_key(t) for t in self.topics}), sorted({topic_key(t) for t in self.offered})
        if not topics or not offered:
            return "s.frequency = ?", (self.frequency,)
        chose = "SELECT 1 FROM subscriber_topics t WHERE t.subscriber_id = s.id AND t.topic_key IN ({})"
        return (
            f"s.frequency = ? AND (NOT EXISTS ({chose.format(_marks(len(offered)))}) OR EXISTS ({chose.format(_marks(len(topics)))}))",
            (self.frequency, *offered, *topics),
        )


def reads(chosen: Iterable[str], topics: Iterable[str], offered: Iterable[str]) -> bool:
    """Whether a reader who `chosen` these topics gets a post with these `topics` (`Audience` in
    Python, for a digest's content): a post with no topic goes to everyone, and a reader who chose
    none of the `offered` topics gets every post."""
    offered_keys = {topic_key(t) for t in offered}
    post, mine = {topic_key(t) for t in topics}, {topic_key(t) for t in chosen} & offered_keys
    return not post or not offered_keys or not mine or bool(post & mine)


def _owed(store: Store, audience: Audience) -> tuple[str, tuple[object, ...]]:
    """The one rule for whom a post's campaign is owed to (`fill` adds them, `would_receive` lists
    them), as SQL on a subscriber `s` with the parameters it takes after (late_joiners, started x 4):
    active, in the audience, joined no later than the campaign's start (unless late joiners are
    welcome) and with their topics and frequency as they are since before it started (a reader who
    changes them is owed what starts after, never the back catalogue). `started` NULL: not started."""
    where, params = audience.where()
    return (
        f"s.status = 'active' AND {where} AND (? OR ? IS NULL OR {_joined(store)} <= ?)"
        " AND (s.prefs_at IS NULL OR ? IS NULL OR s.prefs_at <= ?)",
        params,
    )


def campaigns(store: Store) -> list[CampaignRecord]:
    """Every post's campaign with what the store remembers of its post (for `identity.match`), by
    key; the welcome, digests and corrections are not a post's campaign (`mailings`)."""
    slugs: dict[str, list[str]] = {}
    for key, slug in store.conn.execute("SELECT campaign, slug FROM campaign_slugs ORDER BY campaign, slug"):
        slugs.setdefault(key, []).append(slug)
    rows = store.conn.execute(
        "SELECT slug, started_at, post_id, source, current_slug, post_date, title, content_hash FROM campaigns"
        " WHERE kind = 'post' ORDER BY slug"
    ).fetchall()
    return [CampaignRecord(*row[:4], row[4] or row[0], *row[5:], slugs=tuple(slugs.get(row[0], (row[0],)))) for row in rows]


def campaign_keys(store: Store) -> list[str]:
    """The key of every campaign of any kind (a bounce's return path may name any of them)."""
    return [row[0] for row in store.conn.execute("SELECT slug FROM campaigns ORDER BY slug").fetchall()]


def start_campaign(store: Store, post: PostFacts, content_hash: str, now: dt.datetime | None = None, topics: tuple[str, ...] = ()) -> str:
    """Start a new campaign for a post no campaign is; return its key (the slug, made unique if an
    old campaign of a different post already has it). `topics`: the post's (`Audience.topics`)."""
    stamp = now_iso(now)
    with store.transaction() as conn:
        key, n = post.slug, 1
        while conn.execute("SELECT 1 FROM campaigns WHERE slug = ?", (key,)).fetchone():
            n += 1
            key = f"{post.slug}~{n}"
        conn.execute(
            "INSERT INTO campaigns (slug, started_at, post_id, source, current_slug, post_date, title, content_hash, topics)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, stamp, post.post_id, post.source, post.slug, post.date, post.title, content_hash, "\n".join(topics)),
        )
        conn.execute("INSERT INTO campaign_slugs (campaign, slug) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, post.slug))
    return key


def adopt(store: Store, key: str, post: PostFacts, topics: tuple[str, ...] = ()) -> None:
    """Record that the campaign `key` is now this post (renamed, moved, re-slugged, given an id,
    retagged); its old slugs stay on record, so their URLs keep redirecting."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE campaigns SET post_id = coalesce(?, post_id), source = ?, current_slug = ?, post_date = ?, title = ?, topics = ?"
            " WHERE slug = ?",
            (post.post_id, post.source, post.slug, post.date, post.title, "\n".join(topics), key),
        )
        conn.execute("INSERT INTO campaign_slugs (campaign, slug) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, post.slug))


def campaign_started(store: Store, slug: str) -> str | None:
    """When the post's campaign started (its first publish), or None if never."""
    row = store.conn.execute("SELECT started_at FROM campaigns WHERE slug = ?", (slug,)).fetchone()
    return row[0] if row else None


def fill(store: Store, slug: str, *, late_joiners: bool, now: dt.datetime | None = None, audience: Audience = Audience()) -> int:
    """Start the post's campaign if new, and add a `pending` row for every subscriber owed it (`_owed`).

    Owed means: active, in the `audience`, no row yet, and (unless `late_joiners`) joined no
    later than the campaign's start. Joined is `_joined`: the consent that made them active (the
    confirm click, the `add`), so a reader who left and came back is a late joiner for the posts
    that went out while they were away, but never earlier than their arrival in this store (an
    import keeps a consent from years ago as proof, yet is not owed the posts sent before it).
    Returns how many rows were added.
    """
    stamp = now_iso(now)
    with store.transaction() as conn:
        conn.execute("INSERT INTO campaigns (slug, started_at) VALUES (?, ?) ON CONFLICT (slug) DO NOTHING", (slug, stamp))
        conn.execute("INSERT INTO campaign_slugs (campaign, slug) VALUES (?, ?) ON CONFLICT DO NOTHING", (slug, slug))
        started = conn.execute("SELECT started_at FROM campaigns WHERE slug = ?", (slug,)).fetchone()[0]
        owed, params = _owed(store, audience)
        cur = conn.execute(
            "INSERT INTO deliveries (slug, subscriber_id, status, created_at, updated_at)"
            f" SELECT ?, s.id, 'pending', ?, ? FROM subscribers s WHERE {owed}"
            " ON CONFLICT (slug, subscriber_id) DO NOTHING",
            (slug, stamp, stamp, *params, late_joiners, started, started, started, started),
        )
    if cur.rowcount > 0:
        store.refresh_statistics()
    return cur.rowcount


def resume(store: Store, slug: str | None = None) -> int:
    """Put rows left in `sending` by a killed run back to `pending`; return how many.

    Only for a store with one sender (SQLite), while holding the publish lock: in a live run
    those rows are in flight. With many senders, an expired lease returns them instead (`claim`).
    """
    with store.transaction() as conn:
        if slug is None:
            cur = conn.execute("UPDATE deliveries SET status = 'pending' WHERE status = 'sending'")
        else:
            cur = conn.execute("UPDATE deliveries SET status = 'pending' WHERE slug = ? AND status = 'sending'", (slug,))
    return cur.rowcount


def requeue_failed(store: Store, slug: str) -> int:
    """Give failed (not bounced) rows of a post another go; return how many."""
    with store.transaction() as conn:
        cur = conn.execute("UPDATE deliveries SET status = 'pending' WHERE slug = ? AND status = 'failed'", (slug,))
    return cur.rowcount


def requeue_deferred(store: Store, slug: str) -> int:
    """Put a post's `deferred` rows (temporary failures of an earlier run) back to `pending`; return how many.

    `publish` calls this at its start, so every plain run retries them; a run never re-claims
    the rows it defers itself, so it always ends.
    """
    with store.transaction() as conn:
        cur = conn.execute("UPDATE deliveries SET status = 'pending' WHERE slug = ? AND status = 'deferred'", (slug,))
    return cur.rowcount


@dataclass(frozen=True)
class Lease:
    """Who holds claimed rows and until when: `owner` names one sender (host, process, run), and
    its rows return to the pool when `until` (a `now_iso` time) passes without a renewal."""

    owner: str
    seconds: float

    def until(self, now: dt.datetime | None = None) -> str:
        return now_iso((now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=self.seconds))

    @property
    def prefix(self) -> str:
        """What every token of this sender's claims starts with."""
        return self.owner + "/"

    def token(self) -> str:
        """A new claim's mark: this sender, and a part no other claim of it has."""
        return self.prefix + secrets.token_hex(6)


@dataclass(frozen=True)
class Batch:
    """One claim: the messages to send, and how many rows it marked `skipped` (their reader left)."""

    claims: list[Claim]
    skipped: int = 0


def claim(
    store: Store,
    slug: str,
    limit: int,
    message_id: Callable[[int], str],
    lease: Lease,
    now: dt.datetime | None = None,
    *,
    digest: bool = False,
) -> Batch:
    """Take up to `limit` rows and commit them as `sending`, leased to `lease.owner` (one transaction).

    Rows are taken from `pending`, and from `sending` rows of another sender whose lease has
    expired (a sender killed on any host). On PostgreSQL the rows are locked `FOR UPDATE SKIP
    LOCKED`, so senders running at once take different rows. Rows whose subscriber is no longer
    active (unsubscribed, bounced, complained, removed mid-campaign) are marked `skipped` and not
    returned. Rows of a destination domain that is backing off (`back_off`) are left for later.
    No claims and no skips means nothing is left to take now (see `defer_paused`). `digest`: the
    campaign is a digest, whose content depends on its reader: each claim carries the topics they
    chose and the carried posts they got on their own (`Claim.received`).
    """
    stamp = now_iso(now)
    lines = store.dialect.lines_of
    per_reader, first = (
        ("NULL, NULL", ())
        if not digest
        else (
            f"(SELECT {lines.format('t.topic_key')} FROM subscriber_topics t WHERE t.subscriber_id = s.id),"
            f" (SELECT {lines.format('dp.campaign')} FROM digest_posts dp JOIN deliveries r ON r.slug = dp.campaign"
            f" AND r.subscriber_id = s.id WHERE dp.digest = ? AND r.status IN {GOT})",
            (slug,),
        )
    )
    until = lease.until(now)
    with store.transaction() as conn:
        paused = conn.execute("SELECT 1 FROM domain_backoff WHERE until > ? LIMIT 1", (stamp,)).fetchone() is not None
        if paused:  # leave the paused domains' rows: the filter needs each row's subscriber before the limit
            select = (
                f"SELECT d.subscriber_id, s.address, s.envelope, s.name, s.status, {per_reader} FROM deliveries d"
                " JOIN subscribers s ON s.id = d.subscriber_id WHERE d.slug = ? AND {where}"
                f" AND NOT EXISTS (SELECT 1 FROM domain_backoff b WHERE b.domain = {store.dialect.domain_of} AND b.until > ?)"
                f" ORDER BY d.slug, d.status, d.subscriber_id LIMIT ?{store.dialect.skip_locked}"
            )
            extra: tuple[object, ...] = (stamp,)
        else:  # the rows first, in the order of the (slug, status, subscriber_id) index (never walking past
            # the rows already sent), then their subscribers by key
            select = (
                f"SELECT c.subscriber_id, s.address, s.envelope, s.name, s.status, {per_reader} FROM (SELECT d.subscriber_id FROM deliveries d"
                f" WHERE d.slug = ? AND {{where}} ORDER BY d.slug, d.status, d.subscriber_id LIMIT ?{store.dialect.skip_locked}) c"
                " JOIN subscribers s ON s.id = c.subscriber_id ORDER BY c.subscriber_id"
            )
            extra = ()
        expired = "d.status = 'sending' AND coalesce(d.lease_until, '') < ? AND substr(coalesce(d.lease_owner, ''), 1, ?) <> ?"
        rows = conn.execute(select.format(where=expired), (*first, slug, stamp, len(lease.prefix), lease.prefix, *extra, limit)).fetchall()
        if len(rows) < limit:
            rows += conn.execute(select.format(where="d.status = 'pending'"), (*first, slug, *extra, limit - len(rows))).fetchall()
        gone = [(stamp, slug, r[0]) for r in rows if r[4] != "active"]
        if gone:
            conn.executemany(
                "UPDATE deliveries SET status = 'skipped', lease_until = NULL, updated_at = ? WHERE slug = ? AND subscriber_id = ?", gone
            )
        token = lease.token()
        claims = [Claim(r[0], r[1], r[2], r[3], message_id(r[0]), token, _lines(r[5]), _lines(r[6])) for r in rows if r[4] == "active"]
        if claims:  # one statement for the batch, not one per row (a round trip each on PostgreSQL)
            rows_sql, values = _values([(c.subscriber_id, c.message_id) for c in claims])  # column1: id, column2: Message-ID
            conn.execute(
                "UPDATE deliveries SET status = 'sending', message_id = v.column2, lease_owner = ?, lease_until = ?, updated_at = ?"
                f" FROM ({rows_sql}) AS v WHERE deliveries.slug = ? AND deliveries.subscriber_id = v.column1"
                f" AND deliveries.subscriber_id IN ({_marks(len(claims))})",  # the planner probes the key, never scans the ledger
                (token, until, stamp, *values, slug, *(c.subscriber_id for c in claims)),
            )
    return Batch(claims, len(gone))


def _lines(value: str | None) -> tuple[str, ...]:
    """A `Dialect.lines_of` aggregate as its sorted values."""
    return tuple(sorted(value.split("\n"))) if value else ()


def _marks(n: int) -> str:
    """`?, ?, ...`: `n` placeholders for an IN list."""
    return ", ".join("?" * n)


def _values(rows: list[tuple[object, ...]]) -> tuple[str, list[object]]:
    """`VALUES (?, ?), (?, ?) ...` for `rows`, and its parameters in order: a derived table both
    databases read, its columns named column1, column2, ... (one plan node, quick to plan)."""
    row = "(" + ", ".join("?" * len(rows[0])) + ")"
    return "VALUES " + ", ".join([row] * len(rows)), [v for r in rows for v in r]


def renew(store: Store, slug: str, lease: Lease, now: dt.datetime | None = None) -> int:
    """Extend the lease on every row `lease.owner` holds in `sending` for this campaign; return how many."""
    with store.transaction() as conn:
        cur = conn.execute(
            "UPDATE deliveries SET lease_until = ? WHERE slug = ? AND status = 'sending' AND substr(lease_owner, 1, ?) = ?",
            (lease.until(now), slug, len(lease.prefix), lease.prefix),
        )
    return cur.rowcount


def record(store: Store, slug: str, results: Iterable[Result], now: dt.datetime | None = None) -> list[Result]:
    """Settle claimed rows in one transaction (sent, failed, bounced, deferred, or pending: not
    tried); a bounce also marks the subscriber bounced.

    Fenced: a result settles its row only while the row is `sending` under the token of the
    claim that handed that message out (`Result.token`). A late result of an earlier claim (the
    sender was paused past its lease, the row taken by another, even claimed by this sender again
    since) changes nothing; returns the results that were not recorded for that reason.
    """
    stamp = now_iso(now)
    results = list(results)
    rows = [(r.subscriber_id, r.status, r.attempts, r.error or None, r.reply or None, r.token) for r in results]
    bounced = [  # rows locked in id order: no deadlock
        (f"bounced (smtp): {r[4] or r[3] or ''}"[:300], stamp, stamp, r[0], slug, r[5])
        for r in sorted(rows, key=lambda r: r[0])
        if r[1] == "bounced"
    ]
    if not rows:
        return []
    settled: set[tuple[int, str]] = set()
    with store.transaction() as conn:
        if bounced:  # subscribers before deliveries: the order every transaction takes its row locks in
            conn.executemany(
                "UPDATE subscribers SET status = 'bounced', status_reason = ?, status_at = ?, updated_at = ? WHERE id = ? AND status = 'active'"
                " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.slug = ? AND d.subscriber_id = subscribers.id"
                " AND d.status = 'sending' AND d.lease_owner = ?)",
                bounced,
            )
        for start in range(0, len(rows), RECORD_CHUNK):  # one statement per chunk, not one per row
            chunk = rows[start : start + RECORD_CHUNK]
            # the fence: the rows still `sending` under their claim's token, locked until the commit
            # (so no other sender takes one in between); the update then probes only those, by key
            ids = sorted({r[0] for r in chunk})
            held = {
                (sid, owner)
                for sid, owner in conn.execute(
                    f"SELECT subscriber_id, lease_owner FROM deliveries WHERE slug = ? AND status = 'sending'"
                    f" AND subscriber_id IN ({_marks(len(ids))}){store.dialect.for_update}",
                    (slug, *ids),
                ).fetchall()
                if owner
            }
            # a row's current claim settles it; a late result of an earlier claim of the same row (in
            # this batch too) does not match its token
            chunk = [r[:5] for r in chunk if (r[0], r[5]) in held]
            settled |= {(r[0], r[5]) for r in rows[start : start + RECORD_CHUNK] if (r[0], r[5]) in held}
            if not chunk:
                continue
            rows_sql, values = _values(chunk)  # column1: id, 2: status, 3: attempts, 4: error, 5: reply
            conn.execute(
                "UPDATE deliveries SET status = v.column2, attempts = deliveries.attempts + v.column3,"
                " last_error = coalesce(v.column4, deliveries.last_error), smtp_reply = coalesce(v.column5, deliveries.smtp_reply),"
                " updated_at = ?, sent_at = CASE WHEN v.column2 = 'sent' THEN ? ELSE deliveries.sent_at END, lease_until = NULL"
                f" FROM ({rows_sql}) AS v"
                " WHERE deliveries.slug = ? AND deliveries.subscriber_id = v.column1"
                f" AND deliveries.subscriber_id IN ({_marks(len(chunk))})",  # the planner probes the key, never scans the ledger
                (stamp, stamp, *values, slug, *(r[0] for r in chunk)),
            )
    return [r for r in results if (r.subscriber_id, r.token) not in settled]


def defer_failed(store: Store, slug: str, subscriber_ids: list[int], lease: Lease, now: dt.datetime | None = None) -> int:
    """Turn this sender's `failed` rows among `subscriber_ids` into `deferred` (the breaker tripped:
    a server refusing everything says nothing about these readers); a row no longer `failed`
    (requeued and sent meanwhile) is left alone. Returns how many."""
    changed = 0
    with store.transaction() as conn:
        for start in range(0, len(subscriber_ids), RECORD_CHUNK):
            chunk = subscriber_ids[start : start + RECORD_CHUNK]
            changed += conn.execute(
                "UPDATE deliveries SET status = 'deferred', updated_at = ? WHERE slug = ? AND substr(lease_owner, 1, ?) = ?"
                f" AND status = 'failed' AND subscriber_id IN ({_marks(len(chunk))})",
                (now_iso(now), slug, len(lease.prefix), lease.prefix, *chunk),
            ).rowcount
    return changed


def release(store: Store, slug: str, lease: Lease) -> int:
    """Put back to `pending` the rows `lease.owner` still holds in `sending` (claimed, never handed
    to a server: a run that stops returns them); return how many."""
    with store.transaction() as conn:
        cur = conn.execute(
            "UPDATE deliveries SET status = 'pending', lease_until = NULL"
            " WHERE slug = ? AND status = 'sending' AND substr(lease_owner, 1, ?) = ?",
            (slug, len(lease.prefix), lease.prefix),
        )
    return cur.rowcount


@dataclass(frozen=True)
class Limits:
    """The sending rates every sender of a store shares (0: no limit). Counted in the store, per
    window: `per_second` over windows of one second (or of 1 / rate seconds below one a second),
    `per_hour` over clock hours."""

    per_second: float = 0.0
    per_hour: int = 0

    def windows(self, now: dt.datetime) -> list[tuple[str, int]]:
        """(window name, its allowance) for the windows `now` falls in. A per-second rate that is
        not whole gets the shortest window (up to 10 s) in which it is, so 1.5 a second is 3 every
        2 s, never rounded up; below one a second, one message per 1 / rate seconds."""
        found = []
        if self.per_second > 0:
            if self.per_second < 1:
                length = math.ceil(1 / self.per_second)
            else:
                length = next((n for n in range(1, 11) if abs(self.per_second * n - round(self.per_second * n)) < 1e-9), 10)
            start = int(now.timestamp()) // length * length
            found.append((f"s{length}:{start:012d}", max(1, math.floor(self.per_second * length + 1e-9))))
        if self.per_hour > 0:
            found.append((f"h:{now.astimezone(dt.UTC):%Y-%m-%dT%H}", self.per_hour))
        return found


def take_quota(store: Store, want: int, limits: Limits, now: dt.datetime | None = None) -> int:
    """Reserve up to `want` messages under `limits`, counted in the store so that every sender on
    every host shares them; return how many may be claimed now (0: wait for the next window).

    Each window row is taken with an upsert that returns and locks it (in a fixed order: second,
    then hour), so no sender ever sees a window missing or counts from zero twice. Finished
    windows are kept ten minutes (a sender whose clock runs a little behind still finds its
    window, never a fresh one) and removed when a new second begins.
    """
    moment = now or dt.datetime.now(dt.UTC)
    windows = limits.windows(moment)
    if not windows or want <= 0:
        return max(want, 0)
    with store.transaction() as conn:
        granted, fresh = want, False
        for name, allowance in windows:
            used = conn.execute(
                "INSERT INTO send_windows (name, used) VALUES (?, 0)"
                " ON CONFLICT (name) DO UPDATE SET used = send_windows.used RETURNING used",
                (name,),
            ).fetchone()[0]
            fresh = fresh or int(used) == 0  # a new window: time to remove the finished ones
            granted = min(granted, max(0, allowance - int(used)))
        if granted:
            for name, _ in windows:
                conn.execute("UPDATE send_windows SET used = used + ? WHERE name = ?", (granted, name))
        if fresh:
            for kind, oldest in _oldest_windows(limits, moment):
                conn.execute("DELETE FROM send_windows WHERE substr(name, 1, ?) = ? AND name < ?", (len(kind), kind, oldest))
    return granted


def _oldest_windows(limits: Limits, now: dt.datetime) -> list[tuple[str, str]]:
    """(kind prefix, name of the oldest window of that kind to keep): ten minutes of seconds, two hours."""
    keep = []
    for (name, _), earlier in zip(limits.windows(now), limits.windows(now - dt.timedelta(minutes=10)), strict=True):
        kind = name.split(":")[0] + ":"
        keep.append((kind, earlier[0] if kind != "h:" else f"h:{(now - dt.timedelta(hours=2)).astimezone(dt.UTC):%Y-%m-%dT%H}"))
    return keep


def back_off(store: Store, domain: str, reason: str, base: float, now: dt.datetime | None = None) -> str:
    """Make every sender leave `domain`'s messages alone for a while: it answered `reason` (421,
    450 or 451). The pause starts at `base` seconds and doubles each time the domain says so again
    after a pause has ended (at most an hour); an hour of quiet starts it over. Returns its end."""
    moment = now or dt.datetime.now(dt.UTC)
    stamp = now_iso(moment)
    with store.transaction() as conn:
        row = conn.execute(f"SELECT until, seconds FROM domain_backoff WHERE domain = ?{store.dialect.for_update}", (domain,)).fetchone()
        if row is not None and row[0] > stamp:
            return str(row[0])  # already pausing: the replies of messages that were in flight change nothing
        quiet_since = now_iso(moment - dt.timedelta(hours=1))
        seconds = base if row is None or row[0] < quiet_since else min(float(row[1]) * 2, MAX_BACKOFF)
        until = now_iso(moment + dt.timedelta(seconds=seconds))
        conn.execute(
            "INSERT INTO domain_backoff (domain, until, seconds, reason) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (domain) DO UPDATE SET until = excluded.until, seconds = excluded.seconds, reason = excluded.reason",
            (domain, until, seconds, reason[:200]),
        )
    return until


def defer_paused(store: Store, slug: str, now: dt.datetime | None = None) -> int:
    """Defer the campaign's pending rows whose domain is paused (`back_off`), with the reason as
    their last error: the run can end, and the next plain run retries them (once the pause is over
    claims take them again). Returns how many."""
    stamp = now_iso(now)
    with store.transaction() as conn:
        cur = conn.execute(
            "UPDATE deliveries SET status = 'deferred', updated_at = ?, last_error = (SELECT 'waiting for ' || b.domain || ': ' || b.reason"
            f" FROM domain_backoff b JOIN subscribers s ON {store.dialect.domain_of} = b.domain WHERE s.id = deliveries.subscriber_id)"
            " WHERE slug = ? AND status = 'pending' AND EXISTS (SELECT 1 FROM subscribers s JOIN domain_backoff b"
            f" ON {store.dialect.domain_of} = b.domain WHERE s.id = deliveries.subscriber_id AND b.until > ?)",
            (stamp, slug, stamp),
        )
    return cur.rowcount


def in_progress(store: Store, now: dt.datetime | None = None) -> list[str]:
    """The campaigns a sender can join now: not paused (`feedback.pause`), with rows pending or in
    `sending` under an expired lease."""
    stamp = now_iso(now)
    rows = store.conn.execute(
        "SELECT slug FROM campaigns c WHERE c.paused_at IS NULL AND EXISTS (SELECT 1 FROM deliveries d WHERE d.slug = c.slug"
        " AND (d.status = 'pending' OR (d.status = 'sending' AND coalesce(d.lease_until, '') < ?))) ORDER BY started_at, slug",
        (stamp,),
    ).fetchall()
    return [r[0] for r in rows]


def leased_campaigns(store: Store, now: dt.datetime | None = None) -> list[str]:
    """The campaigns with rows in `sending` under a lease that has not expired (in flight somewhere)."""
    rows = store.conn.execute(
        "SELECT slug FROM campaigns c WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.slug = c.slug"
        " AND d.status = 'sending' AND d.lease_until >= ?) ORDER BY started_at, slug",
        (now_iso(now),),
    ).fetchall()
    return [r[0] for r in rows]


def leased(store: Store, slug: str, now: dt.datetime | None = None) -> int:
    """Rows of a campaign in `sending` under a lease that has not expired: messages in flight somewhere."""
    row = store.conn.execute(
        "SELECT count(*) FROM deliveries WHERE slug = ? AND status = 'sending' AND lease_until >= ?", (slug, now_iso(now))
    ).fetchone()
    return int(row[0])


def counts(store: Store, slug: str) -> dict[str, int]:
    """How many rows of a post's campaign are in each ledger status."""
    result = dict.fromkeys(LEDGER_STATUSES, 0)
    result.update(dict(store.conn.execute("SELECT status, count(*) FROM deliveries WHERE slug = ? GROUP BY status", (slug,)).fetchall()))
    return result


def status(store: Store) -> list[PostStatus]:
    """Every campaign, oldest first, with its rows counted by status."""
    found = []
    for slug, started in store.conn.execute("SELECT slug, started_at FROM campaigns ORDER BY started_at, slug").fetchall():
        found.append(PostStatus(slug=slug, started_at=started, **counts(store, slug)))
    return found


def sent_since(store: Store, since: dt.datetime) -> int:
    """Messages sent (all posts) at or after `since`: what an hourly rate limit has used up."""
    return store.conn.execute("SELECT count(*) FROM deliveries WHERE sent_at >= ?", (now_iso(since),)).fetchone()[0]


def would_receive(
    store: Store, slug: str | None, *, late_joiners: bool, batch: int = 1000, audience: Audience = Audience()
) -> Iterator[tuple[int, str, str]]:
    """(id, address, name) of everyone a publish would send the campaign `slug` to now (None: a campaign
    not started yet): rows still unsent, and readers owed it with no row yet (`_owed`); streamed, writes nothing."""
    started = campaign_started(store, slug)
    owed, params = _owed(store, audience)
    last = 0
    while True:
        rows = store.conn.execute(
            "SELECT s.id, s.address, s.name FROM subscribers s"
            " LEFT JOIN deliveries d ON d.slug = ? AND d.subscriber_id = s.id"
            " WHERE s.id > ? AND s.status = 'active'"
            f" AND (d.status IN ('pending', 'sending', 'deferred') OR (d.status IS NULL AND {owed}))"
            " ORDER BY s.id LIMIT ?",
            (slug, last, *params, late_joiners, started, started, started, started, batch),
        ).fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]
