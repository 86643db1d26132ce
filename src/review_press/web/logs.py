"""Tokens never reach a log: confirm and unsubscribe tokens are masked in every log line.

A token in a URL is as good as the link it came in: anyone who reads the server's access log
could confirm or unsubscribe its reader. `MaskTokens` is a logging filter that rewrites a
record before any handler formats it: whatever follows `/confirm` and `/unsubscribe` in a
path (`/confirm/***`), and every query string whole (`?***`: a token may come as
`?token=...`, `?<token>` or `?token%3D...`), become `***`. The request line of uvicorn's
access log, other messages, their arguments of any type (the ASGI scope that
`--log-level trace` logs is a dict holding `path`, `raw_path` and `query_string`, the last
two bytes) and a traceback's text are all masked.

`review-press web` runs uvicorn with `log_config()`, which puts the filter on uvicorn's own
handlers; `mask_tokens_in_logs()` (called by `create_app`) puts it on the loggers themselves,
so `uvicorn review_press.web:app` and gunicorn with uvicorn workers mask them too, whatever
their logging configuration.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

MASK = "***"
MASKED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "gunicorn.error", "gunicorn.access", "review_press.web")
_PATH_TOKEN = re.compile(r"(/(?:confirm|unsubscribe))([^\s\"'<>]+)", re.IGNORECASE)
_QUERY = re.compile(r"\?[^\s\"'<>]+")
_MAX_DEPTH = 6  # how deep `_masked` walks nested arguments; below that, their text is masked


def _path_mask(match: re.Match[str]) -> str:
    """`/confirm/***` for `/confirm/<anything>` (`?***` after `?`; `***` right after the word)."""
    rest = match.group(2)
    return match.group(1) + (rest[0] if rest[0] in "/?" else "") + MASK


def mask_tokens(text: str) -> str:
    """`text` with every token of a confirm or unsubscribe URL replaced by `***`: all that follows
    `/confirm` or `/unsubscribe` in a path, and every query string whole."""
    return _QUERY.sub("?" + MASK, _PATH_TOKEN.sub(_path_mask, text))


def _masked(value: object, depth: int = 0) -> object:
    """A log argument with its tokens masked, whatever its type.

    Text and bytes are masked (bytes are percent-decoded first, so `raw_path` cannot spell a
    token around the mask); a mapping or sequence is masked item by item, and any
    `query_string` in it replaced whole; numbers, booleans and None are kept (for `%d`); any
    other object becomes its masked text.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return mask_tokens(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return mask_tokens(unquote(bytes(value).decode("latin-1"), encoding="latin-1"))
    if depth < _MAX_DEPTH and isinstance(value, Mapping):
        return {k: (MASK if k == "query_string" and v else _masked(v, depth + 1)) for k, v in value.items()}
    if depth < _MAX_DEPTH and isinstance(value, (list, tuple)):
        items = [_masked(v, depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return mask_tokens(str(value))


class MaskTokens(logging.Filter):
    """A logging filter that masks tokens in a record's message, arguments and traceback; it drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _masked(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = _masked(record.args)  # type: ignore[assignment]  # a dict again
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)  # what any formatter would print
        if record.exc_text:
            record.exc_text = mask_tokens(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_tokens(record.stack_info)
        return True


def mask_tokens_in_logs(names: tuple[str, ...] = MASKED_LOGGERS) -> None:
    """Put one `MaskTokens` on each of the server's loggers (idempotent: never twice on one logger)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskTokens) for f in logger.filters):
            logger.addFilter(MaskTokens())


def log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with `MaskTokens` on each of its handlers (for `uvicorn.run`)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["mask_tokens"] = {"()": f"{__name__}.MaskTokens"}
    for handler in config["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "mask_tokens"]
    return config
