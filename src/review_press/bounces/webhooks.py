"""Provider webhooks for bounces and complaints: each post verified, then read into `ProviderEvent`s.

Pure functions, one per provider; none writes anywhere (the web app records what they return,
`web.webhooks`). Each refuses a post with a `WebhookError` carrying the HTTP status to answer
and a short reason that never quotes a secret or the payload:

- Amazon SES through SNS (`webhook_sns.verify_sns`): the SNS signature (RSA over SNS's
  canonical string) with a certificate fetched only from `https://sns.<region>.amazonaws.com/….pem`,
  a topic in `[bounces] ses_topic_arns`, a timestamp at most an hour old.
- Postmark (`verify_postmark`): HTTP basic auth (`postmark_user`, the password in the
  environment variable `postmark_password_env`), compared in constant time. Postmark signs
  nothing, so the record's own ID is the nonce.
- Mailgun (`verify_mailgun`): HMAC-SHA256 of timestamp + token under the signing key (in the
  environment variable `mailgun_key_env`), the timestamp within `webhook_max_age`. Mailgun's
  signature does not cover the event itself: the token is the nonce, so a captured signature
  is good for one post only.
- SendGrid (`verify_sendgrid`): ECDSA P-256/SHA-256 over timestamp + raw body under
  `sendgrid_public_key`, the timestamp within `webhook_max_age`. The nonce is a hash of what
  was signed (an ECDSA signature can be rewritten into a second valid one).

Every verified post has a nonce (`Verified.nonce`) the caller records with its reports
(`store.feedback.record(..., nonce=)`, one transaction): a post seen before is a replay (409).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..config import BouncesConfig

Kind = Literal["hard", "soft", "complaint"]
PROVIDERS = ("ses", "postmark", "mailgun", "sendgrid")
MAX_EVENTS = 1000  # events in one post (SendGrid batches them); more is refused, not truncated
SNS_MAX_AGE = 3600.0  # SNS retries a delivery for a while with the same signed message
CLOCK_SKEW = 300.0  # how far in the future a provider's timestamp may be


class WebhookError(Exception):
    """A post the endpoint refuses: the HTTP status to answer (400 malformed, 401 no or bad
    credentials, 403 bad signature or foreign topic, 404 provider not configured, 409 replay, 503
    not ready) and a short reason safe to show (it never echoes a secret or the payload)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ProviderEvent:
    """One bounce or complaint a provider reports about one recipient, not yet attributed.

    `event_id` is the provider's name for the report (unique with the recipient), `message_id`
    the Message-ID header of the message it is about when the payload carries it (angle
    brackets included), `code` the status code or complaint type, `detail` the provider's words.
    """

    event_id: str
    kind: Kind
    recipient: str
    message_id: str | None = None
    code: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Verified:
    """A post whose signature (or credentials) checked out: its provider, its nonce for the replay
    check, what it reports, and for an SNS subscription the URL that confirms it."""

    provider: str
    nonce: str
    events: tuple[ProviderEvent, ...] = ()
    subscribe_url: str | None = None


@dataclass(frozen=True)
class WebhookKeys:
    """The secrets the webhooks check posts against, read once from press.toml and the
    environment. A provider is configured when press.toml names its key; `None` then means
    its environment variable is empty (the route answers 503 until it is set)."""

    ses_topic_arns: tuple[str, ...] = ()
    postmark: tuple[str, str | None] | None = None  # (user, password)
    mailgun: bytes | None = None
    mailgun_configured: bool = False
    sendgrid: ec.EllipticCurvePublicKey | None = None
    max_age: float = 300.0

    def configured(self, provider: str) -> bool:
        """Whether press.toml sets this provider up (else its route is a 404)."""
        return {
            "ses": bool(self.ses_topic_arns),
            "postmark": self.postmark is not None,
            "mailgun": self.mailgun_configured,
            "sendgrid": self.sendgrid is not None,
        }.get(provider, False)


def sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key as it shows it (base64 DER SubjectPublicKeyInfo); `ValueError`
    unless it is a P-256 public key."""
    try:
        key = serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("[bounces] sendgrid_public_key is not a base64 public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("[bounces] sendgrid_public_key is not an ECDSA P-256 key")
    return key


def webhook_keys(bounces: BouncesConfig, environ: Mapping[str, str]) -> WebhookKeys:
    """The keys of `[bounces]` (a `BouncesConfig`), secrets from `environ`; `ValueError` for a
    SendGrid key that is not one."""
    postmark = None
    if bounces.postmark_user and bounces.postmark_password_env:
        postmark = (bounces.postmark_user, environ.get(bounces.postmark_password_env) or None)
    mailgun = environ.get(bounces.mailgun_key_env, "") if bounces.mailgun_key_env else ""
    return WebhookKeys(
        ses_topic_arns=tuple(bounces.ses_topic_arns),
        postmark=postmark,
        mailgun=mailgun.encode() if mailgun else None,
        mailgun_configured=bool(bounces.mailgun_key_env),
        sendgrid=sendgrid_key(bounces.sendgrid_public_key) if bounces.sendgrid_public_key.strip() else None,
        max_age=float(bounces.webhook_max_age),
    )


def keep_seconds(keys: WebhookKeys) -> float:
    """How long nonces are remembered: longer than any post stays acceptable by its timestamp
    (one table for every provider, and each post recorded forgets what is older than this)."""
    return max(SNS_MAX_AGE, 2 * keys.max_age) + CLOCK_SKEW


# --- reading payloads ----------------------------------------------------------------------


def load_json(body: bytes) -> Any:
    """A body's JSON; 400 unless it is UTF-8 JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookError(400, "the body is not JSON") from None


def field(data: Any, name: str, kind: type | tuple[type, ...] = str, *, required: bool = True) -> Any:
    """`data[name]` of type `kind`; 400 when `data` is no object, or the field is missing (if
    required) or of another type. An absent optional field is None."""
    if not isinstance(data, dict):
        raise WebhookError(400, "the payload is not of the expected shape")
    value = data.get(name)
    if value is None and not required:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise WebhookError(400, f"the payload lacks a valid {name[:40]!r}")
    return value


