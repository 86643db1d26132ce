"""The theme: Jinja2 templates and assets, the site's own `templates/` over the packaged default.

A site overrides the default theme file by file: `templates/post.html` in the site
replaces only that template. Pages and email editions render through one `Theme`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import traceback
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Jinja is imported when a template is first rendered: a build with nothing to render never loads it
    import jinja2

from . import __version__, sitefiles
from .errors import BuildError, PressError, raise_all

ASSETS = "assets"


def default_theme_dir() -> Path:
    """The packaged theme: inside the wheel, or the repository's top-level `templates/` in a checkout."""
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def _isodate(value: dt.datetime | dt.date) -> str:
    return value.isoformat()


def _human_date(value: dt.datetime | dt.date) -> str:
    return f"{value:%B} {value.day}, {value.year}"


@dataclass(frozen=True)
class Theme:
    """Templates and assets looked up in `dirs` in order (the site's first, then the default)."""

    dirs: tuple[Path, ...]
    globals: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def for_site(cls, site_templates: Path, **globals: Any) -> Theme:
        """The theme of the site whose `templates/` folder is `site_templates` (it may not exist).

        Every file in it must really lie inside the site (the folder that holds templates/):
        a symlink that leads out is a `BuildError` naming it, so no file from elsewhere is
        rendered into a page, or copied as an asset.
        """
        raise_all(list(sitefiles.walk(site_templates, site=site_templates.parent, error=BuildError).errors))
        dirs = tuple(d for d in (site_templates, default_theme_dir()) if d.is_dir())
        # the sample site's templates/ *is* the default theme; look there once
        unique = tuple(dict.fromkeys(d.resolve() for d in dirs))
        return cls(dirs=unique, globals=globals)

    @cached_property
    def env(self) -> jinja2.Environment:
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.dirs]),
            autoescape=jinja2.select_autoescape(["html", "xml", "htm"]),
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["isodate"] = _isodate
        env.filters["human_date"] = _human_date
        env.globals.update(self.globals)
        return env

    @cached_property
    def digest(self) -> str:
        """A hash of every theme file and of this package's version: a change re-renders everything."""
        h = hashlib.sha256(__version__.encode())
        for rel, path in sorted(self.files().items()):
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
        return h.hexdigest()[:16]

    def files(self) -> dict[str, Path]:
        """Every theme file by its relative path, the first directory winning."""
        found: dict[str, Path] = {}
        for d in self.dirs:
            listing = sitefiles.walk(d, site=None, error=BuildError)  # `for_site` checked the site's links
            raise_all(list(listing.errors))
            for path in listing.files:
                if path.is_file() and "__pycache__" not in path.parts:
                    found.setdefault(path.relative_to(d).as_posix(), path)
        return found

    def assets(self) -> dict[str, Path]:
        """The theme's static assets (`assets/...`), copied to `out/assets/` as they are."""
        return {rel: path for rel, path in self.files().items() if rel.startswith(ASSETS + "/")}

    def render(self, name: str, **context: Any) -> str:
        """Render one template; a template fault becomes a `BuildError` naming file and line."""
        import jinja2

        try:
            return self.env.get_template(name).render(**context)
        except jinja2.TemplateSyntaxError as exc:
            raise BuildError(f"template error: {exc.message}", path=exc.filename or name, line=exc.lineno) from None
        except jinja2.TemplateNotFound as exc:
            path, line = self._template_frame(exc)
            raise BuildError(
                f"template {exc.name!r} not found", path=path, line=line, hint="looked in " + ", ".join(map(str, self.dirs))
            ) from None
        except PressError:
            raise
        except Exception as exc:  # anything a template raises while rendering: 1/0, an undefined attribute...
            path, line = self._template_frame(exc)
            if path is None:
                raise  # not raised by a template: a bug of ours, with its traceback
            detail = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else f"{type(exc).__name__}: {exc}"
            raise BuildError(f"template error: {detail}", path=path, line=line, hint=f"while rendering {name}") from None

    def _template_frame(self, exc: BaseException) -> tuple[str | None, int | None]:
        """The file and line of the innermost template frame in `exc`'s traceback (Jinja rewrites
        its frames to point at template lines), or (None, None) when no template was running."""
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            # the loader names a template `<theme dir>/<name>`: a plain prefix test, links not resolved
            if any(Path(frame.filename).is_relative_to(d) for d in self.dirs):
                return frame.filename, frame.lineno
        return None, None
