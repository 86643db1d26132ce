"""Offline stand-in for the W3C Feed Validation Service (validator.w3.org/feed), for our feeds.

The service cannot be reached from here, and its code (github.com/w3c/feedvalidator) is not on
PyPI, so this module re-implements, from reading that code, the checks that feeds made by
review-press could trip. Each problem is named by the validator's own message class (MissingGuid,
ContainsRelRef, DuplicateUpdated, ...) and is an "error" or a "warning" as it is there.

Covered, RSS 2.0: channel title/link/description present and single (MissingTitle, MissingLink,
MissingDescription, DuplicateElement); element names known (UndefinedElement); full URLs
(InvalidFullLink, InvalidUriChar); RFC 822 dates, day of week and plausibility
(InvalidRFC2822Date, ProblematicalRFC822Date, IncorrectDOW, ImplausibleDate); atom:link rel="self"
with an RSS/Atom type and an absolute href matching where the file is published (MissingAtomSelfLink,
SelfNotAtom, RelativeSelf, SelfDoesntMatchLocation); registered link relations
(UnregisteredAtomLinkRel); "email (Name)" addresses (EmailFormat, MissingRealName); HTML in titles
and channel description (ContainsHTML); items after channel metadata (MisplacedItem); item title or
description (ItemMustContainTitleOrDescription), guid present, unique, a full URL when a permalink
(MissingGuid, DuplicateValue, InvalidHttpGUID); description before content:encoded
(NeedDescriptionBeforeContent).
Atom 1.0: id/title/updated on the feed and every entry (MissingElement), author on each entry or the
feed, RFC 3339 dates (InvalidRFC3339Date, ImplausibleDate), canonical ids (NonCanonicalURI), unique
entry ids and updated values (DuplicateEntries, DuplicateUpdated), content/summary type
(InvalidTextType, InvalidMIMEType: e.g. feedgen's type="CDATA"), content or alternate link
(MissingContentOrAlternate, MissingTextualContent), self link, one alternate per type
(DuplicateAtomLink), link relations, RFC 5005 relations in entries (FeedHistoryRelInEntry), metadata
before entries (MisplacedMetadata), archives with current and prev/next-archive links
(MissingCurrentInArchive, ArchiveIncomplete), the "atom:" prefix (AvoidNamespacePrefix).
HTML content (RSS description and content:encoded, Atom type="html"): relative URL references
in <a href> and <img src> (ContainsRelRef), unsafe elements and attributes (SecurityRisk,
SecurityRiskAttr, DangerousStyleAttr, with the validator's element/attribute/CSS allow-lists cut
down to what Markdown, Pygments and footnotes produce plus the common rest), control characters
(BadCharacters). The security-risk cases are all flagged, some more strictly than the service:
<script>, <iframe>, <embed>, <object>, <meta> (named "meta refresh" when it is one) and the other
unsafe elements (SecurityRisk); on* event handlers (SecurityRiskAttr, as the service does);
javascript:, vbscript: and non-image data: URLs in any URL attribute, and forms (<form>, <input>,
<button>, <select>, <textarea>), which the service's allow-list lets through (SecurityRisk here).
Tags the strict tokenizer misses (`<script/src=...>`, `<img/onerror=...>`) are caught by a
looser scan.
JSON Feed 1.1 (not checked by the W3C service at all; these follow jsonfeed.org/version/1.1):
version URL, title, items, unique non-empty item ids, content_html or content_text, RFC 3339
dates, `authors` (not the 1.0 `author`), absolute URLs, relative references in content_html.

Not covered: the validator's strict html5lib parse of escaped HTML (NotHtml) runs only when
html5lib is importable (`HTML5LIB`); anything about HTTP (media types, encodings, redirects);
DNS look-ups of email domains (UnknownHost); RSS 1.0, iTunes, Media RSS and other extensions we
do not emit; every other message class. A clean result here is strong evidence, not proof, that
the W3C service would report no errors and no warnings.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import html as html_lib
import json
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from lxml import etree

try:  # the validator's NotHtml check parses with html5lib in strict mode
    import html5lib

    HTML5LIB = True
except ImportError:  # pragma: no cover - depends on the environment
    HTML5LIB = False

ATOM = "http://www.w3.org/2005/Atom"
FH = "http://purl.org/syndication/history/1.0"
KNOWN_NS = {ATOM: "atom", FH: "fh", "http://purl.org/dc/elements/1.1/": "dc", "http://purl.org/rss/1.0/modules/content/": "content"}
KNOWN_NS_INV = {prefix: uri for uri, prefix in KNOWN_NS.items()}
LINK_RELS = {"alternate", "current", "describedby", "edit", "edit-media", "enclosure", "first", "hub", "last", "license", "next"}
LINK_RELS |= {"next-archive", "payment", "prev-archive", "previous", "related", "replies", "search", "self", "service", "up", "via"}
RFC5005_RELS = {"current", "first", "last", "next", "next-archive", "prev-archive", "previous"}
SELF_TYPES = {"application/atom+xml", "application/rss+xml", "application/rdf+xml"}
RSS_CHANNEL = {"title", "link", "description", "language", "copyright", "managingEditor", "webMaster", "pubDate", "lastBuildDate"}
RSS_CHANNEL |= {"category", "generator", "docs", "cloud", "ttl", "image", "rating", "textInput", "skipHours", "skipDays", "item"}
RSS_ITEM = {"title", "link", "description", "author", "category", "comments", "enclosure", "guid", "pubDate", "source"}
RSS_UNIQUE = {"title", "link", "description", "language", "copyright", "managingEditor", "webMaster", "pubDate", "lastBuildDate"}
RSS_UNIQUE |= {"generator", "docs", "ttl", "image"}
ATOM_FEED_UNIQUE = ("id", "title", "updated", "subtitle", "rights", "generator", "icon", "logo")
ATOM_ENTRY_UNIQUE = ("id", "title", "updated", "published", "summary", "rights")
HTML_TAGS = {"a", "abbr", "address", "article", "aside", "audio", "b", "blockquote", "body", "br", "button", "caption", "cite"}
HTML_TAGS |= {"code", "col", "dd", "del", "details", "div", "dl", "dt", "em", "figcaption", "figure", "font", "footer", "form"}
HTML_TAGS |= {"h1", "h2", "h3", "h4", "h5", "h6", "head", "header", "hr", "html", "i", "iframe", "img", "input", "ins", "kbd"}
HTML_TAGS |= {"label", "li", "link", "main", "mark", "meta", "nav", "ol", "p", "pre", "q", "s", "samp", "script", "section"}
HTML_TAGS |= {"small", "span", "strike", "strong", "style", "sub", "summary", "sup", "table", "tbody", "td", "th", "thead"}
HTML_TAGS |= {"time", "title", "tr", "tt", "u", "ul", "var", "video"}
HTML_TAGS_UNSAFE = {"applet", "base", "basefont", "body", "embed", "frame", "frameset", "head", "html", "iframe", "link", "meta"}
HTML_TAGS_UNSAFE |= {"noframes", "object", "param", "script", "style", "title", "xmp", "plaintext", "listing", "comment", "slot"}
HTML_ATTRS_OK = {"abbr", "align", "alt", "border", "cellpadding", "cellspacing", "cite", "class", "colspan", "controls", "datetime"}
HTML_ATTRS_OK |= {"dir", "height", "href", "hreflang", "id", "lang", "loading", "name", "poster", "rel", "reversed", "role"}
HTML_ATTRS_OK |= {"rowspan", "scope", "sizes", "span", "src", "srcset", "start", "summary", "target", "title", "type", "valign"}
HTML_ATTRS_OK |= {"value", "width", "xml:lang", "xmlns", "headers", "decoding", "referrerpolicy", "crossorigin", "nowrap"}
HTML_ATTRS_OK |= {"open", "preload", "loop", "muted", "playsinline"}  # on the service's list too (details, video, audio)
FORM_TAGS = {"form", "input", "button", "select", "textarea"}
URL_ATTRS = {"href", "src", "action", "formaction", "data", "poster", "background", "cite", "xlink:href", "srcset", "ping"}
SAFE_DATA_URL = re.compile(r"^data:image/(png|gif|jpeg|webp)[;,]")
CSS_OK = {"background-color", "border", "clear", "color", "display", "float", "font-size", "font-style", "font-weight", "height"}
CSS_OK |= {"margin", "padding", "text-align", "text-decoration", "vertical-align", "white-space", "width"}
_RFC2822 = re.compile(
    r"((Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d\d? (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d\d\d\d \d\d:\d\d(:\d\d)? "
    r"(([+-]?\d\d[03]0)|UT|GMT|EST|EDT|CST|CDT|MST|MDT|PST|PDT|Z)$"
)
_RFC3339 = re.compile(r"^\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*)?(Z|[+-]\d\d:\d\d)$")
_FULL_URI = re.compile(r"[a-zA-Z][0-9a-zA-Z+\-.]*:(//)?[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#]+$")
_URI_CHAR = re.compile(r"[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#]")
_HREF = re.compile(r"""<a\s+href=(?:"(.*?)"|'(.*?)'|([\w-]+))[\s>]""", re.IGNORECASE)
_IMG = re.compile(r"""<img\s+[^>]*src=(?:"(.*?)"|'(.*?)'|([\w-]+))[\s>]""", re.IGNORECASE)
_ABSOLUTE = re.compile(r"\w+:")
_END_TAG = re.compile(r"</(\w+)>")
_TAG = re.compile(r"<([a-zA-Z][\w-]*)((?:\s+[^\s=>/]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?)*)\s*/?>")
_ATTR = re.compile(r"""([^\s=>/]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
_LOOSE_UNSAFE_TAG = re.compile(r"<\s*(script|iframe|embed|object|applet|form|meta|base|link|style|frame|frameset)(?=[\s/>])", re.IGNORECASE)
_LOOSE_HANDLER = re.compile(r"<[a-zA-Z][^>]*?[\s/\"']on[a-zA-Z]+\s*=", re.IGNORECASE)
_EMAIL_NAME = re.compile(r"^[\w.+'-]+@[\w-]+(\.[\w-]+)+ \([^()]+\)$")
_PCHAR = "-._~!$&'()*+,;=:@"


@dataclass(frozen=True)
class Problem:
    """One finding: its level as the W3C validator has it, the validator's message name, and where."""

    level: str  # "error" or "warning"
    code: str
    where: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.level} {self.code} at {self.where}: {self.detail}"


