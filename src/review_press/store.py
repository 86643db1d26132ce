"""The subscriber store: one SQLite file (`.review-press/press.db`) holding subscribers, consent,
campaigns and the delivery ledger, with a schema versioned by `PRAGMA user_version`.

The database runs in WAL mode with `synchronous=FULL`: every commit of the ledger is on disk
before the call returns, so a message marked `sending` stays marked even across a power cut,
and the "at most the in-flight messages are sent twice" promise holds beyond a mere kill -9
(`NORMAL` would survive kill -9 but may lose the last commits on power loss). `publish`
commits in batches, so FULL costs a few fsyncs a second, not one per message.

Subscribers are streamed from SQLite (`iter_subscribers`, `export_csv`); nothing here holds a
whole list in memory. The delivery ledger's operations live in `delivery.ledger`.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import hashlib
import hmac
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal, TextIO

from email_validator import EmailNotValidError, validate_email

from .config import Config
from .errors import ConfigError, DeliveryError, PressError, StorageError, write_error
from .spreadsheet import neutralize_cell
from .statedir import private_dir, private_file

DB_NAME = "press.db"
BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's transaction before "busy"
STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
SUPPRESSED = ("unsubscribed", "bounced", "complained")  # an import or `add` never revives these
EXPORT_COLUMNS = ("email", "name", "status", "consent_source", "consent_at", "consent_ip", "created_at", "updated_at")

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


def now_iso(now: dt.datetime | None = None) -> str:
    """A UTC timestamp in one fixed format, so that text comparison is time comparison."""
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Address:
    """A validated address: `address` to show, `envelope` for SMTP, `key` to find duplicates."""

    address: str
    envelope: str
    key: str

    @property
    def needs_smtputf8(self) -> bool:
        """True when the local part is not ASCII: the server must offer SMTPUTF8."""
        return not self.envelope.isascii()


def parse_address(text: str) -> Address:
    """Validate and normalize one address (IDN domains and Unicode local parts allowed).

    Raises `ValueError` with the reason; callers turn it into a row problem or a `DeliveryError`.
    """
    text = text.strip()
    if not text:
        raise ValueError("no address")
    if "\r" in text or "\n" in text:
        raise ValueError("the address contains a line break")
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    envelope = info.ascii_email or f"{info.local_part}@{info.ascii_domain}"
    return Address(address=info.normalized, envelope=envelope, key=f"{info.local_part.casefold()}@{info.ascii_domain.lower()}")


def _unmailable(c: str) -> bool:
    """A character no name may hold: a C0 or C1 control (tab and NUL included), a line or
    paragraph separator (U+2028, U+2029), or a bidi embedding, override or isolate."""
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029) or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069


def check_name(name: str) -> str:
    """A display name, stripped; a line break (header injection), any other control character,
    U+2028/U+2029 or a bidi control (a name no message could carry) raises `ValueError`."""
    if "\r" in name or "\n" in name:
        raise ValueError("the name contains a line break")
    if len(name) > 200:
        raise ValueError("the name is longer than 200 characters")
    if bad := next((c for c in name if _unmailable(c)), None):
        raise ValueError(f"the name contains a control character (U+{ord(bad):04X})")
    return name.strip()


_FORGOTTEN_LABEL = b"forgotten-address"
_KEY_CHECK_LABEL = b"key check"  # no "@": never an address key, so never one of the hashes
KEY_CHECK = "forget_key_check"  # its name in the settings table
SECRET_DIFFERS = "the site secret differs from the one used when readers were forgotten: set REVIEW_PRESS_SECRET as before"


class SecretMismatch(ConfigError):
    """The site secret is not the one the erased addresses were hashed with: checking them with
    it would let every one of them back, so nothing that adds a reader may run."""


def _forget_key(secret: bytes) -> bytes:
    """The key derived from the site secret for hashing erased addresses, and nothing else."""
    return hmac.new(secret, _FORGOTTEN_LABEL, hashlib.sha256).digest()


def forgotten_hash(secret: bytes, address_key: str) -> str:
    """The keyed hash kept of an erased address: HMAC-SHA256 over its `Address.key`, under a key
    derived from the site secret for this one purpose (so the table alone gives no address away)."""
    return hmac.new(_forget_key(secret), address_key.encode("utf-8"), hashlib.sha256).hexdigest()


def forget_key_check(secret: bytes) -> str:
    """The check value kept beside the hashes (settings `KEY_CHECK`): the same keyed hash over a
    fixed label, so a different secret is told apart without keeping the secret or any address."""
    return hmac.new(_forget_key(secret), _KEY_CHECK_LABEL, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Subscriber:
    """One row of the subscribers table."""

    id: int
    address: str
    envelope: str
    name: str
    status: str
    consent_source: str
    consent_at: str | None
    consent_ip: str | None
    created_at: str
    updated_at: str


_SUB_COLUMNS = "id, address, envelope, name, status, consent_source, consent_at, consent_ip, created_at, updated_at"


@dataclass(frozen=True)
class RowProblem:
    """A CSV row that was not imported: its line number and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class ImportRow:
    """One reader as an import brings them in (made by `importers` from a CSV row): what to store
    if the address is new, and the status that decides what happens to a reader already stored.
    There is no created_at: that is when the reader arrived in this store, the import's own time."""

    line: int
    address: Address
    name: str
    status: str
    consent_source: str
    consent_at: str | None
    consent_ip: str | None


