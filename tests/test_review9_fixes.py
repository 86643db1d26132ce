"""Review 9: each defect the reviewer found, fed its hostile input and refused.

1. `web`: every response carries the security headers, a 500 and a 503 included (the headers
   wrap the whole app, outside Starlette's error middleware); a busy database is a 503 with
   Retry-After; the error page loads nothing (no Referer can carry a token anywhere).
2. `serve`: no header injection through /email/<slug> and never a protocol-relative Location.
3. `serve`: a file of out/ swapped for a symlink to a secret outside is never served (the
   file is opened once, and the opened file is checked).
4. `serve`: `/__reload?build=abc` is a 400, not a traceback.
5. SMTP: a non-ASCII password logs in (UTF-8 over AUTH PLAIN), or is a clear error naming the
   setting; never a traceback, never a character of it.
6. REVIEW_PRESS_SECRET: its bytes as they are (not UTF-8 is fine); shorter than 32 characters
   is refused, naming the variable and never its value.
7. No token in any log line, `--log-level trace` (the ASGI scope) and `?<token>` included.
8. The confirmation email never echoes the name typed into the form.
9. `subscribers export FILE` is atomic and 0600; a full disk names the file and keeps the old one.

The servers are real: uvicorn (in a thread, or the real process), `serve`'s own HTTP server,
aiosmtpd, and the real `review-press` command in a subprocess where its output matters.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from typer.testing import CliRunner

import review_press
from live_web import LOOSE, SECRET, SITE_TOML, Live, assert_clean, confirm_link, loopback_socket, running, serve, wait_until_healthy
from publishing import NEWSLETTER, smtp_table
from review_press.cli import app as cli
from review_press.config import Config, load_config
from review_press.delivery.smtp import Envelope, SmtpConnector
from review_press.errors import DeliveryError
from review_press.serve import RELOAD_PATH, LiveServer
from review_press.store import SQLiteStore, Store, db_path, open_store
from review_press.tokens import SECRET_ENV, load_secret, make_token
from review_press.web import service
from review_press.web.confirm import confirm_key, make_confirm_token
from review_press.web.logs import MaskTokens
from sites import post_text, write_site
from smtp_servers import Handler, free_port
from waiting import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # aiosmtpd, on loopback
runner = CliRunner()
POSTS = {"2026-02-01-hello.md": post_text("Hello", "2026-02-01")}
SECURITY = {
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
}
LOADS_SOMETHING = re.compile(r"<(?:link|script|img|iframe|object|embed|source|video|audio)\b|\bsrc\s*=|url\s*\(|@import", re.IGNORECASE)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)


def assert_security_headers(r: httpx.Response) -> None:
    """Every header of `SECURITY`, and a CSP that forbids framing."""
    for name, value in SECURITY.items():
        assert r.headers.get(name) == value, (r.status_code, name, dict(r.headers))
    assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), dict(r.headers)


def in_a_day() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


# --- 1. every response carries the headers; a busy database is a 503 -------------------------

LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@contextmanager
def locked_by_another_process(path: Path) -> Iterator[None]:
    """Another process holds `BEGIN EXCLUSIVE` on the database at `path` until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def quick_store(config: Config) -> Store:
    """The site's store with a 0.5 s busy wait instead of 10 s, so the test is quick (the outcome is the same)."""
    return SQLiteStore.open(db_path(config), busy_timeout=0.5)