class _Report:
    """Collects problems for one document."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, code: str, where: str, detail: str = "") -> None:
        self.problems.append(Problem("error", code, where, detail))

    def warn(self, code: str, where: str, detail: str = "") -> None:
        self.problems.append(Problem("warning", code, where, detail))


def canonical_form(uri: str) -> str:
    """The validator's canonical form of an http(s) URI (uri.py: lower-case scheme and host, no
    default port, each path segment unescaped, NFC'd and re-escaped keeping only pchar)."""
    parts = urlsplit(uri)
    scheme, netloc = parts.scheme.lower(), parts.netloc.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default and netloc.endswith(default):
        netloc = netloc[: -len(default)]
    path = "/".join(quote(unquote(segment), safe=_PCHAR) for segment in parts.path.split("/")) or "/"
    return urlunsplit((scheme, netloc, path, parts.query, parts.fragment))


def _check_full_uri(report: _Report, value: str, where: str) -> bool:
    """rfc2396_full: an absolute URI of URI characters only (no spaces, no raw non-ASCII)."""
    if _FULL_URI.match(value) and (not value.lower().startswith("http") or re.match(r"^\w+://[^/]", value)):
        return True
    bad = next((c for c in value if ord(c) < 128 and not _URI_CHAR.match(c)), None)
    report.error("InvalidUriChar" if bad else "InvalidFullLink", where, value)
    return False


