"""One post -> the email HTML: the email template, URLs made absolute, embeds made links, CSS inlined.

The post's HTML goes into `templates/email/edition.html`; the whole document is parsed once
with lxml, adjusted for email (absolute URLs, pixel image widths, iframes and videos turned
into links, data tables marked) and handed as a tree to premailer, configured for email.
Personalisation slots (`NAME_SLOT`, `UNSUBSCRIBE_SLOT`) pass through untouched.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs, urljoin, urlsplit

# premailer memoises parsed CSS, selectors and declarations in one shared LFU cache of 128
# entries by default; one email stylesheet (with the code highlighting) holds more than that,
# and a cache that small thrashes on every post. The variable is read when premailer is imported.
os.environ.setdefault("PREMAILER_CACHE_MAXSIZE", "4096")

import cssutils
import lxml.html
from lxml import etree
from markupsafe import Markup
from premailer import Premailer

from .. import markup
from ..config import Config
from ..content import Post
from ..theme import Theme

NAME_SLOT = "rp-slot-name-7c1d"
UNSUBSCRIBE_SLOT = "rp-slot-unsubscribe-7c1d"
TEMPLATE = "email/edition.html"
STYLESHEET = "email/email.css"
CONTENT_WIDTH = 552  # the 600 px container less 24 px of padding on each side
RTL_LANGUAGES = frozenset({"ar", "arc", "dv", "fa", "ha", "he", "khw", "ks", "ku", "ps", "sd", "ur", "yi"})
# Hidden characters after the preheader, so clients don't pull body text into the inbox preview.
PREHEADER_FILLER = "\u034f\u200c\u00a0" * 60

_YOUTUBE = re.compile(r"^(?:www\.|m\.)?(?:youtube(?:-nocookie)?\.com|youtu\.be)$", re.IGNORECASE)
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{6,20}$")
_PX = re.compile(r"^\s*(\d+)(?:px)?\s*$")
_INLINE_PARENTS = frozenset({"p", "a", "span", "em", "strong", "b", "i", "li", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6"})

cssutils.log.setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Embed:
    """What an email shows instead of an embedded player: a link, and a thumbnail when one is known."""

    url: str
    label: str
    thumbnail: str | None = None


def post_url(post: Post, config: Config) -> str:
    """The post's canonical web address: links in the email resolve against it."""
    return config.url(post.path)


def text_direction(language: str) -> str:
    """`rtl` for right-to-left languages (by primary subtag), else `ltr`."""
    return "rtl" if language.split("-")[0].lower() in RTL_LANGUAGES else "ltr"


def absolute(url: str, base: str) -> str:
    """`url` made absolute against `base`; slots, schemes (`mailto:`, `https:`) and `//host` kept."""
    raw = url.strip()
    if raw in (UNSUBSCRIBE_SLOT, ""):
        return raw
    return urljoin(base, raw)


def embed_for(src: str, title: str = "") -> Embed:
    """The link (and thumbnail) that replaces an `<iframe>` in email; YouTube gets its poster frame.

    Shared by the HTML and the plain text, so both carry the same URL.
    """
    parts = urlsplit(src if not src.startswith("//") else "https:" + src)
    host = parts.hostname or ""
    if _YOUTUBE.match(host):
        video_id = ""
        path = parts.path.strip("/").split("/")
        if host.lower().endswith("youtu.be") and path and path[0]:
            video_id = path[0]
        elif len(path) >= 2 and path[0] in ("embed", "v", "shorts", "live"):
            video_id = path[1]
        elif path == ["watch"]:
            video_id = parse_qs(parts.query).get("v", [""])[0]
        if _YOUTUBE_ID.match(video_id):
            return Embed(
                url=f"https://www.youtube.com/watch?v={video_id}",
                label=f"Watch on YouTube: {title}" if title else "Watch the video on YouTube",
                thumbnail=f"https://img.youtube.com/vi/{video_id}/hqdefault.jpg",
            )
    url = parts.geturl()
    return Embed(url=url, label=f"Open: {title}" if title else f"Open the embedded content ({host or url})")


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


class _Leftover(list):  # type: ignore[type-arg]
    """The rules premailer leaves in <style>, with their finished text (computed once per stylesheet)."""

    text: str = ""


class _EmailPremailer(Premailer):  # type: ignore[misc]
    """premailer whose stylesheet parsing is memoised by CSS text: every post shares one stylesheet."""

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list, list]:
        return _parsed_rules(self, css_body, ruleset_index)

    def _css_rules_to_string(self, rules: list) -> str:
        return rules.text if isinstance(rules, _Leftover) else super()._css_rules_to_string(rules)


