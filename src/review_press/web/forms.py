"""Request bodies in, a checked `Signup` out: bounded sizes, three encodings, no surprises.

A body larger than `MAX_BODY` is refused before it is read in full (413); a body without a
Content-Type, of another type or in another charset than UTF-8 is refused (415), and so is
one that is not UTF-8, or JSON nested deeper than an object of strings could be (400). A
field longer than its bound, a line break or other control character in a field, or an
address that email-validator rejects is a `FormError` whose message is safe to show (it never
echoes more than the user typed).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "application/json")


class FormError(Exception):
    """A request the app refuses: an HTTP status and a message safe to show the sender."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Signup:
    """A checked subscribe request: the normalized address, a one-line name, and the honeypot."""

    email: str
    name: str
    is_bot: bool

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
        return _json_fields(text)
    if kind == "multipart/form-data":
        return await _multipart_fields(request, body)
    return _urlencoded_fields(text)


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


def _json_fields(text: str) -> dict[str, str]:
    if json_depth(text) > MAX_JSON_DEPTH:
        raise FormError(400, "Send a JSON object of strings: that one is nested too deeply.")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise FormError(400, "That is not valid JSON.") from None
    if not isinstance(data, dict) or len(data) > MAX_FIELDS:
        raise FormError(400, "Send a JSON object with an email field.")
    fields: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise FormError(400, f"The field {key[:40]!r} must be a string.")
        fields[key] = value
    return fields


def _urlencoded_fields(text: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise FormError(400, "That form could not be read.") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


async def _multipart_fields(request: Request, body: bytes) -> dict[str, str]:
    """Parse a multipart body already read into memory (and checked to be UTF-8); files are refused."""

    async def replay() -> AsyncIterator[Message]:
        yield {"type": "http.request", "body": body, "more_body": False}

    stream = replay()
    again = Request(request.scope, receive=stream.__anext__)
    try:
        form = await again.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_BODY)
    except Exception:  # python-multipart and Starlette raise several types for a bad body
        raise FormError(400, "That form could not be read.") from None
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            raise FormError(400, "Files are not accepted.")
        fields.setdefault(key, value)
    return fields


def _one_line(value: str, label: str, limit: int) -> str:
    """`value` stripped; refused when longer than `limit` or holding a control character."""
    value = value.strip()
    if len(value) > limit:
        raise FormError(400, f"The {label} is too long (at most {limit} characters).")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise FormError(400, f"The {label} must be one line of plain text.")
    return value


def check_signup(fields: dict[str, str]) -> Signup:
    """Validate a subscribe form's fields; the honeypot is reported, not refused."""
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
    return Signup(email=checked.normalized, name=name, is_bot=bool(fields.get(HONEYPOT, "").strip()))
