"""Test support for the subscription web app: a real uvicorn server on 127.0.0.1 for a small
newsletter site (`running` -> `Live`), its Maildir outbox, confirm links, and the check that no
answer leaks a stack trace, a token or the secret."""

from __future__ import annotations

import contextlib
import email
import email.policy
import mailbox
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

from review_press.config import load_config
from review_press.store import Store, open_store
from review_press.web import Rate, WebLimits, create_app
from sites import post_text, write_site
from waiting import wait_for

SECRET = "test-secret-0123456789abcdef0123456789abcdef"
SITE_TOML = """\
title = "Test Site"
description = "A site for tests."
base_url = "https://example.org/blog/"
timezone = "UTC"

[author]
name = "Tess Ter"
email = "tess@example.org"

[newsletter]
since = 2026-01-01
from = "Test Site <letters@example.org>"
postal_address = "1 Test Street, Testville"

[web]
url = "{url}"
allowed_origins = ["https://example.org"]
"""
LOOSE = WebLimits(per_ip=Rate.per(1000, 1), per_address=Rate.per(1000, 1))
LEAKS = ("Traceback", 'File "', SECRET)


def loopback_socket() -> socket.socket:
    """A listening-ready TCP socket on 127.0.0.1 at a free port (the server takes it over)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(
    app: ASGIApp, sock: socket.socket, timeout: float = 10.0, tls: tuple[Path, Path] | None = None, lifespan: str = "on"
) -> Iterator[str]:
    """Run `app` under a real uvicorn server in a thread on `sock` (HTTPS with `tls` = (cert, key)); yield its base URL."""
    ssl = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
    server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_level="warning", access_log=False, **ssl))  # type: ignore[arg-type]

    def run() -> None:
        with contextlib.suppress(SystemExit):  # a failed startup exits the server, not the test run
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        sock.close()
        raise RuntimeError("uvicorn did not start")
    host, port = sock.getsockname()[:2]
    try:
        yield f"{'https' if tls else 'http'}://{host}:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout)


def outbox(root: Path) -> list[EmailMessage]:
    """Every message in the site's Maildir outbox, parsed."""
    path = root / "outbox"
    if not all((path / d).is_dir() for d in ("tmp", "new", "cur")):
        return []
    box = mailbox.Maildir(path, factory=None, create=False)
    return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in sorted(box.keys())]  # type: ignore[misc]


def confirm_link(msg: EmailMessage) -> str:
    """The confirm link in a confirmation email's plain-text part."""
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(r"(http://\S+/confirm/\S+)", text)
    assert match, text
    return match.group(1)


@dataclass
class Live:
    """A running app for one test site: its URL, an httpx client, and the site's folder."""

    root: Path
    url: str
    http: httpx.Client

    def store(self) -> Store:
        return open_store(load_config(self.root))  # the SQLite file, or REVIEW_PRESS_DATABASE_URL's database

    def status(self, address: str) -> str | None:
        with self.store() as store:
            sub = store.find(address)
        return sub.status if sub else None

    def subscribe(self, address: str, name: str = "", **kw: object) -> httpx.Response:
        return self.http.post("subscribe", data={"email": address, "name": name, "website": ""}, **kw)  # type: ignore[arg-type]

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [m for m in outbox(self.root) if address in str(m["To"])]

    def subscribe_and_confirm_link(self, address: str, name: str = "") -> str:
        assert self.subscribe(address, name).status_code == 200
        assert wait_for(lambda: len(self.mails_to(address)) == 1)
        return confirm_link(self.mails_to(address)[0])


def start_site(tmp_path: Path, limits: WebLimits = LOOSE, name: str = "site", newsletter: str = "") -> tuple[Path, socket.socket, ASGIApp]:
    """A one-post test site in tmp_path/`name` whose [web] url is a fresh loopback socket; the app for it, not yet serving.

    `newsletter` is added to its [newsletter] table (e.g. `topics = [...]`).
    """
    sock = loopback_socket()
    host, port = sock.getsockname()[:2]
    toml = SITE_TOML.format(url=f"http://{host}:{port}/").replace("\n[web]\n", f"\n{newsletter}\n[web]\n" if newsletter else "\n[web]\n")
    root = write_site(tmp_path / name, {"2026-02-01-hello.md": post_text("Hello", "2026-02-01")}, toml)
    return root, sock, create_app(root, limits)


@contextmanager
def running(tmp_path: Path, limits: WebLimits = LOOSE, name: str = "site", newsletter: str = "") -> Iterator[Live]:
    """The app of a fresh test site (`start_site`), served while the block runs."""
    root, sock, app = start_site(tmp_path, limits, name, newsletter)
    with serve(app, sock) as url, httpx.Client(base_url=url, timeout=10.0, follow_redirects=False) as http:
        yield Live(root, url, http)


def tampered(token: str) -> list[str]:
    """Forged and truncated versions of a good token."""
    flip = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    return [flip, token[:-1], token[:-6], token[:10], token + "AAAA", "A" * len(token), token.replace("A", "-", 1) or "x"]


def assert_clean(response: httpx.Response, *extra: str) -> None:
    """No stack trace, no secret, and none of `extra` (tokens, addresses) in a response."""
    for needle in (*LEAKS, *extra):
        assert needle not in response.text, needle


def wait_until_healthy(proc: subprocess.Popen[bytes], url: str, logs: Path) -> None:
    """Wait until a real web server process answers /healthz; its log in the error if it died or never did."""

    def ready() -> bool:
        try:
            return httpx.get(url + "healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    if not wait_for(lambda: proc.poll() is not None or ready(), timeout=60) or proc.poll() is not None:
        raise AssertionError("the server did not start:\n" + logs.read_text("utf-8", "replace"))
