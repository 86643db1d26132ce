"""press.toml -> a frozen `Config`, with every problem reported as `press.toml:line: ...`.

press.toml holds no secrets: the SMTP password and the signing key come from the
environment (see `SmtpConfig.password_env`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError, PressError, raise_all

CONFIG_NAME = "press.toml"
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


@dataclass(frozen=True)
class Author:
    """The site's default author, used in feeds and page metadata."""

    name: str
    email: str = ""


@dataclass(frozen=True)
class NewsletterConfig:
    """The `[newsletter]` table: which posts are emailed and who sends them."""

    since: dt.date | None = None
    from_name: str = ""
    from_address: str = ""
    reply_to: str = ""
    postal_address: str = ""
    list_id: str = ""
    unsubscribe_mailto: str = ""
    late_joiners: bool = False
    continue_reading: str = "Continue reading on the web"  # the link that ends an email cut short of Gmail's clipping
    bounce_address: str = ""  # VERP: each message's envelope sender is bounces+<signed token>@domain (see `bounces.verp`)
    topics: tuple[str, ...] = ()  # tags a reader may choose; a reader who chose some gets only posts carrying one (or none)
    welcome: str = ""  # the welcome email's Markdown file (relative to the site), else posts/_welcome.md when it exists
    digest_day: str = "monday"  # the weekly digest's window runs from this day's midnight (site timezone) to the next


@dataclass(frozen=True)
class SmtpConfig:
    """The `[smtp]` table; when absent, `publish` delivers into the Maildir outbox."""

    host: str
    port: int = 587
    username: str = ""
    password_env: str = ""
    starttls: bool = True
    ssl: bool = False
    timeout: float = 30.0
    concurrency: int = 4
    rate_per_second: float = 0.0
    rate_per_hour: int = 0
    domain_backoff_seconds: float = 60.0  # a domain answering 421/450/451 is left alone this long (doubling)
    max_attempts: int = 5
    dkim_key_file: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""


@dataclass(frozen=True)
class WebConfig:
    """The `[web]` table: where the subscribe/confirm/unsubscribe endpoints live."""

    url: str = ""
    allowed_origins: tuple[str, ...] = ()
    confirm_days: int = 7


@dataclass(frozen=True)
class StoreConfig:
    """The `[store]` table: where subscribers and the ledger live. No `url`: the SQLite file in
    `.review-press/` (the environment variable `REVIEW_PRESS_DATABASE_URL` wins over both).

    `lease_seconds` is how long a sender's claim on rows lasts without renewal: after a sender
    dies, its in-flight rows return to the others after at most this long.
    """

    url: str = ""
    lease_seconds: float = 120.0


@dataclass(frozen=True)
class BouncesConfig:
    """The `[bounces]` table: where bounce and complaint reports are read from, what they do to a
    reader, when the guard rails pause a campaign, and what the provider webhooks trust.

    `source` is `maildir:PATH` (relative to the site), `imaps://user@host[:port]/FOLDER` or
    `imap://...` (STARTTLS), `pop3s://user@host[:port]` or `pop3://...` (STLS); TLS always, the
    password in the environment variable `password_env`. A reader with `soft_limit` soft bounces
    within `soft_days` days is bounced. `publish` pauses a campaign once `pause_min_sent` messages
    went and its complaints pass `pause_complaint_rate` or its hard bounces `pause_bounce_rate`.
    Webhooks: SES through SNS topics in `ses_topic_arns`; Postmark with HTTP basic auth
    (`postmark_user`, password in `postmark_password_env`); Mailgun's signing key in
    `mailgun_key_env`; SendGrid's verification key (public) in `sendgrid_public_key`.
    """

    source: str = ""
    password_env: str = ""
    soft_limit: int = 3
    soft_days: float = 7.0
    pause_complaint_rate: float = 0.003
    pause_bounce_rate: float = 0.05
    pause_min_sent: int = 1000
    ses_topic_arns: tuple[str, ...] = ()
    postmark_user: str = ""
    postmark_password_env: str = ""
    mailgun_key_env: str = ""
    sendgrid_public_key: str = ""
    webhook_max_age: float = 300.0  # seconds: a signed post older than this is refused as a replay


@dataclass(frozen=True)
class ContentConfig:
    """The `[content]` table: how the author's own HTML is treated on the site's pages."""

    sanitize_pages: bool = False  # True: pages get the allowlist that feeds and email always get (`markup.sanitize`)


