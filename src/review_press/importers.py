"""Subscriber exports of other services, read as they are: which service wrote a CSV (from its
header row), and what each row says about a reader (address, name, status, proof of consent).

`detect_format` (header -> format), `layout_for` (header and options -> `Layout`) and `map_row`
(row -> `ImportRow`, or a `ValueError` saying what is wrong with it) are pure functions;
`ExportReader` streams one file through them, and `import_file` hands the rows to the store,
which stores them in one transaction. Nothing here holds more than one row at a time.

The formats (`FORMATS`), and how each says that a reader left:

- `review-press`: our own export (`email,name,status,consent_source,consent_at,consent_ip,
  created_at,updated_at`), read back as it was written (but for `created_at` and `updated_at`,
  which are each store's own): a cell the export prefixed with `'` (so that no spreadsheet runs
  it as a formula) loses that prefix (`spreadsheet.restore_cell`).
- `substack`: the signups and subscribers files (`email, ..., email_disabled, ...`);
  `email_disabled` true -> unsubscribed; consent time `created_at`.
- `mailchimp`: the subscribed, unsubscribed (`UNSUB_TIME` ...) and cleaned (`CLEAN_TIME` ...)
  files; the whole file is active, unsubscribed or bounced; consent `CONFIRM_TIME`/`CONFIRM_IP`,
  else `OPTIN_TIME`/`OPTIN_IP`.
- `ghost`: the members export; `deleted_at` set or `subscribed_to_emails` false -> unsubscribed
  (`email_disabled` true, when the column is there -> bounced); consent time `created_at`.
- `listmonk`: the import file (`email,name,attributes`: active) and the export (`status`:
  enabled -> active, blocklisted or disabled -> unsubscribed); consent time `created_at`.
- `buttondown`: `email` (or `email_address`) with `subscriber_type` (or `type`), see
  `BUTTONDOWN_TYPES`; consent `creation_date` and `ip_address`.
- `csv`: any other CSV with an `email` column (or the columns that `--email-column`,
  `--name-column`, `--status-column` name); a `status` column is read with `STATUS_WORDS`.

A `status` column is read in every format, with `STATUS_WORDS` (Ghost's member statuses free,
paid and comped add nothing), and combined with the format's own signals: the most suppressed
status wins (`most_suppressed`). A status this module cannot read is a bad row, never an active
reader. A time without an offset is UTC; a consent time after the import's time is taken as
that time (up to a day of clock skew; later is a bad row). A reader's `created_at` is when the
import stored them, never a time from the file: the late-joiner rule counts from it.

Labels become topics: Mailchimp's `TAGS` (`"Film","Books"`), Ghost's `labels` (`Film, Books`),
listmonk's `attributes` (or `attribs`) JSON (`{"topics": ["Film"]}` or `{"topics": "Film, Books"}`)
and our own export's `topics` (`Film;Books`) map to the site's `[newsletter] topics`
(`ImportOptions.topics`), without regard to case and stored in the site's spelling, for new
readers only (a reader already on the list keeps their choice). A label that is not a topic is
ignored and listed in the report (`ImportReport.ignored_labels`); our export's `frequency` is
read back too.

A file is one export: a second header row (this file's own, or that of any known format), as
`cat subscribed.csv unsubscribed.csv` makes, stops the import with nothing stored (`header_of`):
each header says what its rows mean, so a file's rows are read only under its own.
"""

from __future__ import annotations

import csv
import datetime as dt
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

from .errors import DeliveryError
from .spreadsheet import restore_cell
from .store import (
    MAX_LISTED,
    STATUSES,
    SUPPRESSED,
    ImportReport,
    ImportRow,
    RowProblem,
    Store,
    check_name,
    now_iso,
    parse_address,
)
from .store.model import FREQUENCIES, TOPIC_SEPARATOR

FORMATS: dict[str, str] = {  # name -> what the report calls it
    "review-press": "review-press export",
    "substack": "Substack export",
    "mailchimp": "Mailchimp export",
    "ghost": "Ghost members export",
    "listmonk": "listmonk CSV",
    "buttondown": "Buttondown export",
    "csv": "CSV",
}

