"""Sending's pieces: envelopes, SMTP connections, a token-bucket rate limit, the retry policy
and a circuit breaker that stops a run when the server refuses everything; the pool that uses
them is `pool.Pool` (one thread driving every connection, `loop.SendLoop`, or a thread each).

The pool knows nothing of SQLite: it takes `Job`s (a claim plus how to render it) and returns
`ledger.Result`s. A `Connector` opens connections; `SmtpConnector` speaks SMTP through
smtplib, `maildir.MaildirConnector` drops files into a Maildir. The SMTP password is held in a
field that is never shown (`repr=False`) and is never put into an error or a log line.
"""

from __future__ import annotations

import base64
import re
import smtplib
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import DeliveryError
from ..store.ledger import Claim
from .replies import read_reply

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Envelope:
    """One message ready for the wire: envelope sender and recipient, and the MIME bytes."""

    sender: str
    recipient: str
    data: bytes
    smtputf8: bool = False


_PIPELINE_OK = ((250,), (250, 251), (354,))  # the good replies to MAIL, RCPT and DATA
BACKOFF_CODES = ("421", "450", "451")  # "slow down" from a destination: its domain backs off for every sender


class NothingToSend(Exception):
    """Raised by a render for a reader whose message would be empty (a digest holding nothing new
    for them): their row is settled `skipped`, with this as its reason, and nothing is sent."""


class SendError(Exception):
    """A message was not accepted. `temporary` ones (4xx, dropped connection) are retried.

    `sender` marks a refusal at MAIL FROM: the server refused the sender before it knew the
    recipient, so it says nothing about the reader and never makes their message `failed`.
    """

    def __init__(self, reply: str, *, temporary: bool, bounce: bool = False, reconnect: bool = False, sender: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.temporary = temporary
        self.bounce = bounce
        self.reconnect = reconnect
        self.sender = sender


def broken(reply: str) -> SendError:
    """A message that did not get through because its connection failed (could not open, hung
    up, timed out, said something that is not SMTP): nothing in it is about the reader, and it
    is tried again on a new connection."""
    return SendError(reply, temporary=True, reconnect=True)


def classify(code: int, text: str, *, recipient_stage: bool) -> SendError:
    """Turn a refusing reply into a `SendError`: 4xx temporary, 5xx permanent, 5.1.x at RCPT/DATA a bounce;
    before the recipient stage (MAIL FROM) a refusal of the sender, never of the reader.

    A code that is not one of SMTP's three digits (smtplib reads "4", the first byte of a "451"
    a hang-up cut short, as 4, and a line that is not SMTP at all as -1) is a broken
    connection, not a refusal: temporary, on a new connection, never the reader's `failed`."""
    reply = f"{code} {text}".strip()
    if not 200 <= code < 600:
        return broken(f"connection lost: the reply was not SMTP ({reply[:80]!r})")
    enhanced = _ENHANCED.match(text)
    bounce = 500 <= code < 600 and recipient_stage and enhanced is not None and enhanced.group(1, 2) == ("5", "1")
    return SendError(reply, temporary=400 <= code < 500, bounce=bounce, reconnect=code == 421, sender=not recipient_stage)


class Connection(Protocol):
    """An open connection that delivers one message at a time."""

    def send(self, envelope: Envelope) -> str:
        """Deliver; return the server's reply (e.g. `250 2.0.0 Ok`) or raise `SendError`."""
        ...

    def close(self) -> None: ...


class Connector(Protocol):
    """Opens connections (one per sending thread); `describe()` names the target for messages."""

    def open(self) -> Connection: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class SmtpConnector:
    """How to reach an SMTP server. `password` is never shown in repr, errors or logs."""

    host: str
    port: int = 587
    username: str = ""
    password: str = field(default="", repr=False)
    starttls: bool = True
    ssl: bool = False
    timeout: float = 30.0
    local_hostname: str | None = None

    def describe(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def open(self) -> SmtpConnection:
        """Connect, say EHLO, STARTTLS or SSL as configured, and log in; `DeliveryError` if that fails."""
        where = self.describe()
        client: smtplib.SMTP | None = None
        try:
            if self.ssl:
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname)
            client.ehlo()
            if self.starttls and not self.ssl:
                if not client.has_extn("starttls"):
                    client.close()
                    raise DeliveryError(
                        f"{where} does not offer STARTTLS", hint="set starttls = false in [smtp] only for a server on a trusted network"
                    )
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if self.username:
                self._login(client)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"{where} refused the login of {self.username!r}: {exc.smtp_code} {_text(exc.smtp_error)}",
                hint="check [smtp] username and the password in the variable named by password_env",
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"cannot connect to {where}: {_describe(exc)}", hint="check [smtp] host, port, ssl and starttls") from None
        except UnicodeError:  # a safety net: an encoding error's message quotes the text (and position) it failed on
            if client is not None:
                client.close()
            what = self._non_ascii() or "[smtp] host"
            raise DeliveryError(f"cannot connect to {where}: {what} cannot be encoded for this server", hint=_ASCII_HINT) from None
        return SmtpConnection(client)

    def _non_ascii(self) -> str:
        """Which credential is not ASCII, named by its setting (never shown); "" when both are ASCII."""
        if not self.username.isascii():
            return "[smtp] username"
        return "" if self.password.isascii() else "the password (the variable named by [smtp] password_env)"

    def _login(self, client: smtplib.SMTP) -> None:
        """AUTH: smtplib's `login` for ASCII credentials (CRAM-MD5, PLAIN or LOGIN, as offered).

        smtplib encodes credentials as ASCII, so for others this sends their UTF-8 bytes (a
        value read from the environment that is not UTF-8: its bytes as they were) with PLAIN,
        whose RFC 4616 says UTF-8, else LOGIN; a server that offers neither gets a
        `DeliveryError` naming the setting, which must then be ASCII. No character of the
        password reaches an error or a log.
        """
        if self.username.isascii() and self.password.isascii():
            client.login(self.username, self.password)
            return
        if not client.has_extn("auth"):
            raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        offered = client.esmtp_features["auth"].upper().split()
        user = self.username.encode("utf-8", "surrogateescape")
        secret = self.password.encode("utf-8", "surrogateescape")
        if "PLAIN" in offered:
            code, reply = client.docmd("AUTH", "PLAIN " + _b64(b"\0" + user + b"\0" + secret))
        elif "LOGIN" in offered:
            code, reply = client.docmd("AUTH", "LOGIN " + _b64(user))
            if code == 334:
                code, reply = client.docmd(_b64(secret))
        else:
            client.close()
            raise DeliveryError(
                f"{self.describe()} offers AUTH {' '.join(offered) or '(no mechanism)'} only, which takes ASCII credentials:"
                f" {self._non_ascii()} must be ASCII for this server",
                hint=_ASCII_HINT,
            )
        if code not in (235, 503):  # 503: already authenticated
            raise smtplib.SMTPAuthenticationError(code, reply)


