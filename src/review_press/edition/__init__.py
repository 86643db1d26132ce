"""The email edition: one post -> subject, preheader, email-safe HTML and plain text.

`make_edition` does the expensive work once per post (the email template, premailer's CSS
inlining, the plain text from the Markdown tokens). The result holds three personalisation
slots, the recipient's name, the unsubscribe URL and the manage-your-subscription URL, which
`Edition.personalize` fills with plain string joins: it runs once per recipient and must stay
in microseconds.

premailer is configured for email rather than left at its defaults (see `render`):
`!important` is kept inside `@media` (the default strips it and so disables every mobile and
dark-mode override), images keep their pixel `width`, every URL is made absolute against the
post's URL (in-page footnote links become `post-url#fn1`, which works in every client), no
stylesheet is ever fetched, and cssutils' log noise is silenced.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass, field

from .. import markup
from ..config import Config
from ..content import Post
from ..theme import Theme
from .cut import fit
from .lint import HTML_LIMIT, EmailProblem, Problem, Verdict, judge, lint_edition
from .plaintext import render_text
from .render import MANAGE_SLOT, NAME_SLOT, UNSUBSCRIBE_SLOT, post_url, render_html

PREHEADER_MIN = 40
PREHEADER_MAX = 150
ANONYMOUS = "you"  # what "This email was sent to ..." says when a subscriber gave no name
_SLOTS = re.compile(f"({re.escape(NAME_SLOT)}|{re.escape(UNSUBSCRIBE_SLOT)}|{re.escape(MANAGE_SLOT)})")


@dataclass(frozen=True)
class Slotted:
    """A text cut at its personalisation slots, so filling them is a join, not a search.

    `parts` alternates literal text and slot markers; `names`, `urls` (unsubscribe) and
    `manages` (the manage-your-subscription page) index the markers.
    """

    parts: tuple[str, ...]
    names: tuple[int, ...]
    urls: tuple[int, ...]
    manages: tuple[int, ...] = ()

    @classmethod
    def of(cls, template: str) -> Slotted:
        parts = tuple(_SLOTS.split(template))
        slots = range(1, len(parts), 2)

        def where(slot: str) -> tuple[int, ...]:
            return tuple(i for i in slots if parts[i] == slot)

        return cls(parts, where(NAME_SLOT), where(UNSUBSCRIBE_SLOT), where(MANAGE_SLOT))

    def fill(self, name: str, url: str, manage: str = "") -> str:
        """The text with every name slot set to `name`, every unsubscribe slot to `url` and every
        manage slot to `manage` (all already escaped; an empty `manage` is `url`)."""
        out = list(self.parts)
        for i in self.names:
            out[i] = name
        for i in self.urls:
            out[i] = url
        for i in self.manages:
            out[i] = manage or url
        return "".join(out)


@dataclass(frozen=True)
class Edition:
    """A post as email: what every recipient gets, before their name and links go in.

    `html` and `text` hold the slots `NAME_SLOT`, `UNSUBSCRIBE_SLOT` and `MANAGE_SLOT`;
    `personalize` fills them.
    `cut`: the post was too long for one email, so the HTML ends early with a link to the post
    on the web (`edition.cut`); the text is whole.
    """

    slug: str
    subject: str
    preheader: str
    html: str
    text: str
    url: str
    cut: bool = False
    html_slots: Slotted = field(init=False, repr=False, compare=False)
    text_slots: Slotted = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "html_slots", Slotted.of(self.html))
        object.__setattr__(self, "text_slots", Slotted.of(self.text))

    @staticmethod
    def slot_values(name: str, unsubscribe_url: str, manage_url: str = "") -> tuple[str, str, str, str, str, str]:
        """(name, unsubscribe URL, manage URL) escaped for the HTML, then the three as they go in the text.

        A blank name reads "you"; line breaks in a name become spaces so it cannot add lines.
        Without a `manage_url` the manage slots get the unsubscribe URL (a page that works).
        """
        shown = " ".join(name.split()) or ANONYMOUS
        manage = manage_url or unsubscribe_url
        return html_lib.escape(shown), html_lib.escape(unsubscribe_url), html_lib.escape(manage), shown, unsubscribe_url, manage

    def personalize(self, name: str, unsubscribe_url: str, manage_url: str = "") -> tuple[str, str]:
        """(html, text) for one recipient: the name (escaped for HTML), their unsubscribe URL and
        their manage-your-subscription URL filled in."""
        html_name, html_url, html_manage, text_name, text_url, text_manage = self.slot_values(name, unsubscribe_url, manage_url)
        return self.html_slots.fill(html_name, html_url, html_manage), self.text_slots.fill(text_name, text_url, text_manage)


def preheader(post: Post, body_html: str | None = None) -> str:
    """The inbox preview line: the summary, lengthened from the body or shortened at a word, 40-150 characters.

    `body_html` is the post's HTML as the email carries it (`markup.sanitize`d), when the caller has it.
    """
    text = " ".join(post.summary_text.split())
    if len(text) < PREHEADER_MIN:
        html = markup.sanitize(post.html) if body_html is None else body_html
        body = " ".join(markup.plain_text(html).split())
        more = body[len(text) :].strip() if body.startswith(text) else body
        text = f"{text} {more}".strip() if text != more else text
    if len(text) < PREHEADER_MIN:
        text = f"{text} · {post.title}".strip(" ·")
    if len(text) > PREHEADER_MAX:
        cut = text[: PREHEADER_MAX - 1]
        if " " in cut[PREHEADER_MIN:]:
            cut = cut[: cut.rindex(" ")]
        text = cut.rstrip(" ,;:—–-") + "…"
    return text.ljust(PREHEADER_MIN, "\u00a0")


def make_edition(post: Post, site_config: Config, theme: Theme) -> Edition:
    """Render `post` as an email edition. Pure: reads only the theme's templates.

    A post whose HTML would pass the lint's size limit is cut at a paragraph (`edition.cut`).
    """
    body = markup.sanitize(post.html)  # the one allowlist, once: the email shows nothing it drops
    pre = preheader(post, body)
    url = post_url(post, site_config)
    html, cut = fit(
        lambda part: render_html(post, site_config, theme, pre, part),
        body,
        url,
        site_config.newsletter.continue_reading,
        HTML_LIMIT,
    )
    return Edition(
        slug=post.slug,
        subject=post.subject or post.title,
        preheader=pre,
        html=html,
        text=render_text(post, site_config),
        url=url,
        cut=cut,
    )


def lint(edition: Edition, post: Post | None = None) -> list[Problem]:
    """Every email-lint problem of `edition`; with `post`, faults in its Markdown carry their line."""
    return lint_edition(edition.html, edition.text, url=edition.url, preheader=edition.preheader, post=post)


__all__ = [
    "ANONYMOUS",
    "MANAGE_SLOT",
    "NAME_SLOT",
    "UNSUBSCRIBE_SLOT",
    "Edition",
    "EmailProblem",
    "Problem",
    "Slotted",
    "Verdict",
    "judge",
    "lint",
    "make_edition",
    "preheader",
]
