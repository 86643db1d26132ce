"""`bounces fetch` from a bounce mailbox on a real mail server (Dovecot, see `mail_server`): IMAP
(implicit TLS and STARTTLS) and POP3 (implicit TLS and STLS), over TLS verified against the
tests' own CA (SSL_CERT_FILE), the password from the environment.

A newsletter goes out once into the Maildir outbox, so the reports name real Message-IDs and
VERP return paths; then RFC 3464 bounces, an ARF complaint and a message that is neither wait in
the mailbox. The checks: what each did to its reader, where each message ended up (none lost,
none twice), that a second fetch changes nothing, that a refused login, an untrusted certificate
or a server without STARTTLS reads nothing and never shows or sends the password, and that a
`bounces fetch` killed mid-way and run again counts every report exactly once.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import mailbox
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path

import pytest

import mail_server as ms
from publishing import NEWSLETTER, POSTS, options, subscribe
from review_press.bounces.inbox import fetch
from review_press.bounces.remote import open_remote
from review_press.config import load_config
from review_press.errors import DeliveryError
from review_press.publish import publish
from review_press.store import feedback, open_store
from review_press.store.feedback import per_campaign
from review_press.tokens import site_secret

VARIABLE = "BOUNCES_PASSWORD"
KEPT = ".review-press/bounces-unparsed"
PROCESSED, UNPARSED = "review-press.processed", "review-press.unparsed"  # Dovecot's Maildir delimiter is "."


@pytest.fixture(scope="session")
def dovecot() -> Iterator[ms.Server]:
    """A real Dovecot for the session. Skipped where it is not installed, unless
    REVIEW_PRESS_REQUIRE_PG=1 (set by .ci/run, which installs it), which makes that a failure."""
    if not ms.available():
        if os.environ.get("REVIEW_PRESS_REQUIRE_PG") == "1":
            pytest.fail("Dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)")
        pytest.skip("Dovecot is not installed")
    with ms.running_server() as server:
        yield server


@dataclass(frozen=True)
class Sent:
    """One message the newsletter sent: to whom, its Message-ID, its envelope sender."""

    to: str
    message_id: str
    return_path: str
    subject: str


def outbox(root: Path) -> list[Sent]:
    box = mailbox.Maildir(root / "outbox", create=False)
    return [Sent(str(m["Delivered-To"]), str(m["Message-ID"]), str(m["Return-Path"]).strip("<>"), str(m["Subject"])) for m in box]


def dsn(sent: Sent, status: str, n: int = 0) -> bytes:
    """An RFC 3464 delivery-status notification about `sent` (a `status` of 5.x.x fails hard, 4.x.x soft)."""
    reply = "550" if status.startswith("5") else "452"
    boundary = "b-" + uuid.uuid4().hex
    mid = f"<dsn-{n}-{uuid.uuid4().hex}@mx.example.net>"
    return (
        f"Return-Path: <>\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: {sent.return_path}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: {mid}\r\nDate: {format_datetime(email.utils.localtime())}\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {sent.to}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {reply} {status} mailbox says no\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{sent.return_path}>\r\nMessage-ID: {sent.message_id}\r\nTo: {sent.to}\r\nSubject: {sent.subject}\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def complaint(sent: Sent) -> bytes:
    """An RFC 5965 (ARF) abuse report about `sent`."""
    boundary = "a-" + uuid.uuid4().hex
    return (
        f"From: <fbl@isp.example.net>\r\nTo: <{sent.return_path}>\r\nSubject: FW: {sent.subject}\r\n"
        f"Message-ID: <arf-{uuid.uuid4().hex}@isp.example.net>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\nVersion: 1\r\nOriginal-Mail-From: <{sent.return_path}>\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{sent.return_path}>\r\nMessage-ID: {sent.message_id}\r\nSubject: {sent.subject}\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()


UNREADABLE = b"From: Someone <someone@example.net>\r\nTo: bounces@example.org\r\nSubject: hello?\r\nMessage-ID: <person-1@example.net>\r\n\r\nIs this the editor?\r\n"


def site_with_mail(
    make_site: Callable[..., Path], source: str, readers: int = 4, soft_limit: int = 3
) -> tuple[Path, list[int], list[Sent]]:
    """A newsletter site (VERP return paths) whose `[bounces] source` is `source`, with `readers`
    readers who each got both posts; its root, their ids and what went out."""
    toml = NEWSLETTER.replace("[web]", 'bounce_address = "bounces@example.org"\n\n[web]')
    toml += f'\n[bounces]\nsource = "{source}"\npassword_env = "{VARIABLE}"\nsoft_limit = {soft_limit}\nsoft_days = 30\n'
    root = make_site(dict(POSTS), toml)
    ids = subscribe(root, readers)
    report = publish(root, options())
    assert [p.sent for p in report.posts] == [readers, readers]
    return root, ids, outbox(root)


def to(sent: list[Sent], address: str, subject: str = "First") -> Sent:
    return next(s for s in sent if s.to == address and s.subject == subject)


def statuses(root: Path, ids: list[int]) -> list[str]:
    with open_store(load_config(root)) as store:
        return [store.get(i).status for i in ids]  # type: ignore[union-attr]


def soft_counts(root: Path) -> dict[int, int]:
    """Soft bounces on record per reader who has any."""
    with open_store(load_config(root)) as store:
        counts = {s.id: feedback.of_reader(store, s.id)["soft"] for s in store.iter_subscribers()}
    return {sid: n for sid, n in counts.items() if n}


def cli(root: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "review_press", "bounces", "fetch", "--site", str(root), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def client_env(server: ms.Server, ca_file: Path | None = None, password: str = ms.PASSWORD) -> dict[str, str]:
    """The environment of `bounces fetch`: it trusts `ca_file` (default: the server's CA) and
    finds `password` in `VARIABLE`."""
    return {**os.environ, "SSL_CERT_FILE": str(ca_file or server.ca_file), VARIABLE: password}


def no_secret(result: subprocess.CompletedProcess[str]) -> None:
    assert ms.PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def refused(root: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *, opening: bool = True) -> str:
    """What `bounces fetch` says when it must refuse, checked to be an error without a traceback
    or the password. IMAP through the CLI; POP3 through the API (`open_remote` with the site's
    `keep_dir`, then `fetch` unless `opening` must fail), until `open_source` hands the CLI's
    POP3 source that folder."""
    source = load_config(root).bounces.source
    if source.startswith("imap"):
        result = cli(root, env)
        assert result.returncode == 1, result.stdout
        no_secret(result)
        return result.stderr
    monkeypatch.setenv("SSL_CERT_FILE", env["SSL_CERT_FILE"])
    config = load_config(root)
    with pytest.raises(DeliveryError) as caught:
        mail = open_remote(source, VARIABLE, env, keep_dir=root / KEPT)
        assert not opening, "opened"
        try:
            with open_store(config) as store:
                fetch(config, store, site_secret(config), mail)
        finally:
            mail.close()
    text = str(caught.value)
    assert ms.PASSWORD not in text and caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__  # no library traceback behind it
    return text


def deliver_reports(account: ms.Account, sent: list[Sent]) -> dict[str, str]:
    """A hard bounce for r0, a soft one for r1, a complaint from r2 (about the first post) and a
    message that is no report; their Message-IDs by what they are."""
    messages = {
        "hard": dsn(to(sent, "r0@example.org"), "5.1.1"),
        "soft": dsn(to(sent, "r1@example.org"), "4.2.2"),
        "complaint": complaint(to(sent, "r2@example.org")),
        "unreadable": UNREADABLE,
    }
    for data in messages.values():
        account.deliver(data)
    ids = {}
    for kind, data in messages.items():
        ids[kind] = str(email.message_from_bytes(data, policy=email.policy.compat32)["Message-ID"])
    return ids


@pytest.mark.parametrize("scheme", ["imaps", "imap"])
def test_imap_fetch_records_every_report_and_files_every_message(dovecot: ms.Server, make_site: Callable[..., Path], scheme: str) -> None:
    account = dovecot.account()
    root, ids, sent = site_with_mail(make_site, account.url(scheme, "INBOX"))
    mids = deliver_reports(account, sent)

    first = cli(root, client_env(dovecot))
    no_secret(first)
    assert first.returncode == 1, first.stderr  # one message kept aside
    assert "4 messages from imap: 1 readers bounced, 1 complained, 1 soft bounces counted" in first.stdout
    assert "1 kept aside: 1 not a bounce or complaint we can read" in first.stderr
    assert statuses(root, ids) == ["bounced", "active", "complained", "active"]
    assert soft_counts(root) == {ids[1]: 1}
    after = account.contents()
    assert after == {"INBOX": [], PROCESSED: [mids["hard"], mids["soft"], mids["complaint"]], UNPARSED: [mids["unreadable"]]}

    again = cli(root, client_env(dovecot))
    no_secret(again)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("0 messages from imap")
    assert account.contents() == after and statuses(root, ids) == ["bounced", "active", "complained", "active"]
    assert soft_counts(root) == {ids[1]: 1}


def flagged_deleted(account: ms.Account, folder: str = "INBOX") -> list[str]:
    """The Message-IDs of the messages in `folder` flagged \\Deleted (and not expunged)."""
    with account.imap() as conn:
        conn.select(folder, readonly=True)
        _, data = conn.uid("SEARCH", "DELETED")
        found = []
        for uid in (data[0] or b"").split():
            _, parts = conn.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            header = next(p[1] for p in parts if isinstance(p, tuple))
            found.append(str(email.message_from_bytes(header, policy=email.policy.compat32)["Message-ID"]).strip())
    return found


@pytest.mark.parametrize("listener", ["nomove", "bare"])
def test_without_move_messages_are_copied_and_only_they_are_expunged(
    dovecot: ms.Server, make_site: Callable[..., Path], listener: str
) -> None:
    """A server without MOVE: UID COPY, flag \\Deleted, and UID EXPUNGE of that one message when
    it has UIDPLUS; without UIDPLUS the original stays flagged (the next run skips it). A message
    someone else flagged \\Deleted is never expunged."""
    account = dovecot.account()
    root, ids, sent = site_with_mail(make_site, account.url(listener, "INBOX"))
    theirs = UNREADABLE.replace(b"<person-1@example.net>", b"<theirs@example.net>")
    account.deliver(theirs)
    with account.imap() as conn:
        conn.select("INBOX")
        _, data = conn.uid("SEARCH", "ALL")
        conn.uid("STORE", data[0].split()[0], "+FLAGS.SILENT", r"(\Deleted)")  # someone else's, not expunged yet
    mids = deliver_reports(account, sent)

    first = cli(root, client_env(dovecot))
    no_secret(first)
    assert first.returncode == 1 and first.stdout.startswith("4 messages from imap: 1 readers bounced, 1 complained, 1 soft")
    assert statuses(root, ids) == ["bounced", "active", "complained", "active"]
    assert account.contents() == {"INBOX": [], PROCESSED: [mids["hard"], mids["soft"], mids["complaint"]], UNPARSED: [mids["unreadable"]]}
    if listener == "nomove":
        assert flagged_deleted(account) == ["<theirs@example.net>"]
    else:
        assert flagged_deleted(account) == ["<theirs@example.net>", *mids.values()]

    again = cli(root, client_env(dovecot))
    assert again.returncode == 0 and again.stdout.startswith("0 messages from imap")
    assert len(account.contents()[PROCESSED]) == 3 and soft_counts(root) == {ids[1]: 1}


@pytest.mark.parametrize("scheme", ["pop3s", "pop3"])
def test_pop3_fetch_records_every_report_deletes_it_and_keeps_the_unreadable_one(
    dovecot: ms.Server, make_site: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    account = dovecot.account()
    root, ids, sent = site_with_mail(make_site, account.url(scheme))
    deliver_reports(account, sent)
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))
    config = load_config(root)
    keep_dir = root / KEPT

    def run() -> dict[str, int]:
        mail = open_remote(config.bounces.source, VARIABLE, {VARIABLE: ms.PASSWORD}, keep_dir=keep_dir)
        try:
            with open_store(config) as store:
                report = fetch(config, store, site_secret(config), mail)
        finally:
            mail.close()
        return {"messages": report.messages, **report.outcomes}

    assert run() == {"messages": 4, "bounced": 1, "soft": 1, "complained": 1, "unreadable": 1}
    assert statuses(root, ids) == ["bounced", "active", "complained", "active"]
    assert account.contents() == {"INBOX": []}  # every message deleted, after QUIT
    (kept,) = (keep_dir / "new").iterdir()
    assert kept.read_bytes().replace(b"\r\n", b"\n") == UNREADABLE.replace(b"\r\n", b"\n")
    assert oct(kept.stat().st_mode & 0o777) == oct(0o600) and oct(keep_dir.stat().st_mode & 0o777) == oct(0o700)
    assert not list((keep_dir / "tmp").iterdir())

    assert run() == {"messages": 0}
    assert statuses(root, ids) == ["bounced", "active", "complained", "active"] and soft_counts(root) == {ids[1]: 1}
    assert len(list((keep_dir / "new").iterdir())) == 1


def test_pop3_needs_a_folder_for_what_it_sets_aside(dovecot: ms.Server) -> None:
    account = dovecot.account()
    with pytest.raises(DeliveryError, match="no local folder"):
        open_remote(account.url("pop3s"), VARIABLE, {VARIABLE: ms.PASSWORD})


@pytest.mark.parametrize("scheme", ["imaps", "imap", "pop3s", "pop3"])
def test_a_wrong_password_is_refused_clearly_and_reads_nothing(
    dovecot: ms.Server, make_site: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    account = dovecot.account()
    root, ids, sent = site_with_mail(make_site, account.url(scheme, "INBOX" if scheme.startswith("imap") else ""))
    mids = deliver_reports(account, sent)
    wrong = "not-" + ms.PASSWORD
    said = refused(root, client_env(dovecot, password=wrong), monkeypatch)
    assert wrong not in said
    assert f"server 127.0.0.1:{getattr(dovecot.ports, scheme)} (user {account.user}) refused the login" in said
    assert account.contents() == {"INBOX": list(mids.values())}
    assert statuses(root, ids) == ["active"] * 4


def test_a_missing_password_variable_is_named(dovecot: ms.Server, make_site: Callable[..., Path]) -> None:
    account = dovecot.account()
    root, _, _ = site_with_mail(make_site, account.url("imaps"))
    env = {k: v for k, v in client_env(dovecot).items() if k != VARIABLE}
    result = cli(root, env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"the environment variable {VARIABLE} (named by [bounces] password_env) is not set or empty" in result.stderr


@pytest.mark.parametrize("scheme", ["imaps", "imap", "pop3s", "pop3"])
def test_a_server_certificate_the_client_does_not_trust_is_refused(
    dovecot: ms.Server, make_site: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    account = dovecot.account()
    root, ids, sent = site_with_mail(make_site, account.url(scheme))
    mids = deliver_reports(account, sent)
    other = ms.make_certificates(tmp_path / "other-ca", "Other")  # a CA that did not sign the server's certificate
    said = refused(root, client_env(dovecot, ca_file=other.ca_file), monkeypatch)
    assert f"(user {account.user}): connecting failed: its TLS certificate could not be verified" in said
    assert account.contents() == {"INBOX": list(mids.values())}  # nothing read, moved or deleted
    assert statuses(root, ids) == ["active"] * 4


class NoTlsServer:
    """A fake IMAP or POP3 server on loopback that offers no STARTTLS/STLS and records every
    line a client sends (to show the password never went out)."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.lines: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as f:
                f.write(b"* OK ready\r\n" if self.protocol == "imap" else b"+OK ready\r\n")
                f.flush()
                for line in f:
                    self.lines.append(line)
                    word = line.split()
                    if self.protocol == "imap" and len(word) >= 2 and word[1].upper() == b"CAPABILITY":
                        f.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + word[0] + b" OK done\r\n")
                    elif self.protocol == "imap":
                        f.write((word[0] if word else b"*") + b" OK fine\r\n")
                    elif word and word[0].upper() == b"CAPA":
                        f.write(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
                    else:
                        f.write(b"+OK fine\r\n")
                    f.flush()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_server_without_starttls_never_gets_the_password(
    dovecot: ms.Server, make_site: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    fake = NoTlsServer(protocol)
    try:
        root, _, _ = site_with_mail(make_site, f"{protocol}://reader@127.0.0.1:{fake.port}")
        said = refused(root, client_env(dovecot), monkeypatch)
    finally:
        fake.close()
    word = "STARTTLS" if protocol == "imap" else "STLS"
    assert f"server 127.0.0.1:{fake.port} (user reader) does not offer {word}: the password is not sent without TLS" in said
    sent = b"".join(fake.lines)
    assert ms.PASSWORD.encode() not in sent and b"LOGIN" not in sent.upper() and b"PASS" not in sent.upper()
    assert fake.lines  # it did talk to the server


class CuttingProxy:
    """A TCP proxy on loopback to `port` that drops both sides once the server has sent `limit`
    bytes through it: a connection lost mid-way (TLS passes through it untouched)."""

    def __init__(self, port: int, limit: int) -> None:
        self.target, self.limit, self.passed = port, limit, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self.pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self.pump, args=(server, client, True), daemon=True).start()

    def pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(4096):
                if counted:
                    self.passed += len(data)
                    if self.passed > self.limit:
                        break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_a_connection_lost_mid_way_is_an_error_and_loses_nothing(
    dovecot: ms.Server, make_site: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    account = dovecot.account()
    total = 40
    proxy = CuttingProxy(getattr(dovecot.ports, scheme), limit=30_000)  # a few kB of TLS and login, then about half the mail
    root, _, sent = site_with_mail(make_site, account.url(scheme, port=proxy.port), readers=2, soft_limit=10_000)
    mids = []
    for n in range(total):
        data = dsn(to(sent, f"r{n % 2}@example.org"), "4.2.2", n)
        account.deliver(data)
        mids.append(str(email.message_from_bytes(data, policy=email.policy.compat32)["Message-ID"]))
    try:
        said = refused(root, client_env(dovecot), monkeypatch, opening=False)
    finally:
        proxy.close()
    assert re.search(
        rf"{scheme[:4].upper()} server 127\.0\.0\.1:{proxy.port} \(user {account.user}\): (reading|moving|deleting) message \d+ failed",
        said,
    )
    after = account.contents()
    assert sorted(after["INBOX"] + after.get(PROCESSED, [])) == sorted(mids)  # each message in exactly one folder
    if scheme == "pop3s":
        assert after == {"INBOX": after["INBOX"]} and len(after["INBOX"]) == total  # no QUIT: nothing deleted
    else:
        assert 0 < len(after[PROCESSED]) < total
    recorded = sum(soft_counts(root).values())
    assert len(after.get(PROCESSED, [])) <= recorded < total

    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))
    config = load_config(root)
    mail = open_remote(account.url(scheme), VARIABLE, {VARIABLE: ms.PASSWORD}, keep_dir=root / KEPT)
    try:
        with open_store(config) as store:
            report = fetch(config, store, site_secret(config), mail)
    finally:
        mail.close()
    assert report.count("soft") == total - recorded and report.messages == report.count("soft") + report.count("duplicate")
    assert sum(soft_counts(root).values()) == total
    final = account.contents()
    assert final["INBOX"] == [] and sorted(final.get(PROCESSED, [])) == (sorted(mids) if scheme == "imaps" else [])