# Status words of any CSV (a `status` column, `--status-column`, `--status`), after `_word`.
STATUS_WORDS: dict[str, str] = {
    **dict.fromkeys(("active", "subscribed", "confirmed", "enabled", "opted in", "opt in"), "active"),
    **dict.fromkeys(("pending", "unconfirmed", "unactivated", "not confirmed", "unverified"), "pending"),
    **dict.fromkeys(
        ("unsubscribed", "opted out", "opt out", "optout", "blocklisted", "blacklisted", "removed", "disabled"), "unsubscribed"
    ),
    **dict.fromkeys(("bounced", "cleaned", "hard bounce", "hard bounced", "undeliverable", "invalid"), "bounced"),
    **dict.fromkeys(("complained", "complaint", "spam", "spam complaint", "marked as spam", "abuse"), "complained"),
}

# Buttondown's subscriber types (its API documentation); paid or free, a reader who gets email is active.
BUTTONDOWN_TYPES: dict[str, str] = {
    **dict.fromkeys(("regular", "premium", "trialed", "unpaid", "gifted", "churning", "paused", "past due"), "active"),
    **dict.fromkeys(("unactivated", "gated"), "pending"),
    **dict.fromkeys(("unsubscribed", "removed", "disabled"), "unsubscribed"),
    **dict.fromkeys(("undeliverable", "spammy", "malformed", "disposable", "blocked"), "bounced"),
    "complained": "complained",
}

LISTMONK_STATUSES: dict[str, str] = {"enabled": "active", "blocklisted": "unsubscribed", "disabled": "unsubscribed"}

# A `status` column of a Ghost file may hold its member statuses (free, paid, comped): they say
# nothing about email, and combined with `subscribed_to_emails` they never make anyone mailable.
GHOST_STATUSES: dict[str, str] = {**STATUS_WORDS, **dict.fromkeys(("free", "paid", "comped"), "active")}

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_RANK = {"active": 0, "pending": 1, **dict.fromkeys(SUPPRESSED, 2)}  # how far from being mailed
_SEVERITY = {"active": 0, "pending": 1, "unsubscribed": 2, "bounced": 3, "complained": 4}  # and among the suppressed
_GO_TIME = re.compile(r"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?) ([+-]\d\d:?\d\d)(?: [A-Za-z][A-Za-z0-9+-]*)?(?: m=[+-][\d.]+)?")
_ZONE_WORD = re.compile(r"(?<=\d)\s*(?:Z|UTC|GMT)$", re.IGNORECASE)
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True)
class ImportOptions:
    """How to read a file: `format` forces one (else it is detected), the `*_column`s map a plain
    CSV, `status` gives every row a status (never a more mailable one than the row's own),
    `source` is the consent source recorded (default `import:<file name>`), `strict` makes
    any bad row abort the import, and `topics` are the site's topics its labels map to."""

    format: str | None = None
    email_column: str | None = None
    name_column: str | None = None
    status_column: str | None = None
    status: str | None = None
    source: str | None = None
    strict: bool = False
    topics: tuple[str, ...] = ()  # the site's `[newsletter] topics`: the labels that become topics


