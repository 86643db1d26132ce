"""Edition + recipient -> the MIME message: multipart/alternative (plain text, then HTML), UTF-8, CRLF.

Built for a send loop of thousands of messages a second: everything that is the same for
every recipient of an edition (From, Reply-To, Subject, List-Id, the MIME skeleton) is
folded and encoded once into a `MessageTemplate` (memoised by `build_message`); per recipient
only To, Date, Message-ID and List-Unsubscribe are written, the edition is personalised by
string joins and the two bodies are quoted-printable encoded by `binascii` (C code).

The multipart boundary starts with `=_`, which quoted-printable text can never contain, so it
cannot collide with a body. Headers carry List-Id (RFC 2919), List-Unsubscribe and
List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058). A line break in any header value
(subject, names, addresses, ids, URLs) is a `DeliveryError`: header injection is refused,
not cleaned up.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.policy
import hashlib
import re
from dataclasses import dataclass
from email.utils import format_datetime, formataddr
from functools import lru_cache
from typing import Protocol

from ..errors import DeliveryError

_POLICY = email.policy.SMTP
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+$")
_BREAKS = ("\r", "\n", "\x00")
_STAND_IN = "x@stand-in.invalid"
LINE = "\r\n"


class SlottedLike(Protocol):
    """A body cut at its slots (`review_press.edition.Slotted`)."""

    parts: tuple[str, ...]
    names: tuple[int, ...]
    urls: tuple[int, ...]
    manages: tuple[int, ...]


class EditionLike(Protocol):
    """What a message needs of an edition (`review_press.edition.Edition` fits).

    An edition that also has `html_slots`, `text_slots` and `slot_values` (as `Edition` does)
    gets its bodies encoded once per edition instead of once per recipient.
    """

    slug: str
    subject: str

    def personalize(self, name: str, unsubscribe_url: str, manage_url: str = "") -> tuple[str, str]: ...


def _no_breaks(what: str, value: str) -> str:
    if any(c in value for c in _BREAKS):
        raise DeliveryError(
            f"{what} contains a line break: {value[:60]!r}", hint="header values must be one line (header injection refused)"
        )
    return value


def _https_url(what: str, value: str) -> str:
    """`value` stripped; a `DeliveryError` unless it is one absolute https: URL (no break, space or `>`)."""
    url = _no_breaks(what, value).strip()
    if not url.startswith("https://") or " " in url or ">" in url:
        raise DeliveryError(f"{what} {url!r} must be an absolute https: URL", hint="set [web] url in press.toml")
    return url


def _address(what: str, value: str) -> str:
    value = _no_breaks(what, value).strip()
    if not _ADDRESS.match(value):
        raise DeliveryError(f"{what} {value!r} is not an email address")
    return value


def _mailbox(what: str, name: str, address: str) -> str:
    """`Name <address>` for a header value: the name quoted or RFC 2047-encoded (and folded); a Unicode address kept (SMTPUTF8)."""
    name = " ".join(_no_breaks(f"{what} name", name).split())
    address = _address(f"{what} address", address)
    if not name:
        return address
    if name.isascii() and len(name) < 60:
        return formataddr((name, address))
    folded = _header(what, formataddr((name, _STAND_IN)))
    return folded.split(":", 1)[1].strip().removesuffix(f"<{_STAND_IN}>").rstrip() + f" <{address}>"


def _header(name: str, value: str) -> str:
    """One header line (folded, RFC 2047-encoded when not ASCII) ending in CRLF."""
    if value.isascii() and len(name) + len(value) < 76:
        return f"{name}: {value}{LINE}"
    return _POLICY.header_factory(name, value).fold(policy=_POLICY)


def _list_id(value: str) -> str:
    """RFC 2919: `Phrase <list-label.domain>`; a bare label gets its angle brackets."""
    value = _no_breaks("list_id", value).strip()
    if not value:
        return ""
    return value if value.endswith(">") and "<" in value else f"<{value.strip('<>')}>"


def _qp(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends and lines of at most 76 characters."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("utf-8")
    out = binascii.b2a_qp(data, istext=True)
    if b"\n" in out and b"\n" not in data:  # b2a_qp ends the soft breaks of a text without line breaks in a bare LF
        out = out.replace(b"\n", b"\r\n")
    return out


def _qp_piece(text: str) -> bytes:
    """`text` quoted-printable, ending at the start of a line (a soft break `=` CRLF when needed).

    Pieces encoded this way can be concatenated: soft breaks add nothing to the decoded text.
    """
    data = _qp(text)
    return data if not data or data.endswith(b"\r\n") else data + b"=\r\n"


@dataclass(frozen=True)
class _EncodedSlots:
    """An edition body's literal pieces, quoted-printable encoded once; the slots are encoded per recipient."""

    parts: tuple[bytes, ...]
    names: tuple[int, ...]
    urls: tuple[int, ...]
    manages: tuple[int, ...] = ()

    @classmethod
    def of(cls, slotted: SlottedLike) -> _EncodedSlots:
        parts = tuple(b"" if i % 2 else _qp_piece(part) for i, part in enumerate(slotted.parts))
        return cls(parts, tuple(slotted.names), tuple(slotted.urls), tuple(getattr(slotted, "manages", ())))

    def fill(self, name: str, url: str, manage: str) -> bytes:
        out = list(self.parts)
        name_bytes, url_bytes = _qp_piece(name), _qp_piece(url)
        for i in self.names:
            out[i] = name_bytes
        for i in self.urls:
            out[i] = url_bytes
        if self.manages:
            manage_bytes = _qp_piece(manage)
            for i in self.manages:
                out[i] = manage_bytes
        return b"".join(out)


