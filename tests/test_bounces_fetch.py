"""`review-press bounces fetch` end to end: a real site publishes into its Maildir outbox, the
corpus (`bounce_corpus`) writes what real mail systems would return about those very messages
(their real Message-IDs and return paths) into the bounce Maildir, and the real command reads it.
Also the Maildir source's own guarantees (`bounces.maildir`)."""

from __future__ import annotations

import mailbox
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

import bounce_corpus as corpus
from bounce_corpus import Sent
from publishing import NEWSLETTER, POSTS, options, subscribe
from review_press.bounces.maildir import MaildirSource
from review_press.bounces.reports import MAX_BYTES
from review_press.config import load_config
from review_press.publish import publish
from review_press.store import open_store
from sites import cli

BOUNCES = '\n[bounces]\nsource = "maildir:bouncebox"\nsoft_limit = 2\nsoft_days = 7\n'
Site = Callable[..., Path]


@pytest.fixture
def site(make_site: Callable[..., Path]) -> Site:
    """A newsletter site whose bounce mailbox is `bouncebox/`, with VERP (`verp`) or without."""

    def make(verp: bool, readers: int = 7) -> Path:
        toml = NEWSLETTER.replace("[web]", 'bounce_address = "bounces@example.org"\n\n[web]') if verp else NEWSLETTER
        root = make_site(dict(POSTS), toml + BOUNCES, name="verp" if verp else "plain")
        subscribe(root, readers)
        report = publish(root, options())
        assert [p.sent for p in report.posts] == [readers, readers]
        for sub in ("new", "cur", "tmp"):
            (root / "bouncebox" / sub).mkdir(parents=True)
        return root

    return make


def sent(root: Path) -> dict[tuple[str, str], Sent]:
    """Every message in the site's outbox, by (recipient, subject): its real Message-ID and return path."""
    found = {}
    for msg in mailbox.Maildir(root / "outbox", create=False):
        rcpt = str(msg["Delivered-To"])
        found[(rcpt, str(msg["Subject"]))] = Sent(str(msg["Message-ID"]), str(msg["Return-Path"]).strip("<>"), rcpt)
    return found


def drop(root: Path, name: str, data: bytes) -> None:
    """Deliver one message into the bounce Maildir's new/."""
    (root / "bouncebox" / "new" / f"1767603607.{name}.mx").write_bytes(data)


def files(root: Path, folder: str) -> list[str]:
    """The message files in bouncebox/<folder> (new, cur, .processed/cur, .unparsed/cur)."""
    path = root / "bouncebox" / folder
    return sorted(os.listdir(path)) if path.is_dir() else []


def status(root: Path, address: str) -> tuple[str, str]:
    """A reader's status and status reason (("gone", "") once erased)."""
    with open_store(load_config(root)) as store:
        sub = store.find(address)
        return (sub.status, sub.status_reason) if sub else ("gone", "")


def fetch(root: Path) -> tuple[int, str, str]:
    """Run the real `review-press bounces fetch` on the site."""
    done = cli("bounces", "fetch", "--site", str(root))
    assert "Traceback" not in done.stderr + done.stdout
    return done.returncode, done.stdout, done.stderr


