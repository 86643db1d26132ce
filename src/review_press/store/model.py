"""What the store holds, as plain data and pure rules: a reader's address and name (validated),
a subscriber row, an import's rows and report, the keyed hashes of erased addresses, and the
one timestamp format every table uses. No SQL here: that is `base` (shared by every database),
`sqlite` and `postgres`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from ..errors import ConfigError

STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
SUPPRESSED = ("unsubscribed", "bounced", "complained")  # an import or `add` never revives these
EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "consent_source",
    "consent_at",
    "consent_ip",
    "created_at",
    "updated_at",
    "status_reason",
    "status_at",
    "topics",  # the topics they chose, separated by `TOPIC_SEPARATOR` (empty: every post)
    "frequency",  # each or weekly
)
TOPIC_SEPARATOR = ";"  # between the topics of one reader in our export


def topic_key(name: str) -> str:
    """How a topic is compared (`subscriber_topics.topic_key`): case-folded, so "Film" in press.toml and "film" on a
    form, in an import or after press.toml changes its spelling are one topic on both databases."""
    return name.casefold()


FREQUENCIES = ("each", "weekly")  # every post as it goes out, or a weekly digest
FEEDBACK_KINDS = ("hard", "soft", "complaint")  # a permanent bounce, a temporary one, a "this is spam" report


def now_iso(now: dt.datetime | None = None) -> str:
    """A UTC timestamp in one fixed format, so that text comparison is time comparison."""
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Address:
    """A validated address: `address` to show, `envelope` for SMTP, `key` to find duplicates."""

    address: str
    envelope: str
    key: str

    @property
    def needs_smtputf8(self) -> bool:
        """True when the local part is not ASCII: the server must offer SMTPUTF8."""
        return not self.envelope.isascii()


_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")
_PLAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _plain(text: str) -> Address | None:
    """The common case without email-validator: a plain ASCII address (letters, digits, `_+-`
    and single dots in the local part; a lower-cased domain of ordinary labels under an alphabetic
    top-level label, none of them punycode, not a special-use name), normalized exactly as
    email-validator does (`tests/test_address_fast_path.py` checks that over a corpus). None for
    anything else, which goes to email-validator: this never accepts what it would refuse."""
    if len(text) > 254 or not text.isascii():
        return None
    local, at, domain = text.rpartition("@")
    if not at or len(local) > 64 or not _PLAIN_LOCAL.fullmatch(local):
        return None
    domain = domain.lower()
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not (labels[-1].isalpha() and len(labels[-1]) >= 2):
        return None
    if any(not _PLAIN_LABEL.fullmatch(label) or label[2:4] == "--" for label in labels):
        return None
    import email_validator  # imported on first use: its start-up is a build's to spare when no address is read

    if any(domain == name or domain.endswith("." + name) for name in email_validator.SPECIAL_USE_DOMAIN_NAMES):
        return None
    address = f"{local}@{domain}"
    return Address(address=address, envelope=address, key=f"{local.casefold()}@{domain}")


def parse_address(text: str) -> Address:
    """Validate and normalize one address (IDN domains and Unicode local parts allowed).

    Raises `ValueError` with the reason; callers turn it into a row problem or a `DeliveryError`.
    A plain ASCII address takes a fast path with the same verdict (`_plain`): an import of a
    million rows spent 70% of its time in email-validator.
    """
    text = text.strip()
    if not text:
        raise ValueError("no address")
    if "\r" in text or "\n" in text:
        raise ValueError("the address contains a line break")
    if (plain := _plain(text)) is not None:
        return plain
    from email_validator import EmailNotValidError, validate_email

    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    envelope = info.ascii_email or f"{info.local_part}@{info.ascii_domain}"
    return Address(address=info.normalized, envelope=envelope, key=f"{info.local_part.casefold()}@{info.ascii_domain.lower()}")


def _unmailable(c: str) -> bool:
    """A character no name may hold: a C0 or C1 control (tab and NUL included), a line or
    paragraph separator (U+2028, U+2029), or a bidi embedding, override or isolate."""
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029) or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069


def check_name(name: str) -> str:
    """A display name, stripped; a line break (header injection), any other control character,
    U+2028/U+2029 or a bidi control (a name no message could carry) raises `ValueError`."""
    if "\r" in name or "\n" in name:
        raise ValueError("the name contains a line break")
    if len(name) > 200:
        raise ValueError("the name is longer than 200 characters")
    if bad := next((c for c in name if _unmailable(c)), None):
        raise ValueError(f"the name contains a control character (U+{ord(bad):04X})")
    return name.strip()


_FORGOTTEN_LABEL = b"forgotten-address"
_KEY_CHECK_LABEL = b"key check"  # no "@": never an address key, so never one of the hashes
KEY_CHECK = "forget_key_check"  # its name in the settings table
SECRET_DIFFERS = "the site secret differs from the one used when readers were forgotten: set REVIEW_PRESS_SECRET as before"


class SecretMismatch(ConfigError):
    """The site secret is not the one the erased addresses were hashed with: checking them with
    it would let every one of them back, so nothing that adds a reader may run."""


def _forget_key(secret: bytes) -> bytes:
    """The key derived from the site secret for hashing erased addresses, and nothing else."""
    return hmac.new(secret, _FORGOTTEN_LABEL, hashlib.sha256).digest()


def forgotten_hash(secret: bytes, address_key: str) -> str:
    """The keyed hash kept of an erased address: HMAC-SHA256 over its `Address.key`, under a key
    derived from the site secret for this one purpose (so the table alone gives no address away)."""
    return hmac.new(_forget_key(secret), address_key.encode("utf-8"), hashlib.sha256).hexdigest()


def forget_key_check(secret: bytes) -> str:
    """The check value kept beside the hashes (settings `KEY_CHECK`): the same keyed hash over a
    fixed label, so a different secret is told apart without keeping the secret or any address."""
    return hmac.new(_forget_key(secret), _KEY_CHECK_LABEL, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Subscriber:
    """One row of the subscribers table."""

    id: int
    address: str
    envelope: str
    name: str
    status: str
    consent_source: str
    consent_at: str | None
    consent_ip: str | None
    created_at: str
    updated_at: str
    status_reason: str = ""  # why the status is what it is: "5.1.1 user unknown", "complaint (abuse) via ses"
    status_at: str | None = None  # when it was set
    frequency: str = "each"  # every post as it goes out ('each') or a weekly digest ('weekly')
    prefs_at: str | None = None  # when they last changed topics or frequency (None: never)
    topics: tuple[str, ...] = ()  # the topics they chose (none: every post)


@dataclass(frozen=True)
class Feedback:
    """One bounce or complaint report about one message to one reader, attributed already.

    `key` names the report, so recording it twice does nothing (a bounce mailbox re-read after a
    crash, a webhook retried): a DSN's own Message-ID with the recipient, a provider's event id.
    `kind` is one of `FEEDBACK_KINDS`; `code` the enhanced status code (5.1.1) or the feedback
    type (abuse); `campaign` the campaign key of the message, when known.
    """

    key: str
    kind: str
    subscriber_id: int
    source: str
    campaign: str | None = None
    code: str = ""
    detail: str = ""

    def reason(self) -> str:
        """The reader's status reason this report gives (`Subscriber.status_reason`)."""
        what = {"hard": "bounced", "soft": "soft bounce", "complaint": "complaint"}[self.kind]
        text = " ".join(part for part in (self.code, self.detail) if part)
        return f"{what} ({self.source}): {text}"[:300] if text else f"{what} ({self.source})"


