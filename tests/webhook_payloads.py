"""Test support for the provider webhooks: keys of our own (an RSA key and a self-signed
certificate standing in for SNS's, an ECDSA key for SendGrid, HMAC keys for Mailgun) and the
posts each provider makes, built and signed here as the provider would."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from review_press.bounces.webhook_sns import canonical, cert_path

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=2336412f37fb687f5d51e6e"
POSTMARK_USER = "postmark-hook"
POSTMARK_PASSWORD = "pm-password-0123456789"
MAILGUN_KEY = "mailgun-signing-key-0123456789abcdef"
ENV = {"TEST_POSTMARK_PASSWORD": POSTMARK_PASSWORD, "TEST_MAILGUN_KEY": MAILGUN_KEY}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(key: rsa.RSAPrivateKey) -> bytes:
    """A PEM certificate for `key`, named like SNS's."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


SNS_KEY = rsa_key()
SNS_CERT = self_signed(SNS_KEY)
OTHER_KEY = rsa_key()
OTHER_CERT = self_signed(OTHER_KEY)


def seed_cert(state_dir: Path, url: str, pem: bytes = SNS_CERT) -> Path:
    """Put `pem` in the site's SNS certificate cache as the certificate of `url`."""
    path = cert_path(state_dir, url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)
    return path


def sns_post(
    kind: str,
    message: str,
    *,
    key: rsa.RSAPrivateKey = SNS_KEY,
    version: str = "1",
    topic: str = TOPIC,
    cert_url: str = CERT_URL,
    timestamp: dt.datetime | None = None,
    message_id: str | None = None,
    subscribe_url: str = SUBSCRIBE_URL,
    subject: str | None = "Amazon SES Email Event Notification",
) -> dict[str, str]:
    """An SNS message as SNS posts it, signed with `key` (SHA1 for version 1, SHA256 for 2)."""
    stamp = (timestamp or _now()).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    msg: dict[str, str] = {"Type": kind, "MessageId": message_id or str(uuid.uuid4()), "TopicArn": topic, "Message": message}
    if kind == "Notification":
        if subject is not None:
            msg["Subject"] = subject
    else:
        msg["Token"] = "2336412f37fb687f5d51e6e"
        msg["SubscribeURL"] = subscribe_url
    msg.update(Timestamp=stamp, SignatureVersion=version, SigningCertURL=cert_url)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    msg["Signature"] = base64.b64encode(key.sign(canonical(msg), padding.PKCS1v15(), algorithm)).decode()
    return msg


def ses_bounce(recipients: list[str], bounce_type: str = "Permanent", message_id: str | None = None, feedback_id: str = "") -> str:
    """An SES Bounce notification (the SNS Message) about `recipients`."""
    mail: dict[str, Any] = {
        "timestamp": "2026-03-01T12:00:00.000Z",
        "messageId": "0100018e-ses-internal-id",
        "source": "letters@example.org",
    }
    if message_id:
        mail["headers"] = [{"name": "Message-ID", "value": message_id}]
        mail["commonHeaders"] = {"messageId": message_id, "subject": "A post"}
    return json.dumps(
        {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "feedbackId": feedback_id or str(uuid.uuid4()),
                "bouncedRecipients": [
                    {"emailAddress": r, "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
                    for r in recipients
                ],
            },
            "mail": mail,
        }
    )


def ses_complaint(recipients: list[str], message_id: str | None = None, feedback_type: str = "abuse") -> str:
    """An SES Complaint notification about `recipients`."""
    mail: dict[str, Any] = {"messageId": "0100018e-ses-internal-id"}
    if message_id:
        mail["commonHeaders"] = {"messageId": message_id}
    complaint = {
        "feedbackId": str(uuid.uuid4()),
        "complaintFeedbackType": feedback_type,
        "complainedRecipients": [{"emailAddress": r} for r in recipients],
    }
    return json.dumps({"notificationType": "Complaint", "complaint": complaint, "mail": mail})


def basic_auth(user: str = POSTMARK_USER, password: str = POSTMARK_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def postmark_bounce(email: str, kind: str = "HardBounce", record_id: int | None = None) -> dict[str, Any]:
    """A Postmark bounce webhook record (`kind` its Type: HardBounce, SoftBounce, SpamComplaint...)."""
    return {
        "RecordType": "SpamComplaint" if kind == "SpamComplaint" else "Bounce",
        "ID": record_id if record_id is not None else uuid.uuid4().int % 2**62,
        "Type": kind,
        "TypeCode": 1,
        "MessageID": str(uuid.uuid4()),
        "Description": "The server was unable to deliver your message.",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "letters@example.org",
        "BouncedAt": "2026-03-01T12:00:00Z",
    }


def mailgun_post(
    event_data: dict[str, Any], *, key: str = MAILGUN_KEY, timestamp: float | None = None, token: str | None = None
) -> dict[str, Any]:
    """A Mailgun webhook post around `event_data`, signed with `key`."""
    stamp = str(int(timestamp if timestamp is not None else _now().timestamp()))
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event_data}


def mailgun_failed(recipient: str, severity: str = "permanent", message_id: str | None = None) -> dict[str, Any]:
    """Mailgun's event-data of a failed delivery."""
    headers = {"message-id": message_id.strip("<>")} if message_id else {}
    return {
        "event": "failed",
        "id": uuid.uuid4().hex,
        "severity": severity,
        "recipient": recipient,
        "reason": "bounce",
        "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "description": "", "message": "mailbox does not exist"},
        "message": {"headers": headers},
    }


SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_b64(key: ec.EllipticCurvePrivateKey = SENDGRID_KEY) -> str:
    """The verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sendgrid_signed(
    body: bytes, *, key: ec.EllipticCurvePrivateKey = SENDGRID_KEY, timestamp: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """`body` and the headers SendGrid signs it with."""
    stamp = str(int(timestamp if timestamp is not None else _now().timestamp()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }
    return body, headers


def sendgrid_event(email: str, event: str, message_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """One event of SendGrid's webhook."""
    item: dict[str, Any] = {"email": email, "timestamp": int(_now().timestamp()), "event": event, "sg_event_id": uuid.uuid4().hex}
    if message_id:
        item["smtp-id"] = message_id
    item.update(extra)
    return item


BOUNCES_TOML = f"""
[bounces]
ses_topic_arns = ["{TOPIC}"]
postmark_user = "{POSTMARK_USER}"
postmark_password_env = "TEST_POSTMARK_PASSWORD"
mailgun_key_env = "TEST_MAILGUN_KEY"
sendgrid_public_key = "{public_b64()}"
soft_limit = 2
soft_days = 7
webhook_max_age = 300
"""
