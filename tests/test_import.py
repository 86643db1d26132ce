"""Imports from other services on real SQLite files: format detection from the header row, each
service's statuses and proof of consent, suppression winning over everything, our own export
round-tripping, and garbage of every kind (files, rows, options) reported by file and line."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from review_press.cli import app
from review_press.errors import DeliveryError
from review_press.importers import (
    BUTTONDOWN_TYPES,
    STATUS_WORDS,
    HeaderError,
    ImportOptions,
    detect_format,
    header_of,
    import_file,
    layout_for,
    map_row,
    parse_time,
    status_word,
)
from review_press.store import MAX_LISTED, ImportReport, SQLiteStore, Store, check_name, now_iso, open_store
from sites import write_site

SECRET = b"import-test-secret-0123456789abcdef0123456789"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
STAMP = now_iso(NOW)
runner = CliRunner()

SUBSTACK_SIGNUPS = """\
email,active_subscription,expiry,email_disabled,created_at
ann@example.org,false,,false,2021-03-04T09:15:00.000Z
Bob@Example.org,true,2027-01-01T00:00:00.000Z,false,2022-07-19T18:02:11.123Z
cy@example.org,false,,true,2020-11-30T23:59:59.000Z
"""
SUBSTACK_SUBSCRIBERS = """\
email,expiry,email_disabled,stripe_connected_customer_id,type
dee@example.org,,false,,free
eve@example.org,2027-02-01T00:00:00.000Z,FALSE,cus_Q1w2E3r4,paid
fay@example.org,,TRUE,,free
"""
MAILCHIMP_COLUMNS = (
    "Email Address,First Name,Last Name,Address,Phone Number,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,"
    "LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS"
)
MAILCHIMP_SUBSCRIBED = f'''\
{MAILCHIMP_COLUMNS}
gus@example.org,Gus,Grey,"1 Main St  Springfield  IL  62701  US",,2,"2019-05-01 08:00:00",198.51.100.7,"2019-05-01 08:03:10",198.51.100.8,,,,,,US,IL,"2024-01-01 00:00:00",11,a1b2,,"""Book club"",""VIP"""
hil@example.org,Hil,,,,3,"2020-02-02 10:00:00",2001:db8::1,,,,,,,,,,"2024-01-01 00:00:00",12,a1b3,,
ivo@example.org,,,,,1,,,,,,,,,,,,"2024-01-01 00:00:00",13,a1b4,,
'''
MAILCHIMP_UNSUBSCRIBED = """\
Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,\
TIMEZONE,CC,REGION,UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER,LEID,EUID,NOTES,TAGS
jan@example.org,Jan,Jones,2,"2019-05-01 08:00:00",,"2019-05-01 08:03:10",,,,,,,,,"2023-06-01 10:00:00","June letter",abc123,"I no longer want to receive these emails",,21,b1,,
"""
MAILCHIMP_CLEANED = """\
Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,\
TIMEZONE,CC,REGION,CLEAN_TIME,CLEAN_CAMPAIGN_TITLE,CLEAN_CAMPAIGN_ID,LEID,EUID,NOTES,TAGS
kim@example.org,Kim,,1,"2018-01-01 00:00:00",,,,,,,,,,,"2022-02-02 02:02:02","Feb letter",def456,31,c1,,
"""
GHOST = """\
id,email,name,note,subscribed_to_emails,complimentary_plan,stripe_customer_id,created_at,deleted_at,labels,tiers
6401a1b2c3d4e5f600000001,lea@example.org,Lea Long,,true,false,,2022-02-03T04:05:06.000Z,,"Friends, Book club",Free
6401a1b2c3d4e5f600000002,max@example.org,Max,"met at the fair",false,false,,2022-03-03T04:05:06.000Z,,,Free
6401a1b2c3d4e5f600000003,ned@example.org,Ned,,true,true,cus_N1,2022-04-03T04:05:06.000Z,2023-01-01T00:00:00.000Z,,Gold
"""
LISTMONK_IMPORT = """\
email,name,attributes
oli@example.org,Oli,"{""city"": ""Bengaluru"", ""projects"": 3}"
pam@example.org,Pam,{}
"""
LISTMONK_EXPORT = """\
uuid,email,name,attributes,status,created_at,updated_at
5e2a9c1e-0d4b-4c52-9a55-1f1c2b3a4d5e,quin@example.org,Quin,{},enabled,2023-04-05 10:20:30.123456 +0000 UTC,2023-04-05 10:20:30.123456 +0000 UTC
6f3b0d2f-1e5c-4d63-8b66-2a2d3c4b5e6f,rae@example.org,Rae,{},blocklisted,2023-04-05 16:00:00.5 +0530 IST,2024-01-01 00:00:00 +0000 UTC
7a4c1e3a-2f6d-4e74-9c77-3b3e4d5c6f7a,sol@example.org,Sol,{},disabled,2023-05-01 00:00:00 +0000 UTC,2023-05-01 00:00:00 +0000 UTC
"""
BUTTONDOWN = """\
id,email,creation_date,subscriber_type,source,notes,tags,metadata,referrer_url,utm_campaign,utm_medium,utm_source,ip_address
a1,tia@example.org,2021-08-24T14:15:22Z,regular,api,,[],{},,,,,203.0.113.9
a2,uma@example.org,2021-08-25T14:15:22Z,unactivated,form,,[],{},,,,,
a3,val@example.org,2021-08-26T14:15:22Z,unsubscribed,import,,[],{},,,,,
a4,wes@example.org,2021-08-27T14:15:22Z,undeliverable,import,,[],{},,,,,
a5,xia@example.org,2021-08-28T14:15:22Z,complained,form,,[],{},,,,,
a6,yan@example.org,2021-08-29T14:15:22Z,premium,form,,[],{},,,,,
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with SQLiteStore.open(tmp_path / "state" / "press.db") as s:
        yield s


