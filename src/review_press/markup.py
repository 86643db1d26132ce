"""Markdown to HTML: CommonMark + tables, footnotes, strikethrough, highlighted code.

Also the small text jobs every edition needs: the summary (before `<!-- more -->`, else the
first paragraph), plain text of an HTML fragment, and making URLs absolute for feeds and
email, where relative links break.

And sanitising: `sanitize` is the one allowlist (nh3, a binding of Ammonia) for HTML that
leaves the author's site: feeds and email editions always, pages when `[content]
sanitize_pages` is set, and the front matter `summary` everywhere. Players (`<iframe>`,
`<embed>`, `<object>`) become links first (`players_to_links`, YouTube with its thumbnail),
the same code the email edition uses for `<video>` and `<audio>`.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import nh3
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

if TYPE_CHECKING:  # lxml is imported where a tree is made: a build with nothing to render never loads it
    from lxml import etree
    from markdown_it import MarkdownIt
    from markdown_it.rules_core import StateCore
    from markdown_it.token import Token

MORE = "<!-- more -->"
_FORMATTER = HtmlFormatter(cssclass="highlight", wrapcode=True)
_INLINE = HtmlFormatter(nowrap=True)  # markdown-it keeps output that starts with <pre> as it is
_FOOTNOTE_REF = re.compile(r"\[\^[^\]\s]+\]")
# a start tag with a URL attribute in it (found by C, so the tags without one cost no Python);
# `url_attributes` then reads its attributes in order, so a value is never read as an attribute
_URL_NAMES = frozenset({"href", "src", "poster"})  # the attributes holding one URL (srcset holds several)
_URL_TAG = re.compile(r"<[a-zA-Z][^>]*?\s(?i:" + "|".join(sorted(_URL_NAMES | {"srcset"})) + r")\s*=[^>]*>")
_ATTRIBUTE = re.compile(r"""(\s)([^\s"'>/=]+)(\s*=\s*)(?:"([^"]*)"|'([^']*)')""")
_HAS_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_TAG = re.compile(r"<[^>]*>")
# inline elements: their tags join the text they wrap ("a <em>b</em>." reads "a b."); any other tag separates words
_INLINE_TAG = re.compile(
    r"</?(?:a|abbr|b|bdi|bdo|cite|code|del|dfn|em|i|ins|kbd|mark|q|s|samp|small|span|strong|sub|sup|time|u|var)\b[^>]*>", re.I
)
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=256)
def _lexer(lang: str) -> Lexer | None:
    """The Pygments lexer for a fence's language, found once per name (the lookup walks every
    lexer Pygments knows; lexers keep no state between texts); None for an unknown one."""
    try:
        return get_lexer_by_name(lang)
    except ClassNotFound:
        return None


def _highlight(code: str, lang: str, _attrs: str) -> str:
    """Pygments for a fenced block with a known language; "" lets markdown-it escape it."""
    lexer = _lexer(lang) if lang else None
    if lexer is None:
        return ""
    body = highlight(code, lexer, _INLINE)
    return f'<pre class="highlight"><code class="language-{html.escape(lang)}">{body}</code></pre>\n'


@lru_cache(maxsize=1)
def markdown() -> MarkdownIt:
    """The one configured parser (built once; markdown-it instances are reusable). Imported
    here: a build whose posts are all cached parses no Markdown and need not load the parser."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.anchors import anchors_plugin
    from mdit_py_plugins.footnote import footnote_plugin

    md = MarkdownIt("commonmark", {"highlight": _highlight, "html": True})
    md.enable(["table", "strikethrough"])
    md.use(footnote_plugin)
    md.use(anchors_plugin, min_level=2, max_level=3)
    md.core.ruler.push("dir_auto", _dir_auto)
    return md


# Text blocks get dir="auto": the browser (or mail client, or feed reader) sets each one's
# direction from its own first strong character, so a Hebrew or Arabic paragraph in an
# English post reads right to left, and an English one in an Arabic site left to right.
DIR_AUTO_TOKENS = frozenset({"paragraph_open", "heading_open", "th_open", "td_open"})
# Blocks that hold other blocks get that direction written out instead: dir="auto" skips text
# inside children that have a dir of their own, so on a list, an item of a loose list or a
# quote it would always resolve to ltr (markers and the quote's rule on the wrong side).
DIR_OF_CONTENT_TOKENS = frozenset({"blockquote_open", "bullet_list_open", "ordered_list_open", "list_item_open"})
_STRONG = {"L": "ltr", "R": "rtl", "AL": "rtl"}


def _first_strong(tokens: list[Token], start: int) -> str | None:
    """The direction of the first strong character in the text of the block opened at `tokens[start]`."""
    level = tokens[start].level
    for index in range(start + 1, len(tokens)):  # no slice: a long list would copy the tokens once per item
        token = tokens[index]
        if token.nesting == -1 and token.level == level:
            break
        for child in token.children or ():
            if child.type == "text":
                for char in child.content:
                    if (direction := _STRONG.get(unicodedata.bidirectional(char))) is not None:
                        return direction
    return None


def _dir_auto(state: StateCore) -> None:
    """A markdown-it core rule: the direction of every text block of the post, from its own text.

    `dir="auto"` on paragraphs, headings and table cells; `dir="ltr"` or `"rtl"` (what `auto`
    would find, were it not blind to children with a dir) on quotes, lists and list items.
    Set once here, where post HTML is made, so pages, feeds and the email all carry it (the
    allowlist keeps `dir`). Runs after the anchors plugin, so headings read `id`, then `dir`.
    """
    tokens = state.tokens
    for index, token in enumerate(tokens):
        if token.type in DIR_AUTO_TOKENS:
            token.attrSet("dir", "auto")
        elif token.type in DIR_OF_CONTENT_TOKENS:
            token.attrSet("dir", _first_strong(tokens, index) or "auto")


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
    images: tuple[ImageRef, ...] = ()


def render_with_summary(text: str, first_line: int = 1) -> Rendered:
    """Render `text` (one parse) and find its summary: the text before `<!-- more -->`, else the first paragraph.

    Its images are listed too (`image_refs`), numbering lines from `first_line`.
    """
    md = markdown()
    env: dict = {}
    tokens = md.parse(text, env)
    html = md.renderer.render(tokens, md.options, env)
    if MORE in text:
        summary = text.split(MORE, 1)[0].strip()
    else:
        first = next((t for t in tokens if t.type == "paragraph_open" and t.map), None)
        summary = "\n".join(text.splitlines()[first.map[0] : first.map[1]]).strip() if first and first.map else ""
    images = image_refs(tokens, text, first_line) if "<img" in html else ()
    return Rendered(html=html, summary_markdown=_FOOTNOTE_REF.sub("", summary), images=images)


# --- images: where each one is written ------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    """An image in a post's Markdown: its `src` as the HTML carries it (entities decoded) and its line."""

    src: str
    line: int


_IMG_SRC = re.compile(r"""<img\b[^>]*?\ssrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""", re.IGNORECASE)
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)


