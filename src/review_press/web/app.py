"""The Starlette app: routes, limits and CORS around `Subscriptions` (its error pages and headers: `errors`).

    GET  /healthz                      200 {"ok": true} while the database answers
    GET  /subscribe                    the form, for readers without JavaScript
    POST /subscribe                    form or JSON: email, name, the honeypot "website"
    GET  /confirm/<token>              double opt-in: pending -> active, consent recorded
    GET  /unsubscribe/<token>          the masked address and one button
    POST /unsubscribe/<token>          RFC 8058 one-click: unsubscribed at once, 200
    (also /unsubscribe?token=..., the form `publish` puts in List-Unsubscribe)
    GET  /manage?token=<token>         the reader's topics and every post / weekly digest, a Save
                                       and a "Leave the list" button (the unsubscribe token)
    POST /manage                       form or JSON: token, topics (repeated), frequency
    POST /webhooks/ses                 Amazon SES bounces and complaints through SNS (signature, topic)
    POST /webhooks/postmark            Postmark bounces and spam complaints (HTTP basic auth)
    POST /webhooks/mailgun             Mailgun failed and complained events (HMAC signature)
    POST /webhooks/sendgrid            SendGrid's signed event webhook (ECDSA signature)
    (each webhook a 404 unless [bounces] sets its provider up; see `webhooks`)

Every answer to /subscribe that gets past the limits and the form checks is the same
"check your inbox", whether the address was new, pending, active or suppressed.

Every link the app mails or shows is built from press.toml (`[web] url`, `base_url`), never
from the request (its Host, X-Forwarded-Host or scheme): `create_app` refuses to start
without an absolute `[web] url`, and no route redirects (no trailing-slash redirects either).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..config import CONFIG_NAME, Config, load_config
from ..errors import ConfigError, PressError, StorageError
from ..letters import welcome_file
from ..newsletter import confirm_url
from ..store import RAW_ERRORS, Subscriber, open_store
from ..theme import Theme
from ..tokens import site_secret
from .confirm import BadToken, confirm_key
from .errors import FALLBACK_500 as FALLBACK_500
from .errors import RETRY_AFTER_BUSY as RETRY_AFTER_BUSY
from .errors import SECURITY_HEADERS as SECURITY_HEADERS
from .errors import SecurityHeaders as SecurityHeaders
from .errors import WebApp, http_error, server_error, unavailable, wants_json
from .errors import bare_page as bare_page
from .forms import MAX_FIELDS, TOPICS, FormError, Signup, check_preferences, check_signup, parse_form, read_body
from .logs import mask_tokens_in_logs
from .mail import Mailer
from .ratelimit import Rate, TokenBuckets, retry_after
from .render import MANAGE, SUBSCRIBE, UNSUBSCRIBE, Pages
from .service import Confirmed, Database, Managed, Subscriptions, mask
from .webhooks import Fetch, Hooks, make_hooks, webhook_routes

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")  # where a plain http [web] url is allowed
URL_HINT = 'set  url = "https://your-site/newsletter/"  under [web]: the public address of these endpoints'
INVALID_LINK = ("This link does not work", "It may have expired, or been copied only in part. Subscribe again to get a new one.")
log = logging.getLogger("review_press.web")


@dataclass(frozen=True)
class WebLimits:
    """How often one IP may post the subscribe form, and how often one address may be mailed."""

    per_ip: Rate = field(default_factory=lambda: Rate.per(10, 600))
    per_address: Rate = field(default_factory=lambda: Rate.per(3, 3600))
    max_keys: int = 100_000


@dataclass
class Web:
    """Everything the handlers share for one site."""

    config: Config
    base: str  # `public_url(config)`: the one base of every link the app builds
    pages: Pages
    mailer: Mailer
    db: Database
    by_ip: TokenBuckets
    by_address: TokenBuckets
    hooks: Hooks


def _web(request: Request) -> Web:
    return request.app.state.web


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def client_ip(request: Request) -> str:
    """The client's address as the ASGI server reports it (behind a proxy: run uvicorn with --forwarded-allow-ips)."""
    return request.client.host if request.client else "unknown"