def write(tmp_path: Path, text: str | bytes, name: str = "readers.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, "utf-8")
    return path


def load(store: Store, tmp_path: Path, text: str | bytes, name: str = "readers.csv", **options: object) -> ImportReport:
    return import_file(store, write(tmp_path, text, name), ImportOptions(**options), secret=SECRET, now=NOW)  # type: ignore[arg-type]


def state(store: Store) -> dict[str, tuple[str, str, str | None, str | None]]:
    """address -> (status, name, consent_at, consent_ip), for every stored reader."""
    return {s.address: (s.status, s.name, s.consent_at, s.consent_ip) for s in store.iter_subscribers()}


def statuses(store: Store) -> dict[str, str]:
    return {s.address: s.status for s in store.iter_subscribers()}


# --- detection and pure mapping ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SUBSTACK_SIGNUPS, "substack"),
        (SUBSTACK_SUBSCRIBERS, "substack"),
        (MAILCHIMP_SUBSCRIBED, "mailchimp"),
        (MAILCHIMP_UNSUBSCRIBED, "mailchimp"),
        (MAILCHIMP_CLEANED, "mailchimp"),
        (GHOST, "ghost"),
        (LISTMONK_IMPORT, "listmonk"),
        (LISTMONK_EXPORT, "listmonk"),
        (BUTTONDOWN, "buttondown"),
        ("id,email_address,type,creation_date,ip_address\n", "buttondown"),
        ("email,name,status,consent_source,consent_at,consent_ip,created_at,updated_at\n", "review-press"),
        ("Name,E-Mail\n", None),
        ("email,name\n", "csv"),
        ("EMAIL , Name,status\n", "csv"),
        ("address;name\n", None),
        ("\n", None),
    ],
)
def test_the_format_is_found_from_the_header_row(text: str, expected: str | None) -> None:
    header = next(iter(text.splitlines()), "").split(",")
    assert detect_format(header) == expected


@pytest.mark.parametrize(
    ("text", "label", "status"),
    [
        (MAILCHIMP_SUBSCRIBED, "Mailchimp export (subscribed)", "active"),
        (MAILCHIMP_UNSUBSCRIBED, "Mailchimp export (unsubscribed)", "unsubscribed"),
        (MAILCHIMP_CLEANED, "Mailchimp export (cleaned)", "bounced"),
    ],
)
def test_mailchimps_three_files_are_told_apart_by_their_columns(text: str, label: str, status: str) -> None:
    header = text.splitlines()[0].split(",")
    layout = layout_for(header, ImportOptions(), source="import:x.csv", now=NOW)
    assert (layout.label, layout.file_status) == (label, status)
    row = map_row(layout, ["z@example.org"] + [""] * (len(header) - 1), 2)
    assert row.status == status and row.consent_at == STAMP  # no time in the file: the import is the consent on record


def test_the_status_tables_cover_the_documented_words_and_nothing_else() -> None:
    expected = {
        "active": ["Active", "subscribed", "CONFIRMED", "enabled", "opted-in"],
        "pending": ["pending", "Unconfirmed", "unactivated", "not_confirmed"],
        "unsubscribed": ["unsubscribed", "opted out", "opt-out", "blocklisted", "removed"],
        "bounced": ["bounced", "cleaned", "hard_bounce", "undeliverable"],
        "complained": ["complained", "spam", "Spam Complaint", "abuse"],
    }
    for status, words in expected.items():
        for word in words:
            assert status_word(word) == status, word
    for junk in ["", "yes", "1", "true", "activ", "unsubscribed!", "vip"]:
        assert status_word(junk) is None, junk
    assert set(STATUS_WORDS.values()) == set(expected)
    assert BUTTONDOWN_TYPES["unactivated"] == "pending" and BUTTONDOWN_TYPES["removed"] == "unsubscribed"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-05-01 08:03:10", "2019-05-01T08:03:10.000000Z"),  # Mailchimp: no offset, UTC
        ("2021-03-04T09:15:00.000Z", "2021-03-04T09:15:00.000000Z"),  # Substack, Ghost
        ("2021-08-24T14:15:22+02:00", "2021-08-24T12:15:22.000000Z"),
        ("2023-04-05 16:00:00.5 +0530 IST", "2023-04-05T10:30:00.500000Z"),  # listmonk (Go's time.String)
        ("2023-04-05 10:20:30.123456789 +0000 UTC m=+0.000000001", "2023-04-05T10:20:30.123456Z"),
        ("2020-01-01 10:00:00 UTC", "2020-01-01T10:00:00.000000Z"),
        ("2020-01-01", "2020-01-01T00:00:00.000000Z"),
        ("  2026-01-01T00:00:00.000000Z ", "2026-01-01T00:00:00.000000Z"),  # our own form, unchanged
    ],
)
def test_times_of_every_service_become_utc(text: str, expected: str) -> None:
    assert parse_time(text, "created_at", NOW) == expected


def test_a_consent_time_after_the_import_is_the_import_time_and_more_than_a_day_ahead_is_refused(store: Store, tmp_path: Path) -> None:
    assert parse_time(now_iso(NOW + dt.timedelta(hours=12)), "created_at", NOW) == STAMP
    assert parse_time(now_iso(NOW + dt.timedelta(hours=24)), "created_at", NOW) == STAMP
    with pytest.raises(ValueError, match="not a plausible time"):
        parse_time(now_iso(NOW + dt.timedelta(hours=25)), "created_at", NOW)
    soon, late = now_iso(NOW + dt.timedelta(hours=12)), now_iso(NOW + dt.timedelta(days=2))
    text = f"email,active_subscription,expiry,email_disabled,created_at\nsoon@example.org,false,,false,{soon}\nlate@example.org,false,,false,{late}\n"
    report = load(store, tmp_path, text)
    assert (report.active, report.bad_rows, report.problems[0].line) == (1, 1, 3)
    assert state(store) == {"soon@example.org": ("active", "", STAMP, None)}  # joined now: due every post from now on


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "yesterday",
        "2020-13-01",
        "2020-01-01T25:00:00",
        "1969-12-31T23:59:59Z",
        "2999-01-01",
        "x" * 100,
        "0",
        "2020-01-01T00:00:00+99:00",
    ],
)
def test_unreadable_or_implausible_times_are_refused(junk: str) -> None:
    with pytest.raises(ValueError, match="created_at"):
        parse_time(junk, "created_at", NOW)


# --- each service's export -------------------------------------------------------------------