@dataclass(frozen=True)
class Config:
    """A site's settings, validated. `root` is the folder that holds press.toml."""

    root: Path
    title: str
    base_url: str
    description: str = ""
    language: str = "en"
    timezone: str = "UTC"
    author: Author = field(default_factory=lambda: Author(name=""))
    posts_per_page: int = 10
    feed_length: int = 20
    feed_content: str = "full"
    max_post_bytes: int = 10 * 1024 * 1024
    newsletter: NewsletterConfig = field(default_factory=NewsletterConfig)
    smtp: SmtpConfig | None = None
    web: WebConfig = field(default_factory=WebConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    bounces: BouncesConfig = field(default_factory=BouncesConfig)

    @property
    def tz(self) -> ZoneInfo:
        """The site's timezone: naive dates in front matter are read in it."""
        return ZoneInfo(self.timezone)

    @property
    def posts_dir(self) -> Path:
        return self.root / "posts"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def static_dir(self) -> Path:
        return self.root / "static"

    @property
    def out_dir(self) -> Path:
        return self.root / "out"

    @property
    def state_dir(self) -> Path:
        """Caches, the build manifest, the database and its secret: never published."""
        return self.root / ".review-press"

    def url(self, path: str = "") -> str:
        """The absolute URL of a site path such as `posts/x/` (no leading slash)."""
        return self.base_url + path.lstrip("/")

    def link(self, url: str, page: str) -> str:
        """An author's URL made absolute the one way every output does it: `https:` as it is,
        `/x.jpg` from the site's root (`base_url`, sub-path included, as body images are),
        `x.jpg` from the page at site path `page`."""
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url) or url.startswith("//"):
            return url
        return self.url(url) if url.startswith("/") else urljoin(self.url(page), url)


# Domains reserved for examples (RFC 2606, RFC 6761): mail "from" them is never delivered.
_EXAMPLE_DOMAIN = re.compile(r"(^|[.@/])(example\.(org|com|net)|[^./@:]+\.(example|test|invalid))\.?(?=[/:>\s\"']|$)", re.IGNORECASE)
_SAMPLE_POSTAL = ("your postal address", "example street")


def placeholder_warnings(config: Config) -> list[str]:
    """Settings still holding a sample value (example.org, the sample postal address), each
    naming press.toml and the key: `check`, `build` and `publish` print them; none is fatal."""
    where, news, found = config.root / CONFIG_NAME, config.newsletter, []
    for key, value in (("base_url", config.base_url), ("[newsletter] from", news.from_address), ("[web] url", config.web.url)):
        if value and _EXAMPLE_DOMAIN.search(value):
            found.append(f"{where}: {key} = {value!r} is a placeholder (an example domain): set your own")
    if news.since is not None:
        postal = news.postal_address.strip()
        if not postal:
            found.append(
                f"{where}: [newsletter] postal_address is not set: the law of many countries (CAN-SPAM) requires one in every email"
            )
        elif any(sample in postal.casefold() for sample in _SAMPLE_POSTAL):
            found.append(f"{where}: [newsletter] postal_address = {postal!r} is the sample: set your real postal address")
    return found


# --- validation ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """One key of a table: its type, whether it is required, and an extra check."""

    name: str
    kind: type | tuple[type, ...]
    required: bool = False
    check: Callable[[Any], str | None] | None = None
    attr: str | None = None  # the dataclass attribute when it differs from the key


def _positive(v: Any) -> str | None:
    if isinstance(v, float) and not math.isfinite(v):
        return "must be a finite number"
    if v > 1e9:
        return "is too large (at most 1000000000)"
    return None if v > 0 else "must be greater than 0"


def _non_negative(v: Any) -> str | None:
    if isinstance(v, float) and not math.isfinite(v):
        return "must be a finite number"
    if v > 1e9:
        return "is too large (at most 1000000000)"
    return None if v >= 0 else "must be 0 or more"


def _base_url(v: str) -> str | None:
    if not re.match(r"^https?://[^/\s]+", v):
        return "must start with http:// or https:// and name a host, e.g. https://example.org/"
    return None


def _zone(v: str) -> str | None:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown timezone {v!r}; use an IANA name such as Europe/London or UTC"
    return None


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _address(v: str) -> str | None:
    return None if not v or _ADDRESS.match(v) else "is not an email address"


