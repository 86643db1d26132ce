"""Editions in the build: which posts are newsletter posts, and their files under out/email/<slug>/.

Each newsletter post gets three files: `index.html` (the email as a reader sees it),
`email.txt` (its plain-text part) and `email.eml` (the whole MIME message to a placeholder
reader, deterministic: dated at the post's date, with a Message-ID made from the post).
The edition behind them is rendered once per build, however many of the three are stale.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..config import Config
from ..content import Post
from ..delivery.message import build_message
from ..errors import PressError, PressErrors
from ..output import Artifact, atomic_write, make_key
from ..site import Site
from ..theme import Theme
from ..tokens import unsubscribe_url
from . import Edition, check_edition, lint, make_edition
from .lint import to_errors

EMAIL_DIR = "email"
FILES = ("index.html", "email.txt", "email.eml")
PREVIEW_NAME = "Reader"
PREVIEW_ADDRESS = "reader@example.invalid"
PREVIEW_TOKEN = "preview"


def is_newsletter(post: Post, config: Config) -> bool:
    """Whether `post` is mailed: dated (in the site's timezone) on or after `[newsletter] since`."""
    since = config.newsletter.since
    return since is not None and post.date.astimezone(config.tz).date() >= since


def newsletter_posts(site: Site) -> tuple[Post, ...]:
    """The site's newsletter posts, newest first (none when `since` is not set)."""
    return tuple(p for p in site.posts if is_newsletter(p, site.config))


def _domain(config: Config) -> str:
    address = config.newsletter.from_address or config.author.email
    return address.rsplit("@", 1)[1] if "@" in address else (urlsplit(config.base_url).hostname or "localhost")


def preview_message_id(post: Post, config: Config) -> str:
    """A stable Message-ID for the preview .eml of `post`."""
    digest = hashlib.sha256(f"{post.slug}\0{post.digest}\0{config.base_url}".encode()).hexdigest()[:12]
    return f"<{post.slug}.preview.{digest}@{_domain(config)}>"


def edition_files(edition: Edition, post: Post, config: Config) -> dict[str, bytes]:
    """The three preview files of one edition, personalised for a placeholder reader."""
    news = config.newsletter
    url = unsubscribe_url(config, PREVIEW_TOKEN)
    html, text = edition.personalize(PREVIEW_NAME, url)
    message = build_message(
        edition,
        to_name=PREVIEW_NAME,
        to_address=PREVIEW_ADDRESS,
        from_name=news.from_name or config.title,
        from_address=news.from_address or config.author.email or f"newsletter@{_domain(config)}",
        reply_to=news.reply_to,
        list_id=news.list_id,
        unsubscribe_url=url,
        unsubscribe_mailto=news.unsubscribe_mailto,
        message_id=preview_message_id(post, config),
        date=post.date,
    )
    return {"index.html": html.encode("utf-8"), "email.txt": text.encode("utf-8"), "email.eml": message}


def plan_editions(site: Site, theme: Theme, base_key: str) -> list[Artifact]:
    """out/email/<slug>/{index.html,email.txt,email.eml} for every newsletter post.

    Rendering a post's files runs the email lint; a failure is a `BuildError` naming the post
    (reported once, not once per file). Keys hold `base_key` (code, theme, press.toml) and
    the post's digest, everything the bytes depend on.
    """
    artifacts: list[Artifact] = []
    for post in newsletter_posts(site):
        files = _memo(post, site.config, theme)
        for name in FILES:
            artifacts.append(
                Artifact(
                    path=f"{EMAIL_DIR}/{post.slug}/{name}",
                    key=make_key("edition", base_key, post.digest, post.slug, name),
                    render=_picker(files, name),
                    origin=f"email edition of {post.source.name}",
                )
            )
    return artifacts


def _memo(post: Post, config: Config, theme: Theme) -> Callable[[], dict[str, bytes]]:
    """Render and lint `post`'s edition on first call; later calls reuse it (or raise nothing again)."""
    done: dict[str, dict[str, bytes] | None] = {}

    def files() -> dict[str, bytes]:
        if "files" not in done:
            done["files"] = None
            edition = make_edition(post, config, theme)
            check_edition(edition, post)
            done["files"] = edition_files(edition, post, config)
        result = done["files"]
        if result is None:
            raise PressErrors(())  # the first file reported this post's problems
        return result

    return files


def _picker(files: Callable[[], dict[str, bytes]], name: str) -> Callable[[], bytes]:
    return lambda: files()[name]


@dataclass(frozen=True)
class Preview:
    """What `preview` wrote, and the lint problems found (a preview is written even when it fails)."""

    slug: str
    paths: tuple[Path, ...]
    problems: tuple[PressError, ...]

    @property
    def html(self) -> Path:
        return self.paths[0]


def render_preview(post: Post, config: Config, theme: Theme) -> tuple[dict[str, bytes], tuple[PressError, ...]]:
    """One post's preview files and its lint problems, in memory."""
    edition = make_edition(post, config, theme)
    return edition_files(edition, post, config), tuple(to_errors(lint(edition, post), post))


def preview(root: Path, slug: str, *, now: dt.datetime | None = None) -> Preview:
    """Render any post's edition (newsletter post, draft or future post alike) into out/email/<slug>/.

    Returns the files written (index.html first) and the lint problems, which a writer wants
    to see but which do not stop a preview. An unknown slug is a `PressError` naming the known ones.
    """
    from ..build import BuildOptions, plan

    built = plan(root, BuildOptions(drafts=True, future=True, now=now))
    post = next((p for p in built.site.posts if p.slug == slug), None)
    if post is None:
        known = ", ".join(sorted(p.slug for p in built.site.posts)[:10]) or "none"
        raise PressError(f"no post with slug {slug!r}", hint=f"known slugs: {known}")
    files, problems = render_preview(post, built.config, built.theme)
    folder = built.config.out_dir / EMAIL_DIR / post.slug
    paths = []
    for name in FILES:
        atomic_write(folder / name, files[name])
        paths.append(folder / name)
    return Preview(slug=post.slug, paths=tuple(paths), problems=problems)
