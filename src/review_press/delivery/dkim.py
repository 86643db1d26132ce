"""Optional DKIM signing (dkimpy): a `DKIM-Signature` that covers the list headers too.

Configured in `[smtp]` with `dkim_key_file` (a PEM private key, path relative to the site),
`dkim_selector` and `dkim_domain`. The key is read once, never printed; a missing or
unreadable key is a `DeliveryError` before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dkim

from ..config import CONFIG_NAME, Config
from ..errors import DeliveryError

# Signed headers. List-Unsubscribe and List-Unsubscribe-Post must be covered for RFC 8058
# one-click unsubscribe to be honoured by the large mailbox providers.
SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)


def make_signer(key: bytes, selector: str, domain: str) -> Callable[[bytes], bytes]:
    """A function that returns a message with its `DKIM-Signature` header prepended."""
    sel, dom = selector.encode("ascii"), domain.encode("idna")

    def sign(message: bytes) -> bytes:
        try:
            header = dkim.sign(message, sel, dom, key, include_headers=list(SIGNED_HEADERS))
        except (dkim.DKIMException, ValueError, IndexError) as exc:  # dkimpy lets a malformed key raise ValueError or IndexError
            raise DeliveryError(f"DKIM signing failed: {exc.__class__.__name__}") from None
        return header + message

    return sign


def signer_for(config: Config) -> Callable[[bytes], bytes] | None:
    """The site's signer, or None when `[smtp] dkim_key_file` is not set."""
    smtp = config.smtp
    if smtp is None or not smtp.dkim_key_file:
        return None
    where = config.root / CONFIG_NAME
    if not smtp.dkim_selector or not smtp.dkim_domain:
        raise DeliveryError("[smtp] dkim_key_file needs dkim_selector and dkim_domain too", path=where)
    path = Path(smtp.dkim_key_file)
    path = path if path.is_absolute() else config.root / path
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise DeliveryError(
            f"cannot read the DKIM key: {exc.strerror}", path=path, hint="dkim_key_file is relative to press.toml"
        ) from None
    sign = make_signer(key, smtp.dkim_selector, smtp.dkim_domain)
    try:
        sign(b"From: a@example.org\r\nSubject: check\r\n\r\nkey check\r\n")
    except DeliveryError:
        raise DeliveryError("the DKIM key is not a usable private key", path=path, hint="give a PEM RSA private key") from None
    return sign
