"""A bounce mailbox on a mail server: IMAP (`imaps://`, or `imap://` with STARTTLS) or POP3
(`pop3s://`, or `pop3://` with STLS). Always over TLS, the server's certificate verified against
the system's CAs (`ssl.create_default_context`, which honours SSL_CERT_FILE); the password comes
from the environment variable `[bounces] password_env`, never from press.toml.

IMAP: the messages of the folder are read one at a time in UID order (BODY.PEEK[]: nothing is
marked read); one done with is moved to `review-press/processed`, one set aside to
`review-press/unparsed` (named with the server's hierarchy delimiter, made when missing). MOVE is
atomic, so a message is always in exactly one folder; a crash before it leaves the message to be
read again (a duplicate for the store). Without MOVE: UID COPY, then flag it \\Deleted and UID
EXPUNGE that one message (UIDPLUS), never a plain EXPUNGE, which would remove messages someone
else flagged (a crash between the copy and the flag leaves a second copy behind, never a loss).

POP3 has no folders: a message done with is deleted (DELE, which the server applies only at QUIT:
a crash before leaves every message to be read again); one set aside is first saved durably in a
local Maildir folder (`keep_dir`, the site's `.review-press/bounces-unparsed/`), then deleted.

Every failure (cannot connect, certificate not trusted, login refused, no such folder, the
connection lost) is a `DeliveryError` naming the server and the user, never the password.
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import os
import poplib
import re
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..config import bounce_source_problem
from ..errors import DeliveryError, write_error
from ..statedir import PRIVATE_FILE, private_dir
from .reports import MAX_BYTES

if TYPE_CHECKING:
    from .inbox import MailSource

TIMEOUT = 60.0  # seconds a server may stay silent before the connection counts as lost
PROCESSED = ("review-press", "processed")
SET_ASIDE = ("review-press", "unparsed")
MAX_LINE = 1 << 20  # POP3: the longest line accepted in a message (poplib's own limit is 2048)
_DEFAULT_PORTS = {"imaps": 993, "imap": 143, "pop3s": 995, "pop3": 110}


@dataclass(frozen=True)
class Mailbox:
    """A parsed `[bounces] source` URL: scheme (imaps, imap, pop3s, pop3), user, host, port and
    (IMAP) folder."""

    scheme: str
    user: str
    host: str
    port: int
    folder: str = "INBOX"

    @property
    def protocol(self) -> str:
        return "IMAP" if self.scheme.startswith("imap") else "POP3"

    def describe(self) -> str:
        """`IMAP server mail.example.org:993 (user bounces)`: how messages name the mailbox."""
        return f"{self.protocol} server {self.host}:{self.port} (user {self.user})"


def parse_source(spec: str) -> Mailbox:
    """The mailbox a `[bounces] source` URL names; `DeliveryError` (never quoting it) if it names none."""
    problem = bounce_source_problem(spec)
    if problem is None and spec.startswith("maildir:"):
        problem = "is a Maildir folder, not a mail server"
    if problem:
        raise DeliveryError(f"[bounces] source {problem}", hint="imaps://user@host/INBOX, imap://, pop3s://user@host or pop3://")
    parts = urlsplit(spec)
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if parts.scheme.startswith("pop3") and parts.path.strip("/"):
        raise DeliveryError("[bounces] source: POP3 has no folders (write pop3s://user@host)")
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in folder):
        raise DeliveryError("[bounces] source: the IMAP folder name must be printable ASCII")
    host = parts.hostname or ""
    return Mailbox(parts.scheme, unquote(parts.username or ""), host, parts.port or _DEFAULT_PORTS[parts.scheme], folder)


def _password(password_env: str, environ: Mapping[str, str] | None) -> str:
    env = os.environ if environ is None else environ
    if not password_env:
        raise DeliveryError(
            "[bounces] password_env is not set: the mail server's password must come from the environment",
            hint='add  [bounces] password_env = "BOUNCES_PASSWORD"  and set that variable',
        )
    value = env.get(password_env, "")
    if not value:
        raise DeliveryError(f"the environment variable {password_env} (named by [bounces] password_env) is not set or empty")
    if "\r" in value or "\n" in value or "\0" in value:
        raise DeliveryError(f"the password in {password_env} holds a line break or NUL")
    return value


def _reason(exc: BaseException) -> str:
    """What went wrong, as a user reads it (never with a password: the libraries' errors carry
    the server's replies and the OS's reasons, not what we sent)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its TLS certificate could not be verified ({exc.verify_message})"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "no such host"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc.__class__.__name__})"
    if isinstance(exc, OSError):
        return (exc.strerror or exc.__class__.__name__).lower()
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:300] or exc.__class__.__name__