class HeaderError(ValueError):
    """The header row does not fit the format asked for (or any format): message and hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Layout:
    """One file's format and where its facts are: column names (normalized by `_word`) to read,
    with `columns` mapping each name of the header row to its first position."""

    format: str
    label: str
    header: tuple[str, ...]  # as written, for messages
    columns: Mapping[str, int]
    email: str
    name: tuple[str, ...]
    status: str | None  # a column of status words (csv, review-press, listmonk, buttondown)
    also: str | None  # a `status` column besides the format's own signals, read with `STATUS_WORDS`
    file_status: str | None  # what the whole file says (Mailchimp's three files)
    forced: str | None  # --status
    source: str
    stamp: str  # the import's time: consent, created and updated, where the file has none
    now: dt.datetime
    labels: str | None = None  # the column of a reader's labels (tags), read by `_LABELS[format]`
    topics: Mapping[str, str] = field(default_factory=dict)  # a topic case-folded -> the site's spelling


def _word(text: str) -> str:
    """A header name or status word as compared: case-folded, `_` and `-` as spaces, spaces
    collapsed, a byte order mark (of a file concatenated after another) dropped."""
    return " ".join(text.replace("\ufeff", "").replace("_", " ").replace("-", " ").casefold().split())


def most_suppressed(a: str, b: str) -> str:
    """Of two statuses, the one further from being mailed (complained, bounced, unsubscribed, pending, active)."""
    return a if _SEVERITY[a] >= _SEVERITY[b] else b


def status_word(text: str) -> str | None:
    """Our status for a status word of another service (`STATUS_WORDS`), or None if unknown."""
    return STATUS_WORDS.get(_word(text))


def detect_format(header: Sequence[str]) -> str | None:
    """The format whose export has this header row, or None when there is no address column."""
    names = {_word(h) for h in header}
    if {"email", "status", "consent source", "consent at"} <= names:
        return "review-press"
    if "email" in names and "subscribed to emails" in names:
        return "ghost"
    if "email" in names and "email disabled" in names:
        return "substack"
    if "email address" in names and names & {"optin time", "confirm time", "member rating", "leid", "euid", "unsub time", "clean time"}:
        return "mailchimp"
    if ("subscriber type" in names and names & {"email", "email address"}) or {"email address", "type", "creation date"} <= names:
        return "buttondown"
    if "email" in names and names & {"attributes", "attribs"}:
        return "listmonk"
    if "email" in names:
        return "csv"
    return None


def check_options(options: ImportOptions) -> str | None:
    """Refuse options that fit no file (`HeaderError`: an unknown format or status, column
    options with another format than csv); return the status `--status` gives, if any."""
    if options.format is not None and options.format not in FORMATS:
        raise HeaderError(f"unknown format {options.format!r} for --format", "one of " + ", ".join(FORMATS))
    if options.format not in (None, "csv") and (options.email_column or options.name_column or options.status_column):
        raise HeaderError("--email-column, --name-column and --status-column map a plain CSV", "leave out --format, or use --format csv")
    if options.status is None:
        return None
    if (forced := status_word(options.status)) is None:
        raise HeaderError(f"unknown status {options.status!r} for --status", "one of " + ", ".join(STATUSES))
    return forced


def layout_for(header: Sequence[str], options: ImportOptions, *, source: str, now: dt.datetime) -> Layout:
    """Read a header row with the options: the `Layout` to map rows with, or a `HeaderError`."""
    forced = check_options(options)
    columns: dict[str, int] = {}
    for i, h in enumerate(header):
        columns.setdefault(_word(h), i)
    listed = ", ".join(h.strip() for h in header) or "empty"
    custom = (options.email_column, options.name_column, options.status_column)
    fmt = options.format or ("csv" if any(custom) else detect_format(header))
    if fmt is None:
        semicolons = any(";" in h for h in header)
        raise HeaderError(
            f"no 'email' column in the header row ({listed})",
            "the file uses ';' between columns: save it as CSV with commas"
            if semicolons
            else "the first row must name the columns, e.g. email,name; --email-column names another",
        )
    label = FORMATS[fmt]

    def need(*names: str) -> str:  # names as the service writes them
        for name in names:
            if _word(name) in columns:
                return _word(name)
        hint = "name the address column with --email-column" if fmt == "csv" else f"is this a {label}?"
        raise HeaderError(f"no {' or '.join(repr(n) for n in names)} column in the header row ({listed})", hint)

    def given(option: str | None, flag: str) -> str | None:
        if option is None:
            return None
        if _word(option) not in columns:
            raise HeaderError(f"no column {option!r} ({flag}) in the header row ({listed})")
        return _word(option)

    def optional(name: str) -> tuple[str, ...]:
        return (name,) if name in columns else ()

    file_status, status, name = None, None, optional("name")
    if fmt == "review-press":
        email, status = need("email"), need("status")
    elif fmt == "ghost":
        email, _ = need("email"), need("subscribed_to_emails")
    elif fmt == "substack":
        email, _ = need("email"), need("email_disabled")
    elif fmt == "mailchimp":
        email, name = need("Email Address"), optional("first name") + optional("last name")
        file_status = "unsubscribed" if "unsub time" in columns else "bounced" if "clean time" in columns else "active"
        label += {"active": " (subscribed)", "unsubscribed": " (unsubscribed)", "bounced": " (cleaned)"}[file_status]
    elif fmt == "buttondown":
        email, status = need("email", "email_address"), need("subscriber_type", "type")
    elif fmt == "listmonk":
        email, status = need("email"), "status" if "status" in columns else None
    else:
        email = given(options.email_column, "--email-column") or need("email")
        named = given(options.name_column, "--name-column")
        name = (named,) if named else name
        status = given(options.status_column, "--status-column") or ("status" if "status" in columns else None)
    also = "status" if "status" in columns and status != "status" else None
    labels = next((c for c in _LABEL_COLUMNS.get(fmt, ()) if c in columns), None)
    return Layout(
        fmt,
        label,
        tuple(h.strip() for h in header),
        columns,
        email,
        name,
        status,
        also,
        file_status,
        forced,
        source,
        now_iso(now),
        now,
        labels,
        {t.casefold(): t for t in options.topics},
    )


class _Cells:
    """One row's cells by column name: "" for a column the header lacks, and a `ValueError`
    for one the header has but the row is too short to hold."""

    def __init__(self, layout: Layout, row: Sequence[str]) -> None:
        self.columns, self.header, self.row = layout.columns, layout.header, row

    def label(self, name: str) -> str:
        """The column's name as the header row writes it."""
        at = self.columns.get(name)
        return self.header[at] if at is not None else name

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def extra(self, name: str) -> str:
        """A column the row may leave out at its end (a reader's labels, our export's newer
        columns): "" when the header lacks it or the row stops before it."""
        at = self.columns.get(name)
        return self.row[at] if at is not None and at < len(self.row) else ""

    def __call__(self, name: str) -> str:
        at = self.columns.get(name)
        if at is None:
            return ""
        if at >= len(self.row):
            raise ValueError(f"the row has too few columns ({len(self.row)}; the header has {len(self.header)})")
        return self.row[at]


