"""The pure bounce and complaint reader (`bounces.reports.read_report`) over the corpus of real
formats and garbage (`bounce_corpus`), and the VERP token it hands to attribution (`bounces.verp`)."""

from __future__ import annotations

import re

import pytest

import bounce_corpus as corpus
from bounce_corpus import GARBAGE, REAL, Case, Sent
from review_press.bounces import verp
from review_press.bounces.reports import MAX_BYTES, read_report
from review_press.newsletter import campaign_message_id

SECRET = b"s" * 32
SID = 7
VERP_SENT = Sent(
    message_id=campaign_message_id("first", SID, "example.org", SECRET),
    return_path=verp.return_path("bounces@example.org", SECRET, "first", SID),
    recipient="reader7@remote.example",
)
PLAIN_SENT = Sent(message_id=VERP_SENT.message_id, return_path="letters@example.org", recipient="reader7@remote.example")


@pytest.mark.parametrize("sent", [VERP_SENT, PLAIN_SENT], ids=["verp", "plain"])
@pytest.mark.parametrize("case", REAL, ids=[c.name for c in REAL])
def test_every_real_format_reads_as_what_it_is_and_names_the_message_it_returns(case: Case, sent: Sent) -> None:
    report = read_report(case.build(sent))
    assert report.kind == case.kind, report.notes
    if case.failure:
        assert [(f.kind, f.code, f.recipient) for f in report.failures] == [(case.failure, case.code, sent.recipient)]
    else:
        assert report.failures == ()
    assert report.feedback_type == case.feedback_type
    assert (sent.message_id in report.message_ids) is case.has_id
    assert (sent.return_path in report.return_paths) is case.has_path
    if case.kind in ("bounce", "complaint"):
        assert report.report_id and report.report_id != "sha256:"


def test_a_verp_return_path_read_back_names_the_campaign_and_reader() -> None:
    for case in REAL:
        report = read_report(case.build(VERP_SENT))
        found = [verp.read_return_path(a, "bounces@example.org", SECRET, ["old", "first"]) for a in report.return_paths]
        assert ("first", SID) in found, case.name


def test_complaints_name_the_reader_only_where_the_provider_does() -> None:
    assert read_report(corpus.yahoo_arf(VERP_SENT)).complaint_recipients == (VERP_SENT.recipient,)
    for redacted in (corpus.jmrp_arf, corpus.aol_arf):
        report = read_report(redacted(VERP_SENT))
        assert report.complaint_recipients == ()
        assert VERP_SENT.return_path in report.return_paths  # Original-Mail-From / the returned Return-Path


@pytest.mark.parametrize("case", GARBAGE, ids=[c.name for c in GARBAGE])
def test_garbage_never_raises_and_is_never_a_bounce_or_complaint(case: Case) -> None:
    report = read_report(case.build(VERP_SENT))
    assert report.kind == case.kind
    assert report.failures == () and report.complaint_recipients == ()
    assert report.kind not in ("bounce", "complaint", "delay")


def test_reading_is_deterministic() -> None:
    for case in REAL + GARBAGE:
        data = case.build(VERP_SENT)
        assert read_report(data) == read_report(data) == read_report(bytes(bytearray(data))), case.name


def test_distinct_reports_have_distinct_ids_and_one_without_message_id_is_named_by_its_bytes() -> None:
    damaged = {"dsn-latin1-diagnostic", "dsn-unknown-charset", "dsn-broken-base64-headers", "global-dsn"}  # Postfix's, altered
    cases = [c for c in REAL if c.name not in damaged]
    assert len({read_report(c.build(VERP_SENT)).report_id for c in cases}) == len(cases)
    bare = re.sub(rb"Message-Id: <E1vQ7Zx-[^>]+>\n", b"", corpus.exim_text(VERP_SENT))
    assert read_report(bare).report_id.startswith("sha256:")
    assert read_report(bare).kind == "bounce"


def test_a_message_over_the_limit_is_not_read() -> None:
    data = corpus.huge(VERP_SENT, MAX_BYTES)
    assert len(data) > MAX_BYTES
    report = read_report(data)
    assert report.kind == "unreadable" and report.failures == () and report.message_ids == ()
    assert "longer than" in report.notes[0]