def test_verp_site_every_format_reaches_the_right_reader_once_and_nothing_is_lost(site: Site) -> None:
    root = site(verp=True)
    out = sent(root)
    first = {i: out[(f"r{i}@example.org", "First")] for i in range(7)}
    second = {i: out[(f"r{i}@example.org", "Second")] for i in range(7)}
    assert all(s.return_path.startswith("bounces+") for s in out.values())
    with open_store(load_config(root)) as store:
        store.unsubscribe(store.find("r3@example.org").id)  # type: ignore[union-attr]

    drop(root, "r0-gmail-hard", corpus.gmail_dsn(first[0]))
    drop(root, "r1-yahoo-arf", corpus.yahoo_arf(first[1]))
    drop(root, "r2-outlook-5.2.2-soft", corpus.gmail_dsn(first[2], status="5.2.2"))
    drop(root, "r3-jmrp-unsubscribed", corpus.jmrp_arf(first[3]))
    drop(root, "r4-forged-token", corpus.forged_verp(replace(first[4], message_id="<forged.4@attacker.example>")))
    other = replace(first[5], return_path="letters@example.org", recipient="someone.else@example.org")
    drop(root, "r5-names-another", corpus.postfix_dsn(other))  # r5's Message-ID, another recipient
    drop(root, "r6-exim-erased", corpus.exim_text(first[6]))
    drop(root, "never-sent", corpus.postfix_dsn(replace(first[0], message_id="<never@example.org>", return_path="letters@example.org")))
    drop(root, "delayed", corpus.postfix_delayed(second[0]))
    drop(root, "ooo", corpus.out_of_office(second[1]))
    drop(root, "delivered", corpus.dsn_notice(second[4]))
    drop(root, "not-spam", corpus.not_spam_arf(second[5]))
    for case in corpus.GARBAGE:
        drop(root, case.name, case.build(second[4]))
    huge = root / "bouncebox" / "new" / "1767603607.huge.mx"
    with open(huge, "wb") as f:  # a sparse file: cheap, and longer than anything read
        f.write(corpus.postfix_dsn(second[4]))
        f.truncate(MAX_BYTES + 4096)
    assert cli("subscribers", "forget", "r6@example.org", "--site", str(root)).returncode == 0
    total = len(files(root, "new"))

    code, stdout, stderr = fetch(root)
    assert code == 1 and "kept aside" in stderr
    assert f"{total} messages from maildir: 1 readers bounced, 2 complained, 1 soft bounces counted" in stdout
    assert "4 ignored (delays, notices), 1 for readers no longer on the list" in stdout
    unreadable = len(corpus.GARBAGE) + 1  # and the huge one
    assert f"{unreadable + 3} kept aside: {unreadable} not a bounce or complaint we can read, 3 about no message we sent" in stderr
    assert files(root, "new") == [] and files(root, "cur") == []
    aside, processed = files(root, ".unparsed/cur"), files(root, ".processed/cur")
    assert len(aside) + len(processed) == total  # nothing lost
    assert {n.split(".")[1] for n in aside} == {"r4-forged-token", "r5-names-another", "never-sent", "huge"} | {
        c.name for c in corpus.GARBAGE
    }
    assert (root / "bouncebox" / ".unparsed" / "cur" / "1767603607.huge.mx:2,S").stat().st_size == MAX_BYTES + 4096

    assert status(root, "r0@example.org")[0] == "bounced" and "5.1.1" in status(root, "r0@example.org")[1]
    assert status(root, "r1@example.org")[0] == "complained"
    assert status(root, "r2@example.org")[0] == "active"  # one soft bounce of the two the site allows
    assert status(root, "r3@example.org")[0] == "complained"  # also when they had left already
    assert status(root, "r4@example.org")[0] == "active"  # forged token: no one
    assert status(root, "r5@example.org")[0] == "active"  # a Message-ID alone naming another address: no one
    assert status(root, "r6@example.org") == ("gone", "")

    # the second soft bounce makes r2 bounced; every message read again changes nothing
    for name in processed:
        shutil.copy(root / "bouncebox" / ".processed" / "cur" / name, root / "bouncebox" / "cur" / f"again-{name}")
    drop(root, "r2-postfix-expired", corpus.postfix_expired(second[2]))
    code, stdout, stderr = fetch(root)
    assert code == 0 and stderr == ""
    assert f"{len(processed) + 1} messages from maildir: 1 readers bounced, 0 complained, 0 soft bounces counted" in stdout
    assert "4 read before, 4 ignored" in stdout  # r0, r1, r2, r3: recorded once and "1 for readers no longer on the list" in stdout
    assert status(root, "r2@example.org")[0] == "bounced" and "2 soft bounces" in status(root, "r2@example.org")[1]
    assert [status(root, f"r{i}@example.org")[0] for i in (0, 1, 3, 4, 5)] == ["bounced", "complained", "complained", "active", "active"]
    assert len(files(root, ".processed/cur")) == 2 * len(processed) + 1 and len(files(root, ".unparsed/cur")) == len(aside)