_ASCII_HINT = "use an ASCII password (and username) for this server, or one that offers AUTH PLAIN"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _text(raw: bytes | str) -> str:
    """A reply's text on one line, without NUL (a store cannot keep it)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text.replace("\r", " ").replace("\n", " ").replace("\x00", "")


def _describe(exc: BaseException) -> str:
    """A short reason for an exception that holds no secret: smtplib's own words or the OS error, never a repr."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, smtplib.SMTPException):  # smtplib's own fixed words, e.g. "SMTP AUTH extension not supported by server."
        return str(exc) or exc.__class__.__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return exc.__class__.__name__


def _path(address: str) -> str:
    """An envelope address as an SMTP path, `<address>`. The addresses are validated long before
    (`store.parse_address`, press.toml), so this is plain formatting, not smtplib's `quoteaddr`
    (an RFC 822 parser that cost a quarter of a send); a line break or bracket is refused here
    all the same, so no address can ever smuggle in a command."""
    if not address or any(c in address for c in "\r\n<>"):
        raise SendError(f"not an envelope address: {address!r}", temporary=False)
    return f"<{address}>"


def pipelined_commands(sender: str, recipient: str, smtputf8: bool) -> bytes:
    """MAIL, RCPT and DATA in one write (RFC 2920), for paths checked by `SmtpConnection.paths`."""
    extra = " SMTPUTF8" if smtputf8 else ""
    return f"MAIL FROM:{sender}{extra}\r\nRCPT TO:{recipient}\r\nDATA\r\n".encode("utf-8" if smtputf8 else "ascii")