def _check_rfc822(report: _Report, value: str, where: str, now: dt.datetime) -> None:
    if not _RFC2822.match(value):
        report.error("InvalidRFC2822Date", where, value)
        return
    parsed = email.utils.parsedate_to_datetime(value)
    if "," in value and parsed.strftime("%a") != value[:3]:
        report.error("IncorrectDOW", where, value)
    elif parsed.year < 1990 or parsed > now + dt.timedelta(minutes=10):
        report.warn("ImplausibleDate", where, value)


def _check_rfc3339(report: _Report, value: str, where: str, now: dt.datetime) -> None:
    if not _RFC3339.match(value):
        report.error("InvalidRFC3339Date", where, value)
    elif (when := dt.datetime.fromisoformat(value.replace("Z", "+00:00"))).year < 1990 or when > now + dt.timedelta(minutes=10):
        report.warn("ImplausibleDate", where, value)


def check_html(report: _Report, html: str, where: str) -> None:
    """Escaped HTML content: relative references, unsafe markup, bad characters, strict parse."""
    for match in [*_IMG.finditer(html), *_HREF.finditer(html)]:
        ref = next(g for g in match.groups() if g is not None)
        if not _ABSOLUTE.match(ref.strip()):
            report.warn("ContainsRelRef", where, ref)
    tokenized: set[int] = set()
    for tag in _TAG.finditer(html):
        tokenized.add(tag.start())
        name = tag.group(1).lower()
        attrs = [(a.group(1).lower(), next((g for g in a.groups()[1:] if g is not None), "")) for a in _ATTR.finditer(tag.group(2))]
        if name == "meta" and any(k == "http-equiv" and v.strip().lower() == "refresh" for k, v in attrs):
            report.warn("SecurityRisk", where, "<meta http-equiv=refresh> (meta refresh)")
        elif name in HTML_TAGS_UNSAFE:
            report.warn("SecurityRisk", where, f"<{name}>")
        elif name in FORM_TAGS:
            report.warn("SecurityRisk", where, f"<{name}> (a form)")
        for key, value in attrs:
            if key.startswith("on"):
                report.warn("SecurityRiskAttr", where, f"{name} {key} (an event handler)")
            elif key == "style":
                props = re.findall(r"([-\w]+)\s*:", value.lower())
                if any(p not in CSS_OK for p in props) or not re.match(r"^[\s\w:;#%.,!()-]*$", value):
                    report.warn("DangerousStyleAttr", where, value)
            elif key not in HTML_ATTRS_OK and not key.startswith("data-"):
                report.warn("SecurityRiskAttr", where, f"{name} {key}")
            if key in URL_ATTRS and _script_url(value):
                report.warn("SecurityRisk", where, f"{name} {key}={value!r} (a script URL)")
    for match in _LOOSE_UNSAFE_TAG.finditer(html):
        if match.start() not in tokenized:
            report.warn("SecurityRisk", where, f"<{match.group(1).lower()}> (malformed tag)")
    for match in _LOOSE_HANDLER.finditer(html):
        if match.start() not in tokenized:
            report.warn("SecurityRiskAttr", where, f"{match.group(0)!r} (an event handler in a malformed tag)")
    if re.search("[\x80-\x9f\ufffd]", html):
        report.warn("BadCharacters", where)
    if HTML5LIB:
        try:
            html5lib.HTMLParser(strict=True).parseFragment(html)
        except Exception as exc:  # html5lib raises ParseError for any parse error in strict mode
            report.warn("NotHtml", where, str(exc))


