"""Where a site's store is: the PostgreSQL URL (the environment, else press.toml), or the SQLite
file in the state folder.

Apart from `store` (which exports all of it) so that a build can ask whether a site has a store
without importing the store's modules: a build of a site with none never needs them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .config import Config, database_url_problem
from .errors import ConfigError

DATABASE_URL_ENV = "REVIEW_PRESS_DATABASE_URL"
DB_NAME = "press.db"


def database_url(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The PostgreSQL URL the site's store is at (the environment wins over press.toml), or None
    for the SQLite file. A bad URL in the environment is a `ConfigError` that does not quote it."""
    env = os.environ if environ is None else environ
    url = env.get(DATABASE_URL_ENV, "").strip()
    if url:
        if problem := database_url_problem(url, password_allowed=True):
            raise ConfigError(f"{DATABASE_URL_ENV} {problem}")
        return url
    return config.store.url or None


def db_path(config: Config) -> Path:
    """Where a site's SQLite database lives: `<site>/.review-press/press.db`."""
    return config.state_dir / DB_NAME


def has_store(config: Config, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the site has a store yet (reading needs none: no store means no campaign)."""
    return database_url(config, environ) is not None or db_path(config).exists()
