"""When sending goes wrong: temporary failures are deferred and retried by the next plain run,
only permanent refusals of a reader are `failed` (and make `publish` exit 1 saying what to run),
a refusal of the sender is never the reader's fault, a tripped breaker defers the failures it
caused, and SIGINT / SIGTERM stop a run cleanly. Real aiosmtpd servers on loopback, a real
SQLite file, real signals, and the real `review-press publish` in a subprocess for exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

import review_press
from publishing import NEWSLETTER, POSTS, ledger_rows, options, smtp_table, subscribe, wait_out_pauses
from review_press.config import load_config
from review_press.delivery.run import StopRequest, stop_on_signals
from review_press.delivery.smtp import Policy
from review_press.publish import SendingStopped, publish
from review_press.store import ledger, open_store
from smtp_servers import Handler, Script, free_port, smtp_server

ONE_POST = {name: text for name, text in POSTS.items() if "first" in name or "old" in name}
TRIPS = Policy(max_attempts=2, backoff_base=0.01, backoff_cap=0.02, window=10, min_samples=10, threshold=0.8)


@pytest.fixture
def site(make_site: Callable[..., Path]) -> Callable[..., Path]:
    """A site with the newsletter set up and `[smtp]` pointing at `port` (a domain that says "slow down"
    is paused for 1 s, not a minute); `extra` goes into `[smtp]`."""

    def make(port: int, posts: dict[str, str] = ONE_POST, extra: str = "") -> Path:
        return make_site(dict(posts), NEWSLETTER + smtp_table(port, domain_backoff_seconds=1) + extra)

    return make


class SenderRefusingHandler(Handler):
    """A recording handler that refuses MAIL FROM with `mail_reply` while it is set."""

    def __init__(self, mail_reply: str | None) -> None:
        super().__init__(Script())
        self.mail_reply = mail_reply

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"


@contextmanager
def sender_refusing_server(reply: str) -> Iterator[tuple[SenderRefusingHandler, int]]:
    """A real aiosmtpd server on 127.0.0.1 that refuses the sender until `handler.mail_reply = None`."""
    handler, port = SenderRefusingHandler(reply), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def cli_publish(root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real `review-press publish --site ROOT` in its own process."""
    environ = {**os.environ, "PYTHONPATH": str(Path(review_press.__file__).parents[1]), "PYTHONWARNINGS": "ignore", **(env or {})}
    command = [sys.executable, "-m", "review_press", "publish", "--site", str(root)]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=120)


def counts(root: Path, slug: str) -> dict[str, int]:
    with open_store(load_config(root)) as store:
        return ledger.counts(store, slug)


@pytest.mark.parametrize(
    "script", [Script(data_reply="451 4.3.0 try again later", times=2), Script(drop=True, times=2)], ids=["451", "dropped"]
)
def test_temporary_failures_are_deferred_and_the_next_plain_publish_retries_them(site: Callable[..., Path], script: Script) -> None:
    with smtp_server(script) as (server, port):
        root = site(port)
        subscribe(root, 6)
        seen: list[Any] = []
        first = publish(root, options(), progress=seen.append)
        run = first.posts[0]
        assert (run.sent, run.failed, run.deferred) == (0, 0, 6)
        assert (first.failed, first.deferred) == (0, 6)
        assert (seen[-1].total, seen[-1].done, seen[-1].deferred) == (6, 6, 6)  # the progress counts them as done
        assert server.attempts == {f"r{i}@example.org": 2 for i in range(6)}  # max_attempts each, never re-claimed in the run
        assert ledger_rows(root) == {"deferred": 6}
        assert counts(root, "first")["deferred"] == 6
        wait_out_pauses(root)  # a 451 also paused example.org for every sender
        second = publish(root, options())
        assert second.retried == 6 and second.resumed == 0
        assert [(p.slug, p.sent, p.deferred) for p in second.posts] == [("first", 6, 0)]
        third = publish(root, options())
        assert third.posts == () and third.retried == 0
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(6)}
    assert ledger_rows(root) == {"sent": 6}


def test_a_refusal_of_the_sender_at_mail_from_is_never_a_readers_failure(site: Callable[..., Path]) -> None:
    with sender_refusing_server("553 5.7.1 sender address rejected: not owned by user") as (server, port):
        root = site(port)
        subscribe(root, 4)
        report = publish(root, options())
        assert (report.posts[0].failed, report.posts[0].deferred, report.failed) == (0, 4, 0)
        with open_store(load_config(root)) as store:
            errors = {row[0] for row in store.conn.execute("SELECT last_error FROM deliveries")}
        assert errors == {"the sender was refused: 553 5.7.1 sender address rejected: not owned by user"}
        server.mail_reply = None  # the sender is fixed
        again = publish(root, options())
        assert again.retried == 4 and again.posts[0].sent == 4
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(4)}


def test_a_tripped_breaker_defers_the_failures_it_caused_and_a_plain_rerun_retries_them(site: Callable[..., Path]) -> None:
    with smtp_server(Script(data_reply="554 5.7.1 service unavailable; client host blocked")) as (server, port):
        root = site(port)
        subscribe(root, 40)
        with pytest.raises(SendingStopped, match=r"stopped sending 'first': \d+ of the last 10 attempts failed .*554 5.7.1") as info:
            publish(root, options(policy=TRIPS))
        assert f"smtp://127.0.0.1:{port}" in str(info.value)
        assert info.value.report is not None
        stopped = info.value.report.posts[0]
        assert stopped.failed == 0 and stopped.deferred >= 10 and stopped.stopped
        rows = ledger_rows(root)
        assert "failed" not in rows and "sending" not in rows  # the server's refusals say nothing about the readers
        assert rows["deferred"] == stopped.deferred and rows["deferred"] + rows["pending"] == 40
        server.script.data_reply = None  # the server is fixed
        again = publish(root, options(policy=TRIPS))
        assert again.retried == stopped.deferred and again.posts[0].sent == 40
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(40)}


