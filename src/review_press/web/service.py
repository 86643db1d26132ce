"""What the endpoints do to the store: subscribe as pending, confirm, unsubscribe, and change
what a reader gets (topics, every post or a weekly digest) on their manage page.

`Subscriptions` owns one `Store` and must be used from the thread that made it (sqlite3's
rule); `Database` gives the async app exactly one such thread, so every write is serialized
and the event loop never waits on SQLite. Each change is one `Store` method (one transaction,
no SQL here), and each is conditional on the subscriber's current status, which makes every
endpoint idempotent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Concatenate, ParamSpec, TypeVar

from ..errors import DeliveryError, PressError
from ..store import Store, Subscriber
from ..tokens import verify_token
from .confirm import BadToken, check_confirm_token, make_confirm_token, read_confirm_token
from .forms import Preferences, Signup

P = ParamSpec("P")
R = TypeVar("R")
SOURCE = "web form"
MAX_ID = 2**63 - 1  # SQLite's largest integer: a forged token may name a bigger one
REOPENS = ("unsubscribed",)  # who may ask again; bounced and complained addresses stay suppressed


@dataclass(frozen=True)
class Outgoing:
    """A confirmation email to send: the recipient and the token for the confirm link."""

    address: str
    envelope: str
    name: str
    token: str
    expires: dt.datetime


class Confirmed(Enum):
    """How a confirm request ended."""

    NOW = "now"
    ALREADY = "already"


@dataclass(frozen=True)
class Managed:
    """How a manage-page save ended: the reader as they are now, and whether the change was
    stored (False: they are not on the list any more, so nothing was changed)."""

    reader: Subscriber
    saved: bool


class Database:
    """One thread that owns the store and its `Subscriptions`; `run` calls a method with them there.

    The store is opened (and migrated) on that thread at startup, or at the first call when
    the ASGI server runs without lifespan events.
    """

    def __init__(self, open_store: Callable[[], Store], make: Callable[[Store], Subscriptions]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-press-db")
        self._open_store = open_store
        self._make = make
        self._store: Store | None = None
        self._service: Subscriptions | None = None

    def _open(self) -> Subscriptions:
        if self._service is None:
            self._store = self._open_store()
            self._service = self._make(self._store)
        return self._service

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = self._service = None

    async def start(self) -> None:
        """Open (and migrate) the database on its thread."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._open)

    async def run(self, method: Callable[Concatenate[Subscriptions, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Call `method(subscriptions, *args)` on the database thread and await its result."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: self._call(method, *args, **kwargs))

    def _call(self, method: Callable[Concatenate[Subscriptions, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`method` on the open store; once more on a fresh connection when the old one is gone (the
        database server restarted or failed over): an unsubscribe must not wait for a web restart."""
        try:
            return method(self._open(), *args, **kwargs)
        except PressError:
            if self._store is None or not self._store.broken:
                raise
            self._close()
            return method(self._open(), *args, **kwargs)

    async def stop(self) -> None:
        """Close the database and let the thread end."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
        self._pool.shutdown(wait=True)


class Subscriptions:
    """Subscribe, confirm and unsubscribe over one store, with the site's signing keys."""

    def __init__(
        self, store: Store, secret: bytes, confirm_key: bytes, confirm_days: int, welcome: Callable[[], bool] = lambda: False
    ) -> None:
        self.store = store
        self._welcome = welcome  # whether the site has a welcome email now (asked at each confirm: it may be added while the app runs)
        self._secret = secret
        self._confirm_key = confirm_key
        self._confirm_days = confirm_days

    def ping(self) -> bool:
        """True when the database answers (for /healthz)."""
        return self.store.ping()

    def subscribe(self, signup: Signup, ip: str, now: dt.datetime) -> Outgoing | None:
        """Store `signup` as pending (new, or unsubscribed before) and say whom to email; None to email no one.

        An address erased at the reader's request (`forget`) may sign up again like any new one:
        the hash of it stays on record until they confirm, which is their new consent.
        """
        sub = self.store.find(signup.email)
        if sub is None:
            try:
                sub = self.store.add(
                    signup.email,
                    signup.name,
                    status="pending",
                    source=SOURCE,
                    ip=ip,
                    now=now,
                    secret=self._secret,
                    forgotten="keep",
                    topics=signup.topics,
                    frequency=signup.frequency,
                )
            except DeliveryError:  # refused by the store's own checks, or added meanwhile by another process
                return None
        elif sub.status in REOPENS:
            sub = self._reopen(sub, signup, ip, now)
        elif sub.status == "pending":
            pass  # asked again before confirming: the choice made first stands (anyone may post an address; the reader changes it on the manage page)
        else:
            return None  # active, bounced or complained: nothing to confirm, and the reply is the same
        if sub is None:
            return None
        expires = now + dt.timedelta(days=self._confirm_days)
        token = make_confirm_token(self._confirm_key, sub.id, sub.address, expires)
        return Outgoing(address=sub.address, envelope=sub.envelope, name=sub.name, token=token, expires=expires)

    def _reopen(self, sub: Subscriber, signup: Signup, ip: str, now: dt.datetime) -> Subscriber | None:
        """Put an unsubscribed reader who asks again back to pending (they must confirm again), with
        the topics and frequency of this form."""
        if self.store.reopen(sub.id, sub.status, name=signup.name, source=SOURCE, ip=ip, now=now):
            self._choose(sub, signup, now)
        return self.store.get(sub.id)

    def _choose(self, sub: Subscriber, signup: Signup, now: dt.datetime) -> None:
        """Store a pending reader's topics and frequency as `signup` has them, if they differ."""
        if (set(sub.topics), sub.frequency) != (set(signup.topics), signup.frequency):
            self.store.set_preferences(sub.id, topics=signup.topics, frequency=signup.frequency, now=now)

    def confirm(self, token: str, ip: str, now: dt.datetime) -> Confirmed:
        """Make the token's subscriber active and record consent (time, IP, source); `BadToken` if not valid."""
        claim, _, _ = read_confirm_token(token)
        sub = self.store.get(claim.subscriber_id) if claim.subscriber_id <= MAX_ID else None
        if sub is None:
            raise BadToken("no such subscriber")
        check_confirm_token(self._confirm_key, token, sub.address, now)
        if sub.status == "active":
            return Confirmed.ALREADY
        if sub.status != "pending":
            raise BadToken("no longer pending")  # left, bounced or complained since: an old link must not bring them back
        self.store.confirm(sub.id, source=SOURCE, ip=ip, secret=self._secret, now=now, welcome=self._welcome())
        return Confirmed.NOW

    def holder(self, token: str) -> Subscriber | None:
        """The subscriber an unsubscribe token stands for; None if forged, malformed or deleted."""
        subscriber_id = verify_token(self._secret, token)
        return None if subscriber_id is None or subscriber_id > MAX_ID else self.store.get(subscriber_id)

    def unsubscribe(self, token: str, now: dt.datetime) -> Subscriber | None:
        """Unsubscribe the token's holder at once and cancel their pending deliveries; return them as they were, None if no holder."""
        sub = self.holder(token)
        if sub is None:
            return None
        self.store.unsubscribe(sub.id, now)
        return sub

    def manage(self, token: str, prefs: Preferences, now: dt.datetime) -> Managed | None:
        """Set the topics and frequency of the token's holder (`Store.set_preferences`: pending or
        active readers only); None if the token is forged, malformed or its reader deleted."""
        sub = self.holder(token)
        if sub is None:
            return None
        saved = self.store.set_preferences(sub.id, topics=prefs.topics, frequency=prefs.frequency, now=now)
        return Managed(self.store.get(sub.id) or sub, saved)


def mask(address: str) -> str:
    """An address shown without giving it away: `ada@example.org` -> `a•••@e•••.org`."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "•••"
    host, dot, tld = domain.rpartition(".")
    if not host:
        host, dot, tld = domain, "", ""
    return f"{local[:1]}•••@{host[:1]}•••{dot}{tld}"
