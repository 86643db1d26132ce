"""Email lint: the rules an edition must pass before it may be sent (issue 3, rules 1-9).

`lint_html` checks a finished email (HTML and plain text); `lint_post` finds raw HTML and
links in a post's Markdown that break a rule, with the line in the post's file. The post's raw
HTML is judged as the email carries it, after the allowlist (`markup.sanitize`): a `<script>`,
an `on*=` handler, a `javascript:` URL, a form or a `<style>` in a post is removed, not an
error; what survives (an http: link, an image without alt, a layout table) is reported. `lint_edition`
runs both and reports each problem once, at the post's line when it comes from the post.
All are pure functions returning `Problem`s, each an error or a warning (`severity`).

`judge` is the one place that decides whether a post may be mailed: its `Verdict` is what
`build` prints (as warnings), `check` and `build --strict` raise, and `publish` refuses the
post for. An error keeps the post from being sent; a warning (an `http:` link, which every
client opens) never does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote

from .. import markup
from ..content import Post
from ..errors import BuildError
from .render import MANAGE_SLOT, UNSUBSCRIBE_SLOT, absolute
from .tokens import tokens_of

if TYPE_CHECKING:  # lxml is imported when an email is judged: a build with nothing to render never loads it
    from lxml import etree
    from markdown_it.token import Token

HTML_LIMIT = 100 * 1024
STYLE_LIMIT = 16 * 1024
RULES = {
    1: "size: HTML under 100 KB (Gmail clips at about 102 KB), <style> under 16 KB",
    2: "no <script>, on* attributes, javascript: URLs, forms, external stylesheets or @import",
    3: "every a[href] and img[src] absolute https: (or mailto:), no data: images",
    4: 'every <img> has alt and a numeric width (write <img alt="..." width="600">)',
    5: "<html lang dir>, charset and viewport present; layout tables have role=presentation",
    6: "<style> only in <head>, holding only @media and :pseudo-class rules, with !important inside @media",
    7: "text gets an inlined font-family and color from its element or its table cell (headings carry their own, links"
    " their own color); no display:flex|grid, position: or var(",
    8: "MSO conditional comments balance; the preheader comes first in <body>",
    9: "the plain text is non-empty and holds every link URL of the HTML",
}
_FORM_TAGS = frozenset({"form", "input", "button", "select", "textarea"})
_URL_ATTRS = ("href", "src", "action", "formaction", "data", "poster", "background", "xlink:href")
_JAVASCRIPT = re.compile(r"^[\x00-\x20]*j[\s]*a[\s]*v[\s]*a[\s]*s[\s]*c[\s]*r[\s]*i[\s]*p[\s]*t[\s]*:", re.IGNORECASE)
_FORBIDDEN_CSS = re.compile(r"display\s*:\s*(?:inline-)?(flex|grid)|(?<![\w-])(position)\s*:|(var)\(", re.IGNORECASE)
_IMPORT = re.compile(r"@import", re.IGNORECASE)
_CONDITIONAL = re.compile(r"<!--\[if[^\]]*\]>|<!\[endif\]-->", re.IGNORECASE)
_MSO_BLOCK = re.compile(r"<!--\[if[^\]]*mso[^\]]*\]>(.*?)<!\[endif\]-->", re.IGNORECASE | re.DOTALL)
_CELLS = frozenset({"td", "th"})  # Gmail resets a cell's font and Outlook inherits nothing into a table: text inherits up to here
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})  # Outlook gives headings fonts and colours of its own
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One broken rule. `line` is the post file's line when the problem comes from the post's Markdown.

    `key` names the fault ("script", "url:http://x") so a fault found both in the post and in
    the finished email is reported once, at the post's line.
    """

    rule: int
    message: str
    key: str
    line: int | None = None
    severity: Severity = "error"  # "warning": reported, but the post is still mailed


def _styles(value: str) -> dict[str, str]:
    """A style attribute as {property: value}, lower-case names."""
    out = {}
    for decl in value.split(";"):
        name, sep, val = decl.partition(":")
        if sep:
            out[name.strip().lower()] = val.strip()
    return out


def _forbidden_css(css: str) -> Iterator[str]:
    for match in _FORBIDDEN_CSS.finditer(css):
        yield next(g for g in match.groups() if g).lower()


