"""Markdown to HTML: CommonMark + tables, footnotes, strikethrough, highlighted code.

Also the small text jobs every edition needs: the summary (before `<!-- more -->`, else the
first paragraph), plain text of an HTML fragment, and making URLs absolute for feeds and
email, where relative links break.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urljoin

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.footnote import footnote_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

MORE = "<!-- more -->"
_FORMATTER = HtmlFormatter(cssclass="highlight", wrapcode=True)
_INLINE = HtmlFormatter(nowrap=True)  # markdown-it keeps output that starts with <pre> as it is
_FOOTNOTE_REF = re.compile(r"\[\^[^\]\s]+\]")
_URL_ATTR = re.compile(r"""(\s(?:href|src|poster)\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_SRCSET = re.compile(r"""(\ssrcset\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def _highlight(code: str, lang: str, _attrs: str) -> str:
    """Pygments for a fenced block with a known language; "" lets markdown-it escape it."""
    if not lang:
        return ""
    try:
        lexer = get_lexer_by_name(lang)
    except ClassNotFound:
        return ""
    body = highlight(code, lexer, _INLINE)
    return f'<pre class="highlight"><code class="language-{html.escape(lang)}">{body}</code></pre>\n'


@lru_cache(maxsize=1)
def markdown() -> MarkdownIt:
    """The one configured parser (built once; markdown-it instances are reusable)."""
    md = MarkdownIt("commonmark", {"highlight": _highlight, "html": True})
    md.enable(["table", "strikethrough"])
    md.use(footnote_plugin)
    md.use(anchors_plugin, min_level=2, max_level=3)
    return md


def highlight_css() -> str:
    """The stylesheet for highlighted code (the `.highlight` class)."""
    return _FORMATTER.get_style_defs(".highlight")


def parse(text: str) -> list[Token]:
    """Markdown -> markdown-it tokens (for callers that walk the tree, e.g. plain text)."""
    return markdown().parse(text)


def render(text: str) -> str:
    """Markdown -> HTML, site-relative URLs left as written."""
    return markdown().render(text)


@dataclass(frozen=True)
class Rendered:
    """A Markdown document rendered once: its HTML and the Markdown of its summary."""

    html: str
    summary_markdown: str


def render_with_summary(text: str) -> Rendered:
    """Render `text` (one parse) and find its summary: the text before `<!-- more -->`, else the first paragraph."""
    md = markdown()
    env: dict = {}
    tokens = md.parse(text, env)
    html = md.renderer.render(tokens, md.options, env)
    if MORE in text:
        summary = text.split(MORE, 1)[0].strip()
    else:
        first = next((t for t in tokens if t.type == "paragraph_open" and t.map), None)
        summary = "\n".join(text.splitlines()[first.map[0] : first.map[1]]).strip() if first and first.map else ""
    return Rendered(html=html, summary_markdown=_FOOTNOTE_REF.sub("", summary))


def plain_text(fragment: str) -> str:
    """An HTML fragment's text on one line: for meta descriptions and preheaders."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", fragment))).strip()


def absolute_urls(fragment: str, page_url: str) -> str:
    """Rewrite href/src/poster/srcset URLs in HTML to absolute ones against `page_url`.

    `#fn1` becomes `page_url#fn1`; `mailto:`, `https:` and other schemes stay as they are.
    """

    def one(url: str) -> str:
        raw = html.unescape(url.strip())
        if not raw or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", raw):
            return url
        return html.escape(urljoin(page_url, raw), quote=True)

    def attr(match: re.Match[str]) -> str:
        return f"{match.group(1)}{match.group(2)}{one(match.group(3))}{match.group(2)}"

    def srcset(match: re.Match[str]) -> str:
        parts = []
        for candidate in match.group(3).split(","):
            bits = candidate.strip().split(None, 1)
            if bits:
                parts.append(" ".join([one(bits[0]), *bits[1:]]))
        return f"{match.group(1)}{match.group(2)}{', '.join(parts)}{match.group(2)}"

    return _SRCSET.sub(srcset, _URL_ATTR.sub(attr, fragment))
