"""Reading one returned email: an RFC 3464 delivery-status notification, an RFC 5965 (ARF)
feedback report, or an older bounce format; pure, no store.

`read_report(data)` says what the message is (`Report.kind`): a bounce with its failed
recipients (hard: a 5.x.x status; soft: 4.x.x, 5.7.x, which is the receiving server's policy
about us, not about the address, and the 5.x.x that say nothing about the address either: a full
mailbox, 5.2.2, and a message too large, 5.2.3 and 5.3.4), a complaint, a delay warning or anything else. Bounces that
are not RFC 3464 (an Exim or qmail text bounce, an old Exchange) are recognised by flufl.bounce's
detectors (Apache-2.0), only in a message that comes from a mailer daemon. Header values with
8-bit bytes (a diagnostic quoted in Latin-1) are read as text like any other. It also collects
what attributes a report to a message we sent: every address that may be a VERP return path
(`return_paths`) and the Message-IDs of the returned message (`message_ids`).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser

MAX_BYTES = 20 * 1024 * 1024  # a report longer than this is not read (kept aside)
COMPLAINT_TYPES = ("abuse", "fraud")  # RFC 5965 feedback types that mean "this is spam" from the reader
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"\b([245])\d\d\b")
_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]{3,250}>)", re.IGNORECASE | re.MULTILINE)
_VERP = re.compile(r"[A-Za-z0-9._%=-]{1,64}\+[a-z0-9]{1,13}-[a-z2-7]{8}-[a-z2-7]{16}@[A-Za-z0-9.-]{1,253}", re.IGNORECASE)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery (?:subsystem|system)", re.IGNORECASE)
_SOFT_PERMANENT = {("2", "2"), ("2", "3"), ("3", "4")}  # 5.2.2 mailbox full, 5.2.3 / 5.3.4 message too large
_STATUS_PARTS = ("message/delivery-status", "message/global-delivery-status")  # RFC 3464, RFC 6533 (SMTPUTF8)
_ADDRESS_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Failed-Recipients")


@dataclass(frozen=True)
class Failure:
    """One recipient a bounce reports: the address as reported (`recipient`: Final-Recipient;
    `original`: Original-Recipient, when given), hard or soft, the status code and the diagnostic."""

    recipient: str
    kind: str  # hard | soft
    code: str = ""
    detail: str = ""
    original: str = ""


@dataclass(frozen=True)
class Report:
    """What one returned message says. `kind`: bounce, complaint, delay (a warning: the message
    is still queued), other (a report that asks nothing of us: a delivery notice, a "not spam",
    an auto-reply) or unreadable (not a report we can read: kept aside)."""

    kind: str
    report_id: str  # the report's own Message-ID, else sha256 of its bytes: what makes re-reading idempotent
    failures: tuple[Failure, ...] = ()
    feedback_type: str = ""
    complaint_recipients: tuple[str, ...] = ()  # ARF Original-Rcpt-To (often left out or redacted)
    return_paths: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()
    format: str = ""  # rfc3464, arf, or the flufl.bounce detector's
    notes: tuple[str, ...] = field(default=())


def _address_of(value: object) -> str:
    """The address in a DSN address field: `rfc822; user@example.org` -> `user@example.org`.
    `value` may be an `email.header.Header` (what the parser gives for 8-bit bytes)."""
    if not value:
        return ""
    value = str(value)
    text = value.split(";", 1)[1] if ";" in value else value
    return " ".join(text.split()).strip().strip("<>")


def _clean(value: object) -> str:
    return " ".join(str(value or "").split())[:500]


def _kind_of(code: str, detail: str) -> str | None:
    """hard, soft, or None (no failure class found) for a status code and diagnostic."""
    if m := _STATUS.search(code) or _STATUS.search(detail):
        klass, subject = m.group(1), m.group(2)
        if klass == "5":
            return "soft" if subject == "7" or (subject, m.group(3)) in _SOFT_PERMANENT else "hard"
        return "soft" if klass == "4" else None
    if m := _REPLY.search(detail):
        return "hard" if m.group(1) == "5" else "soft" if m.group(1) == "4" else None
    return None


def _parts(msg: Message, kind: str) -> list[Message]:
    return [p for p in msg.walk() if p.get_content_type() == kind]


def _blocks(part: Message) -> list[Message]:
    """The field blocks of a delivery-status or feedback-report part, in order."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [b for b in payload if isinstance(b, Message)]
        if len(blocks) == 1 and isinstance(body := blocks[0].get_payload(), str) and body.strip():
            # message/global-delivery-status is parsed as one message: its first block the
            # headers, every other block left in its body
            return blocks + _text_blocks(body)
        return blocks
    if isinstance(payload, str):  # a parser that left it text: fields in blocks split by blank lines
        return _text_blocks(payload)
    return []


