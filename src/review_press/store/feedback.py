"""Bounces and complaints after the SMTP session, and the guard rails they drive: every SQL
statement about them.

A report, once attributed to a reader (`bounces`), is a `Feedback`; `record` keeps each one once
(by its key: re-reading a bounce mailbox after a crash, or a provider retrying a webhook, changes
nothing) and applies it to the reader in the same transaction: a hard bounce -> `bounced`, a
complaint -> `complained` (whatever they were: it is the strongest way of leaving), soft bounces
-> `bounced` once `SoftRule.limit` of them (about as many messages) fell within `SoftRule.days`. Their unsent deliveries
are skipped (`base.suppress_reader`, the statements every way of leaving shares).

The guard rails (`judge`, `pause`, `resume`): a campaign whose complaints or hard bounces pass
a rate is paused (its pending rows stay pending) until the writer resumes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from .base import Connection, Store, suppress_reader
from .model import Feedback, now_iso

OUTCOMES = ("bounced", "complained", "soft", "unchanged", "duplicate", "unknown")
"""What recording a report did: suppressed the reader (bounced, complained), counted a soft
bounce below the limit (soft), found the reader already suppressed (unchanged), found the
report recorded before (duplicate), or found no such reader any more (unknown: erased)."""


@dataclass(frozen=True)
class SoftRule:
    """A reader with `limit` soft bounces within `days` days is bounced."""

    limit: int = 3
    days: float = 7.0


def record(
    store: Store,
    events: Sequence[Feedback],
    rule: SoftRule = SoftRule(),
    now: dt.datetime | None = None,
    *,
    nonce: str | None = None,
    keep_seconds: float = 0.0,
) -> list[str] | None:
    """Record reports (one message's or one webhook post's worth) in one transaction; return each
    one's outcome (one of `OUTCOMES`), in the order given. With a `nonce` (a webhook post's, see
    `_take_nonce`) the post is taken in the same transaction: None, and nothing recorded, when it
    was seen before; a failure records neither, so the provider's retry is not taken for a replay."""
    stamp = now_iso(now)
    since = now_iso(_before(now or dt.datetime.now(dt.UTC), rule.days * 86400.0))
    outcomes: dict[int, str] = {}
    with store.transaction() as conn:
        if nonce is not None and not _take_nonce(conn, nonce, keep_seconds, now or dt.datetime.now(dt.UTC)):
            return None
        # subscribers in id order, each row locked before its deliveries: the order every transaction takes
        for i, e in sorted(enumerate(events), key=lambda pair: pair[1].subscriber_id):
            found = conn.execute(f"SELECT status FROM subscribers WHERE id = ?{store.dialect.for_update}", (e.subscriber_id,)).fetchone()
            if found is None:
                outcomes[i] = "unknown"
                continue
            inserted = conn.execute(
                "INSERT INTO feedback (event_key, kind, subscriber_id, campaign, source, code, detail, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING RETURNING event_key",
                (e.key, e.kind, e.subscriber_id, e.campaign, e.source, e.code[:40], e.detail[:500], stamp),
            ).fetchone()
            if inserted is None:
                outcomes[i] = "duplicate"
            elif e.kind == "complaint":
                left = ("pending", "active", "unsubscribed", "bounced")
                outcomes[i] = "complained" if suppress_reader(conn, e.subscriber_id, "complained", e.reason(), stamp, left) else "unchanged"
            elif e.kind == "hard":
                bounced = suppress_reader(conn, e.subscriber_id, "bounced", e.reason(), stamp, ("pending", "active"))
                outcomes[i] = "bounced" if bounced else "unchanged"
            else:
                # by message: the mailbox's DSN and the provider's webhook about one message are one bounce
                soft = conn.execute(
                    "SELECT count(DISTINCT COALESCE(campaign, event_key)) FROM feedback"
                    " WHERE subscriber_id = ? AND kind = 'soft' AND received_at >= ?",
                    (e.subscriber_id, since),
                ).fetchone()[0]
                if soft < rule.limit:
                    outcomes[i] = "soft" if found[0] in ("pending", "active") else "unchanged"
                    continue
                reason = f"{soft} soft bounces in {rule.days:g} days; last: {e.reason()}"[:300]
                bounced = suppress_reader(conn, e.subscriber_id, "bounced", reason, stamp, ("pending", "active"))
                outcomes[i] = "bounced" if bounced else "unchanged"
    return [outcomes[i] for i in range(len(events))]


