"""press.toml's `[content]` table: `sanitize_pages`, declared like the other tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from review_press.config import ContentConfig, parse_config
from review_press.errors import PressError
from sites import BASE_TOML


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(PressError) as info:
        parse_config(text, tmp_path)
    return [str(e) for e in getattr(info.value, "errors", (info.value,))]


def test_without_the_table_pages_keep_the_author_s_html(tmp_path: Path) -> None:
    config = parse_config(BASE_TOML, tmp_path)
    assert config.content == ContentConfig() and config.content.sanitize_pages is False


@pytest.mark.parametrize("value", [True, False])
def test_sanitize_pages_is_read(tmp_path: Path, value: bool) -> None:
    config = parse_config(BASE_TOML + f"\n[content]\nsanitize_pages = {str(value).lower()}\n", tmp_path)
    assert config.content.sanitize_pages is value


def test_an_empty_table_is_the_default(tmp_path: Path) -> None:
    assert parse_config(BASE_TOML + "\n[content]\n", tmp_path).content.sanitize_pages is False


def test_sanitize_pages_must_be_true_or_false_naming_the_line(tmp_path: Path) -> None:
    text = BASE_TOML + '\n[content]\nsanitize_pages = "yes"\n'
    line = text.splitlines().index('sanitize_pages = "yes"') + 1
    [message] = problems(text, tmp_path)
    assert f"press.toml:{line}: [content] sanitize_pages must be true or false, not str 'yes'" in message


def test_an_unknown_key_in_the_table_names_its_line_and_the_known_key(tmp_path: Path) -> None:
    text = BASE_TOML + "\n[content]\nsanitise_pages = true\n"
    [message] = problems(text, tmp_path)
    assert f"press.toml:{len(text.splitlines())}: [content] unknown key 'sanitise_pages'" in message
    assert "known keys: sanitize_pages" in message


def test_content_must_be_a_table(tmp_path: Path) -> None:
    text = 'content = "sanitize"\n' + BASE_TOML
    [message] = problems(text, tmp_path)
    assert "press.toml:1: content must be a table [content]" in message
