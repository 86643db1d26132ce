"""One post -> the email HTML: the email template, URLs made absolute, embeds made links, CSS inlined.

The post's HTML is sanitised by the site's one allowlist (`markup.sanitize`: no scripts,
handlers, `javascript:` URLs or forms; iframes become links) and goes into
`templates/email/edition.html`; the whole document is parsed once with lxml, adjusted for
email (absolute URLs, pixel image widths, videos and audio turned into links by the same
`markup.players_to_links`, data tables marked) and handed as a tree to premailer, configured
for email. Personalisation slots (`NAME_SLOT`, `UNSUBSCRIBE_SLOT`, `MANAGE_SLOT`) pass through untouched.

What readers expect of a newsletter: the template opens with a "View in browser" link to the
post's page and, when the post has an `image`, that image as a hero (`hero_url`, alt = the
title, as wide as the content at most); the post's text blocks carry `dir="auto"` from
`markup`, so a right-to-left paragraph reads right to left.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from markupsafe import Markup

from .. import markup
from ..config import Config
from ..content import Post
from ..theme import Theme

if TYPE_CHECKING:
    from lxml import etree

NAME_SLOT = "rp-slot-name-7c1d"
UNSUBSCRIBE_SLOT = "rp-slot-unsubscribe-7c1d"
MANAGE_SLOT = "rp-slot-manage-7c1d"  # the reader's manage-your-subscription page (topics, frequency)
TEMPLATE = "email/edition.html"
STYLESHEET = "email/email.css"
CONTENT_WIDTH = 552  # the 600 px container less 24 px of padding on each side
RTL_LANGUAGES = frozenset({"ar", "arc", "dv", "fa", "ha", "he", "khw", "ks", "ku", "ps", "sd", "ur", "yi"})
# Hidden characters after the preheader, so clients don't pull body text into the inbox preview.
PREHEADER_FILLER = "\u034f\u200c\u00a0" * 60

_PX = re.compile(r"^\s*(\d+)(?:px)?\s*$")
_DECLARATION_GAP = re.compile(r"\s*;\s*")
_LIST_GAP = re.compile(r"\s*,\s*")
_FOUR_SIDES = re.compile(r"\b(margin|padding):(\S+) (\S+) (\S+) \3(?=;|$)")  # left as right: `0 0 16px 0` -> `0 0 16px`


def post_url(post: Post, config: Config) -> str:
    """The post's canonical web address: links in the email resolve against it."""
    return config.url(post.path)


def text_direction(language: str) -> str:
    """`rtl` for right-to-left languages (by primary subtag), else `ltr`."""
    return "rtl" if language.split("-")[0].lower() in RTL_LANGUAGES else "ltr"


def hero_url(post: Post, config: Config) -> str | None:
    """The absolute URL of the post's `image` (front matter), shown at the top of the email; None without one.

    Resolved by `Config.link`, as the page's og:image and the feeds' image are.
    """
    return config.link(post.image, post.path) if post.image else None


def absolute(url: str, base: str) -> str:
    """`url` made absolute against `base`; slots, schemes (`mailto:`, `https:`) and `//host` kept."""
    raw = url.strip()
    if raw in (UNSUBSCRIBE_SLOT, MANAGE_SLOT, ""):
        return raw
    return urljoin(base, raw)


@lru_cache(maxsize=16)
def _stylesheet(source: str) -> str:
    """Pygments' highlight rules (first, so the theme's rules win), then the email stylesheet."""
    highlight = "\n".join(
        line for line in markup.highlight_css().splitlines() if not line.startswith(("pre ", "td.linenos", "span.linenos"))
    )
    return highlight + "\n" + source


def stylesheet(theme: Theme) -> str:
    """The CSS premailer inlines: the theme's `email/email.css` and the code highlighting."""
    source, _, _ = theme.env.loader.get_source(theme.env, STYLESHEET)  # type: ignore[union-attr]
    return _stylesheet(source)


