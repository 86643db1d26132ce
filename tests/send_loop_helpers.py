"""What the send loop's tests share: claims and their messages, a pool on a loopback port,
draining its results, and raw loopback servers that script each session byte by byte."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from review_press.delivery.pool import Pool
from review_press.delivery.smtp import Envelope, Job, Policy, SmtpConnector
from review_press.store.ledger import Claim, Result

FAST = Policy(max_attempts=3, backoff_base=0.01, backoff_cap=0.05, window=1000, min_samples=1000)


def render(claim: Claim) -> Envelope:
    data = f"From: a@example.org\r\nTo: {claim.address}\r\nMessage-ID: {claim.message_id}\r\nSubject: hi\r\n\r\nHello\r\n.dot\r\n".encode()
    return Envelope("a@example.org", claim.envelope, data, smtputf8=not claim.envelope.isascii())


def claims(n: int, domain: str = "example.org") -> list[Claim]:
    return [Claim(i, f"r{i}@{domain}", f"r{i}@{domain}", "", f"<m{i}@example.org>", token=f"t{i}") for i in range(1, n + 1)]


def pool_for(port: int, concurrency: int, policy: Policy = FAST, timeout: float = 5.0) -> Pool:
    return Pool(SmtpConnector("127.0.0.1", port, starttls=False, timeout=timeout), concurrency, policy)


def drain(pool: Pool, items: list[Claim], render: Callable[[Claim], Envelope] = render) -> dict[int, Result]:
    """Submit `items`, collect one result for each, close the pool."""
    for c in items:
        pool.submit(Job(c, render))
    results: dict[int, Result] = {}
    while len(results) < len(items):
        r = pool.results.get(timeout=30)
        assert r.subscriber_id not in results
        results[r.subscriber_id] = r
    pool.close()
    return results


@contextmanager
def raw_server(*sessions: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback server that runs one function per connection, in the order they arrive; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for session in sessions:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                session(conn)
        listener.close()  # no more: a connection attempt is refused

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)
        listener.close()


def until(conn: socket.socket, end: bytes, limit: int = 1 << 30) -> bytes:
    """Read from `conn` until `end` arrives (or `limit` bytes, or a hang-up)."""
    buf = bytearray()
    while len(buf) < limit:
        got = conn.recv(1 << 20)
        buf += got
        if not got or end in buf[-len(got) - len(end) :]:
            break
    return bytes(buf)


def greet(conn: socket.socket, pipelining: bool = True) -> None:
    """Say 220, read EHLO and answer it, offering PIPELINING (or not)."""
    conn.sendall(b"220 raw ESMTP\r\n")
    until(conn, b"\r\n")
    conn.sendall(b"250-raw\r\n250-PIPELINING\r\n250 8BITMIME\r\n" if pipelining else b"250-raw\r\n250 8BITMIME\r\n")


def quit_(conn: socket.socket) -> None:
    if until(conn, b"\r\n").upper().startswith(b"QUIT"):
        conn.sendall(b"221 bye\r\n")


def commands(conn: socket.socket) -> bytes | None:
    """The next MAIL, RCPT and DATA of a session (however they come), answering RSET on the way;
    None at QUIT (answered) or a hang-up."""
    while got := until(conn, b"\r\n"):
        if got.upper().startswith(b"QUIT"):
            conn.sendall(b"221 bye\r\n")
            return None
        if got.upper().startswith(b"RSET"):
            conn.sendall(b"250 ok\r\n")
            continue
        return got if b"DATA\r\n" in got else got + until(conn, b"DATA\r\n")
    return None


def answer_envelope(conn: socket.socket, pipelining: bool, replies: tuple[bytes, ...]) -> None:
    """Greet (offering PIPELINING or not), then answer a message's MAIL, RCPT and DATA with
    `replies`: all at once once the three came (pipelined), or one a command, up to a refusal."""
    greet(conn, pipelining)
    if pipelining:
        commands(conn)
        conn.sendall(b"".join(replies))
        return
    for reply in replies:
        until(conn, b"\r\n")
        conn.sendall(reply)
        if reply[:1] not in b"23":  # refused: the client says RSET, not the next command
            return
