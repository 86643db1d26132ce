"""Unsubscribe tokens: an unforgeable, URL-safe stand-in for a subscriber id.

A token is base64url(masked id + the first 16 bytes of HMAC-SHA256(secret, "unsubscribe:" + id)),
where the masked id is the id's 8 bytes through a keyed permutation (a 4-round Feistel
network over HMAC). Only the holder of the secret can make one, so no one can unsubscribe
someone else by guessing ids, and a token does not show its id (or how many subscribers
there are). Tokens are 32 characters of unpadded base64url, and only that canonical
encoding is accepted (`decode_token`): each subscriber has exactly one unsubscribe token.
The secret comes from `REVIEW_PRESS_SECRET` (its bytes as they are, at least 32 characters),
else from a random key made on first use in `.review-press/secret` (mode 0600, git-ignored
with the rest of `.review-press/`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from .config import Config
from .errors import DeliveryError, write_error
from .statedir import private_dir

SECRET_ENV = "REVIEW_PRESS_SECRET"
SECRET_FILE = "secret"
MIN_SECRET = 32  # characters, in the variable as in the key file (which holds 64 hex digits)
_PURPOSE = b"unsubscribe:"
_MAC_BYTES = 16
_ID_BYTES = 8
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")  # base64url's own alphabet, nothing else


def secret_from_environment(environ: Mapping[str, str] | None = None) -> bytes | None:
    """`REVIEW_PRESS_SECRET` as the bytes it was set to, or None when it is unset or empty.

    The bytes are taken as they are (`os.environb`; a str from `environ` is encoded back with
    `surrogateescape`), so a value that is not UTF-8 works like any other. One shorter than
    `MIN_SECRET` characters is refused (`DeliveryError` naming the variable, never its value).
    """
    if environ is None and os.supports_bytes_environ:
        raw = os.environb.get(SECRET_ENV.encode("ascii"))
    else:
        value = (os.environ if environ is None else environ).get(SECRET_ENV)
        raw = None if value is None else value.encode("utf-8", "surrogateescape")
    if not raw:
        return None
    if len(raw.decode("utf-8", "surrogateescape")) < MIN_SECRET:  # characters; a byte that is not UTF-8 counts as one
        raise DeliveryError(
            f"{SECRET_ENV} is too short: a signing key needs at least {MIN_SECRET} characters",
            hint=f"set it to a long random value, e.g. the output of  python -c 'import secrets; print(secrets.token_hex(32))'  (or unset {SECRET_ENV} to use .review-press/secret)",
        )
    return raw


def load_secret(state_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The signing key: from the environment (`secret_from_environment`), else read (or created once) beside the database."""
    if (raw := secret_from_environment(environ)) is not None:
        return raw
    path = private_dir(state_dir) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise write_error(path, exc) from None
    else:
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            path.unlink(missing_ok=True)  # never leave a short key behind
            raise write_error(path, exc) from None
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DeliveryError(f"cannot read the signing key: {exc.__class__.__name__}", path=path, hint=f"or set {SECRET_ENV}") from None
    if len(key) < MIN_SECRET:
        raise DeliveryError("the signing key file is too short", path=path, hint=f"delete it to make a new one, or set {SECRET_ENV}")
    return key.encode("ascii")


def site_secret(config: Config) -> bytes:
    """The signing key of a site (see `load_secret`)."""
    return load_secret(config.state_dir)


@lru_cache(maxsize=32)
def purpose_key(secret: bytes, label: bytes) -> bytes:
    """A key for one purpose (`label`), derived from the site secret with HMAC-SHA256: what a
    signature for one purpose proves never stands for another's. Made once per secret and label
    (the senders ask for it with every message)."""
    return hmac.digest(secret, label, "sha256")


@lru_cache(maxsize=64)
def _keyed(key: bytes) -> hmac.HMAC:
    """HMAC-SHA256 keyed with `key` and fed nothing yet: copied for each message (`keyed_digest`)."""
    return hmac.new(key, digestmod="sha256")


def keyed_digest(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of `message` under `key`: the bytes `hmac.digest` gives, from a copy of a state
    keyed once per key. The sending threads ask for six a message (token, Message-ID), and
    `hmac.digest` lets go of the GIL for each: with ten threads waiting for it, two thread switches
    a call; a copy's update and digest of a short message keep it."""
    mac = _keyed(key).copy()
    mac.update(message)
    return mac.digest()


def _mac(secret: bytes, packed_id: bytes) -> bytes:
    return keyed_digest(secret, _PURPOSE + packed_id)[:_MAC_BYTES]  # one per message sent


def _permute(secret: bytes, block: bytes, inverse: bool = False) -> bytes:
    """A keyed permutation of 8 bytes (Feistel, 4 rounds of HMAC-SHA256): hides the id, reversibly."""
    left, right = block[:4], block[4:]
    rounds = range(3, -1, -1) if inverse else range(4)
    for r in rounds:
        if inverse:
            left, right = right, left
        mask = keyed_digest(secret, b"id-mask:" + bytes([r]) + right)[:4]
        left = (int.from_bytes(left, "big") ^ int.from_bytes(mask, "big")).to_bytes(4, "big")
        if not inverse:
            left, right = right, left
    return left + right


def make_token(secret: bytes, subscriber_id: int) -> str:
    """The unsubscribe token of one subscriber: 32 URL-safe characters, no padding."""
    packed = subscriber_id.to_bytes(_ID_BYTES, "big")
    return encode_token(_permute(secret, packed) + _mac(secret, packed))


def encode_token(raw: bytes) -> str:
    """`raw` as a token: base64url without padding (the one encoding `decode_token` accepts)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: object, size: int) -> bytes | None:
    """The `size` bytes a token stands for, or None unless `token` is their canonical encoding.

    Canonical means exactly what `encode_token` writes: base64url's own alphabet only (no `+`,
    `/`, `=`, white space or other characters a lenient decoder skips), the exact length, and
    the unused low bits of the last character zero. So each value has one token, and a token
    that was padded, re-encoded or altered in any character is refused.
    """
    if not isinstance(token, str) or len(token) != (size * 8 + 5) // 6 or not _URLSAFE.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size and encode_token(raw) == token else None


def verify_token(secret: bytes, token: str) -> int | None:
    """The subscriber id a token stands for, or None if it is malformed, not canonical or forged (constant time)."""
    raw = decode_token(token, _ID_BYTES + _MAC_BYTES)
    if raw is None:
        return None
    packed, mac = _permute(secret, raw[:_ID_BYTES], inverse=True), raw[_ID_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, packed)):
        return None
    return int.from_bytes(packed, "big")