def _no_newline(v: str) -> str | None:
    return "must not contain a line break" if "\r" in v or "\n" in v else None


_TOP = (
    _Field("title", str, required=True, check=_no_newline),
    _Field("base_url", str, required=True, check=_base_url),
    _Field("description", str),
    _Field(
        "language",
        str,
        check=lambda v: None if re.match(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$", v) else "must be a language tag such as en or en-GB",
    ),
    _Field("timezone", str, check=_zone),
    _Field("posts_per_page", int, check=_positive),
    _Field("feed_length", int, check=_positive),
    _Field("feed_content", str, check=_one_of("full", "summary")),
    _Field("max_post_bytes", int, check=_positive),
)
_AUTHOR = (_Field("name", str, required=True, check=_no_newline), _Field("email", str, check=_address))
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _topics(v: list[Any]) -> str | None:
    if not all(isinstance(t, str) and t.strip() and t == t.strip() and len(t) <= 60 and not re.search(r"[\r\n,;]", t) for t in v):
        return "must be a list of tag names (1-60 characters each; no line break, comma or semicolon: imports and exports separate topics with them)"
    folded = [t.casefold() for t in v]
    if len(set(folded)) != len(folded):
        return "names a topic twice"
    return None if len(v) <= 50 else "lists more than 50 topics"


def _welcome_file(v: str) -> str | None:
    if not v.endswith(".md") or v.startswith("/") or ".." in Path(v).parts or "\0" in v:
        return "must be a Markdown file inside the site, e.g. posts/_welcome.md"
    return None


_NEWSLETTER = (
    _Field("since", dt.date),
    _Field("from", str, check=_no_newline, attr="from_"),
    _Field("reply_to", str, check=_address),
    _Field("postal_address", str),
    _Field("list_id", str, check=_no_newline),
    _Field("unsubscribe_mailto", str, check=_address),
    _Field("late_joiners", bool),
    _Field("continue_reading", str, check=lambda v: _no_newline(v) or (None if v.strip() else "must not be empty")),
    _Field(
        "bounce_address",
        str,
        check=lambda v: _address(v) or (None if "+" not in v.split("@")[0] else "must not hold a + (it separates the token)"),
    ),
    _Field("topics", list, check=_topics),
    _Field("welcome", str, check=_welcome_file),
    _Field("digest_day", str, check=_one_of(*WEEKDAYS)),
)
_SMTP = (
    _Field("host", str, required=True, check=_no_newline),
    _Field("port", int, check=lambda v: None if 0 < v < 65536 else "must be a port number 1-65535"),
    _Field("username", str),
    _Field(
        "password_env",
        str,
        check=lambda v: (
            None
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", v)
            else "must name an environment variable, e.g. SMTP_PASSWORD (never the password itself)"
        ),
    ),
    _Field("starttls", bool),
    _Field("ssl", bool),
    _Field("timeout", (int, float), check=_positive),
    _Field("concurrency", int, check=_positive),
    _Field("rate_per_second", (int, float), check=_non_negative),
    _Field("rate_per_hour", int, check=_non_negative),
    _Field("domain_backoff_seconds", (int, float), check=_positive),
    _Field("max_attempts", int, check=_positive),
    _Field("dkim_key_file", str),
    _Field("dkim_selector", str),
    _Field("dkim_domain", str),
)
_WEB = (
    _Field("url", str, check=lambda v: None if not v or _base_url(v) is None else "must start with http:// or https://"),
    _Field("allowed_origins", list),
    _Field("confirm_days", int, check=_positive),
)
_CONTENT = (_Field("sanitize_pages", bool),)


def _env_name(v: str) -> str | None:
    ok = re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", v)
    return None if ok else "must name an environment variable, e.g. BOUNCES_PASSWORD (never the secret itself)"


def bounce_source_problem(v: str) -> str | None:
    """Why a `[bounces] source` cannot be used (never quoting it), or None."""
    if v.startswith("maildir:"):
        return None if v[len("maildir:") :].strip() else "maildir: needs a folder, e.g. maildir:bounces"
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "is not a URL (write imaps://user@host/INBOX, pop3s://user@host or maildir:PATH)"
    if parts.scheme not in ("imap", "imaps", "pop3", "pop3s"):
        return "must be maildir:PATH, imaps://user@host/FOLDER, imap:// (STARTTLS), pop3s://user@host or pop3:// (STLS)"
    if parts.password is not None:
        return "must not hold a password: put it in an environment variable named by password_env"
    if not parts.hostname or not parts.username:
        return "needs a user and a host, e.g. imaps://bounces@mail.example.org/INBOX"
    return None


def _rate(v: Any) -> str | None:
    return None if 0 < v < 1 else "must be a fraction between 0 and 1 (0.003 is 0.3%)"


_BOUNCES = (
    _Field("source", str, check=bounce_source_problem),
    _Field("password_env", str, check=_env_name),
    _Field("soft_limit", int, check=_positive),
    _Field("soft_days", (int, float), check=_positive),
    _Field("pause_complaint_rate", (int, float), check=_rate),
    _Field("pause_bounce_rate", (int, float), check=_rate),
    _Field("pause_min_sent", int, check=_positive),
    _Field("ses_topic_arns", list),
    _Field("postmark_user", str, check=_no_newline),
    _Field("postmark_password_env", str, check=_env_name),
    _Field("mailgun_key_env", str, check=_env_name),
    _Field(
        "sendgrid_public_key",
        str,
        check=lambda v: None if re.fullmatch(r"[A-Za-z0-9+/=\s]*", v) else "must be the base64 key SendGrid shows",
    ),
    _Field("webhook_max_age", (int, float), check=_positive),
)


def database_url_problem(v: str, *, password_allowed: bool = False) -> str | None:
    """Why a PostgreSQL URL cannot be used (never quoting it: it might hold a password), or None.
    A password is allowed only where a secret may live (the environment), never in press.toml."""
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "is not a URL (write postgresql://user@host:5432/dbname)"
    if parts.scheme not in ("postgresql", "postgres"):
        return "must start with postgresql:// (e.g. postgresql://user@host:5432/press)"
    keys = {key.strip().lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}  # decoded, as libpq reads them
    if not password_allowed and (parts.password is not None or "password" in keys):
        return "must not hold a password: put it in PGPASSWORD or ~/.pgpass (libpq reads them)"
    return None


_STORE = (_Field("url", str, check=database_url_problem), _Field("lease_seconds", (int, float), check=_positive))
_TABLES = {
    "author": _AUTHOR,
    "newsletter": _NEWSLETTER,
    "smtp": _SMTP,
    "web": _WEB,
    "content": _CONTENT,
    "store": _STORE,
    "bounces": _BOUNCES,
}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dt.date: "a date (YYYY-MM-DD)"}


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """Where each `key = ...` sits, by (table, key), so errors can name the line."""
    lines: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if header := _HEADER.match(line):
            table = header.group(1)
            lines.setdefault((table, ""), number)
        elif key := _KEY.match(line):
            lines.setdefault((table, key.group(1)), number)
    return lines


