"""Errors a user can cause: one type that carries where (file, line) and how to fix it (hint).

The CLI prints these without a traceback and exits 1. Loaders collect several into a
`PressErrors` so a user sees every problem in one run, not one per run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class PressError(Exception):
    """A problem in the user's input: `path:line: message (hint)`."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.hint = hint

    def __reduce__(self) -> tuple:
        """Pickle with path, line and hint (posts are parsed in worker processes)."""
        return (_rebuild, (type(self), self.message, self.path, self.line, self.hint))

    def where(self) -> str:
        """The `path:line` prefix, or "" when the error belongs to no file."""
        if self.path is None:
            return ""
        path = _display(self.path)
        return f"{path}:{self.line}" if self.line else path

    def __str__(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(PressError):
    """press.toml is missing, malformed or holds a wrong value."""


class ContentError(PressError):
    """A post cannot be read: front matter, dates, slugs, encoding, size."""


class BuildError(PressError):
    """The site cannot be built: two outputs at one path, a broken template, a failing email lint."""


class DeliveryError(PressError):
    """Mail cannot be delivered as asked: no `since`, a bad address, an unsafe header."""


class StorageError(PressError):
    """A file or the database cannot be written (disk full, read-only, busy): nothing half-done is kept."""


def write_error(path: Path | str, exc: OSError, doing: str = "write") -> StorageError:
    """`cannot write PATH: no space left on device`: an OSError from a write (or, with `doing`
    "read", from reading a folder the build writes in), as a user reads it."""
    reason = (exc.strerror or exc.__class__.__name__).lower()
    hint = "free some space, or check the folder's permissions" if doing == "write" else "check the folder's permissions"
    return StorageError(f"cannot {doing} {_display(Path(path))}: {reason}", hint=hint)


class PressErrors(PressError):
    """Several problems found in one pass; each is reported on its own line."""

    def __init__(self, errors: Iterable[PressError]) -> None:
        self.errors: tuple[PressError, ...] = tuple(errors)
        super().__init__(f"{len(self.errors)} problem(s)")

    def __reduce__(self) -> tuple:
        return (PressErrors, (self.errors,))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def raise_all(errors: list[PressError]) -> None:
    """Raise nothing for no errors, the error itself for one, a `PressErrors` for several."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise PressErrors(errors)


def _display(path: Path) -> str:
    """A path as a user wants to read it: relative to the working folder when inside it.

    Only its folder is resolved: a symlink is named as the link (`static/env.txt`), not as
    what it points at.
    """
    try:
        resolved = path.resolve() if path.name in ("", ".", "..") else path.parent.resolve() / path.name
        return str(resolved.relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _rebuild(cls: type[PressError], message: str, path: Path | None, line: int | None, hint: str | None) -> PressError:
    return cls(message, path=path, line=line, hint=hint)