def test_publish_exits_1_when_messages_fail_permanently_and_says_what_to_run(site: Callable[..., Path]) -> None:
    refused = {f"r{i}@example.org": "554 5.7.1 policy rejection" for i in (1, 3, 5)}
    with smtp_server(Script(rcpt=refused)) as (server, port):
        root = site(port)
        subscribe(root, 8)
        result = cli_publish(root)
    assert result.returncode == 1, result.stderr
    assert "first: 5 sent, 3 failed, 0 bounced, 0 deferred" in result.stdout
    assert "3 failed permanently (554 5.7.1 policy rejection): see `review-press status`" in result.stderr
    assert "`review-press publish --retry-failed` tries them again" in result.stderr
    assert "Traceback" not in result.stderr
    assert sum(server.recipients().values()) == 5


@pytest.mark.slow
def test_publish_reports_deferred_messages_exits_0_and_a_plain_rerun_sends_them(site: Callable[..., Path]) -> None:
    with smtp_server(Script(data_reply="451 4.3.0 try again later", times=2)) as (server, port):
        root = site(port)
        subscribe(root, 3)
        first = cli_publish(root)
        assert first.returncode == 0, first.stderr
        assert "first: 0 sent, 0 failed, 0 bounced, 3 deferred" in first.stdout
        assert "3 deferred (temporary failures): run `review-press publish` again to retry them" in first.stderr
        wait_out_pauses(root)
        second = cli_publish(root)
    assert second.returncode == 0, second.stderr
    assert "retried 3 messages deferred by an earlier run" in second.stdout
    assert "first: 3 sent, 0 failed, 0 bounced, 0 deferred" in second.stdout
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(3)}


@pytest.mark.slow
def test_a_breaker_stop_exits_1_names_the_server_never_the_password_and_a_rerun_finishes(site: Callable[..., Path]) -> None:
    password = "s3cret-Pa55"
    with smtp_server(Script(data_reply="554 5.7.1 rejected for policy reasons"), auth=("ann", password)) as (server, port):
        root = site(port, extra='username = "ann"\npassword_env = "PRESS_SMTP_PW"\n')
        subscribe(root, 30)
        stopped = cli_publish(root, {"PRESS_SMTP_PW": password})
        assert stopped.returncode == 1, stopped.stderr
        assert "error: stopped sending 'first': 20 of the last 20 attempts failed (last reply: 554 5.7.1" in stopped.stderr
        assert f"smtp://127.0.0.1:{port}" in stopped.stderr and "run publish again" in stopped.stderr
        assert "failed permanently" not in stopped.stderr and "Traceback" not in stopped.stderr
        assert "deferred (temporary failures)" in stopped.stderr
        assert password not in stopped.stdout + stopped.stderr
        assert counts(root, "first")["failed"] == 0
        server.script.data_reply = None
        again = cli_publish(root, {"PRESS_SMTP_PW": password})
    assert again.returncode == 0, again.stderr
    assert "retried" in again.stdout and "first: 30 sent" in again.stdout
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(30)}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_publish_after_the_messages_in_flight_and_the_handler_is_restored(
    site: Callable[..., Path], signum: signal.Signals
) -> None:
    caught: list[int] = []

    def mine(n: int, frame: object) -> None:  # so that a publish that lets the signal through fails, not pytest
        caught.append(n)

    previous = signal.signal(signum, mine)
    try:
        with smtp_server() as (server, port):
            root = site(port)
            subscribe(root, 60)

            def kill_self(p: Any) -> None:
                if p.sent >= 5:
                    signal.raise_signal(signum)

            report = publish(root, options(), progress=kill_self)
            assert report.interrupted and report.signum == signum
            assert caught == []  # publish's own handler took it
            assert signal.getsignal(signum) is mine  # and put this one back
            assert 5 <= report.posts[0].sent < 60
            assert "sending" not in ledger_rows(root)  # settled or handed back
            again = publish(root, options())
            assert not again.interrupted and again.posts[0].sent == 60 - report.posts[0].sent
    finally:
        signal.signal(signum, previous)
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(60)}  # a clean stop duplicates nothing


def test_stop_on_signals_installs_only_on_the_main_thread_keeps_ignored_signals_and_restores() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest()
    with stop_on_signals(stop) as installed:
        assert installed
        signal.raise_signal(signal.SIGTERM)
        assert stop.is_set() and stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before

    elsewhere: list[bool] = []

    def on_a_thread() -> None:
        with stop_on_signals(StopRequest()) as installed:
            elsewhere.append(installed)

    thread = threading.Thread(target=on_a_thread)
    thread.start()
    thread.join()
    assert elsewhere == [False]

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_on_signals(StopRequest()):
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # an ignored Ctrl-C stays ignored
            assert signal.getsignal(signal.SIGTERM) is not before
    finally:
        signal.signal(signal.SIGINT, previous)


def test_publish_on_a_non_main_thread_sends_and_touches_no_signal_handler(site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = site(port)
        subscribe(root, 5)
        before = signal.getsignal(signal.SIGTERM)
        seen: list[Any] = []
        outcome: list[Any] = []

        def during(p: Any) -> None:
            seen.append(signal.getsignal(signal.SIGTERM))

        def run() -> None:
            try:
                outcome.append(publish(root, options(), progress=during))
            except Exception as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(60)
    (report,) = outcome
    assert not isinstance(report, Exception), report
    assert report.posts[0].sent == 5 and not report.interrupted
    assert seen and all(h is before for h in seen)
    assert server.recipients() == {f"r{i}@example.org": 1 for i in range(5)}