@dataclass(frozen=True)
class MessageTemplate:
    """The recipient-independent part of an edition's message: encoded headers and the MIME skeleton."""

    edition: EditionLike
    head: str  # From, To and Message-ID slots, Reply-To, Subject, List-Id, List-Unsubscribe slot, MIME-Version, Content-Type
    boundary: str
    unsubscribe_mailto: str
    html: _EncodedSlots | None = None  # None: the edition is personalised and encoded per recipient
    text: _EncodedSlots | None = None

    def bodies(self, name: str, url: str, manage: str = "") -> tuple[bytes, bytes]:
        """(text, html) for one recipient, quoted-printable (`manage` empty: the manage links get `url`)."""
        if self.html is None or self.text is None:
            html, text = self.edition.personalize(name, url, manage) if manage else self.edition.personalize(name, url)
            return _qp(text), _qp(html)
        html_name, html_url, html_manage, text_name, text_url, text_manage = self.edition.slot_values(name, url, manage)  # type: ignore[attr-defined]
        return self.text.fill(text_name, text_url, text_manage), self.html.fill(html_name, html_url, html_manage)

    def render(
        self, *, to_name: str, to_address: str, unsubscribe_url: str, message_id: str, date: dt.datetime, manage_url: str = ""
    ) -> bytes:
        """The whole message for one recipient, as CRLF bytes ready for SMTP or a Maildir."""
        to = _mailbox("To", to_name, to_address)
        if len(to) > 70 and "\n" not in to and " <" in to:
            to = f"{LINE} <".join(to.rsplit(" <", 1))
        url = _https_url("unsubscribe_url", unsubscribe_url)
        manage = _https_url("manage_url", manage_url) if manage_url else ""
        mid = _no_breaks("message_id", message_id).strip()
        if not mid.startswith("<"):
            mid = f"<{mid}>"
        if not re.match(r"^<[^<>\s@]+@[^<>\s@]+>$", mid):
            raise DeliveryError(f"message_id {message_id!r} is not <local@domain>")
        if date.tzinfo is None:
            raise DeliveryError("the message date must be timezone-aware")
        unsubscribe = f"<{url}>, <{self.unsubscribe_mailto}>" if self.unsubscribe_mailto else f"<{url}>"
        if len(unsubscribe) > 60 and self.unsubscribe_mailto:
            unsubscribe = f"<{url}>,{LINE} <{self.unsubscribe_mailto}>"
        text, html = self.bodies(to_name, url, manage)
        head = (
            self.head.replace("\0DATE\0", format_datetime(date))
            .replace("\0TO\0", to)
            .replace("\0MID\0", mid)
            .replace("\0UNSUB\0", unsubscribe)
        )
        return b"".join((head.encode("utf-8"), text, self.middle, html, self.end))

    @property
    def middle(self) -> bytes:
        return f"{LINE}--{self.boundary}{LINE}Content-Type: text/html; charset=utf-8{LINE}Content-Transfer-Encoding: quoted-printable{LINE}{LINE}".encode()

    @property
    def end(self) -> bytes:
        return f"{LINE}--{self.boundary}--{LINE}".encode()


