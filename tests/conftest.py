"""Shared fixtures: a real site folder in tmp_path, made from a few lines of text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

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
