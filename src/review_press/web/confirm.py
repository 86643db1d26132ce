"""Confirmation tokens: a signed, expiring "yes, subscribe this address" for double opt-in.

A token is `base64url(id as 8 bytes + expiry as 4 bytes + the first 16 bytes of an HMAC)`,
38 URL-safe characters without padding, read only in that canonical form. The HMAC, under a
key derived from the site secret (so it can never pass for an unsubscribe token), covers the
id, the expiry and the case-folded address: a token stays bound to the address it was sent
to, even if the subscriber is deleted and their id is given to someone else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from ..tokens import decode_token, encode_token

_KEY_LABEL = b"review-press confirm v1"
_ID_BYTES = 8
_EXPIRY_BYTES = 4
_MAC_BYTES = 16
_LENGTH = _ID_BYTES + _EXPIRY_BYTES + _MAC_BYTES


class BadToken(Exception):
    """A confirmation token that is malformed, forged, truncated or expired (never shown)."""


@dataclass(frozen=True)
class ConfirmClaim:
    """What a good token says: which subscriber, and when the token stops working."""

    subscriber_id: int
    expires: dt.datetime


def confirm_key(secret: bytes) -> bytes:
    """The confirmation signing key, derived from the site secret for this one purpose."""
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def _mac(key: bytes, head: bytes, address: str) -> bytes:
    return hmac.new(key, head + b"\0" + address.casefold().encode("utf-8"), hashlib.sha256).digest()[:_MAC_BYTES]


def make_confirm_token(key: bytes, subscriber_id: int, address: str, expires: dt.datetime) -> str:
    """The token to put in a confirmation link for `address`, good until `expires`."""
    head = subscriber_id.to_bytes(_ID_BYTES, "big") + int(expires.timestamp()).to_bytes(_EXPIRY_BYTES, "big")
    return encode_token(head + _mac(key, head, address))


def read_confirm_token(token: str) -> tuple[ConfirmClaim, bytes, bytes]:
    """Decode a token's fields without trusting them: (claim, signed head, mac); `BadToken` if malformed.

    Only the canonical encoding is read (`tokens.decode_token`): a token padded with `=`, with
    other unused bits or in another alphabet is malformed, even if it decodes to a good one.
    Call `check_confirm_token` with the subscriber's address to verify the signature.
    """
    raw = decode_token(token, _LENGTH)
    if raw is None:
        raise BadToken("malformed")
    head, mac = raw[: _ID_BYTES + _EXPIRY_BYTES], raw[_ID_BYTES + _EXPIRY_BYTES :]
    expires = dt.datetime.fromtimestamp(int.from_bytes(head[_ID_BYTES:], "big"), dt.UTC)
    return ConfirmClaim(int.from_bytes(head[:_ID_BYTES], "big"), expires), head, mac


def check_confirm_token(key: bytes, token: str, address: str, now: dt.datetime) -> ConfirmClaim:
    """Verify a token for the subscriber whose address is `address`; `BadToken` unless good and unexpired."""
    claim, head, mac = read_confirm_token(token)
    if not hmac.compare_digest(mac, _mac(key, head, address)):
        raise BadToken("forged")
    if now >= claim.expires:
        raise BadToken("expired")
    return claim
