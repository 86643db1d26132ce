"""One post -> the plain-text part of its email, from the Markdown token stream (not from HTML).

Every link keeps its absolute URL (`text (https://...)`), headings are underlined, lists keep
`- ` and `1. ` markers, code is indented four spaces, tables become aligned columns (or
`Header: value` records when too wide), and prose is wrapped at 72 columns. Long URLs are
never broken, so only a line holding one may be longer.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from .. import markup
from ..config import Config
from ..content import Post
from ..images import retarget
from ..markup import embed_for
from .render import MANAGE_SLOT, NAME_SLOT, UNSUBSCRIBE_SLOT, absolute, post_url
from .tokens import tokens_of

if TYPE_CHECKING:
    from markdown_it.token import Token

WIDTH = 72
_UNDERLINE = {1: "=", 2: "-"}
_SPACES = re.compile(r"[ \t]+")


def wrap(text: str, width: int) -> str:
    """Wrap each hard line of `text` to `width` columns, never breaking a word or URL."""
    out = []
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line).strip()
        out.append(textwrap.fill(line, width=max(width, 20), break_long_words=False, break_on_hyphens=False) if line else "")
    return "\n".join(out).strip("\n")


def _indent(block: str, first: str, rest: str) -> str:
    lines = block.split("\n")
    return "\n".join([first + lines[0]] + [(rest + line) if line else rest.rstrip() for line in lines[1:]])


class _InlineHtml(HTMLParser):
    """Text of raw HTML as the sanitised email shows it: links as `text (url)`, players as their
    link, images as `[Image: alt] (url)`; what the allowlist drops with its content (scripts,
    forms, styles...) says nothing, and URLs it refuses (`javascript:`) are left out.

    One parser reads all the raw HTML of a paragraph, so a `<script>` opened in one inline
    token silences the text tokens up to its `</script>` (see `skipping`).
    """

    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "figure", "figcaption", "table", "blockquote", "ul", "ol"}
        | {"details", "summary"}
    )
    _SKIP = markup.DROPPED_WITH_CONTENT | {"head"}
    _ENDS_A_LABEL = (":", "?", "!", ".", "…")

    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.parts: list[str] = []
        self.links: list[str | None] = []
        self.skip = 0
        self.summary_at: int | None = None  # where the open <summary>'s text starts in `parts`

    @property
    def skipping(self) -> bool:
        """Inside an element dropped with its content: text here is not in the email."""
        return self.skip > 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if self.skip:
            self.skip += tag in self._SKIP
            return
        src = _safe_src(a.get("src") or (a.get("data", "") if tag == "object" else ""), self.base)
        if tag in markup.PLAYERS and src:
            embed = embed_for(src, a.get("title", "").strip())
            self.parts.append(f"\n{embed.label}: {embed.url}\n")
        elif tag in ("video", "audio") and src:
            self.parts.append(f"\n{'Listen' if tag == 'audio' else 'Watch the video'}: {src}\n")
        elif tag == "a":
            href = a.get("href", "").strip()
            self.links.append(_link_target(href, self.base) if href else None)
        elif tag == "img" and src:
            self.parts.append(_image(a.get("alt", ""), src))
        elif tag in self._BLOCK:
            self.parts.append("\n")
            if tag == "summary":
                self.summary_at = len(self.parts)
        if tag in self._SKIP:
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif self.skip:
            return
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href:
                self.parts.append(f" ({href})")
        elif tag == "summary" and self.summary_at is not None:
            # a spoiler's label on a line of its own, "Spoilers:", and its body shown under it (as in the HTML)
            label = "".join(self.parts[self.summary_at :]).strip()
            self.parts.append("\n" if not label or label.endswith(self._ENDS_A_LABEL) else ":\n")
            self.summary_at = None
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)

    def text_of(self, fragment: str) -> str:
        """Feed one more piece of raw HTML; the text it adds."""
        start = len(self.parts)
        self.feed(fragment)
        return "".join(self.parts[start:])


def _html_text(fragment: str, base: str) -> str:
    parser = _InlineHtml(base)
    parser.feed(fragment)
    parser.close()
    return "".join(parser.parts)


def _safe_src(src: str, base: str) -> str:
    """A player's or image's URL made absolute, or "" when absent or refused by the allowlist."""
    return absolute(src, base) if src.strip() and markup.is_safe_url(src) else ""


def _link_target(href: str, base: str) -> str | None:
    """The URL a reader needs for a link, or None for an in-page anchor (`#fn1`, `#part-2`) or a refused URL."""
    if href.startswith("#") or not markup.is_safe_url(href):
        return None
    return absolute(href, base)


def _image(alt: str, url: str) -> str:
    label = f"[Image: {alt}]" if alt else "[Image]"
    return f"{label} ({url})" if url else label


def inline_text(children: Sequence[Token], base: str) -> str:
    """One inline token's children as text: emphasis as _x_ and *x*, links as `text (url)`."""
    out: list[str] = []
    links: list[tuple[str | None, int]] = []
    raw: _InlineHtml | None = None
    for tok in children:
        kind = tok.type
        if kind == "html_inline":
            raw = raw or _InlineHtml(base)
            out.append(raw.text_of(tok.content))
        elif raw is not None and raw.skipping:
            continue
        elif kind == "text":
            out.append(tok.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind in ("em_open", "em_close"):
            out.append("_")
        elif kind in ("strong_open", "strong_close"):
            out.append("*")
        elif kind in ("s_open", "s_close"):
            out.append("~")
        elif kind == "code_inline":
            out.append(f"`{tok.content}`")
        elif kind == "link_open":
            links.append((_link_target(str(tok.attrGet("href") or ""), base), len(out)))
        elif kind == "link_close" and links:
            href, start = links.pop()
            label = "".join(out[start:]).strip()
            if href and not label:
                out.append(href)
            elif href and label not in (href, href.removeprefix("mailto:")):
                out.append(f" ({href})")
        elif kind == "image":
            out.append(_image(tok.content, _safe_src(str(tok.attrGet("src") or ""), base)))
        elif kind == "footnote_ref":
            out.append(f"[{tok.meta['id'] + 1}]")
    return "".join(out)


def _close_index(tokens: Sequence[Token], start: int) -> int:
    """The index of the token closing `tokens[start]` (same nesting level)."""
    opener = tokens[start]
    closer = opener.type.replace("_open", "_close")
    for i in range(start + 1, len(tokens)):
        if tokens[i].type == closer and tokens[i].level == opener.level:
            return i
    return len(tokens) - 1


def _table(tokens: Sequence[Token], base: str, width: int) -> str:
    """Rows as aligned columns; when too wide, each row as `Header: value` lines."""
    rows: list[list[str]] = []
    for tok in tokens:
        if tok.type == "tr_open":
            rows.append([])
        elif tok.type == "inline" and rows:
            rows[-1].append(" ".join(inline_text(tok.children or [], base).split()))
    if not rows:
        return ""
    columns = max(len(r) for r in rows)
    rows = [r + [""] * (columns - len(r)) for r in rows]
    widths = [max(len(r[c]) for r in rows) for c in range(columns)]
    if sum(widths) + 3 * (columns - 1) <= width:
        lines = [" | ".join(cell.ljust(widths[c]) for c, cell in enumerate(row)).rstrip() for row in rows]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines)
    header, body = rows[0], rows[1:]
    records = ["\n".join(wrap(f"{header[c]}: {cell}" if header[c] else cell, width) for c, cell in enumerate(row) if cell) for row in body]
    return "\n\n".join(records)


