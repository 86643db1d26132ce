"""Hostile requests against the subscription endpoints, each fed to a real server and refused.

- Forged links through the Host header: every link the app mails or shows comes from
  press.toml, whatever Host, X-Forwarded-Host or Forwarded say; no route redirects; and
  `review-press web` (and `uvicorn review_press.web:app`) refuse to start without an
  absolute `[web] url` (https, or http on localhost), naming press.toml and the key.
- Tokens: only their canonical encoding is accepted (no `=` padding, no other alphabet, no
  other unused bits), and no token reaches a log line of the real `review-press web` process.
- Bodies: 415 without a Content-Type or in another charset, 400 for JSON nested 3,000 deep
  and for bodies that are not UTF-8, 413 past 8 KB; never a 500 or a traceback.

The servers are real uvicorn servers on 127.0.0.1 (the harness of test_web.py), or the real
processes, with a real SQLite file; nothing here asserts on wall-clock time.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from live_web import SECRET, SITE_TOML, Live, assert_clean, confirm_link, loopback_socket, outbox, running, serve, wait_until_healthy
from review_press.cli import app as cli
from review_press.config import load_config
from review_press.errors import ConfigError
from review_press.store import SQLiteStore, db_path
from review_press.tokens import decode_token, make_token, verify_token
from review_press.web import SiteApp, create_app, public_url
from review_press.web.confirm import BadToken, confirm_key, make_confirm_token, read_confirm_token
from review_press.web.forms import MAX_BODY
from review_press.web.logs import mask_tokens
from sites import post_text, write_site
from waiting import wait_for

runner = CliRunner()
POSTS = {"2026-02-01-hello.md": post_text("Hello", "2026-02-01")}
NO_WEB_TOML = SITE_TOML.split("[web]")[0]
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
HOSTILE_HEADERS = {
    "Host": "evil.example",
    "X-Forwarded-Host": "forwarded.evil.example",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Server": "server.evil.example",
    "Forwarded": "for=192.0.2.1;host=forwarded.evil.example;proto=https",
    "X-Original-URL": "//evil.example/",
}


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEW_PRESS_SECRET", SECRET)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with running(tmp_path) as app:
        yield app


def no_evil(response: httpx.Response) -> None:
    """Nothing the hostile headers said shows up in the answer: not in its body, not in a header."""
    assert "evil" not in response.text
    assert not any("evil" in value for value in response.headers.values()), response.headers
    assert "location" not in response.headers


def site_with_web(tmp_path: Path, web_table: str, name: str = "site") -> Path:
    return write_site(tmp_path / name, POSTS, NO_WEB_TOML + web_table)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- issue 2: links come from press.toml, never from the request ------------------------------


def test_the_confirm_link_comes_from_config_whatever_host_the_request_names(live: Live) -> None:
    r = live.http.post("subscribe", data={"email": "victim@example.org", "name": "V"}, headers=HOSTILE_HEADERS)
    assert r.status_code == 200
    no_evil(r)
    assert wait_for(lambda: len(live.mails_to("victim@example.org")) == 1)
    mail = live.mails_to("victim@example.org")[0]
    assert confirm_link(mail).startswith(live.url + "confirm/")  # [web] url = http://127.0.0.1:<port>/
    assert "evil" not in mail.as_string()
    as_json = live.http.post("subscribe", json={"email": "victim2@example.org"}, headers=HOSTILE_HEADERS)
    assert as_json.status_code == 200
    no_evil(as_json)
    assert wait_for(lambda: len(live.mails_to("victim2@example.org")) == 1)
    assert confirm_link(live.mails_to("victim2@example.org")[0]).startswith(live.url + "confirm/")


@pytest.mark.parametrize("path", ["subscribe/", "healthz/", "unsubscribe/", "confirm/abc/", "unsubscribe/abc/", "subscribe//"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_route_redirects_to_the_host_the_request_names(live: Live, path: str, method: str) -> None:
    r = live.http.request(method, path, headers=HOSTILE_HEADERS)
    assert r.status_code in (400, 404, 405), (path, r.status_code)
    no_evil(r)
    assert_clean(r)


@pytest.mark.parametrize("path", ["subscribe", "unsubscribe?token=AAAA", "confirm/AAAA", "no/such/page"])
def test_pages_link_only_to_the_configured_site(live: Live, path: str) -> None:
    r = live.http.get(path, headers=HOSTILE_HEADERS)
    no_evil(r)
    for link in re.findall(r'(?:href|src|action)="([^"]*)"', r.text):
        assert link.startswith("https://example.org/blog/") or not re.match(r"[a-z]+:|//", link), link


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example.org/newsletter/",
        "https://news.example.org/newsletter",
        "https://news.example.org:8443/",
        "http://localhost:8080/",
        "http://127.0.0.1/n/",
        "http://[::1]:9000/",
    ],
)
def test_https_urls_and_plain_http_on_localhost_are_accepted(tmp_path: Path, url: str) -> None:
    root = site_with_web(tmp_path, f'[web]\nurl = "{url}"\n')
    assert public_url(load_config(root)) == url.rstrip("/") + "/"


NOT_SET = "[web] url is not set"
BAD_URLS = [
    ("", NOT_SET),
    ('[web]\nallowed_origins = ["https://example.org"]\n', NOT_SET),
    ('[web]\nurl = "http://news.example.org/"\n', "must start with https://"),
    ('[web]\nurl = "http://127.0.0.1.evil.example/"\n', "must start with https://"),
    ('[web]\nurl = "http://localhost.evil.example/"\n', "must start with https://"),
    ('[web]\nurl = "https://user:secret@news.example.org/"\n', "without a user name, query or fragment"),
    ('[web]\nurl = "https://news.example.org/?next=https://evil.example/"\n', "without a user name, query or fragment"),
    ('[web]\nurl = "https://news.example.org/#top"\n', "without a user name, query or fragment"),
    ('[web]\nurl = "https://news.example.org:99999/"\n', "not a valid URL"),
    ('[web]\nurl = "https://news.example.org/a b/"\n', "spaces or control characters"),
    ('[web]\nurl = "ftp://news.example.org/"\n', "[web] url"),
]


@pytest.mark.parametrize(("web_table", "problem"), BAD_URLS)
def test_web_refuses_to_start_without_an_absolute_url_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, web_table: str, problem: str
) -> None:
    root = site_with_web(tmp_path, web_table)

    def listen(*args: object, **kwargs: object) -> None:
        raise AssertionError("uvicorn must not start")

    monkeypatch.setattr("uvicorn.run", listen)
    result = runner.invoke(cli, ["web", "--site", str(root)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "press.toml" in result.stderr and "[web] url" in result.stderr and problem in result.stderr
    assert "Traceback" not in result.output
    with pytest.raises(ConfigError, match=re.escape(problem)):
        create_app(root)


def test_the_site_init_makes_does_not_run_web_and_says_what_to_set(tmp_path: Path) -> None:
    """The issue's case: a new site has no [web] url; the real command exits 1 before anything listens."""
    env = {**os.environ, "REVIEW_PRESS_SECRET": SECRET, "PYTHONWARNINGS": "ignore"}
    made = subprocess.run(
        [sys.executable, "-m", "review_press", "init", str(tmp_path / "zine")], env=env, capture_output=True, text=True, timeout=120
    )
    assert made.returncode == 0, made.stderr
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "review_press", "web", "--site", str(tmp_path / "zine"), "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "press.toml: [web] url is not set" in done.stderr and 'url = "https://your-site/newsletter/"' in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_uvicorn_with_the_module_app_refuses_to_start_without_a_url(tmp_path: Path) -> None:
    root = site_with_web(tmp_path, "")
    env = {**os.environ, "REVIEW_PRESS_SECRET": SECRET, "REVIEW_PRESS_SITE": str(root), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "review_press.web:app", "--host", "127.0.0.1", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"{root / 'press.toml'}: {NOT_SET}" in done.stderr or f"press.toml: {NOT_SET}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_the_module_app_without_lifespan_events_answers_503_without_a_url(tmp_path: Path) -> None:
    root = site_with_web(tmp_path, "")
    with serve(SiteApp({"REVIEW_PRESS_SITE": str(root)}), loopback_socket(), lifespan="off") as url, httpx.Client(base_url=url) as http:
        for r in (http.get("healthz"), http.post("subscribe", data={"email": "a@example.org"}, headers=HOSTILE_HEADERS)):
            assert r.status_code == 503 and "press.toml" in r.text
            assert_clean(r)
            no_evil(r)
    assert outbox(root) == [] and not db_path(load_config(root)).exists()


# --- issue 6: tokens --------------------------------------------------------------------------


def _unsubscribe_token_with_both_url_characters() -> tuple[int, str]:
    """An id whose token holds both `-` and `_` (the characters another alphabet writes as `+` and `/`)."""
    for sub_id in range(1, 10_000):
        token = make_token(SECRET.encode(), sub_id)
        if "-" in token and "_" in token:
            return sub_id, token
    raise AssertionError("no such token")


def _other_padding_bits(token: str) -> list[str]:
    """The same bytes with the unused low bits of the last character set: what a lenient decoder accepts."""
    unused = (6 - len(decode_token(token, (len(token) * 6) // 8) or b"") * 8 % 6) % 6  # bits of the last char that carry nothing
    last = ALPHABET.index(token[-1])
    return [token[:-1] + ALPHABET[last | bits] for bits in range(1, 2**unused)]


def non_canonical(token: str) -> list[str]:
    """Spellings of `token` that a lenient base64 decoder reads as the same bytes."""
    spellings = [
        token + "=",
        token + "==",
        token + "===",
        token.replace("-", "+"),
        token.replace("_", "/"),
        token[:5] + "." + token[5:],
        token[:5] + "\n" + token[5:],
        token[:5] + "=" + token[5:],
        " " + token,
        token + " ",
        *_other_padding_bits(token),
    ]
    return [s for s in spellings if s != token]


def test_an_unsubscribe_token_is_accepted_only_in_its_canonical_encoding() -> None:
    sub_id, token = _unsubscribe_token_with_both_url_characters()
    assert verify_token(SECRET.encode(), token) == sub_id
    for spelling in non_canonical(token):
        assert verify_token(SECRET.encode(), spelling) is None, repr(spelling)


def test_a_confirm_token_is_accepted_only_in_its_canonical_encoding() -> None:
    expires = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    token = make_confirm_token(confirm_key(SECRET.encode()), 7, "a@example.org", expires)
    assert len(token) == 38 and read_confirm_token(token)[0].subscriber_id == 7
    spellings = non_canonical(token)
    assert len(_other_padding_bits(token)) == 15  # 28 bytes in 38 characters: 4 unused bits
    for spelling in spellings:
        with pytest.raises(BadToken):
            read_confirm_token(spelling)


def test_non_canonical_tokens_are_refused_over_http(live: Live) -> None:
    with live.store() as store:
        active = store.add("act@example.org", status="active")
        pending = store.add("pen@example.org", status="pending")
    unsub = make_token(SECRET.encode(), active.id)
    confirm = make_confirm_token(confirm_key(SECRET.encode()), pending.id, pending.address, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    for bad in (f"{unsub}=", f"{unsub}==", f"{unsub}%3D"):
        for r in (live.http.post(f"unsubscribe/{bad}"), live.http.get(f"unsubscribe/{bad}"), live.http.post(f"unsubscribe?token={bad}")):
            assert r.status_code == 400 and "does not work" in r.text, bad
            assert_clean(r, unsub, "act@example.org")
    for bad in (f"{confirm}=", f"{confirm}%3D%3D", *_other_padding_bits(confirm)):
        r = live.http.get(f"confirm/{bad}")
        assert r.status_code == 400 and "does not work" in r.text, bad
    assert (live.status("act@example.org"), live.status("pen@example.org")) == ("active", "pending")
    assert live.http.get(f"confirm/{confirm}").status_code == 200  # the canonical ones still work
    assert live.http.post(f"unsubscribe/{unsub}").status_code == 200
    assert (live.status("act@example.org"), live.status("pen@example.org")) == ("unsubscribed", "active")


# --- issue 6: tokens never reach a log line ---------------------------------------------------


@contextmanager
def web_process(root: Path, how: str, port: int, logs: Path) -> Iterator[str]:
    """The real server process (`review-press web`, or uvicorn with the module app), its output in `logs`; yield its URL."""
    env = {**os.environ, "REVIEW_PRESS_SECRET": SECRET, "REVIEW_PRESS_SITE": str(root), "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
    if how == "review-press web":
        command = [sys.executable, "-m", "review_press", "web", "--site", str(root), "--port", str(port)]
    else:
        command = [sys.executable, "-m", "uvicorn", "review_press.web:app", "--host", "127.0.0.1", "--port", str(port)]
    with logs.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_until_healthy(proc, url, logs)
            yield url
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


@pytest.mark.parametrize("how", ["review-press web", "uvicorn review_press.web:app"])
def test_tokens_are_masked_in_every_log_line_of_the_real_server(tmp_path: Path, how: str) -> None:
    port = free_port()
    root = write_site(tmp_path / "site", POSTS, SITE_TOML.format(url=f"http://127.0.0.1:{port}/"))
    with SQLiteStore.open(db_path(load_config(root))) as store:
        active = store.add("logged@example.org", status="active")
        pending = store.add("pending@example.org", status="pending")
    unsub = make_token(SECRET.encode(), active.id)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    confirm = make_confirm_token(confirm_key(SECRET.encode()), pending.id, pending.address, later)
    forged = confirm[:-4] + ("AAAA" if not confirm.endswith("AAAA") else "BBBB")
    logs = tmp_path / "server.log"
    with web_process(root, how, port, logs) as url, httpx.Client(base_url=url, timeout=10) as http:
        answers = [
            http.get(f"unsubscribe/{unsub}"),
            http.get(f"unsubscribe?token={unsub}"),
            http.get(f"confirm/{forged}"),
            http.get(f"confirm/{confirm}?utm_source=mail"),
            http.get(f"%63onfirm/{confirm}"),  # the path as routed, not as sent, is what uvicorn logs
            http.get(f"confirm/{confirm}/extra"),
            http.post(f"unsubscribe?token={unsub}&List-Unsubscribe=One-Click"),
            http.post(f"unsubscribe/{unsub}", content=b"List-Unsubscribe=One-Click"),
            http.post("subscribe?email=leak%40example.org", data={"email": "leak@example.org"}),
        ]
    assert [r.status_code for r in answers] == [200, 200, 400, 200, 200, 404, 200, 200, 200]
    text = logs.read_text("utf-8", "replace")
    for needle in (unsub, confirm, forged, unsub[:12], confirm[:12], forged[-12:], SECRET):
        assert needle not in text, (needle, text)
    for line in (  # after /confirm and /unsubscribe all is masked, and every query string whole
        '"GET /unsubscribe/*** HTTP/1.1" 200',
        '"GET /unsubscribe?*** HTTP/1.1" 200',
        '"GET /confirm/*** HTTP/1.1" 400',
        '"GET /confirm/*** HTTP/1.1" 200',
        '"GET /confirm/*** HTTP/1.1" 404',
        '"POST /unsubscribe?*** HTTP/1.1" 200',
        '"POST /unsubscribe/*** HTTP/1.1" 200',
        '"POST /subscribe?*** HTTP/1.1" 200',
    ):
        assert line in text, (line, text)
    assert "Traceback" not in text


def test_the_mask_covers_paths_queries_and_leaves_the_rest() -> None:
    assert mask_tokens("GET /newsletter/confirm/abc_-DEF?x=1&token=zz HTTP/1.1") == "GET /newsletter/confirm/*** HTTP/1.1"
    assert mask_tokens("GET /subscribe?x=1&token=zz HTTP/1.1") == "GET /subscribe?*** HTTP/1.1"
    assert mask_tokens('"POST /UNSUBSCRIBE/abc HTTP/1.1" 400') == '"POST /UNSUBSCRIBE/*** HTTP/1.1" 400'
    assert mask_tokens("GET /healthz HTTP/1.1") == "GET /healthz HTTP/1.1"
    assert mask_tokens(mask_tokens("/confirm/abc")) == "/confirm/***"


# --- issue 6: bodies ---------------------------------------------------------------------------


def assert_nothing_stored(live: Live) -> None:
    time.sleep(0.05)  # a wrong background task would have written by now (the reply comes first)
    with live.store() as store:
        assert sum(store.count().values()) == 0
    assert outbox(live.root) == []


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"email=a%40example.org", {}),
        (b'{"email": "a@example.org"}', {}),
        (b'{"email": "a@example.org"}', {"Accept": "application/json"}),
        (b"email=a%40example.org", {"Content-Type": ""}),
        (b"email=a%40example.org", {"Content-Type": "text/plain"}),
    ],
)
def test_a_post_without_a_form_content_type_is_415(live: Live, content: bytes, headers: dict[str, str]) -> None:
    r = live.http.post("subscribe", content=content, headers=headers)
    assert r.status_code == 415 and "Content-Type" in r.text
    if "Accept" in headers:
        assert r.json()["ok"] is False
    assert_clean(r)
    assert_nothing_stored(live)


def _nested(depth: int, open_: str, close: str, inner: str = "1") -> bytes:
    return (open_ * depth + inner + close * depth).encode()


@pytest.mark.parametrize(
    "content",
    [
        b'{"email": "a@example.org", "x": ' + _nested(3000, "[", "]", "") + b"}",
        _nested(3000, "[", "]", ""),
        _nested(1300, '{"a":', "}"),
        b'{"email": "a@example.org", "x": ' + b"[" * 3000,  # and never closed
        b'{"email": {"deeper": {"still": "a@example.org"}}}',
    ],
)
def test_deeply_nested_json_is_400_not_a_recursion_error(live: Live, content: bytes) -> None:
    assert len(content) <= MAX_BODY
    r = live.http.post("subscribe", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.text
    assert_clean(r, "RecursionError")
    assert live.http.get("healthz").json() == {"ok": True}
    assert_nothing_stored(live)


def test_brackets_inside_json_strings_are_not_nesting(live: Live) -> None:
    r = live.http.post("subscribe", json={"email": "brackets@example.org", "name": '[[[{{{ "\\" ]]'})
    assert r.status_code == 200
    assert wait_for(lambda: live.status("brackets@example.org") == "pending")


def _multipart(value: bytes, size: int = 0) -> bytes:
    return (
        b'--xx\r\nContent-Disposition: form-data; name="email"\r\n\r\n'
        + value
        + b"\r\n--xx\r\n"
        + (b'Content-Disposition: form-data; name="pad"\r\n\r\n' + b"p" * size + b"\r\n--xx--\r\n")
    )


def test_bodies_over_8_kb_are_413_and_8_kb_is_read(live: Live) -> None:
    json_type = {"Content-Type": "application/json"}
    exact = b'{"email": "edge@example.org", "pad": "' + b"p" * MAX_BODY
    exact = exact[: MAX_BODY - 2] + b'"}'
    assert len(exact) == MAX_BODY
    assert live.http.post("subscribe", content=exact, headers=json_type).status_code == 200
    over = exact[:-2] + b'p"}'
    assert live.http.post("subscribe", content=over, headers=json_type).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while it streams
        yield b'{"email": "stream@example.org", "pad": "'
        for _ in range(12):
            yield b"p" * 1024

    streamed = live.http.post("subscribe", content=chunks(), headers=json_type)
    assert streamed.status_code == 413 and "too large" in streamed.text
    multipart = live.http.post(
        "subscribe", content=_multipart(b"mp@example.org", MAX_BODY), headers={"Content-Type": "multipart/form-data; boundary=xx"}
    )
    assert multipart.status_code == 413
    for r in (streamed, multipart):
        assert_clean(r)
    assert wait_for(lambda: live.status("edge@example.org") == "pending")
    assert (live.status("stream@example.org"), live.status("mp@example.org")) == (None, None)


@pytest.mark.parametrize(
    ("content", "ctype", "status"),
    [
        ('{"email": "ä@example.org"}'.encode("latin-1"), "application/json", 400),
        ('{"email": "a@example.org"}'.encode("utf-16"), "application/json", 400),
        ("email=ä@example.org".encode("latin-1"), "application/x-www-form-urlencoded", 400),
        (b"email=%E4%40example.org", "application/x-www-form-urlencoded", 400),
        (_multipart(b"\xff\xfe@example.org"), "multipart/form-data; boundary=xx", 400),
        (_multipart("ä@example.org".encode("latin-1")), "multipart/form-data; boundary=xx", 400),
        (b'{"email": "a@example.org"}', "application/json; charset=iso-8859-1", 415),
        (b"email=a%40example.org", "application/x-www-form-urlencoded; charset=latin-1", 415),
        (_multipart(b"a@example.org"), "multipart/form-data; boundary=xx; charset=latin-1", 415),
    ],
)
def test_bodies_that_are_not_utf8_are_refused(live: Live, content: bytes, ctype: str, status: int) -> None:
    r = live.http.post("subscribe", content=content, headers={"Content-Type": ctype})
    assert r.status_code == status and ("UTF-8" in r.text or "could not be read" in r.text)
    assert_clean(r)
    assert_nothing_stored(live)


def test_utf8_with_its_charset_named_and_a_unicode_address_are_welcome(live: Live) -> None:
    body = '{"email": "josé@example.org", "name": "José Ñandú"}'.encode()
    r = live.http.post("subscribe", content=body, headers={"Content-Type": "application/json; charset=UTF-8"})
    assert r.status_code == 200
    assert wait_for(lambda: len(live.mails_to("josé@example.org")) == 1)  # the confirmation goes out (SMTPUTF8)
    mail = live.mails_to("josé@example.org")[0]
    raw = next((live.root / "outbox" / "new").iterdir()).read_bytes().decode("utf-8")  # RFC 6532: UTF-8 headers
    to = email.message_from_string(raw, policy=email.policy.SMTPUTF8)["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == ("", "josé@example.org")  # the confirmation never echoes the name
    assert live.http.get(confirm_link(mail)).status_code == 200
    assert live.status("josé@example.org") == "active"
