"""Editions in the build: the files of the newsletter posts (`newsletter.is_newsletter`) under out/email/<slug>/.

Each newsletter post gets three files: `index.html` (the email as a reader sees it),
`email.txt` (its plain-text part) and `email.eml` (the whole MIME message to a placeholder
reader, deterministic: dated at the post's date, with a Message-ID made from the post).
The edition behind them is rendered once per build, however many of the three are stale,
and judged by the email lint (`lint.judge`). The verdict never stops the build: the files are
written either way, `build` reports the problems as warnings, `check` and `build --strict` as
errors, and `publish` refuses a post whose verdict has errors. Verdicts are kept by key in the
state folder, so an incremental build, which renders only what changed, reports them all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..config import Config
from ..content import Post
from ..errors import PressError
from ..newsletter import manage_url, message_id, newsletter_posts, sender, unsubscribe_url
from ..output import Artifact, atomic_write, make_key
from ..site import Site
from ..statedir import private_dir
from ..theme import Theme
from . import Edition, make_edition
from .lint import EmailProblem, Verdict, judge

EMAIL_DIR = "email"
FILES = ("index.html", "email.txt", "email.eml")
PREVIEW_NAME = "Reader"
PREVIEW_ADDRESS = "reader@example.invalid"
PREVIEW_TOKEN = "preview"
VERDICTS_NAME = "email-verdicts.json"
VERDICTS_VERSION = 1


def preview_message_id(post: Post, config: Config) -> str:
    """A stable Message-ID for the preview .eml of `post` (`newsletter.message_id`, kind preview)."""
    return message_id("preview", sender(config, preview=True).domain, slug=post.slug, seed=f"{post.digest}\0{config.base_url}")


def edition_files(edition: Edition, post: Post, config: Config) -> dict[str, bytes]:
    """The three preview files of one edition, personalised for a placeholder reader."""
    from ..delivery.message import build_message  # and the email package: imported when an edition is rendered

    who = sender(config, preview=True)
    url, manage = unsubscribe_url(config, PREVIEW_TOKEN), manage_url(config, PREVIEW_TOKEN)
    html, text = edition.personalize(PREVIEW_NAME, url, manage)
    message = build_message(
        edition,
        to_name=PREVIEW_NAME,
        to_address=PREVIEW_ADDRESS,
        from_name=who.name,
        from_address=who.address,
        reply_to=who.reply_to,
        list_id=who.list_id,
        unsubscribe_url=url,
        manage_url=manage,
        unsubscribe_mailto=who.unsubscribe_mailto,
        message_id=preview_message_id(post, config),
        date=post.date,
    )
    return {"index.html": html.encode("utf-8"), "email.txt": text.encode("utf-8"), "email.eml": message}


class PostEdition:
    """One newsletter post's edition in a build: rendered and judged at most once, when first needed.

    Its three files and its verdict come from the same rendering; `verdict_from` takes the
    verdict of an earlier build instead, when nothing it depends on (`key`) has changed.
    """

    def __init__(self, post: Post, config: Config, theme: Theme, key: str) -> None:
        self.post, self.config, self.theme, self.key = post, config, theme, key
        self._files: dict[str, bytes] | None = None
        self._verdict: Verdict | None = None

    def _render(self) -> None:
        edition = make_edition(self.post, self.config, self.theme)
        self._verdict = judge(edition, self.post)
        self._files = edition_files(edition, self.post, self.config)

    def files(self) -> dict[str, bytes]:
        """index.html, email.txt and email.eml, written whatever the verdict (they show what would be sent)."""
        if self._files is None:
            self._render()
        assert self._files is not None
        return self._files

    def verdict(self, known: Verdict | None = None) -> Verdict:
        """The post's verdict: from this build's rendering if there is one, else `known` (an earlier
        build's, for the same key), else rendered now."""
        if self._verdict is None and known is None:
            self._render()
        return self._verdict or known  # type: ignore[return-value]

    def picker(self, name: str) -> Callable[[], bytes]:
        """How an `Artifact` gets one of the three files."""
        return lambda: self.files()[name]


@dataclass(frozen=True)
class EditionPlan:
    """The build's email editions: every newsletter post's files (as `Artifact`s) and its verdict.

    A post's verdict (`judge`, the email lint) never stops the build: `build` reports it,
    `check` and `build --strict` raise it, `publish` refuses an unmailable post.
    """

    artifacts: tuple[Artifact, ...] = ()
    editions: tuple[PostEdition, ...] = ()

    def verdicts(self, cache: Path | None = None) -> tuple[Verdict, ...]:
        """Every newsletter post's verdict, newest post first. With `cache` (a file in the state
        folder), a post whose key is unchanged since the last build takes its verdict from there
        instead of being rendered again, and the file is rewritten (only when it changes) with
        today's verdicts, so an incremental build reports what a full one would."""
        known = _read_verdicts(cache, self.editions) if cache is not None else {}
        verdicts = tuple(e.verdict(known.get(e.key)) for e in self.editions)
        if cache is not None:
            _write_verdicts(cache, {e.key: v for e, v in zip(self.editions, verdicts, strict=True)})
        return verdicts


def edition_plan(site: Site, theme: Theme, base_key: str, now: dt.datetime | None = None) -> EditionPlan:
    """out/email/<slug>/{index.html,email.txt,email.eml} for every newsletter post (`newsletter.is_newsletter`
    at `now`: no drafts, no future posts, even in a `--drafts`/`--future` build), newest first, and the
    post's verdict (see `EditionPlan`). Keys hold `base_key` (code, theme, press.toml) and the
    post's digest, everything the bytes and the verdict depend on."""
    artifacts: list[Artifact] = []
    editions: list[PostEdition] = []
    for post in reversed(newsletter_posts(site.config, site.posts, now or dt.datetime.now(dt.UTC))):
        edition = PostEdition(post, site.config, theme, make_key("edition", base_key, post.digest, post.slug, _code_digest()))
        editions.append(edition)
        for name in FILES:
            artifacts.append(
                Artifact(
                    path=f"{EMAIL_DIR}/{post.slug}/{name}",
                    key=make_key("edition", base_key, post.digest, post.slug, name),
                    render=edition.picker(name),
                    origin=f"email edition of {post.source.name}",
                )
            )
    return EditionPlan(tuple(artifacts), tuple(editions))


def plan_editions(site: Site, theme: Theme, base_key: str, now: dt.datetime | None = None) -> list[Artifact]:
    """The files of `edition_plan` alone."""
    return list(edition_plan(site, theme, base_key, now).artifacts)


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """A hash of the edition's code: a changed lint rule or renderer makes every cached verdict stale."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def verdicts_path(config: Config) -> Path:
    """Where a build keeps its editions' verdicts (by key) for the next one."""
    return config.state_dir / "cache" / VERDICTS_NAME


def _read_verdicts(path: Path, editions: tuple[PostEdition, ...]) -> dict[str, Verdict]:
    """The verdicts an earlier build left at `path` for these editions' keys; {} when there are none or the file is unreadable."""
    try:
        data = json.loads(path.read_text("utf-8"))
        stored = data["verdicts"] if data.get("version") == VERDICTS_VERSION else {}
        return {
            e.key: Verdict(
                e.post.slug,
                tuple(
                    EmailProblem(str(m), path=e.post.source, line=line, hint=hint, severity="warning" if sev == "warning" else "error")
                    for m, line, hint, sev in stored[e.key]
                ),
            )
            for e in editions
            if e.key in stored
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_verdicts(path: Path, verdicts: dict[str, Verdict]) -> None:
    """Keep `verdicts` at `path` for the next build (sorted JSON, written only when it changes)."""
    data = {k: [[p.message, p.line, p.hint, p.severity] for p in v.problems] for k, v in verdicts.items()}
    raw = json.dumps({"version": VERDICTS_VERSION, "verdicts": data}, sort_keys=True, ensure_ascii=False).encode("utf-8")
    try:
        if path.read_bytes() == raw:
            return
    except OSError:
        pass
    private_dir(path.parent)
    atomic_write(path, raw, mode=0o600)


def render_preview(post: Post, config: Config, theme: Theme) -> tuple[dict[str, bytes], tuple[PressError, ...]]:
    """One post's preview files and its lint problems, in memory."""
    edition = make_edition(post, config, theme)
    return edition_files(edition, post, config), judge(edition, post).problems
