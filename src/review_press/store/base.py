"""The store's interface and every SQL statement both databases share: subscribers, consent,
suppression, erasure and export. The ledger's statements are in `ledger`; what differs between
SQLite and PostgreSQL (opening, transactions, schema, errors, a few functions) is in `sqlite`
and `postgres`, each a `Store` with its own `Dialect`.

The SQL is written once, with `?` placeholders, in the dialect both databases speak (`ON
CONFLICT`, `UPDATE ... FROM`, `RETURNING`, temporary tables); a statement that must differ
takes its piece from `Store.dialect`.
"""

from __future__ import annotations

import csv
import datetime as dt
import hmac
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..errors import DeliveryError, write_error
from ..spreadsheet import neutralize_cell
from .model import (
    EXPORT_COLUMNS,
    FREQUENCIES,
    KEY_CHECK,
    MAX_LISTED,
    SECRET_DIFFERS,
    STATUSES,
    SUPPRESSED,
    TOPIC_SEPARATOR,
    Forget,
    ForgottenPolicy,
    ImportReport,
    ImportRow,
    Refused,
    SecretMismatch,
    Subscriber,
    check_name,
    forget_key_check,
    forgotten_hash,
    now_iso,
    parse_address,
    topic_key,
)

_SUB_COLUMNS = (
    "id, address, envelope, name, status, consent_source, consent_at, consent_ip, created_at, updated_at, status_reason, status_at,"
    " frequency, prefs_at"
)
_SUPPRESSED_SQL = "(" + ", ".join(f"'{s}'" for s in SUPPRESSED) + ")"


def _imported_reason(row: str = "") -> str:
    """SQL for an imported reader's status reason (from the import row `row`): none while mailable,
    else the file's own (our export keeps it) or how they came ("imported as bounced")."""
    return (
        f"CASE WHEN {row}status IN ('pending', 'active') THEN '' WHEN {row}reason <> '' THEN {row}reason"
        f" ELSE 'imported as ' || {row}status END"
    )


class Cursor(Protocol):
    """What the store reads from a statement (sqlite3's and psycopg's cursors both have it)."""

    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection that runs `?`-placeholder SQL (sqlite3's own; psycopg's behind `postgres.Conn`)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Cursor: ...


@dataclass(frozen=True)
class Dialect:
    """The pieces of SQL and the abilities that differ between databases.

    `greatest` is the two-argument maximum (`max` in SQLite, `greatest` in PostgreSQL);
    `domain_of` the lower-cased domain of a subscriber `s`'s envelope address;
    `skip_locked` ends a claiming SELECT so concurrent senders take different rows, and
    `for_update` a SELECT whose rows the transaction must hold until it commits;
    `many_senders` says whether several processes may send one campaign at once;
    `lines_of` aggregates a text column into one value, a row per line (NULL: no rows).
    """

    name: str
    greatest: str
    domain_of: str
    skip_locked: str
    for_update: str
    many_senders: bool
    lines_of: str