def blocks(tokens: Sequence[Token], base: str, width: int = WIDTH) -> list[str]:
    """Block tokens -> text blocks (separated by blank lines by the caller)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        kind = tok.type
        if kind == "heading_open":
            text = " ".join(inline_text(tokens[i + 1].children or [], base).split())
            level = int(tok.tag[1])
            mark = _UNDERLINE.get(level, "~")
            heading = wrap(text, width)
            out.append(heading + "\n" + mark * min(max(len(line) for line in heading.split("\n")), width))
            i = _close_index(tokens, i) + 1
            continue
        if kind == "paragraph_open":
            out.append(wrap(inline_text(tokens[i + 1].children or [], base), width))
            i = _close_index(tokens, i) + 1
            continue
        if kind in ("bullet_list_open", "ordered_list_open"):
            end = _close_index(tokens, i)
            out.append(_list(tokens[i : end + 1], base, width))
            i = end + 1
            continue
        if kind == "blockquote_open":
            end = _close_index(tokens, i)
            inner = "\n\n".join(blocks(tokens[i + 1 : end], base, width - 2))
            out.append(_indent(inner, "> ", "> "))
            i = end + 1
            continue
        if kind == "table_open":
            end = _close_index(tokens, i)
            out.append(_table(tokens[i : end + 1], base, width))
            i = end + 1
            continue
        if kind == "footnote_block_open":
            end = _close_index(tokens, i)
            out.append("-" * 10)
            out.extend(_footnotes(tokens[i + 1 : end], base, width))
            i = end + 1
            continue
        if kind in ("fence", "code_block"):
            code = tok.content.rstrip("\n")
            out.append("\n".join(("    " + line).rstrip() for line in code.split("\n")))
        elif kind == "hr":
            out.append("* * *")
        elif kind == "html_block":
            text = wrap(_html_text(tok.content, base), width)
            if text:
                out.append(text)
        i += 1
    return [b for b in out if b.strip()]


def _list(tokens: Sequence[Token], base: str, width: int) -> str:
    opener = tokens[0]
    ordered = opener.type == "ordered_list_open"
    number = int(opener.attrGet("start") or 1) if ordered else 0
    tight = any(t.type == "paragraph_open" and t.hidden for t in tokens)
    items: list[str] = []
    i = 1
    while i < len(tokens) - 1:
        if tokens[i].type == "list_item_open":
            end = _close_index(tokens, i)
            marker = f"{number}. " if ordered else "- "
            inner = blocks(tokens[i + 1 : end], base, width - len(marker))
            body = ("\n" if tight else "\n\n").join(inner) or ""
            items.append(_indent(body, marker, " " * len(marker)))
            number += 1
            i = end + 1
        else:
            i += 1
    return ("\n" if tight else "\n\n").join(items)


def _footnotes(tokens: Sequence[Token], base: str, width: int) -> list[str]:
    notes: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i].type == "footnote_open":
            end = _close_index(tokens, i)
            label = f"[{tokens[i].meta['id'] + 1}] "
            inner = "\n\n".join(blocks([t for t in tokens[i + 1 : end] if t.type != "footnote_anchor"], base, width - len(label)))
            notes.append(_indent(inner, label, " " * len(label)))
            i = end + 1
        else:
            i += 1
    return notes


def render_text(post: Post, config: Config) -> str:
    """The plain-text edition of `post`, with the personalisation slots in its footer."""
    url = post_url(post, config)
    tokens = retarget(tokens_of(post.body_markdown), post.placed)  # images (and links to them) where the build put them
    title = wrap(post.title, WIDTH)
    byline = f"{post.date:%B} {post.date.day}, {post.date.year}"
    if author := post.author or config.author.name:
        byline += f" · {author}"
    head = [
        config.title,
        "",
        title,
        "=" * min(max(len(line) for line in title.split("\n")), WIDTH),
        byline,
        "",
        f"Read on the web: {url}",
    ]
    footer = [
        "-- ",
        wrap(f"This email was sent to {NAME_SLOT} because you subscribed to the {config.title} newsletter at {config.url()}.", WIDTH),
        "",
        f"Manage your subscription: {MANAGE_SLOT}",
        f"Unsubscribe: {UNSUBSCRIBE_SLOT}",
        f"Read on the web: {url}",
    ]
    if config.newsletter.postal_address:
        footer += ["", wrap(config.newsletter.postal_address, WIDTH)]
    body = "\n\n".join(blocks(tokens, url))
    return "\n".join(head) + "\n\n" + body + "\n\n" + "\n".join(footer) + "\n"