def test_substack_signups_and_subscribers_keep_consent_and_email_disabled(store: Store, tmp_path: Path) -> None:
    report = load(store, tmp_path, SUBSTACK_SIGNUPS, "signups.csv")
    assert (report.format, report.active, report.unsubscribed, report.bad_rows) == ("Substack export", 2, 1, 0)
    report = load(store, tmp_path, SUBSTACK_SUBSCRIBERS, "subscribers.csv")
    assert (report.active, report.unsubscribed, report.bad_rows) == (2, 1, 0)
    assert state(store) == {
        "ann@example.org": ("active", "", "2021-03-04T09:15:00.000000Z", None),
        "Bob@example.org": ("active", "", "2022-07-19T18:02:11.123000Z", None),
        "cy@example.org": ("unsubscribed", "", "2020-11-30T23:59:59.000000Z", None),
        "dee@example.org": ("active", "", STAMP, None),  # the subscribers file has no created_at
        "eve@example.org": ("active", "", STAMP, None),
        "fay@example.org": ("unsubscribed", "", STAMP, None),
    }
    assert store.find("dee@example.org").consent_source == "import:subscribers.csv"  # type: ignore[union-attr]


def test_mailchimp_files_give_names_confirm_time_and_ip_and_suppress_the_unsubscribed_and_cleaned(store: Store, tmp_path: Path) -> None:
    assert load(store, tmp_path, MAILCHIMP_SUBSCRIBED, "subscribed.csv").active == 3
    assert load(store, tmp_path, MAILCHIMP_UNSUBSCRIBED, "unsubscribed.csv").unsubscribed == 1
    report = load(store, tmp_path, MAILCHIMP_CLEANED, "cleaned.csv")
    assert (report.format, report.bounced) == ("Mailchimp export (cleaned)", 1)
    assert state(store) == {
        "gus@example.org": ("active", "Gus Grey", "2019-05-01T08:03:10.000000Z", "198.51.100.8"),  # CONFIRM_* first
        "hil@example.org": ("active", "Hil", "2020-02-02T10:00:00.000000Z", "2001:db8::1"),  # else OPTIN_*
        "ivo@example.org": ("active", "", STAMP, None),
        "jan@example.org": ("unsubscribed", "Jan Jones", "2019-05-01T08:03:10.000000Z", None),
        "kim@example.org": ("bounced", "Kim", "2018-01-01T00:00:00.000000Z", None),
    }


def test_ghost_members_who_left_or_were_deleted_come_in_unsubscribed(store: Store, tmp_path: Path) -> None:
    report = load(store, tmp_path, GHOST, "members.csv")
    assert (report.format, report.active, report.unsubscribed) == ("Ghost members export", 1, 2)
    assert state(store) == {
        "lea@example.org": ("active", "Lea Long", "2022-02-03T04:05:06.000000Z", None),
        "max@example.org": ("unsubscribed", "Max", "2022-03-03T04:05:06.000000Z", None),
        "ned@example.org": ("unsubscribed", "Ned", "2022-04-03T04:05:06.000000Z", None),
    }


def test_ghost_email_disabled_when_present_means_bounced(store: Store, tmp_path: Path) -> None:
    text = "id,email,name,subscribed_to_emails,email_disabled,created_at,deleted_at\n1,zed@example.org,Zed,true,true,,\n"
    assert load(store, tmp_path, text).bounced == 1
    assert statuses(store) == {"zed@example.org": "bounced"}


def test_listmonk_import_and_export_files(store: Store, tmp_path: Path) -> None:
    report = load(store, tmp_path, LISTMONK_IMPORT, "import.csv")
    assert (report.format, report.active) == ("listmonk CSV", 2)
    report = load(store, tmp_path, LISTMONK_EXPORT, "subscribers.csv")
    assert (report.active, report.unsubscribed, report.bad_rows) == (1, 2, 0)
    assert state(store)["quin@example.org"] == ("active", "Quin", "2023-04-05T10:20:30.123456Z", None)
    assert state(store)["rae@example.org"] == ("unsubscribed", "Rae", "2023-04-05T10:30:00.500000Z", None)
    assert statuses(store)["sol@example.org"] == "unsubscribed"
    assert statuses(store)["oli@example.org"] == "active"


def test_buttondown_subscriber_types(store: Store, tmp_path: Path) -> None:
    report = load(store, tmp_path, BUTTONDOWN, "buttondown.csv")
    assert (report.format, report.active, report.pending, report.unsubscribed, report.bounced, report.complained) == (
        "Buttondown export",
        2,
        1,
        1,
        1,
        1,
    )
    assert state(store)["tia@example.org"] == ("active", "", "2021-08-24T14:15:22.000000Z", "203.0.113.9")
    assert statuses(store) == {
        "tia@example.org": "active",
        "uma@example.org": "pending",
        "val@example.org": "unsubscribed",
        "wes@example.org": "bounced",
        "xia@example.org": "complained",
        "yan@example.org": "active",
    }


def test_buttondowns_newer_column_names(store: Store, tmp_path: Path) -> None:
    text = (
        "id,email_address,type,creation_date,ip_address\nb1,amy@example.org,regular,2024-01-01T00:00:00Z,\nb2,ben@example.org,removed,,\n"
    )
    assert load(store, tmp_path, text).format == "Buttondown export"
    assert statuses(store) == {"amy@example.org": "active", "ben@example.org": "unsubscribed"}


def test_any_csv_with_a_status_column_is_read_with_the_table(store: Store, tmp_path: Path) -> None:
    text = (
        "Email,Name,Status\n"
        "a@example.org,A,Subscribed\n"
        "b@example.org,B,unconfirmed\n"
        "c@example.org,C,cleaned\n"
        "d@example.org,D,spam\n"
        "e@example.org,E,VIP\n"  # unknown: a bad row, never active
        "f@example.org,F,\n"  # no status: a bad row too
    )
    report = load(store, tmp_path, text)
    assert (report.format, report.active, report.pending, report.bounced, report.complained) == ("CSV", 1, 1, 1, 1)
    assert [(p.line, "'VIP'" in p.reason or "no status" in p.reason) for p in report.problems] == [(6, True), (7, True)]
    assert "e@example.org" not in statuses(store) and "f@example.org" not in statuses(store)


def test_column_options_map_any_csv(store: Store, tmp_path: Path) -> None:
    text = "Mail,Full name,State,email\nann@example.org,Ann A,opted out,wrong@example.org\nbo@example.org,Bo,active,x\n"
    report = load(store, tmp_path, text, email_column="Mail", name_column="full name", status_column="STATE")
    assert (report.format, report.unsubscribed, report.active) == ("CSV", 1, 1)
    assert state(store)["ann@example.org"][:2] == ("unsubscribed", "Ann A")


