"""VERP: a return path per message, so a bounce names its campaign and reader exactly.

With `[newsletter] bounce_address = "bounces@example.org"`, each message's envelope sender
(where every delivery-status notification goes) is `bounces+<token>@example.org`, the token

    <subscriber id, base 36>-<campaign tag>-<MAC>

where the campaign tag is 8 base32 characters of SHA-256 over the campaign key and the MAC 16
base32 characters (80 bits) of HMAC-SHA256 under a key derived from the site secret for this one
purpose. All lower case and `[a-z0-9-]`, 40 characters at most, so it survives MTAs that fold the
case of local parts and fits the 64 characters a local part may have. Only the holder of the
secret can make one, so a forged bounce cannot name a reader it guessed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from ..tokens import purpose_key

_LABEL = b"verp return path"
_MAC_CHARS = 16
_TAG_CHARS = 8


def _b32(data: bytes, n: int) -> str:
    return base64.b32encode(data).decode("ascii").lower()[:n]


def campaign_tag(key: str) -> str:
    """The short, stable name of campaign `key` inside a token."""
    return _b32(hashlib.sha256(key.encode("utf-8")).digest(), _TAG_CHARS)


def _mac(secret: bytes, key: str, subscriber_id: int) -> str:
    return _b32(hmac.digest(purpose_key(secret, _LABEL), f"{key}\0{subscriber_id}".encode(), "sha256"), _MAC_CHARS)


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def return_path(bounce_address: str, secret: bytes, key: str, subscriber_id: int) -> str:
    """The envelope sender of campaign `key`'s message to one reader: `local+token@domain` (ASCII domain)."""
    from ..store import parse_address  # imported when an address is read: the store's modules are a build's to spare

    local, _, domain = parse_address(bounce_address).envelope.rpartition("@")
    return f"{local}+{_base36(subscriber_id)}-{campaign_tag(key)}-{_mac(secret, key, subscriber_id)}@{domain}"


def read_return_path(address: str, bounce_address: str, secret: bytes, campaigns: Iterable[str]) -> tuple[str, int] | None:
    """The (campaign key, subscriber id) a return path made by `return_path` names, when its token
    is genuine and names one of `campaigns`; None for anything else (another address, a forgery)."""
    from ..store import parse_address  # imported when an address is read: the store's modules are a build's to spare

    local, _, domain = address.strip().strip("<>").lower().rpartition("@")
    base_local, _, base_domain = parse_address(bounce_address).envelope.lower().rpartition("@")
    prefix, plus, token = local.partition("+")
    if not plus or prefix != base_local or domain != base_domain:
        return None
    parts = token.split("-")
    if len(parts) != 3 or not parts[0].isalnum() or len(parts[0]) > 13:
        return None
    try:
        subscriber_id = int(parts[0], 36)
    except ValueError:
        return None
    if _base36(subscriber_id) != parts[0]:  # one spelling per token (no leading zeros)
        return None
    for key in campaigns:
        if campaign_tag(key) == parts[1] and hmac.compare_digest(_mac(secret, key, subscriber_id), parts[2]):
            return key, subscriber_id
    return None
