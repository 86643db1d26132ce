"""The endpoints' pages, in the site's own theme: `templates/web/*.html` extend `base.html`.

The app usually runs at another address than the static site, so every link and stylesheet
in these pages points at the site's absolute URLs. Pages are never indexed or cached, and a
page never holds a secret or a stack trace: only the words passed to it. The one page that
holds a token is the manage page, the reader's own token from its URL, for its two forms.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jinja2
from starlette.responses import HTMLResponse, JSONResponse, Response

from ..config import Config
from ..errors import BuildError
from ..pages import PageMeta
from ..theme import Theme

NOTICE = "web/notice.html"
SUBSCRIBE = "web/subscribe.html"
UNSUBSCRIBE = "web/unsubscribe.html"
MANAGE = "web/manage.html"
CONFIRM_TEXT = "web/confirm_email.txt"
CONFIRM_HTML = "web/confirm_email.html"
TEMPLATES = (NOTICE, SUBSCRIBE, UNSUBSCRIBE, MANAGE, CONFIRM_TEXT, CONFIRM_HTML)


def css_version(theme: Theme) -> str:
    """A short hash of the theme's stylesheets, so a browser fetches them again after a change."""
    h = hashlib.sha256()
    for rel, path in sorted(theme.assets().items()):
        if rel.endswith(".css"):
            h.update(path.read_bytes())
    return h.hexdigest()[:8]


class Pages:
    """Renders the endpoints' pages and their JSON twins for one site."""

    def __init__(self, config: Config, theme: Theme) -> None:
        self.config = config
        self.theme = theme
        self._css = css_version(theme)
        self._templates: dict[str, jinja2.Template] = {}
        self._env = theme.env.overlay(auto_reload=False)  # no file checks per request, `extends` included

    def html(self, template: str, title: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        """One page of `templates/web/`, with what `base.html` expects."""
        meta = PageMeta(
            title=f"{title} — {self.config.title}",
            description=self.config.description or self.config.title,
            path="",
            canonical=self.config.base_url,
            feeds=(),
            og_title=title,
            noindex=True,
        )
        body = self.render(template, meta=meta, href=self.config.url, css_version=self._css, heading=title, **context)
        return HTMLResponse(body, status_code=status, headers=headers)

    def render(self, name: str, **context: Any) -> str:
        """Render a template compiled once at startup (no file checks per request)."""
        template = self._templates.get(name) or self._load(name)
        try:
            return template.render(**context)
        except jinja2.TemplateError as exc:
            raise BuildError(f"template {name}: {exc.message}") from None

    def notice(
        self, title: str, *paragraphs: str, status: int = 200, as_json: bool = False, headers: dict[str, str] | None = None
    ) -> Response:
        """A one-message page, or `{"ok": ..., "message": ...}` for a client that sent or asked for JSON."""
        if as_json:
            message = " ".join((title, *paragraphs))
            return JSONResponse({"ok": status < 400, "message": message}, status_code=status, headers=headers)
        return self.html(NOTICE, title, status, headers, paragraphs=paragraphs)

    def warm(self) -> None:
        """Compile every template now, so a broken theme fails at startup, not on a request."""
        for name in TEMPLATES:
            self._load(name)

    def _load(self, name: str) -> jinja2.Template:
        try:
            template = self._env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise BuildError(f"template error: {exc.message}", path=exc.filename or name, line=exc.lineno) from None
        except jinja2.TemplateNotFound:
            raise BuildError(f"template {name!r} not found", hint="looked in " + ", ".join(map(str, self.theme.dirs))) from None
        self._templates[name] = template
        return template