def test_a_folder_that_does_not_exist_is_named(dovecot: ms.Server, make_site: Callable[..., Path]) -> None:
    account = dovecot.account()
    root, _, _ = site_with_mail(make_site, account.url("imaps", "Bounces"))
    result = cli(root, client_env(dovecot))
    assert result.returncode == 1
    no_secret(result)
    assert f"(user {account.user}): no folder 'Bounces' to read" in result.stderr


def test_nothing_refused_or_unreachable_shows_a_traceback(dovecot: ms.Server, make_site: Callable[..., Path]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root, _, _ = site_with_mail(make_site, f"imaps://reader@127.0.0.1:{port}/INBOX")
    result = cli(root, client_env(dovecot))
    assert result.returncode == 1
    no_secret(result)
    assert f"IMAP server 127.0.0.1:{port} (user reader): connecting failed: connection refused" in result.stderr


def test_a_fetch_killed_mid_way_and_run_again_counts_every_report_once(dovecot: ms.Server, make_site: Callable[..., Path]) -> None:
    account = dovecot.account()
    readers, total = 8, 300
    root, ids, sent = site_with_mail(make_site, account.url("imaps", "INBOX"), readers=readers, soft_limit=10_000)
    rng = random.Random(int(os.environ.get("KILL_SEED", "20261130")))
    expected: dict[int, int] = {}
    mids = []
    bounced_messages: set[tuple[int, str]] = set()  # (reader, campaign): what the guard rails count, once each
    for n in range(total):
        i = n % readers
        subject = rng.choice(["First", "Second"])
        data = dsn(to(sent, f"r{i}@example.org", subject), "4.2.2", n)
        account.deliver(data)
        expected[ids[i]] = expected.get(ids[i], 0) + 1
        bounced_messages.add((ids[i], subject.lower()))
        mids.append(str(email.message_from_bytes(data, policy=email.policy.compat32)["Message-ID"]))

    kill_after = rng.randint(5, total // 2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "review_press", "bounces", "fetch", "--site", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=client_env(dovecot),
    )
    deadline = time.monotonic() + 120
    while account.count(PROCESSED) < kill_after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, (out, err)  # killed mid-way, not finished
    assert ms.PASSWORD.encode() not in out + err
    moved = account.count(PROCESSED)
    assert kill_after <= moved < total

    again = cli(root, client_env(dovecot))
    no_secret(again)
    assert again.returncode == 0, again.stderr
    m = re.match(r"(\d+) messages from imap: .* (\d+) soft bounces counted, .* (\d+) read before,", again.stdout)
    assert m, again.stdout
    read, soft, duplicate = (int(g) for g in m.groups())
    # a MOVE the killed client had sent may complete after the count above: then one fewer is left
    assert (
        total - moved - 1 <= read <= total - moved and duplicate <= 1 and soft + duplicate == read
    )  # at most the one in flight read twice

    after = account.contents()
    assert after["INBOX"] == [] and UNPARSED not in after
    assert sorted(after[PROCESSED]) == sorted(mids)  # each exactly once: none lost, none copied twice
    assert soft_counts(root) == expected
    with open_store(load_config(root)) as store:
        assert sum(c.soft for c in per_campaign(store).values()) == len(bounced_messages)  # readers per campaign, not reports
    assert statuses(root, ids) == ["active"] * readers


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_a_message_over_the_size_limit_is_never_read_whole_and_never_lost(
    dovecot: ms.Server, make_site: Callable[..., Path], scheme: str
) -> None:
    from review_press.bounces.reports import MAX_BYTES

    account = dovecot.account()
    root, _, sent = site_with_mail(make_site, account.url(scheme, "INBOX") if scheme == "imaps" else account.url(scheme))
    huge = b"From: MAILER-DAEMON@remote.example\nSubject: huge\nMessage-ID: <huge@remote.example>\n\n" + b"x" * 76 + b"\n"
    account.deliver(huge * (MAX_BYTES // len(huge) + 2))
    env = client_env(dovecot)
    if scheme == "imaps":  # what the source hands over: one byte past the limit, not the message
        config = load_config(root)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))
            mail = open_remote(config.bounces.source, VARIABLE, {VARIABLE: ms.PASSWORD}, keep_dir=root / KEPT)
            try:
                [(_, data)] = list(mail.messages())
            finally:
                mail.close()
        assert data is not None and len(data) == MAX_BYTES + 1
    done = cli(root, env)
    no_secret(done)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    if scheme == "imaps":  # read up to the limit, kept aside whole on the server
        assert "1 kept aside" in done.stderr and account.count(UNPARSED) == 1 and account.count("INBOX") == 0
    else:  # POP3 cannot read a part: it stays where it is, and the command says so
        assert "1 left on the server: over 20 MB" in done.stderr and account.count("INBOX") == 1
    assert sent  # the site had sent mail: the reports are about it