# --- suppression wins ------------------------------------------------------------------------


def _ledger(store: Store, slug: str, rows: dict[int, str]) -> None:
    with store.transaction() as conn:
        conn.execute("INSERT INTO campaigns (slug, started_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (slug, STAMP))
        for sid, status in rows.items():
            conn.execute(
                "INSERT INTO deliveries (slug, subscriber_id, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (slug, sid, status, STAMP, STAMP),
            )


def _deliveries(store: Store) -> dict[tuple[str, int], tuple[str, str | None]]:
    return {
        (slug, sid): (st, err)
        for slug, sid, st, err in store.conn.execute("SELECT slug, subscriber_id, status, last_error FROM deliveries")
    }


def test_an_import_suppresses_stored_readers_but_never_revives_or_promotes_anyone(store: Store, tmp_path: Path) -> None:
    act = store.add("act@example.org")
    pen = store.add("pen@example.org", status="pending")
    gone = store.add("gone@example.org")
    store.set_status(gone.id, "unsubscribed")
    hard = store.add("hard@example.org")
    store.set_status(hard.id, "bounced")
    keep = store.add("keep@example.org")
    _ledger(store, "p1", {act.id: "pending", keep.id: "pending"})
    _ledger(store, "p2", {act.id: "deferred", pen.id: "pending"})
    _ledger(store, "p3", {act.id: "sent"})
    text = (
        "email,status\n"
        "ACT@example.org,unsubscribed\n"  # active -> unsubscribed, their unsent rows skipped
        "pen@example.org,bounced\n"  # pending -> bounced
        "gone@example.org,active\n"  # stays unsubscribed
        "hard@example.org,unsubscribed\n"  # already suppressed: stays bounced
        "keep@example.org,pending\n"  # active is not made pending
        "new@example.org,active\n"
    )
    report = load(store, tmp_path, text)
    assert (report.active, report.suppressed, report.already, report.added, report.duplicates) == (1, 2, 3, 1, 5)
    assert statuses(store) == {
        "act@example.org": "unsubscribed",
        "pen@example.org": "bounced",
        "gone@example.org": "unsubscribed",
        "hard@example.org": "bounced",
        "keep@example.org": "active",
        "new@example.org": "active",
    }
    assert _deliveries(store) == {
        ("p1", act.id): ("skipped", "unsubscribed"),
        ("p1", keep.id): ("pending", None),
        ("p2", act.id): ("skipped", "unsubscribed"),
        ("p2", pen.id): ("skipped", "bounced"),
        ("p3", act.id): ("sent", None),
    }


def test_a_pending_reader_stays_pending_whatever_the_file_says(store: Store, tmp_path: Path) -> None:
    store.add("wait@example.org", status="pending")
    for text in (GHOST.replace("lea@", "wait@"), "email,status\nwait@example.org,active\n"):
        load(store, tmp_path, text)
        assert statuses(store)["wait@example.org"] == "pending"


@pytest.mark.parametrize(
    ("text", "final", "counts"),
    [
        ("email,status\ndup@example.org,active\nDUP@example.org,unsubscribed\n", "unsubscribed", (1, 0, 1)),
        ("email,status\ndup@example.org,unsubscribed\ndup@example.org,active\n", "unsubscribed", (1, 0, 1)),
        ("email,status\ndup@example.org,active\ndup@example.org,active\n", "active", (1, 0, 1)),
        ("email,status\ndup@example.org,complained\ndup@example.org,bounced\n", "complained", (1, 0, 1)),
    ],
)
def test_duplicates_within_a_file_suppression_wins_whatever_the_order(
    store: Store, tmp_path: Path, text: str, final: str, counts: tuple[int, int, int]
) -> None:
    report = load(store, tmp_path, text)
    assert (report.added, report.suppressed, report.already) == counts
    assert statuses(store) == {"dup@example.org": final}
    assert getattr(report, final) == 1 and report.active == (final == "active")  # the new reader counted as stored


def test_a_new_reader_who_leaves_later_in_the_file_is_reported_as_one_new_suppressed_reader(site: Path) -> None:
    (site / "q.csv").write_text("email,status\nq@y.org,active\nQ@Y.ORG,unsubscribed\nr@y.org,pending\nr@y.org,bounced\n", "utf-8")
    result = runner.invoke(app, ["subscribers", "import", str(site / "q.csv"), "--site", str(site)])
    assert result.exit_code == 0, result.output
    assert "new readers: 2, 1 unsubscribed, 1 bounced\n" in result.stdout
    assert "readers already on the list, now suppressed: 0\n" in result.stdout
    assert "already on the list, unchanged: 2\n" in result.stdout
    listed = runner.invoke(app, ["subscribers", "list", "--site", str(site)])
    assert [line.split("\t")[:3] + line.split("\t")[4:] for line in listed.stdout.splitlines()] == [
        ["q@y.org", "", "unsubscribed", "imported as unsubscribed", "each", ""],  # then how often and the topics
        ["r@y.org", "", "bounced", "imported as bounced", "each", ""],
    ]


@pytest.mark.parametrize(
    ("text", "forced", "expected"),
    [
        (MAILCHIMP_UNSUBSCRIBED, "active", "unsubscribed"),  # never more mailable than the file says
        (MAILCHIMP_SUBSCRIBED, "unsubscribed", "unsubscribed"),
        (MAILCHIMP_SUBSCRIBED, "cleaned", "bounced"),
        ("email,status\nx@example.org,pending\n", "active", "pending"),
        ("email\nx@example.org\n", "pending", "pending"),
        (MAILCHIMP_CLEANED, "unsubscribed", "unsubscribed"),  # both suppressed: the option is explicit
    ],
)
def test_status_option_never_makes_a_row_more_mailable(store: Store, tmp_path: Path, text: str, forced: str, expected: str) -> None:
    load(store, tmp_path, text, status=forced)
    assert set(statuses(store).values()) == {expected}


# --- our own export --------------------------------------------------------------------------


def test_our_export_round_trips_losslessly(store: Store, tmp_path: Path) -> None:
    store.add("Ann@Bücher.de", 'Änn, "the" Reader', source="web form", ip="2001:db8::7", now=NOW - dt.timedelta(days=9))
    store.add("josé@example.org", "José", status="pending", source="web form", ip="192.0.2.1", now=NOW - dt.timedelta(days=8))
    for i, status in enumerate(["unsubscribed", "bounced", "complained"]):
        sub = store.add(f"s{i}@example.org", f"S {i}", source="cli", now=NOW - dt.timedelta(days=7 - i))
        store.set_status(sub.id, status, now=NOW - dt.timedelta(days=1), reason=f"why: {status}, =1+1")
    load(store, tmp_path, SUBSTACK_SUBSCRIBERS)  # consent_ip empty, source import:...
    first = io.StringIO()
    assert store.export_csv(first) == 8
    exported = write(tmp_path, first.getvalue(), "export.csv")
    later = NOW + dt.timedelta(days=30)
    with SQLiteStore.open(tmp_path / "fresh.db") as fresh:
        report = import_file(fresh, exported, secret=SECRET, now=later)
        assert (report.format, report.added, report.bad_rows) == ("review-press export", 8, 0)
        second = io.StringIO()
        fresh.export_csv(second)
    before, after = (list(csv.reader(io.StringIO(text))) for text in (first.getvalue(), second.getvalue()))
    assert [row[:6] for row in after] == [row[:6] for row in before]  # address, name, status and the proof of consent
    assert {tuple(row[6:8]) for row in after[1:]} == {(now_iso(later), now_iso(later))}  # created and updated: this store's own
    assert [row[8] for row in after] == [row[8] for row in before]  # why each reader left
    assert {row[9] for row in after[1:]} == {now_iso(later)}  # the status is this store's from the import on


def test_a_reader_from_our_export_arrives_in_this_store_when_imported(store: Store, tmp_path: Path) -> None:
    header = "email,name,status,consent_source,consent_at,consent_ip,created_at,updated_at\n"
    row = "old@example.org,Old,active,web form,2020-01-02T03:04:05.000000Z,192.0.2.4,2020-01-01T00:00:00.000000Z,2021-01-01T00:00:00.000000Z\n"
    assert load(store, tmp_path, header + row).active == 1
    sub = store.find("old@example.org")
    assert sub is not None
    assert (sub.consent_source, sub.consent_at, sub.consent_ip) == ("web form", "2020-01-02T03:04:05.000000Z", "192.0.2.4")  # proof kept
    assert (sub.created_at, sub.updated_at) == (STAMP, STAMP)  # not 2020: they joined this list now


def test_our_export_with_unknown_statuses_or_broken_fields_is_refused_by_line(store: Store, tmp_path: Path) -> None:
    header = "email,name,status,consent_source,consent_at,consent_ip,created_at,updated_at\n"
    text = header + (
        "a@example.org,A,active,cli,2026-01-01T00:00:00.000000Z,,2026-01-01T00:00:00.000000Z,2026-01-01T00:00:00.000000Z\n"
        "b@example.org,B,vip,cli,,,,\n"
        "c@example.org,C,active,cli,soon,,,\n"
        "d@example.org,D,active,cli,,not-an-ip,,\n"
        'e@example.org,E,active,"web\nform",,,,\n'
        "f@example.org,F,active,cli,,,,\n"
    )
    report = load(store, tmp_path, text)
    assert [p.line for p in report.problems] == [3, 4, 5, 6]  # where each row starts
    reasons = " | ".join(p.reason for p in report.problems)
    assert "unknown status 'vip'" in reasons and "'soon' in consent_at" in reasons and "not an IP address" in reasons
    assert "line break" in reasons
    assert state(store)["f@example.org"] == ("active", "F", None, None)  # an empty consent_at stays empty
    assert store.find("f@example.org").created_at == STAMP  # type: ignore[union-attr]


# --- a status column, wherever it is --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email,status,email_disabled\nleft2@x.org,unsubscribed,false\n", "unsubscribed"),  # Substack
        ("Email Address,First Name,Status,OPTIN_TIME\nleft2@x.org,L,unsubscribed,\n", "unsubscribed"),  # Mailchimp (subscribed file)
        ("email,subscribed_to_emails,status\nleft2@x.org,true,unsubscribed\n", "unsubscribed"),  # Ghost
        ("email,subscribed_to_emails,status\nleft2@x.org,true,paid\n", "active"),  # Ghost's member status: says nothing of email
        ("email,subscribed_to_emails,status\nleft2@x.org,false,active\n", "unsubscribed"),  # never more mailable than the format says
        ("email,email_disabled,status\nleft2@x.org,true,complained\n", "complained"),  # the most suppressed wins
        ("email,email_disabled,status\nleft2@x.org,false,pending\n", "pending"),
        ("email,email_disabled,status\nleft2@x.org,false,\n", "active"),  # blank: the format's own signal
        ("id,email,type,creation_date,status\n1,left2@x.org,regular,,spam\n", "complained"),  # Buttondown
        ("Mail,State,status\nleft2@x.org,active,bounced\n", "bounced"),  # a CSV with --status-column and a status column
    ],
)
def test_a_status_column_is_read_in_every_format_and_the_most_suppressed_status_wins(
    store: Store, tmp_path: Path, text: str, expected: str
) -> None:
    options = {"email_column": "Mail", "status_column": "State"} if text.startswith("Mail,") else {}
    report = load(store, tmp_path, text, **options)
    assert (report.added, report.bad_rows) == (1, 0)
    assert statuses(store) == {"left2@x.org": expected}


