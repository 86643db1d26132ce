"""The post's Markdown tokens, parsed once and shared by the plain text and the lint."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from .. import markup

if TYPE_CHECKING:
    from markdown_it.token import Token


@lru_cache(maxsize=8)
def _parse(text: str) -> tuple[Token, ...]:
    return tuple(markup.parse(text))


def tokens_of(markdown: str) -> tuple[Token, ...]:
    """markdown-it tokens of `markdown` (memoised: treat them as read-only)."""
    return _parse(markdown)
