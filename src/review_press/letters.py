"""The mailings that are not a post's own campaign: the welcome email, the weekly digest and
corrections. Which are due, the editions they send, and starting them in the ledger
(`store.mailings` keeps them; the senders send them like any campaign).

- The welcome: `[newsletter] welcome`, else `posts/_welcome.md` when it exists (a Markdown file
  with front matter like a post's; files whose name starts with `_` are never posts). A reader
  gets it once, when they confirm (or `subscribers add --welcome`): the row is queued in that
  transaction and sent by the next `publish`, from the file as it is then.
- The weekly digest, for readers who chose it: the window runs from midnight (site timezone) of
  `[newsletter] digest_day` to the next; once a window has ended, `publish` starts one digest
  carrying every newsletter post whose campaign started and that no digest carried yet, dated
  before the window's end and no earlier than the first digest's window (so a post published
  late, or while publish was not running, goes in the next digest instead of being missed). A
  window with no such post has no digest. Each reader's digest lists the carried posts that their
  topics let through (`ledger.reads`): titles, summaries and links.
- A correction (`publish SLUG --correction "what changed"`): the edited post, its subject prefixed
  "Correction:" and the note above its text, once to each reader the post's campaign was sent to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import markup
from .config import CONFIG_NAME, WEEKDAYS, Config
from .content import Body, Post, parse_post
from .errors import ContentError, DeliveryError, PressError, raise_all
from .identity import Refusal
from .newsletter import is_newsletter
from .store import Store, ledger
from .store import mailings as stored

WELCOME_FILE = "posts/_welcome.md"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~&])")


@dataclass(frozen=True)
class Letter(Post):
    """A mailing that is no page of the site (the welcome, a digest): its links lead to the site's home."""

    @property
    def path(self) -> str:
        return ""


def _letter(post: Post, **changes: Any) -> Letter:
    return Letter(**{f.name: getattr(post, f.name) for f in dataclasses.fields(Post)} | changes)


def welcome_file(config: Config) -> Path | None:
    """The welcome email's file: `[newsletter] welcome`, else posts/_welcome.md; None when there is none."""
    if config.newsletter.welcome:
        return config.root / config.newsletter.welcome
    path = config.root / WELCOME_FILE
    return path if path.is_file() else None


def load_welcome(config: Config) -> Letter | None:
    """The welcome email as a post (its front matter needs a title and a date, like any post);
    None without one. A file named in press.toml that is missing is a `ContentError`."""
    path = welcome_file(config)
    if path is None:
        return None
    if not path.resolve().is_relative_to(config.root.resolve()):
        raise ContentError("the welcome email's file leads out of the site (a symlink?)", path=path, hint="keep it inside the site folder")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ContentError(
            f"cannot read the welcome email: {exc.strerror}", path=path, hint=f"[newsletter] welcome in {CONFIG_NAME}"
        ) from None
    return _letter(parse_post(path, raw, config), slug="welcome", draft=False)


def check_welcome(config: Config, theme: Any) -> tuple[PressError, ...]:
    """`check`'s look at the welcome email: its file parsed and its edition judged by the email
    lint as a post's is; an error raises (a `PressErrors` naming file and line), warnings are returned."""
    from .edition import make_edition
    from .edition.lint import judge

    letter = load_welcome(config)
    if letter is None:
        return ()
    verdict = judge(make_edition(letter, config, theme), letter)
    raise_all(list(verdict.errors))
    return tuple(verdict.warnings)