def limit_key(ip: str) -> str:
    """The per-IP limit's key: the address, or for IPv6 its /64 (one host may own a whole /64)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped or address) if isinstance(address, ipaddress.IPv6Address) else str(address)


def public_url(config: Config) -> str:
    """`[web] url`, checked, ending in `/`: the endpoints' public address, the base of every link the app mails.

    It comes from press.toml only, never from a request (whose Host header anyone can set), so
    a site without one cannot run the app: `ConfigError` naming press.toml and the key. It must
    be an absolute https URL (plain http only on localhost, 127.0.0.1 or [::1]), without a
    user name, query or fragment.
    """
    url, where = config.web.url, config.root / CONFIG_NAME
    if not url:
        raise ConfigError(
            "[web] url is not set: the links in confirmation emails are built from it, never from a request", path=where, hint=URL_HINT
        )
    problem = _url_problem(url)
    if problem is not None:
        raise ConfigError(f"[web] url = {url[:200]!r} {problem}", path=where, hint=URL_HINT)
    return url if url.endswith("/") else url + "/"


def _url_problem(url: str) -> str | None:
    """What makes `url` unfit to be `[web] url`, or None."""
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises ValueError for a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute URL with a host, such as https://your-site/newsletter/"
    if parts.username is not None or "?" in url or "#" in url:
        return "must be a plain URL, without a user name, query or fragment"
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return "must start with https:// (plain http only on localhost, 127.0.0.1 or [::1])"
    return None


def too_many(request: Request, seconds: float) -> Response:
    """429 with Retry-After."""
    wait = retry_after(seconds)
    return _web(request).pages.notice(
        "Too many requests",
        f"Please try again in {wait} seconds.",
        status=429,
        as_json=wants_json(request),
        headers={"Retry-After": wait},
    )


# --- handlers ---------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """Liveness and readiness: 200 while the database answers, else 503."""
    web = _web(request)
    try:
        ok = await web.db.run(Subscriptions.ping)
    except Exception:
        ok = False
    return JSONResponse({"ok": ok}, status_code=200 if ok else 503)


def _max_fields(config: Config) -> int:
    """How many fields a form may have: the usual ones, and one more for each topic to tick."""
    return MAX_FIELDS + len(config.newsletter.topics)


async def subscribe_form(request: Request) -> Response:
    """The subscribe page (no JavaScript needed)."""
    return _web(request).pages.html(
        SUBSCRIBE, "Subscribe", action="subscribe", form_email="", form_name="", form_topics=(), form_frequency="each", problem=""
    )


async def subscribe(request: Request) -> Response:
    """Store a pending subscriber and mail the confirm link; the same answer for every address."""
    web, ip = _web(request), client_ip(request)
    if wait := web.by_ip.take(limit_key(ip)):
        return too_many(request, wait)
    fields: dict[str, str] = {}
    try:
        form = await parse_form(request, await read_body(request), _max_fields(web.config))
        fields = form.fields
        signup = check_signup(fields, form.lists.get(TOPICS, ()), web.config.newsletter.topics)
    except FormError as exc:
        return _form_problem(request, exc, fields)
    task = None
    if not signup.is_bot:
        if wait := web.by_address.take(signup.key):
            return too_many(request, wait)
        # all of it after the reply, so not even its timing tells a new address from a known one
        task = BackgroundTask(_store_and_mail, web, signup, ip)
    response = web.pages.notice(
        "Check your inbox",
        "If that address can subscribe, we have sent it a link to confirm. Open it to start getting new posts.",
        "Nothing arrived? Look in the spam folder, or try again in a few minutes.",
        as_json=wants_json(request),
    )
    response.background = task
    return response


async def _store_and_mail(web: Web, signup: Signup, ip: str) -> None:
    """Store the signup and mail the confirm link if there is someone to confirm (after the reply).

    The reply has gone out already, so a database that is busy or full is one log line (the
    address masked), never a traceback: the reader may simply subscribe again.
    """
    try:
        outgoing = await web.db.run(Subscriptions.subscribe, signup, ip, _now())
    except PressError as exc:
        log.warning("signup of %s not stored: %s", mask(signup.email), exc)
        return
    if outgoing is not None:
        await run_in_threadpool(web.mailer.send, outgoing, confirm_url(web.config, outgoing.token))


def _form_problem(request: Request, exc: FormError, fields: dict[str, str]) -> Response:
    """A refused form: the form again with the reason (or JSON), never more than the user sent."""
    web = _web(request)
    if wants_json(request) or exc.status != 400:
        return web.pages.notice("That did not work", exc.message, status=exc.status, as_json=wants_json(request))
    email, name = fields.get("email", "")[:254], fields.get("name", "")[:200]
    weekly = fields.get("frequency", "").strip().lower() == "weekly"
    return web.pages.html(
        SUBSCRIBE,
        "Subscribe",
        400,
        action="subscribe",
        form_email=email,
        form_name=name,
        form_topics=(),  # a refused form's ticks are not echoed: the reader ticks them again
        form_frequency="weekly" if weekly else "each",
        problem=exc.message,
    )


async def confirm(request: Request) -> Response:
    """Double opt-in: the token's subscriber becomes active; a replay says so again."""
    web, as_json = _web(request), wants_json(request)
    try:
        outcome = await web.db.run(Subscriptions.confirm, request.path_params["token"], client_ip(request), _now())
    except BadToken:
        return web.pages.notice(*INVALID_LINK, status=400, as_json=as_json)
    if outcome is Confirmed.ALREADY:
        return web.pages.notice("You are already subscribed", f"New posts of {web.config.title} come to your inbox.", as_json=as_json)
    return web.pages.notice("You are subscribed", f"Thank you. New posts of {web.config.title} will come to your inbox.", as_json=as_json)


