"""Copy a store into another (`review-press store migrate --to URL`): subscribers, consent,
suppression, erased-address hashes, campaigns and the ledger, in one transaction of the target,
streamed in batches, then verified by counting every table on both sides.

Rows the source left in `sending` (in flight when its last run was killed) arrive `pending`,
as the source's own next run would have put them (`ledger.resume`): they may be sent once more.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import DeliveryError, StorageError
from .base import Store

BATCH = 5000

# The counters of the moment, not copied: rate windows and domain pauses start afresh on the new store.
LEFT_BEHIND = ("send_windows", "domain_backoff")
# Every other table the stores share, parents first, with its columns (all of them: nothing is left behind).
TABLES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "subscribers",
        (
            "id",
            "address",
            "envelope",
            "address_key",
            "name",
            "status",
            "consent_source",
            "consent_at",
            "consent_ip",
            "created_at",
            "updated_at",
            "status_reason",
            "status_at",
            "frequency",
            "prefs_at",
        ),
        "id",
    ),
    ("subscriber_topics", ("subscriber_id", "topic_key", "topic"), "subscriber_id, topic_key"),
    (
        "campaigns",
        (
            "slug",
            "started_at",
            "post_id",
            "source",
            "current_slug",
            "post_date",
            "title",
            "content_hash",
            "paused_at",
            "paused_reason",
            "guard_base",
            "kind",
            "topics",
            "window_start",
            "window_end",
            "corrects",
            "note",
        ),
        "slug",
    ),
    ("campaign_slugs", ("campaign", "slug"), "campaign, slug"),
    (
        "deliveries",
        (
            "slug",
            "subscriber_id",
            "status",
            "attempts",
            "last_error",
            "smtp_reply",
            "message_id",
            "created_at",
            "updated_at",
            "sent_at",
            "lease_owner",
            "lease_until",
        ),
        "slug, subscriber_id",
    ),
    ("digest_posts", ("digest", "campaign"), "digest, campaign"),
    ("forgotten", ("address_hash", "forgotten_at"), "address_hash"),
    ("settings", ("name", "value"), "name"),
    ("feedback", ("event_key", "kind", "subscriber_id", "campaign", "source", "code", "detail", "received_at"), "event_key"),
    ("webhook_seen", ("nonce", "seen_at"), "nonce"),
)


@dataclass(frozen=True)
class Copied:
    """Rows copied per table (the same on both sides, or the copy was rolled back)."""

    counts: dict[str, int]


def _rows(source: Store, table: str, columns: tuple[str, ...], order: str) -> Iterator[tuple[object, ...]]:
    """Every row of `table`, in `order`, a batch at a time (never the whole table in memory)."""
    cursor = source.conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
    while rows := cursor.fetchmany(BATCH):  # type: ignore[attr-defined]
        for row in rows:
            if table == "deliveries" and row[2] == "sending":
                row = (*row[:2], "pending", *row[3:10], None, None)
            yield tuple(row)


def _count(store: Store, table: str) -> int:
    return int(store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def copy_store(source: Store, target: Store) -> Copied:
    """Copy everything in `source` into `target`, which must hold no subscriber and no campaign
    (else `DeliveryError`, nothing written). Raises `StorageError` if the counts differ after.

    The subscriber ids keep counting from where the source's did, so an id erased in the source
    (and the unsubscribe tokens made for it) never fits a new reader in the target."""
    if used := [t for t in ("subscribers", "campaigns", "forgotten") if _count(target, t)]:
        raise DeliveryError(
            f"{target.describe()} is not empty (it holds {', '.join(used)}); nothing was copied",
            hint="migrate into a new, empty database",
        )
    counts: dict[str, int] = {}
    with target.transaction() as conn:
        for table, columns, order in TABLES:
            marks = ", ".join("?" * len(columns))
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                + (" ON CONFLICT (name) DO UPDATE SET value = excluded.value" if table == "settings" else ""),
                _rows(source, table, columns, order),
            )
            counts[table] = _count(source, table)
            if (copied := int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])) != counts[table]:
                raise StorageError(f"copying {table}: {counts[table]} rows in the source, {copied} in the target; nothing was copied")
        target.set_id_high_water(source.id_high_water())
    return Copied(counts)
