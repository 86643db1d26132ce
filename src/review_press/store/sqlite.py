"""The embedded store: one SQLite file (`.review-press/press.db`), its schema versioned by
`PRAGMA user_version`.

The database runs in WAL mode with `synchronous=FULL`: every commit of the ledger is on disk
before the call returns, so a message marked `sending` stays marked even across a power cut,
and the "at most the in-flight messages are sent twice" promise holds beyond a mere kill -9
(`NORMAL` would survive kill -9 but may lose the last commits on power loss). `publish`
commits in batches, so FULL costs a few fsyncs a second, not one per message. SQLite allows
one writer: `publish` holds a lock file and sends from one process.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import DeliveryError, PressError, StorageError, write_error
from ..statedir import private_dir, private_file
from .base import Dialect, Store

BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's transaction before "busy"


# Each entry moves the schema from version i to i + 1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: an old unsubscribe token must not fit a new reader
        address TEXT NOT NULL,              -- normalized, as shown (Unicode domain)
        envelope TEXT NOT NULL,             -- the SMTP envelope form (ASCII domain where possible)
        address_key TEXT NOT NULL UNIQUE,   -- case-folded: duplicates are found by this
        name TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')),
        consent_source TEXT NOT NULL DEFAULT '',
        consent_at TEXT,
        consent_ip TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE campaigns (
        slug TEXT PRIMARY KEY,
        started_at TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        slug TEXT NOT NULL REFERENCES campaigns(slug),
        subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'bounced', 'skipped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        smtp_reply TEXT,
        message_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        sent_at TEXT,
        PRIMARY KEY (slug, subscriber_id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_by_status ON deliveries (slug, status, subscriber_id);
    CREATE INDEX deliveries_by_sent_at ON deliveries (sent_at);
    """,
    # 2: post identity (a campaign belongs to a post, not to its file or slug), a `deferred`
    # ledger state for transient failures (retried by the next run), and the keyed hashes of
    # erased addresses.
    """
    CREATE TABLE deliveries_v2 (
        slug TEXT NOT NULL REFERENCES campaigns(slug),  -- the campaign's key: the post's slug when it first went out
        subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'bounced', 'skipped', 'deferred')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        smtp_reply TEXT,
        message_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        sent_at TEXT,
        PRIMARY KEY (slug, subscriber_id)
    ) WITHOUT ROWID;
    INSERT INTO deliveries_v2 SELECT slug, subscriber_id, status, attempts, last_error, smtp_reply, message_id,
        created_at, updated_at, sent_at FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v2 RENAME TO deliveries;
    CREATE INDEX deliveries_by_status ON deliveries (slug, status, subscriber_id);
    CREATE INDEX deliveries_by_sent_at ON deliveries (sent_at);
    ALTER TABLE campaigns ADD COLUMN post_id TEXT;        -- the post's front matter `id`, when it has one
    ALTER TABLE campaigns ADD COLUMN source TEXT;         -- the post's file (relative to posts/) at its latest publish
    ALTER TABLE campaigns ADD COLUMN current_slug TEXT;   -- the post's slug at its latest publish
    ALTER TABLE campaigns ADD COLUMN post_date TEXT;      -- the post's date (UTC, now_iso form)
    ALTER TABLE campaigns ADD COLUMN title TEXT;
    ALTER TABLE campaigns ADD COLUMN content_hash TEXT;   -- of title, subject and body when it first went out
    CREATE UNIQUE INDEX campaigns_by_post_id ON campaigns (post_id) WHERE post_id IS NOT NULL;
    CREATE TABLE campaign_slugs (                         -- every slug a sent post has had: its old URLs redirect
        campaign TEXT NOT NULL REFERENCES campaigns(slug),
        slug TEXT NOT NULL,
        PRIMARY KEY (campaign, slug)
    ) WITHOUT ROWID;
    INSERT INTO campaign_slugs (campaign, slug) SELECT slug, slug FROM campaigns;
    CREATE TABLE forgotten (                              -- erased readers: only a keyed hash of the address
        address_hash TEXT PRIMARY KEY,
        forgotten_at TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: the store's settings: the check value of the key the erased addresses are hashed under.
    """
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """,
    # 4: leases on claimed rows (the fence that lets many senders share a campaign), and the
    # counters every sender shares: messages per rate window, and destination domains backing off.
    """
    ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;   -- the sender that claimed the row
    ALTER TABLE deliveries ADD COLUMN lease_until TEXT;   -- when its claim expires (now_iso form)
    CREATE TABLE send_windows (name TEXT PRIMARY KEY, used INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE domain_backoff (domain TEXT PRIMARY KEY, until TEXT NOT NULL, seconds REAL NOT NULL, reason TEXT NOT NULL) WITHOUT ROWID;
    """,
    # 5: bounces and complaints after the SMTP session (issue 13): why and when each reader got
    # their status, every bounce or complaint report once (by its key), campaigns the guard rails
    # paused, and the webhook posts already taken (a replay is refused).
    """
    ALTER TABLE subscribers ADD COLUMN status_reason TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscribers ADD COLUMN status_at TEXT;
    UPDATE subscribers SET status_at = updated_at;
    ALTER TABLE campaigns ADD COLUMN paused_at TEXT;
    ALTER TABLE campaigns ADD COLUMN paused_reason TEXT;
    ALTER TABLE campaigns ADD COLUMN guard_base TEXT;     -- "sent hard complaints" when last resumed: the guard weighs what came after
    CREATE TABLE feedback (
        event_key TEXT PRIMARY KEY,        -- what the report is (a DSN's Message-ID and recipient, a provider's event id): recorded once
        kind TEXT NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint')),
        subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        campaign TEXT,                     -- the campaign key the message belonged to (NULL: not known)
        source TEXT NOT NULL,              -- maildir, imap, pop3, ses, postmark, mailgun, sendgrid
        code TEXT NOT NULL DEFAULT '',     -- the enhanced status code (5.1.1) or the feedback type (abuse)
        detail TEXT NOT NULL DEFAULT '',
        received_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX feedback_by_subscriber ON feedback (subscriber_id, kind, received_at);
    CREATE INDEX feedback_by_campaign ON feedback (campaign, kind);
    CREATE TABLE webhook_seen (nonce TEXT PRIMARY KEY, seen_at TEXT NOT NULL) WITHOUT ROWID;
    """,
    # 6: what a reader chose (topics, every post or a weekly digest), and mailings that are not a
    # post's campaign: the welcome email, digests (with the posts each one carried) and corrections.
    """
    ALTER TABLE subscribers ADD COLUMN frequency TEXT NOT NULL DEFAULT 'each' CHECK (frequency IN ('each', 'weekly'));
    ALTER TABLE subscribers ADD COLUMN prefs_at TEXT;     -- when they last changed topics or frequency: owed only campaigns started after
    CREATE TABLE subscriber_topics (
        subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        topic_key TEXT NOT NULL,                          -- case-folded (`model.topic_key`): what matching compares
        topic TEXT NOT NULL,                              -- as press.toml spelled it when chosen: what is shown
        PRIMARY KEY (subscriber_id, topic_key)
    ) WITHOUT ROWID;
    ALTER TABLE campaigns ADD COLUMN kind TEXT NOT NULL DEFAULT 'post' CHECK (kind IN ('post', 'welcome', 'digest', 'correction'));
    ALTER TABLE campaigns ADD COLUMN topics TEXT;         -- a post's topics, one per line (NULL or empty: for everyone)
    ALTER TABLE campaigns ADD COLUMN window_start TEXT;   -- a digest's window (now_iso form), [start, end)
    ALTER TABLE campaigns ADD COLUMN window_end TEXT;
    ALTER TABLE campaigns ADD COLUMN corrects TEXT;       -- a correction: the key of the campaign it corrects
    ALTER TABLE campaigns ADD COLUMN note TEXT;           -- a correction: what changed
    CREATE TABLE digest_posts (                           -- every post campaign a digest carried: in exactly one digest
        digest TEXT NOT NULL REFERENCES campaigns(slug),
        campaign TEXT NOT NULL REFERENCES campaigns(slug),
        PRIMARY KEY (digest, campaign)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX digest_posts_once ON digest_posts (campaign);
    """,
)


def _disk_full(path: Path) -> bool:
    """Whether the file system holding `path` has no block left (SQLite may report that as an I/O error)."""
    try:
        return os.statvfs(path.parent).f_bavail == 0
    except OSError:
        return False


def storage_error(exc: sqlite3.Error, path: Path) -> PressError:
    """An SQLite failure as a user reads it: busy (another process), disk full, read-only, I/O."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc):
        return StorageError(
            f"{path.name} is busy (another review-press running?)",
            path=path,
            hint=f"it waited {BUSY_TIMEOUT:g} s; let the other one finish (or stop it), then run this again",
        )
    if name.startswith("SQLITE_FULL") or (name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")) and _disk_full(path)):
        return write_error(path, OSError(errno.ENOSPC, "no space left on device"))
    if name.startswith("SQLITE_READONLY"):
        return write_error(path, OSError(errno.EROFS, "read-only (file system or permissions)"))
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")):
        return write_error(path, OSError(errno.EIO, "disk I/O error, or the folder cannot be written"))
    return DeliveryError(f"the database failed: {exc}", path=path)


class SQLiteStore(Store):
    """A store in one SQLite file. It belongs to the thread that opened it (sqlite3's rule):
    `publish` keeps all database work on its main thread and hands only plain data to senders."""

    dialect = Dialect(
        name="SQLite",
        greatest="max",
        domain_of="lower(substr(s.envelope, instr(s.envelope, '@') + 1))",
        skip_locked="",
        for_update="",
        many_senders=False,
        lines_of="group_concat({}, char(10))",
    )

    def __init__(self, conn: sqlite3.Connection, path: Path, opened_at: int | None = None) -> None:
        self.conn = conn
        self.path = path
        self.opened_at = opened_at  # the schema version found when opened (None: a new file)

    @classmethod
    def open(cls, path: Path, busy_timeout: float = BUSY_TIMEOUT) -> SQLiteStore:
        """Open (creating if needed, readable by its owner only) and migrate the database at `path`.

        A write waits up to `busy_timeout` seconds for another process's transaction to end.
        """
        private_file(private_dir(path.parent) / path.name)
        conn = None
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            found = conn.execute("PRAGMA user_version").fetchone()[0] or None
            _migrate(conn, path)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            error = storage_error(exc, path)
            if isinstance(error, StorageError):
                raise error from None
            raise DeliveryError(f"cannot open the database: {exc}", path=path) from None
        return cls(conn, path, found)

    def describe(self) -> str:
        return str(self.path)

    def schema_version(self) -> int | None:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0]) or None

    def upgrade(self) -> tuple[int | None, int]:
        """Opening already migrated the file (a single-user store upgrades itself)."""
        return self.opened_at, len(MIGRATIONS)

    def close(self) -> None:
        self.conn.close()

    def id_high_water(self) -> int:
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'subscribers'").fetchone()
        return int(row[0]) if row else 0

    def set_id_high_water(self, value: int) -> None:
        self.conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'subscribers'", (value,))
        self.conn.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'subscribers', ? WHERE NOT EXISTS"
            " (SELECT 1 FROM sqlite_sequence WHERE name = 'subscribers')",
            (value,),
        )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE): all of it commits, or none of it.

        A database busy past `BUSY_TIMEOUT`, a full disk or a read-only file raises a
        `StorageError` saying so, with everything of this transaction rolled back.
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path) from None
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                with suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise storage_error(exc, self.path) from None
            raise

    @contextmanager
    def erasing(self) -> Iterator[None]:
        """While erasing rows: their bytes are overwritten, not left in free pages; afterwards the
        WAL is copied into the database and emptied, so its older frames no longer hold them (best
        effort: a reader holding an old snapshot makes that a partial checkpoint)."""
        self.conn.execute("PRAGMA secure_delete = ON")
        try:
            yield
        finally:
            self.conn.execute("PRAGMA secure_delete = OFF")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to the newest version, each step in its own transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise DeliveryError(
            f"the database has schema version {version}, newer than this review-press knows ({len(MIGRATIONS)})",
            path=path,
            hint="upgrade review-press",
        )
    for number in range(version, len(MIGRATIONS)):
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[number]}\nPRAGMA user_version = {number + 1};\nCOMMIT;")
        except sqlite3.DatabaseError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if conn.execute("PRAGMA user_version").fetchone()[0] > number:
                continue  # another process migrated it first
            raise
