"""A post too long for one email: its HTML cut at a paragraph, ending with a link to the rest.

Gmail clips an email whose HTML passes about 102 KB, hiding the rest of the post and the
footer (the unsubscribe link with it). A post whose email would pass the lint's limit
(`lint.HTML_LIMIT`, rule 1) is never refused for it: `fit` keeps the longest run of the post
that fits, cut after a whole block (a paragraph, a list item, a table, a code block: the last
thing shown is never a heading), and ends it with a link to the post on the web, labelled by
`[newsletter] continue_reading`. The plain text keeps the whole post: no client clips it, and
it still holds every link of the shorter HTML (rule 9).

The cut is a prefix of the post's HTML in document order: the chosen block, everything before
it, and the elements that hold it (a list, a quote, a <details>), closed after it. Which prefix
fits is found by interpolating on the sizes of rendered candidates, usually in three or four
renders; the same post gives the same cut every time.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # lxml is imported when an edition is cut
    from lxml import etree

# Blocks a cut may follow; inline content (a paragraph's words, a table's rows) is never split.
_BLOCKS = frozenset({"p", "pre", "table", "figure", "hr", "blockquote", "ul", "ol", "li", "dl", "dd", "div", "section", "details"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_ATOMIC = frozenset({"p", "pre", "table", "figure", *_HEADINGS})  # nothing inside them is a place to cut


def continue_link(url: str, label: str) -> str:
    """The paragraph that ends a cut email: a link to the whole post on the web."""
    return f'<p class="continue"><a href="{html_lib.escape(url)}">{html_lib.escape(label)}</a></p>'


def _parse(body: str) -> etree._Element:
    import lxml.html

    return lxml.html.fragment_fromstring(body, create_parent="div")


def _candidates(root: etree._Element) -> list[etree._Element]:
    """The blocks a cut may follow, in the order they end (post-order): keeping more of them keeps more of the post."""
    found: list[etree._Element] = []

    def walk(el: etree._Element) -> None:
        if el.tag not in _ATOMIC:
            for child in el:
                if isinstance(child.tag, str):
                    walk(child)
        if el is not root and el.tag in _BLOCKS:
            found.append(el)

    walk(root)
    return found


def _serialize(root: etree._Element) -> str:
    import lxml.html

    return (root.text or "") + "".join(lxml.html.tostring(child, encoding="unicode") for child in root)


def prefix(body: str, kept: int) -> str:
    """`body` up to the end of its `kept`-th candidate block (none: ""), with the elements holding it closed after it."""
    if kept <= 0:
        return ""
    root = _parse(body)
    node = _candidates(root)[kept - 1]
    while node is not root:
        parent = node.getparent()
        for later in list(node.itersiblings()):
            parent.remove(later)  # with its tail
        node.tail = "\n"
        node = parent
    return _serialize(root)


def fit(render: Callable[[str], str], body: str, url: str, label: str, limit: int) -> tuple[str, bool]:
    """`render(body)` when it is at most `limit` bytes; else the longest cut of `body` (see the
    module docstring) that renders within `limit`, followed by the continue link. Returns the
    rendered HTML and whether it was cut."""
    whole = render(body)
    if len(whole.encode("utf-8")) <= limit:
        return whole, False
    total = len(_candidates(_parse(body)))
    ending = continue_link(url, label)
    rendered: dict[int, tuple[int, str]] = {}

    def size(kept: int) -> int:
        if kept not in rendered:
            page = render(prefix(body, kept) + "\n" + ending)
            rendered[kept] = (len(page.encode("utf-8")), page)
        return rendered[kept][0]

    lo, hi = 0, total  # size(lo) fits (or nothing does), size(hi) does not
    hi_size = len(whole.encode("utf-8"))
    steps = 0
    while hi - lo > 1:
        lo_size = size(lo)
        if lo_size > limit:
            break  # not even the template and the link fit: send that, never nothing
        guess = lo + round((hi - lo) * (limit - lo_size) / max(hi_size - lo_size, 1))
        if steps % 3 == 2:
            guess = (lo + hi) // 2  # every third probe halves the range, however uneven the blocks
        probe = min(max(guess, lo + 1), hi - 1)
        steps += 1
        if size(probe) <= limit:
            lo = probe
        else:
            hi, hi_size = probe, size(probe)
    size(lo)
    return rendered[lo][1], True