def _script_url(value: str) -> bool:
    """A URL a browser would run or render as a document: javascript:, vbscript:, data: other than a
    plain image (entities decoded, and the whitespace and control characters browsers skip ignored)."""
    url = re.sub(r"[\x00-\x20\x7f]", "", html_lib.unescape(value)).lower()
    if url.startswith("data:"):
        return not SAFE_DATA_URL.match(url)
    return url.startswith(("javascript:", "vbscript:", "livescript:"))


def _check_link_rel(report: _Report, rel: str, where: str) -> None:
    if rel not in LINK_RELS and not _FULL_URI.match(rel):
        report.warn("UnregisteredAtomLinkRel", where, rel)


def _check_self(report: _Report, links: list[etree._Element], where: str, self_url: str | None) -> None:
    """Exactly the checks the validator makes of rel="self" on a feed or channel."""
    selves = [link for link in links if link.get("rel") == "self"]
    if not selves:
        report.warn("MissingAtomSelfLink" if where.startswith("channel") else "MissingSelf", where)
    for link in selves:
        href = link.get("href", "")
        if link.get("type", "").split(";")[0] not in SELF_TYPES:
            report.warn("SelfNotAtom", where, link.get("type", ""))
        if not urlsplit(href).netloc:
            report.warn("RelativeSelf", where, href)
        elif self_url is not None and canonical_form(href) != canonical_form(self_url):
            report.warn("SelfDoesntMatchLocation", where, f"{href} != {self_url}")


