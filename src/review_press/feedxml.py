"""RSS 2.0 and Atom 1.0 documents through feedgen, its faults worked around (see `feeds`).

Its own module, imported by the first RSS or Atom document rendered: feedgen brings dateutil,
start-up that a build with nothing to render does not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from .site import FEEDS

if TYPE_CHECKING:  # `feeds` imports this module when it renders: nothing of it is needed at run time here
    import datetime as dt

    from .content import Post
    from .feeds import Entry, FeedDoc, FeedLink
    from .site import Site

ATOM_NS = "http://www.w3.org/2005/Atom"
FH_NS = "http://purl.org/syndication/history/1.0"
GENERATOR = "review-press"  # no version: a release must not change every feed's bytes
MEDIA_OF = {kind: media for kind, _, media in FEEDS}


class _FeedExtras(BaseExtension):
    """What feedgen cannot say at feed level: fh:archive, and RFC 5005 links in RSS (as atom:link)."""

    def __init__(self) -> None:
        self.archive = False
        self.history: tuple[FeedLink, ...] = ()

    def extend_ns(self) -> dict[str, str]:
        return {"fh": FH_NS} if self.archive else {}

    def extend_atom(self, feed: etree._Element) -> etree._Element:
        if self.archive:
            etree.SubElement(feed, f"{{{FH_NS}}}archive")
        return feed

    def extend_rss(self, rss: etree._Element) -> etree._Element:
        channel = rss.find("channel")
        for link in self.history:
            etree.SubElement(channel, f"{{{ATOM_NS}}}link", href=link.href, rel=link.rel, type=link.media)
        if self.archive:
            etree.SubElement(channel, f"{{{FH_NS}}}archive")
        return rss


class _EntryExtras(BaseEntryExtension):
    """Per entry: the alternate link's rel/type for Atom (feedgen fault 2)."""

    def __init__(self) -> None:
        self.alternate = ""

    def extend_atom(self, entry: etree._Element) -> etree._Element:
        for link in entry.findall("link"):
            if link.get("href") == self.alternate:
                link.set("rel", "alternate")
                link.set("type", "text/html")
        return entry


def build_feedgen(site: Site, doc: FeedDoc, entries: list[Entry], self_url: str, updated: dt.datetime) -> FeedGenerator:
    """A FeedGenerator for an RSS or Atom document at `self_url`, its newest entry `updated`,
    with feedgen's faults worked around."""
    config = site.config
    author = config.author
    fg = FeedGenerator()
    fg.register_extension("review_press", _FeedExtras, _EntryExtras, atom=doc.kind == "atom", rss=doc.kind == "rss")
    extras: _FeedExtras = fg.review_press
    extras.archive, extras.history = doc.archive, doc.history if doc.kind == "rss" else ()
    if doc.kind == "rss" and any(name and not email for name, email in (entry_author(e.post, author.name, author.email) for e in entries)):
        fg.load_extension("dc", atom=False, rss=True)  # dc:creator names an author who has no email (see `add_entry`)
    fg.id(self_url)
    fg.title(doc.title)
    fg.subtitle(doc.subtitle)  # also the RSS <description>
    fg.language(config.language)
    fg.generator(GENERATOR)
    fg.updated(updated)  # atom:updated and lastBuildDate, never the clock (fault 5)
    if author.name:
        fg.author({"name": author.name, "email": author.email} if author.email else {"name": author.name})
    if author.email:
        fg.managingEditor(f"{author.email} ({author.name})")
    fg.link(href=self_url, rel="self", type=MEDIA_OF[doc.kind])
    if doc.kind == "atom":
        for link in doc.history:
            fg.link(href=link.href, rel=link.rel, type=link.media)
    fg.link(href=doc.home, rel="alternate", type="text/html")  # last: RSS <channel><link> is the last link (fault 4)
    for entry in entries:  # newest first, appended in that order (fault 1)
        add_entry(fg, entry, config.author.name, config.author.email)
    return fg


def entry_author(post: Post, site_author: str, site_email: str) -> tuple[str, str]:
    """(name, email) of a post's author: its own `author:` (a name, never an email), else the site's."""
    return (post.author, "") if post.author else (site_author, site_email)


def add_entry(fg: FeedGenerator, entry: Entry, site_author: str, site_email: str) -> None:
    """Append one post to a FeedGenerator."""
    post = entry.post
    fe = fg.add_entry(order="append")
    fe.guid(entry.url, permalink=True)  # atom:id and <guid isPermaLink="true">
    fe.title(post.title)
    fe.link(href=entry.url, rel="alternate", type="text/html")
    fe.review_press.alternate = entry.url
    fe.updated(entry.updated)
    fe.published(entry.published)
    name, email = entry_author(post, site_author, site_email)
    if name:
        fe.author({"name": name, "email": email} if email else {"name": name})
    if name and not email and hasattr(fe, "dc"):
        fe.dc.dc_creator(name)  # RSS <author> must be an email address: a name alone goes in dc:creator
    if post.tags:
        fe.category([{"term": tag} for tag in post.tags])
    if entry.summary:
        fe.summary(entry.summary, type="html")  # RSS <description>
    if entry.content:
        fe.content(entry.content, type="html")  # never type="CDATA" (fault 3); RSS <content:encoded>
