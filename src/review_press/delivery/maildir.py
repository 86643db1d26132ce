"""The default outbox: with no `[smtp]` table, `publish` delivers into a Maildir at
`<site>/outbox/` (readable with `mutt -f outbox` or any Maildir tool).

`MaildirConnector` has the same shape as `smtp.SmtpConnector`, so the same pool, ledger and
resume logic serve both. Each message is written to `tmp/` and renamed into `new/`, so a
reader never sees half a message.
"""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import DeliveryError
from .smtp import Envelope

OUTBOX = "outbox"


def outbox_path(config: Config) -> Path:
    """Where a site's Maildir outbox lives: `outbox/` beside press.toml."""
    return config.root / OUTBOX


def clean_tmp(path: Path) -> int:
    """Delete the half-written messages a killed run left in the Maildir's `tmp/` (a message is
    renamed into `new/` only once whole, so nothing in `tmp/` was delivered); return how many.

    Call it only under the publish lock, before sending: then no delivery of ours is in flight.
    """
    tmp, removed = path / "tmp", 0
    try:
        entries = list(tmp.iterdir())
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise DeliveryError(f"cannot read the outbox: {exc.strerror}", path=tmp) from None
    for entry in entries:
        if entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


class MaildirConnection:
    """A Maildir open for delivery; adds the lines a final delivery adds (RFC 5321 4.4): a
    `Return-Path` naming the envelope sender (where bounces would go) and a `Delivered-To`
    naming the envelope recipient."""

    def __init__(self, box: mailbox.Maildir) -> None:
        self.box = box

    def send(self, envelope: Envelope) -> str:
        data = envelope.data.replace(b"\r\n", b"\n")
        trace = b"Return-Path: <" + envelope.sender.encode("utf-8") + b">\nDelivered-To: " + envelope.recipient.encode("utf-8") + b"\n"
        key = self.box.add(trace + data)
        return f"250 stored as {key}"

    def close(self) -> None:
        self.box.close()


@dataclass(frozen=True)
class MaildirConnector:
    """Opens the Maildir at `path` (made if missing) for each sending thread."""

    path: Path

    def describe(self) -> str:
        return f"the Maildir {self.path}"

    def open(self) -> MaildirConnection:
        try:
            # mkdir(exist_ok) rather than Maildir(create=True): two threads opening a new outbox must not race
            for sub in ("", "tmp", "new", "cur"):
                (self.path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            return MaildirConnection(mailbox.Maildir(self.path, factory=None, create=False))
        except OSError as exc:
            raise DeliveryError(f"cannot open the outbox: {exc.strerror}", path=self.path) from None
