"""What every answer of the app carries, and what it answers when something fails: the
security headers (`SecurityHeaders`, around everything), the themed 404/405 page, the 503 of a
busy database and the bare 500 page, each as JSON for a client that sent or asks for JSON.
"""

from __future__ import annotations

import html
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import StorageError
from ..store import RAW_ERRORS, explain_error
from .forms import media_type

log = logging.getLogger("review_press.web")

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # a token in this page's URL never reaches the site's logs
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"cache-control", b"no-store"),
)
RETRY_AFTER_BUSY = "30"  # seconds a client should wait after a 503 for a busy (or full) database


def wants_json(request: Request) -> bool:
    """True when the client sent JSON, or asks for JSON rather than HTML."""
    accept = request.headers.get("accept", "")
    return media_type(request) == "application/json" or ("application/json" in accept and "text/html" not in accept)


async def http_error(request: Request, exc: Exception) -> Response:
    """404, 405 and other HTTP errors as a themed page; the detail is a fixed phrase."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    titles = {404: "Page not found", 405: "Method not allowed"}
    headers = getattr(exc, "headers", None)
    return request.app.state.web.pages.notice(
        titles.get(status, "Something went wrong"), status=status, as_json=wants_json(request), headers=headers
    )


def bare_page(title: str, text: str, status: int, as_json: bool = False, headers: dict[str, str] | None = None) -> Response:
    """A short page that loads nothing (no stylesheet, image or script: no request, so no Referer,
    leaves it), for failures, when the theme itself may be what failed; or its JSON twin."""
    if as_json:
        return JSONResponse({"ok": False, "message": f"{title}. {text}"}, status_code=status, headers=headers)
    t, x = html.escape(title), html.escape(text)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{t}</title></head>'
        f'<body style="font:17px/1.5 Georgia,serif;max-width:36rem;margin:3rem auto;padding:0 1rem"><h1>{t}</h1><p>{x}</p></body></html>'
    )
    return Response(body, status_code=status, headers=headers, media_type="text/html")


async def unavailable(request: Request, exc: Exception) -> Response:
    """The database is busy in another process (past the store's wait), full or read-only: 503
    with Retry-After and a short page; one log line, no traceback (nothing was half-done).

    A raw database error (a read the store does not wrap) is read the store's way
    (`store.explain_error`): busy, full, read-only or I/O is this 503, anything else a 500.
    """
    if isinstance(exc, RAW_ERRORS):
        problem = explain_error(exc, request.app.state.web.config)
        if not isinstance(problem, StorageError):
            raise exc
        exc = problem
    log.warning("answered 503: %s", exc)
    return bare_page(
        "Service busy",
        "Please try again in a minute.",
        503,
        as_json=wants_json(request),
        headers={"Retry-After": RETRY_AFTER_BUSY},
    )


async def server_error(request: Request, exc: Exception) -> Response:
    """Any unexpected failure: a short 500 page that loads nothing; the traceback goes to the server log only."""
    return bare_page("Something went wrong", "Please try again later.", 500, as_json=wants_json(request))


FALLBACK_500 = (b"content-type", b"text/plain; charset=utf-8")


class SecurityHeaders:
    """Adds no-sniff, no-referrer, no-framing, a CSP and no-store to every HTTP response.

    It wraps the whole app, outside Starlette's `ServerErrorMiddleware` (see `WebApp`), so the
    500 page of an unexpected failure carries them too. A failure that escapes before any
    response started is answered with a plain 500 (with the headers) here. Either way, once
    the answer is complete the error goes to the server's log (`uvicorn.error`, tokens
    masked, as uvicorn would log it) and goes no further, so the server keeps the connection
    open for the client's next request; only an answer cut off half-way is left to the server.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = complete = False

        async def add_headers(message: Message) -> None:
            nonlocal started, complete
            if message["type"] == "http.response.start":
                started = True
                ours = {name for name, _ in SECURITY_HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in ours]
                message["headers"] = [*kept, *SECURITY_HEADERS]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, add_headers)
        except Exception:
            if not started:
                body = b"Something went wrong."
                headers = [FALLBACK_500, (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]
                await send({"type": "http.response.start", "status": 500, "headers": headers})
                await send({"type": "http.response.body", "body": body})
            elif not complete:
                raise
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")


class WebApp(Starlette):
    """Starlette with `SecurityHeaders` around everything, its error middleware included."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())