_TLS_HINT = "the server's certificate must be valid for the host and signed by a CA this machine trusts (SSL_CERT_FILE names another)"
_ERRORS = (OSError, EOFError, imaplib.IMAP4.error, poplib.error_proto)


def _no_tls(box: Mailbox, command: str, secure: str) -> DeliveryError:
    """A server that will not start TLS: the password is never sent in the clear."""
    return DeliveryError(
        f"{box.describe()} does not offer {command}: the password is not sent without TLS",
        hint=f"use {secure}:// (TLS from the start), or turn on {command} on the server",
    )


def _login_refused(box: Mailbox, exc: Exception) -> DeliveryError:
    """The server said no to the user and password (its words, never the password)."""
    return DeliveryError(f"{box.describe()} refused the login: {_reason(exc)}", hint="check the user in [bounces] source and the password")


def _failed(box: Mailbox, doing: str, exc: BaseException) -> DeliveryError:
    hint = _TLS_HINT if isinstance(exc, ssl.SSLCertVerificationError) else None
    return DeliveryError(f"{box.describe()}: {doing} failed: {_reason(exc)}", hint=hint)


def _quote(name: str) -> str:
    """An IMAP mailbox name as a quoted string."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapSource:
    """The folder `box.folder` of an IMAP mailbox, logged in (see the module)."""

    name = "imap"

    def __init__(self, box: Mailbox, password: str) -> None:
        self.box = box
        self.conn: imaplib.IMAP4 | None = None
        self.made: set[str] = set()
        context = ssl.create_default_context()
        try:
            if box.scheme == "imaps":
                self.conn = imaplib.IMAP4_SSL(box.host, box.port, ssl_context=context, timeout=TIMEOUT)
            else:
                self.conn = imaplib.IMAP4(box.host, box.port, timeout=TIMEOUT)
                if "STARTTLS" not in self.conn.capabilities:
                    raise _no_tls(box, "STARTTLS", "imaps")
                self.conn.starttls(ssl_context=context)
        except DeliveryError:
            self._drop()
            raise
        except _ERRORS as exc:
            self._drop()
            raise _failed(box, "connecting", exc) from None
        try:
            if password.isascii() and box.user.isascii():
                self.conn.login(_quote(box.user), password)  # imaplib quotes the password, not the user
            else:
                self.conn.authenticate("PLAIN", lambda _: f"\0{box.user}\0{password}".encode())
        except imaplib.IMAP4.abort as exc:
            self._drop()
            raise _failed(box, "logging in", exc) from None
        except imaplib.IMAP4.error as exc:
            self._drop()
            raise _login_refused(box, exc) from None
        except _ERRORS as exc:
            self._drop()
            raise _failed(box, "logging in", exc) from None
        try:
            typ, data = self.conn.capability()
            self.capabilities = set(data[-1].decode("ascii", "replace").upper().split()) if typ == "OK" and data else set()
            self.delimiter = self._delimiter()
            typ, data = self.conn.select(_quote(box.folder))
        except _ERRORS as exc:
            self._drop()
            raise _failed(box, "opening the folder", exc) from None
        if typ != "OK":
            self._drop()
            raise DeliveryError(
                f"{box.describe()}: no folder {box.folder!r} to read ({_reason(imaplib.IMAP4.error(data[-1] if data else b''))})",
                hint="the folder is the URL's path: imaps://user@host/INBOX",
            )

    def _delimiter(self) -> str:
        """The server's hierarchy delimiter (LIST "" ""), `/` when it has none."""
        assert self.conn is not None
        typ, data = self.conn.list('""', '""')
        for line in data if typ == "OK" else []:
            if isinstance(line, bytes) and (m := re.match(rb'^\([^)]*\) (?:"((?:[^"\\]|\\.)*)"|NIL)', line)) and m.group(1):
                return m.group(1).decode("ascii", "replace").replace("\\\\", "\\").replace('\\"', '"')
        return "/"

    def _drop(self) -> None:
        """Close the connection without a word to the server (it is broken, or unwanted)."""
        if self.conn is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                self.conn.shutdown()
            self.conn = None

    def _live(self) -> imaplib.IMAP4:
        if self.conn is None:
            raise DeliveryError(f"{self.box.describe()}: the connection is closed")
        return self.conn

    def messages(self) -> Iterator[tuple[str, bytes]]:
        conn = self._live()
        try:
            typ, data = conn.uid("SEARCH", "UNDELETED")
        except _ERRORS as exc:
            self._drop()
            raise _failed(self.box, "listing the messages", exc) from None
        if typ != "OK":
            raise DeliveryError(f"{self.box.describe()}: listing the messages failed: {_reason(imaplib.IMAP4.error(data[-1]))}")
        uids = sorted({int(u) for u in (data[0] or b"").split() if u.isdigit()})
        for uid in uids:
            try:
                # at most one byte past the limit: a longer message is kept aside whole, never read whole
                typ, parts = self._live().uid("FETCH", str(uid), f"(BODY.PEEK[]<0.{MAX_BYTES + 1}>)")
            except _ERRORS as exc:
                self._drop()
                raise _failed(self.box, f"reading message {uid}", exc) from None
            self._live().untagged_responses.clear()  # EXPUNGE and FETCH notices pile up otherwise
            body = next((p[1] for p in parts or () if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], bytes)), None)
            if typ != "OK" or body is None:
                continue  # removed by another reader meanwhile
            yield str(uid), body

    def _folder(self, path: tuple[str, ...]) -> str:
        name = self.delimiter.join(path)
        if name not in self.made:
            conn = self._live()
            typ, data = conn.list('""', _quote(name))
            if typ != "OK" or not any(isinstance(d, bytes) for d in data):
                typ, data = conn.create(_quote(name))
                if typ != "OK" and b"ALREADYEXISTS" not in (data[-1] if data else b"").upper():
                    raise DeliveryError(f"{self.box.describe()}: cannot make the folder {name!r}: {_reason(imaplib.IMAP4.error(data[-1]))}")
            self.made.add(name)
        return name

    def _move(self, uid: str, path: tuple[str, ...]) -> None:
        try:
            folder = _quote(self._folder(path))
            conn = self._live()
            if "MOVE" in self.capabilities:
                typ, data = conn.uid("MOVE", uid, folder)
            else:
                typ, data = conn.uid("COPY", uid, folder)
                if typ == "OK":
                    typ, data = conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
                if typ == "OK" and "UIDPLUS" in self.capabilities:
                    typ, data = conn.uid("EXPUNGE", uid)
                # without UIDPLUS the original stays flagged \Deleted: the next run skips it; we never expunge it
            conn.untagged_responses.clear()
        except DeliveryError:
            raise
        except _ERRORS as exc:
            self._drop()
            raise _failed(self.box, f"moving message {uid}", exc) from None
        if typ != "OK":
            raise DeliveryError(f"{self.box.describe()}: moving message {uid} failed: {_reason(imaplib.IMAP4.error(data[-1]))}")

    def done(self, ref: str) -> None:
        self._move(ref, PROCESSED)

    def set_aside(self, ref: str, why: str) -> None:
        self._move(ref, SET_ASIDE)

    def close(self) -> None:
        """Log out (never CLOSE: it would expunge messages someone else flagged \\Deleted)."""
        if self.conn is None:
            return
        with contextlib.suppress(_ERRORS):
            self.conn.logout()
        self.conn = None


