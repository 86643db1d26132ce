"""Shared fixtures: a real site folder in tmp_path, made from a few lines of text."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pg_server as pg
from review_press.store import Store
from sites import write_site

SiteMaker = Callable[..., Path]
MINIMAL_TOML = 'title = "Test Site"\nbase_url = "{base_url}"\ntimezone = "UTC"\n'


@pytest.fixture
def make_site(tmp_path: Path) -> SiteMaker:
    """A factory: `make_site(posts, toml_extra="", name="site", base_url=...)` -> the site's root.

    press.toml holds only title, base_url and timezone (UTC) plus `toml_extra`, so a test
    states every other setting it relies on.
    """

    def make(posts: dict[str, str | bytes], toml_extra: str = "", name: str = "site", base_url: str = "https://example.org/") -> Path:
        return write_site(tmp_path / name, posts, MINIMAL_TOML.format(base_url=base_url) + toml_extra)

    return make


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.Server]:
    """A real PostgreSQL server for the session (see `pg_server`). Skipped where PostgreSQL is not
    installed, unless REVIEW_PRESS_REQUIRE_PG=1 (set by .ci/run), which makes that a failure."""
    if not pg.available():
        if os.environ.get("REVIEW_PRESS_REQUIRE_PG") == "1":
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed")
    with pg.running_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: pg.Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The URL (no password in it) of a fresh, empty database; its password is in PGPASSWORD."""
    monkeypatch.setenv("PGPASSWORD", pg.PASSWORD)
    monkeypatch.delenv("REVIEW_PRESS_DATABASE_URL", raising=False)
    with pg_server.fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store of each kind: an SQLite file, and a fresh PostgreSQL database (see `pg_url`)."""
    from review_press.store import SQLiteStore
    from review_press.store.postgres import PostgresStore

    if request.param == "sqlite":
        with SQLiteStore.open(tmp_path / "press.db") as store:
            yield store
    else:
        with PostgresStore.open(request.getfixturevalue("pg_url")) as store:
            yield store