def _prepare(root: etree._Element, base: str) -> None:
    """Make the parsed email ready for inlining: see the module docstring."""
    markup.players_to_links(root, lambda url: absolute(url, base), markup.MEDIA)
    for el in root.iter("a"):
        href = el.get("href")
        if href is not None:
            el.set("href", base + href.strip() if href.strip().startswith("#") else absolute(href, base))
    for el in root.iter("img"):
        if el.get("src") is not None:
            el.set("src", absolute(el.get("src", ""), base))
        for attr in ("srcset", "sizes", "loading", "decoding"):
            el.attrib.pop(attr, None)
        width = _PX.match(el.get("width") or "")
        height = _PX.match(el.get("height") or "")
        shown = min(int(width.group(1)), CONTENT_WIDTH) if width else CONTENT_WIDTH
        if width and height and int(width.group(1)) > 0:
            el.set("height", str(round(int(height.group(1)) * shown / int(width.group(1)))))
        else:
            el.attrib.pop("height", None)
        el.set("width", str(shown))
        # a percentage width (not max-width) keeps a wide image from stretching a table cell on a phone
        style = (el.get("style") or "").strip().rstrip(";")
        el.set("style", f"{style + ';' if style else ''}width:100%;max-width:{shown}px;height:auto")
    for el in root.iter("section", "details", "summary"):
        # markdown-it's footnotes, and spoilers: not every client knows HTML5 sections or
        # <details>, so the email shows them as plain blocks: the spoiler open, its summary a bold line
        if el.tag == "summary":
            el.set("class", "summary")
        el.tag = "p" if el.tag == "summary" else "div"
        el.attrib.pop("open", None)
    for el in root.iter("table"):
        if el.get("role") is None and el.xpath("./thead | ./tr/th | ./tbody/tr/th | ./caption"):
            el.set("class", (el.get("class", "") + " data").strip())
            el.set("width", "100%")
            el.set("cellpadding", "6")  # once per table, not a padding on every cell
            el.set("cellspacing", "0")
            for row in el.iter("tr"):
                row.set("valign", "top")
            for cell in el.iter("th"):
                cell.set("align", cell.get("align") or "left")  # Markdown's column alignment, else left


def render_html(post: Post, config: Config, theme: Theme, preheader: str, body_html: str | None = None) -> str:
    """The finished email HTML for `post`, CSS inlined, with the personalisation slots in it.

    `body_html` is the post's HTML already through `markup.sanitize`; when None it is sanitised here.
    """
    url = post_url(post, config)
    page = theme.render(
        TEMPLATE,
        lang=config.language,
        dir=text_direction(config.language),
        subject=post.subject or post.title,
        title=post.title,
        preheader=preheader,
        filler=PREHEADER_FILLER,
        css=Markup(stylesheet(theme)),
        site_title=config.title,
        home_url=config.url(),
        home_label=urlsplit(config.url()).netloc or config.url(),
        date=f"{post.date:%B} {post.date.day}, {post.date.year}",
        author=post.author or config.author.name,
        body=Markup(markup.sanitize(post.html) if body_html is None else body_html),
        hero=hero_url(post, config),  # alt is the title; `_prepare` caps its width at CONTENT_WIDTH like any image
        hero_width=CONTENT_WIDTH,
        url=url,
        post=post,
        name_slot=NAME_SLOT,
        unsubscribe_slot=UNSUBSCRIBE_SLOT,
        manage_slot=MANAGE_SLOT,
        postal_address=config.newsletter.postal_address,
    )
    import lxml.html  # imported when an email is made: a build with nothing to render never loads it

    root = lxml.html.document_fromstring(page)
    _prepare(root, url)
    from .inline import email_premailer  # premailer, cssutils and requests: imported when an email is made

    tree = email_premailer().transform(root)
    _compact_styles(tree)
    return lxml.html.tostring(tree, doctype="<!DOCTYPE html>", encoding="unicode", method="html")


def _compact_styles(root: etree._Element) -> None:
    """Inline styles without the spaces premailer writes between declarations and list items
    (`color:#000; font-family:A, B` -> `color:#000;font-family:A,B`) and with a margin or padding
    whose left equals its right in three values: the same CSS in fewer bytes. (No value in the
    email stylesheet, nor a post's `text-align`, quotes a comma or a semicolon.)"""
    from lxml import etree

    for el in root.iter(etree.Element):
        style = el.get("style")
        if style:
            style = _LIST_GAP.sub(",", _DECLARATION_GAP.sub(";", style.strip()))
            el.set("style", _FOUR_SIDES.sub(r"\1:\2 \3 \4", style))