@dataclass(frozen=True)
class RowProblem:
    """A CSV row that was not imported: its line number and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class ImportRow:
    """One reader as an import brings them in (made by `importers` from a CSV row): what to store
    if the address is new, and the status that decides what happens to a reader already stored.
    There is no created_at: that is when the reader arrived in this store, the import's own time."""

    line: int
    address: Address
    name: str
    status: str
    consent_source: str
    consent_at: str | None
    consent_ip: str | None
    reason: str = ""  # why a suppressed reader left, as our own export says (else "imported as <status>")
    topics: tuple[str, ...] = ()  # the site's topics their labels (tags) map to; stored for a new reader only
    frequency: str = "each"  # every post or a weekly digest (our own export says); a new reader only


@dataclass(frozen=True)
class Refused:
    """A row not imported because its address was erased at the reader's request (`forget`)."""

    line: int
    address: str


@dataclass(frozen=True)
class ImportReport:
    """What an import did, counted by row: new readers by status, stored readers it suppressed,
    rows of readers already on the list (unchanged), rows refused as forgotten, and bad rows.

    `refused` and `problems` list the first `MAX_LISTED` of `forgotten` and `bad_rows`;
    `ignored_labels` the distinct labels of the file (Mailchimp tags, Ghost labels, listmonk
    attributes' topics) that are not topics of the site, so were not stored.
    """

    format: str = "CSV"
    active: int = 0
    pending: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    complained: int = 0
    suppressed: int = 0
    already: int = 0
    forgotten: int = 0
    refused: tuple[Refused, ...] = ()
    bad_rows: int = 0
    problems: tuple[RowProblem, ...] = ()
    ignored_labels: tuple[str, ...] = ()  # labels (tags) of the file that are none of the site's topics, the first MAX_LISTED

    @property
    def added(self) -> int:
        """New readers, whatever their status."""
        return self.active + self.pending + self.unsubscribed + self.bounced + self.complained

    @property
    def duplicates(self) -> int:
        """Rows whose address was already on the list (stored, or earlier in the file)."""
        return self.already + self.suppressed


class Forget(Enum):
    """How a `forget` ended: erased now, erased before (only the hash is left), or unknown."""

    ERASED = "erased"
    ALREADY = "already"
    UNKNOWN = "unknown"


MAX_LISTED = 1000  # rows an import report lists by line (all of them are counted)
ForgottenPolicy = Literal["refuse", "keep", "clear"]
