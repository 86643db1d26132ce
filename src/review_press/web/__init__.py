"""The subscription endpoints: subscribe with double opt-in, confirm, one-click unsubscribe.

`create_app(site_root)` makes the ASGI app of one site. `app` is the same for the site named
by the environment variable `REVIEW_PRESS_SITE` (default: the working folder), built on first
use, so `uvicorn review_press.web:app` works without any Python of your own.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.types import Receive, Scope, Send

from ..errors import PressError
from .app import WebLimits, create_app
from .ratelimit import Rate

SITE_ENV = "REVIEW_PRESS_SITE"


class SiteApp:
    """An ASGI app that builds `create_app(site)` at its first call (the server's startup)."""

    def __init__(self, environ: os._Environ[str] | dict[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._app = None

    def site(self) -> Path:
        """The site folder: `$REVIEW_PRESS_SITE`, else the working folder."""
        return Path(self._environ.get(SITE_ENV) or ".")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            try:
                self._app = create_app(self.site())
            except PressError as exc:
                if scope["type"] != "lifespan":
                    raise
                await receive()  # lifespan.startup
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
        await self._app(scope, receive, send)


app = SiteApp()


def run(site_root: Path, host: str = "127.0.0.1", port: int = 8080, *, workers: int = 1, forwarded_allow_ips: str = "127.0.0.1") -> None:
    """Serve the endpoints of the site at `site_root` with uvicorn until Ctrl-C (what `review-press web` runs).

    The site is checked first, so a bad press.toml is a `PressError` before anything listens.
    `X-Forwarded-For` is believed only from `forwarded_allow_ips` (your reverse proxy).
    """
    import uvicorn

    site_root = site_root.resolve()
    checked = create_app(site_root)
    options = {"host": host, "port": port, "proxy_headers": True, "forwarded_allow_ips": forwarded_allow_ips}
    if workers == 1:
        uvicorn.run(checked, **options)  # type: ignore[arg-type]
        return
    os.environ[SITE_ENV] = str(site_root)  # each worker process imports `review_press.web:app`
    uvicorn.run("review_press.web:app", workers=workers, **options)  # type: ignore[arg-type]


__all__ = ["SITE_ENV", "Rate", "SiteApp", "WebLimits", "app", "create_app", "run"]