def test_a_forged_token_has_the_shape_of_ours_but_names_no_one() -> None:
    report = read_report(corpus.forged_verp(VERP_SENT))
    assert report.kind == "bounce"  # the parser reads it; attribution must refuse it
    forged = [a for a in report.return_paths if a.startswith("bounces+") and a != VERP_SENT.return_path]
    assert forged and VERP_SENT.return_path not in report.return_paths
    assert all(verp.read_return_path(a, "bounces@example.org", SECRET, ["first"]) is None for a in report.return_paths)


def test_a_token_survives_case_folding_and_nothing_else() -> None:
    rp = VERP_SENT.return_path
    assert verp.read_return_path(rp.upper(), "bounces@example.org", SECRET, ["first"]) == ("first", SID)
    assert verp.read_return_path(f"<{rp}>", "bounces@example.org", SECRET, ["first"]) == ("first", SID)
    local, _, _domain = rp.partition("@")
    assert verp.read_return_path(f"{local}@other.example", "bounces@example.org", SECRET, ["first"]) is None
    assert verp.read_return_path(rp.replace("+7-", "+07-"), "bounces@example.org", SECRET, ["first"]) is None  # one spelling
    assert verp.read_return_path(rp, "bounces@example.org", b"t" * 32, ["first"]) is None  # another site's secret
    assert verp.read_return_path(rp, "bounces@example.org", SECRET, ["second"]) is None  # a campaign not on record


# --- regressions: each of these failed before the fix in reports.py ---------------------------------


def test_8bit_bytes_in_a_dsn_field_do_not_make_a_bounce_unreadable() -> None:
    report = read_report(corpus.dsn_latin1_diagnostic(VERP_SENT))
    assert report.kind == "bounce" and report.failures[0].kind == "hard"
    assert "adresse inconnue" in report.failures[0].detail


def test_an_smtputf8_bounce_is_read_like_any_dsn() -> None:
    report = read_report(corpus.global_dsn(VERP_SENT))
    assert (report.kind, report.failures[0].code, report.format) == ("bounce", "5.1.1", "rfc3464")
    assert VERP_SENT.message_id in report.message_ids


def test_an_out_of_office_sent_with_a_null_return_path_is_an_auto_reply() -> None:
    report = read_report(corpus.out_of_office(VERP_SENT))
    assert (report.kind, report.format) == ("other", "auto-reply")


def test_a_mailer_daemon_message_naming_no_recipient_stays_unreadable_even_when_auto_submitted() -> None:
    daemon = b"From: Mail Delivery System <MAILER-DAEMON@remote.example>"
    text = corpus.out_of_office(VERP_SENT).replace(b"From: Reader <reader7@remote.example>", daemon)
    assert read_report(text).kind == "unreadable"  # a bounce format no detector knows: kept aside for a person


@pytest.mark.parametrize("status", ["5.2.2", "5.2.3", "5.3.4", "5.7.1"])
def test_a_permanent_status_that_is_no_verdict_on_the_address_is_soft(status: str) -> None:
    report = read_report(corpus.postfix_dsn(VERP_SENT, status=status, diagnostic=f"smtp; 552 {status} try later"))
    assert report.failures[0].kind == "soft"


@pytest.mark.parametrize("status", ["5.1.1", "5.1.10", "5.2.1", "5.4.1", "5.0.0"])
def test_an_address_that_does_not_take_mail_is_hard(status: str) -> None:
    assert read_report(corpus.postfix_dsn(VERP_SENT, status=status)).failures[0].kind == "hard"


def test_a_text_bounce_after_retries_on_a_4xx_is_soft_like_its_dsn_form() -> None:
    text = read_report(corpus.exim_text(VERP_SENT, code="452 4.2.2", reason="Mailbox full"))
    dsn = read_report(corpus.postfix_expired(VERP_SENT))
    assert text.failures[0].kind == dsn.failures[0].kind == "soft"


def test_a_detector_choking_on_a_hostile_message_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    report = read_report(corpus.junk_headers(VERP_SENT))
    assert report.kind == "unreadable"
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err == ""