class _POP3Lines(poplib.POP3):
    """poplib's POP3 with lines up to `MAX_LINE` (its own limit, 2048, refuses ordinary mail)."""

    def _getline(self) -> tuple[bytes, int]:
        line = self.file.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        if line[-2:] == b"\r\n":
            return line[:-2], len(line)
        if line[:1] == b"\r":
            return line[1:-1], len(line)
        return line[:-1], len(line)


class _POP3SLines(_POP3Lines, poplib.POP3_SSL):
    """`_POP3Lines` over TLS from the start."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Pop3Source:
    """A POP3 mailbox, logged in (see the module); messages set aside are kept in `keep_dir`."""

    name = "pop3"

    def __init__(self, box: Mailbox, password: str, keep_dir: Path) -> None:
        self.box = box
        self.keep_dir = keep_dir
        self.conn: poplib.POP3 | None = None
        self.numbers: dict[str, int] = {}
        self.current: tuple[str, bytes] = ("", b"")  # the message last read (set aside: saved from here)
        context = ssl.create_default_context()
        try:
            if box.scheme == "pop3s":
                self.conn = _POP3SLines(box.host, box.port, context=context, timeout=TIMEOUT)
            else:
                self.conn = _POP3Lines(box.host, box.port, timeout=TIMEOUT)
                try:
                    offered = self.conn.capa()
                except poplib.error_proto:
                    offered = {}
                if "STLS" not in offered:
                    raise _no_tls(box, "STLS", "pop3s")
                self.conn.stls(context=context)
        except DeliveryError:
            self._drop()
            raise
        except _ERRORS as exc:
            self._drop()
            raise _failed(box, "connecting", exc) from None
        try:
            self.conn.user(box.user)
            self.conn.pass_(password)
        except poplib.error_proto as exc:
            self._drop()
            raise _login_refused(box, exc) from None
        except _ERRORS as exc:
            self._drop()
            raise _failed(box, "logging in", exc) from None

    def _drop(self) -> None:
        """Close the connection without QUIT: the server deletes nothing."""
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
            self.conn = None

    def _live(self) -> poplib.POP3:
        if self.conn is None:
            raise DeliveryError(f"{self.box.describe()}: the connection is closed")
        return self.conn

    def messages(self) -> Iterator[tuple[str, bytes | None]]:
        try:
            _, listing, _ = self._live().uidl()
        except _ERRORS as exc:
            self._drop()
            raise _failed(self.box, "listing the messages", exc) from None
        for line in listing:
            number, _, uid = line.decode("ascii", "replace").partition(" ")
            if number.isdigit() and uid:
                self.numbers[uid] = int(number)
        sizes = self._sizes()
        for uid, number in sorted(self.numbers.items(), key=lambda item: item[1]):
            if sizes.get(number, 0) > MAX_BYTES:  # POP3 cannot read part of it: it stays on the server, counted
                yield uid, None
                continue
            try:
                _, lines, _ = self._live().retr(number)
            except poplib.error_proto as exc:
                if exc.args and isinstance(exc.args[0], bytes):
                    continue  # the server's -ERR: gone meanwhile (another session deleted it)
                self._drop()  # not an answer: the connection broke
                raise _failed(self.box, f"reading message {number}", exc) from None
            except _ERRORS as exc:
                self._drop()
                raise _failed(self.box, f"reading message {number}", exc) from None
            data = b"\r\n".join(lines) + b"\r\n"
            self.current = (uid, data)
            yield uid, data

    def _sizes(self) -> dict[int, int]:
        """Each message's size in octets, by number (LIST)."""
        try:
            _, listing, _ = self._live().list()
        except _ERRORS as exc:
            self._drop()
            raise _failed(self.box, "listing the messages", exc) from None
        sizes = {}
        for line in listing:
            number, _, size = line.decode("ascii", "replace").partition(" ")
            if number.isdigit() and size.strip().isdigit():
                sizes[int(number)] = int(size.strip())
        return sizes

    def _delete(self, uid: str) -> None:
        try:
            self._live().dele(self.numbers[uid])
        except _ERRORS as exc:
            self._drop()
            raise _failed(self.box, f"deleting message {self.numbers[uid]}", exc) from None

    def done(self, ref: str) -> None:
        self._delete(ref)

    def set_aside(self, ref: str, why: str) -> None:
        """Save the message in `keep_dir` (tmp/, fsync, then new/), then delete it on the server."""
        if self.current[0] == ref:
            data = self.current[1]
        else:
            try:
                _, lines, _ = self._live().retr(self.numbers[ref])
            except _ERRORS as exc:
                self._drop()
                raise _failed(self.box, f"reading message {self.numbers[ref]}", exc) from None
            data = b"\r\n".join(lines) + b"\r\n"
        keep(self.keep_dir, data, why)
        self._delete(ref)

    def close(self) -> None:
        """QUIT: only now does the server delete the messages done with."""
        if self.conn is None:
            return
        try:
            self.conn.quit()
        except _ERRORS as exc:
            self._drop()
            raise _failed(self.box, "finishing (QUIT: the messages read stay on the server, to be read again)", exc) from None
        self.conn = None


