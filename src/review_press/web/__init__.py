"""The subscription endpoints: subscribe with double opt-in, confirm, one-click unsubscribe;
and the providers' webhooks for bounces and complaints (`webhooks`).

`create_app(site_root)` makes the ASGI app of one site. `app` is the same for the site named
by the environment variable `REVIEW_PRESS_SITE` (default: the working folder), built on first
use, so `uvicorn review_press.web:app` works without any Python of your own.

A site whose press.toml the app refuses (no `[web] url`, say) never serves a request: `run`
raises the `PressError` before anything listens (the CLI prints it and exits 1), and `app`
fails the server's startup with its message (or, under a server without lifespan events,
answers every request 503 and logs the message once, without a traceback).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from ..errors import PressError
from .app import SecurityHeaders, WebLimits, create_app, public_url
from .logs import log_config, mask_tokens_in_logs
from .ratelimit import Rate

SITE_ENV = "REVIEW_PRESS_SITE"
log = logging.getLogger("review_press.web")


class SiteApp:
    """An ASGI app that builds `create_app(site)` at its first call (the server's startup)."""

    def __init__(self, environ: os._Environ[str] | dict[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._app = None
        self._refused: PressError | None = None
        mask_tokens_in_logs()  # now: the server logs a request (`--log-level trace`: its scope) before the app sees it

    def site(self) -> Path:
        """The site folder: `$REVIEW_PRESS_SITE`, else the working folder."""
        return Path(self._environ.get(SITE_ENV) or ".")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None and self._refused is None:
            try:
                self._app = create_app(self.site())
            except PressError as exc:
                if scope["type"] == "lifespan":
                    await receive()  # lifespan.startup
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._refused = exc
                log.error("the site cannot be served: %s", exc)
        if self._app is None:
            if scope["type"] == "http":  # no lifespan events: refuse every request, never with a traceback
                refusal = PlainTextResponse("Service unavailable: the site's press.toml is incomplete.", status_code=503)
                await SecurityHeaders(refusal)(scope, receive, send)
            return
        await self._app(scope, receive, send)


app = SiteApp()


def run(site_root: Path, host: str = "127.0.0.1", port: int = 8080, *, workers: int = 1, forwarded_allow_ips: str = "127.0.0.1") -> None:
    """Serve the endpoints of the site at `site_root` with uvicorn until Ctrl-C (what `review-press web` runs).

    The site is checked first, so a bad press.toml (no `[web] url`, say) is a `PressError`
    before anything listens. `X-Forwarded-For` is believed only from `forwarded_allow_ips`
    (your reverse proxy). Every log line has its tokens masked (`logs.log_config`).
    """
    import uvicorn

    site_root = site_root.resolve()
    checked = create_app(site_root)
    options = {
        "host": host,
        "port": port,
        "proxy_headers": True,
        "forwarded_allow_ips": forwarded_allow_ips,
        "log_config": log_config(),
    }
    if workers == 1:
        uvicorn.run(checked, **options)  # type: ignore[arg-type]
        return
    os.environ[SITE_ENV] = str(site_root)  # each worker process imports `review_press.web:app`
    uvicorn.run("review_press.web:app", workers=workers, **options)  # type: ignore[arg-type]


__all__ = ["SITE_ENV", "Rate", "SiteApp", "WebLimits", "app", "create_app", "mask_tokens_in_logs", "public_url", "run"]