def image_refs(tokens: list[Token], text: str, first_line: int = 1) -> tuple[ImageRef, ...]:
    """Every image of a parsed document, in order: Markdown `![alt](src)` and raw `<img src>`
    (outside HTML comments), each with the line of the text it is written on (the text's first
    line is `first_line`), found from the `map` of its block; the block's first line when the
    src is not written there as such (a reference `![alt][ref]`: the definition's line)."""
    lines = text.split("\n")
    refs: list[ImageRef] = []

    def line_of(written: tuple[str, ...], start: int, end: int) -> int:
        for ranges in ((start, end), (0, len(lines))):
            for i in range(*ranges):
                if any(w and w in lines[i] for w in written):
                    return first_line + i
        return first_line + start

    def raw(fragment: str, start: int, end: int, exact: bool) -> None:
        fragment = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), fragment)
        for match in _IMG_SRC.finditer(fragment):
            value = next(g for g in match.groups() if g is not None)
            offset = start + fragment[: match.start()].count("\n")
            line = first_line + offset if exact else line_of((value,), start, end)
            refs.append(ImageRef(html.unescape(value), line))

    start, end = 0, 1
    for token in tokens:
        if token.map:
            start, end = token.map
        if token.type == "html_block":
            raw(token.content, start, end, exact=True)
        for child in token.children or ():
            if child.type == "image":
                src = str(child.attrGet("src") or "")
                refs.append(ImageRef(src, line_of((src, unquote(src)), start, end)))
            elif child.type == "html_inline":
                raw(child.content, start, end, exact=False)
    return tuple(refs)