class Store(ABC):
    """An open subscriber database: subscribers, consent, suppression, campaigns and the ledger.
    Use as a context manager, or call `close()`. Open one with `review_press.store.open_store`.

    Subscribers are streamed (`iter_subscribers`, `export_csv`): nothing here holds a whole list.
    """

    conn: Connection
    dialect: Dialect

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Connection]:
        """One write transaction: all of it commits, or none of it (a `StorageError` says why)."""

    @abstractmethod
    def erasing(self) -> AbstractContextManager[None]:
        """Around a transaction that erases readers: whatever this database does so their bytes go."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def schema_version(self) -> int | None:
        """The schema's version (None: no tables yet)."""

    @abstractmethod
    def upgrade(self) -> tuple[int | None, int]:
        """Bring the schema to the newest version this code knows; return (before, after)."""

    @abstractmethod
    def id_high_water(self) -> int:
        """The highest subscriber id ever given (deleted ones too): ids are never reused."""

    @abstractmethod
    def set_id_high_water(self, value: int) -> None:
        """Make the next subscriber id greater than `value` (after a copy; inside its transaction)."""

    def refresh_statistics(self) -> None:
        """After a large change to the ledger (a campaign filled): let the query planner see the
        new row counts at once, not when a background job gets to it. Nothing to do by default."""
        return None

    @property
    def broken(self) -> bool:
        """Whether the connection is gone and the store must be opened again (a server restart)."""
        return False

    def clock_skew(self) -> float:
        """Seconds this host's clock is ahead of the store's (one file on this host: none)."""
        return 0.0

    def preparing(self) -> AbstractContextManager[None]:
        """Around starting and filling campaigns: where several senders share the store, only one
        process at a time may do it (one sender: its publish lock already says so)."""
        return nullcontext()

    @abstractmethod
    def describe(self) -> str:
        """Where the store is, for messages (a path, or a URL without its password)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        topics: Sequence[str] = (),
        frequency: str = "each",
        welcome: bool = False,
    ) -> Subscriber:
        """Add one subscriber; an address already present is a `DeliveryError` (nothing changes).

        `topics` and `frequency` are what they chose (`set_preferences`); `welcome` queues the
        welcome email for an active reader in the same transaction (`mailings.queue_welcome`).

        An address erased by `forget` is refused (`forgotten="refuse"`, checked with the site
        `secret`), added with its hash kept (`"keep"`: a web signup, pending until confirmed), or
        added with its hash cleared (`"clear"`: new consent, e.g. `subscribers add --force`).
        Whenever any address was erased, every policy needs the `secret` they were hashed with
        (else `SecretMismatch`, and nothing changes).
        """
        if status not in STATUSES:
            raise DeliveryError(f"unknown status {status!r}", hint="one of " + ", ".join(STATUSES))
        _known_frequency(frequency)
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
            new_id = conn.execute(
                "INSERT INTO subscribers (address, envelope, address_key, name, status, consent_source, consent_at, consent_ip,"
                " created_at, updated_at, status_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (addr.address, addr.envelope, addr.key, name, status, source, stamp, ip, stamp, stamp, stamp),
            ).fetchone()[0]
            _set_topics(conn, new_id, topics, frequency)
            if welcome and status == "active":
                queue_welcome(conn, new_id, stamp)
        sub = self.get(new_id)
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
            conn.execute("DROP TABLE IF EXISTS import_rows")
            conn.execute(
                "CREATE TEMP TABLE import_rows (line INTEGER PRIMARY KEY, address TEXT, envelope TEXT, address_key TEXT, name TEXT,"
                " status TEXT, consent_source TEXT, consent_at TEXT, consent_ip TEXT, address_hash TEXT, outcome TEXT, reason TEXT,"
                " topics TEXT, frequency TEXT)"
            )
            conn.executemany(
                "INSERT INTO import_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (_import_values(r, digest(r.address.key)) for r in rows),
            )
            conn.execute("CREATE INDEX import_rows_by_key ON import_rows (address_key, line)")
            absent = "NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.address_key = import_rows.address_key)"
            if hashing:
                conn.execute(
                    f"UPDATE import_rows SET outcome = 'forgotten' WHERE {absent} AND address_hash IN (SELECT address_hash FROM forgotten)"
                )
            conn.execute(
                f"UPDATE import_rows SET outcome = 'new' WHERE outcome IS NULL AND {absent}"
                " AND line = (SELECT min(r.line) FROM import_rows r WHERE r.address_key = import_rows.address_key)"
            )
            # a new reader whose first row is not suppressed but a later one is: stored suppressed
            conn.execute(
                "UPDATE import_rows SET status = (SELECT r.status FROM import_rows r"
                f" WHERE r.address_key = import_rows.address_key AND r.status IN {_SUPPRESSED_SQL} ORDER BY r.line LIMIT 1)"
                f" WHERE outcome = 'new' AND status NOT IN {_SUPPRESSED_SQL} AND EXISTS (SELECT 1 FROM import_rows r"
                f" WHERE r.address_key = import_rows.address_key AND r.status IN {_SUPPRESSED_SQL})"
            )
            conn.execute(
                "INSERT INTO subscribers (address, envelope, address_key, name, status, consent_source, consent_at, consent_ip,"
                " created_at, updated_at, status_at, status_reason, frequency) SELECT address, envelope, address_key, name, status,"
                f" consent_source, consent_at, consent_ip, ?, ?, ?, {_imported_reason()}, frequency"
                " FROM import_rows WHERE outcome = 'new' ORDER BY line",
                (stamp, stamp, stamp),
            )
            # the topics of each new reader (of their first row); a reader already on the list keeps their own
            chosen = conn.execute(
                "SELECT s.id, r.topics FROM import_rows r JOIN subscribers s ON s.address_key = r.address_key"
                " WHERE r.outcome = 'new' AND r.topics <> ''"
            )
            conn.executemany(
                "INSERT INTO subscriber_topics (subscriber_id, topic_key, topic) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                sorted(
                    {(sid, topic_key(topic), topic) for sid, topics in chosen for topic in topics.split("\n")}
                ),  # no topic holds a line break
            )
            # the first suppressed row of each reader on the list who is not suppressed yet
            conn.execute(
                f"UPDATE import_rows SET outcome = 'suppressed' WHERE outcome IS NULL AND status IN {_SUPPRESSED_SQL}"
                " AND line = (SELECT min(r.line) FROM import_rows r WHERE r.address_key = import_rows.address_key"
                f" AND (r.outcome IS NULL OR r.outcome = 'suppressed') AND r.status IN {_SUPPRESSED_SQL})"
                " AND EXISTS (SELECT 1 FROM subscribers s WHERE s.address_key = import_rows.address_key"
                f" AND s.status NOT IN {_SUPPRESSED_SQL})"
            )
            conn.execute(
                f"UPDATE subscribers SET status = r.status, status_reason = {_imported_reason('r.')},"
                " status_at = ?, updated_at = ?"
                " FROM import_rows r WHERE r.outcome = 'suppressed' AND r.address_key = subscribers.address_key",
                (stamp, stamp),
            )
            conn.execute(
                "UPDATE deliveries SET status = 'skipped', last_error = r.status, updated_at = ?"
                " FROM subscribers s JOIN import_rows r ON r.address_key = s.address_key"
                " WHERE r.outcome = 'suppressed' AND deliveries.subscriber_id = s.id AND deliveries.status IN ('pending', 'deferred')"
                " AND deliveries.slug IN (SELECT slug FROM campaigns)",
                (stamp,),
            )
            counts = {"already": 0, "suppressed": 0, "forgotten": 0, **dict.fromkeys(STATUSES, 0)}
            for outcome, status, n in conn.execute("SELECT outcome, status, count(*) FROM import_rows GROUP BY outcome, status"):
                counts[status if outcome == "new" else outcome or "already"] += n
            refused = tuple(
                Refused(line, address)
                for line, address in conn.execute(
                    "SELECT line, address FROM import_rows WHERE outcome = 'forgotten' ORDER BY line LIMIT ?", (MAX_LISTED,)
                )
            )
            conn.execute("DROP TABLE import_rows")
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
        return self._subscribers([row])[0] if row else None

    def _subscribers(self, rows: Sequence[Sequence[Any]]) -> list[Subscriber]:
        """Subscriber rows (`_SUB_COLUMNS`) with the topics each one chose (one query for them all)."""
        if not rows:
            return []
        ids = [row[0] for row in rows]
        topics: dict[int, list[str]] = {}
        for sid, topic in self.conn.execute(
            f"SELECT subscriber_id, topic FROM subscriber_topics WHERE subscriber_id IN ({', '.join('?' * len(ids))})"
            " ORDER BY subscriber_id, topic",
            ids,
        ):
            topics.setdefault(sid, []).append(topic)
        return [Subscriber(*row, topics=tuple(topics.get(row[0], ()))) for row in rows]

    def find(self, address: str) -> Subscriber | None:
        """The subscriber with this address, whatever its case; None if absent or not an address."""
        try:
            key = parse_address(address).key
        except ValueError:
            return None
        row = self.conn.execute(f"SELECT {_SUB_COLUMNS} FROM subscribers WHERE address_key = ?", (key,)).fetchone()
        return self._subscribers([row])[0] if row else None

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
            yield from self._subscribers(rows)
            last = rows[-1][0]

    def count(self) -> dict[str, int]:
        """How many subscribers have each status (every status is present, zero or not)."""
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(dict(self.conn.execute("SELECT status, count(*) FROM subscribers GROUP BY status").fetchall()))
        return counts

    def set_status(self, subscriber_id: int, status: str, now: dt.datetime | None = None, *, reason: str = "") -> bool:
        """Change one subscriber's status (unsubscribe, bounce, confirm), saying why; False if no such id."""
        if status not in STATUSES:
            raise DeliveryError(f"unknown status {status!r}", hint="one of " + ", ".join(STATUSES))
        with self.transaction() as conn:
            stamp = now_iso(now)
            cur = conn.execute(
                "UPDATE subscribers SET status = ?, status_reason = ?, status_at = ?, updated_at = ? WHERE id = ?",
                (status, reason, stamp, stamp, subscriber_id),
            )
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
        with self.erasing(), self.transaction() as conn:
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
        if deleted:
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
        with self.transaction() as conn:
            return suppress_reader(conn, subscriber_id, "unsubscribed", "unsubscribed", now_iso(now), ("pending", "active"))

    def reopen(self, subscriber_id: int, was: str, *, name: str, source: str, ip: str | None, now: dt.datetime | None = None) -> bool:
        """Put a reader whose status is still `was` back to pending (they asked again and must
        confirm again); a non-empty `name` replaces theirs. True if they were changed."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE subscribers SET status = 'pending', status_reason = '', status_at = ?, name = CASE WHEN ? = '' THEN name ELSE ? END,"
                " consent_source = ?, consent_ip = ?, updated_at = ? WHERE id = ? AND status = ?",
                (now_iso(now), name, name, source, ip, now_iso(now), subscriber_id, was),
            )
        return cur.rowcount > 0

    def confirm(
        self, subscriber_id: int, *, source: str, ip: str | None, secret: bytes, now: dt.datetime | None = None, welcome: bool = False
    ) -> bool:
        """Make a pending reader active and record their consent (source, time, IP); an erased
        address they had is no longer on record, since they gave new consent. `welcome`: queue the
        welcome email in the same transaction (`mailings.queue_welcome`). True if they were pending."""
        stamp = now_iso(now)
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE subscribers SET status = 'active', status_reason = '', status_at = ?, consent_source = ?, consent_at = ?,"
                " consent_ip = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
                (stamp, source, stamp, ip, stamp, subscriber_id),
            )
            row = conn.execute("SELECT address_key FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
            if cur.rowcount and row and self._has_forgotten():
                conn.execute("DELETE FROM forgotten WHERE address_hash = ?", (forgotten_hash(secret, row[0]),))
            if cur.rowcount and welcome:
                queue_welcome(conn, subscriber_id, stamp)
        return cur.rowcount > 0

    def set_preferences(
        self, subscriber_id: int, *, topics: Sequence[str] | None = None, frequency: str | None = None, now: dt.datetime | None = None
    ) -> bool:
        """Change what a pending or active reader gets: their `topics` (none: every post) and
        `frequency` ('each' or 'weekly'); None leaves one as it is. From now on they are owed the
        campaigns that start after (`ledger.fill`), never earlier ones. False if no such reader
        (or one who left)."""
        if frequency is not None:
            _known_frequency(frequency)
        stamp = now_iso(now)
        with self.transaction() as conn:
            row = conn.execute(
                f"SELECT frequency FROM subscribers WHERE id = ? AND status IN ('pending', 'active'){self.dialect.for_update}",
                (subscriber_id,),
            ).fetchone()
            if row is None:
                return False
            conn.execute("UPDATE subscribers SET prefs_at = ?, updated_at = ? WHERE id = ?", (stamp, stamp, subscriber_id))
            if topics is not None:
                conn.execute("DELETE FROM subscriber_topics WHERE subscriber_id = ?", (subscriber_id,))
            _set_topics(conn, subscriber_id, topics or (), frequency or row[0])
        return True

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
            row = (
                s.address,
                s.name,
                s.status,
                s.consent_source,
                s.consent_at or "",
                s.consent_ip or "",
                s.created_at,
                s.updated_at,
                s.status_reason,
                s.status_at or "",
                TOPIC_SEPARATOR.join(s.topics),
                s.frequency,
            )
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


WELCOME = ":welcome"  # the welcome email's campaign key (see `mailings`): no post's slug holds a colon


def queue_welcome(conn: Connection, subscriber_id: int, stamp: str) -> None:
    """Inside the caller's transaction (the one that makes the reader active): a pending welcome
    for them, unless they have one already (a row sent, failed or in flight stays as it is; one
    skipped because they left before it went is pending again)."""
    conn.execute("INSERT INTO campaigns (slug, started_at, kind) VALUES (?, ?, 'welcome') ON CONFLICT (slug) DO NOTHING", (WELCOME, stamp))
    conn.execute(
        "INSERT INTO deliveries (slug, subscriber_id, status, created_at, updated_at) VALUES (?, ?, 'pending', ?, ?)"
        " ON CONFLICT (slug, subscriber_id) DO UPDATE SET status = 'pending', last_error = NULL, updated_at = excluded.updated_at"
        " WHERE deliveries.status = 'skipped'",
        (WELCOME, subscriber_id, stamp, stamp),
    )


def _known_frequency(frequency: str) -> None:
    """`DeliveryError` unless `frequency` is one of `FREQUENCIES`."""
    if frequency not in FREQUENCIES:
        raise DeliveryError(f"unknown frequency {frequency!r}", hint="one of " + ", ".join(FREQUENCIES))


def _set_topics(conn: Connection, subscriber_id: int, topics: Sequence[str], frequency: str) -> None:
    """Inside the caller's transaction: add `topics` to a reader's (by `topic_key`) and set their `frequency`."""
    conn.execute("UPDATE subscribers SET frequency = ? WHERE id = ?", (frequency, subscriber_id))
    if topics:
        conn.executemany(
            "INSERT INTO subscriber_topics (subscriber_id, topic_key, topic) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            sorted({(subscriber_id, topic_key(t), t) for t in topics}),
        )


def suppress_reader(conn: Connection, subscriber_id: int, status: str, reason: str, stamp: str, unless: Sequence[str]) -> bool:
    """Give a reader a suppressed `status` (unsubscribed, bounced, complained) with its `reason`,
    when their status is one of `unless`, and skip their unsent deliveries (pending or deferred,
    `last_error` the status) whatever it was: the one statement pair every way of leaving takes
    (unsubscribe, a bounce, a complaint). Inside the caller's transaction, the subscriber row
    first (the order every transaction locks in). True if their status changed."""
    marks = ", ".join("?" * len(unless))
    cur = conn.execute(
        f"UPDATE subscribers SET status = ?, status_reason = ?, status_at = ?, updated_at = ? WHERE id = ? AND status IN ({marks})",
        (status, reason, stamp, stamp, subscriber_id, *unless),
    )
    # by primary key (slug, subscriber_id), one probe per campaign rather than a scan of the ledger
    conn.execute(
        "UPDATE deliveries SET status = 'skipped', last_error = ?, updated_at = ?"
        " WHERE slug IN (SELECT slug FROM campaigns) AND subscriber_id = ? AND status IN ('pending', 'deferred')",
        (status, stamp, subscriber_id),
    )
    return cur.rowcount > 0


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
        row.reason,
        "\n".join(row.topics),
        row.frequency if row.frequency in FREQUENCIES else "each",
    )