def _element_problems(root: etree._Element, line_of: Callable[[etree._Element], int | None], in_post: bool) -> Iterator[Problem]:
    """Rules 2, 3, 4 (alt), 5 (layout tables), 6 (<style> placement) and 7 (forbidden CSS) for every element."""
    for el in root.iter():
        tag = el.tag
        if not isinstance(tag, str):
            continue
        line = line_of(el)
        if tag == "script":
            yield Problem(2, "<script> is not allowed in email", "script", line)
        elif tag in _FORM_TAGS:
            yield Problem(2, f"<{tag}> (a form) is not allowed in email", "form", line)
        elif tag == "link" and "stylesheet" in (el.get("rel") or "").lower():
            yield Problem(2, f"external stylesheet {el.get('href', '')!r} is not allowed in email", "stylesheet", line)
        elif tag == "style":
            if _IMPORT.search(el.text or ""):
                yield Problem(2, "@import is not allowed in email", "import", line)
            if in_post or el.getparent() is None or el.getparent().tag != "head":
                yield Problem(6, "<style> outside <head>", "style-body", line)
        elif tag == "img":
            if "alt" not in el.attrib:
                yield Problem(4, f"<img src={el.get('src', '')!r}> has no alt text", "alt", line)
            if not in_post and not (el.get("width") or "").strip().isdigit():
                yield Problem(4, f"<img src={el.get('src', '')!r}> has no numeric width (width={el.get('width')!r})", "width", line)
        elif tag == "table" and el.get("role") != "presentation" and not is_data_table(el):
            yield Problem(5, 'a layout <table> without role="presentation"', "role", line)
        for name, value in el.attrib.items():
            low = name.lower()
            if low.startswith("on"):
                yield Problem(2, f"event handler attribute {name}= is not allowed in email", "on:" + low, line)
            elif low in _URL_ATTRS and _JAVASCRIPT.match(value):
                yield Problem(2, f"javascript: URL in {name}=", "javascript", line)
            elif low == "style":
                if _IMPORT.search(value):
                    yield Problem(2, "@import is not allowed in email", "import", line)
                for what in _forbidden_css(value):
                    yield Problem(7, f"{what!r} in a style attribute (email clients ignore or strip it)", "css:" + what, line)


def is_data_table(table: etree._Element) -> bool:
    """A table of data (it has header cells of its own), not one for layout."""
    return bool(table.xpath("./thead | ./tr/th | ./tbody/tr/th | ./caption"))


def _url_problem(tag: str, attr: str, url: str, line: int | None) -> Problem | None:
    """Rule 3 for one URL: absolute https (or mailto for links)."""
    if url in (UNSUBSCRIBE_SLOT, MANAGE_SLOT) or url.startswith("https://") or (tag == "a" and url.lower().startswith("mailto:")):
        return None
    if url.lower().startswith("data:"):
        return None if tag == "a" else Problem(3, "data: image (most clients block them; link an https image)", "data-image", line)
    if _JAVASCRIPT.match(url):
        return None  # rule 2 reports it
    if tag == "a" and url.lower().startswith("http://"):  # every client opens it; the reader's browser may warn
        return Problem(3, f"<{tag} {attr}={url!r}> is http:, not https:", f"url:{url}", line, "warning")
    return Problem(3, f"<{tag} {attr}={url!r}> is not an absolute https: URL", f"url:{url}", line)