def window(config: Config, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The last weekly window that has ended by `now`: [start, end), from midnight of
    `digest_day` in the site's timezone (made from dates, so a change of summer time moves nothing)."""
    local = now.astimezone(config.tz).date()
    back = (local.weekday() - WEEKDAYS.index(config.newsletter.digest_day)) % 7
    end_day = local - dt.timedelta(days=back)
    start_day = end_day - dt.timedelta(days=7)
    midnight = dt.time(0, tzinfo=config.tz)
    return dt.datetime.combine(start_day, midnight), dt.datetime.combine(end_day, midnight)


@dataclass(frozen=True)
class DigestPlan:
    """A digest to start: its window, and the posts it carries with their campaign keys, oldest first."""

    key: str
    window: tuple[dt.datetime, dt.datetime]
    posts: tuple[tuple[Post, str], ...]


def digest_due(config: Config, posts: Sequence[Post], store: Store, now: dt.datetime) -> DigestPlan | None:
    """The digest a publish at `now` starts, or None: its window has a digest on record already, or
    there is no post for it (see the module doc). `posts`: every post of the site."""
    from . import identity

    start, end = window(config, now)
    key = stored.digest_key(start.date())
    carried, first = stored.digested(store)
    if any(m.key == key for m in stored.mailings(store)):
        return None
    floor = dt.datetime.fromisoformat(first) if first else start
    matching = identity.match(tuple(posts), ledger.campaigns(store), config.posts_dir)
    chosen: list[tuple[Post, str]] = []
    for post in sorted(posts, key=lambda p: (p.date, p.slug)):
        if is_newsletter(post, config, now) and floor <= post.date < end:
            record = matching.campaign_of(post)
            if record is not None and record.key not in carried:
                chosen.append((post, record.key))
    return DigestPlan(key, (start, end), tuple(chosen)) if chosen else None


def start_digest(config: Config, plan: DigestPlan, store: Store, now: dt.datetime) -> int:
    """Start `plan`'s digest in the ledger (`store.mailings.start_digest`, each post with the topics
    its campaign has); return how many rows."""
    keys = [key for _, key in plan.posts]
    topics = stored.post_topics(store, keys)
    return stored.start_digest(
        store,
        plan.key,
        plan.window,
        [(k, topics.get(k, ())) for k in keys],
        config.newsletter.topics,
        late_joiners=config.newsletter.late_joiners,
        now=now,
    )


def escape_markdown(text: str) -> str:
    """`text` as Markdown that renders as exactly that text."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def digest_letter(config: Config, window_: tuple[dt.datetime, dt.datetime], posts: Sequence[Post]) -> Letter:
    """The digest of `posts` as a post: each one's title (a link to its page), date and summary."""
    start = window_[0].astimezone(config.tz)
    title = f"{config.title}: the week of {start:%B} {start.day}, {start.year}"
    parts = []
    for post in posts:
        parts.append(f"## [{escape_markdown(post.title)}]({config.url(post.path)})")
        when = post.date.astimezone(config.tz)
        parts.append(f"*{when:%B} {when.day}, {when.year}*")
        if post.summary_text.strip():
            parts.append(escape_markdown(post.summary_text))
    body = "\n\n".join(parts) + "\n"
    rendered = markup.render_with_summary(body)
    names = "; ".join(p.title for p in posts)
    summary = f"{len(posts)} new post{'s' if len(posts) != 1 else ''}: {names}"
    return Letter(
        source=config.root / "digest",
        slug=f"digest-{start.date().isoformat()}",
        title=title,
        date=window_[1] - dt.timedelta(seconds=1),
        body=Body.of(body, rendered.html),
        summary_html=markup.render_summary(escape_markdown(summary)),
        summary_text=summary,
        digest="",
        author=config.author.name,
    )


def digest_editions(
    config: Config,
    theme: Any,
    make: Callable[[Post, Config, Any], Any],
    plan_window: tuple[dt.datetime, dt.datetime],
    posts: Sequence[tuple[Post, tuple[str, ...], str]],
) -> Callable[[ledger.Claim], Any]:
    """The edition each claimed reader of a digest gets: the carried posts (post, topics, campaign
    key) their topics let through (`ledger.reads`) and that they did not get on their own
    (`Claim.received`), made once per such set. A reader left with none (they changed their
    topics since it started, or a post was withdrawn) gets nothing: `NothingToSend`."""
    from .delivery.smtp import NothingToSend

    offered = config.newsletter.topics
    made: dict[tuple[str, ...], Any] = {}

    def edition_for(claim: ledger.Claim) -> Any:
        chosen = tuple(key for _, topics, key in posts if ledger.reads(claim.topics, topics, offered) and key not in claim.received)
        if not chosen:
            raise NothingToSend("nothing in this digest for the reader's topics, or they had it all already")
        if chosen not in made:
            made[chosen] = make(digest_letter(config, plan_window, [p for p, _, key in posts if key in chosen]), config, theme)
        return made[chosen]

    return edition_for


def correction_post(post: Post, note: str) -> Post:
    """The corrected post as its correction email shows it: "Correction:" before its subject, and the note above its text."""
    prefix = f"*Correction: {escape_markdown(note)}*\n\n"
    markdown, html = post.body.texts(post.source)  # the HTML as rendered: `Post.html` places its images
    return dataclasses.replace(
        post,
        subject=f"Correction: {post.subject or post.title}",
        body=Body.of(prefix + markdown, markup.render(prefix) + html),
        body_line=post.body_line - 2,
    )


def check_note(note: str) -> str:
    """A correction's note, trimmed; `DeliveryError` when it is empty, too long or has a line break."""
    note = note.strip()
    if not note:
        raise DeliveryError("--correction needs a note saying what changed", hint='e.g. --correction "the episode count was wrong"')
    if len(note) > 500 or any(unicodedata.category(c) == "Cc" for c in note):
        raise DeliveryError("--correction: the note must be one line of at most 500 characters, with no control character")
    return note


@dataclass(frozen=True)
class Prepared:
    """The welcome, digests and corrections a run sends (`senders.Outbound`), and those it refuses."""

    outbound: tuple[Any, ...]
    refused: tuple[Refusal, ...]
    warnings: tuple[PressError, ...]


def prepare(
    config: Config,
    theme: Any,
    posts: Sequence[Post],
    store: Store,
    make: Callable[[Post, Config, Any], Any],
    now: dt.datetime,
    keys: Sequence[str] | None = None,
) -> Prepared:
    """The edition of every welcome, digest and correction campaign with rows pending (only
    `keys`, if given), judged by the email lint as a post's is: one that breaks a rule, or whose
    file cannot be read, is refused and its rows stay pending (a publish after the fix sends
    them); one the guard rails paused is reported by the sender (`send_outbound`). A digest carries its
    posts as they are now: one withdrawn since (a draft again, or gone) is left out."""
    from . import identity
    from .campaigns import EmailRefusal
    from .edition.lint import judge
    from .senders import Outbound

    pending = [k for k in stored.with_pending(store) if keys is None or k in keys]
    if not pending:
        return Prepared((), (), ())
    found = {m.key: m for m in stored.mailings(store)}
    matching = identity.match(tuple(posts), ledger.campaigns(store), config.posts_dir)
    post_of = matching.posts_by_campaign(posts)
    outbound: list[Any] = []
    refused, warnings = [], []
    for key in pending:
        mailing = found[key]
        label = mailing_label(config, mailing, post_of)
        picker: Callable[[ledger.Claim], Any] | None = None
        if mailing.kind == "welcome":
            try:
                letter: Post | None = load_welcome(config)
            except PressError as exc:
                refused.append(
                    Refusal(_placeholder(config, label), f"the {label} cannot be read: {exc}", "fix it; its readers stay pending")
                )
                continue
            if letter is None:
                refused.append(
                    Refusal(
                        _placeholder(config, label),
                        f"welcome emails are queued but {WELCOME_FILE} is gone",
                        "put it back, or set [newsletter] welcome",
                    )
                )
                continue
        elif mailing.kind == "correction":
            post = post_of.get(mailing.corrects or "")
            if post is None:
                refused.append(Refusal(_placeholder(config, label), f"the {label}: its post is gone", "restore the post file"))
                continue
            letter = correction_post(post, mailing.note)
        else:
            assert mailing.window_start and mailing.window_end
            span = (dt.datetime.fromisoformat(mailing.window_start), dt.datetime.fromisoformat(mailing.window_end))
            carried = [
                (post_of[k], t, k)
                for k, t in stored.post_topics(store, mailing.posts).items()
                if k in post_of and is_newsletter(post_of[k], config, now)
            ]
            carried.sort(key=lambda pt: (pt[0].date, pt[0].slug))
            if not carried:
                refused.append(
                    Refusal(_placeholder(config, label), f"the {label}: every post it carries is withdrawn", "restore the posts")
                )
                continue
            picker = digest_editions(config, theme, make, span, carried)
            letter = digest_letter(config, span, [p for p, _, _ in carried])
        edition = make(letter, config, theme)
        verdict = judge(edition, letter)
        if not verdict.mailable:
            first = verdict.errors[0]
            refused.append(EmailRefusal(letter, f"the {label}: {first.message}", first.hint or "", problems=verdict.errors))
            continue
        warnings.extend(verdict.warnings)
        outbound.append(
            Outbound(
                key,
                label,
                edition.subject,
                picker or (lambda claim, e=edition: e),
                digest=mailing.kind == "digest",
                held_by=mailing.corrects if mailing.kind == "correction" else None,
            )
        )
    return Prepared(tuple(outbound), tuple(refused), tuple(warnings))


def mailing_label(config: Config, mailing: stored.Mailing, post_of: dict[str, Post]) -> str:
    """How a welcome, digest or correction is named in reports: "welcome email", "digest
    2026-11-23", "correction of <slug>". Each holds a space, which no post's slug does."""
    if mailing.kind == "welcome":
        return "welcome email"
    if mailing.kind == "digest":
        start = dt.datetime.fromisoformat(mailing.window_start or "1970-01-01T00:00:00Z")
        return f"digest {start.astimezone(config.tz).date().isoformat()}"
    post = post_of.get(mailing.corrects or "")
    return f"correction of {post.slug if post else mailing.corrects}"


def _placeholder(config: Config, label: str) -> Letter:
    """A stand-in post naming a mailing that cannot be made, for its refusal."""
    return Letter(
        source=config.root / label,
        slug=label,
        title=label,
        date=dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        body=Body.of("", ""),
        summary_html="",
        summary_text="",
        digest="",
    )