def _text_blocks(text: str) -> list[Message]:
    return [HeaderParser().parsestr(block.strip() + "\n") for block in re.split(r"\r?\n\s*\r?\n", text) if block.strip()]


def _returned_headers(msg: Message) -> list[Message]:
    """The headers of the message a report returns: a message/rfc822 part, or text/rfc822-headers."""
    found: list[Message] = []
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global", "message/global-headers") and isinstance(part.get_payload(), list):
            found.extend(m for m in part.get_payload() if isinstance(m, Message))
        elif kind in ("text/rfc822-headers", "message/rfc822-headers", "text/global-headers"):
            text = _text(part)
            if text:
                found.append(HeaderParser().parsestr(text, headersonly=True))
    return found


def _text(part: Message) -> str:
    try:
        raw = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: the part as it is
        raw = None
    if not isinstance(raw, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, "replace")
    except LookupError:  # an unknown charset name
        return raw.decode("utf-8", "replace")


def _all_text(msg: Message) -> str:
    return "\n".join(_text(p) for p in msg.walk() if not p.is_multipart() and p.get_content_maintype() in ("text", "message"))


def _report_id(msg: Message, data: bytes) -> str:
    mid = _clean(msg.get("Message-ID"))
    if mid and len(mid) <= 250:
        return mid
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def read_report(data: bytes) -> Report:
    """What a returned message is and says (see `Report`); never raises on bad input."""
    if len(data) > MAX_BYTES:
        return Report("unreadable", "sha256:" + hashlib.sha256(data).hexdigest(), notes=(f"longer than {MAX_BYTES:,} bytes",))
    try:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        return _read(msg, data)
    except Exception as exc:  # the stdlib parser is lenient, but a hostile message may still trip it
        return Report("unreadable", "sha256:" + hashlib.sha256(data).hexdigest(), notes=(f"cannot parse: {type(exc).__name__}",))


