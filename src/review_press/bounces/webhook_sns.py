"""Amazon SES bounce and complaint notifications, delivered by SNS: the signature checked, the
SES notification read into `ProviderEvent`s (see `webhooks` for what the caller does next).

An SNS post is believed only when, in this order:

1. its `TopicArn` is one of `[bounces] ses_topic_arns` (403 otherwise: anyone with an AWS
   account can have SNS sign messages from a topic of their own);
2. its `SigningCertURL` is `https://sns.<region>.amazonaws.com[.cn]/….pem`, exactly: no user
   name, port, query or fragment (403 otherwise, and no request is made: no link is ever built
   from what a post says before it passes this check);
3. its `Timestamp` is at most an hour old (`webhooks.SNS_MAX_AGE`; SNS retries that long) and
   not in the future (400);
4. its `Signature` verifies over SNS's canonical string of the message's fields, with SHA1
   (`SignatureVersion` 1) or SHA256 (2) and RSA PKCS#1 v1.5, under the certificate at that URL
   (403). The certificate is fetched once over HTTPS (certificate-checked, no redirects) and
   kept in the site's state folder, `.review-press/sns-certs/<sha256 of the URL>`.

A `SubscriptionConfirmation` that passes is confirmed by the caller with a GET of its
`SubscribeURL`, which must be on the same SNS hosts (`Verified.subscribe_url`, checked here).
SES notifications: `Bounce` (Permanent -> hard, Transient or Undetermined -> soft, one event
per bounced recipient), `Complaint` (one per complained recipient); `Delivery` and every other
type are read as no event. The Message-ID header of the original message (SES's
`mail.commonHeaders.messageId`, or `mail.headers`) is what attributes an event to a campaign.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .webhooks import CLOCK_SKEW, SNS_MAX_AGE, Kind, ProviderEvent, Verified, WebhookError, WebhookKeys, bracketed, field, load_json, text

Fetch = Callable[[str], bytes]
"""GET an https URL already checked by `sns_url`, return the body (raise on any failure)."""

CERT_DIR = "sns-certs"
MAX_CERT_BYTES = 64 * 1024
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]{1,40}\.amazonaws\.com(\.cn)?$")
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def sns_url(url: Any, *, certificate: bool) -> str | None:
    """`url` if it is an https URL of an SNS host, exactly (`certificate`: a path ending .pem and
    no query; else a query is allowed, as a SubscribeURL has), else None. Nothing in it may
    differ from what `urlsplit` and an HTTP client both read the same way."""
    if not isinstance(url, str) or len(url) > 2048 or not url.isascii():
        return None
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c in "@\\" for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "https" or port is not None or parts.fragment or "#" in url:
        return None
    if parts.netloc != parts.hostname or not SNS_HOST.match(parts.netloc):
        return None
    if not parts.path.startswith("/") or "/../" in parts.path + "/" or "%" in parts.path:
        return None
    if certificate and (parts.query or "?" in url or not parts.path.endswith(".pem")):
        return None
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuses every redirect: the checked URL is the only one ever fetched."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch_https(url: str) -> bytes:
    """GET `url` (an SNS URL, checked again here) over verified HTTPS, no redirects; at most
    `MAX_CERT_BYTES` of body. Raises on any failure."""
    if sns_url(url, certificate=False) is None:
        raise ValueError("not an SNS URL")
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(urllib.request.Request(url, headers={"User-Agent": "review-press"}), timeout=10) as answer:
        data: bytes = answer.read(MAX_CERT_BYTES + 1)
    if len(data) > MAX_CERT_BYTES:
        raise ValueError("the answer is too long")
    return data


def cert_path(state_dir: Path, url: str) -> Path:
    """Where the certificate from `url` is kept: its file name is the SHA-256 of the URL."""
    return state_dir / CERT_DIR / hashlib.sha256(url.encode("utf-8")).hexdigest()


def _certificate(data: bytes) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        return None


def signing_key(url: str, state_dir: Path, fetch: Fetch) -> rsa.RSAPublicKey:
    """The RSA key of the certificate at the checked `url`: from the cache, else fetched and
    kept (atomically: a half-written file is never read). 503 when it cannot be had."""
    path = cert_path(state_dir, url)
    try:
        cert = _certificate(path.read_bytes())
    except FileNotFoundError:
        cert = None
    if cert is None:
        try:
            data = fetch(url)
        except Exception:
            raise WebhookError(503, "the signing certificate could not be fetched") from None
        cert = _certificate(data)
        if cert is None:
            raise WebhookError(503, "the signing certificate could not be read")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookError(403, "the signing certificate is not an RSA certificate")
    return key


def canonical(message: dict[str, Any]) -> bytes:
    """The string SNS signs: `name\\nvalue\\n` for each signed field present, in its order."""
    names = _NOTIFICATION_FIELDS if message.get("Type") == "Notification" else _SUBSCRIPTION_FIELDS
    return "".join(f"{name}\n{message[name]}\n" for name in names if name in message).encode("utf-8")


def _timestamp(value: str, now: dt.datetime) -> None:
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise WebhookError(400, "the timestamp is not a date") from None
    if stamp.tzinfo is None:
        raise WebhookError(400, "the timestamp has no time zone")
    age = (now - stamp).total_seconds()
    if age > SNS_MAX_AGE or age < -CLOCK_SKEW:
        raise WebhookError(400, "the timestamp is too old (or in the future)")


def verify_sns(keys: WebhookKeys, body: bytes, state_dir: Path, fetch: Fetch, now: dt.datetime | None = None) -> Verified:
    """An SNS post for SES, checked as the module says (the certificate from the cache or `fetch`)."""
    if not keys.ses_topic_arns:
        raise WebhookError(404, "not configured")
    message = load_json(body)
    kind = field(message, "Type")
    if kind not in TYPES:
        raise WebhookError(400, "not an SNS message type this endpoint reads")
    names = _NOTIFICATION_FIELDS if kind == "Notification" else _SUBSCRIPTION_FIELDS
    for name in names:
        field(message, name, required=name != "Subject")
    version, signature = field(message, "SignatureVersion"), field(message, "Signature")
    if message["TopicArn"] not in keys.ses_topic_arns:
        raise WebhookError(403, "the topic is not one this site trusts")
    if version not in _HASHES:
        raise WebhookError(400, "unknown SignatureVersion")
    url = sns_url(field(message, "SigningCertURL"), certificate=True)
    if url is None:
        raise WebhookError(403, "the signing certificate URL is not Amazon SNS's")
    _timestamp(message["Timestamp"], now or dt.datetime.now(dt.UTC))
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        raise WebhookError(403, "the signature does not match") from None
    key = signing_key(url, state_dir, fetch)
    try:
        key.verify(raw, canonical(message), padding.PKCS1v15(), _HASHES[version]())
    except InvalidSignature:
        raise WebhookError(403, "the signature does not match") from None
    nonce = message["MessageId"][:200]
    if kind == "SubscriptionConfirmation":
        confirm = sns_url(message["SubscribeURL"], certificate=False)
        if confirm is None:
            raise WebhookError(400, "the SubscribeURL is not Amazon SNS's")
        return Verified("ses", nonce, (), confirm)
    if kind == "UnsubscribeConfirmation":
        return Verified("ses", nonce)
    return Verified("ses", nonce, ses_events(message["Message"], nonce))


def _message_id(mail: Any) -> str | None:
    """The Message-ID header of the message SES reports on, when the notification carries it."""
    if not isinstance(mail, dict):
        return None
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and (mid := bracketed(common.get("messageId"))):
        return mid
    headers = mail.get("headers")
    for header in headers if isinstance(headers, list) else ():
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return bracketed(header.get("value"))
    return None


def ses_events(message: str, sns_id: str) -> tuple[ProviderEvent, ...]:
    """The events of one SES notification (the `Message` of an SNS notification)."""
    data = load_json(message.encode("utf-8"))
    kind = field(data, "notificationType", required=False) or field(data, "eventType", required=False)
    mid = _message_id(data.get("mail"))
    events: list[ProviderEvent] = []
    if kind == "Bounce":
        bounce = field(data, "bounce", dict)
        hard_or_soft: Kind = "hard" if field(bounce, "bounceType") == "Permanent" else "soft"
        event_id = text(bounce.get("feedbackId"), 100) or sns_id
        for r in field(bounce, "bouncedRecipients", list):
            code, detail = text(field(r, "status", required=False), 40), text(field(r, "diagnosticCode", required=False))
            events.append(ProviderEvent(event_id, hard_or_soft, field(r, "emailAddress"), mid, code, detail))
    elif kind == "Complaint":
        complaint = field(data, "complaint", dict)
        event_id = text(complaint.get("feedbackId"), 100) or sns_id
        code = text(complaint.get("complaintFeedbackType"), 40)
        for r in field(complaint, "complainedRecipients", list):
            events.append(ProviderEvent(event_id, "complaint", field(r, "emailAddress"), mid, code))
    return tuple(events)