def test_plain_site_attributes_by_message_id_only_when_the_report_names_the_reader(site: Site) -> None:
    root = site(verp=False, readers=6)
    first = {i: s for (rcpt, subject), s in sent(root).items() if subject == "First" for i in [int(rcpt[1])]}
    assert all(s.return_path == "letters@example.org" for s in first.values())
    drop(root, "r0-outlook", corpus.outlook_ndr(first[0]))
    drop(root, "r1-jmrp", corpus.jmrp_arf(first[1]))  # no recipient named, and no bounce_address: believed
    drop(root, "r2-qmail", corpus.qmail_text(first[2]))
    drop(root, "r3-another", corpus.yahoo_dsn(replace(first[3], recipient="r0@example.org")))
    drop(root, "r4-erased", corpus.postfix_dsn(first[4]))
    drop(root, "r5-gmail-dmarc", corpus.gmail_dsn(first[5], status="5.7.26"))
    assert cli("subscribers", "forget", "r4@example.org", "--site", str(root)).returncode == 0

    code, stdout, stderr = fetch(root)
    assert code == 1 and "1 about no message we sent" in stderr
    assert "6 messages from maildir: 2 readers bounced, 1 complained, 1 soft bounces counted" in stdout
    assert "1 for readers no longer on the list" in stdout  # r4, by the hash of the address it names
    assert [status(root, f"r{i}@example.org")[0] for i in range(6)] == ["bounced", "complained", "bounced", "active", "gone", "active"]
    assert "5.1.10" in status(root, "r0@example.org")[1]
    assert files(root, ".unparsed/cur") == ["1767603607.r3-another.mx:2,S"]

    export = cli("subscribers", "export", "--site", str(root))
    assert export.returncode == 0
    rows = {line.split(",")[0]: line for line in export.stdout.splitlines()[1:]}
    assert "bounced" in rows["r2@example.org"] and "complained" in rows["r1@example.org"]


def test_a_clean_mailbox_exits_0_and_garbage_alone_exits_1_without_a_traceback(site: Site) -> None:
    root = site(verp=True, readers=2)
    first = sent(root)[("r0@example.org", "First")]
    drop(root, "delayed", corpus.postfix_delayed(first))
    drop(root, "hard", corpus.postfix_dsn(first))
    code, stdout, stderr = fetch(root)
    assert (code, stderr) == (0, "") and "2 messages from maildir: 1 readers bounced" in stdout
    for case in corpus.GARBAGE:
        drop(root, case.name, case.build(first))
    code, stdout, stderr = fetch(root)
    assert code == 1 and f"{len(corpus.GARBAGE)} kept aside" in stderr
    assert len(files(root, ".unparsed/cur")) == len(corpus.GARBAGE)


def test_an_erased_reader_reported_by_token_is_unknown_not_kept_aside(site: Site) -> None:
    """Before the fix, a report about a reader erased since was `unmatched`: kept aside, exit 1."""
    root = site(verp=True, readers=2)
    drop(root, "r1", corpus.gmail_dsn(sent(root)[("r1@example.org", "Second")]))
    assert cli("subscribers", "forget", "r1@example.org", "--site", str(root)).returncode == 0
    code, stdout, stderr = fetch(root)
    assert (code, stderr) == (0, "") and "1 for readers no longer on the list" in stdout
    assert files(root, ".processed/cur") == ["1767603607.r1.mx:2,S"]


def test_moving_a_message_never_replaces_one_already_there(tmp_path: Path) -> None:
    """Before the fix, a name reused by the source (a re-delivery, a script's 1.eml) replaced the
    message filed under it before: os.rename overwrites."""
    for sub in ("new", "cur", "tmp"):
        (tmp_path / sub).mkdir()
    source = MaildirSource(tmp_path)
    for body in (b"first", b"second", b"third"):
        (tmp_path / "new" / "1.eml").write_bytes(body)
        for ref, _data in source.messages():
            source.done(ref)
    kept = {p.name: p.read_bytes() for p in (tmp_path / ".processed" / "cur").iterdir()}
    assert kept == {"1.eml:2,S": b"first", "1.eml.1:2,S": b"second", "1.eml.2:2,S": b"third"}


def test_a_huge_message_is_not_read_into_memory_whole(tmp_path: Path) -> None:
    """Before the fix, every byte of a message was read, however long (a hostile 10 GB file)."""
    for sub in ("new", "cur", "tmp"):
        (tmp_path / sub).mkdir()
    with open(tmp_path / "new" / "big", "wb") as f:
        f.truncate(MAX_BYTES * 3)  # sparse
    source = MaildirSource(tmp_path)
    [(ref, data)] = list(source.messages())
    assert len(data) == MAX_BYTES + 1
    source.set_aside(ref, "unreadable")
    assert (tmp_path / ".unparsed" / "cur" / "big:2,S").stat().st_size == MAX_BYTES * 3  # moved whole