def plain_text(fragment: str) -> str:
    """An HTML fragment's text on one line: for meta descriptions and preheaders."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", _INLINE_TAG.sub("", fragment)))).strip()


def url_attributes(fragment: str, one: Callable[[str], str], names: frozenset[str] = _URL_NAMES, tags: re.Pattern[str] = _URL_TAG) -> str:
    """`fragment` with the value of every quoted URL attribute in its start tags (`names`, and
    each candidate of a `srcset`) put through `one`, which gets and returns attribute text
    (entities as written). Only tags that `tags` matches are read: HTML as `sanitize` or lxml
    writes it, where `<` and `>` stand only at the ends of tags. Text is never touched, so a
    code sample showing `<a href="/x">` keeps its bytes."""

    def srcset(value: str) -> str:
        candidates = (candidate.strip().split(None, 1) for candidate in value.split(","))
        return ", ".join(" ".join([one(bits[0]), *bits[1:]]) for bits in candidates if bits)

    def attribute(match: re.Match[str]) -> str:
        space, name, equals, double, single = match.groups()
        low = name.lower()
        if low != "srcset" and low not in names:
            return match.group(0)
        quote, value = ('"', double) if double is not None else ("'", single)
        return f"{space}{name}{equals}{quote}{srcset(value) if low == 'srcset' else one(value)}{quote}"

    return tags.sub(lambda tag: _ATTRIBUTE.sub(attribute, tag.group(0)), fragment)


def absolute_urls(fragment: str, page_url: str) -> str:
    """Rewrite href/src/poster/srcset URLs in HTML (as `sanitize` writes it) to absolute ones
    against `page_url`, in tags only (see `url_attributes`).

    `#fn1` becomes `page_url#fn1`; `mailto:`, `https:` and other schemes stay as they are.
    """

    def one(url: str) -> str:
        raw = html.unescape(url.strip())
        if not raw or _HAS_SCHEME.match(raw):
            return url
        return html.escape(urljoin(page_url, raw), quote=True)

    return url_attributes(fragment, one)


def render_summary(text: str) -> str:
    """A front matter `summary` as HTML: inline Markdown (so *emphasis* and links work) in one
    `<p>`, sanitised like a feed (it is front matter, never trusted as raw HTML)."""
    return sanitize(f"<p>{markdown().renderInline(text.strip())}</p>")


# --- sanitising: the one allowlist ------------------------------------------------------

# What posts legitimately use: headings with ids, tables, footnotes (ids and backrefs),
# Pygments' classes, images with width/height/alt, figure, details, quotes, del/s, sup/sub.
SAFE_TAGS = frozenset(
    {"a", "abbr", "b", "bdi", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn"}
    | {"div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd"}
    | {"li", "mark", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "section", "small", "span", "strong", "sub"}
    | {"summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "u", "ul", "var", "wbr"}
    | {"audio", "video", "source"}
)
SAFE_ATTRIBUTES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "*": frozenset({"id", "class", "title", "lang", "dir"}),
        "a": frozenset({"href", "hreflang", "rel"}),
        "img": frozenset({"src", "alt", "width", "height", "loading", "decoding"}),
        "ol": frozenset({"start", "reversed", "type"}),
        "li": frozenset({"value"}),
        "td": frozenset({"colspan", "rowspan", "headers"}),
        "th": frozenset({"colspan", "rowspan", "headers", "scope"}),
        "col": frozenset({"span"}),
        "colgroup": frozenset({"span"}),
        "del": frozenset({"datetime"}),
        "ins": frozenset({"datetime"}),
        "time": frozenset({"datetime"}),
        "details": frozenset({"open"}),
        "video": frozenset({"src", "poster", "controls", "width", "height", "preload", "loop", "muted", "playsinline"}),
        "audio": frozenset({"src", "controls", "preload", "loop", "muted"}),
        "source": frozenset({"src", "type"}),
    }
)
# Attributes allowed with these exact values only: Markdown's column alignment, and the
# role that tells email clients a table is for layout. No other inline CSS passes.
_ALIGN = frozenset({"text-align:left", "text-align:center", "text-align:right"})
SAFE_ATTRIBUTE_VALUES: Mapping[str, Mapping[str, frozenset[str]]] = MappingProxyType(
    {"td": {"style": _ALIGN}, "th": {"style": _ALIGN}, "table": {"role": frozenset({"presentation"})}}
)
SAFE_URL_SCHEMES = frozenset({"http", "https", "mailto"})  # and relative URLs; javascript:, data: and the rest are dropped
IMAGE_URL_SCHEMES = frozenset({"http", "https"})  # front matter `image:` (and relative paths)
# Dropped with everything inside them: active content, forms, and what only makes sense with them.
DROPPED_WITH_CONTENT = frozenset(
    {"script", "style", "noscript", "template", "form", "textarea", "select", "button", "iframe", "object", "applet"}
    | {"frameset", "noframes", "title", "xmp", "svg", "math"}
)
PLAYERS = ("iframe", "embed", "object")  # become links before sanitising; the email adds video and audio
MEDIA = (*PLAYERS, "video", "audio")
YOUTUBE_THUMBNAIL = (480, 360)  # hqdefault.jpg
_YOUTUBE = re.compile(r"^(?:www\.|m\.)?(?:youtube(?:-nocookie)?\.com|youtu\.be)$", re.IGNORECASE)
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{6,20}$")
_INLINE_PARENTS = frozenset({"p", "a", "span", "em", "strong", "b", "i", "li", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6"})
_PLAYER_ATTRIBUTES = {"iframe": {"src", "title"}, "embed": {"src", "title"}, "object": {"data", "title"}}
_PLAYER_TAG = re.compile(r"<(?:iframe|embed|object)[\s/>]", re.IGNORECASE)
_EMBED_TAG = re.compile(r"<embed(?:\s+[^\s=>]+(?:=\"[^\"]*\")?)*>")  # as nh3 writes it: values always in "..."
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_IGNORED_IN_URLS = re.compile(r"[\x00-\x20\x7f]")  # browsers skip these, so `java\tscript:` is javascript:


@lru_cache(maxsize=2)
def _cleaner(players: bool = False) -> nh3.Cleaner:
    """The allowlist as an nh3 cleaner (built once; it is immutable and reusable).

    With `players`, the same allowlist plus the players and their URL and title: the first
    pass of `sanitize` for HTML that holds some, before they become links.
    """
    attributes = {tag: set(names) for tag, names in SAFE_ATTRIBUTES.items()}
    return nh3.Cleaner(
        tags=set(SAFE_TAGS | set(PLAYERS)) if players else set(SAFE_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT - set(PLAYERS)) if players else set(DROPPED_WITH_CONTENT),
        attributes=attributes | _PLAYER_ATTRIBUTES if players else attributes,
        tag_attribute_values={tag: {name: set(values) for name, values in attrs.items()} for tag, attrs in SAFE_ATTRIBUTE_VALUES.items()},
        url_schemes=set(SAFE_URL_SCHEMES),
        link_rel=None,  # links stay as written (rel is allowed); feeds and email add nothing to them
        strip_comments=True,
    )


def sanitize(fragment: str) -> str:
    """`fragment` with only the allowlist left: players made links, then scripts, `on*=`
    handlers, `javascript:`/`data:` URLs, forms, styles and unknown tags and attributes dropped.

    Pure and deterministic: the same input gives the same bytes (nh3 keeps attribute order).
    """
    if _PLAYER_TAG.search(fragment):
        # players to links in a tree: first the allowlist (plus the players) puts the HTML in
        # nh3's canonical form, where <embed> gets the end tag libxml2 needs (it does not know
        # <embed> is void, and would swallow everything after one)
        import lxml.html

        fragment = _EMBED_TAG.sub(r"\g<0></embed>", _cleaner(players=True).clean(fragment))
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
        players_to_links(root)
        fragment = lxml.html.tostring(root, encoding="unicode", method="html")[len("<div>") : -len("</div>")]
    return _cleaner().clean(fragment)


def url_scheme(url: str) -> str | None:
    """The scheme of `url` as a browser reads it (lower case; whitespace and control characters
    ignored, entities already decoded by the caller), or None for a relative URL."""
    match = _SCHEME.match(_IGNORED_IN_URLS.sub("", url))
    return match.group(1).lower() if match else None


def is_safe_url(url: str) -> bool:
    """Whether the allowlist keeps `url` in an href or src: relative, or http(s) or mailto."""
    scheme = url_scheme(url)
    return scheme is None or scheme in SAFE_URL_SCHEMES


def image_url_problem(url: str) -> str | None:
    """What is wrong with a front matter `image:` value, or None: it must be a relative path or an http(s) URL."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "'image' must not contain control characters"
    scheme = url_scheme(url)
    if scheme is not None and scheme not in IMAGE_URL_SCHEMES:
        return f"'image' must be a relative path or an http(s) URL, not a {scheme}: URL"
    if scheme is not None and not urlsplit(url.strip()).netloc:
        return f"'image' URL {url!r} has no host"
    return None