@lru_cache(maxsize=32)
def _stylesheet_problems(css: str) -> tuple[Problem, ...]:
    """Rule 6 (and 2, 7) for the CSS left in <head>: only @media and pseudo-class rules, !important in @media."""
    problems: list[Problem] = []
    if len(css.encode("utf-8")) > STYLE_LIMIT:
        problems.append(Problem(1, f"<style> is {len(css.encode()) / 1024:.1f} KB, over Gmail's 16 KB", "style-size"))
    for what in _forbidden_css(css):
        problems.append(Problem(7, f"{what!r} in <style>", "css:" + what))
    import logging  # with cssutils, only when a stylesheet is judged: a build that judges none never needs it

    import cssutils  # imported only when a stylesheet is judged: a tenth of a second of start-up otherwise

    cssutils.log.setLevel(logging.CRITICAL)
    sheet = cssutils.parseString(css, validate=False)
    for rule in sheet:
        if rule.type == rule.COMMENT:
            continue
        if rule.type == rule.IMPORT_RULE:
            problems.append(Problem(2, "@import is not allowed in email", "import"))
        elif rule.type == rule.MEDIA_RULE:
            for inner in rule.cssRules:
                if inner.type != inner.STYLE_RULE:
                    continue
                for prop in inner.style.getProperties():
                    if prop.priority != "important":
                        problems.append(
                            Problem(
                                6, f"{inner.selectorText} {{{prop.name}: {prop.value}}} inside @media lacks !important", "media-important"
                            )
                        )
        elif rule.type == rule.STYLE_RULE:
            if ":" not in rule.selectorText:
                problems.append(Problem(6, f"plain rule {rule.selectorText!r} left in <style> (it should be inlined)", "style-rule"))
        else:
            problems.append(
                Problem(6, f"{rule.cssText.split('{')[0].strip()!r} in <style>: only @media and :pseudo rules belong there", "style-rule")
            )
    return tuple(problems)


def _has_font(styles: dict[str, str]) -> bool:
    return "font-family" in styles or "font" in styles


def _text_problems(body: etree._Element) -> Iterator[Problem]:
    """Rule 7: text gets font-family and color from an inline style on its element or an ancestor
    up to its table cell, where inheritance stops (Gmail resets every cell's font; Outlook carries
    nothing into a table). Headings carry their own (Outlook gives them its own fonts and colours),
    links their own color (clients recolour links). A missing style is reported once per cell.

    What is known of an element is kept by the element itself, never by `id()`: lxml makes a new
    proxy for a node whenever it is asked for one, so an id can come back for another node, and
    the verdict would depend on the memory layout, which the hash seed changes.
    """
    known: dict[etree._Element, tuple[bool, bool, etree._Element]] = {}

    def inherited(el: etree._Element) -> tuple[bool, bool, etree._Element]:
        """(font-family set, color set, the cell or root where inheritance stops) for text in `el`."""
        path: list[etree._Element] = []
        node, base = el, None
        while True:
            if node in known:
                base = known[node]
                break
            path.append(node)
            parent = node.getparent()
            if node.tag in _CELLS or parent is None:
                break
            node = parent
        font, color, anchor = base if base is not None else (False, False, path[-1])
        for node in reversed(path):
            styles = _styles(node.get("style") or "")
            font, color = font or _has_font(styles), color or "color" in styles
            known[node] = (font, color, anchor)
        return known[el]

    reported: set[etree._Element] = set()
    for el in body.iter():
        if not isinstance(el.tag, str) or el.tag in ("style", "script"):
            continue
        text = (el.text or "").strip() or next((c.tail.strip() for c in el if (c.tail or "").strip()), "")
        if text:
            font, color, anchor = inherited(el)
            if not (font and color) and anchor not in reported:
                reported.add(anchor)
                missing = " and ".join(name for name, ok in (("font-family", font), ("color", color)) if not ok)
                yield Problem(7, f"text in <{el.tag}> gets no inlined {missing} from itself or its <{anchor.tag}>: {text[:40]!r}", "font")
        own = _styles(el.get("style") or "")
        if el.tag in _HEADINGS and el.text_content().strip() and not (_has_font(own) and "color" in own):
            heading = " ".join(el.text_content().split())[:40]
            yield Problem(7, f"<{el.tag}> without its own inlined font-family and color (Outlook restyles headings): {heading!r}", "font")
        if el.tag == "a" and (el.text or len(el)) and "color" not in own:
            yield Problem(7, f"link {el.get('href', '')!r} without an inlined color", "font")


def _mso_problems(html: str) -> Iterator[Problem]:
    """Rule 8: conditional comments open and close in order; the ghost tables inside them balance."""
    depth = 0
    for match in _CONDITIONAL.finditer(html):
        depth += -1 if match.group(0).lower().startswith("<![endif") else 1
        if depth < 0 or depth > 1:
            yield Problem(8, "MSO conditional comments do not balance (an <![endif]--> without its <!--[if ...]>, or nested)", "mso")
            return
    if depth:
        yield Problem(8, "an <!--[if ...]> is never closed by <![endif]-->", "mso")
    ghost = " ".join(m.group(1) for m in _MSO_BLOCK.finditer(html)).lower()
    for tag in ("table", "tr", "td"):
        opened, closed = len(re.findall(rf"<{tag}\b", ghost)), ghost.count(f"</{tag}>")
        if opened != closed:
            yield Problem(8, f"the MSO ghost tables open {opened} <{tag}> but close {closed}", "mso")


