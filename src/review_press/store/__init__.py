"""The store: every SQL statement review-press runs, behind one interface (`Store`).

`open_store(config)` opens a site's store: PostgreSQL when `REVIEW_PRESS_DATABASE_URL` or
`[store] url` names one (`postgres.PostgresStore`), else SQLite in `.review-press/press.db` (the
embedded default, `SQLiteStore`). Subscribers, consent, suppression and erasure are `Store` methods
(`base`); campaigns and the delivery ledger are the functions of `ledger`; the plain data and
rules they share (addresses, rows, reports, timestamps) are in `model`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from ..config import Config, database_url_problem
from ..errors import ConfigError, PressError
from ..statedir import publish_lock
from ..storeplace import DATABASE_URL_ENV, database_url, db_path, has_store
from . import feedback, ledger
from .base import Dialect, Store
from .model import (
    EXPORT_COLUMNS,
    MAX_LISTED,
    STATUSES,
    SUPPRESSED,
    Address,
    Forget,
    ImportReport,
    ImportRow,
    Refused,
    RowProblem,
    SecretMismatch,
    Subscriber,
    check_name,
    now_iso,
    parse_address,
)
from .sqlite import MIGRATIONS, SQLiteStore, storage_error

__all__ = [
    "DATABASE_URL_ENV",
    "EXPORT_COLUMNS",
    "MAX_LISTED",
    "MIGRATIONS",
    "RAW_ERRORS",
    "STATUSES",
    "SUPPRESSED",
    "Address",
    "Dialect",
    "Forget",
    "ImportReport",
    "ImportRow",
    "Refused",
    "RowProblem",
    "SQLiteStore",
    "SecretMismatch",
    "Store",
    "Subscriber",
    "check_name",
    "database_url",
    "db_path",
    "explain_error",
    "feedback",
    "has_store",
    "ledger",
    "migrate",
    "now_iso",
    "open_store",
    "parse_address",
    "storage_error",
    "upgrade",
]


def open_store(config: Config, environ: Mapping[str, str] | None = None) -> Store:
    """Open the site's store: PostgreSQL if a URL is set (`database_url`), else the SQLite file
    (created and migrated if needed)."""
    url = database_url(config, environ)
    if url is None:
        return SQLiteStore.open(db_path(config))
    from .postgres import PostgresStore  # psycopg is loaded only by sites that use it

    # a transaction left open (its process paused, its host gone quiet) holds rows the other senders
    # skip; the server ends it well within a lease, yet never under five seconds
    return PostgresStore.open(url, idle_seconds=max(5.0, min(60.0, config.store.lease_seconds / 2)))


RAW_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)
"""Driver errors a read outside a transaction may raise unwrapped: SQLite's (the PostgreSQL store
turns every driver error into a `PressError` itself, in `postgres.Conn`)."""


def explain_error(exc: Exception, config: Config) -> PressError:
    """A driver error (one of `RAW_ERRORS`) as a user reads it: busy, full, read-only, I/O or other."""
    assert isinstance(exc, sqlite3.Error)
    return storage_error(exc, db_path(config))


def migrate(config: Config, url: str) -> dict[str, int]:
    """Copy the site's SQLite store into the empty PostgreSQL database at `url` (creating its
    schema), verify the counts, and return them by table (`store migrate --to URL`). Holds the
    publish lock and a write lock on the SQLite file while it copies."""
    from .copy import copy_store
    from .postgres import PostgresStore

    if problem := database_url_problem(url, password_allowed=True):
        raise ConfigError(f"--to {problem}")
    # the publish lock (no SQLite publish runs meanwhile) and one write transaction on the source
    # (web signups and unsubscribes wait, and the copy reads one consistent state of every table)
    with (
        publish_lock(config.state_dir),
        SQLiteStore.open(db_path(config)) as source,
        PostgresStore.open(url) as target,
        source.transaction(),
    ):
        return copy_store(source, target).counts


def upgrade(config: Config, environ: Mapping[str, str] | None = None) -> tuple[str, int | None, int]:
    """Create or upgrade the site's store schema (`store upgrade`); return (where, before, after)."""
    url = database_url(config, environ)
    if url is None:
        with SQLiteStore.open(db_path(config)) as store:
            return (store.describe(), *store.upgrade())
    from .postgres import PostgresStore

    with PostgresStore.open(url, create=False, check=False) as store:
        return (store.describe(), *store.upgrade())