def test_a_busy_database_is_503_with_retry_after_every_security_header_and_a_page_that_loads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importlib.import_module("review_press.web.app"), "open_store", quick_store)
    with running(tmp_path) as live:
        with live.store() as store:
            pending = store.add("pend@example.org", status="pending")
            active = store.add("act@example.org", status="active")
        confirm = make_confirm_token(confirm_key(SECRET.encode()), pending.id, pending.address, in_a_day())
        unsub = make_token(SECRET.encode(), active.id)
        with locked_by_another_process(db_path(load_config(live.root))):
            answers = [
                live.http.get(f"confirm/{confirm}"),
                live.http.post(f"unsubscribe/{unsub}", content=b"List-Unsubscribe=One-Click"),
                live.http.post(f"unsubscribe?token={unsub}"),
                live.http.get(f"confirm/{confirm}", headers={"Accept": "application/json"}),
            ]
        for r in answers:
            assert r.status_code == 503, (r.status_code, r.text[:300])
            assert r.headers.get("retry-after", "").isdigit()
            assert_security_headers(r)
            assert not LOADS_SOMETHING.search(r.text), r.text
            assert_clean(r, confirm, unsub, "press.db", "busy (another")
        assert answers[-1].json()["ok"] is False
        assert (live.status("pend@example.org"), live.status("act@example.org")) == ("pending", "active")  # nothing half-done
        assert live.http.get(f"confirm/{confirm}").status_code == 200  # and once the lock is gone, it works
        assert live.http.post(f"unsubscribe/{unsub}").status_code == 200


def test_a_raw_sqlite_busy_error_is_a_503_and_any_other_a_500_both_with_the_headers(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    errors = iter([sqlite3.OperationalError("database is locked"), sqlite3.IntegrityError("CHECK constraint failed")])

    def fails(*args: object) -> None:
        raise next(errors)

    monkeypatch.setattr(service.Subscriptions, "holder", fails)
    token = "A" * 32
    busy, broken = live.http.get(f"unsubscribe/{token}"), live.http.get(f"unsubscribe/{token}")
    assert (busy.status_code, broken.status_code) == (503, 500)
    assert busy.headers.get("retry-after", "").isdigit()
    for r in (busy, broken):
        assert_security_headers(r)
        assert not LOADS_SOMETHING.search(r.text)
        assert_clean(r, "CHECK constraint", "locked", "sqlite3")
    assert live.http.get("healthz").status_code == 200  # the connection and the server carry on


BROKEN_NOTICE = '{% extends "base.html" %}{% block content %}{{ 1 // 0 }}{% endblock %}\n'


def test_a_template_that_raises_is_a_500_with_every_security_header_and_a_page_that_loads_nothing(tmp_path: Path) -> None:
    from review_press.web import create_app

    sock = loopback_socket()
    host, port = sock.getsockname()[:2]
    root = write_site(tmp_path / "site", POSTS, SITE_TOML.format(url=f"http://{host}:{port}/"))
    (root / "templates" / "web").mkdir(parents=True)
    (root / "templates" / "web" / "notice.html").write_text(BROKEN_NOTICE, "utf-8")
    token = "A" * 38
    with serve(create_app(root, LOOSE), sock) as url, httpx.Client(base_url=url, timeout=10) as http:
        answers = [http.get(f"confirm/{token}"), http.post(f"unsubscribe/{token}"), http.get("no/such/page")]
        for r in answers:
            assert r.status_code == 500 and "Something went wrong" in r.text
            assert_security_headers(r)
            assert not LOADS_SOMETHING.search(r.text), r.text
            assert_clean(r, token, "ZeroDivisionError", "notice.html")
        assert http.get("healthz").status_code == 200


def test_the_refusal_of_a_site_without_a_url_carries_the_headers_too(tmp_path: Path) -> None:
    from review_press.web import SiteApp

    root = write_site(tmp_path / "site", POSTS, SITE_TOML.split("[web]")[0])
    with serve(SiteApp({"REVIEW_PRESS_SITE": str(root)}), loopback_socket(), lifespan="off") as url:
        r = httpx.get(url + "confirm/" + "A" * 38, timeout=10)
    assert r.status_code == 503
    assert_security_headers(r)


# --- 2, 3, 4. serve -----------------------------------------------------------------------------


@pytest.fixture
def live_server(make_site: Callable[..., Path]) -> Iterator[LiveServer]:
    """`serve`'s real HTTP server over an out/ made by hand (no build: the build is not what is tested)."""
    root = make_site({"2026-01-05-hello.md": post_text("Hello", "2026-01-05")})
    out = root / "out"
    (out / "posts" / "hello").mkdir(parents=True)
    (out / "posts" / "hello" / "index.html").write_text("<html><body><p>hello</p></body></html>", "utf-8")
    (out / "x.txt").write_text("public text\n", "utf-8")
    live = LiveServer(root, port=0, build=lambda _root: None)
    live.start()
    try:
        yield live
    finally:
        live.stop()


def raw_get(port: int, target: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send `GET target` exactly as written (no client normalises it); (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        return 0, [], b""  # closed without an answer
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    "target",
    [
        "/email/x%0d%0aSet-Cookie:%20pwned=1",
        "/email/x%0aSet-Cookie:%20pwned=1",
        "/email/x%0dSet-Cookie:%20pwned=1",
        "/email/x%00",
        "/posts/hello%0d%0aSet-Cookie:%20pwned=1",
    ],
)
def test_serve_refuses_control_characters_in_the_path_no_header_injection(live_server: LiveServer, target: str) -> None:
    status, headers, _ = raw_get(live_server.port, target)
    assert status == 400
    assert "set-cookie" not in dict(headers) and not any("pwned" in k + v for k, v in headers), headers
    assert "location" not in dict(headers)


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/%2Femail/x", "/email/x/"),
        ("//email/x", "/email/x/"),
        ("/%2F%2Femail/x", "/email/x/"),
        ("/email/a%20b", "/email/a%20b/"),
        ("/email/x", "/email/x/"),
        ("/posts/hello", "/posts/hello/"),
        ("/%2Fposts/hello", "/posts/hello/"),
        ("//posts//hello", "/posts/hello/"),
    ],
)
def test_serve_redirects_only_to_a_path_of_its_own_never_protocol_relative(live_server: LiveServer, target: str, location: str) -> None:
    status, headers, _ = raw_get(live_server.port, target)
    assert status == 301
    assert dict(headers)["location"] == location