def check_rss(data: bytes, self_url: str | None = None, now: dt.datetime | None = None) -> list[Problem]:
    """Problems the W3C validator would report for an RSS 2.0 document (see the module docstring)."""
    report, now = _Report(), now or dt.datetime.now(dt.UTC)
    root = etree.fromstring(data)
    if root.tag != "rss" or root.get("version") != "2.0":
        report.error("InvalidRSSVersion", "rss", root.get("version", ""))
    channels = root.findall("channel")
    if len(channels) != 1:
        report.error("MissingElement" if not channels else "DuplicateElement", "rss", "channel")
        return report.problems
    channel = channels[0]
    names = [_name(child) for child in channel if isinstance(child.tag, str)]
    for required, code in (("title", "MissingTitle"), ("link", "MissingLink"), ("description", "MissingDescription")):
        if required not in names:
            report.error(code, "channel", required)
    for name in set(names):
        if name in RSS_UNIQUE and names.count(name) > 1:
            report.error("DuplicateElement", "channel", name)
        if ":" not in name and name not in RSS_CHANNEL:
            report.error("UndefinedElement", "channel", name)
    if "item" in names and any(n != "item" for n in names[names.index("item") :]):
        report.warn("MisplacedItem", "channel")
    if (link := channel.findtext("link")) is not None:
        _check_full_uri(report, link.strip(), "channel link")
    for name in ("title", "description"):
        if (text := channel.findtext(name)) is not None and _html_end_tag(text):
            report.warn("ContainsHTML", f"channel {name}", text)
        if name == "title" and not (text or "").strip():
            report.warn("NotBlank", "channel title")
    for name in ("lastBuildDate", "pubDate"):
        if (text := channel.findtext(name)) is not None:
            _check_rfc822(report, text.strip(), f"channel {name}", now)
    for name in ("managingEditor", "webMaster"):
        if (text := channel.findtext(name)) is not None:
            _check_email_with_name(report, text.strip(), f"channel {name}")
    links = channel.findall(f"{{{ATOM}}}link")
    for link in links:
        _check_link_rel(report, link.get("rel", "alternate"), "channel atom:link")
        _check_full_uri(report, link.get("href", ""), "channel atom:link href")
    _check_self(report, links, "channel", self_url)
    guids: set[str] = set()
    for number, item in enumerate(channel.findall("item"), start=1):
        _check_item(report, item, f"item {number}", guids, now)
    return report.problems


