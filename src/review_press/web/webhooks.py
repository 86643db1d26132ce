"""The provider webhooks: bounces and complaints posted by Amazon SES (through SNS), Postmark,
Mailgun and SendGrid, recorded as the bounce mailbox's are (`store.feedback.record`).

    POST /webhooks/ses        an SNS post: Notification (SES Bounce, Complaint; Delivery and
                              other types are no event), SubscriptionConfirmation (confirmed by
                              a GET of its SubscribeURL), UnsubscribeConfirmation (nothing)
    POST /webhooks/postmark   one Bounce or SpamComplaint record, with HTTP basic auth
    POST /webhooks/mailgun    one JSON event (`signature`, `event-data`): failed, complained
    POST /webhooks/sendgrid   the signed event webhook: a JSON array (bounce, dropped, spamreport)

What each verifies is in `bounces.webhooks` (and `bounces.webhook_sns`). A route whose provider
press.toml does not set up answers 404, like any path that does not exist; one whose secret
is missing from the environment answers 503 (the provider retries) and says so in the log.

Each post, in this order: the body is read up to `MAX_BODY` (413 beyond); it is verified and
read, with no store write before (401 bad credentials, 403 bad signature or foreign topic,
400 stale or malformed); each event is attributed, by the Message-ID of the original message when
the payload carries one of ours and its reader's address is the event's (`Attributor`), else
by the recipient's address alone (campaign unknown); and what is attributed is recorded in one
transaction with the post's nonce (`feedback.record`): a replay (409) records nothing twice, and
a failed write takes neither, so the provider's retry is still taken. Events about no reader on the list are counted and ignored. The answer is 200
with counts, `{"ok": true, "events": 2, "ignored": 0, "bounced": 1, "soft": 1}`; a refusal is
`{"ok": false, "message": <a short reason>}`, never a secret, the payload or a traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..bounces.inbox import Attributor, soft_rule
from ..bounces.webhook_sns import Fetch, fetch_https, verify_sns
from ..bounces.webhooks import (
    PROVIDERS,
    ProviderEvent,
    Verified,
    WebhookError,
    WebhookKeys,
    keep_seconds,
    verify_mailgun,
    verify_postmark,
    verify_sendgrid,
    webhook_keys,
)
from ..config import CONFIG_NAME, Config
from ..errors import ConfigError
from ..store import Store, parse_address
from ..store.feedback import forget_seen, record
from ..store.model import Feedback
from .forms import FormError, read_body
from .ratelimit import Rate, TokenBuckets
from .service import Subscriptions

MAX_BODY = 1024 * 1024
SECRET_ENVS = {"postmark": "postmark_password_env", "mailgun": "mailgun_key_env"}
FETCHES = Rate.per(10, 60)  # outgoing requests (SNS certificates, confirmations) at most
log = logging.getLogger("review_press.web")


@dataclass(frozen=True)
class Hooks:
    """What the webhook routes need: the keys posts are checked against, where SNS certificates
    are kept, how one is fetched (and a subscription confirmed), and the site secret `Attributor`
    checks return paths with."""

    config: Config
    keys: WebhookKeys
    secret: bytes
    fetch: Fetch


def rate_limited(fetch: Fetch, rate: Rate = FETCHES) -> Fetch:
    """`fetch`, raising instead beyond `rate`: signed-looking posts naming ever new certificate
    URLs (on SNS hosts: anything else is refused unfetched) cannot keep the app fetching."""
    buckets = TokenBuckets(rate, max_keys=1)

    def limited(url: str) -> bytes:
        if buckets.take("fetch"):
            raise RuntimeError("too many fetches")
        return fetch(url)

    return limited


def make_hooks(config: Config, secret: bytes, fetch: Fetch | None = None, environ: Mapping[str, str] | None = None) -> Hooks:
    """The webhooks of a site: `ConfigError` for a SendGrid key that is not one; a warning in the
    log for each provider set up in press.toml whose secret the environment lacks."""
    env = os.environ if environ is None else environ
    try:
        keys = webhook_keys(config.bounces, env)
    except ValueError as exc:
        raise ConfigError(str(exc), path=config.root / CONFIG_NAME, hint="paste the verification key SendGrid shows") from None
    for provider, attr in SECRET_ENVS.items():
        name = getattr(config.bounces, attr)
        if keys.configured(provider) and name and not env.get(name):
            log.warning("the %s webhook answers 503 until the environment variable %s is set", provider, name)
    return Hooks(config, keys, secret, rate_limited(fetch or fetch_https))


def refusal(status: int, reason: str) -> Response:
    """A refused post: its status and short reason as JSON (401 asks for basic auth)."""
    headers = {"WWW-Authenticate": 'Basic realm="webhooks"'} if status == 401 else None
    return JSONResponse({"ok": False, "message": reason}, status_code=status, headers=headers)


def verify(hooks: Hooks, provider: str, headers: Mapping[str, str], body: bytes, now: dt.datetime) -> Verified:
    """The post checked by its provider's rules (SES may fetch its signing certificate once); a
    payload the readers did not foresee is a 400 too, never a 500."""
    try:
        return _verify(hooks, provider, headers, body, now)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RecursionError):
        raise WebhookError(400, "the payload is not of the expected shape") from None


def _verify(hooks: Hooks, provider: str, headers: Mapping[str, str], body: bytes, now: dt.datetime) -> Verified:
    if provider == "ses":
        return verify_sns(hooks.keys, body, hooks.config.state_dir, hooks.fetch, now)
    if provider == "postmark":
        return verify_postmark(hooks.keys, headers.get("authorization"), body)
    if provider == "mailgun":
        return verify_mailgun(hooks.keys, body, now)
    return verify_sendgrid(hooks.keys, headers, body, now)


def _address_key(address: str) -> str:
    try:
        return parse_address(address).key
    except ValueError:
        return address.strip().lower()


def attribute(who: Attributor, store: Store, event: ProviderEvent) -> tuple[str | None, int] | None:
    """(campaign key or None, subscriber id) of the reader an event is about, or None: by our
    Message-ID when its reader is the event's recipient, else by the recipient's address."""
    if event.message_id and (found := who.by_message_id([event.message_id])):
        key, sid = found
        if who.reader(sid) == _address_key(event.recipient):
            return key, sid
    sub = store.find(event.recipient)
    return (None, sub.id) if sub else None


def _nonce(post: Verified) -> str:
    return f"{post.provider}:{post.nonce}"


def release_post(subs: Subscriptions, post: Verified) -> None:
    """On the database thread: forget the nonce of a post taken but not done with (its SNS
    subscription not confirmed), so that SNS sending it again is not a replay."""
    forget_seen(subs.store, _nonce(post))


def record_post(subs: Subscriptions, hooks: Hooks, post: Verified, now: dt.datetime) -> dict[str, int] | None:
    """On the database thread: attribute the post's events, then take its nonce and record them in
    one transaction (None: seen before, nothing done); the counts to answer with."""
    store = subs.store
    found: list[Feedback] = []
    if post.events:
        who = Attributor(hooks.config, store, hooks.secret)
        for e in post.events:
            if (whose := attribute(who, store, e)) is not None:
                campaign, sid = whose
                found.append(Feedback(f"{post.provider}:{e.event_id}:{sid}", e.kind, sid, post.provider, campaign, e.code, e.detail))
    outcomes = record(store, found, soft_rule(hooks.config), now, nonce=_nonce(post), keep_seconds=keep_seconds(hooks.keys))
    if outcomes is None:
        return None
    return {"events": len(post.events), "ignored": len(post.events) - len(found), **Counter(outcomes)}


async def receive(request: Request, provider: str) -> Response:
    """One provider's post, as the module says."""
    web = request.app.state.web
    hooks: Hooks = web.hooks
    if not hooks.keys.configured(provider):
        raise HTTPException(404)
    now = dt.datetime.now(dt.UTC)
    try:
        body = await read_body(request, MAX_BODY)
        post = await run_in_threadpool(verify, hooks, provider, request.headers, body, now)
    except FormError as exc:
        return refusal(exc.status, exc.message)
    except WebhookError as exc:
        log.warning("%s webhook post refused (%d): %s", provider, exc.status, exc.reason)
        return refusal(exc.status, exc.reason)
    counts = await web.db.run(record_post, hooks, post, now)
    if counts is None:
        log.warning("%s webhook post refused (409): a replay", provider)
        return refusal(409, "this post was received before")
    if post.subscribe_url is not None:
        try:
            await run_in_threadpool(hooks.fetch, post.subscribe_url)
        except Exception:
            log.warning("the SNS subscription could not be confirmed: its SubscribeURL did not answer")
            await web.db.run(release_post, post)  # SNS sends it again: that one is no replay
            return refusal(502, "the subscription could not be confirmed")
        log.info("SNS subscription confirmed")
        counts = {**counts, "confirmed": 1}
    return JSONResponse({"ok": True, **counts})


def _route(provider: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await receive(request, provider)

    endpoint.__name__ = f"webhook_{provider}"
    endpoint.__doc__ = f"POST /webhooks/{provider}: see `web.webhooks`."
    return endpoint


def webhook_routes() -> list[Route]:
    """The four webhook routes (each a 404 unless its provider is set up)."""
    return [Route(f"/webhooks/{p}", _route(p), methods=["POST"]) for p in PROVIDERS]