def _type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    if dt.date in kinds and isinstance(value, dt.datetime):
        return False
    return isinstance(value, kinds)


def _take(
    table: dict[str, Any], fields: tuple[_Field, ...], name: str, path: Path, lines: dict[tuple[str, str], int], errors: list[PressError]
) -> dict[str, Any]:
    """Check one table against its fields; return the good values by attribute name."""
    known = {f.name for f in fields}
    prefix = f"[{name}] " if name else ""
    for key in table:
        if key not in known and not (not name and key in _TABLES):
            errors.append(
                ConfigError(
                    f"{prefix}unknown key {key!r}", path=path, line=lines.get((name, key)), hint="known keys: " + ", ".join(sorted(known))
                )
            )
    values: dict[str, Any] = {}
    for f in fields:
        line = lines.get((name, f.name)) or lines.get((name, ""))
        if f.name not in table:
            if f.required:
                errors.append(ConfigError(f"{prefix}missing required key {f.name!r}", path=path, line=line))
            continue
        value = table[f.name]
        if not _type_ok(value, f.kind):
            kinds = f.kind if isinstance(f.kind, tuple) else (f.kind,)
            want = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            errors.append(ConfigError(f"{prefix}{f.name} must be {want}, not {type(value).__name__} {value!r}", path=path, line=line))
            continue
        if f.check and (problem := f.check(value)):
            errors.append(ConfigError(f"{prefix}{f.name} {problem}", path=path, line=line))
            continue
        values[f.attr or f.name] = value
    return values