def _check_item(report: _Report, item: etree._Element, where: str, guids: set[str], now: dt.datetime) -> None:
    names = [_name(child) for child in item if isinstance(child.tag, str)]
    if "title" not in names and "description" not in names:
        report.error("ItemMustContainTitleOrDescription", where)
    for name in set(names):
        if name in {"title", "link", "description", "guid", "pubDate", "author", "content:encoded"} and names.count(name) > 1:
            report.error("DuplicateElement", where, name)
        if ":" not in name and name not in RSS_ITEM:
            report.error("UndefinedElement", where, name)
    if "content:encoded" in names and "description" not in names[: names.index("content:encoded")]:
        report.warn("NeedDescriptionBeforeContent", where)
    if (title := item.findtext("title")) is not None and _html_end_tag(title):
        report.warn("ContainsHTML", f"{where} title", title)
    if (link := item.findtext("link")) is not None:
        _check_full_uri(report, link.strip(), f"{where} link")
    guid = item.find("guid")
    if guid is None:
        report.warn("MissingGuid", where)
    else:
        value = (guid.text or "").strip()
        if guid.get("isPermaLink", "true") == "true" and not _check_full_uri(report, value, f"{where} guid"):
            report.error("InvalidHttpGUID", f"{where} guid", value)
        if value in guids:
            report.error("DuplicateValue", f"{where} guid", value)
        guids.add(value)
    if (date := item.findtext("pubDate")) is not None:
        _check_rfc822(report, date.strip(), f"{where} pubDate", now)
    if (author := item.findtext("author")) is not None:
        _check_email_with_name(report, author.strip(), f"{where} author")
    for name in ("description", f"{{{KNOWN_NS_INV['content']}}}encoded"):
        if (html := item.findtext(name)) is not None:
            check_html(report, html, f"{where} {_short(name)}")
    for category in item.findall("category"):
        if not (category.text or "").strip():
            report.warn("NotBlank", f"{where} category")


def check_atom(data: bytes, self_url: str | None = None, now: dt.datetime | None = None) -> list[Problem]:
    """Problems the W3C validator would report for an Atom 1.0 feed document."""
    report, now = _Report(), now or dt.datetime.now(dt.UTC)
    root = etree.fromstring(data)
    if root.tag != f"{{{ATOM}}}feed":
        report.error("UndefinedElement", "feed", str(root.tag))
        return report.problems
    if root.nsmap.get(None) != ATOM:
        report.warn("AvoidNamespacePrefix", "feed", "atom")
    children = [child for child in root if isinstance(child.tag, str)]
    first_entry = next((i for i, c in enumerate(children) if c.tag == f"{{{ATOM}}}entry"), len(children))
    if any(c.tag != f"{{{ATOM}}}entry" for c in children[first_entry:]):
        report.error("MisplacedMetadata", "feed")
    _check_atom_metadata(report, root, "feed", ATOM_FEED_UNIQUE, now)
    links = root.findall(f"{{{ATOM}}}link")
    _check_atom_links(report, links, "feed")
    _check_self(report, links, "feed", self_url)
    rels = {link.get("rel", "alternate") for link in links}
    if root.find(f"{{{FH}}}archive") is not None and root.find(f"{{{FH}}}complete") is None:
        if "current" not in rels:
            report.warn("MissingCurrentInArchive", "feed")
        if not rels & {"prev-archive", "next-archive"}:
            report.warn("ArchiveIncomplete", "feed")
    feed_author = root.find(f"{{{ATOM}}}author") is not None
    ids: set[str] = set()
    updated: set[str] = set()
    for number, entry in enumerate(root.findall(f"{{{ATOM}}}entry"), start=1):
        where = f"entry {number}"
        _check_atom_metadata(report, entry, where, ATOM_ENTRY_UNIQUE, now)
        if entry.find(f"{{{ATOM}}}author") is None and not feed_author:
            report.error("MissingElement", where, "author")
        for value, seen, code in (
            (entry.findtext(f"{{{ATOM}}}id"), ids, "DuplicateEntries"),
            (entry.findtext(f"{{{ATOM}}}updated"), updated, "DuplicateUpdated"),
        ):
            if value is not None and value in seen:
                report.warn(code, where, value)
            seen.add(value or "")
        entry_links = entry.findall(f"{{{ATOM}}}link")
        _check_atom_links(report, entry_links, where)
        for link in entry_links:
            if link.get("rel") in RFC5005_RELS:
                report.warn("FeedHistoryRelInEntry", where, link.get("rel", ""))
        content, summary = entry.find(f"{{{ATOM}}}content"), entry.find(f"{{{ATOM}}}summary")
        for element in (content, summary):
            if element is not None:
                _check_text_construct(report, element, where)
        if content is None:
            if summary is None:
                report.warn("MissingTextualContent", where)
            if "alternate" not in {link.get("rel", "alternate") for link in entry_links}:
                report.error("MissingContentOrAlternate", where)
    return report.problems


