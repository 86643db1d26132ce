"""The whole subscription loop in headless Chromium, on the real built sample site.

A copy of the repository's press.toml, posts/ and templates/ is built and served over HTTP
on 127.0.0.1, the endpoints run under uvicorn, and mail goes to a local aiosmtpd server. A
reader fills the site's subscribe form, gets the confirmation email, follows its link and is
active; `publish` mails them the post; the newsletter's List-Unsubscribe one-click POST
unsubscribes them; and the next post's `publish` sends them nothing.
"""

from __future__ import annotations

import datetime as dt
import email.message
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chromium import CHROMIUM, CHROMIUM_ARGS
from live_web import LOOSE, loopback_socket, serve
from review_press.build import BuildOptions, build
from review_press.config import load_config
from review_press.publish import PublishOptions, publish
from review_press.store import SQLiteStore, db_path, ledger
from review_press.web import create_app
from sites import serve_directory
from smtp_servers import Handler, smtp_server
from waiting import wait_for

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
READER = "reader@example.net"
OTHER = "other@example.net"
NEXT_POST = """\
---
title: "A second review"
date: {date}
tags: [drama]
---

A newer post that the unsubscribed reader must never get.
"""


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 for `tmp_path/site/out` (the site is built after it starts)."""
    with serve_directory(tmp_path / "site" / "out") as url:
        yield url


def sample_site(root: Path, site_url: str, web_url: str, smtp_port: int) -> Path:
    """The repository's sample site with its endpoints and SMTP on loopback.

    base_url stays the sample's https one (the email lint wants https links); the pages link
    root-relative, so they work as served from `site_url`, the form's origin.
    """
    root.mkdir()
    shutil.copytree(REPO / "posts", root / "posts")
    shutil.copytree(REPO / "templates", root / "templates")
    toml = (REPO / "press.toml").read_text("utf-8")
    toml = re.sub(r'(?m)^url = ".*"$', f'url = "{web_url}"\nallowed_origins = ["{site_url.rstrip("/")}"]', toml)
    assert web_url in toml, "press.toml's [web] url line was not found"
    toml += f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nstarttls = false\n'
    (root / "press.toml").write_text(toml, "utf-8")
    return root


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for https://127.0.0.1 (made by the openssl command, valid one day)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def messages_to(handler: Handler, address: str) -> list[email.message.EmailMessage]:
    return [r.message for r in list(handler.received) if r.recipient == address]


def link_in(msg: email.message.EmailMessage, pattern: str) -> str:
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(pattern, text)
    assert match, text
    return match.group(0)


@pytest.mark.slow
def test_subscribe_confirm_unsubscribe_in_the_browser(tmp_path: Path, static_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.delenv("REVIEW_PRESS_SECRET", raising=False)
    site_url = static_server
    sock = loopback_socket()
    web_url = f"https://127.0.0.1:{sock.getsockname()[1]}/"  # RFC 8058 and the message builder want https
    cert, key = self_signed(tmp_path)
    with smtp_server() as (smtp, smtp_port):
        root = sample_site(tmp_path / "site", site_url, web_url, smtp_port)
        build(root, BuildOptions())
        with serve(create_app(root, LOOSE), sock, tls=(cert, key)), sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(ignore_https_errors=True).new_page()
                _subscribe_in_the_form(page, site_url, web_url)
                assert wait_for(lambda: len(messages_to(smtp, READER)) == 1, timeout=10)
                confirmation = messages_to(smtp, READER)[0]
                assert confirmation.get_content_type() == "multipart/alternative"
                link = link_in(confirmation, re.escape(web_url) + r"confirm/\S+")
                page.goto(link)
                assert page.locator("h1").inner_text() == "You are subscribed"
                _assert_active(root)

                newsletters = _publish_and_count(root, smtp)
                assert newsletters == 1, "the confirmed reader gets the sample post"
                issue = messages_to(smtp, READER)[-1]
                one_click = _list_unsubscribe_url(issue)
                assert issue["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

                page.goto(one_click)  # what a reader sees: the masked address and one button
                assert "r•••@e•••.net" in page.content() and READER not in page.content()
                trust = ssl.create_default_context(cafile=str(cert))
                form = {"Content-Type": "application/x-www-form-urlencoded"}
                r = httpx.post(one_click, content=b"List-Unsubscribe=One-Click", headers=form, verify=trust)  # as Gmail and Yahoo do
                assert r.status_code == 200 and "You are unsubscribed" in r.text
                page.reload()
                assert page.locator("h1").inner_text() == "You are unsubscribed"
            finally:
                browser.close()
        _write_next_post(root)
        with SQLiteStore.open(db_path(load_config(root))) as store:
            store.add(OTHER, status="active")  # so the next post's campaign really runs
        assert _publish_and_count(root, smtp) == 1, "no newsletter after unsubscribing"
        assert [m["Subject"] for m in messages_to(smtp, OTHER)] == ["A second review"]
    with SQLiteStore.open(db_path(load_config(root))) as store:
        assert store.find(READER).status == "unsubscribed"  # type: ignore[union-attr]
        assert [(p.sent, p.skipped) for p in ledger.status(store)] == [(1, 0), (1, 0)]


def _subscribe_in_the_form(page: Any, site_url: str, web_url: str) -> None:
    """Open the home page, fill the site's own subscribe form, submit, land on "check your inbox"."""
    page.goto(site_url)
    assert page.locator("form.subscribe-form").get_attribute("action") == web_url + "subscribe"
    page.fill("#subscribe-email", READER)
    page.fill("#subscribe-name", "Rea Der")
    with page.expect_navigation():
        page.click("form.subscribe-form button[type=submit]")
    assert page.locator("h1").inner_text() == "Check your inbox"


def _assert_active(root: Path) -> None:
    with SQLiteStore.open(db_path(load_config(root))) as store:
        sub = store.find(READER)
    assert sub is not None and (sub.status, sub.name, sub.consent_source, sub.consent_ip) == ("active", "Rea Der", "web form", "127.0.0.1")


def _publish_and_count(root: Path, smtp: Handler) -> int:
    """Run a real publish; how many newsletters the reader has got in all."""
    publish(root, PublishOptions(now=dt.datetime.now(dt.UTC)))
    return sum(1 for m in messages_to(smtp, READER) if m["List-Unsubscribe"])


def _list_unsubscribe_url(msg: email.message.EmailMessage) -> str:
    urls = re.findall(r"<(https?://[^>]+)>", str(msg["List-Unsubscribe"]))
    assert urls, msg["List-Unsubscribe"]
    return urls[0]


def _write_next_post(root: Path) -> None:
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)
    (root / "posts" / f"{when:%Y-%m-%d}-a-second-review.md").write_text(NEXT_POST.format(date=when.isoformat()), "utf-8")