def text(value: Any, limit: int = 500) -> str:
    """A one-line text of a payload value (numbers too), at most `limit` characters."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    return " ".join(str(value).split())[:limit]


def bracketed(message_id: Any) -> str | None:
    """A Message-ID as our own are written, in angle brackets; None when absent or not one."""
    if not isinstance(message_id, str) or not message_id.strip() or len(message_id) > 998:
        return None
    mid = message_id.strip()
    return mid if mid.startswith("<") and mid.endswith(">") else f"<{mid.strip('<>')}>"


def check_age(stamp: float, max_age: float, now: dt.datetime) -> None:
    """400 when the Unix time `stamp` is more than `max_age` seconds from `now`, either way."""
    if not math.isfinite(stamp) or abs(now.timestamp() - stamp) > max_age:
        raise WebhookError(400, "the timestamp is too old (or in the future)")


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


# --- Postmark ------------------------------------------------------------------------------

POSTMARK_HARD = ("HardBounce", "BadEmailAddress", "ManuallyDeactivated")
POSTMARK_SOFT = ("SoftBounce", "Transient", "DnsError", "Blocked")


def _basic_auth(header: str | None) -> tuple[bytes, bytes] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


def verify_postmark(keys: WebhookKeys, authorization: str | None, body: bytes) -> Verified:
    """A Postmark bounce or spam-complaint webhook post, its basic auth checked."""
    if keys.postmark is None:
        raise WebhookError(404, "not configured")
    user, password = keys.postmark
    if password is None:
        raise WebhookError(503, "the webhook's password is not set on the server")
    given = _basic_auth(authorization)
    ok_user = hmac.compare_digest(given[0] if given else b"", user.encode())
    ok_password = hmac.compare_digest(given[1] if given else b"", password.encode())
    if not (given and ok_user and ok_password):
        raise WebhookError(401, "the credentials are wrong")
    data = load_json(body)
    record = field(data, "RecordType")
    record_id = field(data, "ID", (int, str))
    kind_name = field(data, "Type", required=False) or record
    kind: Kind | None = None
    if record == "SpamComplaint" or kind_name == "SpamComplaint":
        kind = "complaint"
    elif record == "Bounce" and kind_name in POSTMARK_HARD:
        kind = "hard"
    elif record == "Bounce" and kind_name in POSTMARK_SOFT:
        kind = "soft"
    events: tuple[ProviderEvent, ...] = ()
    if kind is not None:
        detail = text(data.get("Details")) or text(data.get("Description"))
        events = (ProviderEvent(text(record_id, 100), kind, field(data, "Email"), None, text(kind_name, 40), detail),)
    return Verified("postmark", text(record_id, 100), events)


# --- Mailgun -------------------------------------------------------------------------------


def verify_mailgun(keys: WebhookKeys, body: bytes, now: dt.datetime | None = None) -> Verified:
    """A Mailgun webhook post (JSON: `signature` and `event-data`), its HMAC and age checked."""
    if not keys.mailgun_configured:
        raise WebhookError(404, "not configured")
    if keys.mailgun is None:
        raise WebhookError(503, "the webhook's signing key is not set on the server")
    data = load_json(body)
    sig = field(data, "signature", dict)
    stamp, token, signature = field(sig, "timestamp", (str, int)), field(sig, "token"), field(sig, "signature")
    expected = hmac.new(keys.mailgun, f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8", "replace")):
        raise WebhookError(403, "the signature does not match")
    try:
        check_age(float(stamp), keys.max_age, _now(now))
    except ValueError:
        raise WebhookError(400, "the timestamp is not a number") from None
    event = field(data, "event-data", dict)
    name = field(event, "event")
    kind: Kind | None = None
    if name == "failed":
        severity = field(event, "severity", required=False)
        kind = "hard" if severity == "permanent" else "soft" if severity == "temporary" else None
    elif name == "complained":
        kind = "complaint"
    events: tuple[ProviderEvent, ...] = ()
    if kind is not None:
        status = field(event, "delivery-status", dict, required=False) or {}
        message = field(event, "message", dict, required=False) or {}
        headers = field(message, "headers", dict, required=False) or {}
        code = (text(status.get("enhanced-code"), 40) or text(status.get("code"), 40)) if kind != "complaint" else ""
        detail = text(status.get("description")) or text(status.get("message")) or text(event.get("reason"))
        event_id = text(field(event, "id", required=False), 100) or token[:100]
        recipient = field(event, "recipient")
        events = (ProviderEvent(event_id, kind, recipient, bracketed(headers.get("message-id")), code, detail),)
    return Verified("mailgun", token[:200], events)


# --- SendGrid ------------------------------------------------------------------------------

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"


def verify_sendgrid(keys: WebhookKeys, headers: Mapping[str, str], body: bytes, now: dt.datetime | None = None) -> Verified:
    """A SendGrid signed event webhook post (a JSON array of events), its ECDSA signature and age checked."""
    if keys.sendgrid is None:
        raise WebhookError(404, "not configured")
    signature, stamp = headers.get(SIGNATURE_HEADER, ""), headers.get(TIMESTAMP_HEADER, "")
    if not signature or not stamp:
        raise WebhookError(401, "the post is not signed")
    try:
        der = base64.b64decode(signature.strip(), validate=True)
        keys.sendgrid.verify(der, stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise WebhookError(403, "the signature does not match") from None
    try:
        check_age(float(stamp), keys.max_age, _now(now))
    except ValueError:
        raise WebhookError(400, "the timestamp is not a number") from None
    data = load_json(body)
    if not isinstance(data, list) or len(data) > MAX_EVENTS:
        raise WebhookError(400, "the payload is not a list of events")
    events = []
    for item in data:
        name = field(item, "event")
        kind: Kind | None = None
        if name == "bounce":
            kind = "soft" if item.get("type") == "blocked" else "hard"
        elif name == "dropped" and item.get("reason") == "Bounced Address":
            kind = "hard"
        elif name == "spamreport":
            kind = "complaint"
        if kind is not None:
            event_id = text(field(item, "sg_event_id"), 100)
            code = text(item.get("status"), 40) if kind != "complaint" else "spamreport"
            events.append(
                ProviderEvent(event_id, kind, field(item, "email"), bracketed(item.get("smtp-id")), code, text(item.get("reason")))
            )
    # the nonce is what was signed, not the signature: an ECDSA signature has a twin (r, n - s)
    nonce = hashlib.sha256(stamp.encode() + b"\n" + body).hexdigest()
    return Verified("sendgrid", nonce, tuple(events))
