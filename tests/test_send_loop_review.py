"""Adversarial review of the send loop (`delivery.loop.SendLoop`) against real loopback servers:
wake-ups that race with the loop, a reply that came in time while the loop was busy elsewhere,
replies cut, coalesced and split, bodies that need dot-stuffing. What each server received is
compared with the `Result`s; a wait below only bounds how long a broken client can hang a test."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest

from review_press.delivery.pool import Pool
from review_press.delivery.smtp import Envelope, Job, Policy, _stuffed, classify
from review_press.store.ledger import Result
from send_loop_helpers import answer_envelope, claims, commands, drain, greet, pool_for, quit_, render, until
from smtp_servers import Script, smtp_server


@contextmanager
def concurrent_server(*sessions: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback server running each session function on its own thread, in the order the
    connections arrive (unlike `raw_server`, one session does not wait for the previous one)."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def run(session: Callable[[socket.socket], None], conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            with suppress(OSError):
                session(conn)

    listener.settimeout(0.05)
    done = threading.Event()

    def serve() -> None:
        for session in sessions:
            while not done.is_set():
                try:
                    conn, _ = listener.accept()
                    break
                except TimeoutError:
                    continue
                except OSError:
                    return
            else:
                return
            t = threading.Thread(target=run, args=(session, conn), daemon=True)
            t.start()
            threads.append(t)
        listener.close()

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        acceptor.join(10)
        listener.close()
        for t in threads:
            t.join(10)


class RacingBell:
    """Stands in for the loop's wake-up socket: the first time the loop drains it, another
    thread's `wake()` lands just before (as a submit, `stop` or `close` may, at any instant)."""

    def __init__(self, pool: Pool) -> None:
        assert pool.loop is not None
        self.loop, self.real, self.raced = pool.loop, pool.loop._bell, False

    def recv(self, size: int) -> bytes:
        if not self.raced:
            self.raced = True
            self.loop.wake()
        return self.real.recv(size)

    def close(self) -> None:
        self.real.close()


def test_a_wake_up_landing_while_the_loop_drains_its_bell_is_not_lost_forever() -> None:
    """The loop cleared its `_woken` flag before draining the bell: a wake-up in between had its
    byte drained with the old one and left the flag set, so no later wake-up (a job, `stop`,
    `close`) ever sent a byte again and an idle loop slept in `select` for ever."""
    with smtp_server(Script(pipelining=True)) as (server, port):
        pool = pool_for(port, 1)
        assert pool.loop is not None
        pool.loop._bell = RacingBell(pool)  # type: ignore[assignment]
        items = claims(2)
        pool.submit(Job(items[0], render))
        first = pool.results.get(timeout=30)
        pool.submit(Job(items[1], render))  # the loop is idle, waiting in `select`: this must wake it
        try:
            second: Result | None = pool.results.get(timeout=10)
        except queue.Empty:
            second = None
            pool.loop._ring.send(b"\0")  # unstick it, so that the test can end
        pool.close()
    assert first.status == "sent"
    assert second is not None and second.status == "sent"
    assert server.recipients() == {"r1@example.org": 1, "r2@example.org": 1}