def parse_time(text: str, column: str, now: dt.datetime) -> str:
    """A time of consent as another service writes it (ISO 8601 in its variants, Go's
    `time.String()` as listmonk writes it), in the store's UTC form; without an offset it is UTC.
    A time after `now` by up to a day (clock skew) is taken as `now`, so no reader counts as
    joining later than the import (and missing the posts sent meanwhile). A time that cannot be
    read, is before 1970 or is more than a day after `now` is a `ValueError`."""
    t = text.strip()
    if len(t) > 64:
        raise ValueError(f"cannot read the time in {column} ({t[:20]!r}...)")
    if m := _GO_TIME.fullmatch(t):
        t = m[1] + m[2]
    elif m := _ZONE_WORD.search(t):
        t = t[: m.start()] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", t))
    except ValueError:
        raise ValueError(f"cannot read the time {text.strip()!r} in {column}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if moment.year < 1970 or moment > now + dt.timedelta(days=1):
        raise ValueError(f"the time {text.strip()!r} in {column} is not a plausible time of consent")
    return now_iso(min(moment, now))


def _time(cells: _Cells, column: str, layout: Layout) -> str | None:
    """The time in this column in the store's form, None when blank."""
    value = cells(column)
    return parse_time(value, cells.label(column), layout.now) if value.strip() else None


def _ip(cells: _Cells, column: str) -> str | None:
    """An IP address as written (checked), None when blank."""
    value = cells(column).strip()
    if not value:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value[:60]!r} in {cells.label(column)} is not an IP address") from None
    return value


def _bool(cells: _Cells, column: str) -> bool:
    value = cells(column)
    word = value.strip().casefold()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{cells.label(column)} is {value[:40]!r}, not true or false")


def _from_table(cells: _Cells, column: str, table: Mapping[str, str]) -> str:
    value = cells(column)
    if not value.strip():
        raise ValueError(f"no status in {cells.label(column)}")
    status = table.get(_word(value))
    if status is None:
        raise ValueError(f"unknown status {value[:40]!r} in {cells.label(column)} (see the README's status table)")
    return status


def _source(cells: _Cells, column: str) -> str:
    value = cells(column)
    if "\r" in value or "\n" in value or len(value) > 200:
        raise ValueError(f"{cells.label(column)} has a line break or is longer than 200 characters")
    return value.strip()


