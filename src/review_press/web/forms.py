"""Request bodies in, a checked `Signup` or `Preferences` out: bounded sizes, three encodings, no surprises.

A body larger than `MAX_BODY` is refused before it is read in full (413); a body without a
Content-Type, of another type or in another charset than UTF-8 is refused (415), and so is
one that is not UTF-8, or JSON nested deeper than an object of strings could be (400). A
field longer than its bound, a line break or other control character in a field, or an
address that email-validator rejects is a `FormError` whose message is safe to show (it never
echoes more than the user typed). So is a topic the site does not offer (`[newsletter] topics`)
or a frequency other than `each` or `weekly`: nothing unknown is ever stored.

Only the fields named in `MANY` may come more than once (a form's checkboxes) or, in JSON, as
a list of strings; every other field is read once (its first value) and must be a string.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from email_validator import EmailNotValidError, validate_email
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

MAX_BODY = 8 * 1024
MAX_FIELDS = 16
MAX_EMAIL = 254  # RFC 5321: the longest forward-path is 256 octets with its brackets
MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
MAX_NAME = 200
MAX_JSON_DEPTH = 2  # an object of strings is depth 1; refused before parsing, so no RecursionError
HONEYPOT = "website"
TOPICS = "topics"  # the checkboxes of the topics a reader chose (repeated; a list in JSON)
FREQUENCY = "frequency"  # "each" (every post) or "weekly" (a weekly digest)
FREQUENCIES = ("each", "weekly")  # as `store.model.FREQUENCIES`
MANY = (TOPICS,)  # the fields that may come more than once
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "application/json")


class FormError(Exception):
    """A request the app refuses: an HTTP status and a message safe to show the sender."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Form:
    """A parsed request body: `fields` the first value of each field, `lists` every value of the
    fields in `MANY` (a field that was not sent is not in either)."""

    fields: dict[str, str] = field(default_factory=dict)
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Preferences:
    """What a reader chose to get: `topics` in the site's own spelling (none: every post), and
    `frequency` (`each` or `weekly`; None: not sent, so left as it is)."""

    topics: tuple[str, ...] = ()
    frequency: str | None = None


