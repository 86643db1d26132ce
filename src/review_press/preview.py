"""Email previews on this machine, with the images of the local build.

An email links its images (the hero, the post's own) at the site's public address, its
`base_url`, where they exist only once the site is deployed: a preview of a site not yet
uploaded shows broken images. So a preview on this machine rewrites the `src` (and `srcset`)
of each `<img>` under `base_url` to the local copy: `serve`'s own address for
`/email/<slug>/`, a file:// URL into out/ (or static/, for a site not built yet) for
`preview --open`. Only what the browser is shown is rewritten: out/email/<slug>/ (index.html,
email.eml) and every message sent keep the public URLs.

`preview` renders one post's edition into out/email/<slug>/: it lives here, beside the build it
plans with, since the edition must know nothing of the build that calls it.
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from . import markup
from .config import Config
from .errors import PressError
from .output import atomic_write
from .sitefiles import is_inside
from .statedir import private_dir

PREVIEW_DIR = "preview"  # under the site's private .review-press/: never deployed with out/
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)


def local_image_urls(html: str, base_url: str, local: Callable[[str], str | None]) -> str:
    """`html` with every `<img>` URL under `base_url` replaced by `local(site path)`.

    `local` gets the path below `base_url` (`images/a.jpg?v=2`, percent-encoded as in the
    URL) and returns the URL to show instead, or None to keep the public one. Links (`href`)
    are left alone: they lead to the public site, as in the email.
    """

    def one(url: str) -> str:
        url = url.strip()
        raw = html_lib.unescape(url)
        if not raw.startswith(base_url):
            return url
        found = local(raw[len(base_url) :])
        return html_lib.escape(found, quote=True) if found is not None else url

    return markup.url_attributes(html, one, names=frozenset({"src"}), tags=_IMG_TAG)


def served_from(local_root: str) -> Callable[[str], str]:
    """For `local_image_urls`: the same site path on a local server whose root serves out/ (`http://127.0.0.1:8000/`)."""
    return lambda path: local_root + path


def files_of(config: Config) -> Callable[[str], str | None]:
    """For `local_image_urls`: a file:// URL of the file in out/, else in static/ (a site not built
    yet); None when neither has it. Never a file outside those folders (`..`, symlinks out)."""

    def local(path: str) -> str | None:
        rel = unquote(urlsplit(path).path).lstrip("/")
        if not rel:
            return None
        for folder in (config.out_dir, config.static_dir):
            file = folder / rel
            if file.is_file() and is_inside(file, folder):
                return file.resolve().as_uri()
        return None

    return local


def browser_copy(config: Config, slug: str, email_html: Path) -> Path:
    """A copy of a built email (`out/email/<slug>/index.html`) with its images from this machine,
    written to `.review-press/preview/<slug>.html` for `preview --open`; returns its path."""
    text = email_html.read_text("utf-8")
    folder = private_dir(config.state_dir / PREVIEW_DIR)
    path = folder / f"{slug}.html"
    atomic_write(path, local_image_urls(text, config.base_url, files_of(config)).encode("utf-8"), mode=0o600)
    return path


@dataclass(frozen=True)
class Preview:
    """What `preview` wrote, and the lint problems found (a preview is written even when it fails)."""

    slug: str
    paths: tuple[Path, ...]
    problems: tuple[PressError, ...]

    @property
    def html(self) -> Path:
        return self.paths[0]


def preview(root: Path, slug: str, *, now: dt.datetime | None = None) -> Preview:
    """Render any post's edition (newsletter post, draft or future post alike) into out/email/<slug>/.

    Returns the files written (index.html first) and the lint problems, which a writer wants
    to see but which do not stop a preview. An unknown slug is a `PressError` naming the known ones.
    """
    from .build import BuildOptions, plan
    from .edition.plan import EMAIL_DIR, FILES, render_preview

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