def test_an_unknown_word_in_a_status_column_is_a_bad_row_in_any_format(store: Store, tmp_path: Path) -> None:
    for text in ("email,status,email_disabled\nw@x.org,gone fishing,false\n", "Email Address,Status,OPTIN_TIME\nw@x.org,archived,\n"):
        report = load(store, tmp_path, text)
        assert (report.added, report.bad_rows) == (0, 1) and "unknown status" in report.problems[0].reason
    assert statuses(store) == {}


# --- one file, one header ------------------------------------------------------------------------

MAILCHIMP_ALL = MAILCHIMP_SUBSCRIBED + MAILCHIMP_UNSUBSCRIBED.replace("jan@", "unsub@")


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        (MAILCHIMP_ALL, 5, "the header row of a Mailchimp export (unsubscribed) again"),  # cat subscribed.csv unsubscribed.csv
        ("\ufeff" + MAILCHIMP_SUBSCRIBED + "\ufeff" + MAILCHIMP_CLEANED, 5, "Mailchimp export (cleaned)"),  # each with its BOM
        ("email,name\na@example.org,A\nemail,name\nb@example.org,B\n", 3, "this file's header row again"),
        ("Mail,Who\na@example.org,A\n\nMAIL, who \nb@example.org,B\n", 4, "this file's header row again"),
        (SUBSTACK_SIGNUPS + GHOST, 5, "Ghost members export"),
        (GHOST + "email,status\nx@example.org,unsubscribed\n", 5, "a header row again"),
    ],
)
def test_concatenated_exports_are_refused_whole_naming_the_second_header(
    store: Store, tmp_path: Path, text: str, line: int, what: str
) -> None:
    store.add("keep@example.org")
    options = {"email_column": "Mail"} if text.startswith("Mail,") else {}
    with pytest.raises(DeliveryError, match="concatenated") as info:
        load(store, tmp_path, text, **options)
    assert info.value.line == line and what in info.value.message and info.value.hint == "import each file on its own; nothing was imported"
    assert statuses(store) == {"keep@example.org": "active"}