def _check_atom_metadata(report: _Report, element: etree._Element, where: str, unique: tuple[str, ...], now: dt.datetime) -> None:
    """id, title and updated present and single; id canonical; dates RFC 3339; people named."""
    for name in unique:
        found = element.findall(f"{{{ATOM}}}{name}")
        if len(found) > 1:
            report.error("DuplicateElement", where, name)
        if not found and name in ("id", "title", "updated"):
            report.error("MissingElement", where, name)
    if (value := element.findtext(f"{{{ATOM}}}id")) is not None:
        if value != value.strip():
            report.error("UnexpectedWhitespace", f"{where} id")
        elif _check_full_uri(report, value, f"{where} id") and canonical_form(value) != value:
            report.warn("NonCanonicalURI", f"{where} id", f"{value} (canonical: {canonical_form(value)})")
    for name in ("updated", "published"):
        if (value := element.findtext(f"{{{ATOM}}}{name}")) is not None:
            _check_rfc3339(report, value, f"{where} {name}", now)
    for name in ("title", "subtitle"):
        if (text := element.find(f"{{{ATOM}}}{name}")) is not None:
            _check_text_construct(report, text, where)
    for person in [*element.findall(f"{{{ATOM}}}author"), *element.findall(f"{{{ATOM}}}contributor")]:
        if not (person.findtext(f"{{{ATOM}}}name") or "").strip():
            report.error("MissingElement", f"{where} author", "name")
        if (address := person.findtext(f"{{{ATOM}}}email")) is not None and not re.match(r"^[\w.+'-]+@[\w-]+(\.[\w-]+)+$", address):
            report.error("InvalidAddrSpec", f"{where} author email", address)
    for category in element.findall(f"{{{ATOM}}}category"):
        if not category.get("term"):
            report.error("MissingAttribute", f"{where} category", "term")
    if (generator := element.find(f"{{{ATOM}}}generator")) is not None and not (generator.text or "").strip():
        report.warn("NotBlank", f"{where} generator")


def _check_text_construct(report: _Report, element: etree._Element, where: str) -> None:
    """type="text" | "html" | "xhtml" (or a MIME type for content); html is checked as HTML."""
    kind, name = element.get("type", "text"), etree.QName(element).localname
    if kind not in ("text", "html", "xhtml"):
        if name != "content":
            report.error("InvalidTextType", f"{where} {name}", kind)
        elif "/" not in kind:
            report.error("InvalidMIMEType", f"{where} {name}", kind)
    if kind == "html":
        check_html(report, element.text or "", f"{where} {name}")
    elif kind == "text" and name in ("title", "subtitle") and _html_end_tag(element.text or ""):
        report.warn("ContainsUndeclaredHTML", f"{where} {name}", element.text or "")


def _check_atom_links(report: _Report, links: list[etree._Element], where: str) -> None:
    """href present and valid, rel registered, one alternate per (type, hreflang)."""
    alternates: set[tuple[str, str]] = set()
    for link in links:
        rel = link.get("rel", "alternate")
        _check_link_rel(report, rel, f"{where} link")
        if link.get("href") is None:
            report.error("MissingHref", f"{where} link")
        else:
            _check_full_uri(report, link.get("href", ""), f"{where} link href")
        if rel == "alternate":
            key = (link.get("type", ""), link.get("hreflang", ""))
            if key in alternates:
                report.error("DuplicateAtomLink", f"{where} link", str(key))
            alternates.add(key)