def _preheader_problems(body: etree._Element, preheader: str | None) -> Iterator[Problem]:
    """Rule 8: the first thing in <body> is the hidden preheader."""
    first = next(iter(body), None)
    if (body.text or "").strip() or first is None or not isinstance(first.tag, str):
        yield Problem(8, "the preheader is not the first thing in <body>", "preheader")
        return
    styles = _styles(first.get("style") or "")
    if styles.get("display", "").replace("!important", "").strip() != "none":
        yield Problem(8, f"the first element of <body> (<{first.tag}>) is not a hidden preheader (display:none)", "preheader")
    elif preheader is not None and not (first.text_content() or "").strip().startswith(preheader.strip()):
        yield Problem(8, "the hidden preheader does not hold the edition's preheader text", "preheader")


def lint_html(html: str, text: str, *, url: str = "", preheader: str | None = None) -> list[Problem]:
    """Every rule (1-9) against one finished email. `url` is the post's URL (in-page links point at it)."""
    problems: list[Problem] = []
    size = len(html.encode("utf-8"))
    if size > HTML_LIMIT:
        problems.append(Problem(1, f"the HTML is {size / 1024:.1f} KB, over 100 KB (Gmail clips it)", "size"))
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError) as exc:
        return [*problems, Problem(5, f"the HTML cannot be parsed: {exc}", "parse")]
    head, body = root.find("head"), root.find("body")
    problems.extend(_element_problems(root, lambda el: None, in_post=False))
    if not root.get("lang") or not root.get("dir"):
        problems.append(Problem(5, "<html> needs lang and dir attributes", "html-lang"))
    metas = root.findall(".//meta")
    if not any(m.get("charset") or (m.get("http-equiv") or "").lower() == "content-type" for m in metas):
        problems.append(Problem(5, "no <meta charset>", "charset"))
    if not any((m.get("name") or "").lower() == "viewport" for m in metas):
        problems.append(Problem(5, 'no <meta name="viewport">', "viewport"))
    for style in root.iter("style"):
        if head is not None and style.getparent() is head:
            problems.extend(_stylesheet_problems(style.text or ""))
    if body is None:
        problems.append(Problem(8, "no <body>", "preheader"))
    else:
        problems.extend(_text_problems(body))
        problems.extend(_preheader_problems(body, preheader))
    problems.extend(_mso_problems(html))
    if not text.strip():
        problems.append(Problem(9, "the plain text is empty", "text-empty"))
    for tag, attr in (("a", "href"), ("img", "src")):
        for el in root.iter(tag):
            value = el.get(attr)
            if value is not None and (problem := _url_problem(tag, attr, value.strip(), None)):
                problems.append(problem)
    for el in root.iter("a"):
        href = (el.get("href") or "").strip()
        if not href or href in (UNSUBSCRIBE_SLOT, MANAGE_SLOT) or _JAVASCRIPT.match(href):
            continue
        page, _, _ = href.partition("#")
        wanted = page if url and page == url else href
        if wanted.lower().startswith("mailto:"):
            wanted = wanted[7:].split("?")[0]
        if wanted not in text and unquote(wanted) not in text:
            problems.append(Problem(9, f"the plain text lacks the link {wanted}", f"text:{wanted}"))
    return problems


def _fragment(source: str) -> etree._Element | None:
    """A piece of the post's raw HTML as the email carries it: sanitised, then parsed."""
    import lxml.html
    from lxml import etree

    try:
        return lxml.html.fragment_fromstring(markup.sanitize(source), create_parent="div")
    except (etree.ParserError, ValueError):
        return None


def _inline_line(token: Token, child_index: int) -> int:
    """The line offset of an inline child inside its paragraph: the line breaks before it."""
    children = token.children or []
    return sum(1 for c in children[:child_index] if c.type in ("softbreak", "hardbreak"))