def _unsubscribe_token(request: Request) -> str:
    return request.path_params.get("token") or request.query_params.get("token", "")


async def unsubscribe_page(request: Request) -> Response:
    """The masked address and one button (a GET changes nothing: link scanners follow links)."""
    web = _web(request)
    sub = await web.db.run(Subscriptions.holder, _unsubscribe_token(request))
    if sub is None:
        return web.pages.notice(*INVALID_LINK, status=400, as_json=wants_json(request))
    done = sub.status not in ("pending", "active")
    title = "You are unsubscribed" if done else "Unsubscribe"
    return web.pages.html(UNSUBSCRIBE, title, masked=mask(sub.address), done=done)


async def unsubscribe(request: Request) -> Response:
    """RFC 8058 one-click: unsubscribe at once, body or no body, and answer 200 (never a redirect)."""
    web = _web(request)
    try:
        await read_body(request)  # bounded; `List-Unsubscribe=One-Click` or nothing, either is fine
    except FormError as exc:
        return web.pages.notice("That did not work", exc.message, status=exc.status, as_json=wants_json(request))
    sub = await web.db.run(Subscriptions.unsubscribe, _unsubscribe_token(request), _now())
    if sub is None:
        return web.pages.notice(*INVALID_LINK, status=400, as_json=wants_json(request))
    return web.pages.notice(
        "You are unsubscribed",
        f"{mask(sub.address)} will get no more emails from {web.config.title}.",
        "Changed your mind? You can subscribe again at any time.",
        as_json=wants_json(request),
    )


def _what_they_get(web: Web, sub: Subscriber) -> str:
    """One sentence on what a reader gets, for the notice after a save."""
    offered = {t.casefold() for t in web.config.newsletter.topics}
    topics = [t for t in sub.topics if t.casefold() in offered]
    what = "a weekly digest of" if sub.frequency == "weekly" else "an email for each of"
    posts = f"the posts on {', '.join(topics)}" if topics else "all new posts"
    return f"{mask(sub.address)} will get {what} {posts} from {web.config.title}."


async def manage_page(request: Request) -> Response:
    """The reader's choices: topics to tick, every post or weekly, Save, and "Leave the list".

    A GET changes nothing (link scanners follow links). The page holds the reader's token (it
    came in its URL) for its two forms; `Referrer-Policy: no-referrer` keeps it there.
    """
    web, as_json = _web(request), wants_json(request)
    token = request.query_params.get("token", "")
    sub = await web.db.run(Subscriptions.holder, token)
    if sub is None:
        return web.pages.notice(*INVALID_LINK, status=400, as_json=as_json)
    subscribed = sub.status in ("pending", "active")
    offered = web.config.newsletter.topics
    chosen = {t.casefold() for t in sub.topics}
    if as_json:
        return JSONResponse(
            {
                "ok": True,
                "address": mask(sub.address),
                "subscribed": subscribed,
                "topics": [t for t in offered if t.casefold() in chosen],
                "offered": list(offered),
                "frequency": sub.frequency,
            }
        )
    return web.pages.html(
        MANAGE,
        "Manage your subscription" if subscribed else "You are not subscribed",
        masked=mask(sub.address),
        subscribed=subscribed,
        token=token,
        topics=[(t, t.casefold() in chosen) for t in offered],
        frequency=sub.frequency,
    )