def pipeline_refusal(replies: list[tuple[int, bytes]]) -> SendError | None:
    """The first of the replies read so far to a pipelined MAIL, RCPT and DATA (in that order)
    that refuses, classified (a refusal of MAIL is of the sender, not the reader); None while
    every one is good."""
    for i, (code, text) in enumerate(replies):
        if code not in _PIPELINE_OK[i]:
            return classify(code, _text(text), recipient_stage=i > 0)
    return None


def _stuffed(data: bytes) -> bytes:
    """A CRLF message dot-stuffed (a line that starts with a dot gets another) and ended with
    CRLF.CRLF. The lines to stuff are found with `bytes.find` and the message joined once:
    `bytes.replace` counts the matches first and then searches again, five times the cost on a
    34 KB message (smtplib's regular expression costs more than the rest of its send)."""
    find = data.find
    at = find(b"\r\n.")
    end = b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"
    if at < 0 and not data.startswith(b"."):
        return data + end
    view = memoryview(data)
    pieces: list[bytes | memoryview] = [b"."] if data.startswith(b".") else []
    start = 0
    while at >= 0:
        pieces += (view[start : at + 3], b".")
        start = at + 3
        at = find(b"\r\n.", start)
    pieces += (view[start:], end)
    return b"".join(pieces)


def _data(client: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """smtplib's `data()` for a CRLF message (see `_stuffed`)."""
    code, text = client.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, text)
    client.send(_stuffed(data))
    return client.getreply()


class SmtpConnection:
    """One smtplib session reused for many messages (MAIL, RCPT, DATA; RSET after a refusal)."""

    def __init__(self, client: smtplib.SMTP) -> None:
        self.client = client

    def paths(self, envelope: Envelope) -> tuple[str, str]:
        """The envelope's sender and recipient as SMTP paths, checked before a command goes out; a
        `SendError` for one that is not an address, or a Unicode one this server cannot take."""
        sender, recipient = _path(envelope.sender), _path(envelope.recipient)
        if envelope.smtputf8 and not self.client.has_extn("smtputf8"):
            raise SendError("the server does not offer SMTPUTF8, needed for this address", temporary=False)
        return sender, recipient

    def send(self, envelope: Envelope) -> str:
        c = self.client
        sender, recipient = self.paths(envelope)
        try:
            if c.has_extn("pipelining"):
                code, text = self._pipelined(sender, recipient, envelope)
            else:
                c.command_encoding = "utf-8" if envelope.smtputf8 else "ascii"  # as smtplib's mail() sets it
                code, text = c.docmd("mail", f"FROM:{sender}" + (" SMTPUTF8" if envelope.smtputf8 else ""))
                if code != 250:
                    raise self._refused(code, text, recipient_stage=False)
                code, text = c.docmd("rcpt", f"TO:{recipient}")
                if code not in (250, 251):
                    raise self._refused(code, text, recipient_stage=True)
                code, text = _data(c, envelope.data)
        except smtplib.SMTPDataError as exc:  # refused at DATA (before the body)
            raise self._refused(exc.smtp_code, exc.smtp_error, recipient_stage=True) from None
        except (smtplib.SMTPException, OSError) as exc:  # dropped, timed out, or a reply smtplib cannot parse
            raise broken(f"connection lost: {_describe(exc)}") from None
        if code != 250:
            raise self._refused(code, text, recipient_stage=True)
        return f"{code} {_text(text)}"

    def _pipelined(self, sender: str, recipient: str, envelope: Envelope) -> tuple[int, bytes]:
        """MAIL, RCPT and DATA in one write, their three replies read after (RFC 2920), then the
        body: two round trips a message instead of four. A refusal is classified as in the
        unpipelined dialogue; a server that said 354 although it refused MAIL or RCPT gets an
        empty message ended at once, then RSET, and sends nothing."""
        c = self.client
        c.send(pipelined_commands(sender, recipient, envelope.smtputf8))
        if c.file is None:  # the stream smtplib reads its replies from (made by its first reply)
            c.file = c.sock.makefile("rb")
        stream = c.file
        replies: list[tuple[int, bytes]] = []
        for _ in range(3):  # one at a time: a server that hangs up after a refusal still has it read
            try:
                replies.append(read_reply(stream))
            except (smtplib.SMTPException, OSError):  # it hung up after refusing: the refusal is the news, not the hang-up
                if (error := pipeline_refusal(replies)) is None:
                    raise
                error.reconnect = True
                raise error from None
        if (error := pipeline_refusal(replies)) is None:
            c.send(_stuffed(envelope.data))
            return read_reply(stream)
        if replies[2][0] == 354:  # it would take the body of a message it has no sender or recipient for
            c.send(b".\r\n")
            c.getreply()
        raise self._reset(error)

    def drivable(self) -> bool:
        """True when `loop.SendLoop` may drive this connection: a plain socket (no TLS) to a
        server that offers PIPELINING."""
        return not isinstance(self.client.sock, ssl.SSLSocket) and self.client.has_extn("pipelining")

    def _refused(self, code: int, text: bytes | str, *, recipient_stage: bool) -> SendError:
        """A refusal of one command, classified (`classify`), after RSET (`_reset`)."""
        return self._reset(classify(code, _text(text), recipient_stage=recipient_stage))

    def _reset(self, error: SendError) -> SendError:
        """`error`, a refusal, after RSET puts the session back for the next message; the
        connection is given up (`reconnect`) when it does not take the RSET (a 421, a hang-up)."""
        try:
            reset, _ = self.client.rset()
        except (smtplib.SMTPException, OSError):
            reset = 0
        error.reconnect = error.reconnect or reset != 250
        return error

    def close(self) -> None:
        try:
            self.client.quit()
        except (smtplib.SMTPException, OSError):
            self.client.close()


