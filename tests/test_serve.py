"""`serve`: a real HTTP server on 127.0.0.1 that rebuilds on change and tells the page to reload."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import watchfiles

from email_sites import NEWSLETTER_TOML
from review_press.serve import RELOAD_PATH, LiveServer, inject_reload, watched
from sites import post_text, write_site
from waiting import wait_for

POST = "2026-01-05-hello.md"


def get(url: str, timeout: float = 30) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode("utf-8", "replace")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return write_site(
        tmp_path / "site",
        {
            POST: post_text(title="Hello", date="2026-01-05", body="The first version of this post."),
            "2025-06-01-old.md": post_text(title="Older", date="2025-06-01", body="Before the newsletter began."),
        },
        NEWSLETTER_TOML,
    )


@pytest.fixture
def server(site: Path) -> Iterator[LiveServer]:
    live = LiveServer(site, port=0, debounce_ms=50)
    live.start()
    try:
        yield live
    finally:
        live.stop()


def test_serves_pages_with_the_reload_script_but_never_writes_it(server: LiveServer, site: Path) -> None:
    status, kind, body = get(server.url + "posts/hello/")
    assert status == 200 and kind.startswith("text/html")
    assert "The first version of this post." in body
    assert RELOAD_PATH in body and f"var build = {server.state.number};" in body
    built = (site / "out" / "posts" / "hello" / "index.html").read_text("utf-8")
    assert "The first version" in built and RELOAD_PATH not in built
    status, kind, _ = get(server.url + "assets/style.css")
    assert status == 200 and kind.startswith("text/css")


def test_editing_a_post_rebuilds_and_the_long_poll_reports_the_new_build(server: LiveServer, site: Path) -> None:
    first = server.state.number
    answer: dict[str, object] = {}

    def poll() -> None:
        answer.update(json.loads(get(f"{server.url}{RELOAD_PATH.lstrip('/')}?build={first}")[2]))

    waiting = threading.Thread(target=poll)
    waiting.start()
    time.sleep(0.3)
    assert waiting.is_alive(), "the long poll answers only when the build changes"
    (site / "posts" / POST).write_text(post_text(title="Hello", date="2026-01-05", body="The second version, edited."), "utf-8")
    waiting.join(timeout=30)
    assert answer == {"build": first + 1, "error": None}
    _status, _kind, body = get(server.url + "posts/hello/")
    assert "The second version, edited." in body and "first version" not in body
    assert f"var build = {first + 1};" in body


def test_a_broken_post_reports_the_error_and_keeps_serving_the_last_good_site(server: LiveServer, site: Path) -> None:
    first = server.state.number
    (site / "posts" / POST).write_text("---\ntitle: Hello\ndate: not a date\n---\nBody\n", "utf-8")
    state = server.wait_for_build(first, 30)
    assert state.number == first + 1 and state.error and "cannot read date" in state.error
    _status, _kind, body = get(f"{server.url}{RELOAD_PATH.lstrip('/')}?build={first}")
    assert json.loads(body)["error"] == state.error
    assert "The first version of this post." in get(server.url + "posts/hello/")[2]
    (site / "posts" / POST).write_text(post_text(title="Hello", date="2026-01-05", body="Fixed again."), "utf-8")
    assert server.wait_for_build(first + 1, 30).error is None


def test_email_previews_for_every_post(server: LiveServer) -> None:
    status, _kind, index = get(server.url + "email/")
    assert status == 200
    assert 'href="/email/hello/"' in index and 'href="/email/old/"' in index
    status, kind, html = get(server.url + "email/old/")  # not a newsletter post: rendered on the fly
    assert status == 200 and kind.startswith("text/html") and "Before the newsletter began." in html and RELOAD_PATH in html
    status, kind, text = get(server.url + "email/old/email.txt")
    assert status == 200 and kind.startswith("text/plain") and "Before the newsletter began." in text
    status, _kind, eml = get(server.url + "email/old/email.eml")
    assert status == 200 and "Content-Type: multipart/alternative" in eml
    assert get(server.url + "email/missing/")[0] == 404


def test_changes_outside_the_watched_folders_are_ignored(site: Path) -> None:
    keep = watched(site)
    assert keep(watchfiles.Change.modified, str(site / "posts" / POST))
    assert keep(watchfiles.Change.modified, str(site / "press.toml"))
    assert keep(watchfiles.Change.added, str(site / "templates" / "email" / "edition.html"))
    assert not keep(watchfiles.Change.modified, str(site / "out" / "index.html"))
    assert not keep(watchfiles.Change.modified, str(site / ".review-press" / "manifest.json"))
    assert not keep(watchfiles.Change.modified, str(site / "posts" / ".hello.md.swp"))


def test_inject_reload_goes_before_the_closing_body() -> None:
    page = inject_reload(b"<html><body><p>x</p></body></html>", 7)
    assert page.endswith(b"</body></html>") and b"var build = 7;" in page
    assert inject_reload(b"no body", 1).startswith(b"no body<script>")


def test_press_toml_changes_rebuild_too(server: LiveServer, site: Path) -> None:
    first = server.state.number
    toml = site / "press.toml"
    toml.write_text(toml.read_text().replace('title = "Test Site"', 'title = "Renamed Site"'), "utf-8")
    assert wait_for(lambda: server.state.number > first, timeout=20.0, interval=0.05)
    assert "Renamed Site" in get(server.url)[2]