def _read(msg: Message, data: bytes) -> Report:
    report_id = _report_id(msg, data)
    returned = _returned_headers(msg)
    text = _all_text(msg)
    message_ids = [_clean(h.get("Message-ID")) for h in returned]
    message_ids += _MESSAGE_ID.findall(text)  # headers quoted in a text bounce (Exim, qmail)
    for name in ("In-Reply-To", "References"):
        message_ids += re.findall(r"<[^<>\s]{3,250}>", str(msg.get(name) or ""))
    paths = [str(v) for name in _ADDRESS_HEADERS for v in msg.get_all(name, [])]
    paths += [str(h.get("Return-Path") or "") for h in returned]
    paths += _VERP.findall(text)
    paths += _VERP.findall(" ".join(str(v) for v in msg.values()))
    common = {"report_id": report_id, "message_ids": _unique(message_ids), "return_paths": _unique([_clean(p).strip("<>") for p in paths])}

    if feedback := _parts(msg, "message/feedback-report"):
        fields = _blocks(feedback[0])
        first = fields[0] if fields else Message()
        ftype = _clean(first.get("Feedback-Type")).lower()
        recipients = tuple(_address_of(v) for v in first.get_all("Original-Rcpt-To", []))
        mail_from = [_address_of(v) for v in first.get_all("Original-Mail-From", [])]
        common["return_paths"] = _unique(list(common["return_paths"]) + mail_from)
        kind = "complaint" if ftype in COMPLAINT_TYPES else "other"
        return Report(kind, feedback_type=ftype or "unknown", complaint_recipients=recipients, format="arf", **common)

    if status := [p for kind in _STATUS_PARTS for p in _parts(msg, kind)]:
        failures, delayed = [], False
        for block in _blocks(status[0]):
            if not (block.get("Final-Recipient") or block.get("Original-Recipient")):
                continue  # the per-message fields (Reporting-MTA ...)
            action = _clean(block.get("Action")).lower()
            code = _clean(block.get("Status"))
            detail = _clean(_address_of(block.get("Diagnostic-Code")) or block.get("Diagnostic-Code"))
            if action == "delayed":
                delayed = True
                continue
            if action not in ("failed", ""):
                continue  # delivered, relayed, expanded
            kind = _kind_of(code, detail)
            if kind is None:
                kind = "hard" if action == "failed" else None
            if kind is None:
                continue
            m = _STATUS.search(code) or _STATUS.search(detail)
            failures.append(
                Failure(
                    recipient=_address_of(block.get("Final-Recipient")),
                    original=_address_of(block.get("Original-Recipient")),
                    kind=kind,
                    code=m.group(0) if m else "",
                    detail=detail,
                )
            )
        if failures:
            return Report("bounce", failures=tuple(failures), format="rfc3464", **common)
        return Report("delay" if delayed else "other", format="rfc3464", **common)

    auto = str(msg.get("Auto-Submitted") or "").strip().lower().startswith("auto-") or bool(
        msg.get("X-Autoreply") or msg.get("X-Autorespond")
    )
    if _from_daemon(msg):
        report = _heuristic(msg, text, common)
        # an auto-reply (RFC 3834: sent with a null return path) from a person's address is not a
        # bounce; a mailer daemon's message naming no recipient stays unreadable (kept aside)
        if report.kind != "unreadable" or not auto or _DAEMON.search(str(msg.get("From") or "")):
            return report
    if auto:
        return Report("other", format="auto-reply", **common)
    return Report("unreadable", notes=("not a delivery-status notification or a feedback report",), **common)


def _from_daemon(msg: Message) -> bool:
    """Whether a message is from a mail system rather than a person: a null return path, or a
    From of MAILER-DAEMON or postmaster."""
    return str(msg.get("Return-Path") or "").strip() == "<>" or bool(_DAEMON.search(str(msg.get("From") or "")))


def _heuristic(msg: Message, text: str, common: dict[str, object]) -> Report:
    """A bounce without a delivery-status part, read by flufl.bounce's detectors."""
    from flufl.bounce import all_failures

    # flufl.bounce logs a detector's exception with its traceback (and every detector it runs):
    # on a hostile message that would print a traceback from a command. The exception is handled here.
    flufl_log = logging.getLogger("flufl.bounce")
    if not flufl_log.handlers:
        flufl_log.addHandler(logging.NullHandler())
        flufl_log.propagate = False
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on a hostile message: nothing found
        temporary, permanent = frozenset(), frozenset()
    failures = []
    m = _STATUS.search(text)
    code = m.group(0) if m else ""
    for kind, found in (("hard", permanent), ("soft", temporary)):
        if kind == "hard" and _kind_of(code, "") == "soft":
            kind = "soft"  # "permanent" to the detector, but a status that is no verdict on the address (4.2.2 after retries, 5.7.1)
        for raw in sorted(found):
            address = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            failures.append(Failure(recipient=address.strip("<>"), kind=kind, code=code, detail=_clean(text)[:200]))
    if failures:
        return Report("bounce", failures=tuple(failures), format="flufl.bounce", **common)  # type: ignore[arg-type]
    return Report("unreadable", notes=("a mailer daemon's message naming no failed recipient",), **common)  # type: ignore[arg-type]