_RULES: dict[tuple[str, int], tuple[list, _Leftover]] = {}


def _parsed_rules(premailer: _EmailPremailer, css_body: str, ruleset_index: int) -> tuple[list, list]:
    """premailer's (inline rules, leftover rules) for one stylesheet, computed once per text."""
    key = (css_body, ruleset_index)
    if key not in _RULES:
        if len(_RULES) > 32:
            _RULES.clear()
        rules, leftover = Premailer._parse_style_rules(premailer, css_body, ruleset_index)
        kept = _Leftover(leftover)
        kept.text = Premailer._css_rules_to_string(premailer, leftover) if leftover else ""
        _RULES[key] = (rules, kept)
    rules, kept = _RULES[key]
    return list(rules), kept


def _premailer() -> Premailer:
    """premailer set for email, not for its defaults; see the module docstring of `edition`."""
    return _EmailPremailer(
        strip_important=False,  # keep !important in @media, or every mobile and dark override is dead
        keep_style_tags=False,  # plain rules go inline; only @media and :pseudo rules stay in <head>
        exclude_pseudoclasses=True,
        disable_basic_attributes=["width", "height"],  # never width="100%" on images; the template sets widths
        disable_link_rewrites=True,  # URLs are made absolute by `_prepare`, which knows about slots and fragments
        allow_network=False,  # never fetch a stylesheet a post links to; the lint reports it instead
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        align_floating_images=False,
        remove_classes=False,  # @media rules select by class
    )


def _replace(old: etree._Element, new: etree._Element) -> None:
    """Put `new` where `old` was, keeping the text that followed `old`."""
    new.tail = old.tail
    old.getparent().replace(old, new)  # type: ignore[union-attr]


def _embed_element(embed: Embed, inline: bool) -> etree._Element:
    """A link (with a linked thumbnail when known) in place of a player."""
    link = etree.Element("a", href=embed.url)
    if embed.thumbnail:
        etree.SubElement(link, "img", src=embed.thumbnail, alt=embed.label, width=str(CONTENT_WIDTH))
        if inline:
            return link
        box = etree.Element("div", {"class": "media"})
        box.append(link)
        caption = etree.SubElement(box, "p")
        caption_link = etree.SubElement(caption, "a", href=embed.url)
        caption_link.text = "▶ " + embed.label
        return box
    link.text = "▶ " + embed.label
    if inline:
        return link
    box = etree.Element("p", {"class": "media"})
    box.append(link)
    return box


def _media_src(el: etree._Element) -> str:
    src = el.get("src") or el.get("data") or ""
    if not src:
        for source in el.iter("source"):
            if source.get("src"):
                return source.get("src", "")
    return src


def _prepare(root: etree._Element, base: str) -> None:
    """Make the parsed email ready for inlining: see the module docstring."""
    for el in list(root.iter("iframe", "video", "audio", "embed", "object")):
        src = _media_src(el)
        if not src:
            continue
        title = (el.get("title") or el.get("aria-label") or "").strip()
        if el.tag == "iframe":
            embed = embed_for(absolute(src, base), title)
        else:
            kind = "Listen" if el.tag == "audio" else "Watch the video"
            embed = Embed(url=absolute(src, base), label=f"{kind}: {title}" if title else kind, thumbnail=None)
            if el.get("poster"):
                embed = Embed(url=embed.url, label=embed.label, thumbnail=absolute(el.get("poster", ""), base))
        parent = el.getparent()
        _replace(el, _embed_element(embed, inline=parent is not None and parent.tag in _INLINE_PARENTS))
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
    for el in root.iter("section"):
        el.tag = "div"  # markdown-it's footnotes; not every client knows HTML5 sections
    for el in root.iter("table"):
        if el.get("role") is None and el.xpath("./thead | ./tr/th | ./tbody/tr/th | ./caption"):
            el.set("class", (el.get("class", "") + " data").strip())
            el.set("width", "100%")
            el.set("cellpadding", "0")
            el.set("cellspacing", "0")


def render_html(post: Post, config: Config, theme: Theme, preheader: str) -> str:
    """The finished email HTML for `post`, CSS inlined, with the personalisation slots in it."""
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
        body=Markup(post.html),
        url=url,
        post=post,
        name_slot=NAME_SLOT,
        unsubscribe_slot=UNSUBSCRIBE_SLOT,
        postal_address=config.newsletter.postal_address,
    )
    root = lxml.html.document_fromstring(page)
    _prepare(root, url)
    tree = _premailer().transform(root)
    return lxml.html.tostring(tree, doctype="<!DOCTYPE html>", encoding="unicode", method="html")