def test_the_command_refuses_concatenated_mailchimp_files_and_stores_nothing(site: Path) -> None:
    (site / "all.csv").write_text(MAILCHIMP_ALL, "utf-8")
    result = runner.invoke(app, ["subscribers", "import", str(site / "all.csv"), "--site", str(site)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "all.csv:5: the header row of a Mailchimp export (unsubscribed) again" in result.stderr
    assert "concatenated" in result.stderr and "import each file on its own" in result.stderr
    assert runner.invoke(app, ["subscribers", "count", "--site", str(site)]).stdout.endswith("total 0\n")


def test_a_row_of_data_is_never_taken_for_a_header() -> None:
    assert header_of(["a@example.org", "Email"], ["email", "name"], now=NOW) is None  # a reader named Email
    assert header_of(["email@example.org", "status"], ["email", "status"], now=NOW) is None
    assert header_of(["x", "email"], ["email", "name"], now=NOW) == "a header row"


# --- names ---------------------------------------------------------------------------------------

UNMAILABLE = ["\x00", "\t", "\x1b", "\x7f", "\x85", "\x9f", "\u2028", "\u2029", "\u202a", "\u202e", "\u2066", "\u2069"]


@pytest.mark.parametrize("char", UNMAILABLE)
def test_a_name_with_a_control_character_is_a_bad_row_naming_its_line(store: Store, tmp_path: Path, char: str) -> None:
    report = load(store, tmp_path, f"email,name\nok@example.org,Ok\nbad@example.org,Ann{char}Lee\n")
    assert (report.added, report.bad_rows, report.problems[0].line) == (1, 1, 3)
    assert f"control character (U+{ord(char):04X})" in report.problems[0].reason
    with pytest.raises(DeliveryError, match="control character"):
        store.add("bad@example.org", f"Ann{char}Lee")
    assert statuses(store) == {"ok@example.org": "active"}
    assert check_name("  Ann Lee\u200d  ") == "Ann Lee\u200d"  # other format characters (a ZWJ in an emoji) are fine


def test_add_refuses_a_name_with_a_nul_without_a_traceback(site: Path) -> None:
    result = runner.invoke(app, ["subscribers", "add", "nul@example.org", "--name", "A\x00B", "--site", str(site)])
    assert result.exit_code == 1 and "control character (U+0000)" in result.stderr and "Traceback" not in result.output
    assert runner.invoke(app, ["subscribers", "count", "--site", str(site)]).stdout.endswith("total 0\n")


# --- garbage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        (b"", "empty", 1),
        (b"  \n\n \n", "empty", 1),
        (b"name,address\nAnn,ann@example.org\n", "no 'email' column", 1),
        (b"email;name\na@example.org;A\n", "no 'email' column", 1),
        (b"email,name\na@example.org,A\nb@example.org,B\nc@example.org,Caf\xe9\n", "not UTF-8", 4),
        ("email\na@example.org\n".encode("utf-16"), "not UTF-8", 1),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8", 1),
        (b"email,name\na@example.org," + b"x" * 200_000 + b"\n", "not valid CSV", 2),
        (b"id,email,subscribed_to_emails\n", None, 1),  # header only: fine, nothing to do
    ],
)
def test_unreadable_files_change_nothing_and_name_the_line(
    store: Store, tmp_path: Path, content: bytes, message: str | None, line: int
) -> None:
    store.add("keep@example.org")
    if message is None:
        assert load(store, tmp_path, content).added == 0
    else:
        with pytest.raises(DeliveryError, match=message) as info:
            load(store, tmp_path, content)
        assert info.value.line == line and info.value.path is not None
    assert statuses(store) == {"keep@example.org": "active"}


def test_a_semicolon_file_gets_a_hint(store: Store, tmp_path: Path) -> None:
    with pytest.raises(DeliveryError) as info:
        load(store, tmp_path, "email;name\na@example.org;A\n")
    assert info.value.hint and "';'" in info.value.hint


