"""The staged pipeline: config -> posts -> site -> artifacts (pages, feeds, editions) -> out/.

Each stage is a plain function over plain data (after Zola): `plan` does no I/O beyond
reading input, and `build` hands everything to the one writer in `output`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, feeds, gcpause, images, pages, sitefiles
from .config import CONFIG_NAME, Config, load_config
from .content import Post, load_posts
from .edition.lint import EmailProblem, Verdict
from .edition.plan import EditionPlan, edition_plan, verdicts_path
from .errors import BuildError, raise_all
from .output import Artifact, WriteReport, check_paths, file_artifact, render_all, write_output
from .redirects import find_redirects, plan_redirects
from .site import Site, make_site
from .site import scheduled as site_scheduled
from .storeplace import has_store
from .theme import ASSETS, Theme

if TYPE_CHECKING:  # the identity module is imported when there are campaigns
    from .identity import CampaignRecord


@dataclass(frozen=True)
class BuildOptions:
    """What a build includes: drafts and future posts are out unless asked for. `strict`: an
    email-lint problem (a warning too) fails the build, before anything is written."""

    drafts: bool = False
    future: bool = False
    now: dt.datetime | None = None
    strict: bool = False


@dataclass(frozen=True)
class Plan:
    """Everything a build would write, before anything is written."""

    config: Config
    site: Site
    theme: Theme
    artifacts: tuple[Artifact, ...]
    scheduled: tuple[Post, ...] = ()  # not drafts, dated after the build's `now`: they appear when their date comes
    email: EditionPlan = dataclasses.field(default_factory=EditionPlan)  # the newsletter posts' editions: their files are among `artifacts`
    verdicts: tuple[Verdict, ...] = ()  # each newsletter post's email lint verdict, once `build` or `check` has judged

    @property
    def email_problems(self) -> tuple[EmailProblem, ...]:
        """Every email-lint problem of the judged posts (errors and warnings), newest post first, each at its file:line."""
        return tuple(p for v in self.verdicts for p in v.problems)

    @property
    def unmailable(self) -> tuple[str, ...]:
        """The slugs of the newsletter posts `publish` would refuse: their email breaks a lint rule."""
        return tuple(v.slug for v in self.verdicts if not v.mailable)


def static_artifacts(config: Config, theme: Theme) -> list[Artifact]:
    """The theme's assets (to out/assets/) and the site's static/ folder (to out/ as it is).

    Symlinks in static/ are followed only inside the site: one that leads out (to
    /etc/passwd, /proc/self/environ...) is an error, raised before anything is written.
    """
    arts = [file_artifact(rel, path, f"theme file {rel}") for rel, path in sorted(theme.assets().items())]
    listing = sitefiles.walk(config.static_dir, site=config.root, error=BuildError)
    raise_all(list(listing.errors))
    for path in listing.files:
        if path.is_file():  # a broken link has nothing to copy
            rel = path.relative_to(config.static_dir).as_posix()
            arts.append(file_artifact(rel, path, f"static/{rel}", site=config.root))
    return arts


def base_key(config: Config, theme: Theme) -> str:
    """What every artifact depends on: the code, the theme and press.toml."""
    raw = (config.root / CONFIG_NAME).read_bytes()
    return hashlib.sha256(f"{__version__}|{theme.digest}|".encode() + raw).hexdigest()[:16]


def sent_campaigns(config: Config) -> list[CampaignRecord]:
    """What the store remembers of the posts that went out by email (their old slugs become
    redirects); nothing when the site has no store yet."""
    if not has_store(config):
        return []
    from .store import ledger, open_store  # the store's modules: imported when there is a store to read

    with open_store(config) as store:
        return ledger.campaigns(store)


def plan(root: Path, options: BuildOptions = BuildOptions()) -> Plan:
    """Load, check and plan a build: raises every problem found; writes nothing but caches."""
    config = load_config(root)
    with gcpause.paused():  # the plan keeps what it makes (the posts from their cache too): the collector would find no garbage in it
        posts = load_posts(config)
        now = options.now or dt.datetime.now(dt.UTC)
        site = make_site(config, posts, now=now, drafts=options.drafts, future=options.future)
        theme = Theme.for_site(config.templates_dir, site=site, config=config)
        key = base_key(config, theme)
        email = edition_plan(site, theme, key, now)
        artifacts = [
            *pages.plan_pages(site, theme, key),
            *feeds.plan_feeds(site, key),
            *email.artifacts,
            *static_artifacts(config, theme),
            *images.plan_images(site),  # posts' images copied beside their pages, and resized copies
        ]
        redirects, errors = find_redirects(site, sent_campaigns(config), posts)
        moved, clashes = plan_redirects(site, theme, redirects, {a.path.casefold() for a in artifacts}, key)
        raise_all(errors + clashes)
        scheduled = () if options.future else site_scheduled(posts, now)
        return Plan(config=config, site=site, theme=theme, artifacts=(*artifacts, *moved), scheduled=scheduled, email=email)


def manifest_path(config: Config) -> Path:
    return config.state_dir / "manifest.json"


def build(root: Path, options: BuildOptions = BuildOptions()) -> tuple[Plan, WriteReport]:
    """Plan, judge every newsletter post's email, render and write out/ (only what changed).

    An email-lint problem does not stop the build: the site, its feeds and the email files are
    written, and the returned plan's `verdicts` hold the problems (`email_problems`). With
    `options.strict`, any problem is raised instead, before anything is written.
    """
    p = plan(root, options)
    p = dataclasses.replace(p, verdicts=p.email.verdicts(verdicts_path(p.config)))
    if options.strict:
        raise_all(list(p.email_problems))
    report = write_output(p.config.out_dir, list(p.artifacts), manifest_path(p.config))
    return p, report


def check(root: Path, options: BuildOptions = BuildOptions()) -> Plan:
    """Run every validation and render every artifact in memory; touch nothing in out/.

    Stricter than `build`: every email-lint problem is raised (each an `EmailProblem`, whose
    `severity` says whether `publish` would refuse the post or send it all the same).
    """
    p = plan(root, options)
    raise_all(check_paths(p.artifacts))
    render_all(list(p.artifacts), p.config.out_dir)
    p = dataclasses.replace(p, verdicts=p.email.verdicts())
    raise_all(list(p.email_problems))
    return p


__all__ = ["ASSETS", "BuildOptions", "Plan", "build", "check", "plan"]