# Each format's reading of a row: (status, consent source, consent time, consent IP).
_Facts = tuple[str, str, str | None, str | None]


def _review_press(layout: Layout, cells: _Cells) -> _Facts:
    status = cells("status").strip().lower()
    if status not in STATUSES:
        raise ValueError(f"unknown status {cells('status')[:40]!r} (one of {', '.join(STATUSES)})")
    source = _source(cells, "consent source") if "consent source" in cells else layout.source
    consent = _time(cells, "consent at", layout) if "consent at" in cells else layout.stamp
    return status, source, consent, _ip(cells, "consent ip")  # created_at, updated_at: this store's own


def _ghost(layout: Layout, cells: _Cells) -> _Facts:
    subscribed = _bool(cells, "subscribed to emails")
    disabled = "email disabled" in cells and _bool(cells, "email disabled")
    deleted = bool(cells("deleted at").strip())
    status = "unsubscribed" if deleted else "bounced" if disabled else "active" if subscribed else "unsubscribed"
    return status, layout.source, _time(cells, "created at", layout) or layout.stamp, None


def _substack(layout: Layout, cells: _Cells) -> _Facts:
    status = "unsubscribed" if _bool(cells, "email disabled") else "active"
    return status, layout.source, _time(cells, "created at", layout) or layout.stamp, None


def _mailchimp(layout: Layout, cells: _Cells) -> _Facts:
    consent, ip = _time(cells, "confirm time", layout), _ip(cells, "confirm ip")
    if consent is None:
        consent, ip = _time(cells, "optin time", layout), _ip(cells, "optin ip")
    assert layout.file_status is not None
    return layout.file_status, layout.source, consent or layout.stamp, ip


def _buttondown(layout: Layout, cells: _Cells) -> _Facts:
    assert layout.status is not None
    status = _from_table(cells, layout.status, BUTTONDOWN_TYPES)
    consent = _time(cells, "creation date", layout) or layout.stamp
    return status, layout.source, consent, _ip(cells, "ip address")


def _listmonk(layout: Layout, cells: _Cells) -> _Facts:
    status = _from_table(cells, layout.status, LISTMONK_STATUSES) if layout.status else "active"
    return status, layout.source, _time(cells, "created at", layout) or layout.stamp, None


def _csv(layout: Layout, cells: _Cells) -> _Facts:
    status = _from_table(cells, layout.status, STATUS_WORDS) if layout.status else "active"
    return status, layout.source, layout.stamp, None


_READERS: dict[str, Callable[[Layout, _Cells], _Facts]] = {
    "review-press": _review_press,
    "substack": _substack,
    "mailchimp": _mailchimp,
    "ghost": _ghost,
    "listmonk": _listmonk,
    "buttondown": _buttondown,
    "csv": _csv,
}


# The column that holds a reader's labels in each format that has one (names after `_word`).
_LABEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "mailchimp": ("tags",),
    "ghost": ("labels",),
    "listmonk": ("attributes", "attribs"),
    "review-press": ("topics",),
}
MAX_LABELS = 200  # labels read of one cell (a topic list is at most 50 long)


def _listed(text: str) -> list[str]:
    """Comma-separated labels, each maybe quoted as Mailchimp writes its tags (`"a","b, c"`)."""
    try:
        return next(csv.reader([text.replace("\r", " ").replace("\n", " ")], skipinitialspace=True), [])
    except csv.Error:
        return text.split(",")


def _attribute_topics(text: str) -> list[str]:
    """The `topics` of a listmonk attributes object: a list of strings, or one comma-separated
    string; nothing when the cell is not a JSON object (its other attributes are not ours)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    value = next((v for k, v in data.items() if isinstance(k, str) and k.casefold() in ("topics", "topic")), None)
    if isinstance(value, str):
        return _listed(value)
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def labels_of(layout: Layout, cells: _Cells) -> list[str]:
    """A row's labels as the file writes them (stripped, blank ones dropped, at most `MAX_LABELS`)."""
    if layout.labels is None:
        return []
    text = cells.extra(layout.labels)
    if not text.strip():
        return []
    if layout.format == "listmonk":
        found = _attribute_topics(text)
    elif layout.format == "review-press":
        found = text.split(TOPIC_SEPARATOR)
    else:
        found = _listed(text)
    return [label for label in (" ".join(f.split()) for f in found[:MAX_LABELS]) if label]


