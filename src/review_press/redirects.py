"""Old URLs that keep working: a small redirect page (meta refresh, canonical link, a plain
link) at each path a post used to live at.

Two sources: the `aliases:` a post lists (as in Hugo), and, for a post that went out by email
under another slug, every slug its campaign was sent under (from the store, matched by
`identity`), since every sent email links to the old URL. Redirect pages are in no feed and
no sitemap. An alias that would overwrite a page of the site is an error naming the post's
file and line; an old slug now used by another page simply belongs to that page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from .content import Post
from .errors import ContentError, PressError
from .output import Artifact, folders_of, make_key
from .pages import out_path
from .site import Site
from .theme import Theme

if TYPE_CHECKING:  # the identity module is imported when there are campaigns
    from .identity import CampaignRecord


@dataclass(frozen=True)
class Redirect:
    """One old site path and the post it now leads to; `line` is the `aliases:` line (0: from the store)."""

    path: str
    post: Post
    line: int = 0


def find_redirects(site: Site, sent: Sequence[CampaignRecord], all_posts: Sequence[Post]) -> tuple[list[Redirect], list[PressError]]:
    """Every redirect of the site's posts: the old slugs of sent posts (their emails link there),
    then the posts' aliases. An alias another post claims, or that is a sent post's old URL, is
    an error naming the alias's line."""
    found: dict[str, Redirect] = {}
    errors: list[PressError] = []
    if sent:
        from .identity import match  # imported when there are campaigns: a site that sent none never needs it

        matching = match(all_posts, sent, site.config.posts_dir)
        for post in site.posts:
            if (record := matching.campaign_of(post)) is not None:
                for slug in record.slugs:
                    if slug != post.slug:
                        found.setdefault(f"posts/{slug}/", Redirect(f"posts/{slug}/", post))
    for post in site.posts:
        for path in post.aliases:
            other = found.get(path)
            if other is None:
                found[path] = Redirect(path, post, post.line_of("aliases"))
            elif other.post is not post:
                whose = f"an alias of {other.post.source}" if other.line else f"the old URL of {other.post.source}, sent by email"
                errors.append(
                    ContentError(
                        f"alias /{path} is already {whose}",
                        path=post.source,
                        line=post.line_of("aliases"),
                        hint="one old URL can lead to one post only: remove the alias from one of them",
                    )
                )
    return sorted(found.values(), key=lambda r: r.path), errors


def _render(theme: Theme, site: Site, redirect: Redirect) -> bytes:
    return theme.render("redirect.html", post=redirect.post, url=site.url(redirect.post.path)).encode("utf-8")


def plan_redirects(
    site: Site, theme: Theme, redirects: Iterable[Redirect], taken: set[str], base_key: str
) -> tuple[list[Artifact], list[PressError]]:
    """Redirect pages for `redirects` that no other artifact (`taken`: out/ paths) occupies."""
    arts, errors = [], []
    redirects = list(redirects)
    folders = {folder for p in taken for folder in folders_of(p)} if redirects else set()  # most sites have no redirect
    for r in redirects:
        path = out_path(r.path)
        folded = path.casefold()
        if folded in taken or folded in folders or any(parent in taken for parent in folders_of(folded)):
            if r.line:
                errors.append(
                    ContentError(
                        f"alias /{r.path} is a page of the site already",
                        path=r.post.source,
                        line=r.line,
                        hint="an alias names an old URL that no page uses now; remove it or change it",
                    )
                )
            continue
        key = make_key(base_key, "redirect", path, r.post.path, r.post.title)
        arts.append(Artifact(path=path, key=key, render=partial(_render, theme, site, r), origin=f"a redirect to {r.post.source}"))
    return arts, errors