SECRET_TEXT = "TOP-SECRET-outside-out"
SWAPPER = """
import os, sys, time
folder, secret, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
target, link, plain = (os.path.join(folder, n) for n in ("x.txt", ".x-link", ".x-plain"))
print("swapping", flush=True)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(secret, link)
    os.replace(link, target)
    with open(plain, "w") as f:
        f.write("public text\\n")
    os.replace(plain, target)
"""


def test_serve_never_serves_a_file_swapped_for_a_symlink_to_a_secret_outside(live_server: LiveServer, tmp_path: Path) -> None:
    """Another process swaps out/x.txt between a file and a symlink to a secret as fast as it can."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET_TEXT + "\n", "utf-8")
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(live_server.out_dir), str(secret), "60"], stdout=subprocess.PIPE, text=True
    )
    leaked, served, refused = 0, 0, 0
    try:
        assert swapper.stdout is not None and swapper.stdout.readline().strip() == "swapping"
        deadline = time.monotonic() + 15
        for _ in range(1500):
            if time.monotonic() > deadline:
                break
            status, _headers, body = raw_get(live_server.port, "/x.txt")
            leaked += SECRET_TEXT.encode() in body
            served += status == 200 and body == b"public text\n"
            refused += status == 404
    finally:
        swapper.kill()
        swapper.wait(timeout=30)
    assert leaked == 0, f"the secret was served {leaked} times"
    assert served > 0  # the file itself is still served whenever it is a file


def test_open_inside_checks_the_file_it_opened_not_the_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name is a symlink to the secret when opened and a plain file right after: refused (with /proc, and without)."""
    from review_press import serve as serve_module

    out = tmp_path / "out"
    out.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET_TEXT, "utf-8")
    name = out / "x.txt"
    real_open = os.open

    def open_then_swap(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if str(path) == str(name) and name.is_symlink():
            plain = out / ".plain"
            plain.write_text("public", "utf-8")
            os.replace(plain, name)  # a name check from now on would see a file inside out/
        return fd

    for without_proc in (False, True):
        if name.exists() or name.is_symlink():
            name.unlink()
        name.symlink_to(secret)
        with monkeypatch.context() as m:
            m.setattr(os, "open", open_then_swap)
            if without_proc:

                def no_proc(path: Any, *args: Any, **kwargs: Any) -> str:
                    raise OSError("no /proc here")

                m.setattr(os, "readlink", no_proc)
            assert serve_module.open_inside(name, out) is None
        assert serve_module.read_inside(name, out) == b"public"  # now a plain file: served
    inner = out / "inner.txt"
    inner.write_text("inside", "utf-8")
    (out / "alias.txt").symlink_to(inner)  # a link that stays inside out/ is fine
    assert serve_module.read_inside(out / "alias.txt", out) == b"inside"
    assert serve_module.read_inside(out, out) is None  # a folder is not a file


def http_get(url: str) -> tuple[int | None, str]:
    """(status, body) of a GET; status None when the server closed the connection without an answer."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, ConnectionError, OSError):
        return None, ""


@pytest.mark.parametrize("value", ["abc", "1e3", "1.5", "%00", "9" * 5000, "--1"])
def test_a_bad_build_number_is_a_400_without_a_traceback(live_server: LiveServer, capfd: pytest.CaptureFixture[str], value: str) -> None:
    status, body = http_get(f"{live_server.url}{RELOAD_PATH.lstrip('/')}?build={value}")
    assert status == 400 and "build must be a whole number" in body
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ValueError" not in err


# --- 5. a non-ASCII SMTP password ---------------------------------------------------------------

UNICODE_PASSWORD = "pässwörd-ünïcødé-✓-42"
NOT_UTF8_PASSWORD = b"latin1-p\xe4ssw\xf6rd-\xff"


def _bytes_authenticator(username: bytes, password: bytes) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = getattr(auth_data, "login", None) == username and getattr(auth_data, "password", None) == password
        return AuthResult(success=ok, handled=False)

    return check


class CramOnly(Handler):
    """A handler whose server offers AUTH CRAM-MD5 only (and never accepts it)."""

    async def auth_CRAM__MD5(self, server: Any, args: list[str]) -> AuthResult:
        await server.challenge_auth("<1896.697170952@example.org>")
        return AuthResult(success=False, handled=False)


@contextmanager
def auth_server(password: bytes, *, cram_only: bool = False) -> Iterator[tuple[Handler, int]]:
    """A real aiosmtpd server on 127.0.0.1 that wants AUTH as `ann` with `password` (its bytes); PLAIN only, or CRAM-MD5 only."""
    handler = CramOnly() if cram_only else Handler()
    port = free_port()
    excluded = ["LOGIN", "PLAIN"] if cram_only else ["LOGIN"]
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        enable_SMTPUTF8=True,
        authenticator=_bytes_authenticator(b"ann", password),
        auth_required=True,
        auth_require_tls=False,
        auth_exclude_mechanism=excluded,
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_a_unicode_smtp_password_logs_in_over_auth_plain(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    with auth_server(UNICODE_PASSWORD.encode("utf-8")) as (handler, port):
        conn = SmtpConnector("127.0.0.1", port, username="ann", password=UNICODE_PASSWORD, starttls=False, timeout=10).open()
        try:
            data = b"From: a@example.org\r\nTo: r@example.org\r\nSubject: hi\r\n\r\nHello\r\n"
            assert conn.send(Envelope("a@example.org", "r@example.org", data)).startswith("250")
        finally:
            conn.close()
        with pytest.raises(DeliveryError) as wrong:  # a wrong Unicode password: refused, and still nothing shown
            SmtpConnector("127.0.0.1", port, username="ann", password="wröng-" + UNICODE_PASSWORD, starttls=False, timeout=10).open()
    assert handler.recipients() == {"r@example.org": 1}
    assert "refused the login of 'ann'" in str(wrong.value)
    shown = str(wrong.value) + caplog.text + "".join(capfd.readouterr())
    for needle in (UNICODE_PASSWORD, "ä", "ö", "ü", "ø", "✓", "UnicodeEncodeError", "codec", "position"):
        assert needle not in shown, needle


def publish_process(root: Path, password: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """The real `review-press publish` with the SMTP password in PRESS_SMTP_PW (bytes: exactly those bytes)."""
    env: dict[Any, Any] = {**os.environ, "PYTHONPATH": str(Path(review_press.__file__).parents[1]), "PYTHONWARNINGS": "ignore"}
    env["PRESS_SMTP_PW"] = password
    command = [sys.executable, "-m", "review_press", "publish", "--site", str(root)]
    return subprocess.run(command, env=env, capture_output=True, timeout=180)


def newsletter_site(make_site: Callable[..., Path], port: int) -> Path:
    root = make_site(
        {"2026-01-05-first.md": "---\ntitle: First\ndate: 2026-01-05\n---\n\nThe *first* letter.\n"},
        NEWSLETTER + smtp_table(port, username="ann", password_env="PRESS_SMTP_PW"),
    )
    with open_store(load_config(root)) as store:
        store.add("reader@example.org", "Reader")
    return root


def test_publish_with_a_unicode_password_and_a_cram_md5_only_server_names_the_setting_and_shows_none_of_it(
    make_site: Callable[..., Path],
) -> None:
    with auth_server(UNICODE_PASSWORD.encode("utf-8"), cram_only=True) as (handler, port):
        done = publish_process(newsletter_site(make_site, port), UNICODE_PASSWORD)
    out = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode == 1, out
    assert "password_env" in out and "must be ASCII" in out, out
    for needle in (UNICODE_PASSWORD, "ä", "ö", "ü", "ø", "✓", "Traceback", "UnicodeEncodeError", "codec", "position"):
        assert needle not in out, needle
    assert handler.recipients() == {}


def test_publish_sends_with_a_password_that_is_not_utf8_exactly_as_its_bytes(make_site: Callable[..., Path]) -> None:
    with auth_server(NOT_UTF8_PASSWORD) as (handler, port):
        done = publish_process(newsletter_site(make_site, port), NOT_UTF8_PASSWORD)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out.decode("utf-8", "replace")
    assert handler.recipients() == {"reader@example.org": 1}
    assert NOT_UTF8_PASSWORD not in out and b"p\xe4ssw" not in out and b"Traceback" not in out


# --- 6. REVIEW_PRESS_SECRET ----------------------------------------------------------------------


def test_the_secret_from_the_environment_is_its_bytes_and_at_least_32_characters(tmp_path: Path) -> None:
    state = tmp_path / ".review-press"
    raw = b"\xff\xfe-not-utf8-" + b"k" * 32
    assert load_secret(state, environ={SECRET_ENV: raw.decode("utf-8", "surrogateescape")}) == raw
    assert load_secret(state, environ={SECRET_ENV: "é" * 32}) == ("é" * 32).encode()  # characters, not bytes
    for short in ("a", "x" * 31, "é" * 31, "short-but-secret-Q7"):
        with pytest.raises(DeliveryError) as info:
            load_secret(state, environ={SECRET_ENV: short})
        assert SECRET_ENV in str(info.value) and "32" in str(info.value)
        assert len(short) == 1 or (short not in str(info.value) and short not in repr(info.value))
    assert not (state / "secret").exists()  # a refused variable never falls back to the file silently


@contextmanager
def web_process(
    root: Path, port: int, secret: bytes | str, logs: Path, *extra: str, uvicorn: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """The real server (`review-press web`, or `uvicorn review_press.web:app` with `extra`), its output in `logs`."""
    env: dict[Any, Any] = {**os.environ, "REVIEW_PRESS_SITE": str(root), "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
    env["REVIEW_PRESS_SECRET"] = secret
    if uvicorn:
        command = [sys.executable, "-m", "uvicorn", "review_press.web:app", "--host", "127.0.0.1", "--port", str(port), *extra]
    else:
        command = [sys.executable, "-m", "review_press", "web", "--site", str(root), "--port", str(port), *extra]
    with logs.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def site_for_port(tmp_path: Path, port: int) -> Path:
    return write_site(tmp_path / "site", POSTS, SITE_TOML.format(url=f"http://127.0.0.1:{port}/"))


def test_web_with_a_secret_that_is_not_utf8_starts_and_its_tokens_work(tmp_path: Path) -> None:
    port = free_port()
    root = site_for_port(tmp_path, port)
    raw = b"\xff\xfe\xfd-binary-key-" + bytes(range(0x80, 0xA0))
    with SQLiteStore.open(db_path(load_config(root))) as store:
        active = store.add("bytes@example.org", status="active")
    token = make_token(raw, active.id)
    logs = tmp_path / "server.log"
    with web_process(root, port, raw, logs) as proc:
        url = f"http://127.0.0.1:{port}/"
        wait_until_healthy(proc, url, logs)
        page = httpx.get(f"{url}unsubscribe/{token}", timeout=10)
        done = httpx.post(f"{url}unsubscribe/{token}", timeout=10)
    assert page.status_code == 200 and "b•••@e•••.org" in page.text
    assert done.status_code == 200
    with SQLiteStore.open(db_path(load_config(root))) as store:
        assert store.get(active.id).status == "unsubscribed"  # type: ignore[union-attr]
    assert b"Traceback" not in logs.read_bytes()


@pytest.mark.parametrize("secret", ["a", "short-but-secret-Q7", "x" * 31])
def test_web_refuses_a_secret_shorter_than_32_characters_naming_the_variable_only(tmp_path: Path, secret: str) -> None:
    port = free_port()
    root = site_for_port(tmp_path, port)
    logs = tmp_path / "server.log"
    with web_process(root, port, secret, logs) as proc:

        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_for(lambda: proc.poll() is not None or answers(), timeout=120)
        assert proc.poll() is not None, "the server started with a short secret"
    text = logs.read_text("utf-8", "replace")
    assert proc.returncode == 1, text
    assert "REVIEW_PRESS_SECRET is too short" in text and "at least 32 characters" in text
    assert "Traceback" not in text
    if len(secret) > 1:
        assert secret not in text


# --- 7. no token in any log line ------------------------------------------------------------------


def test_tokens_are_masked_in_trace_logs_and_in_every_query_form(tmp_path: Path) -> None:
    port = free_port()
    root = site_for_port(tmp_path, port)
    with SQLiteStore.open(db_path(load_config(root))) as store:
        active = store.add("logged@example.org", status="active")
        pending = store.add("pending@example.org", status="pending")
    unsub = make_token(SECRET.encode(), active.id)
    confirm = make_confirm_token(confirm_key(SECRET.encode()), pending.id, pending.address, in_a_day())
    logs = tmp_path / "server.log"
    with web_process(root, port, SECRET, logs, "--log-level", "trace", uvicorn=True) as proc:
        url = f"http://127.0.0.1:{port}/"
        wait_until_healthy(proc, url, logs)
        with httpx.Client(base_url=url, timeout=10) as http:
            answers = [
                http.get(f"unsubscribe?{unsub}"),
                http.get(f"unsubscribe?token%3D{unsub}"),
                http.get(f"unsubscribe%3Ftoken={unsub}"),
                http.get(f"unsubscribe%2F{unsub}"),
                http.get(f"Confirm/{confirm}"),
                http.get(f"confirm/{confirm}?token={confirm}&utm={unsub}"),
                http.post(f"unsubscribe/{unsub}", content=b"List-Unsubscribe=One-Click"),
            ]
    assert answers[-2].status_code == 200 and answers[-1].status_code == 200
    text = logs.read_text("utf-8", "replace")
    assert "Started scope=" in text, text  # the trace log is on
    for needle in (unsub, confirm, unsub[:12], unsub[-12:], confirm[:12], confirm[-12:], SECRET):
        assert needle not in text, (needle, text)
    assert '"GET /unsubscribe?*** HTTP/1.1"' in text and '"GET /confirm/*** HTTP/1.1" 200' in text
    assert "Traceback" not in text


def test_mask_tokens_masks_dict_bytes_and_other_arguments() -> None:
    token = "T0ken-T0ken-T0ken-T0ken-T0ken-T0ken-AB"
    scope = {
        "type": "http",
        "path": f"/confirm/{token}",
        "raw_path": f"/%63onfirm%2F{token}".encode(),
        "query_string": f"token={token}".encode(),
    }
    records = [
        logging.LogRecord("uvicorn.asgi", 5, __file__, 1, "%s [%d] Started scope=%s", ("ASGI", 1, scope), None),
        logging.LogRecord(
            "x",
            logging.INFO,
            __file__,
            1,
            "%s %r %s",
            (f"/unsubscribe?{token}".encode(), [f"/confirm/{token}"], ValueError(f"/x?{token}")),
            None,
        ),
        logging.LogRecord("x", logging.INFO, __file__, 1, {"path": f"/unsubscribe/{token}"}, None, None),  # type: ignore[arg-type]
        logging.LogRecord("x", logging.INFO, __file__, 1, "%(q)s", ({"q": f"/confirm/{token}"},), None),
    ]
    for record in records:
        MaskTokens().filter(record)
        text = record.getMessage()
        assert token not in text and token[:10] not in text, text
    assert records[0].getMessage().startswith("ASGI [1] Started scope=")


# --- 8. the confirmation email never echoes the name ------------------------------------------------

HOSTILE_NAME = "– your access expires today. Keep it: https://evil.example/keep?x=1 –"


def test_the_confirmation_email_does_not_echo_the_name_typed_into_the_form(live: Live) -> None:
    r = live.http.post("subscribe", json={"email": "victim@example.net", "name": HOSTILE_NAME})
    assert r.status_code == 200
    assert wait_for(lambda: len(live.mails_to("victim@example.net")) == 1)
    msg = live.mails_to("victim@example.net")[0]
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    shown = "\n".join([text, html, str(msg["To"]), str(msg["Subject"]), msg.as_string()])
    for needle in ("evil", "expires today", "Keep it", "access"):
        assert needle not in shown, needle
    assert (msg["To"].addresses[0].display_name, msg["To"].addresses[0].addr_spec) == ("", "victim@example.net")
    assert text.startswith("Hello,") and confirm_link(msg).startswith(live.url + "confirm/")
    with live.store() as store:
        assert store.find("victim@example.net").name == HOSTILE_NAME  # type: ignore[union-attr]  # kept for later newsletters


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with running(tmp_path) as app:
        yield app


# --- 9. subscribers export is atomic and private -------------------------------------------------------


@contextmanager
def tiny_disk(folder: Path, size: str = "16k") -> Iterator[Path]:
    """A real tmpfs of `size` mounted on `folder` (skip where mounting is not allowed); unmounted after."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + done.stderr.decode(errors="replace").strip())
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def big_list(make_site: Callable[..., Path]) -> Path:
    """A site with enough subscribers that their CSV (about 36 KB) cannot fit on a 16 KB disk."""
    root = make_site({})
    with open_store(load_config(root)) as store:
        for i in range(160):
            store.add(f"reader{i:03}@example.org", f"Reader {i} " + "n" * 180, status="active")
    return root


def export(root: Path, target: Path) -> Any:
    return runner.invoke(cli, ["subscribers", "export", str(target), "--site", str(root)])


def test_export_on_a_full_disk_keeps_the_old_file_and_names_the_new_one(big_list: Path, tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "tiny") as disk:
        target = disk / "subscribers.csv"
        target.write_text("email,name\nold@example.org,Old\n", "utf-8")
        result = export(big_list, target)
        assert result.exit_code == 1, result.output
        shown = f"cannot write {target.parent.resolve() / target.name}: no space left on device"
        assert shown in result.stderr, result.stderr
        assert "Traceback" not in result.output
        assert target.read_text("utf-8") == "email,name\nold@example.org,Old\n"
        assert sorted(p.name for p in disk.iterdir()) == ["subscribers.csv"]  # no temporary file left

        fresh = disk / "fresh.csv"
        result = export(big_list, fresh)
        assert result.exit_code == 1 and f"cannot write {fresh.parent.resolve() / fresh.name}: no space left on device" in result.stderr
        assert not fresh.exists()
        assert sorted(p.name for p in disk.iterdir()) == ["subscribers.csv"]


def test_export_writes_a_private_file_whole(big_list: Path, tmp_path: Path) -> None:
    target = tmp_path / "export.csv"
    target.write_text("old\n", "utf-8")
    target.chmod(0o644)
    result = export(big_list, target)
    assert result.exit_code == 0, result.output
    assert "exported 160 subscribers" in result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    lines = target.read_text("utf-8").splitlines()
    assert len(lines) == 161 and lines[0].startswith("email,name,status")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    new = tmp_path / "new.csv"
    assert export(big_list, new).exit_code == 0 and stat.S_IMODE(new.stat().st_mode) == 0o600