def test_a_broken_line_at_the_end_rolls_back_every_row(store: Store, tmp_path: Path) -> None:
    good = "".join(f"r{i}@example.org\n" for i in range(3000))
    with pytest.raises(DeliveryError, match="not UTF-8") as info:
        load(store, tmp_path, b"email\n" + good.encode() + b"last@exampl\xff.org\n")
    assert info.value.line == 3002
    assert sum(store.count().values()) == 0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("email,active_subscription,expiry,email_disabled,created_at\na@example.org,false,,maybe,\n", "email_disabled is 'maybe'"),
        ("email,active_subscription,expiry,email_disabled,created_at\na@example.org,false,,,\n", "email_disabled is ''"),
        (
            "email,active_subscription,expiry,email_disabled,created_at\na@example.org,false,,false,31/12/2020\n",
            "'31/12/2020' in created_at",
        ),
        (GHOST.splitlines()[0] + "\n1,a@example.org,A,,sometimes,false,,,,,\n", "subscribed_to_emails is 'sometimes'"),
        (MAILCHIMP_COLUMNS + "\na@example.org,A,,,,2,2019-05-01 08:00:00,999.1.1.1,,,,,,,,,,,1,x,,\n", "'999.1.1.1' in OPTIN_IP"),
        (MAILCHIMP_COLUMNS + "\na@example.org,A,,,,2,last tuesday,,,,,,,,,,,,1,x,,\n", "'last tuesday' in OPTIN_TIME"),
        (MAILCHIMP_COLUMNS + "\na@example.org,A\n", "too few columns"),
        (BUTTONDOWN.splitlines()[0] + "\na9,a@example.org,2021-08-24T14:15:22Z,vip,api,,[],{},,,,,\n", "unknown status 'vip'"),
        (BUTTONDOWN.splitlines()[0] + "\na9,a@example.org,2021-08-24T14:15:22Z,,api,,[],{},,,,,\n", "no status"),
        (LISTMONK_EXPORT.splitlines()[0] + "\nu,a@example.org,A,{},archived,2023-04-05 10:20:30 +0000 UTC,\n", "unknown status 'archived'"),
        ('email,name\na@example.org,"Ann\r\nBcc: evil@example.org"\n', "line break"),
        ("email,name\na@example.org," + "n" * 201 + "\n", "longer than 200"),
        ('email,name\n"a@example.org\r\nBcc: x@example.org",A\n', "line break"),
        ("email,name\nb@exa\x00mple.org,B\n", "'b@exa\\x00mple.org'"),
        ("email,name\n<a@example.org>,A\n", "'<a@example.org>'"),
        ("email,name\n,Nobody\n", "no address"),
    ],
)
def test_garbage_rows_are_bad_rows_naming_the_line_and_never_imported(store: Store, tmp_path: Path, text: str, reason: str) -> None:
    report = load(store, tmp_path, text)
    assert report.bad_rows >= 1 and report.added == 0
    assert reason in report.problems[0].reason
    assert report.problems[0].line == 2
    assert sum(store.count().values()) == 0


def test_strict_import_aborts_in_one_transaction(store: Store, tmp_path: Path) -> None:
    text = GHOST + "x,bad@example.org,B,,perhaps,false,,,,,\n"
    with pytest.raises(DeliveryError, match="bad row: subscribed_to_emails") as info:
        load(store, tmp_path, text, strict=True)
    assert info.value.line == 5
    assert sum(store.count().values()) == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "gost"}, "unknown format 'gost'"),
        ({"format": "ghost"}, "no 'subscribed_to_emails' column"),
        ({"format": "review-press"}, "no 'status' column"),
        ({"format": "mailchimp"}, "no 'Email Address' column"),
        ({"status": "vip"}, "unknown status 'vip'"),
        ({"email_column": "mail"}, "no column 'mail'"),
        ({"format": "ghost", "email_column": "email"}, "map a plain CSV"),
    ],
)
def test_options_that_fit_no_file_are_refused(store: Store, tmp_path: Path, options: dict[str, str], message: str) -> None:
    with pytest.raises(DeliveryError, match=message):
        load(store, tmp_path, "email,name\na@example.org,A\n", **options)
    assert sum(store.count().values()) == 0


def test_options_are_checked_in_one_place_with_one_wording(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "email\na@example.org\n")
    for options, message in [
        (ImportOptions(format="gost"), "unknown format 'gost' for --format"),
        (ImportOptions(status="vip"), "unknown status 'vip' for --status"),
        (ImportOptions(format="ghost", name_column="n"), "--email-column, --name-column and --status-column map a plain CSV"),
    ]:
        with pytest.raises(HeaderError) as pure:
            layout_for(["email"], options, source="s", now=NOW)
        with pytest.raises(DeliveryError) as read:
            import_file(store, path, options, secret=SECRET, now=NOW)
        with pytest.raises(DeliveryError) as missing:  # options are refused before the file is read
            import_file(store, tmp_path / "nope.csv", options, secret=SECRET, now=NOW)
        assert pure.value.message == read.value.message == missing.value.message == message


def test_a_missing_file_or_a_folder_is_an_error(store: Store, tmp_path: Path) -> None:
    for path in (tmp_path / "nope.csv", tmp_path):
        with pytest.raises(DeliveryError, match="cannot read") as info:
            import_file(store, path, secret=SECRET, now=NOW)
        assert info.value.path == path


def test_a_thousand_bad_rows_are_counted_and_the_first_ones_listed(store: Store, tmp_path: Path) -> None:
    text = "email\n" + "".join(f"bad{i}\n" if i % 2 else f"ok{i}@example.org\n" for i in range(2 * (MAX_LISTED + 200)))
    report = load(store, tmp_path, text)
    assert (report.added, report.bad_rows, len(report.problems)) == (MAX_LISTED + 200, MAX_LISTED + 200, MAX_LISTED)
    assert report.problems[0].line == 3 and report.problems[-1].line == 2 * MAX_LISTED + 1


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET.decode())
    return write_site(tmp_path / "site", {}, 'title = "T"\nbase_url = "https://example.org/"\n')


def test_the_command_reports_the_format_and_counts_by_status(site: Path) -> None:
    (site / "signups.csv").write_text(SUBSTACK_SIGNUPS + "broken,false,,false,\n", "utf-8")
    result = runner.invoke(app, ["subscribers", "import", str(site / "signups.csv"), "--site", str(site)])
    assert result.exit_code == 1  # a bad row was skipped: the rest is in, and the exit says look
    assert "signups.csv: Substack export\n" in result.stdout
    assert "new readers: 3, 2 active, 1 unsubscribed\n" in result.stdout
    assert "already on the list, unchanged: 0\nforgotten, not re-added: 0\nbad rows: 1\n" in result.stdout
    assert "signups.csv:5: 'broken': " in result.stderr and "Traceback" not in result.stderr
    again = runner.invoke(app, ["subscribers", "import", str(site / "signups.csv"), "--site", str(site)])
    assert "new readers: 0\n" in again.stdout and "already on the list, unchanged: 3\n" in again.stdout


def test_the_command_maps_columns_and_forces_a_status(site: Path) -> None:
    (site / "left.csv").write_text("Mail,Who\nann@example.org,Ann\n", "utf-8")
    args = ["subscribers", "import", str(site / "left.csv"), "--site", str(site), "--email-column", "Mail", "--name-column", "Who"]
    result = runner.invoke(app, [*args, "--status", "unsubscribed"])
    assert result.exit_code == 0, result.output
    assert "new readers: 1, 1 unsubscribed" in result.stdout
    listed = runner.invoke(app, ["subscribers", "list", "--site", str(site)])
    assert listed.stdout.split("\t")[:3] == ["ann@example.org", "Ann", "unsubscribed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "excel"], "unknown format 'excel' for --format"),
        (["--status", "maybe"], "unknown status 'maybe' for --status"),
        (["--format", "substack", "--name-column", "x"], "map a plain CSV"),
        (["--email-column", "nope"], "no column 'nope' (--email-column)"),
    ],
)
def test_the_command_refuses_bad_options_without_a_traceback(site: Path, args: list[str], message: str) -> None:
    (site / "r.csv").write_text("email\na@example.org\n", "utf-8")
    result = runner.invoke(app, ["subscribers", "import", str(site / "r.csv"), "--site", str(site), *args])
    assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.output
    assert runner.invoke(app, ["subscribers", "count", "--site", str(site)]).stdout.endswith("total 0\n")


