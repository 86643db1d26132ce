"""The pipelined reply parser (`delivery.replies.read_reply`) against a real loopback server that
sends well-formed and broken replies, in one segment or cut into pieces: it must read each as
smtplib's `getreply` reads the same bytes, and take nothing past the reply it returns."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from review_press.delivery.replies import MAX_LINE, read_reply, take_reply


@contextmanager
def serving(pieces: list[bytes], *, hang_up: bool = True) -> Iterator[socket.socket]:
    """A connection to a loopback server that sends `pieces` (each its own write, a pause
    between them so they arrive as separate segments), then hangs up (or keeps the line open)."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for piece in pieces:
                conn.sendall(piece)
                time.sleep(0.02)
            if not hang_up:
                done.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        yield client
    finally:
        done.set()
        client.close()
        thread.join(10)
        listener.close()


def outcome(read: object) -> object:
    """What a read gave: the reply, or the exception's type and arguments."""
    try:
        return read()  # type: ignore[operator]
    except smtplib.SMTPException as exc:
        return (type(exc), exc.args)


def until_failure(read: object, count: int) -> list[object]:
    """Up to `count` reads, ending at the first that fails (smtplib closes the connection then)."""
    found: list[object] = []
    while len(found) < count and not (found and isinstance(found[-1], tuple) and isinstance(found[-1][0], type)):
        found.append(outcome(read))
    return found


def ours(pieces: list[bytes], count: int) -> list[object]:
    with serving(pieces) as sock:
        stream = sock.makefile("rb")
        return until_failure(lambda: read_reply(stream), count)


def smtplibs(pieces: list[bytes], count: int) -> list[object]:
    with serving(pieces) as sock:
        client = smtplib.SMTP()
        client.sock, client.file = sock, sock.makefile("rb")
        return until_failure(client.getreply, count)


def buffered(pieces: list[bytes], count: int) -> list[object]:
    """`take_reply` as the send loop uses it: bytes from each `recv` added to a buffer, a reply
    taken when whole; at the hang-up a last line cut short counts, else it is a disconnection."""
    with serving(pieces) as sock:
        buffer, eof = bytearray(), False

        def read() -> tuple[int, bytes]:
            nonlocal eof
            while (reply := take_reply(buffer, eof=eof)) is None:
                if eof:
                    raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
                data = sock.recv(65536)
                buffer.extend(data)
                eof = not data
            return reply

        return until_failure(read, count)


CASES = {
    "one line": [b"250 2.0.0 ok\r\n"],
    "multi-line": [b"250-first\r\n250-second line\r\n250 last\r\n"],
    "three pipelined in one segment": [b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"],
    "cut mid-line and mid-code": [b"25", b"0-fir", b"st\r\n250 l", b"ast\r\n5", b"50 5.1.1 no\r\n"],
    "bare LF line ends": [b"250-a\n250 b\n"],
    "non-ASCII text": [b"550 5.1.1 \xc3\xa9\xff unknown \x00 user\r\n"],
    "a code that is no number": [b"2x0-what\r\n250 ok\r\n"],
    "non-ASCII code": [b"\xff\xfe0 what\r\n"],
    "no text": [b"250\r\n", b"354\r\n"],
    "hang-up between lines of a reply": [b"250-first\r\n"],
    "hang-up in a last line without its line end": [b"550 5.1.1 cut"],
    "hang-up in a continued line without its line end": [b"250-cut"],
    "hang-up before a byte": [],
    "a line too long": [b"250 " + b"x" * (MAX_LINE + 100) + b"\r\n"],
    "a line just long enough": [b"250 " + b"x" * (MAX_LINE - 6) + b"\r\n"],
    "a line one byte too long": [b"250 " + b"x" * (MAX_LINE - 5) + b"\r\n"],
    "a long line in pieces": [b"250 " + b"x" * 5000, b"y" * 5000 + b"\r\n"],
}


@pytest.mark.parametrize("pieces", CASES.values(), ids=CASES.keys())
def test_each_reply_is_read_as_smtplib_reads_it(pieces: list[bytes]) -> None:
    assert ours(pieces, 3) == smtplibs(pieces, 3)


@pytest.mark.parametrize("pieces", CASES.values(), ids=CASES.keys())
def test_each_reply_taken_from_a_buffer_is_read_as_smtplib_reads_it(pieces: list[bytes]) -> None:
    assert buffered(pieces, 3) == smtplibs(pieces, 3)


def test_take_reply_takes_only_its_reply_and_waits_for_a_whole_one() -> None:
    buffer = bytearray(b"250 2.1.0 ok\r\n250-queued\r\n250 as")
    assert take_reply(buffer) == (250, b"2.1.0 ok")
    assert take_reply(buffer) is None and buffer == bytearray(b"250-queued\r\n250 as")
    buffer += b" X1\r\n354 go\r\n"
    assert take_reply(buffer) == (250, b"queued\nas X1")
    assert buffer == bytearray(b"354 go\r\n")


def test_it_takes_only_its_reply_so_smtplib_reads_on_from_the_same_stream() -> None:
    with serving([b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n250-queued\r\n250 as X1\r\n"], hang_up=False) as sock:
        client = smtplib.SMTP()
        client.sock, client.file = sock, sock.makefile("rb")
        assert [read_reply(client.file) for _ in range(3)] == [(250, b"2.1.0 ok"), (250, b"2.1.5 ok"), (354, b"go")]
        assert client.getreply() == (250, b"queued\nas X1")


def test_a_server_that_says_nothing_times_out_as_a_disconnection() -> None:
    with serving([], hang_up=False) as sock:
        sock.settimeout(0.2)
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            read_reply(sock.makefile("rb"))
