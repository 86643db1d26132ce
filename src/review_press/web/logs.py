"""Tokens never reach a log: confirm and unsubscribe tokens are masked in every log line.

A token in a URL is as good as the link it came in: anyone who reads the server's access log
could confirm or unsubscribe its reader. `MaskTokens` is a logging filter that rewrites a
record before any handler formats it: the path segment after `/confirm/` and
`/unsubscribe/`, and every query value (`?token=...`), become `***`. The request line of
uvicorn's access log, other messages, their arguments and a traceback's text are all masked.

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

MASK = "***"
MASKED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "gunicorn.error", "gunicorn.access", "review_press.web")
_PATH_TOKEN = re.compile(r"(/(?:confirm|unsubscribe)/)[^\s?#\"'<>]+", re.IGNORECASE)
_QUERY_VALUE = re.compile(r"([?&][^\s=&#\"'<>]*=)[^\s&#\"'<>]+")


def mask_tokens(text: str) -> str:
    """`text` with every token of a confirm or unsubscribe URL (path segment or query value) replaced by `***`."""
    return _QUERY_VALUE.sub(rf"\g<1>{MASK}", _PATH_TOKEN.sub(rf"\g<1>{MASK}", text))


def _masked(value: object) -> object:
    return mask_tokens(value) if isinstance(value, str) else value


class MaskTokens(logging.Filter):
    """A logging filter that masks tokens in a record's message, arguments and traceback; it drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: _masked(v) for k, v in record.args.items()}
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