# --- players as links ---------------------------------------------------------------------


@dataclass(frozen=True)
class Embed:
    """What a feed or an email shows instead of an embedded player: a link, and a thumbnail when one is known."""

    url: str
    label: str
    thumbnail: str | None = None
    thumbnail_size: tuple[int, int] | None = None  # (width, height) when known


def embed_for(src: str, title: str = "") -> Embed:
    """The link (and thumbnail) that replaces an `<iframe>`; YouTube gets its poster frame.

    Shared by the HTML (feeds, email, sanitised pages) and the email's plain text, so all carry the same URL.
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
                thumbnail_size=YOUTUBE_THUMBNAIL,
            )
    url = parts.geturl()
    return Embed(url=url, label=f"Open: {title}" if title else f"Open the embedded content ({host or url})")


def media_src(el: etree._Element) -> str:
    """The URL a player element plays: its src (or an object's data), else its first `<source src>`."""
    src = el.get("src") or el.get("data") or ""
    if not src:
        for source in el.iter("source"):
            if source.get("src"):
                return source.get("src", "")
    return src


def embed_element(embed: Embed, inline: bool) -> etree._Element:
    """A link (with a linked thumbnail when known) in place of a player; a bare `<a>` inside a paragraph."""
    from lxml import etree

    link = etree.Element("a", href=embed.url)
    if embed.thumbnail:
        size = {"width": str(embed.thumbnail_size[0]), "height": str(embed.thumbnail_size[1])} if embed.thumbnail_size else {}
        etree.SubElement(link, "img", src=embed.thumbnail, alt=embed.label, **size)
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


def players_to_links(root: etree._Element, resolve: Callable[[str], str] = lambda url: url, tags: tuple[str, ...] = PLAYERS) -> None:
    """Replace each player (`tags`) under `root` with `embed_element`; `resolve` makes its URL absolute.

    A player without a URL, or with one the allowlist refuses (`javascript:`), is left alone
    for the sanitiser to drop with its content.
    """
    for el in list(root.iter(*tags)):
        src = media_src(el)
        if not src or not is_safe_url(src):
            continue
        title = (el.get("title") or el.get("aria-label") or "").strip()
        if el.tag in PLAYERS:
            embed = embed_for(resolve(src), title)
        else:
            kind = "Listen" if el.tag == "audio" else "Watch the video"
            poster = el.get("poster")
            embed = Embed(url=resolve(src), label=f"{kind}: {title}" if title else kind, thumbnail=resolve(poster) if poster else None)
        parent = el.getparent()
        if parent is None:
            continue
        new = embed_element(embed, inline=parent.tag in _INLINE_PARENTS)
        new.tail = el.tail
        parent.replace(el, new)