def forget_seen(store: Store, nonce: str) -> None:
    """Forget a nonce `record` took for a post whose handling then failed
    after the commit (an SNS subscription whose confirmation did not go through): the provider's
    retry of that same post is then taken, not refused as a replay."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM webhook_seen WHERE nonce = ?", (nonce,))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _before(moment: dt.datetime, seconds: float) -> dt.datetime:
    """`seconds` before `moment`; a span longer than any date goes back to 1970, before every
    report (press.toml may say `soft_days = 1e12` or `webhook_max_age = inf`: "forever")."""
    try:
        return max(moment - dt.timedelta(seconds=seconds), _EPOCH)
    except (OverflowError, ValueError):
        return _EPOCH


def _take_nonce(conn: Connection, nonce: str, keep_seconds: float, moment: dt.datetime) -> bool:
    conn.execute("DELETE FROM webhook_seen WHERE seen_at < ?", (now_iso(_before(moment, keep_seconds)),))
    row = conn.execute(
        "INSERT INTO webhook_seen (nonce, seen_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING RETURNING nonce", (nonce, now_iso(moment))
    ).fetchone()
    return row is not None


@dataclass(frozen=True)
class CampaignFeedback:
    """One campaign's reports, each kind counted by reader: hard bounces (after the session and
    during it), soft bounces, complaints, and the messages sent."""

    campaign: str
    sent: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    smtp_bounced: int = 0  # refused with 5.1.x during the SMTP session (the ledger's `bounced`)

    @classmethod
    def of(cls, campaign: str, by_kind: dict[str, int], *, sent: int = 0, smtp_bounced: int = 0) -> CampaignFeedback:
        """From readers counted per feedback kind (hard, soft, complaint)."""
        return cls(campaign, sent, by_kind.get("hard", 0), by_kind.get("soft", 0), by_kind.get("complaint", 0), smtp_bounced)

    @property
    def bounced(self) -> int:
        return self.hard + self.smtp_bounced

    @property
    def bounce_rate(self) -> float:
        """Hard bounces per message handed over (sent or bounced in the session)."""
        handed = self.sent + self.smtp_bounced
        return self.bounced / handed if handed else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0


_READERS = "count(DISTINCT subscriber_id)"
"""How a campaign's reports of one kind are counted: by reader, not by report. A message is
complained about or bounces once, however many reports say so (a feedback loop and a webhook, two
hops' DSNs, or a reader mailing in complaints about their own message to pause the campaign)."""


def per_campaign(store: Store) -> dict[str, CampaignFeedback]:
    """Every campaign's reports (those with none are absent; `CampaignFeedback(key)` is their zero),
    each kind counted by reader (`_READERS`)."""
    counts: dict[str, dict[str, int]] = {}
    for campaign, kind, n in store.conn.execute(
        f"SELECT campaign, kind, {_READERS} FROM feedback WHERE campaign IS NOT NULL GROUP BY campaign, kind"
    ).fetchall():
        counts.setdefault(campaign, {})[kind] = n
    return {key: CampaignFeedback.of(key, c) for key, c in counts.items()}


def of_reader(store: Store, subscriber_id: int) -> dict[str, int]:
    """How many reports of each kind (hard, soft, complaint) are on record for one reader."""
    counts = dict.fromkeys(("hard", "soft", "complaint"), 0)
    counts.update(
        dict(store.conn.execute("SELECT kind, count(*) FROM feedback WHERE subscriber_id = ? GROUP BY kind", (subscriber_id,)).fetchall())
    )
    return counts


@dataclass(frozen=True)
class Guard:
    """When a campaign is paused: after `min_sent` messages, complaints over `complaint_rate` of
    the messages sent, or hard bounces over `bounce_rate` of those handed over."""

    complaint_rate: float = 0.003
    bounce_rate: float = 0.05
    min_sent: int = 1000


def _counts(store: Store, slug: str) -> CampaignFeedback | None:
    """Campaign `slug`'s reports and messages so far; None while it has no hard bounce or
    complaint (then the messages sent are not even counted: the guard stays cheap)."""
    conn = store.conn
    reports = dict(conn.execute(f"SELECT kind, {_READERS} FROM feedback WHERE campaign = ? GROUP BY kind", (slug,)).fetchall())
    smtp_bounced = conn.execute("SELECT count(*) FROM deliveries WHERE slug = ? AND status = 'bounced'", (slug,)).fetchone()[0]
    if not reports.get("complaint") and not reports.get("hard") and not smtp_bounced:
        return None
    sent = conn.execute("SELECT count(*) FROM deliveries WHERE slug = ? AND status = 'sent'", (slug,)).fetchone()[0]
    return CampaignFeedback.of(slug, reports, sent=sent, smtp_bounced=smtp_bounced)


def judge(store: Store, slug: str, guard: Guard) -> str | None:
    """Why campaign `slug` must pause now (its rates against `guard`), or None. After a `resume`
    only what came since counts (the writer weighed what came before), from `min_sent` more on."""
    seen = _counts(store, slug)
    if seen is None:
        return None
    row = store.conn.execute("SELECT guard_base FROM campaigns WHERE slug = ?", (slug,)).fetchone()
    if row and row[0]:
        sent0, hard0, complaints0, smtp0 = (int(n) for n in row[0].split())
        seen = CampaignFeedback(
            slug, seen.sent - sent0, seen.hard - hard0, seen.soft, seen.complaints - complaints0, seen.smtp_bounced - smtp0
        )
    handed = seen.sent + seen.smtp_bounced
    if handed < guard.min_sent:
        return None
    if seen.complaint_rate > guard.complaint_rate:
        return f"complaints at {seen.complaint_rate:.2%} ({seen.complaints:,} of {seen.sent:,} sent), over the {guard.complaint_rate:.2%} limit"
    if seen.bounce_rate > guard.bounce_rate:
        return f"hard bounces at {seen.bounce_rate:.2%} ({seen.bounced:,} of {handed:,}), over the {guard.bounce_rate:.2%} limit"
    return None


def pause(store: Store, slug: str, reason: str, now: dt.datetime | None = None) -> bool:
    """Pause campaign `slug` (no sender claims its rows) saying why; False if it was paused already."""
    with store.transaction() as conn:
        cur = conn.execute(
            "UPDATE campaigns SET paused_at = ?, paused_reason = ? WHERE slug = ? AND paused_at IS NULL", (now_iso(now), reason, slug)
        )
    return cur.rowcount > 0


def pause_reason(store: Store, slug: str) -> str | None:
    """Why campaign `slug` is paused, or None while it is not."""
    row = store.conn.execute("SELECT paused_at, paused_reason FROM campaigns WHERE slug = ?", (slug,)).fetchone()
    return (row[1] or "paused") if row and row[0] else None


def check(store: Store, slug: str, guard: Guard, now: dt.datetime | None = None) -> str | None:
    """What a sender asks while it sends campaign `slug`: why it must stop now (paused already, by
    any sender or a webhook's reports, or its rates just passed `guard`: then paused here), or None."""
    if (reason := pause_reason(store, slug)) is not None:
        return reason
    if (reason := judge(store, slug, guard)) is not None:
        pause(store, slug, reason, now)
        return pause_reason(store, slug)
    return None


def paused(store: Store) -> dict[str, tuple[str, str]]:
    """The paused campaigns: key -> (when, why)."""
    rows = store.conn.execute("SELECT slug, paused_at, paused_reason FROM campaigns WHERE paused_at IS NOT NULL ORDER BY slug").fetchall()
    return {slug: (at, reason or "") for slug, at, reason in rows}


def resume(store: Store, slugs: Sequence[str] | None = None) -> list[str]:
    """Lift the pause of these campaigns (None: of every paused one); return the keys resumed.
    From here on the guard rails weigh only the messages and reports that come after."""
    with store.transaction() as conn:
        rows = conn.execute("SELECT slug FROM campaigns WHERE paused_at IS NOT NULL ORDER BY slug").fetchall()
        keys = [r[0] for r in rows if slugs is None or r[0] in slugs]
        for key in keys:
            seen = _counts(store, key) or CampaignFeedback(key)
            base = f"{seen.sent} {seen.hard} {seen.complaints} {seen.smtp_bounced}"
            conn.execute("UPDATE campaigns SET paused_at = NULL, paused_reason = NULL, guard_base = ? WHERE slug = ?", (base, key))
    return keys