def test_a_reply_that_came_in_time_while_the_loop_was_busy_is_not_a_timeout() -> None:
    """The loop blocks in smtplib for a connection that no longer offers PIPELINING (each reply
    within the timeout, the whole dialogue longer than it). Meanwhile the other server accepts
    its message with 250, well in time; the loop must read that 250 before it declares the
    reply overdue, not call it a timeout and send the message again on a new connection."""
    timeout = 1.0
    body_in, mail_in = threading.Event(), threading.Event()
    delivered: list[bytes] = []

    def pipelined(conn: socket.socket) -> None:  # the connection Pool() opens first: message 1
        answer_envelope(conn, True, (b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",))
        delivered.append(until(conn, b"\r\n.\r\n"))
        body_in.set()
        mail_in.wait(10)  # the loop is now inside smtplib's dialogue with the other server
        conn.sendall(b"250 2.0.0 queued as S1\r\n")
        quit_(conn)

    def slow(conn: socket.socket) -> None:  # message 2, no PIPELINING: smtplib, blocking, on the loop's thread
        body_in.wait(10)
        conn.sendall(b"220 slow ESMTP\r\n")
        until(conn, b"\r\n")
        conn.sendall(b"250-slow\r\n250 8BITMIME\r\n")
        for i, reply in enumerate((b"250 2.1.0 ok\r\n", b"250 2.1.5 ok\r\n", b"354 go\r\n", b"250 2.0.0 queued as S2\r\n")):
            until(conn, b"\r\n.\r\n" if i == 3 else b"\r\n")
            mail_in.set()
            threading.Event().wait(0.7 * timeout)  # each reply in time; all four, more than the timeout
            conn.sendall(reply)
        quit_(conn)

    def again(conn: socket.socket) -> None:  # a retry of message 1 would come here
        answer_envelope(conn, True, (b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",))
        delivered.append(until(conn, b"\r\n.\r\n"))
        conn.sendall(b"250 2.0.0 queued as S3\r\n")
        quit_(conn)

    with concurrent_server(pipelined, slow, again) as port:
        pool = pool_for(port, 2, timeout=timeout)
        assert pool.loop is not None
        results = drain(pool, claims(2))
    assert (results[1].status, results[1].attempts, results[1].reply) == ("sent", 1, "250 2.0.0 queued as S1")
    assert (results[2].status, results[2].reply) == ("sent", "250 2.0.0 queued as S2")
    assert len(delivered) == 1  # message 1 reached a server once


def honest(log: list[tuple[bytes, bytes]], after_body: bytes = b"") -> Callable[[socket.socket], None]:
    """A session that takes every message (MAIL, RCPT and DATA read however they come, RSET and
    QUIT answered), logging (commands, body) of each; `after_body` follows each 250 for a body."""

    def session(conn: socket.socket) -> None:
        greet(conn)
        while (got := commands(conn)) is not None:
            conn.sendall(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n")
            log.append((got, until(conn, b"\r\n.\r\n")))
            conn.sendall(b"250 2.0.0 queued\r\n" + after_body)

    return session


def test_a_reply_nobody_asked_for_after_the_body_reply_does_not_put_the_next_message_out_of_step() -> None:
    """A server that follows its 250 for a body with another reply (unasked for, in the same
    segment). The loop kept that reply and took it for the next message's MAIL reply, so every
    reply after it was one off: RCPT's 250 read as DATA's was a refusal (`failed`, with reply
    "250 2.1.5 ok"), and the RSET that followed went into the body the server had opened: r2
    got a message that was only "RSET" and never their own. A connection that says more than
    it was asked is out of step: it closes, and the next message goes on a new one."""
    log: list[tuple[bytes, bytes]] = []
    with concurrent_server(*[honest(log, after_body=b"250 2.0.0 and again\r\n")] * 3) as port:
        results = drain(pool_for(port, 1), claims(3))
    assert {sid: (r.status, r.attempts) for sid, r in results.items()} == {i: ("sent", 1) for i in (1, 2, 3)}
    assert [(commands.split(b"RCPT TO:")[1][:16], b"Message-ID: <m%d@" % i in body) for i, (commands, body) in enumerate(log, 1)] == [
        (b"<r1@example.org>", True),
        (b"<r2@example.org>", True),
        (b"<r3@example.org>", True),
    ]


def test_a_reply_to_the_body_before_the_body_was_sent_is_not_taken_for_its_acceptance() -> None:
    """A server that sends a 250 right behind its 354, before it has a byte of the body, then
    hangs up without reading it. The loop sent the body into the dying socket and read that 250
    as the body's: `sent` for a message the server never had. Nothing past the 354 is awaited
    then; the connection is out of step, and the message goes again on a new one."""
    log: list[tuple[bytes, bytes]] = []

    def premature(conn: socket.socket) -> None:
        answer_envelope(conn, True, (b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n250 2.0.0 queued before the body\r\n",))

    with concurrent_server(premature, honest(log)) as port:
        results = drain(pool_for(port, 1), claims(1))
    assert (results[1].status, results[1].attempts, results[1].reply) == ("sent", 2, "250 2.0.0 queued")
    assert len(log) == 1 and b"Message-ID: <m1@example.org>" in log[0][1]


def test_a_reply_of_endless_lines_is_cut_off_not_rescanned_until_it_ends() -> None:
    """A reply of many short continuation lines (each within smtplib's line limit) grew the
    connection's buffer without bound, and each `recv` rescanned all of it from its start on
    the one thread every connection shares (2.8 MB of them held the loop over ten seconds). A
    connection whose replies grow past `MAX_INBOX` unfinished is lost, and the message retried."""
    log: list[tuple[bytes, bytes]] = []

    def chatty(conn: socket.socket) -> None:
        answer_envelope(conn, True, (b"250-2.1.0 and more\r\n" * 20_000 + b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",))
        until(conn, b"\r\n.\r\n")
        conn.sendall(b"250 2.0.0 queued\r\n")
        quit_(conn)

    with concurrent_server(chatty, honest(log)) as port:
        results = drain(pool_for(port, 1), claims(1))
    assert (results[1].status, results[1].attempts) == ("sent", 2)
    assert len(log) == 1


def test_a_250_before_the_whole_body_was_written_is_not_an_acceptance() -> None:
    """A server that says 250 after the first 100 KB of an 8 MB body (and reads on). The loop
    wrote the body as the socket drained and took that 250 as the body's: `sent` for a message
    the server answered before it had it. Only a 250 after the last byte (the end of data)
    counts; an earlier one puts the connection out of step, and the message goes again."""
    big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 8000
    log: list[tuple[bytes, bytes]] = []

    def hasty(conn: socket.socket) -> None:
        answer_envelope(conn, True, (b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",))
        until(conn, b"\r\n.\r\n", limit=100_000)
        conn.sendall(b"250 2.0.0 queued before the end\r\n")
        until(conn, b"\r\n.\r\n")
        quit_(conn)

    with concurrent_server(hasty, honest(log)) as port:
        results = drain(pool_for(port, 1), claims(1), render=lambda c: Envelope("a@example.org", c.envelope, big))
    assert (results[1].status, results[1].attempts, results[1].reply) == ("sent", 2, "250 2.0.0 queued")
    assert [body for _, body in log] == [_stuffed(big)]


def test_dot_stuffing_is_exact_and_replies_cut_byte_by_byte_or_in_many_lines_are_read_whole() -> None:
    """Bodies of lines that are only dots, CRLF.CRLF inside, a leading dot, no final CRLF; each
    reply sent a byte at a time, and as several lines (250-...). What the server received,
    un-stuffed, is each body exactly (with the CRLF the end of data needs)."""
    bodies = [b".", b"..\r\n", b"\r\n.\r\n", b".\r\n.\r\n.", b"a\r\n.\r\n.\r\nb\r\n..\r\n", b"x\r\n.", b"\r\n..\r\n.\r\n.x\r\n"]
    got: list[bytes] = []

    def dribble(conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            conn.sendall(data[i : i + 1])

    def session(conn: socket.socket) -> None:
        greet(conn)
        for _ in bodies:
            until(conn, b"DATA\r\n")
            dribble(conn, b"250-2.1.0 ok\r\n250 and more\r\n250 2.1.5 ok\r\n354 go\r\n")
            got.append(until(conn, b"\r\n.\r\n"))
            dribble(conn, b"250-2.0.0 queued\r\n250 as X\r\n")
        quit_(conn)

    with concurrent_server(session) as port:
        results = drain(
            pool_for(port, 1), claims(len(bodies)), render=lambda c: Envelope("a@example.org", c.envelope, bodies[c.subscriber_id - 1])
        )
    assert {r.status for r in results.values()} == {"sent"} and {r.reply for r in results.values()} == {"250 2.0.0 queued as X"}

    def unstuffed(wire: bytes) -> bytes:
        assert wire.endswith(b"\r\n.\r\n")
        return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in wire[:-3].split(b"\r\n"))

    assert [unstuffed(wire) for wire in got] == [b if b.endswith(b"\r\n") else b + b"\r\n" for b in bodies]


def test_many_connections_where_some_die_each_message_accepted_once_and_reported_as_it_was() -> None:
    """Eight connections to a server that, at random (seeded), says 421 and hangs up, refuses
    MAIL with 451, hangs up after the commands, in the middle of a body or before the body's
    reply, answers 451 to a body, says 421 right behind a 250, or hangs up after one; replies
    come whole or a byte at a time. Every message the server accepted (its 250 went out) is
    reported `sent`, once; no other is; none is accepted twice."""
    import random
    import re
    from collections import Counter

    rnd, lock = random.Random(20261130), threading.Lock()
    accepted: Counter[str] = Counter()

    def session(conn: socket.socket) -> None:
        with lock:
            r = random.Random(rnd.random())
        greet(conn)
        while (got := commands(conn)) is not None:
            found = re.search(rb"RCPT TO:<([^>]*)>", got)
            assert found is not None
            x, y = r.random(), r.random()
            if x < 0.05:
                conn.sendall(b"421 4.3.2 bye\r\n")
                return
            if x < 0.10:
                conn.sendall(b"451 4.3.0 not now\r\n503 no sender\r\n503 no recipient\r\n")
                continue
            if x < 0.13:
                return
            replies = b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"
            for piece in [replies[i : i + 1] for i in range(len(replies))] if x < 0.3 else [replies]:
                conn.sendall(piece)
            if y < 0.05:
                conn.recv(10)
                return
            until(conn, b"\r\n.\r\n")
            if y < 0.10:
                conn.sendall(b"451 4.3.0 later\r\n")
                continue
            if y < 0.13:
                return
            with lock:
                accepted[found.group(1).decode()] += 1
            conn.sendall(b"250 2.0.0 ok\r\n" + (b"421 4.3.2 closing\r\n" if y < 0.18 else b""))
            if y < 0.25:
                return

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            threading.Thread(target=lambda c=conn: (session(c), c.close()), daemon=True).start()

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        policy = Policy(max_attempts=6, backoff_base=0.01, backoff_cap=0.05, window=1000, min_samples=1000)
        results = drain(pool_for(listener.getsockname()[1], 8, policy), claims(200))
    finally:
        done.set()
        acceptor.join(10)
        listener.close()
    sent = Counter(f"r{sid}@example.org" for sid, r in results.items() if r.status == "sent")
    assert sent == accepted
    assert {r.status for r in results.values()} <= {"sent", "deferred"}


def test_a_server_dripping_a_reply_byte_by_byte_times_out_as_a_whole() -> None:
    """A server that sends its reply to MAIL a byte every 0.3 s with a 1 s timeout. Each byte
    gave the connection a new deadline, so a server dripping bytes (or endless lines) held a
    message for ever. The timeout bounds each whole reply; the message goes again elsewhere."""
    log: list[tuple[bytes, bytes]] = []
    stop = threading.Event()

    def dripping(conn: socket.socket) -> None:
        greet(conn)
        until(conn, b"DATA\r\n")
        for byte in b"250-2.1.0 " + b"o" * 200 + b"k\r\n":
            if stop.wait(0.3):
                return
            conn.sendall(bytes([byte]))

    try:
        with concurrent_server(dripping, honest(log)) as port:
            results = drain(pool_for(port, 1, timeout=1.0), claims(1))
    finally:
        stop.set()
    assert (results[1].status, results[1].attempts, results[1].reply) == ("sent", 2, "250 2.0.0 queued")
    assert len(log) == 1


def cut_reply(pipelining: bool) -> Callable[[socket.socket], None]:
    """A session that takes a message's commands and body, then hangs up after the first byte
    of its reply to the body ("4" of "451"), with PIPELINING offered or not."""

    def session(conn: socket.socket) -> None:
        answer_envelope(conn, pipelining, (b"250 2.1.0 ok\r\n", b"250 2.1.5 ok\r\n", b"354 go\r\n"))
        until(conn, b"\r\n.\r\n")
        conn.sendall(b"4")

    return session


@pytest.mark.parametrize("pipelining", [True, False], ids=["send-loop", "threads"])
def test_a_reply_cut_short_by_a_hang_up_is_tried_again_not_the_readers_failure(pipelining: bool) -> None:
    """A server that hangs up after the first byte of its reply to the body. smtplib reads the
    code of "4" as 4, and `classify` took that for a permanent refusal: the reader's message was
    `failed`, never tried again, for what was a broken connection (and a temporary refusal if
    anything). A code that is not three digits now means a lost connection: tried again on a
    new one, where it goes."""
    log: list[tuple[bytes, bytes]] = []
    with concurrent_server(cut_reply(pipelining), honest(log)) as port:
        pool = pool_for(port, 1)
        assert (pool.loop is not None) is pipelining
        results = drain(pool, claims(1))
    assert (results[1].status, results[1].attempts, results[1].reply) == ("sent", 2, "250 2.0.0 queued")
    assert len(log) == 1 and b"Message-ID: <m1@example.org>" in log[0][1]


def test_a_reply_that_is_not_smtp_is_a_lost_connection_and_a_real_refusal_is_still_one() -> None:
    lost = classify(-1, "HTTP/1.1 400 Bad Request", recipient_stage=True)
    cut = classify(5, "", recipient_stage=False)
    assert all(e.temporary and e.reconnect and not e.bounce and not e.sender for e in (lost, cut))
    assert lost.reply.startswith("connection lost: the reply was not SMTP")
    refused = classify(550, "5.1.1 no such user", recipient_stage=True)
    assert (refused.temporary, refused.bounce, refused.reconnect) == (False, True, False)
    assert classify(550, "5.7.1 sender refused", recipient_stage=False).sender
    assert classify(421, "4.3.2 closing", recipient_stage=True).reconnect


def test_closing_says_quit_to_every_connection_at_once_not_one_timeout_after_another() -> None:
    """Three servers that take messages but never answer QUIT. The loop said QUIT on one
    connection, waited its whole timeout, closed it, then went on to the next: N silent servers
    held the end of a run for N timeouts. Now every QUIT goes first and the servers are waited
    for together, for one timeout: each server has its QUIT before any connection is closed
    (the order of events, never a clock, is asserted)."""
    log: list[str] = []

    def silent_at_quit(conn: socket.socket) -> None:
        greet(conn)
        while got := until(conn, b"\r\n"):
            if got.upper().startswith(b"QUIT"):
                log.append("quit")
                until(conn, b"never said")  # until the client hangs up
                log.append("closed")
                return
            if b"DATA\r\n" not in got:
                got += until(conn, b"DATA\r\n")
            conn.sendall(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n")
            until(conn, b"\r\n.\r\n")
            conn.sendall(b"250 2.0.0 queued\r\n")

    with concurrent_server(*[silent_at_quit] * 3) as port:
        pool = pool_for(port, 3, timeout=1.0)
        assert pool.loop is not None
        results = drain(pool, claims(30))
    assert {r.status for r in results.values()} == {"sent"}
    assert log == ["quit"] * 3 + ["closed"] * 3


def refused_then_421_to_rset(pipelining: bool) -> Callable[[socket.socket], None]:
    """A session that refuses the first recipient (550 5.1.1), then answers RSET with 421 and hangs up."""

    def session(conn: socket.socket) -> None:
        answer_envelope(conn, pipelining, (b"250 2.1.0 ok\r\n", b"550 5.1.1 no such user\r\n", b"554 5.5.1 no valid recipients\r\n"))
        assert until(conn, b"\r\n").upper() == b"RSET\r\n"  # smtplib writes it in lower case
        conn.sendall(b"421 4.3.2 shutting down\r\n")

    return session


@pytest.mark.parametrize("pipelining", [True, False], ids=["send-loop", "threads"])
def test_a_connection_that_answers_rset_with_421_is_given_up_not_tried_once_more(pipelining: bool) -> None:
    """After a refusal, RSET got "421 closing": the connection was kept, so the next message
    went into a dead session, failed as "connection lost" and spent one of its attempts there.
    An RSET not taken now ends the connection; the next message goes on a new one, first time."""
    log: list[tuple[bytes, bytes]] = []
    with concurrent_server(refused_then_421_to_rset(pipelining), honest(log)) as port:
        pool = pool_for(port, 1)
        assert (pool.loop is not None) is pipelining
        results = drain(pool, claims(2))
    assert (results[1].status, results[1].error) == ("bounced", "550 5.1.1 no such user")
    assert (results[2].status, results[2].attempts) == ("sent", 1)
    assert len(log) == 1 and b"Message-ID: <m2@example.org>" in log[0][1]
