"""The send loop (`delivery.loop.SendLoop`: one thread driving every connection of a `Pool`)
against real loopback servers: many sessions at once, refusals at RCPT and at MAIL FROM, a
hang-up in the middle of a body, a server without PIPELINING (then the threads), one that stops
offering it, `stop()` while messages are in flight. No assertion on a clock: a wait in a server
below only bounds how long a broken client could make a test hang."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

from review_press.delivery.pool import Pool
from review_press.delivery.smtp import Envelope, Job, Policy, SmtpConnector
from review_press.store.ledger import Claim
from send_loop_helpers import FAST, answer_envelope, claims, drain, greet, pool_for, quit_, raw_server, render, until
from smtp_servers import Handler, Script, fast_recording_server, received, smtp_server


class Gate(Handler):
    """Holds each message at end of data until `width` messages are there at once (or `release`
    is set), so a client that sent one message at a time could never get past the first."""

    def __init__(self, width: int) -> None:
        super().__init__(Script(pipelining=True))
        self.width = width
        self.inside = 0
        self.most = 0
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.inside += 1  # the server's own event loop: no lock needed
        self.most = max(self.most, self.inside)
        for _ in range(1000):  # 10 s at most: only a broken client gets that far
            if self.most >= self.width or self.release.is_set():
                break
            await asyncio.sleep(0.01)
        self.inside -= 1
        return await super().handle_DATA(server, session, envelope)


def test_one_thread_carries_ten_sessions_at_once() -> None:
    gate = Gate(10)
    with smtp_server(handler=gate) as (server, port):
        pool = pool_for(port, 10)
        assert pool.loop is not None and len(pool.threads) == 1
        results = drain(pool, claims(200))
    assert gate.most == 10  # ten messages in the data phase together, driven by one thread
    assert server.sessions == 10
    assert {r.status for r in results.values()} == {"sent"}
    assert all(r.attempts == 1 and r.reply.startswith("250 2.0.0") and r.token == f"t{sid}" for sid, r in results.items())
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(1, 201)}
    assert all(m.data.endswith(b"Hello\r\n.dot\r\n") for m in server.received)  # dot-stuffed on the wire, unstuffed by the server


def test_thousands_of_messages_into_the_fast_sink_each_arrive_once(tmp_path: Path) -> None:
    items = claims(3000)
    with fast_recording_server(tmp_path) as (port, record):
        pool = pool_for(port, 10)
        assert pool.loop is not None
        results = drain(pool, items)
    assert {r.status for r in results.values()} == {"sent"}
    assert received(record) == {c.message_id: 1 for c in items}


def test_refusals_at_rcpt_are_classified_and_cost_no_other_message() -> None:
    script = Script(
        pipelining=True,
        rcpt={
            "r3@example.org": "550 5.1.1 no such user",
            "r5@example.org": "550 5.7.1 relaying denied",
            "r7@example.org": "450 4.2.1 try later",
        },
    )
    with smtp_server(script) as (server, port):
        pool = pool_for(port, 4)
        assert pool.loop is not None
        results = drain(pool, claims(20))
    assert (results[3].status, results[3].attempts, results[3].error) == ("bounced", 1, "550 5.1.1 no such user")
    assert (results[5].status, results[5].attempts, results[5].error) == ("failed", 1, "550 5.7.1 relaying denied")
    assert (results[7].status, results[7].attempts) == ("deferred", 3) and "450 4.2.1 try later" in results[7].error
    assert all(results[i].status == "sent" and results[i].attempts == 1 for i in range(1, 21) if i not in (3, 5, 7))
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(1, 21) if i not in (3, 5, 7)}
    assert pool.backoffs.get_nowait() == ("example.org", "450 4.2.1 try later")  # reported once, at its first 450
    assert pool.backoffs.empty()
    assert server.sessions <= 4  # a refusal at RCPT keeps the connection (RSET), none is reopened


def test_a_connection_dropped_before_the_reply_to_the_body_is_retried_on_a_new_one() -> None:
    with smtp_server(Script(pipelining=True, drop=True, times=1)) as (server, port):
        pool = pool_for(port, 3)
        assert pool.loop is not None
        results = drain(pool, claims(10))
    assert all(r.status == "sent" and r.attempts == 2 for r in results.values())
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(1, 11)}


def test_a_hang_up_in_the_middle_of_a_long_body_is_retried_and_it_arrives_once() -> None:
    """The body (8 MB) is more than a socket takes at once, so the loop writes it as the socket
    drains; the first server reads 100 KB of it and hangs up, the second takes it whole."""
    body = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n"
    big = body + b"y" * 998 * 8000 + b"\r\n"
    got: list[bytes] = []

    def opening(conn: socket.socket) -> None:  # the connection Pool() opens first
        answer_envelope(conn, True, (b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",))
        until(conn, b"\r\n.\r\n", limit=100_000)  # then hangs up mid-body

    def second(conn: socket.socket) -> None:
        answer_envelope(conn, True, (b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",))
        got.append(until(conn, b"\r\n.\r\n"))
        conn.sendall(b"250 2.0.0 queued as R2\r\n")
        quit_(conn)

    with raw_server(opening, second) as port:
        pool = pool_for(port, 1)
        assert pool.loop is not None
        results = drain(pool, claims(1), render=lambda c: Envelope("a@example.org", c.envelope, big))
    assert (results[1].status, results[1].attempts, results[1].reply) == ("sent", 2, "250 2.0.0 queued as R2")
    assert got == [big + b".\r\n"]


def test_a_refusal_at_mail_from_defers_and_a_421_then_hang_up_is_read_as_the_421() -> None:
    def sender_refused(conn: socket.socket) -> None:
        answer_envelope(conn, True, (b"553 5.1.8 bad sender\r\n503 5.5.1 no sender\r\n503 5.5.1 no recipient\r\n",))
        assert until(conn, b"\r\n").upper() == b"RSET\r\n"
        conn.sendall(b"250 ok\r\n")
        until(conn, b"DATA\r\n")
        conn.sendall(b"421 4.7.0 too many connections, slow down\r\n")  # and hangs up

    with raw_server(sender_refused) as port:
        pool = pool_for(port, 1, Policy(max_attempts=1, window=1000, min_samples=1000))
        assert pool.loop is not None
        results = drain(pool, claims(2, "slow.example"))
    assert (results[1].status, results[1].error) == ("deferred", "the sender was refused: 553 5.1.8 bad sender")
    assert results[2].status == "deferred" and "421 4.7.0 too many connections" in results[2].error
    assert pool.backoffs.get_nowait() == ("slow.example", "421 4.7.0 too many connections, slow down")


def test_a_354_after_a_refused_recipient_gets_an_empty_message_then_rset() -> None:
    seen: list[bytes] = []

    def session(conn: socket.socket) -> None:
        answer_envelope(conn, True, (b"250 2.1.0 ok\r\n550 5.1.1 no such user\r\n354 go\r\n",))
        seen.append(until(conn, b"RSET\r\n"))
        conn.sendall(b"554 5.5.1 no valid recipients\r\n250 ok\r\n")
        quit_(conn)

    with raw_server(session) as port:
        pool = pool_for(port, 1)
        results = drain(pool, claims(1))
    assert (results[1].status, results[1].error) == ("bounced", "550 5.1.1 no such user")
    assert seen == [b".\r\nRSET\r\n"]  # no byte of the body


def test_a_server_without_pipelining_gets_the_threads() -> None:
    with smtp_server(Script()) as (server, port):
        pool = pool_for(port, 3)
        assert pool.loop is None and len(pool.threads) == 3
        results = drain(pool, claims(30))
    assert {r.status for r in results.values()} == {"sent"}
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(1, 31)}


def test_connections_that_find_pipelining_gone_send_through_smtplib() -> None:
    script = Script(pipelining=True)
    with smtp_server(script) as (server, port):
        pool = pool_for(port, 3)
        assert pool.loop is not None
        script.pipelining = False  # the next connections are told no PIPELINING
        results = drain(pool, claims(30))
    assert {r.status for r in results.values()} == {"sent"}
    assert all(r.attempts == 1 for r in results.values())
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(1, 31)}
    assert server.sessions <= 3


def test_stop_lets_the_messages_in_flight_finish_and_gives_back_the_rest() -> None:
    gate = Gate(99)  # never that many: the test releases it
    with smtp_server(handler=gate) as (server, port):
        pool = pool_for(port, 4)
        for c in claims(50):
            pool.submit(Job(c, render))
        for _ in range(1000):  # 10 s at most
            if gate.inside == 4:
                break
            time.sleep(0.01)
        assert gate.inside == 4  # four messages in flight, one per connection, the rest queued
        pool.stop()
        gate.release.set()
        results = [pool.results.get(timeout=30) for _ in range(50)]
        pool.close()
    statuses = [r.status for r in results]
    assert statuses.count("sent") == 4 and statuses.count("pending") == 46
    assert all(r.attempts == 0 for r in results if r.status == "pending")
    assert sum(server.recipients().values()) == 4


def test_breaker_trip_cuts_waiting_retries_short_as_deferred() -> None:
    policy = Policy(max_attempts=5, backoff_base=5.0, backoff_cap=5.0, window=6, min_samples=6, threshold=0.8)
    with smtp_server(Script(pipelining=True, data_reply="451 4.3.0 try again later")) as (server, port):
        pool = pool_for(port, 6, policy)
        results = drain(pool, claims(40))
    assert pool.breaker.tripped is not None
    statuses = [r.status for r in results.values()]
    assert statuses.count("deferred") == 6  # each had failed once and waited its backoff: deferred, not pending
    assert statuses.count("pending") == 34 and server.recipients() == {}


def test_a_message_that_cannot_be_built_or_has_nothing_to_send_costs_no_connection() -> None:
    from review_press.delivery.smtp import NothingToSend

    def picky(claim: Claim) -> Envelope:
        if claim.subscriber_id == 2:
            raise NothingToSend("nothing new")
        if claim.subscriber_id == 3:
            raise ValueError("bad template")
        if claim.subscriber_id == 4:
            raise RuntimeError("a bug")
        return render(claim)

    with smtp_server(Script(pipelining=True)) as (server, port):
        results = drain(pool_for(port, 2), claims(5), render=picky)
    assert [results[i].status for i in range(1, 6)] == ["sent", "skipped", "failed", "failed", "sent"]
    assert results[4].error == "internal error: RuntimeError"
    assert server.recipients() == {"r1@example.org": 1, "r5@example.org": 1}


def test_an_address_the_server_cannot_take_fails_before_a_command_goes_and_the_session_goes_on() -> None:
    seen: list[bytes] = []

    def session(conn: socket.socket) -> None:  # offers no SMTPUTF8
        greet(conn)
        seen.append(until(conn, b"DATA\r\n"))
        conn.sendall(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n")
        until(conn, b"\r\n.\r\n")
        conn.sendall(b"250 2.0.0 queued\r\n")
        quit_(conn)

    items = [
        Claim(1, "josé@example.org", "josé@example.org", "", "<u@example.org>"),
        Claim(2, "r2@example.org>", "r2@example.org>", "", "<b@example.org>"),
        Claim(3, "r3@example.org", "r3@example.org", "", "<ok@example.org>"),
    ]
    with raw_server(session) as port:
        results = drain(pool_for(port, 1), items)
    assert (results[1].status, results[1].error) == ("failed", "the server does not offer SMTPUTF8, needed for this address")
    assert results[2].status == "failed" and "not an envelope address" in results[2].error
    assert results[3].status == "sent"
    assert seen == [b"MAIL FROM:<a@example.org>\r\nRCPT TO:<r3@example.org>\r\nDATA\r\n"]


def test_a_421_then_nobody_listening_is_retried_then_deferred() -> None:
    def session(conn: socket.socket) -> None:
        answer_envelope(conn, True, (b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n421 4.3.2 shutting down\r\n",))

    with raw_server(session) as port:
        pool = pool_for(port, 1)
        results = drain(pool, claims(1))
    assert (results[1].status, results[1].attempts) == ("deferred", 3)
    assert results[1].error.startswith(f"gave up after 3 attempts: cannot connect to smtp://127.0.0.1:{port}")
    assert pool.backoffs.get_nowait() == ("example.org", "421 4.3.2 shutting down")


def test_a_last_message_refused_before_a_command_goes_still_lets_close_end() -> None:
    with smtp_server(Script(pipelining=True)) as (server, port):
        pool = pool_for(port, 2)
        pool.submit(Job(Claim(1, "r1@example.org>", "r1@example.org>", "", "<b@example.org>"), render))
        pool.close()  # its None may be taken before the job fails: the loop must not wait for a wake-up then
        result = pool.results.get(timeout=30)
    assert result.status == "failed" and "not an envelope address" in result.error
    assert server.recipients() == {}


def test_a_tls_socket_is_left_to_the_threads() -> None:
    """The loop drives plain sockets only: STARTTLS and SSL connections keep a thread each."""
    import smtplib
    import ssl

    from review_press.delivery.smtp import SmtpConnection

    client = smtplib.SMTP()
    client.esmtp_features = {"pipelining": ""}
    with socket.socket() as plain:
        client.sock = plain
        assert SmtpConnection(client).drivable()
        with ssl.create_default_context().wrap_socket(socket.socket(), server_hostname="x.example", do_handshake_on_connect=False) as tls:
            client.sock = tls
            assert not SmtpConnection(client).drivable()
    client.esmtp_features = {}
    assert not SmtpConnection(client).drivable()


def test_a_job_queued_after_the_loop_went_idle_wakes_it() -> None:
    """A full loop is not woken per job (it takes the next when one finishes); one with room is."""
    with smtp_server(Script(pipelining=True)) as (server, port):
        pool = pool_for(port, 1)
        pool.submit(Job(Claim(1, "r1@example.org>", "r1@example.org>", "", "<b@example.org>"), render))
        first = pool.results.get(timeout=30)  # failed before a command went: the loop has room and sleeps
        pool.submit(Job(claims(2)[1], render))
        second = pool.results.get(timeout=30)
        for c in claims(30)[2:]:
            pool.submit(Job(c, render))
        rest = [pool.results.get(timeout=30) for _ in range(28)]
        pool.close()
    assert first.status == "failed" and second.status == "sent"
    assert {r.status for r in rest} == {"sent"}
    assert sum(server.recipients().values()) == 29


def test_logged_in_sessions_are_driven_by_the_loop() -> None:
    """AUTH stays smtplib's, on the helper threads; the loop takes each session once logged in."""
    with smtp_server(Script(pipelining=True), auth=("ann", "right-password")) as (server, port):
        connector = SmtpConnector("127.0.0.1", port, username="ann", password="right-password", starttls=False, timeout=5)
        pool = Pool(connector, 3, FAST)
        assert pool.loop is not None
        results = drain(pool, claims(30))
    assert {r.status for r in results.values()} == {"sent"}
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(1, 31)}
    assert server.sessions <= 3
