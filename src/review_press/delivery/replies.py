"""SMTP replies read off a connection's buffered stream without smtplib's line-by-line loop.

A pipelined message (RFC 2920) gets its three replies (to MAIL, RCPT and DATA) back at once,
usually in one TCP segment: the first `read_reply` takes them all with one `recv` into the
stream's buffer and the next two are parsed from it, where smtplib's `getreply` spends a
`readline` and its bookkeeping on every line. It consumes exactly the bytes of the reply it
returns: the stream stays smtplib's, so `rset`, `quit` and the
unpipelined dialogue keep reading from it where this left off.

Each reply is read as smtplib's `getreply` reads it, so a refusal is classified the same
either way: the code is `int()` of a line's first three bytes (-1, ending the reply, when they
are not a number); a line whose fourth byte is `-` is continued; the text is each line from its
fifth byte, stripped, joined by LF; a line longer than `MAX_LINE` is `SMTPResponseException(500,
"Line too long.")`; a last line cut short by a hang-up counts as a line; a hang-up before any
line of a reply is `SMTPServerDisconnected`, and so is an `OSError` (a timeout) while reading.
"""

from __future__ import annotations

import io
import smtplib

MAX_LINE = 8192  # bytes of one reply line with its line end: smtplib's own limit (_MAXLINE)


def read_reply(stream: io.BufferedReader) -> tuple[int, bytes]:
    """The next reply on `stream`, `(code, text)` as smtplib's `getreply` returns it."""
    texts: list[bytes] = []  # the lines of the reply so far
    partial = b""  # the start of a line whose end has not arrived yet
    try:
        while True:
            chunk = stream.peek(1)  # what the buffer holds, or one recv when it is empty
            if not chunk:  # the server hung up: a line it cut short still counts, as in smtplib
                if partial and (reply := _take(partial, texts)) is not None:
                    return reply
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                line = partial + chunk[start : end + 1] if partial else chunk[start : end + 1]
                partial, start = b"", end + 1
                if (reply := _take(line, texts)) is not None:
                    stream.read(start)  # served from the buffer: exactly the bytes of this reply
                    return reply
            partial += chunk[start:]  # the rest of the buffer starts a line: take it, read on
            stream.read(len(chunk))
            if len(partial) > MAX_LINE:
                raise smtplib.SMTPResponseException(500, "Line too long.")
    except smtplib.SMTPException:  # an OSError too, but raised here
        raise
    except OSError as exc:  # a timeout, a reset
        raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}") from None


def take_reply(buffer: bytearray, *, eof: bool = False) -> tuple[int, bytes] | None:
    """The first whole reply in `buffer` (bytes received so far), removed from it, read as
    `read_reply` reads it; None while it is incomplete. At `eof` (the server hung up) a last line
    cut short counts as a line. For the send loop, which reads with `recv` into its own buffer."""
    texts: list[bytes] = []
    start = 0
    while (end := buffer.find(b"\n", start)) >= 0:
        line = bytes(buffer[start : end + 1])
        start = end + 1
        if (reply := _take(line, texts)) is not None:
            del buffer[:start]
            return reply
    if len(buffer) - start > MAX_LINE:
        raise smtplib.SMTPResponseException(500, "Line too long.")
    if eof and start < len(buffer) and (reply := _take(bytes(buffer[start:]), texts)) is not None:
        del buffer[:]
        return reply
    return None


def _take(line: bytes, texts: list[bytes]) -> tuple[int, bytes] | None:
    """Add one line to the reply being read (`texts`); the reply when this line ends it."""
    if len(line) > MAX_LINE:
        raise smtplib.SMTPResponseException(500, "Line too long.")
    texts.append(line[4:].strip(b" \t\r\n"))
    try:
        code = int(line[:3])
    except ValueError:
        return -1, b"\n".join(texts)
    if line[3:4] == b"-":
        return None
    return code, b"\n".join(texts)
