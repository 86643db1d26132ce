"""The sending pool against real aiosmtpd servers on loopback: reuse, retries, bounces, drops,
stalls, the circuit breaker, the rate limit, and a password that never shows."""

from __future__ import annotations

import logging
import time

import pytest

import smtp_servers
from review_press.delivery.pool import Pool
from review_press.delivery.smtp import Breaker, Envelope, Job, Policy, RateLimiter, SmtpConnector, classify
from review_press.errors import DeliveryError
from review_press.store.ledger import Claim, Result
from smtp_servers import Script, smtp_server

FAST = Policy(max_attempts=3, backoff_base=0.01, backoff_cap=0.05, window=1000, min_samples=1000)


@pytest.fixture(autouse=True, params=[False, True], ids=["one-by-one", "pipelined"])
def _pipelining(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs against a server without PIPELINING and one with it (RFC 2920)."""
    monkeypatch.setattr(smtp_servers, "PIPELINING", request.param)


def render(claim: Claim) -> Envelope:
    data = f"From: a@example.org\r\nTo: {claim.address}\r\nMessage-ID: {claim.message_id}\r\nSubject: hi\r\n\r\nHello\r\n".encode()
    return Envelope("a@example.org", claim.envelope, data, smtputf8=not claim.envelope.isascii())


def claims(n: int) -> list[Claim]:
    return [Claim(i, f"r{i}@example.org", f"r{i}@example.org", "", f"<m{i}@example.org>") for i in range(1, n + 1)]


def run(
    port: int, items: list[Claim], *, concurrency: int = 2, policy: Policy = FAST, timeout: float = 5.0, limiter: RateLimiter | None = None
) -> dict[int, Result]:
    pool = Pool(SmtpConnector("127.0.0.1", port, starttls=False, timeout=timeout), concurrency, policy, limiter)
    for c in items:
        pool.submit(Job(c, render))
    results = {}
    while len(results) < len(items):
        r = pool.results.get(timeout=30)
        results[r.subscriber_id] = r
    pool.close()
    return results


def test_each_connection_carries_many_messages() -> None:
    with smtp_server() as (server, port):
        results = run(port, claims(60), concurrency=3)
    assert {r.status for r in results.values()} == {"sent"}
    assert all(r.reply.startswith("250 2.0.0") and r.attempts == 1 for r in results.values())
    assert sum(server.recipients().values()) == 60
    assert server.sessions <= 3


def test_a_450_is_retried_with_backoff_until_accepted() -> None:
    with smtp_server(Script(data_reply="450 4.2.0 mailbox busy", times=2)) as (server, port):
        results = run(port, claims(4))
    assert all(r.status == "sent" and r.attempts == 3 for r in results.values())
    assert all(n == 1 for n in server.recipients().values())


def test_421_every_time_is_deferred_after_max_attempts() -> None:
    with smtp_server(Script(data_reply="421 4.3.2 shutting down")) as (server, port):
        results = run(port, claims(2))
    for r in results.values():
        assert r.status == "deferred" and r.attempts == 3  # temporary: a later run retries it, never `failed`
        assert "gave up after 3 attempts" in r.error and "421 4.3.2" in r.error
    assert server.sessions >= 6  # a 421 closes the connection; every retry reconnects


def test_550_5_1_1_is_a_bounce_at_once_and_other_5xx_a_failure() -> None:
    script = Script(rcpt={"r1@example.org": "550 5.1.1 no such user", "r2@example.org": "550 5.7.1 relaying denied"})
    with smtp_server(script) as (server, port):
        results = run(port, claims(3))
    assert (results[1].status, results[1].attempts, results[1].error) == ("bounced", 1, "550 5.1.1 no such user")
    assert (results[2].status, results[2].attempts) == ("failed", 1)
    assert results[3].status == "sent"
    assert server.recipients() == {"r3@example.org": 1}


def test_a_connection_dropped_mid_data_is_retried() -> None:
    with smtp_server(Script(drop=True, times=1)) as (server, port):
        results = run(port, claims(3), concurrency=1)
    assert all(r.status == "sent" and r.attempts == 2 for r in results.values())
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(1, 4)}


def test_a_stalled_server_times_out_and_is_deferred() -> None:
    with smtp_server(Script(stall=1.0)) as (server, port):
        results = run(
            port, claims(1), concurrency=1, timeout=0.2, policy=Policy(max_attempts=2, backoff_base=0.01, window=1000, min_samples=1000)
        )
    assert results[1].status == "deferred" and "timed out" in results[1].error
    assert server.recipients() == {}
    assert results[1].attempts == 2  # the run ends because each attempt timed out and the policy allows two, not by a clock


def test_the_breaker_stops_a_run_when_the_server_refuses_everything() -> None:
    policy = Policy(max_attempts=5, backoff_base=0.01, backoff_cap=0.02, window=10, min_samples=10, threshold=0.8)
    with smtp_server(Script(data_reply="451 4.3.0 try again later")) as (server, port):
        results = run(port, claims(200), concurrency=2, policy=policy)
    statuses = [r.status for r in results.values()]
    assert statuses.count("pending") > 150  # given back unsent: they stay pending for the next run
    assert "sent" not in statuses
    assert server.recipients() == {}


def test_breaker_ignores_bounces() -> None:
    breaker = Breaker(Policy(window=10, min_samples=10, threshold=0.5))
    assert not any(breaker.record(True, "550 5.1.1") for _ in range(20))
    assert [breaker.record(False, "451") for _ in range(6)][-1] is True
    assert breaker.tripped and "451" in breaker.tripped


def test_rate_limit_per_second_holds_across_threads() -> None:
    with smtp_server() as (server, port):
        t0 = time.monotonic()
        results = run(port, claims(30), concurrency=3, limiter=RateLimiter(per_second=20))
        elapsed = time.monotonic() - t0
    assert len(results) == 30 and sum(server.recipients().values()) == 30
    assert elapsed >= 0.45  # a burst of one second's worth (20), then 10 more at 20 a second


def test_rate_limiter_buckets_with_a_fake_clock() -> None:
    import threading

    now = [0.0]
    limiter = RateLimiter(per_second=0, per_hour=3600, used_this_hour=3598, clock=lambda: now[0])
    stop = threading.Event()
    assert limiter.wait(stop) and limiter.wait(stop)
    stop.set()
    assert limiter.wait(stop) is False  # the hour's bucket is empty: it would wait
    now[0] = 1.0
    assert limiter.wait(threading.Event())  # one second later, one more token


def test_classify() -> None:
    assert classify(450, "4.2.0 busy", recipient_stage=True).temporary
    e = classify(421, "4.3.2 bye", recipient_stage=True)
    assert e.temporary and e.reconnect
    assert classify(550, "5.1.1 no such user", recipient_stage=True).bounce
    sender = classify(553, "5.1.8 bad sender", recipient_stage=False)
    assert not sender.bounce and sender.sender  # refused at MAIL FROM: the sender's problem, not the reader's
    assert not classify(550, "5.1.1 no such user", recipient_stage=True).sender
    assert not classify(550, "mailbox unavailable", recipient_stage=True).bounce
    assert not classify(554, "5.7.1 rejected", recipient_stage=True).temporary


def test_the_smtp_password_never_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    import base64

    secret = "s3cr3t-Pa55word!"
    caplog.set_level(logging.DEBUG)
    with smtp_server(auth=("ann", "right-password")) as (_, port):
        connector = SmtpConnector("127.0.0.1", port, username="ann", password=secret, starttls=False)
        with pytest.raises(DeliveryError) as info:
            connector.open()
        good = SmtpConnector("127.0.0.1", port, username="ann", password="right-password", starttls=False).open()
        good.close()
    shown = [str(info.value), repr(info.value), repr(connector), caplog.text, *capsys.readouterr()]
    encoded = base64.b64encode(f"\0ann\0{secret}".encode()).decode()
    assert "refused the login of 'ann'" in str(info.value)
    for text in shown:
        assert secret not in text and encoded not in text


def test_a_server_without_starttls_is_refused_when_starttls_is_on() -> None:
    with smtp_server() as (_, port), pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        SmtpConnector("127.0.0.1", port, starttls=True).open()


def test_nobody_listening_is_a_clear_error() -> None:
    from smtp_servers import free_port

    with pytest.raises(DeliveryError, match="cannot connect to smtp://127.0.0.1"):
        SmtpConnector("127.0.0.1", free_port(), starttls=False, timeout=2).open()


def test_unicode_local_parts_go_out_with_smtputf8() -> None:
    item = Claim(1, "josé@example.org", "josé@example.org", "", "<u@example.org>")
    with smtp_server() as (server, port):
        results = run(port, [item])
    assert results[1].status == "sent"
    assert server.recipients() == {"josé@example.org": 1}


def test_pipelining_is_used_when_offered_and_sends_each_message_once() -> None:
    """With PIPELINING offered, MAIL, RCPT and DATA go in one write (the server sees them all
    before it answers the first); a refused recipient in the middle of a pipelined session costs
    no other message."""
    script = Script(rcpt={"r2@example.org": "550 5.1.1 no such user"}, pipelining=True)
    with smtp_server(script) as (server, port):
        results = run(port, claims(5), concurrency=1)
    assert [results[i].status for i in range(1, 6)] == ["sent", "bounced", "sent", "sent", "sent"]
    assert server.recipients() == {f"r{i}@example.org": 1 for i in (1, 3, 4, 5)}
    assert server.sessions == 1


def test_with_pipelining_the_client_sends_mail_rcpt_and_data_before_any_reply() -> None:
    """A raw server that answers nothing until it holds MAIL, RCPT and DATA: a client that waited
    for each reply (no pipelining) would time out here."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            conn.sendall(b"220 raw ESMTP\r\n")
            buf = b""
            while b"\r\n" not in buf:
                buf += conn.recv(4096)
            conn.sendall(b"250-raw\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            buf = b""
            while b"DATA\r\n" not in buf:
                buf += conn.recv(4096)
            seen.append(buf)
            conn.sendall(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n")
            body = b""
            while b"\r\n.\r\n" not in body:
                body += conn.recv(65536)
            seen.append(body)
            conn.sendall(b"250 2.0.0 queued as RAW1\r\n")
            rest = conn.recv(4096)
            seen.append(rest)
            conn.sendall(b"221 bye\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    connection = SmtpConnector("127.0.0.1", listener.getsockname()[1], starttls=False, timeout=3).open()
    reply = connection.send(render(claims(1)[0]))
    connection.close()
    thread.join(5)
    listener.close()
    assert reply == "250 2.0.0 queued as RAW1"
    assert seen[0] == b"MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.org>\r\nDATA\r\n"  # one write, before any reply
    assert seen[1].endswith(b"Hello\r\n.\r\n")
    assert seen[2].upper() == b"QUIT\r\n"


@pytest.mark.parametrize("recipient", ["r1@example.org\r\nRCPT TO:<x@evil.example>", "r1@example.org>", "<r1@example.org"])
def test_an_envelope_address_with_a_line_break_or_bracket_is_refused_not_sent(recipient: str) -> None:
    with smtp_server() as (server, port):
        connection = SmtpConnector("127.0.0.1", port, starttls=False, timeout=5).open()
        try:
            with pytest.raises(Exception, match="not an envelope address") as caught:
                connection.send(Envelope("a@example.org", recipient, b"Subject: x\r\n\r\nhi\r\n"))
            assert getattr(caught.value, "temporary", None) is False
            assert connection.send(render(claims(1)[0])).startswith("250")  # the session is still good
        finally:
            connection.close()
    assert server.recipients() == {"r1@example.org": 1}


def test_a_pipelined_refusal_followed_by_a_hang_up_is_read_as_the_refusal() -> None:
    """The server answers 421 to MAIL and closes the connection: the message is deferred for that
    reply (its domain pauses), not as a mere 'connection lost'."""
    import socket
    import threading

    from review_press.delivery.smtp import SendError

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            conn.sendall(b"220 raw ESMTP\r\n")
            conn.recv(4096)
            conn.sendall(b"250-raw\r\n250 PIPELINING\r\n")
            buf = b""
            while b"DATA\r\n" not in buf:
                buf += conn.recv(4096)
            conn.sendall(b"421 4.7.0 too many connections from your host, slow down\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    connection = SmtpConnector("127.0.0.1", listener.getsockname()[1], starttls=False, timeout=3).open()
    with pytest.raises(SendError) as caught:
        connection.send(render(claims(1)[0]))
    thread.join(5)
    listener.close()
    error = caught.value
    assert error.reply.startswith("421 4.7.0 too many connections") and error.temporary and error.reconnect


def test_every_result_carries_the_token_of_the_claim_it_answers() -> None:
    """The fence needs it: a result is settled only under its own claim's token."""
    items = [Claim(i, f"r{i}@example.org", f"r{i}@example.org", "", f"<m{i}@example.org>", token=f"me:1:aa/{i:04x}") for i in range(1, 6)]
    with smtp_server(Script(rcpt={"r2@example.org": "550 5.1.1 no such user"})) as (_, port):
        results = run(port, items)
    assert {sid: r.token for sid, r in results.items()} == {c.subscriber_id: c.token for c in items}