class RateLimiter:
    """Token buckets shared by the sending threads: at most `per_second` a second (burst of
    one second's worth) and `per_hour` in any hour's bucket. 0 means no limit."""

    def __init__(
        self, per_second: float = 0.0, per_hour: int = 0, used_this_hour: int = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        now = clock()
        self._buckets = []  # [rate per second, capacity, tokens, last refill]
        if per_second > 0:
            self._buckets.append([per_second, max(1.0, per_second), max(1.0, per_second), now])
        if per_hour > 0:
            self._buckets.append([per_hour / 3600.0, float(per_hour), float(max(0, per_hour - used_this_hour)), now])

    def wait(self, stop: threading.Event) -> bool:
        """Block until a message may go; False if `stop` was set meanwhile."""
        while (delay := self.take()) > 0.0:
            if stop.wait(min(delay, 1.0)):
                return False
        return True

    def take(self) -> float:
        """Take a token if every bucket has one and return 0.0; else take nothing and return the
        seconds until one may (the send loop's non-blocking `wait`)."""
        if not self._buckets:  # no limit: nothing to count, and no lock for the sending threads to queue on
            return 0.0
        with self._lock:
            now, delay = self._clock(), 0.0
            for b in self._buckets:
                b[2] = min(b[1], b[2] + (now - b[3]) * b[0])
                b[3] = now
                if b[2] < 1.0:
                    delay = max(delay, (1.0 - b[2]) / b[0])
            if delay == 0.0:
                for b in self._buckets:
                    b[2] -= 1.0
        return delay


@dataclass(frozen=True)
class Policy:
    """Retry and breaker settings. The breaker trips when, of the last `window` attempts
    (at least `min_samples`), more than `threshold` failed for a reason other than a bounce."""

    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    window: int = 50
    min_samples: int = 20
    threshold: float = 0.8


class Breaker:
    """Counts recent attempts across threads; `tripped` holds the reason once it trips."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._recent: deque[bool] = deque(maxlen=policy.window)
        self._failed = 0  # the failures among `_recent`, kept as they come and go (no count per attempt)
        self.tripped: str | None = None

    def record(self, ok: bool, reply: str = "") -> bool:
        """Note one attempt; True when this one tripped the breaker."""
        with self._lock:
            recent = self._recent
            if len(recent) == recent.maxlen and not recent[0]:  # the oldest, a failure, leaves the window
                self._failed -= 1
            recent.append(ok)
            if not ok:
                self._failed += 1
            failed = self._failed
            if self.tripped is None and len(self._recent) >= self.policy.min_samples and failed > self.policy.threshold * len(self._recent):
                self.tripped = f"{failed} of the last {len(self._recent)} attempts failed (last reply: {reply or 'none'})"
                return True
        return False


@dataclass(frozen=True)
class Job:
    """A claim and the function that renders it into an `Envelope` (run in the sending thread)."""

    claim: Claim
    render: Callable[[Claim], Envelope]