@dataclass(frozen=True)
class Refused:
    """A row not imported because its address was erased at the reader's request (`forget`)."""

    line: int
    address: str


@dataclass(frozen=True)
class ImportReport:
    """What an import did, counted by row: new readers by status, stored readers it suppressed,
    rows of readers already on the list (unchanged), rows refused as forgotten, and bad rows.

    `refused` and `problems` list the first `MAX_LISTED` of `forgotten` and `bad_rows`.
    """

    format: str = "CSV"
    active: int = 0
    pending: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    complained: int = 0
    suppressed: int = 0
    already: int = 0
    forgotten: int = 0
    refused: tuple[Refused, ...] = ()
    bad_rows: int = 0
    problems: tuple[RowProblem, ...] = ()

    @property
    def added(self) -> int:
        """New readers, whatever their status."""
        return self.active + self.pending + self.unsubscribed + self.bounced + self.complained

    @property
    def duplicates(self) -> int:
        """Rows whose address was already on the list (stored, or earlier in the file)."""
        return self.already + self.suppressed


class Forget(Enum):
    """How a `forget` ended: erased now, erased before (only the hash is left), or unknown."""

    ERASED = "erased"
    ALREADY = "already"
    UNKNOWN = "unknown"


MAX_LISTED = 1000  # rows an import report lists by line (all of them are counted)
ForgottenPolicy = Literal["refuse", "keep", "clear"]
_SUPPRESSED_SQL = "(" + ", ".join(f"'{s}'" for s in SUPPRESSED) + ")"


def db_path(config: Config) -> Path:
    """Where a site's database lives: `<site>/.review-press/press.db`."""
    return config.state_dir / DB_NAME