def _split_from(value: str) -> tuple[str, str]:
    """`Name <addr@x>` or `addr@x` -> (name, address)."""
    match = re.match(r"^\s*(.*?)\s*<([^<>]+)>\s*$", value)
    if match:
        return match.group(1).strip('"'), match.group(2).strip()
    return "", value.strip()


def parse_config(text: str, root: Path, path: Path | None = None) -> Config:
    """Validate press.toml's text; raise every problem at once as `PressErrors`."""
    path = path or root / CONFIG_NAME
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+)", str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}", path=path, line=int(match.group(1)) if match else None, hint="see https://toml.io"
        ) from None
    lines = _key_lines(text)
    errors: list[PressError] = []
    top = _take(data, _TOP, "", path, lines, errors)
    tables: dict[str, dict[str, Any]] = {}
    for name, fields in _TABLES.items():
        if name not in data:
            continue
        if not isinstance(data[name], dict):
            errors.append(ConfigError(f"{name} must be a table [{name}]", path=path, line=lines.get(("", name))))
            continue
        tables[name] = _take(data[name], fields, name, path, lines, errors)
    news = tables.get("newsletter", {})
    if "from_" in news:
        name, address = _split_from(news.pop("from_"))
        if _address(address):
            errors.append(
                ConfigError(
                    f"[newsletter] from: {address!r} is not an email address",
                    path=path,
                    line=lines.get(("newsletter", "from")),
                    hint='write "Name <you@example.org>"',
                )
            )
        news["from_name"], news["from_address"] = name, address
    if "topics" in news:
        news["topics"] = tuple(news["topics"])
    web = tables.get("web", {})
    if "allowed_origins" in web:
        if not all(isinstance(o, str) for o in web["allowed_origins"]):
            errors.append(
                ConfigError("[web] allowed_origins must be a list of strings", path=path, line=lines.get(("web", "allowed_origins")))
            )
        web["allowed_origins"] = tuple(str(o) for o in web["allowed_origins"])
    bounces = tables.get("bounces", {})
    if "ses_topic_arns" in bounces:
        if not all(isinstance(a, str) and a.startswith("arn:aws:sns:") for a in bounces["ses_topic_arns"]):
            errors.append(
                ConfigError(
                    "[bounces] ses_topic_arns must be a list of SNS topic ARNs (arn:aws:sns:REGION:ACCOUNT:NAME)",
                    path=path,
                    line=lines.get(("bounces", "ses_topic_arns")),
                )
            )
        bounces["ses_topic_arns"] = tuple(str(a) for a in bounces["ses_topic_arns"])
    smtp = tables.get("smtp")
    if smtp is not None and smtp.get("ssl") and smtp.get("starttls"):
        errors.append(
            ConfigError(
                "[smtp] ssl and starttls cannot both be true",
                path=path,
                line=lines.get(("smtp", "ssl")),
                hint="ssl = true for port 465, starttls = true for port 587",
            )
        )
    raise_all(errors)
    base_url = top.pop("base_url")
    return Config(
        root=root,
        base_url=base_url if base_url.endswith("/") else base_url + "/",
        author=Author(**tables["author"]) if "author" in tables else Author(name=top.get("title", "")),
        newsletter=NewsletterConfig(**news),
        smtp=SmtpConfig(**smtp) if smtp is not None else None,
        web=WebConfig(**web),
        content=ContentConfig(**tables.get("content", {})),
        store=StoreConfig(**tables.get("store", {})),
        bounces=BouncesConfig(**bounces),
        **top,
    )


def find_site(start: Path | None = None) -> Path:
    """The site folder for `start` (default: the working directory): the first of `start` and the
    folders above it that holds press.toml, as git finds its root. `Path(".")` when it is `start`
    itself (the working directory); a `ConfigError` naming `start` when no folder holds one."""
    begin = Path.cwd() if start is None else start
    here = begin.resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return Path(".") if start is None and folder == here else folder
    raise ConfigError(
        f"no {CONFIG_NAME} here ({here}) or in any folder above it",
        hint="run in the site's folder, pass --site DIR, or make a site with `review-press init DIR`",
    )


def load_config(root: Path) -> Config:
    """Read `root/press.toml`; a missing or unreadable file is a `ConfigError`."""
    root = root.resolve()
    path = root / CONFIG_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"no {CONFIG_NAME} here",
            path=path,
            hint="run in the site's folder, pass --site DIR, or make a site with `review-press init DIR`",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", path=path, line=line, hint="save the file as UTF-8") from None
    return parse_config(text, root, path)