async def manage(request: Request) -> Response:
    """Save a reader's topics (the ones sent; none is every post) and frequency (unchanged when
    not sent). The token is the form's `token` field, else the URL's `token` query parameter."""
    web, as_json = _web(request), wants_json(request)
    try:
        form = await parse_form(request, await read_body(request), _max_fields(web.config))
        prefs = check_preferences(form.fields, form.lists.get(TOPICS, ()), web.config.newsletter.topics)
    except FormError as exc:
        return web.pages.notice("That did not work", exc.message, status=exc.status, as_json=as_json)
    token = form.fields.get("token") or request.query_params.get("token", "")
    managed: Managed | None = await web.db.run(Subscriptions.manage, token, prefs, _now())
    if managed is None:
        return web.pages.notice(*INVALID_LINK, status=400, as_json=as_json)
    if not managed.saved:
        return web.pages.notice(
            "You are not subscribed",
            f"{mask(managed.reader.address)} is not on the list of {web.config.title}, so there is nothing to change.",
            "Subscribe again to choose what you get.",
            status=409,
            as_json=as_json,
        )
    return web.pages.notice("Your choices are saved", _what_they_get(web, managed.reader), as_json=as_json)


# --- the app ----------------------------------------------------------------------------


def allowed_origins(config: Config) -> list[str]:
    """`[web] allowed_origins`, else the origin of the site's base_url (where the form is)."""
    if config.web.allowed_origins:
        return [o.rstrip("/") for o in config.web.allowed_origins]
    parts = urlsplit(config.base_url)
    return [f"{parts.scheme}://{parts.netloc}"]


def routes() -> list[Route]:
    """The endpoints, as listed in this module's docstring."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/subscribe", subscribe_form, methods=["GET"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/confirm/{token}", confirm, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
        Route("/unsubscribe", unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe", unsubscribe, methods=["POST"]),
        Route("/manage", manage_page, methods=["GET"]),
        Route("/manage", manage, methods=["POST"]),
        *webhook_routes(),
    ]


def create_app(site_root: Path, limits: WebLimits | None = None, *, fetch: Fetch | None = None) -> Starlette:
    """The subscription endpoints of the site at `site_root` (reads press.toml and the secret now).

    Refuses (`ConfigError`) a site without a usable `[web] url` (see `public_url`), and masks
    tokens in the server's log lines from here on (`logs.mask_tokens_in_logs`). `fetch` is how
    SNS signing certificates are fetched and subscriptions confirmed (default: HTTPS, `webhook_sns`).
    """
    limits = limits or WebLimits()
    config = load_config(site_root)
    base = public_url(config)
    mask_tokens_in_logs()
    theme = Theme.for_site(config.templates_dir, config=config)
    pages = Pages(config, theme)
    pages.warm()
    secret = site_secret(config)
    database = Database(
        lambda: open_store(config),
        lambda store: Subscriptions(
            store, secret, confirm_key(secret), config.web.confirm_days, welcome=lambda: welcome_file(config) is not None
        ),
    )
    web = Web(
        config=config,
        base=base,
        pages=pages,
        mailer=Mailer(config, pages.render),
        db=database,
        by_ip=TokenBuckets(limits.per_ip, limits.max_keys),
        by_address=TokenBuckets(limits.per_address, limits.max_keys),
        hooks=make_hooks(config, secret, fetch),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.start()
        try:
            yield
        finally:
            await database.stop()

    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=allowed_origins(config),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            max_age=600,
        ),
    ]
    app = WebApp(
        routes=routes(),
        middleware=middleware,
        exception_handlers={
            HTTPException: http_error,
            StorageError: unavailable,
            **dict.fromkeys(RAW_ERRORS, unavailable),
            500: server_error,
        },
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # its redirect would point at the request's Host
    app.state.web = web
    return app
