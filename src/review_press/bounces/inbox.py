"""From a bounce mailbox (`fetch`) or a provider's webhook (`webhooks`) to the reader's status,
through the store's `feedback` (each report once).

A report is attributed to the message it is about before anything is recorded (`Attributor`):
by the VERP return path it was sent to (`verp`: signed, exact), else by the Message-ID of the
returned message (each campaign message's is `newsletter.message_id`, keyed with the site
secret like the token, recomputed here for the campaigns on record). A report attributed by the
Message-ID that names recipients must name the reader among them (the message may have been
forwarded; without the token we do not follow it there); a complaint whose recipient is
redacted (Microsoft's JMRP, AOL) is believed on the Message-ID alone. A report nothing
attributes is kept aside (`unmatched`), never recorded. A report
about a reader erased by `forget` since (attributed by the token, or naming an address whose
keyed hash is on record) changes nothing and is counted `unknown`.

`fetch` reads every message of the configured source (`[bounces] source`: a Maildir folder, an
IMAP mailbox or POP3), records what each says in one transaction, and only then moves or removes
the message (a crash in between re-reads it, and the second reading is a duplicate: nothing
changes). Messages it cannot read or attribute are moved aside and counted, never lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..config import Config
from ..errors import DeliveryError
from ..newsletter import campaign_message_id
from ..store import Store, ledger, parse_address
from ..store.feedback import SoftRule, record
from ..store.model import Feedback
from .reports import Report, read_report
from .verp import read_return_path

_OUR_MESSAGE_ID = re.compile(r"^<.+\.(\d{1,18})\.[0-9a-f]{12}@([^<>@\s]+)>$")


def soft_rule(config: Config) -> SoftRule:
    """`[bounces] soft_limit` soft bounces in `soft_days` days make a reader bounced."""
    return SoftRule(config.bounces.soft_limit, config.bounces.soft_days)


def _key(address: str) -> str:
    try:
        return parse_address(address).key
    except ValueError:
        return address.strip().lower()


class Attributor:
    """Finds the campaign and reader a report is about (see the module's rules)."""

    def __init__(self, config: Config, store: Store, secret: bytes) -> None:
        self.store = store
        self.secret = secret
        self.bounce_address = config.newsletter.bounce_address
        self.campaigns = ledger.campaign_keys(store)

    def by_return_path(self, addresses: Iterable[str]) -> tuple[str, int] | None:
        """A genuine VERP token among `addresses`: (campaign key, subscriber id)."""
        if not self.bounce_address:
            return None
        for address in addresses:
            if "+" in address and (found := read_return_path(address, self.bounce_address, self.secret, self.campaigns)):
                return found
        return None

    def by_message_id(self, message_ids: Iterable[str]) -> tuple[str, int] | None:
        """One of our campaign Message-IDs among `message_ids`: (campaign key, subscriber id)."""
        for mid in message_ids:
            m = _OUR_MESSAGE_ID.match(mid.strip())
            if not m:
                continue
            sid, domain = int(m.group(1)), m.group(2)
            for key in self.campaigns:
                if campaign_message_id(key, sid, domain, self.secret) == mid.strip():
                    return key, sid
        return None

    def reader(self, subscriber_id: int) -> str | None:
        """The address key of a subscriber on the list (None: not, or no longer)."""
        sub = self.store.get(subscriber_id)
        return _key(sub.address) if sub else None

    def erased(self, address: str) -> bool:
        """Whether `address` was erased by `forget` (its keyed hash is on record)."""
        return bool(address) and self.store.forgotten_at(address, self.secret) is not None


def feedback_of(report: Report, who: Attributor, source: str) -> list[Feedback] | None:
    """The `Feedback` a bounce or complaint report gives, attributed; None when it cannot be
    attributed to a reader on the list (or is not believed)."""
    verp = who.by_return_path(report.return_paths)
    found = verp or who.by_message_id(report.message_ids)
    if found is None:
        return None
    key, sid = found
    reader = who.reader(sid)  # None: erased meanwhile (`record` then says unknown), or never on the list

    def names_reader(address: str) -> bool:
        if not address:
            return False
        return _key(address) == reader if reader is not None else who.erased(address)

    event = f"mail:{hashlib.sha256(report.report_id.encode()).hexdigest()[:40]}:{sid}"
    if report.kind == "complaint":
        named = [r for r in report.complaint_recipients if r]
        if verp is None and named and not any(names_reader(r) for r in named):
            return None
        return [Feedback(event, "complaint", sid, source, key, report.feedback_type)]
    failures = report.failures
    if verp is None:  # a Message-ID alone: the failed recipient must be the reader
        failures = tuple(f for f in failures if names_reader(f.recipient) or names_reader(f.original) or not (f.recipient or f.original))
        if not failures or not any(f.recipient or f.original for f in failures):
            return None
    worst = next((f for f in failures if f.kind == "hard"), failures[0] if failures else None)
    if worst is None:
        return None
    return [Feedback(event, worst.kind, sid, source, key, worst.code, worst.detail)]


class MailSource(Protocol):
    """Where returned messages wait: yields them, then hears what became of each.

    `done` is called only after the message's outcome is committed; `set_aside` keeps a message
    that was not understood where a person finds it. Neither may lose a message.
    """

    name: str

    def messages(self) -> Iterator[tuple[str, bytes | None]]: ...
    def done(self, ref: str) -> None: ...
    def set_aside(self, ref: str, why: str) -> None: ...
    def close(self) -> None: ...


def open_source(config: Config, environ: Mapping[str, str] | None = None, source: str | None = None) -> MailSource:
    """The bounce mailbox `source` (default `[bounces] source`) opened and logged in."""
    spec = source or config.bounces.source
    if not spec:
        raise DeliveryError(
            "no bounce mailbox to read: [bounces] source is not set",
            hint='add  [bounces] source = "maildir:bounces"  (or imaps://user@host/INBOX, pop3s://user@host); see README "Bounces and complaints"',
        )
    if spec.startswith("maildir:"):
        from .maildir import MaildirSource

        return MaildirSource(config.root / spec[len("maildir:") :].strip())
    from .remote import open_remote

    return open_remote(spec, config.bounces.password_env, environ, keep_dir=config.state_dir / "bounces-unparsed")


@dataclass(frozen=True)
class FetchReport:
    """What one `fetch` did, counted by message (`messages`) and by outcome: the store's
    (`feedback.OUTCOMES`: bounced, complained, soft, unchanged, duplicate, unknown), `ignored`
    (delay warnings, delivery notices, auto-replies), and the messages kept aside: `unreadable`
    (not a report we can read) and `unmatched` (a report about no message we sent)."""

    source: str
    messages: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return self.outcomes.get(outcome, 0)


def fetch(
    config: Config,
    store: Store,
    secret: bytes,
    mail: MailSource,
    *,
    now: Callable[[], dt.datetime] | None = None,
    progress: Callable[[str], None] | None = None,
) -> FetchReport:
    """Read every waiting message of `mail`, record what each says, then move or remove it."""
    who = Attributor(config, store, secret)
    rule = soft_rule(config)
    counts: Counter[str] = Counter()
    n = 0
    for ref, data in mail.messages():
        n += 1
        if data is None:  # too large to read where it is (POP3): left on the server, for a person
            counts["too_large"] += 1
            continue
        report = read_report(data)
        if report.kind == "unreadable":
            mail.set_aside(ref, "unreadable")
            counts["unreadable"] += 1
        elif report.kind in ("delay", "other"):
            mail.done(ref)
            counts["ignored"] += 1
        else:
            events = feedback_of(report, who, mail.name)
            if events is None:
                mail.set_aside(ref, "unmatched")
                counts["unmatched"] += 1
            else:
                outcomes = record(store, events, rule, now() if now else None) or []
                mail.done(ref)  # only after the outcome is committed
                counts.update(outcomes)
        if progress:
            progress(ref)
    return FetchReport(mail.name, n, dict(counts))


def fetch_bounces(site: Path | str, source: str | None = None, environ: Mapping[str, str] | None = None) -> FetchReport:
    """Read the site's bounce mailbox (`source`, default `[bounces] source`) and record every
    bounce and complaint in it (the API behind `review-press bounces fetch`)."""
    from ..config import load_config
    from ..store import open_store
    from ..tokens import site_secret

    config = load_config(Path(site))
    secret = site_secret(config)
    mail = open_source(config, environ, source)
    try:
        with open_store(config) as store:
            return fetch(config, store, secret, mail)
    finally:
        mail.close()