def topics_of(layout: Layout, labels: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the site's topics these labels name, in its spelling; the labels that name none)."""
    topics: list[str] = []
    ignored: list[str] = []
    for label in labels:
        topic = layout.topics.get(label.casefold())
        if topic is None:
            ignored.append(label)
        elif topic not in topics:
            topics.append(topic)
    return tuple(topics), tuple(ignored)


def _frequency(layout: Layout, cells: _Cells) -> str:
    """Our own export's frequency (blank: every post); another value is a `ValueError`."""
    value = cells.extra("frequency").strip().lower() if layout.format == "review-press" else ""
    if not value:
        return "each"
    if value not in FREQUENCIES:
        raise ValueError(f"unknown frequency {cells('frequency')[:40]!r} (one of {', '.join(FREQUENCIES)})")
    return value


def map_row(layout: Layout, row: Sequence[str], line: int) -> ImportRow:
    """One CSV row as the reader it stands for; a `ValueError` says what is wrong with it."""
    return map_row_labels(layout, row, line)[0]


def map_row_labels(layout: Layout, row: Sequence[str], line: int) -> tuple[ImportRow, tuple[str, ...]]:
    """`map_row`, and the row's labels that are none of the site's topics (`topics_of`)."""
    if layout.format == "review-press":
        row = [restore_cell(cell) for cell in row]  # our export neutralised formula-like cells
    cells = _Cells(layout, row)
    raw = cells(layout.email)
    if not raw.strip():
        raise ValueError("no address")
    address = parse_address(raw)
    name = check_name(" ".join(part for part in (cells(c).strip() for c in layout.name) if part))
    status, source, consent_at, consent_ip = _READERS[layout.format](layout, cells)
    if layout.also is not None and cells(layout.also).strip():  # a blank one leaves the format's signals
        status = most_suppressed(status, _from_table(cells, layout.also, GHOST_STATUSES if layout.format == "ghost" else STATUS_WORDS))
    if layout.forced is not None and _RANK[layout.forced] >= _RANK[status]:
        status = layout.forced
    reason = ""
    if layout.format == "review-press" and status in SUPPRESSED and "status reason" in cells:  # our export keeps why they left
        reason = " ".join(cells("status reason").split())[:300]
    topics, ignored = topics_of(layout, labels_of(layout, cells))
    row_out = ImportRow(line, address, name, status, source, consent_at, consent_ip, reason, topics, _frequency(layout, cells))
    return row_out, ignored


def _trimmed(row: Sequence[str]) -> list[str]:
    words = [_word(cell) for cell in row]
    while words and not words[-1]:
        words.pop()
    return words


def header_of(row: Sequence[str], header: Sequence[str], *, now: dt.datetime) -> str | None:
    """What a row after the header row is the header of, if it is one: this file's header again,
    or any row a format is detected from that holds no address (no `@`); None for a row of data."""
    if _trimmed(row) == _trimmed(header):
        return "this file's header row"
    if (fmt := detect_format(row)) is None or any("@" in cell for cell in row):
        return None
    try:
        label = layout_for(row, ImportOptions(), source="", now=now).label
    except HeaderError:
        label = FORMATS[fmt]
    return f"the header row of a {label}" if fmt != "csv" else "a header row"


def _bad_utf8(path: Path) -> tuple[int, int]:
    """The line and value of the first byte that is not UTF-8 (a character never spans a line)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, raw[exc.start]
    return 1, 0


class ExportReader:
    """One export file, read once: its `layout` from the header row (read at once, so a file
    that fits no format fails before anything is stored), then `rows()`, which streams the good
    rows and collects the bad ones (`bad_rows`, and the first `MAX_LISTED` in `problems`)."""

    def __init__(self, path: Path, options: ImportOptions, *, now: dt.datetime) -> None:
        try:
            check_options(options)  # before the file is opened: the options are wrong for any file
        except HeaderError as exc:
            raise DeliveryError(exc.message, hint=exc.hint) from None
        self.path, self.options, self.now = path, options, now
        self.problems: list[RowProblem] = []
        self.bad_rows = 0
        self.ignored: dict[str, None] = {}  # labels that are no topic of the site, distinct, in the order met
        try:
            self._file = path.open(encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise DeliveryError(f"cannot read: {exc.strerror or exc}", path=path) from None
        try:
            self._reader = csv.reader(self._file)
            header = self._next()
            while header is not None and not any(cell.strip() for cell in header):
                header = self._next()
            if header is None:
                raise DeliveryError("the file is empty", path=path, line=1, hint="the first row must be a header with an 'email' column")
            self._header = header
            try:
                self.layout = layout_for(header, options, source=options.source or f"import:{path.name}", now=now)
            except HeaderError as exc:
                raise DeliveryError(exc.message, path=path, line=self._reader.line_num, hint=exc.hint) from None
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> ExportReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._file.close()

    def _next(self) -> list[str] | None:
        """The next row, None at the end; a broken file is a `DeliveryError` naming the line."""
        try:
            return next(self._reader)
        except StopIteration:
            return None
        except UnicodeDecodeError:
            line, byte = _bad_utf8(self.path)
            raise DeliveryError(f"not UTF-8 text (byte 0x{byte:02x})", path=self.path, line=line, hint="save the file as UTF-8") from None
        except csv.Error as exc:
            raise DeliveryError(f"not valid CSV: {exc}", path=self.path, line=max(self._reader.line_num, 1)) from None

    def rows(self) -> Iterator[ImportRow]:
        """The file's readers, one row at a time (blank rows skipped, bad rows collected); a second
        header row (files concatenated) is a `DeliveryError` naming its line, so nothing is stored."""
        layout, email_at = self.layout, self.layout.columns[self.layout.email]
        while True:
            line = self._reader.line_num + 1  # where the row starts (a quoted field may span lines)
            row = self._next()
            if row is None:
                return
            if not any(cell.strip() for cell in row):
                continue
            at_email = row[email_at] if email_at < len(row) else ""
            if "@" not in at_email and (heads := header_of(row, self._header, now=self.now)) is not None:  # no header holds an @
                raise DeliveryError(
                    f"{heads} again: the file looks like several files concatenated, and each header says what its rows mean",
                    path=self.path,
                    line=line,
                    hint="import each file on its own; nothing was imported",
                )
            try:
                record, ignored = map_row_labels(layout, row, line)
            except ValueError as exc:
                self._bad(line, at_email, exc)
                continue
            for label in ignored:
                if len(self.ignored) < MAX_LISTED:
                    self.ignored.setdefault(label[:60])
            yield record

    def _bad(self, line: int, cell: str, exc: ValueError) -> None:
        self.bad_rows += 1
        if self.options.strict:
            raise DeliveryError(f"bad row: {exc}", path=self.path, line=line, hint="fix the row, or import without --strict")
        if len(self.problems) < MAX_LISTED:
            self.problems.append(RowProblem(line, f"{cell[:100]!r}: {exc}"))


def import_file(
    store: Store,
    path: Path,
    options: ImportOptions | None = None,
    *,
    secret: bytes | None = None,
    now: dt.datetime | None = None,
) -> ImportReport:
    """Import one export file into the store in one transaction and report what happened, with
    the format's name; `secret` (the site secret) lets erased addresses be recognised."""
    moment = now or dt.datetime.now(dt.UTC)
    with ExportReader(path, options or ImportOptions(), now=moment) as reader:
        report = store.import_rows(reader.rows(), secret=secret, now=moment)
        return replace(
            report,
            format=reader.layout.label,
            bad_rows=reader.bad_rows,
            problems=tuple(reader.problems),
            ignored_labels=tuple(reader.ignored),
        )


def import_csv(
    store: Store,
    path: Path,
    *,
    source: str | None = None,
    strict: bool = False,
    now: dt.datetime | None = None,
    secret: bytes | None = None,
) -> ImportReport:
    """Import a CSV file into `store` in one transaction, its format found from its header row:
    `import_file` with its default options (the CLI passes all of them)."""
    return import_file(store, path, ImportOptions(source=source, strict=strict), now=now, secret=secret)
