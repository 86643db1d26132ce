"""Test support: real SMTP servers (aiosmtpd) on 127.0.0.1 that record what they accept and
misbehave on cue (421, 450, 550 5.1.1, a dropped connection mid-DATA, a stall).

`python tests/smtp_servers.py PORT FILE` runs a recording server in its own process: each
accepted message appends `recipient<TAB>Message-ID` to FILE (flushed before the 250 goes back),
so a test can kill the publisher at will and still compare with what the server received;
`recording_server` starts one that way and `received` reads its file.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def free_port() -> int:
    """A TCP port on loopback nobody listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    """One accepted message: the envelope recipient and the parsed message."""

    recipient: str
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Script:
    """How the server misbehaves.

    `rcpt` maps a recipient to a RCPT reply (e.g. "550 5.1.1 no such user"); `data_reply` is
    the reply to the first `times` DATA attempts of each recipient (None: accept); `drop` closes
    the connection instead of replying at end of DATA; `stall` sleeps that many seconds first.
    `times=0` means every attempt.
    """

    rcpt: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    drop: bool = False
    stall: float = 0.0
    times: int = 0
    pipelining: bool = False  # advertise PIPELINING (RFC 2920): the client then sends MAIL, RCPT and DATA at once
    domain_reply: dict[str, str] = field(default_factory=dict)  # recipient domain -> DATA reply, for its first `times` attempts


PIPELINING = False  # the default for every server; a test module may turn it on for all its servers


class Handler:
    """An aiosmtpd handler that records accepted messages and follows a `Script`."""

    def __init__(self, script: Script | None = None, record_to: str | None = None) -> None:
        self.script = script or Script()
        self.received: list[Received] = []
        self.attempts: Counter[str] = Counter()
        self.sessions = 0
        self._lock = threading.Lock()
        self._fd = os.open(record_to, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if record_to else None

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        with self._lock:
            self.sessions += 1
        session.host_name = hostname
        if self.script.pipelining or PIPELINING:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address in self.script.rcpt:
            return self.script.rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        s = self.script
        rcpt = envelope.rcpt_tos[0]
        with self._lock:
            self.attempts[rcpt] += 1
            scripted = s.times == 0 or self.attempts[rcpt] <= s.times
        if scripted and s.stall:
            await asyncio.sleep(s.stall)
        if scripted and s.drop:
            server.transport.close()
            return "250 2.0.0 never seen"
        if scripted and s.data_reply:
            return s.data_reply
        if scripted and (reply := s.domain_reply.get(rcpt.rpartition("@")[2])):
            return reply
        for r in envelope.rcpt_tos:
            self._record(r, envelope.content)
        return "250 2.0.0 OK queued"

    def _record(self, rcpt: str, data: bytes) -> None:
        with self._lock:
            self.received.append(Received(rcpt, data))
        if self._fd is not None:
            msg = email.message_from_bytes(data, policy=email.policy.default)
            os.write(self._fd, f"{rcpt}\t{msg.get('Message-ID', '')}\n".encode())

    def recipients(self) -> Counter[str]:
        """How many messages each recipient got."""
        with self._lock:
            return Counter(r.recipient for r in self.received)


def _authenticator(username: str, password: str) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = getattr(auth_data, "login", b"") == username.encode() and getattr(auth_data, "password", b"") == password.encode()
        return AuthResult(success=ok, handled=False)

    return check


@contextmanager
def smtp_server(
    script: Script | None = None, *, auth: tuple[str, str] | None = None, handler: Handler | None = None
) -> Iterator[tuple[Handler, int]]:
    """A real aiosmtpd server on 127.0.0.1 in this process: yields (handler, port). `handler`
    replaces the one made from `script` (a test's subclass)."""
    handler = handler or Handler(script)
    port = free_port()
    kwargs: dict[str, Any] = {"enable_SMTPUTF8": True}
    if auth:
        kwargs.update(authenticator=_authenticator(*auth), auth_required=True, auth_require_tls=False, auth_exclude_mechanism=["LOGIN"])
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def read_record(path: str) -> Counter[str]:
    """What a recording server in another process accepted: messages per recipient."""
    try:
        with open(path, encoding="utf-8") as f:
            return Counter(line.split("\t", 1)[0] for line in f if line.strip())
    except FileNotFoundError:
        return Counter()


@contextmanager
def _recording_process(script: Path, folder: Path) -> Iterator[tuple[int, Path]]:
    """`script PORT RECORD` in its own process, once it prints `ready`: its port and the record
    file where each accepted message is logged; stopped with SIGINT afterwards."""
    port, record = free_port(), folder / "received.tsv"
    server = subprocess.Popen([sys.executable, str(script), str(port), str(record)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield port, record
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)


def recording_server(folder: Path) -> contextlib.AbstractContextManager[tuple[int, Path]]:
    """A recording SMTP server (aiosmtpd, this file run as a script) in its own process."""
    return _recording_process(Path(__file__), folder)


def fast_recording_server(folder: Path) -> contextlib.AbstractContextManager[tuple[int, Path]]:
    """`recording_server`'s twin for tens of thousands of messages: `fast_sink.py` (asyncio,
    PIPELINING, only the Message-ID read); the same record file."""
    return _recording_process(Path(__file__).with_name("fast_sink.py"), folder)


def received(path: Path) -> Counter[str]:
    """Message-IDs a recording server in another process accepted, with how many times each."""
    if not path.exists():
        return Counter()
    return Counter(line.rstrip("\n").split("\t")[1] for line in path.read_text("utf-8").splitlines() if line)


if __name__ == "__main__":
    port, out = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Handler(record_to=out), hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        controller.stop()


def plain_message(edition: Any, **kw: Any) -> bytes:
    """A stand-in for `delivery.message.build_message` (same keywords) for use until it exists."""
    from email.message import EmailMessage
    from email.utils import format_datetime, formataddr

    html, text = edition.personalize(kw["to_name"], kw["unsubscribe_url"])
    msg = EmailMessage()
    msg["From"] = formataddr((kw["from_name"], kw["from_address"]))
    msg["To"] = formataddr((kw["to_name"], kw["to_address"]))
    msg["Subject"] = edition.subject
    msg["Date"] = format_datetime(kw["date"])
    msg["Message-ID"] = kw["message_id"]
    msg["List-Unsubscribe"] = f"<{kw['unsubscribe_url']}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes(policy=email.policy.SMTP)


def message_builder() -> Any:
    """The real `build_message` once it exists, else `plain_message`."""
    try:
        from review_press.delivery.message import build_message
    except ImportError:
        return plain_message
    return build_message