@dataclass(frozen=True)
class Signup:
    """A checked subscribe request: the normalized address, a one-line name, the honeypot, and
    the topics and frequency the reader chose (none and `each`: every post as it goes out)."""

    email: str
    name: str
    is_bot: bool
    topics: tuple[str, ...] = ()
    frequency: str = "each"

    @property
    def key(self) -> str:
        """The address as the per-address rate limit sees it (case-insensitive)."""
        return self.email.casefold()


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise FormError(413, "That request is too large.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise FormError(413, "That request is too large.")
    return bytes(body)


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower-cased ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def charset(request: Request) -> str:
    """The `charset` parameter of the request's Content-Type, lower-cased ('' when absent)."""
    for param in request.headers.get("content-type", "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return ""


async def parse_fields(request: Request, body: bytes) -> dict[str, str]:
    """A form (urlencoded or multipart) or a JSON object, in UTF-8 -> its string fields (first of each).

    415 without a Content-Type (nothing is guessed), for any other type, and for a charset
    other than UTF-8; 400 for a body that is not UTF-8.
    """
    return (await parse_form(request, body)).fields


async def parse_form(request: Request, body: bytes, max_fields: int = MAX_FIELDS) -> Form:
    """`parse_fields`, with every value of the fields in `MANY` too (`Form.lists`).

    `max_fields` bounds the fields of a form, the keys of a JSON object and the items of one of
    its lists (a form with many topics to tick needs more than `MAX_FIELDS`).
    """
    kind = media_type(request)
    if kind not in FORM_TYPES:
        raise FormError(
            415, "Send a form or a JSON object (Content-Type application/x-www-form-urlencoded, multipart/form-data or application/json)."
        )
    if charset(request) not in ("", "utf-8", "utf8"):
        raise FormError(415, "Send the request in UTF-8.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError(400, "That request is not UTF-8 text.") from None
    if kind == "application/json":
        pairs = _json_pairs(text, max_fields)
    elif kind == "multipart/form-data":
        pairs = await _multipart_pairs(request, body, max_fields)
    else:
        pairs = _urlencoded_pairs(text, max_fields)
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for key, value in pairs:
        if key in MANY:
            lists.setdefault(key, []).append(value)
        else:
            fields.setdefault(key, value)
    return Form(fields, {key: tuple(values) for key, values in lists.items()})


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of a JSON text nest (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _json_pairs(text: str, max_fields: int = MAX_FIELDS) -> list[tuple[str, str]]:
    if json_depth(text) > MAX_JSON_DEPTH:
        raise FormError(400, "Send a JSON object of strings: that one is nested too deeply.")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise FormError(400, "That is not valid JSON.") from None
    if not isinstance(data, dict) or len(data) > max_fields:
        raise FormError(400, "Send a JSON object with an email field.")
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        if value is None:
            continue
        if key in MANY and isinstance(value, list):
            if len(value) > max_fields or not all(isinstance(v, str) for v in value):
                raise FormError(400, f"The field {key[:40]!r} must be a list of strings.")
            pairs += [(key, v) for v in value]
        elif not isinstance(value, str):
            raise FormError(400, f"The field {key[:40]!r} must be a string.")
        else:
            pairs.append((key, value))
    return pairs


def _urlencoded_pairs(text: str, max_fields: int = MAX_FIELDS) -> list[tuple[str, str]]:
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise FormError(400, "That form could not be read.") from None


async def _multipart_pairs(request: Request, body: bytes, max_fields: int = MAX_FIELDS) -> list[tuple[str, str]]:
    """Parse a multipart body already read into memory (and checked to be UTF-8); files are refused."""

    async def replay() -> AsyncIterator[Message]:
        yield {"type": "http.request", "body": body, "more_body": False}

    stream = replay()
    again = Request(request.scope, receive=stream.__anext__)
    try:
        form = await again.form(max_files=0, max_fields=max_fields, max_part_size=MAX_BODY)
    except Exception:  # python-multipart and Starlette raise several types for a bad body
        raise FormError(400, "That form could not be read.") from None
    pairs: list[tuple[str, str]] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            raise FormError(400, "Files are not accepted.")
        pairs.append((key, value))
    return pairs


def _one_line(value: str, label: str, limit: int) -> str:
    """`value` stripped; refused when longer than `limit` or holding a control character."""
    value = value.strip()
    if len(value) > limit:
        raise FormError(400, f"The {label} is too long (at most {limit} characters).")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise FormError(400, f"The {label} must be one line of plain text.")
    return value


def check_preferences(fields: dict[str, str], chosen: Sequence[str], offered: Sequence[str]) -> Preferences:
    """The topics a reader ticked (`chosen`, each one of the site's topics `offered`, matched
    without regard to case and kept in the site's spelling) and their frequency field.

    A topic the site does not offer, or a frequency other than `each` or `weekly`, is a
    `FormError` (400) naming the field; an empty frequency is None (not sent).
    """
    spelling = {t.casefold(): t for t in offered}
    topics: list[str] = []
    for value in chosen:
        topic = spelling.get(value.strip().casefold())
        if topic is None:
            shown = value.strip()[:60]
            raise FormError(400, f"The topics field names a topic this newsletter does not have: {shown!r}.")
        if topic not in topics:
            topics.append(topic)
    frequency = fields.get(FREQUENCY, "").strip().lower() or None
    if frequency is not None and frequency not in FREQUENCIES:
        raise FormError(400, "The frequency field must be each (every post) or weekly (a weekly digest).")
    return Preferences(tuple(topics), frequency)


def check_signup(fields: dict[str, str], chosen: Sequence[str] = (), offered: Sequence[str] = ()) -> Signup:
    """Validate a subscribe form's fields; the honeypot is reported, not refused.

    `chosen` are the topics ticked and `offered` the site's (`check_preferences`); none ticked
    and no frequency is every post as it goes out.
    """
    email = _one_line(fields.get("email", ""), "email address", MAX_EMAIL)
    name = _one_line(fields.get("name", ""), "name", MAX_NAME)
    if not email:
        raise FormError(400, "Please enter your email address.")
    try:
        checked = validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        raise FormError(400, "That does not look like an email address.") from None
    if len(checked.local_part.encode("utf-8")) > MAX_LOCAL_PART:
        raise FormError(400, "That email address is too long before the @.")
    prefs = check_preferences(fields, chosen, offered)
    return Signup(
        email=checked.normalized,
        name=name,
        is_bot=bool(fields.get(HONEYPOT, "").strip()),
        topics=prefs.topics,
        frequency=prefs.frequency or "each",
    )