class Store:
    """An open subscriber database. Use as a context manager, or call `close()`.

    A `Store` belongs to the thread that opened it (sqlite3's rule); `publish` keeps all
    database work on its main thread and hands only plain data to sending threads.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path, busy_timeout: float = BUSY_TIMEOUT) -> Store:
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
            _migrate(conn, path)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            error = storage_error(exc, path)
            if isinstance(error, StorageError):
                raise error from None
            raise DeliveryError(f"cannot open the database: {exc}", path=path) from None
        return cls(conn, path)

    @classmethod
    def for_site(cls, config: Config) -> Store:
        """Open the site's database at `.review-press/press.db`."""
        return cls.open(db_path(config))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # --- subscribers -------------------------------------------------------------------

    def add(
        self,
        address: str,
        name: str = "",
        *,
        status: str = "active",
        source: str = "cli",
        ip: str | None = None,
        now: dt.datetime | None = None,
        secret: bytes | None = None,
        forgotten: ForgottenPolicy = "refuse",
    ) -> Subscriber:
        """Add one subscriber; an address already present is a `DeliveryError` (nothing changes).

        An address erased by `forget` is refused (`forgotten="refuse"`, checked with the site
        `secret`), added with its hash kept (`"keep"`: a web signup, pending until confirmed), or
        added with its hash cleared (`"clear"`: new consent, e.g. `subscribers add --force`).
        Whenever any address was erased, every policy needs the `secret` they were hashed with
        (else `SecretMismatch`, and nothing changes).
        """
        if status not in STATUSES:
            raise DeliveryError(f"unknown status {status!r}", hint="one of " + ", ".join(STATUSES))
        try:
            addr, name = parse_address(address), check_name(name)
        except ValueError as exc:
            raise DeliveryError(f"{address!r}: {exc}") from None
        stamp = now_iso(now)
        with self.transaction() as conn:
            hashing = self._checks_forgotten(secret, hint="use the CLI")
            existing = self.find(addr.address)
            if existing is not None:
                raise DeliveryError(f"{addr.address} is already on the list ({existing.status})")
            if hashing and forgotten != "keep" and secret is not None:
                digest = forgotten_hash(secret, addr.key)
                row = conn.execute("SELECT forgotten_at FROM forgotten WHERE address_hash = ?", (digest,)).fetchone()
                if row is not None and forgotten == "refuse":
                    raise DeliveryError(
                        f"{addr.address} was erased at the reader's request ({row[0][:10]}); not added",
                        hint="add it again only with their new consent: subscribers add --force",
                    )
                conn.execute("DELETE FROM forgotten WHERE address_hash = ?", (digest,))
            cur = conn.execute(
                "INSERT INTO subscribers (address, envelope, address_key, name, status, consent_source, consent_at, consent_ip,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (addr.address, addr.envelope, addr.key, name, status, source, stamp, ip, stamp, stamp),
            )
        sub = self.get(int(cur.lastrowid or 0))
        assert sub is not None
        return sub

    def import_rows(self, rows: Iterable[ImportRow], *, secret: bytes | None = None, now: dt.datetime | None = None) -> ImportReport:
        """Store an import's rows in one transaction, streamed (the rows go through a temporary
        table, never a Python list), and count what happened to each.

        A new address is added with its first row (name, consent), and the status of that row
        unless a later row of it is suppressed and that one is not: then with the first suppressed
        row's status, so the report counts what was stored (the later rows count as `already`).
        A stored reader keeps their status unless the row is suppressed and they are not: then
        they become suppressed and their unsent deliveries are skipped. Every new reader's
        created_at and updated_at are `now`, the import's time: they arrived in this store then,
        whatever the file says (the ledger's late-joiner rule counts from it). An address erased
        by `forget` and not on the list is refused (checked with `secret`, the site secret, which
        must be the one they were hashed with). An exception from `rows` (a strict import, a
        broken file) rolls back all.
        """
        stamp = now_iso(now)
        with self.transaction() as conn:
            hashing = self._checks_forgotten(secret, hint="import with the CLI")
            digest = (lambda key: forgotten_hash(secret, key)) if hashing and secret is not None else (lambda key: None)
            conn.execute("DROP TABLE IF EXISTS temp.import_rows")
            conn.execute(
                "CREATE TEMP TABLE import_rows (line INTEGER PRIMARY KEY, address TEXT, envelope TEXT, address_key TEXT, name TEXT,"
                " status TEXT, consent_source TEXT, consent_at TEXT, consent_ip TEXT, address_hash TEXT, outcome TEXT)"
            )
            conn.executemany(
                "INSERT INTO temp.import_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (_import_values(r, digest(r.address.key)) for r in rows),
            )
            conn.execute("CREATE INDEX temp.import_rows_by_key ON import_rows (address_key, line)")
            absent = "NOT EXISTS (SELECT 1 FROM main.subscribers s WHERE s.address_key = import_rows.address_key)"
            if hashing:
                conn.execute(
                    f"UPDATE temp.import_rows SET outcome = 'forgotten' WHERE {absent}"
                    " AND address_hash IN (SELECT address_hash FROM main.forgotten)"
                )
            conn.execute(
                f"UPDATE temp.import_rows SET outcome = 'new' WHERE outcome IS NULL AND {absent}"
                " AND line = (SELECT min(r.line) FROM temp.import_rows r WHERE r.address_key = import_rows.address_key)"
            )
            # a new reader whose first row is not suppressed but a later one is: stored suppressed
            conn.execute(
                "UPDATE temp.import_rows SET status = (SELECT r.status FROM temp.import_rows r"
                f" WHERE r.address_key = import_rows.address_key AND r.status IN {_SUPPRESSED_SQL} ORDER BY r.line LIMIT 1)"
                f" WHERE outcome = 'new' AND status NOT IN {_SUPPRESSED_SQL} AND EXISTS (SELECT 1 FROM temp.import_rows r"
                f" WHERE r.address_key = import_rows.address_key AND r.status IN {_SUPPRESSED_SQL})"
            )
            conn.execute(
                "INSERT INTO main.subscribers (address, envelope, address_key, name, status, consent_source, consent_at, consent_ip,"
                " created_at, updated_at) SELECT address, envelope, address_key, name, status, consent_source, consent_at, consent_ip,"
                " ?, ? FROM temp.import_rows WHERE outcome = 'new' ORDER BY line",
                (stamp, stamp),
            )
            # the first suppressed row of each reader on the list who is not suppressed yet
            conn.execute(
                f"UPDATE temp.import_rows SET outcome = 'suppressed' WHERE outcome IS NULL AND status IN {_SUPPRESSED_SQL}"
                " AND line = (SELECT min(r.line) FROM temp.import_rows r WHERE r.address_key = import_rows.address_key"
                f" AND (r.outcome IS NULL OR r.outcome = 'suppressed') AND r.status IN {_SUPPRESSED_SQL})"
                " AND EXISTS (SELECT 1 FROM main.subscribers s WHERE s.address_key = import_rows.address_key"
                f" AND s.status NOT IN {_SUPPRESSED_SQL})"
            )
            conn.execute(
                "UPDATE main.subscribers SET status = r.status, updated_at = ? FROM temp.import_rows r"
                " WHERE r.outcome = 'suppressed' AND r.address_key = subscribers.address_key",
                (stamp,),
            )
            conn.execute(
                "UPDATE main.deliveries SET status = 'skipped', last_error = r.status, updated_at = ?"
                " FROM main.subscribers s JOIN temp.import_rows r ON r.address_key = s.address_key"
                " WHERE r.outcome = 'suppressed' AND deliveries.subscriber_id = s.id AND deliveries.status IN ('pending', 'deferred')"
                " AND deliveries.slug IN (SELECT slug FROM main.campaigns)",
                (stamp,),
            )
            counts = {"already": 0, "suppressed": 0, "forgotten": 0, **dict.fromkeys(STATUSES, 0)}
            for outcome, status, n in conn.execute("SELECT outcome, status, count(*) FROM temp.import_rows GROUP BY outcome, status"):
                counts[status if outcome == "new" else outcome or "already"] += n
            refused = tuple(
                Refused(line, address)
                for line, address in conn.execute(
                    "SELECT line, address FROM temp.import_rows WHERE outcome = 'forgotten' ORDER BY line LIMIT ?", (MAX_LISTED,)
                )
            )
            conn.execute("DROP TABLE temp.import_rows")
        return ImportReport(refused=refused, **counts)

    def _has_forgotten(self) -> bool:
        """True when any erased address is on record (then adds and imports must check hashes)."""
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM forgotten)").fetchone()[0] == 1

    def _checks_forgotten(self, secret: bytes | None, *, hint: str) -> bool:
        """Whether an add or import must look up the hashes of erased addresses (any on record).

        Then it needs the secret they were hashed with: none is a `DeliveryError`, and one whose
        check value (settings `KEY_CHECK`) differs from the stored one is a `SecretMismatch`.
        A store whose addresses were erased before the check value was kept has none to compare
        (the next `forget` keeps it).
        """
        if not self._has_forgotten():
            return False
        if secret is None:
            raise DeliveryError("the list holds erased addresses, and checking them needs the site secret", hint=hint)
        row = self.conn.execute("SELECT value FROM settings WHERE name = ?", (KEY_CHECK,)).fetchone()
        if row is not None and not hmac.compare_digest(row[0], forget_key_check(secret)):
            raise SecretMismatch(SECRET_DIFFERS, hint="nothing was changed; it is .review-press/secret when REVIEW_PRESS_SECRET is not set")
        return True

    def get(self, subscriber_id: int) -> Subscriber | None:
        row = self.conn.execute(f"SELECT {_SUB_COLUMNS} FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
        return Subscriber(*row) if row else None

    def find(self, address: str) -> Subscriber | None:
        """The subscriber with this address, whatever its case; None if absent or not an address."""
        try:
            key = parse_address(address).key
        except ValueError:
            return None
        row = self.conn.execute(f"SELECT {_SUB_COLUMNS} FROM subscribers WHERE address_key = ?", (key,)).fetchone()
        return Subscriber(*row) if row else None

    def iter_subscribers(self, statuses: Sequence[str] = (), batch: int = 1000) -> Iterator[Subscriber]:
        """Every subscriber (optionally only those with these statuses) in id order, streamed;
        a status that is not one of `STATUSES` is a `DeliveryError` naming them."""
        if unknown := [s for s in statuses if s not in STATUSES]:
            raise DeliveryError(f"unknown status {unknown[0]!r}", hint="one of " + ", ".join(STATUSES))
        last = 0
        where = f" AND status IN ({','.join('?' * len(statuses))})" if statuses else ""
        while True:
            rows = self.conn.execute(
                f"SELECT {_SUB_COLUMNS} FROM subscribers WHERE id > ?{where} ORDER BY id LIMIT ?", (last, *statuses, batch)
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield Subscriber(*row)
            last = rows[-1][0]

    def count(self) -> dict[str, int]:
        """How many subscribers have each status (every status is present, zero or not)."""
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(dict(self.conn.execute("SELECT status, count(*) FROM subscribers GROUP BY status").fetchall()))
        return counts

    def set_status(self, subscriber_id: int, status: str, now: dt.datetime | None = None) -> bool:
        """Change one subscriber's status (unsubscribe, bounce, confirm); False if no such id."""
        if status not in STATUSES:
            raise DeliveryError(f"unknown status {status!r}", hint="one of " + ", ".join(STATUSES))
        with self.transaction() as conn:
            cur = conn.execute("UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ?", (status, now_iso(now), subscriber_id))
        return cur.rowcount > 0

    def forget(self, address: str, secret: bytes, now: dt.datetime | None = None) -> Forget:
        """Erase a reader at their request (GDPR): delete their row and, by cascade, their ledger
        rows, and keep only the keyed hash of the address (see `forgotten_hash`), so that an import
        or `add` of it later is refused and reported. A bad address is a `DeliveryError`.

        The first erasure (of an empty `forgotten` table) also keeps the key's check value
        (`forget_key_check`); while any hash is on record, a `secret` with another check value is
        a `SecretMismatch` here too (its hash would never be found again), and nothing changes."""
        try:
            key = parse_address(address).key
        except ValueError as exc:
            raise DeliveryError(f"{address!r}: {exc}") from None
        digest = forgotten_hash(secret, key)
        self.conn.execute("PRAGMA secure_delete = ON")  # the erased rows' bytes are overwritten, not left in free pages
        try:
            with self.transaction() as conn:
                first = not self._checks_forgotten(secret, hint="use the CLI")
                deleted = conn.execute("DELETE FROM subscribers WHERE address_key = ?", (key,)).rowcount
                known = conn.execute("SELECT 1 FROM forgotten WHERE address_hash = ?", (digest,)).fetchone() is not None
                if deleted:
                    conn.execute(
                        "INSERT INTO forgotten (address_hash, forgotten_at) VALUES (?, ?) ON CONFLICT (address_hash) DO NOTHING",
                        (digest, now_iso(now)),
                    )
                    conn.execute(
                        "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO "
                        + ("UPDATE SET value = excluded.value" if first else "NOTHING"),
                        (KEY_CHECK, forget_key_check(secret)),
                    )
        finally:
            self.conn.execute("PRAGMA secure_delete = OFF")
        if deleted:
            # copy the WAL into the database and empty it, so its older frames no longer hold the rows
            # (best effort: a reader holding an old snapshot makes this a partial checkpoint)
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return Forget.ERASED
        return Forget.ALREADY if known else Forget.UNKNOWN

    def forgotten_at(self, address: str, secret: bytes) -> str | None:
        """When this address was erased by `forget` (None if never, or not an address)."""
        try:
            key = parse_address(address).key
        except ValueError:
            return None
        row = self.conn.execute("SELECT forgotten_at FROM forgotten WHERE address_hash = ?", (forgotten_hash(secret, key),)).fetchone()
        return row[0] if row else None

    def unsubscribe(self, subscriber_id: int, now: dt.datetime | None = None) -> bool:
        """Unsubscribe a pending or active reader and skip their unsent deliveries (pending or
        deferred: `last_error` 'unsubscribed'), in one transaction. True if their status changed;
        a reader already suppressed keeps their status (their unsent rows are skipped all the same).
        """
        stamp = now_iso(now)
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE subscribers SET status = 'unsubscribed', updated_at = ? WHERE id = ? AND status IN ('pending', 'active')",
                (stamp, subscriber_id),
            )
            # by primary key (slug, subscriber_id), one probe per campaign rather than a scan of the ledger
            conn.execute(
                "UPDATE deliveries SET status = 'skipped', last_error = 'unsubscribed', updated_at = ?"
                " WHERE slug IN (SELECT slug FROM campaigns) AND subscriber_id = ? AND status IN ('pending', 'deferred')",
                (stamp, subscriber_id),
            )
        return cur.rowcount > 0

    def reopen(self, subscriber_id: int, was: str, *, name: str, source: str, ip: str | None, now: dt.datetime | None = None) -> bool:
        """Put a reader whose status is still `was` back to pending (they asked again and must
        confirm again); a non-empty `name` replaces theirs. True if they were changed."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE subscribers SET status = 'pending', name = CASE WHEN ? = '' THEN name ELSE ? END,"
                " consent_source = ?, consent_ip = ?, updated_at = ? WHERE id = ? AND status = ?",
                (name, name, source, ip, now_iso(now), subscriber_id, was),
            )
        return cur.rowcount > 0

    def confirm(self, subscriber_id: int, *, source: str, ip: str | None, secret: bytes, now: dt.datetime | None = None) -> bool:
        """Make a pending reader active and record their consent (source, time, IP); an erased
        address they had is no longer on record, since they gave new consent. True if they were pending."""
        stamp = now_iso(now)
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE subscribers SET status = 'active', consent_source = ?, consent_at = ?, consent_ip = ?, updated_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (source, stamp, ip, stamp, subscriber_id),
            )
            row = conn.execute("SELECT address_key FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
            if cur.rowcount and row and self._has_forgotten():
                conn.execute("DELETE FROM forgotten WHERE address_hash = ?", (forgotten_hash(secret, row[0]),))
        return cur.rowcount > 0

    def ping(self) -> bool:
        """True when the database answers."""
        return self.conn.execute("SELECT 1").fetchone() == (1,)

    def export_csv(self, out: TextIO) -> int:
        """Write every subscriber as CSV (header `EXPORT_COLUMNS`), streamed; return the row count.

        Cells a spreadsheet would run as a formula (names come from the public form) are
        written with a `'` in front (`spreadsheet.neutralize_cell`); importing the file undoes it.
        """
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        n = 0
        for s in self.iter_subscribers():
            row = (s.address, s.name, s.status, s.consent_source, s.consent_at or "", s.consent_ip or "", s.created_at, s.updated_at)
            writer.writerow([neutralize_cell(cell) for cell in row])
            n += 1
        return n

    def export_csv_file(self, path: Path) -> int:
        """`export_csv` into the file `path`, whole or not at all; return the row count.

        The CSV is written to a temporary file beside `path` (mode 0600 from the start: it
        holds every address and consent IP), flushed to disk, then renamed over `path`. A full
        disk or an unwritable folder is a `StorageError` (`cannot write PATH: no space left on
        device`): the temporary file is removed and a file already at `path` stays as it was.
        """
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                n = self.export_csv(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
            with suppress(OSError):  # the rename itself on disk; not every file system lets a folder be fsynced
                folder = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
        except OSError as exc:
            raise write_error(path, exc) from None
        finally:
            if tmp is not None:
                with suppress(OSError):
                    os.unlink(tmp)
        return n


def _import_values(row: ImportRow, digest: str | None) -> tuple[object, ...]:
    """One row of the import's temporary table (its `outcome` is decided later, in SQL)."""
    a = row.address
    return (
        row.line,
        a.address,
        a.envelope,
        a.key,
        row.name,
        row.status,
        row.consent_source,
        row.consent_at,
        row.consent_ip,
        digest,
    )


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
