"""One thread driving every SMTP connection of a `Pool` with a non-blocking `selectors` loop.

With a thread per connection, each message cost several GIL hand-offs between the sending
threads. Here one thread renders the messages and moves every connection along as its socket
becomes ready. Each connection is a small state machine: MAIL, RCPT and DATA in one write
(RFC 2920) -> their three replies -> the dot-stuffed body -> its reply -> the next message. A
refusal is classified as `SmtpConnection._pipelined` classifies it and is followed by RSET (its
reply read and ignored) before the connection takes another message; a 421, a hang-up or a
timeout closes the connection.

Connections are opened (connect, EHLO, AUTH) by smtplib, blocking, on a helper thread; the
loop takes the socket over once it is open. Only plain sockets to servers that offer
PIPELINING come here (`SmtpConnection.drivable`); a reconnection that finds PIPELINING gone
sends through smtplib, blocking, on this thread. Retries wait in the loop (backoff with
jitter, `Pool.retry_delay`), as does the rate limit; `stop()` and the breaker cut short what
waits, as the threads would. At most `concurrency` messages are under way at once.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import smtplib
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..errors import DeliveryError
from ..store.ledger import Result
from .replies import take_reply
from .smtp import (
    Envelope,
    Job,
    SendError,
    SmtpConnection,
    _describe,
    _stuffed,
    _text,
    broken,
    classify,
    pipeline_refusal,
    pipelined_commands,
)

if TYPE_CHECKING:
    from .pool import Pool

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
CLOSED = "Connection unexpectedly closed"  # smtplib's words for a hang-up, as the threads report it
MAX_INBOX = 1 << 16  # bytes received without the replies awaited being complete: each recv rescans them all


class _Task:
    """A job under way: its envelope, the attempts made so far, the last error, when it may go next."""

    __slots__ = ("attempts", "due", "envelope", "job", "last", "warned")

    def __init__(self, job: Job, envelope: Envelope) -> None:
        self.job = job
        self.envelope = envelope
        self.attempts = 0
        self.last = ""
        self.warned = False  # its domain was reported on `Pool.backoffs`
        self.due = 0.0  # monotonic time before which it must not go (a retry's backoff)


class _Link:
    """One open connection. `stage` names the replies awaited (`expect` more of them): "commands"
    (MAIL, RCPT, DATA), "body" (end of data) or "reset" (RSET, after a refusal); "" when idle.
    `sock` is None for a connection sent through smtplib (no PIPELINING)."""

    __slots__ = ("closed", "conn", "deadline", "expect", "inbox", "out", "replies", "sock", "stage", "task")

    def __init__(self, conn: SmtpConnection, driven: bool) -> None:
        self.conn = conn
        self.sock: socket.socket | None = conn.client.sock if driven else None
        self.out: memoryview | None = None  # bytes written to the socket's buffer only in part so far
        self.inbox = bytearray()  # bytes received and not yet read as a reply
        self.replies: list[tuple[int, bytes]] = []
        self.expect = 0
        self.stage = ""
        self.task: _Task | None = None
        self.deadline = 0.0  # when the server has taken too long over the reply awaited
        self.closed = False

    def idle(self) -> bool:
        return not self.closed and self.task is None and self.expect == 0


class SendLoop:
    """Delivers a `Pool`'s jobs over up to `pool.concurrency` connections from one thread (`run`)."""

    def __init__(self, pool: Pool, first: SmtpConnection) -> None:
        self.pool = pool
        self.timeout: float = first.client.timeout
        self.selector = selectors.DefaultSelector()
        self._bell, self._ring = socket.socketpair()  # a byte on `_ring` wakes `select`
        self._bell.setblocking(False)
        self._ring.setblocking(False)
        self.selector.register(self._bell, READ, None)
        self._woken = False
        self.hungry = True  # it has room for a job and found none: a new one should wake it
        self.links: list[_Link] = []
        self.live: set[_Task] = set()  # every task not yet answered
        self.ready: list[_Task] = []  # tasks waiting for a connection, a token or their backoff
        self.opening: dict[Future[SmtpConnection], _Task] = {}
        self.opener: ThreadPoolExecutor | None = None
        self.closing = False  # `close()` was called: end once every task is answered
        self.limited_until = 0.0  # the rate limit's next token
        self._adopt(first)

    def submitted(self) -> None:
        """A job was queued: wake the loop only if it has room for it (`hungry`). A loop at
        capacity takes it when a message finishes: no wake-up (nor GIL hand-off) per job."""
        if self.hungry:
            self.wake()

    def wake(self) -> None:
        """Wake the loop (a job, `stop` or `close`); one byte at most until it has woken."""
        if not self._woken:
            self._woken = True
            with contextlib.suppress(OSError):  # the buffer is full (it will wake) or the loop has ended
                self._ring.send(b"\0")

    def run(self) -> None:
        """The thread's body: deliver until `close()`, then say QUIT on every connection."""
        try:
            self._run()
        except Exception as exc:  # a bug must not strand the run: every message held is answered
            self._abandon(exc)
        finally:
            self._shut()

    def _run(self) -> None:
        while True:
            self._take_jobs()
            if self.closing and not self.live:
                return
            self._start()
            for key, mask in self.selector.select(self._timeout()):
                if key.data is None:  # drain, then clear: a wake-up in between is seen by this turn's look
                    self._drain_bell()
                    self._woken = False
                else:
                    self._safely(key.data, self._service, key.data, mask)
            self._opened()
            self._expire()

    def _take_jobs(self) -> None:
        """Take jobs off the queue while fewer than `concurrency` are under way (all of them,
        answered `pending`, once the pool is halted); render each."""
        pool = self.pool
        while not self.closing and (pool.halted() or len(self.live) < pool.concurrency):
            self.hungry = True  # before looking: a job queued after the look then wakes it
            try:
                job = pool.jobs.get_nowait()
            except queue.Empty:
                return
            self.hungry = False
            if job is None:
                self.closing = True
                return
            if pool.halted():
                pool.results.put(pool.given_back(job))
                continue
            try:
                envelope = pool.render(job)
            except Exception as exc:
                pool.results.put(pool.internal_error(job, exc))
                continue
            if isinstance(envelope, Result):
                pool.results.put(envelope)
                continue
            task = _Task(job, envelope)
            self.live.add(task)
            self.ready.append(task)

    def _start(self) -> None:
        """Start each ready task that is due on an idle connection (or a new one), within the rate
        limit; once the pool is halted, cut every waiting task short."""
        pool, now = self.pool, time.monotonic()
        if pool.halted():
            for task in self.ready:
                self._finish(task, pool.cut_short(task.job, task.attempts, task.last))
            self.ready.clear()
            return
        for task in list(self.ready):
            if task.due > now or self.limited_until > now:
                continue
            link = self._idle_link()
            if link is None and len(self.links) + len(self.opening) >= pool.concurrency:
                return
            if (delay := pool.limiter.take()) > 0.0:
                self.limited_until = now + delay
                return
            self.ready.remove(task)
            task.attempts += 1
            if link is None:
                if self.opener is None:
                    self.opener = ThreadPoolExecutor(max_workers=pool.concurrency, thread_name_prefix="smtp-open")
                future = self.opener.submit(pool.connector.open)
                self.opening[future] = task
                future.add_done_callback(lambda _: self.wake())
            else:
                self._safely(link, self._begin, link, task)

    def _opened(self) -> None:
        """Connections opened by the helper threads: each starts its task, or fails it."""
        for future in [f for f in self.opening if f.done()]:
            task = self.opening.pop(future)
            try:
                conn = future.result()
            except DeliveryError as exc:  # could not (re)connect
                self._failed(task, broken(exc.message))
                continue
            except Exception as exc:
                self._finish(task, self.pool.internal_error(task.job, exc))
                continue
            link = self._adopt(conn)
            self._safely(link, self._begin, link, task)

    def _adopt(self, conn: SmtpConnection) -> _Link:
        driven = conn.drivable()
        link = _Link(conn, driven)
        if link.sock is not None:
            link.sock.setblocking(False)
            self.selector.register(link.sock, READ, link)
        self.links.append(link)
        return link

    def _idle_link(self) -> _Link | None:
        return next((link for link in self.links if link.idle()), None)

    def _begin(self, link: _Link, task: _Task) -> None:
        """Send `task`'s MAIL, RCPT and DATA in one write (or its whole dialogue through smtplib)."""
        link.task = task
        envelope = task.envelope
        try:
            sender, recipient = link.conn.paths(envelope)
            if link.sock is None:  # this server no longer offers PIPELINING: smtplib, blocking
                reply = link.conn.send(envelope)
                link.task = None
                self._sent(task, reply)
                return
        except SendError as error:
            link.task = None
            if error.reconnect:
                self._drop(link)
            self._failed(task, error)
            return
        self._ask(link, "commands", pipelined_commands(sender, recipient, envelope.smtputf8), 3)

    def _ask(self, link: _Link, stage: str, data: bytes, replies: int) -> None:
        """Write `data` and await `replies` replies, handled by `stage`'s step. Always last in its caller."""
        link.stage, link.expect, link.replies = stage, replies, []
        link.deadline = time.monotonic() + self.timeout
        assert link.sock is not None
        if link.out is not None:  # the server answered before it had all we wrote (a refusal): queue behind it
            link.out = memoryview(bytes(link.out) + data)
            return
        try:
            sent = link.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(link, _describe(exc))
            return
        if sent < len(data):
            link.out = memoryview(data)[sent:]
            self.selector.modify(link.sock, READ | WRITE, link)

    def _service(self, link: _Link, mask: int) -> None:
        """The socket of `link` is ready: write what is left, read what came."""
        if link.closed or link.sock is None:
            return
        if mask & WRITE and link.out is not None:
            try:
                sent = link.sock.send(link.out)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._lost(link, _describe(exc))
                return
            link.out = link.out[sent:] if sent < len(link.out) else None
            link.deadline = time.monotonic() + self.timeout
            if link.out is None:
                self.selector.modify(link.sock, READ, link)
        if not mask & READ:
            return
        try:
            data = link.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(link, f"{CLOSED}: {exc}")
            return
        if not data:  # the server hung up: a last line it cut short still counts
            self._read(link, eof=True)
            if link.expect:
                self._lost(link, CLOSED)
            else:
                self._drop(link)
            return
        if not link.expect:  # something unasked for (a 421 before it hangs up): this connection is done
            self._drop(link)
            return
        link.inbox += data  # no new deadline for a part of a reply: a server dripping bytes would never time out
        self._read(link, eof=False)
        if link.expect and len(link.inbox) > MAX_INBOX:  # a reply of endless lines would stall every connection
            self._lost(link, "reply too long")

    def _read(self, link: _Link, *, eof: bool) -> None:
        """Take the replies awaited from what came; when all are in, the step of their stage."""
        while link.expect and not link.closed:
            try:
                reply = take_reply(link.inbox, eof=eof)
            except smtplib.SMTPResponseException as exc:  # a line too long
                self._lost(link, _describe(exc))
                return
            if reply is None:
                return
            link.replies.append(reply)
            link.expect -= 1
            link.deadline = time.monotonic() + self.timeout  # each reply whole within the timeout
        if link.closed or link.expect:
            return
        stage, replies = link.stage, link.replies
        link.stage, link.replies = "", []
        if stage == "commands":
            self._after_commands(link, replies)
        elif stage == "body":
            self._after_body(link, replies)
        elif replies[-1][0] != 250:  # RSET not taken (a 421 before it hangs up): as the threads do, a new connection
            self._drop(link)
        if link.inbox and link.idle():  # more than was asked for came with the last reply: this connection is out of step
            self._drop(link)

    def _after_commands(self, link: _Link, replies: list[tuple[int, bytes]]) -> None:
        """The replies to MAIL, RCPT and DATA: the body goes, or the refusal is classified (an
        empty message ended at once if it said 354 all the same, then RSET)."""
        task = link.task
        assert task is not None
        error = pipeline_refusal(replies)
        if error is None:
            if link.inbox:  # a reply before the body went: it cannot be the body's, and would be taken for it
                self._lost(link, "a reply came before the message was sent")
                return
            self._ask(link, "body", _stuffed(task.envelope.data), 1)
            return
        self._refused(link, task, error, ended=replies[2][0] != 354)

    def _after_body(self, link: _Link, replies: list[tuple[int, bytes]]) -> None:
        task = link.task
        assert task is not None
        code, text = replies[0]
        if code == 250 and link.out is not None:  # "accepted" before it had the whole message: not an acceptance
            self._lost(link, "the server answered before the end of the message")
            return
        if code == 250:
            link.task = None
            self._sent(task, f"{code} {_text(text)}")
            return
        self._refused(link, task, classify(code, _text(text), recipient_stage=True), ended=True)

    def _refused(self, link: _Link, task: _Task, error: SendError, *, ended: bool) -> None:
        """A refusal of `task`: its connection closes (421) or says RSET (after an empty message
        when the data phase is still open), and the task fails or waits to be retried."""
        link.task = None
        if error.reconnect:
            self._drop(link)
        else:
            self._ask(link, "reset", b"RSET\r\n" if ended else b".\r\nRSET\r\n", 1 if ended else 2)
        self._failed(task, error)

    def _lost(self, link: _Link, reason: str) -> None:
        """The connection broke (hang-up, reset, timeout, unreadable reply): it closes, and its task
        fails with the refusal it had already read, if any, else as `connection lost` (retried)."""
        task, stage, replies = link.task, link.stage, link.replies
        self._drop(link)
        if task is None:
            return
        error = pipeline_refusal(replies) if stage == "commands" else None  # it hung up after refusing: the refusal is the news
        if error is not None:
            error.reconnect = True
        self._failed(task, error or broken(f"connection lost: {reason}"))

    def _drop(self, link: _Link) -> None:
        """Close a connection without QUIT (it is gone, or of no more use)."""
        if link.closed:
            return
        link.closed, link.task, link.expect, link.stage = True, None, 0, ""
        self.links.remove(link)
        if link.sock is not None:
            self.selector.unregister(link.sock)
        link.conn.client.close()

    def _expire(self) -> None:
        """Connections whose server took longer than `timeout` over a reply. The loop may have
        been busy past a deadline (smtplib's blocking dialogue, a render): what came meanwhile is
        read first, so a reply that arrived in time is never taken for a timeout (and its
        message sent again)."""
        now = time.monotonic()
        for link in [link for link in self.links if link.expect and link.deadline <= now]:
            if link.sock is not None:
                self._safely(link, self._service, link, READ)
            if not link.closed and link.expect and link.deadline <= now:
                self._safely(link, self._lost, link, "timed out")

    def _timeout(self) -> float | None:
        """How long `select` may wait: not at all when a task finished without touching a socket
        (`_start`) and a job waits for its place, or the last one did after `close()`; else until
        a reply is overdue, or a waiting task may go."""
        pool = self.pool
        if self.closing and not self.live:
            return 0.0
        if not self.closing and (len(self.live) < pool.concurrency or pool.halted()):
            self.hungry = True  # before looking, as in `_take_jobs`
            if not pool.jobs.empty():
                return 0.0
        times = [link.deadline for link in self.links if link.expect]
        if self.ready and (self._idle_link() is not None or len(self.links) + len(self.opening) < self.pool.concurrency):
            times.append(max(min(t.due for t in self.ready), self.limited_until))
        return max(0.0, min(times) - time.monotonic()) if times else None

    def _sent(self, task: _Task, reply: str) -> None:
        self._finish(task, self.pool.sent(task.job, task.attempts, reply))

    def _failed(self, task: _Task, error: SendError) -> None:
        """A failed attempt: the task's final result, or back to wait its backoff."""
        pool = self.pool
        task.last = error.reply
        task.warned = pool.warn(task.envelope, error, task.warned)
        if (result := pool.failed(task.job, task.attempts, error)) is not None:
            self._finish(task, result)
            return
        task.due = time.monotonic() + pool.retry_delay(task.attempts)
        self.ready.append(task)

    def _finish(self, task: _Task, result: Result) -> None:
        self.live.discard(task)
        self.pool.results.put(result)

    def _safely(self, link: _Link, action: Callable[..., None], *args: object) -> None:
        """Run one step for `link`; a bug in it closes the connection and fails the message it
        carried (and any other it left unaccounted for) as an internal error, not the run."""
        try:
            action(*args)
        except Exception as exc:
            self._drop(link)
            held = set(self.ready) | set(self.opening.values()) | {lk.task for lk in self.links}
            for task in [t for t in self.live if t not in held]:
                self._finish(task, self.pool.internal_error(task.job, exc))

    def _abandon(self, exc: Exception) -> None:
        """The loop itself failed: every task is answered as an internal error, the pool stops,
        and each job still to come is given back `pending` until `close()`."""
        pool = self.pool
        for task in list(self.live):
            self._finish(task, pool.internal_error(task.job, exc))
        self.ready.clear()
        pool.stopping.set()
        while not self.closing:
            job = pool.jobs.get()
            if job is None:
                self.closing = True
            else:
                pool.results.put(pool.given_back(job))

    def _drain_bell(self) -> None:
        """Empty the wake-up socket (`wake`)."""
        with contextlib.suppress(BlockingIOError):
            self._bell.recv(4096)

    def _shut(self) -> None:
        """QUIT on every connection at once, then wait for the servers to hang up, all together
        and for one `timeout` at most (one connection after another, N servers that never answer
        would hold the run N timeouts); let go of the rest."""
        if self.opener is not None:
            self.opener.shutdown(wait=True)
        for future in self.opening:
            if future.exception() is None:
                future.result().close()
        for link in list(self.links):
            if link.sock is None:  # smtplib's own dialogue: its QUIT, blocking
                link.conn.close()
                self.links.remove(link)
                continue
            try:
                link.sock.send(b"QUIT\r\n")  # six bytes: the socket's buffer takes them, or it is gone
                self.selector.modify(link.sock, READ, link)  # its reply, never a write it no longer has
            except OSError:
                self._drop(link)
        deadline = time.monotonic() + self.timeout
        while self.links and (left := deadline - time.monotonic()) > 0:
            for key, _ in self.selector.select(left):
                link = key.data
                if link is None:
                    self._drain_bell()
                    continue
                try:
                    got = link.sock.recv(1 << 16)
                except BlockingIOError:  # woken with nothing to read after all
                    continue
                except OSError:
                    got = b""
                link.inbox += got
                if not got or b"\n221" in b"\n" + link.inbox:  # it said goodbye, or hung up: done with it
                    self._drop(link)
        for link in list(self.links):  # silent to the end
            self._drop(link)
        self.selector.close()
        self._bell.close()
        self._ring.close()