def keep(folder: Path, data: bytes, why: str) -> Path:
    """Write `data` durably into the Maildir `folder` (0700, files 0600) under a name made of its
    digest (saving the same message twice keeps one file); the file's path."""
    try:
        for sub in ("", "tmp", "new", "cur"):
            private_dir(folder / sub)
        name = f"{hashlib.sha256(data).hexdigest()[:32]}.{re.sub(r'[^a-z]', '', why.lower())[:20] or 'kept'}"
        target = folder / "new" / name
        if target.exists():
            return target
        tmp = folder / "tmp" / f"{name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target)
        _fsync_dir(folder / "new")
        return target
    except OSError as exc:
        raise write_error(folder, exc) from None


def open_remote(spec: str, password_env: str, environ: Mapping[str, str] | None = None, *, keep_dir: Path | None = None) -> MailSource:
    """The mailbox at `spec` (imaps://, imap://, pop3s://, pop3://), connected over verified TLS
    and logged in with the password in the variable `password_env` of `environ` (default: the
    process's). POP3 needs `keep_dir`, where messages set aside are kept."""
    box = parse_source(spec)
    password = _password(password_env, environ)
    if box.protocol == "IMAP":
        return ImapSource(box, password)
    if keep_dir is None:
        raise DeliveryError(f"{box.describe()}: no local folder to keep unreadable messages in (keep_dir)")
    return Pop3Source(box, password, keep_dir)