def test_list_refuses_an_unknown_status_naming_the_valid_ones(site: Path) -> None:
    runner.invoke(app, ["subscribers", "add", "a@example.org", "--site", str(site)])
    result = runner.invoke(app, ["subscribers", "list", "--status", "active", "--status", "bogus", "--site", str(site)])
    assert result.exit_code == 1 and "Traceback" not in result.output and result.stdout == ""
    assert "unknown status 'bogus' (one of pending, active, unsubscribed, bounced, complained)" in result.stderr
    listed = runner.invoke(app, ["subscribers", "list", "--status", "active", "--site", str(site)]).stdout
    assert listed.startswith("a@example.org\t\tactive\t") and listed.endswith("\t\teach\t\n") and listed.count("\n") == 1


def test_the_same_file_gives_the_same_result_under_any_hash_seed(tmp_path: Path) -> None:
    own = "email,name,status,consent_source,consent_at,consent_ip,created_at,updated_at\n" + "".join(
        f"r{i}@example.org,R {i},{['active', 'pending', 'unsubscribed'][i % 3]},cli,2025-01-0{1 + i % 9}T00:00:00.000000Z,"
        f"192.0.2.{i},2025-01-01T00:00:00.000000Z,2025-01-02T00:00:00.000000Z\n"
        for i in range(60)
    )
    mixed = BUTTONDOWN + "".join(f"z{i},z{i}@example.org,,regular,,,,,,,,,\n" for i in range(30))
    outputs = []
    for seed in ("1", "4242"):
        root = write_site(tmp_path / f"site{seed}", {}, 'title = "T"\nbase_url = "https://example.org/"\n')
        (root / "own.csv").write_text(own, "utf-8")
        (root / "mixed.csv").write_text(mixed, "utf-8")
        env = {**os.environ, "PYTHONHASHSEED": seed, "REVIEW_PRESS_SECRET": SECRET.decode(), "PYTHONWARNINGS": "ignore"}

        def run(*args: str, root: Path = root, env: dict[str, str] = env) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "review_press", *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        imported = run("subscribers", "import", "own.csv")
        exported = [  # created_at, updated_at and status_at: when it ran
            row[:6] + row[8:9] for row in csv.reader(io.StringIO(run("subscribers", "export")))
        ]
        listed = [line.split("\t")[:3] + line.split("\t")[4:] for line in run("subscribers", "list").splitlines()]  # not when
        outputs.append((imported, exported, run("subscribers", "import", "mixed.csv"), listed))
    assert outputs[0] == outputs[1]
    assert "own.csv: review-press export" in outputs[0][0] and len(outputs[0][1]) == 61


def test_an_imported_reader_with_an_old_consent_is_not_sent_posts_that_went_out_before_the_import(tmp_path: Path) -> None:
    from review_press.config import load_config
    from review_press.publish import PublishOptions, publish

    newsletter = '[newsletter]\nsince = 2026-01-01\nfrom = "P <p@press.net>"\n\n[web]\nurl = "https://press.net/newsletter/"\n'
    posts = {"2026-01-05-old.md": "---\ntitle: Old\ndate: 2026-01-05\n---\n\nSent before the import.\n"}
    root = write_site(tmp_path / "site", posts, 'title = "T"\nbase_url = "https://press.net/"\ntimezone = "UTC"\n' + newsletter)
    with open_store(load_config(root)) as s:
        s.add("early@example.org")
    assert [p.sent for p in publish(root, PublishOptions()).posts] == [1]
    with open_store(load_config(root)) as s:
        report = import_file(s, write(tmp_path, SUBSTACK_SIGNUPS, "signups.csv"), ImportOptions(), secret=SECRET)  # imported now
        assert report.active == 2  # their consent from 2021 and 2022 is kept as proof
    (root / "posts/2026-02-01-new.md").write_text("---\ntitle: New\ndate: 2026-02-01\n---\n\nAfter it.\n", "utf-8")
    assert [(p.slug, p.sent) for p in publish(root, PublishOptions()).posts] == [("new", 3)]  # not "old" to the imported two


def test_a_reader_imported_from_our_export_is_not_sent_posts_that_went_out_before_the_import(tmp_path: Path) -> None:
    from review_press.config import load_config
    from review_press.publish import PublishOptions, publish

    newsletter = '[newsletter]\nsince = 2026-01-01\nfrom = "P <p@press.net>"\n\n[web]\nurl = "https://press.net/newsletter/"\n'
    posts = {"2026-01-05-old.md": "---\ntitle: Old\ndate: 2026-01-05\n---\n\nSent before the import.\n"}
    root = write_site(tmp_path / "site", posts, 'title = "T"\nbase_url = "https://press.net/"\ntimezone = "UTC"\n' + newsletter)
    with open_store(load_config(root)) as s:
        s.add("early@example.org")
    assert [p.sent for p in publish(root, PublishOptions()).posts] == [1]
    export = (
        "email,name,status,consent_source,consent_at,consent_ip,created_at,updated_at\n"
        "moved@example.org,M,active,web form,2020-01-02T00:00:00.000000Z,,2020-01-01T00:00:00.000000Z,2020-01-01T00:00:00.000000Z\n"
    )
    with open_store(load_config(root)) as s:
        assert import_file(s, write(tmp_path, export, "export.csv"), ImportOptions(), secret=SECRET).active == 1  # imported now
    assert publish(root, PublishOptions()).posts == ()  # "old" went out before they arrived: nothing is due to them
    (root / "posts/2026-02-01-new.md").write_text("---\ntitle: New\ndate: 2026-02-01\n---\n\nAfter it.\n", "utf-8")
    assert [(p.slug, p.sent) for p in publish(root, PublishOptions()).posts] == [("new", 2)]
