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
import io
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from email_validator import EmailNotValidError, validate_email

from .config import Config
from .errors import DeliveryError

DB_NAME = "press.db"
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
)


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


def check_name(name: str) -> str:
    """A display name, stripped; a line break (header injection) raises `ValueError`."""
    if "\r" in name or "\n" in name:
        raise ValueError("the name contains a line break")
    if len(name) > 200:
        raise ValueError("the name is longer than 200 characters")
    return name.strip()


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
class ImportReport:
    """What an import did: rows added, duplicates skipped (in the file or the store), bad rows."""

    added: int
    duplicates: int
    problems: tuple[RowProblem, ...]


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
    def open(cls, path: Path) -> Store:
        """Open (creating if needed) and migrate the database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            _migrate(conn, path)
        except sqlite3.DatabaseError as exc:
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
        """One write transaction (BEGIN IMMEDIATE): all of it commits, or none of it."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

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
    ) -> Subscriber:
        """Add one subscriber; an address already present is a `DeliveryError` (nothing changes)."""
        if status not in STATUSES:
            raise DeliveryError(f"unknown status {status!r}", hint="one of " + ", ".join(STATUSES))
        try:
            addr, name = parse_address(address), check_name(name)
        except ValueError as exc:
            raise DeliveryError(f"{address!r}: {exc}") from None
        stamp = now_iso(now)
        with self.transaction() as conn:
            existing = self.find(addr.address)
            if existing is not None:
                raise DeliveryError(f"{addr.address} is already on the list ({existing.status})")
            cur = conn.execute(
                "INSERT INTO subscribers (address, envelope, address_key, name, status, consent_source, consent_at, consent_ip,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (addr.address, addr.envelope, addr.key, name, status, source, stamp, ip, stamp, stamp),
            )
        sub = self.get(int(cur.lastrowid or 0))
        assert sub is not None
        return sub

    def import_csv(self, path: Path, *, source: str | None = None, strict: bool = False, now: dt.datetime | None = None) -> ImportReport:
        """Import a CSV with an `email` column (and optionally `name`) in one transaction.

        Bad rows are reported by line number and skipped (with `strict`, any bad row aborts
        the import). Duplicates, within the file or of stored addresses, are skipped whatever
        their case; a stored address is never changed, so an unsubscribed or bounced reader is
        never re-activated. A file that cannot be read as CSV raises `DeliveryError` and
        changes nothing.
        """
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DeliveryError(f"cannot read: {exc.strerror}", path=path) from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise DeliveryError(
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", path=path, line=line, hint="save the file as UTF-8"
            ) from None
        del raw
        if not text.strip():
            raise DeliveryError("the file is empty", path=path, line=1, hint="the first row must be a header with an 'email' column")
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [h.strip().lower() for h in next(reader)]
        except csv.Error as exc:
            raise DeliveryError(f"not a CSV file: {exc}", path=path, line=1) from None
        if "email" not in header:
            raise DeliveryError(
                f"no 'email' column in the header row ({', '.join(header) or 'empty'})",
                path=path,
                line=1,
                hint="the first row must name the columns, e.g. email,name",
            )
        email_at, name_at = header.index("email"), header.index("name") if "name" in header else None
        stamp, problems, valid = now_iso(now), [], 0
        source = source or f"import:{path.name}"

        def rows() -> Iterator[tuple[str, ...]]:
            nonlocal valid
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise DeliveryError(f"not valid CSV: {exc}", path=path, line=reader.line_num) from None
                if not row or not any(cell.strip() for cell in row):
                    continue
                try:
                    if len(row) <= email_at:
                        raise ValueError("no address (the row has too few columns)")
                    addr = parse_address(row[email_at])
                    name = check_name(row[name_at]) if name_at is not None and name_at < len(row) else ""
                except ValueError as exc:
                    problems.append(RowProblem(reader.line_num, f"{row[email_at] if len(row) > email_at else ''!r}: {exc}"))
                    if strict:
                        raise DeliveryError(
                            f"bad row: {exc}", path=path, line=reader.line_num, hint="fix the row, or import without --strict"
                        ) from None
                    continue
                valid += 1
                yield (addr.address, addr.envelope, addr.key, name, source, stamp, stamp, stamp)

        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO subscribers (address, envelope, address_key, name, status, consent_source, consent_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?) ON CONFLICT (address_key) DO NOTHING",
                rows(),
            )
            added = conn.total_changes - before
        return ImportReport(added=added, duplicates=valid - added, problems=tuple(problems))

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
        """Every subscriber (optionally only those with these statuses) in id order, streamed."""
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

    def remove(self, address: str) -> bool:
        """Delete a subscriber and their ledger rows (erasure on request); False if absent."""
        sub = self.find(address)
        if sub is None:
            return False
        with self.transaction() as conn:
            conn.execute("DELETE FROM subscribers WHERE id = ?", (sub.id,))
        return True

    def export_csv(self, out: TextIO) -> int:
        """Write every subscriber as CSV (header `EXPORT_COLUMNS`), streamed; return the row count."""
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        n = 0
        for s in self.iter_subscribers():
            writer.writerow(
                (s.address, s.name, s.status, s.consent_source, s.consent_at or "", s.consent_ip or "", s.created_at, s.updated_at)
            )
            n += 1
        return n


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