@lru_cache(maxsize=32)
def message_template(
    edition: EditionLike, *, from_name: str, from_address: str, reply_to: str, list_id: str, unsubscribe_mailto: str
) -> MessageTemplate:
    """Encode what every recipient's message of `edition` shares, once (memoised)."""
    subject = _no_breaks("subject", edition.subject).strip()
    if not subject:
        raise DeliveryError(f"the edition {edition.slug!r} has no subject")
    mailto = ""
    if unsubscribe_mailto:
        mailto = unsubscribe_mailto.strip()
        mailto = _no_breaks(
            "unsubscribe_mailto", mailto if mailto.startswith("mailto:") else "mailto:" + _address("unsubscribe_mailto", mailto)
        )
    boundary = "=_rp_" + hashlib.sha256(f"{edition.slug}\0{subject}".encode()).hexdigest()[:24]
    head = (
        f"Date: \0DATE\0{LINE}"
        + _header("From", _mailbox("From", from_name, from_address))
        + f"To: \0TO\0{LINE}"
        + (_header("Reply-To", _address("reply_to", reply_to)) if reply_to else "")
        + _header("Subject", subject)
        + f"Message-ID: \0MID\0{LINE}"
        + (_header("List-Id", _list_id(list_id)) if list_id.strip() else "")
        + f"List-Unsubscribe: \0UNSUB\0{LINE}"
        + f"List-Unsubscribe-Post: List-Unsubscribe=One-Click{LINE}"
        + f"MIME-Version: 1.0{LINE}"
        + f'Content-Type: multipart/alternative; boundary="{boundary}"{LINE}'
        + f"{LINE}--{boundary}{LINE}Content-Type: text/plain; charset=utf-8{LINE}Content-Transfer-Encoding: quoted-printable{LINE}{LINE}"
    )
    html_slots, text_slots = getattr(edition, "html_slots", None), getattr(edition, "text_slots", None)
    fast = html_slots is not None and text_slots is not None and hasattr(edition, "slot_values")
    return MessageTemplate(
        edition=edition,
        head=head,
        boundary=boundary,
        unsubscribe_mailto=mailto,
        html=_EncodedSlots.of(html_slots) if fast else None,
        text=_EncodedSlots.of(text_slots) if fast else None,
    )


def build_message(
    edition: EditionLike,
    *,
    to_name: str,
    to_address: str,
    from_name: str,
    from_address: str,
    reply_to: str,
    list_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    message_id: str,
    date: dt.datetime,
    manage_url: str = "",
) -> bytes:
    """One recipient's message of `edition` as MIME bytes (CRLF). Pure; fast on repeated editions.

    `manage_url` is the reader's manage-your-subscription page (`newsletter.manage_url`), in
    the footer of both bodies; without one the footer's manage link is the unsubscribe URL.
    Raises `DeliveryError` for a line break in any header value, a malformed address,
    Message-ID, unsubscribe or manage URL, or a naive date.
    """
    template = message_template(
        edition, from_name=from_name, from_address=from_address, reply_to=reply_to, list_id=list_id, unsubscribe_mailto=unsubscribe_mailto
    )
    return template.render(
        to_name=to_name, to_address=to_address, unsubscribe_url=unsubscribe_url, message_id=message_id, date=date, manage_url=manage_url
    )