def check_json_feed(data: bytes, self_url: str | None = None, now: dt.datetime | None = None) -> list[Problem]:
    """Problems with a JSON Feed 1.1 document, named in the spirit of the validator's messages."""
    report, now = _Report(), now or dt.datetime.now(dt.UTC)
    feed = json.loads(data)
    if feed.get("version") != "https://jsonfeed.org/version/1.1":
        report.error("InvalidVersion", "feed", str(feed.get("version")))
    if not isinstance(feed.get("title"), str) or not feed["title"].strip():
        report.error("MissingElement", "feed", "title")
    if not isinstance(feed.get("items"), list):
        report.error("MissingElement", "feed", "items")
        return report.problems
    _check_json_people(report, feed, "feed")
    for key in ("home_page_url", "feed_url", "next_url", "icon", "favicon"):
        if key in feed:
            _check_full_uri(report, feed[key], f"feed {key}")
    if "feed_url" not in feed:
        report.warn("MissingSelf", "feed", "feed_url")
    elif self_url is not None and canonical_form(feed["feed_url"]) != canonical_form(self_url):
        report.warn("SelfDoesntMatchLocation", "feed", feed["feed_url"])
    ids: set[str] = set()
    for number, item in enumerate(feed["items"], start=1):
        where = f"item {number}"
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            report.error("MissingElement", where, "id")
        elif item_id in ids:
            report.warn("DuplicateEntries", where, item_id)
        ids.add(str(item_id))
        if not isinstance(item.get("content_html"), str) and not isinstance(item.get("content_text"), str):
            report.error("MissingElement", where, "content_html or content_text")
        if isinstance(item.get("content_html"), str):
            check_html(report, item["content_html"], f"{where} content_html")
        for key in ("url", "external_url", "image", "banner_image"):
            if key in item:
                _check_full_uri(report, item[key], f"{where} {key}")
        for key in ("date_published", "date_modified"):
            if key in item:
                _check_rfc3339(report, item[key], f"{where} {key}", now)
        if "tags" in item and not (isinstance(item["tags"], list) and all(isinstance(t, str) and t for t in item["tags"])):
            report.error("InvalidValue", f"{where} tags")
        _check_json_people(report, item, where)
    return report.problems


def _check_json_people(report: _Report, obj: dict, where: str) -> None:
    if "author" in obj:
        report.warn("Deprecated", where, "author (JSON Feed 1.0); use authors")
    for person in obj.get("authors", []):
        if not isinstance(person, dict) or not any(isinstance(person.get(k), str) and person[k] for k in ("name", "url", "avatar")):
            report.error("InvalidValue", f"{where} authors", repr(person))


def check_feed(path: str, data: bytes, self_url: str | None = None, now: dt.datetime | None = None) -> list[Problem]:
    """Check a document by its file name: *.json is JSON Feed, atom.xml Atom, any other .xml RSS."""
    if path.endswith(".json"):
        return check_json_feed(data, self_url, now)
    root = etree.fromstring(data)
    return check_atom(data, self_url, now) if root.tag == f"{{{ATOM}}}feed" else check_rss(data, self_url, now)


def _name(element: etree._Element) -> str:
    """An element's name as the validator spells it: `title`, `atom:link`, `content:encoded`."""
    qname = etree.QName(element)
    if qname.namespace is None:
        return qname.localname
    return f"{KNOWN_NS.get(qname.namespace, qname.namespace)}:{qname.localname}"


def _short(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _html_end_tag(text: str) -> bool:
    """The validator's ContainsHTML test: an end tag of an HTML element."""
    return any(tag.lower() in HTML_TAGS for tag in _END_TAG.findall(text))


def _check_email_with_name(report: _Report, value: str, where: str) -> None:
    """RSS author/managingEditor: `address (Real Name)`."""
    if not _EMAIL_NAME.match(value):
        report.warn("MissingRealName" if " " not in value else "EmailFormat", where, value)