def lint_post(post: Post, url: str) -> list[Problem]:
    """Raw HTML (as sanitised) and links in the post's Markdown that break a rule, each with its line in the file."""
    problems: list[Problem] = []
    for token in tokens_of(post.body_markdown):
        start = post.body_line + (token.map[0] if token.map else 0)
        if token.type == "html_block":
            root = _fragment(token.content)
            if root is not None:
                problems.extend(_raw_problems(root, start, url))
        elif token.type == "inline":
            for i, child in enumerate(token.children or []):
                line = start + _inline_line(token, i)
                if child.type == "html_inline":
                    root = _fragment(child.content)
                    if root is not None:
                        problems.extend(_raw_problems(root, line, url))
                elif child.type in ("link_open", "image"):
                    attr = "href" if child.type == "link_open" else "src"
                    raw = str(child.attrGet(attr) or "").strip()
                    if raw.startswith("#"):
                        continue
                    problem = _url_problem("a" if attr == "href" else "img", attr, absolute(raw, url), line)
                    if problem is not None:
                        problems.append(problem)
    return problems


def _raw_problems(root: etree._Element, first_line: int, url: str) -> Iterator[Problem]:
    """The rules raw HTML in a post can break, with lines counted from `first_line`."""

    def line_of(el: etree._Element) -> int:
        return first_line + max((el.sourceline or 1) - 1, 0)

    yield from _element_problems(root, line_of, in_post=True)
    for tag, attr in (("a", "href"), ("img", "src")):
        for el in root.iter(tag):
            value = (el.get(attr) or "").strip()
            if value and not value.startswith("#") and (problem := _url_problem(tag, attr, absolute(value, url), line_of(el))):
                yield problem


def lint_edition(html: str, text: str, *, url: str, preheader: str | None, post: Post | None = None) -> list[Problem]:
    """Every problem of one edition, once each: the post's own faults at their line, the rest after."""
    own = lint_post(post, url) if post is not None else []
    keys = {p.key for p in own}
    return own + [p for p in lint_html(html, text, url=url, preheader=preheader) if p.key not in keys]


class EmailProblem(BuildError):
    """One lint problem of a post's email edition: `path:line: message (hint)`, and its `severity`
    ("error": the post is not mailed; "warning": reported, the post is mailed all the same)."""

    def __init__(self, message: str, *, severity: Severity = "error", **where: object) -> None:
        super().__init__(message, **where)  # type: ignore[arg-type]
        self.severity: Severity = severity

    def __reduce__(self) -> tuple:
        return (_email_problem, (self.message, self.path, self.line, self.hint, self.severity))


def _email_problem(message: str, path: object, line: int | None, hint: str | None, severity: Severity) -> EmailProblem:
    return EmailProblem(message, path=path, line=line, hint=hint, severity=severity)


def to_errors(problems: Iterable[Problem], post: Post) -> list[EmailProblem]:
    """`EmailProblem`s (`BuildError`s) naming the post (and its line, when the fault is in the post's Markdown)."""
    return [
        EmailProblem(
            f"email edition of {post.slug!r}: {p.message}",
            path=post.source,
            line=p.line,
            hint=f"email rule {p.rule}: {RULES[p.rule]}",
            severity=p.severity,
        )
        for p in problems
    ]


@dataclass(frozen=True)
class Verdict:
    """Whether one post may be mailed, and every lint problem of its email edition, in order.

    `errors` keep the post from being sent (`publish` refuses it; `check` and `build --strict`
    fail); `warnings` are reported and never stop a send or a build.
    """

    slug: str
    problems: tuple[EmailProblem, ...] = ()

    @property
    def errors(self) -> tuple[EmailProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[EmailProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def mailable(self) -> bool:
        """The post may be sent: its edition breaks no rule (warnings aside)."""
        return not self.errors


class Lintable(Protocol):
    """What the lint reads of an edition (an `Edition` is one)."""

    @property
    def html(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def preheader(self) -> str: ...


def verdict_of(problems: Iterable[Problem], post: Post) -> Verdict:
    """The verdict on `post` given its edition's lint problems (as `lint_edition` found them)."""
    return Verdict(post.slug, tuple(to_errors(problems, post)))


def judge(edition: Lintable, post: Post) -> Verdict:
    """Is `post` mailable as `edition`? The one place that decides: build, check and publish all ask here."""
    return verdict_of(lint_edition(edition.html, edition.text, url=edition.url, preheader=edition.preheader, post=post), post)
