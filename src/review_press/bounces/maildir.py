"""A bounce mailbox in a Maildir folder (what Postfix, Exim, Dovecot or getmail deliver into).

Messages are read from `new/` and `cur/` in name order (the same order on every run). A message
done with is renamed into the Maildir++ subfolder `.processed/cur/`, one set aside into
`.unparsed/cur/` (a mail client shows both as folders): a rename within one file system, so a
message is always in exactly one place, and a crash before the rename leaves it to be read again.
A name already taken there gets a suffix (a rename would replace, and lose, the message before).
Of a message longer than `reports.MAX_BYTES` only that much and one byte is read (it is kept aside).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import DeliveryError, write_error
from .reports import MAX_BYTES

PROCESSED = ".processed"
SET_ASIDE = ".unparsed"


def _make_maildir(folder: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True, mode=0o700)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # not every file system lets a folder be fsynced
        pass
    finally:
        os.close(fd)


class MaildirSource:
    """The Maildir folder at `path` (it must exist, with `new/` and `cur/`)."""

    name = "maildir"

    def __init__(self, path: Path) -> None:
        if not (path / "new").is_dir() or not (path / "cur").is_dir():
            raise DeliveryError(
                f"{path} is not a Maildir folder (no new/ and cur/ in it)", path=path, hint="[bounces] source = maildir:PATH"
            )
        self.path = path

    def messages(self) -> Iterator[tuple[str, bytes]]:
        names = sorted((sub, entry.name) for sub in ("new", "cur") for entry in os.scandir(self.path / sub) if entry.is_file())
        for sub, name in names:
            file = self.path / sub / name
            try:
                with open(file, "rb") as f:
                    data = f.read(MAX_BYTES + 1)  # enough for read_report to tell it is too long
            except FileNotFoundError:  # taken by another reader meanwhile
                continue
            except OSError as exc:
                raise DeliveryError(f"cannot read {file}: {exc.strerror}", path=file) from None
            yield f"{sub}/{name}", data

    def _move(self, ref: str, folder: str) -> None:
        sub, _, name = ref.partition("/")
        target = self.path / folder
        try:
            _make_maildir(target)
            base = name.split(":", 1)[0]
            final = f"{base}:2,S" if sub == "new" else name
            stem, colon, info = final.partition(":")
            dest, n = target / "cur" / final, 0
            while os.path.lexists(dest):  # never over another message (a name the source reused)
                n += 1
                dest = target / "cur" / f"{stem}.{n}{colon}{info}"
            os.rename(self.path / sub / name, dest)
            _fsync_dir(target / "cur")
        except OSError as exc:
            raise write_error(target / "cur", exc) from None

    def done(self, ref: str) -> None:
        self._move(ref, PROCESSED)

    def set_aside(self, ref: str, why: str) -> None:
        self._move(ref, SET_ASIDE)

    def close(self) -> None:
        return None
