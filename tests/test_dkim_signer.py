"""The DKIM signer (OpenSSL through `cryptography`) against dkimpy's verifier, an independent
implementation: awkward messages (folded and repeated headers, trailing whitespace, LF-only
lines, an empty body), both key types, and tampering that must break the signature."""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from review_press.delivery.dkim import make_signer
from review_press.errors import DeliveryError

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _dns(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)


def _verify(message: bytes, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bool:
    record = _dns(key)
    return bool(dkim.verify(message, dnsfunc=lambda name, timeout=5: record if name == b"mail._domainkey.example.org." else None))


MESSAGES = {
    "plain": b"From: The Press <letters@example.org>\r\nTo: ann@example.com\r\nSubject: Hello\r\n\r\nBody.\r\n",
    "folded and repeated": (
        b"From: The Press <letters@example.org>\r\nTo: ann@example.com\r\nSubject: A  long\r\n\t subject   folded \r\n"
        b"List-Unsubscribe: <https://example.org/u?t=1>,\r\n <mailto:u@example.org>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        b"Received: x\r\nTo: second@example.com\r\nMIME-Version: 1.0\r\n\r\nline  with   spaces  \r\n\t tab line\t\r\n\r\n\r\n"
    ),
    "LF only": b"From: letters@example.org\nSubject: lf\nMessage-ID: <a.1.b@example.org>\n\nfirst\nsecond  \n\n",
    "empty body": b"From: letters@example.org\r\nSubject: nothing\r\n\r\n",
    "no body at all": b"From: letters@example.org\r\nSubject: nothing",
}


@pytest.mark.parametrize("key", [RSA_KEY, ED_KEY], ids=["rsa", "ed25519"])
@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_signature_verifies_with_dkimpy_and_tampering_breaks_it(
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, name: str
) -> None:
    sign = make_signer(_pem(key), "mail", "example.org")
    signed = sign(MESSAGES[name])
    assert signed.endswith(MESSAGES[name]) and signed.startswith(b"DKIM-Signature: v=1; a=")
    assert _verify(signed, key)
    assert not _verify(
        signed.replace(b"From: ", b"From: X ", 1) if b"From: The" in signed else signed.replace(b"letters@", b"letterz@", 1), key
    )
    assert sign(MESSAGES[name]) == signed  # PKCS#1 v1.5 and Ed25519 signatures are deterministic: the same bytes every time


def test_a_relay_refolding_headers_keeps_the_signature_and_any_change_to_the_body_breaks_it() -> None:
    sign = make_signer(_pem(RSA_KEY), "mail", "example.org")
    signed = sign(MESSAGES["folded and repeated"])
    relayed = signed.replace(b"Subject: A  long\r\n\t subject", b"Subject:   A long subject")  # headers: relaxed
    assert _verify(relayed, RSA_KEY)
    assert _verify(relayed + b"\r\n\r\n", RSA_KEY)  # empty lines added at the end: simple ignores them
    assert not _verify(relayed.replace(b"tab line", b"tab lime"), RSA_KEY)  # a word changed in the body
    assert not _verify(relayed.replace(b"line  with", b"line with"), RSA_KEY)  # body whitespace is the sender's, as sent


@pytest.mark.parametrize("pem", [b"", b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", b"\x00" * 100])
def test_a_key_that_cannot_be_read_is_a_clear_error_that_never_quotes_it(pem: bytes) -> None:
    with pytest.raises(DeliveryError) as caught:
        make_signer(pem, "mail", "example.org")
    assert "not a key" not in str(caught.value) and "Traceback" not in str(caught.value)


def _reference_simple_body(body: bytes) -> bytes:
    """RFC 6376 3.4.3 read literally: drop every empty line at the end, then end with one CRLF."""
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()  # what follows the last CRLF: nothing
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines) if lines else b"\r\n"


def test_the_body_canonicalization_equals_the_rfc_read_line_by_line() -> None:
    import random

    from review_press.delivery.dkim import _simple_body

    rng = random.Random(6376)
    for _ in range(30000):
        body = bytes(rng.choice(b"ab \t\r\n") for _ in range(rng.randint(0, 30)))
        if rng.random() < 0.7:
            body = body.replace(b"\r", b"").replace(b"\n", b"\r\n")
        assert _simple_body(body) == _reference_simple_body(body), body
