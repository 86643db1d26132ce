"""The sending pool: N connections carrying many messages, fed jobs, giving back one `Result` each.

A plain-socket SMTP server that offers PIPELINING is driven by one thread (`loop.SendLoop`);
anything else (TLS, a server without PIPELINING, the Maildir, a test's connector) gets a thread
per connection (`Pool._work`). Both share the retry, backoff and breaker bookkeeping here, and
the pieces of `smtp` (envelopes, connections, the rate limiter, the policy, the breaker).
"""

from __future__ import annotations

import queue
import random
import threading

from ..errors import DeliveryError
from ..store.ledger import Result
from .loop import SendLoop
from .smtp import (
    BACKOFF_CODES,
    Breaker,
    Connection,
    Connector,
    Envelope,
    Job,
    NothingToSend,
    Policy,
    RateLimiter,
    SendError,
    SmtpConnection,
    broken,
)


class Pool:
    """N connections, each carrying many messages. Feed `submit`, drain `results`.

    Each job comes back as one `Result`: `sent`; `bounced` (5.1.x); `failed` (any other
    permanent refusal of the reader: 5xx at RCPT or DATA); `deferred` (temporary failures to
    the last attempt, a refusal of the sender at MAIL FROM, or a temporary failure cut short by
    the breaker): a later run retries it. `stop()` (Ctrl-C, SIGTERM, breaker) lets each
    connection finish the message it is sending; jobs not yet started come back as `pending`,
    as do temporary failures cut short by `stop()` alone.

    A plain-socket SMTP server that offers PIPELINING gets one thread driving every connection
    (`loop.SendLoop`: no GIL hand-off between sending threads); anything else (TLS, a server
    without PIPELINING, the Maildir, a test's connector) gets a thread per connection.
    """

    def __init__(self, connector: Connector, concurrency: int, policy: Policy, limiter: RateLimiter | None = None) -> None:
        self.connector = connector
        self.concurrency = concurrency
        self.policy = policy
        self.limiter = limiter or RateLimiter()
        self.breaker = Breaker(policy)
        self.stopping = threading.Event()
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.results: queue.Queue[Result] = queue.Queue()
        self.backoffs: queue.Queue[tuple[str, str]] = queue.Queue()  # (domain, its 421/450/451 reply) as they come
        first = connector.open()  # fail fast, before anything is claimed
        self.loop: SendLoop | None = None
        if isinstance(first, SmtpConnection) and first.drivable():
            self.loop = SendLoop(self, first)
            self.threads = [threading.Thread(target=self.loop.run, daemon=True)]
        else:
            self.threads = [threading.Thread(target=self._work, args=(first if i == 0 else None,), daemon=True) for i in range(concurrency)]
        for t in self.threads:
            t.start()

    def submit(self, job: Job) -> None:
        self.jobs.put(job)
        if self.loop is not None:
            self.loop.submitted()

    def stop(self) -> None:
        """Ask every connection to finish its current message and give back the rest."""
        self.stopping.set()
        if self.loop is not None:
            self.loop.wake()

    def close(self) -> None:
        """End the threads (after the queued jobs, or at once after `stop`) and their connections."""
        for _ in self.threads:
            self.jobs.put(None)
        if self.loop is not None:
            self.loop.wake()
        for t in self.threads:
            t.join()

    def halted(self) -> bool:
        """True once `stop()` was called or the breaker tripped: nothing new starts."""
        return self.stopping.is_set() or self.breaker.tripped is not None

    def _work(self, conn: Connection | None) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                if self.halted():
                    self.results.put(self.given_back(job))
                    continue
                try:
                    result, conn = self._deliver(job, conn)
                except Exception as exc:  # a bug must not strand the run: report it against the message
                    result = self.internal_error(job, exc)
                    if conn is not None:
                        conn.close()
                        conn = None
                self.results.put(result)
        finally:
            if conn is not None:
                conn.close()

    def render(self, job: Job) -> Envelope | Result:
        """The job's envelope, or its final `Result` when there is nothing to send or it cannot be built."""
        sid, token = job.claim.subscriber_id, job.claim.token  # every result carries its claim's token: the fence
        try:
            return job.render(job.claim)
        except NothingToSend as exc:
            return Result(sid, "skipped", error=str(exc), token=token)
        except (DeliveryError, ValueError) as exc:
            return Result(sid, "failed", error=f"cannot build the message: {exc}", token=token)

    def _deliver(self, job: Job, conn: Connection | None) -> tuple[Result, Connection | None]:
        envelope = self.render(job)
        if isinstance(envelope, Result):
            return envelope, conn
        last, warned = "", False
        for attempt in range(1, self.policy.max_attempts + 1):
            if not self.limiter.wait(self.stopping):
                return self.cut_short(job, attempt - 1, last), conn
            try:
                if conn is None:
                    conn = self.connector.open()
                reply = conn.send(envelope)
            except DeliveryError as exc:  # could not (re)connect
                error = broken(exc.message)
            except SendError as exc:
                error = exc
            else:
                return self.sent(job, attempt, reply), conn
            last = error.reply
            warned = self.warn(envelope, error, warned)
            if error.reconnect and conn is not None:
                conn.close()
                conn = None
            if (result := self.failed(job, attempt, error)) is not None:
                return result, conn
            if self.stopping.wait(self.retry_delay(attempt)) or self.breaker.tripped:
                return self.cut_short(job, attempt, last), conn
        raise AssertionError("unreachable: the last attempt's failure is final")

    def sent(self, job: Job, attempts: int, reply: str) -> Result:
        """The server took the message: counted with the breaker, and its `Result`."""
        self.breaker.record(True)
        return Result(job.claim.subscriber_id, "sent", attempts=attempts, reply=reply, token=job.claim.token)

    def warn(self, envelope: Envelope, error: SendError, warned: bool) -> bool:
        """Report the recipient's domain on `backoffs` at its first 421/450/451 (told at once, not
        after the retries); whether it has been reported."""
        if error.temporary and not warned and error.reply[:3] in BACKOFF_CODES:
            self.backoffs.put((envelope.recipient.rpartition("@")[2].lower(), error.reply))
            return True
        return warned

    def failed(self, job: Job, attempt: int, error: SendError) -> Result | None:
        """Count a failed attempt with the breaker; the job's final `Result`, or None to retry it."""
        sid, token = job.claim.subscriber_id, job.claim.token
        self.breaker.record(error.bounce, error.reply)
        if not error.temporary:
            if error.sender:  # the server refused the sender, not this reader: a later run retries
                return Result(sid, "deferred", attempts=attempt, error=f"the sender was refused: {error.reply}", token=token)
            return Result(sid, "bounced" if error.bounce else "failed", attempts=attempt, error=error.reply, token=token)
        if attempt >= self.policy.max_attempts:
            error_text = f"gave up after {self.policy.max_attempts} attempts: {error.reply}"
            return Result(sid, "deferred", attempts=self.policy.max_attempts, error=error_text, token=token)
        return None

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before the attempt after `attempt`: exponential backoff with jitter."""
        delay = min(self.policy.backoff_cap, self.policy.backoff_base * 2 ** (attempt - 1))
        return random.uniform(delay / 2, delay)

    def cut_short(self, job: Job, attempts: int, error: str) -> Result:
        """A message whose retries were cut short: `deferred` when the breaker tripped after it had
        failed (the server refuses everything; a later run retries it), else back to `pending`."""
        status = "deferred" if attempts and self.breaker.tripped else "pending"
        return Result(job.claim.subscriber_id, status, attempts=attempts, error=error, token=job.claim.token)

    @staticmethod
    def given_back(job: Job) -> Result:
        """A job not started because the pool is halted: its row goes back to `pending`."""
        return Result(job.claim.subscriber_id, "pending", token=job.claim.token)

    @staticmethod
    def internal_error(job: Job, exc: Exception) -> Result:
        """A bug must not strand the run: the message is reported failed, naming the exception's class."""
        error = f"internal error: {exc.__class__.__name__}"
        return Result(job.claim.subscriber_id, "failed", attempts=1, error=error, token=job.claim.token)
