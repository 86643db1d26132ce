"""Hostile files: symlinks out of the site, loops, FIFOs, templates that raise, dates that
overflow, keys given twice. Each is refused with `path[:line]: message (hint)`, exit 1, no
traceback, and the last out/ stays exactly as it was (bytes and modification times)."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from email_sites import NEWSLETTER_TOML
from files import snapshot_with_mtimes
from review_press.build import BuildOptions, build
from review_press.errors import PressError
from review_press.serve import LiveServer
from review_press.store import SQLiteStore
from sites import BASE_TOML, post_text, write_site

NOW = BuildOptions(now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
CANARY = "canary-4f1d9c-not-for-the-web"  # a secret: it must never reach out/, stdout or stderr
SECRET_ENV = {"SMTP_PASSWORD": CANARY + "-smtp", "REVIEW_PRESS_SECRET": CANARY + "-signing"}


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command (`python -m review_press`) in a subprocess; the timeout turns a hang into a failure."""
    full = {**os.environ, "PYTHONWARNINGS": "ignore", **SECRET_ENV, **(env or {})}
    return subprocess.run([sys.executable, "-m", "review_press", *args], cwd=cwd, capture_output=True, text=True, env=full, timeout=120)


def messages(exc: PressError) -> list[str]:
    """Each problem of a raised `PressError`, as the CLI prints it."""
    return [str(e) for e in getattr(exc, "errors", (exc,))]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the site holding a secret file and a post-shaped file: nothing here may be published."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "secrets.env").write_text(f"SMTP_PASSWORD={CANARY}\n", "utf-8")
    (folder / "stolen.md").write_text(post_text("Stolen", body=CANARY), "utf-8")
    (folder / "post.html").write_text(f"{CANARY}\n", "utf-8")
    return folder.resolve()  # as errors show it: every link resolved


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site built once (its out/ is "the last good site"), with a change pending so the next build has something to write.

    The working folder is the site, so errors name `static/...`, `posts/...` as the CLI prints them there.
    """
    root = write_site(tmp_path / "site", {"2026-01-02-a.md": post_text("A"), "2026-01-03-b.md": post_text("B", date="2026-01-03")})
    (root / "static").mkdir()
    (root / "static/robots-extra.txt").write_text("hello\n", "utf-8")
    build(root, NOW)
    (root / "posts/2026-01-02-a.md").write_text(post_text("A, changed"), "utf-8")
    monkeypatch.chdir(root)
    return root


def assert_refused(root: Path, before: dict[str, tuple[bytes, int]], expected: list[str]) -> list[str]:
    """A build of `root` raises every `expected` message, and leaves out/ as `before`."""
    with pytest.raises(PressError) as info:
        build(root, NOW)
    found = messages(info.value)
    for text in expected:
        assert any(text in m for m in found), (text, found)
    assert snapshot_with_mtimes(root / "out") == before
    assert not any(CANARY.encode() in data for data, _ in before.values())
    return found


def assert_cli_refused(result: subprocess.CompletedProcess[str], expected: str) -> None:
    """The CLI exited 1 and printed `expected` on stderr, with no traceback and no secret."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert CANARY not in result.stdout + result.stderr


# --- 1. symlinks that lead out of the site -----------------------------------------------


def test_cli_refuses_a_static_link_to_the_process_environment(site: Path) -> None:
    before = snapshot_with_mtimes(site / "out")
    os.symlink("/proc/self/environ", site / "static/env.txt")
    for command in ("build", "check"):
        result = cli(command, "--site", str(site), cwd=site)
        assert_cli_refused(result, "error: static/env.txt: links outside the site (to /proc/self/environ)")
    assert snapshot_with_mtimes(site / "out") == before
    assert not (site / "out/env.txt").exists()


def test_cli_refuses_a_post_linked_to_etc_passwd(site: Path) -> None:
    before = snapshot_with_mtimes(site / "out")
    os.symlink("/etc/passwd", site / "posts/passwd.md")
    result = cli("build", "--site", str(site), cwd=site)
    assert_cli_refused(result, "error: posts/passwd.md: links outside the site (to /etc/passwd)")
    assert snapshot_with_mtimes(site / "out") == before


@pytest.mark.parametrize(
    ("link", "target", "expected"),
    [
        ("static/env.txt", "/proc/self/environ", "static/env.txt: links outside the site (to /proc/self/environ)"),
        ("static/passwd", "/etc/passwd", "static/passwd: links outside the site (to /etc/passwd)"),
        ("static/secrets.env", "../../elsewhere/secrets.env", "static/secrets.env: links outside the site (to {outside}/secrets.env)"),
        (
            "static/deep/er/secrets.env",
            "{outside}/secrets.env",
            "static/deep/er/secrets.env: links outside the site (to {outside}/secrets.env)",
        ),
        ("static/leak", "{outside}", "static/leak: links outside the site (to {outside})"),
        ("static/root", "/", "static/root: links outside the site (to /)"),
        ("posts/stolen.md", "{outside}/stolen.md", "posts/stolen.md: links outside the site (to {outside}/stolen.md)"),
        ("posts/environ.md", "/proc/self/environ", "posts/environ.md: links outside the site (to /proc/self/environ)"),
        ("posts/more", "{outside}", "posts/more: links outside the site (to {outside})"),
        ("posts/cover.jpg", "/etc/passwd", "posts/cover.jpg: links outside the site (to /etc/passwd)"),
        ("templates/post.html", "{outside}/post.html", "templates/post.html: links outside the site (to {outside}/post.html)"),
        ("templates/assets/env.css", "/proc/self/environ", "templates/assets/env.css: links outside the site (to /proc/self/environ)"),
        ("templates/email", "{outside}", "templates/email: links outside the site (to {outside})"),
    ],
)
def test_a_link_out_of_the_site_is_refused(site: Path, outside: Path, link: str, target: str, expected: str) -> None:
    before = snapshot_with_mtimes(site / "out")
    path = site / link
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target.format(outside=outside), path)
    [message] = assert_refused(site, before, [expected.format(outside=outside)])
    assert CANARY not in message


@pytest.mark.parametrize("folder", ["static", "posts", "templates"])
def test_a_whole_folder_linked_out_of_the_site_is_refused(site: Path, outside: Path, folder: str) -> None:
    before = snapshot_with_mtimes(site / "out")
    moved = site.parent / f"moved-{folder}"
    if (site / folder).exists():
        (site / folder).rename(moved)
    else:
        moved.mkdir()
    os.symlink(moved, site / folder)
    assert_refused(site, before, [f"{folder}: links outside the site (to {moved})"])


def test_a_chain_of_links_is_judged_by_where_it_ends(site: Path) -> None:
    before = snapshot_with_mtimes(site / "out")
    os.symlink("second", site / "static/first")  # inside the site, but on to /etc/passwd
    os.symlink("/etc/passwd", site / "static/second")
    found = assert_refused(site, before, ["static/first: links outside the site (to /etc/passwd)", "static/second: links outside"])
    assert len(found) == 2


def test_links_that_stay_inside_the_site_are_followed(site: Path) -> None:
    (site / "shared/images").mkdir(parents=True)
    (site / "shared/images/logo.svg").write_text("<svg/>", "utf-8")
    (site / "shared/drafts").mkdir()
    (site / "shared/drafts/2026-01-04-linked.md").write_text(post_text("Linked folder", date="2026-01-04"), "utf-8")
    (site / "shared/one.md").write_text(post_text("Linked file", date="2026-01-05"), "utf-8")
    (site / "shared/post.html").write_text(
        '{% extends "base.html" %}{% block content %}LINKED TEMPLATE {{ post.title }}{% endblock %}\n', "utf-8"
    )
    os.symlink("../shared/images", site / "static/images")  # a folder
    os.symlink("../shared/images/logo.svg", site / "static/logo.svg")  # a file
    os.symlink("../shared/drafts", site / "posts/linked")
    os.symlink("../shared/one.md", site / "posts/2026-01-05-one.md")
    (site / "templates").mkdir()
    os.symlink("../shared/post.html", site / "templates/post.html")
    build(site, NOW)
    out = site / "out"
    assert (out / "images/logo.svg").read_text() == "<svg/>" and (out / "logo.svg").read_text() == "<svg/>"
    assert "LINKED TEMPLATE Linked folder" in (out / "posts/linked/index.html").read_text()
    assert "LINKED TEMPLATE Linked file" in (out / "posts/one/index.html").read_text()
    assert not (out / "images").is_symlink() and not (out / "logo.svg").is_symlink()  # copies, never links


def test_a_bad_post_reached_through_a_link_is_named_by_its_link(site: Path) -> None:
    before = snapshot_with_mtimes(site / "out")
    (site / "drafts").mkdir()
    (site / "drafts/real.md").write_text("---\ntitle: T\ndate: someday\n---\n", "utf-8")
    os.symlink("../drafts/real.md", site / "posts/alias.md")
    assert_refused(site, before, ["posts/alias.md:3: cannot read date 'someday'"])


@pytest.mark.slow
def test_cli_refuses_symlink_loops_without_hanging(site: Path) -> None:
    before = snapshot_with_mtimes(site / "out")
    os.symlink("self", site / "static/self")  # a link to itself
    (site / "static/sub").mkdir()
    os.symlink("..", site / "static/sub/up")  # a folder link back into a folder it is in
    os.symlink("../posts", site / "posts/round")
    (site / "templates").mkdir()
    os.symlink("b.html", site / "templates/a.html")
    os.symlink("a.html", site / "templates/b.html")
    # posts are read first, then the theme, then static/: each stage reports all of its own problems
    stages = [
        (["posts/round: is a symlink loop (the link leads back to a folder it is in: remove it)"], [site / "posts/round"]),
        (
            ["templates/a.html: is a symlink loop (the link leads back to itself: remove it)", "templates/b.html: is a symlink loop"],
            [site / "templates/a.html", site / "templates/b.html"],
        ),
        (
            [
                "static/self: is a symlink loop (the link leads back to itself: remove it)",
                "static/sub/up: is a symlink loop (the link leads back to a folder it is in: remove it)",
            ],
            [site / "static/self", site / "static/sub/up"],
        ),
    ]
    for expected, fixed_by_removing in stages:
        runs = [cli("build", "--site", str(site), cwd=site, env={"PYTHONHASHSEED": seed}) for seed in ("0", "4242")]
        for text in expected:
            assert_cli_refused(runs[0], text)
        assert runs[0].stderr == runs[1].stderr  # the same report under any hash seed
        assert snapshot_with_mtimes(site / "out") == before
        for link in fixed_by_removing:
            link.unlink()
    assert cli("build", "--site", str(site), cwd=site).returncode == 0


def test_cli_refuses_a_fifo_instead_of_blocking_on_it(site: Path) -> None:
    before = snapshot_with_mtimes(site / "out")
    os.mkfifo(site / "posts/pipe.md")
    result = cli("build", "--site", str(site), cwd=site)
    assert_cli_refused(result, "error: posts/pipe.md: is not a regular file")
    assert snapshot_with_mtimes(site / "out") == before


def test_a_broken_link_inside_static_is_skipped(site: Path) -> None:
    os.symlink("tess@host.1234:1700000000", site / "static/.#notes.txt")  # an editor's lock file
    build(site, NOW)
    assert not (site / "out/.#notes.txt").exists()
    assert (site / "out/robots-extra.txt").read_text() == "hello\n"


# --- 1b. serve: nothing outside out/, through a link or `..` -----------------------------


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written (no client-side `..` clean-up): status and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def newsletter_site(tmp_path: Path, outside: Path) -> Path:
    return write_site(tmp_path / "site", {"2026-01-05-hello.md": post_text("Hello", date="2026-01-05", body="A letter.")}, NEWSLETTER_TOML)


@pytest.fixture
def live(newsletter_site: Path) -> Iterator[LiveServer]:
    server = LiveServer(newsletter_site, port=0, debounce_ms=50)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_serve_never_follows_a_link_out_of_out(live: LiveServer, newsletter_site: Path, outside: Path) -> None:
    out = newsletter_site / "out"
    assert (out / "email/hello/email.txt").is_file()
    # links planted in out/ after the build (serve does not watch out/, so nothing prunes them)
    os.symlink(outside / "secrets.env", out / "env.txt")
    os.symlink("/proc/self/environ", out / "environ.txt")
    os.symlink(outside, out / "leak")
    (out / "email/hello/email.txt").unlink()
    os.symlink(outside / "secrets.env", out / "email/hello/email.txt")
    os.symlink("robots.txt", out / "robots-link.txt")  # a link that stays inside out/: served
    for target in ("/env.txt", "/environ.txt", "/leak/secrets.env", "/leak/", "/leak", "/email/hello/email.txt"):
        status, body = raw_get(live.port, target)
        assert status == 404, target
        assert CANARY.encode() not in body and b"SMTP_PASSWORD" not in body, target
    status, body = raw_get(live.port, "/robots-link.txt")
    assert status == 200 and body == (out / "robots.txt").read_bytes()


@pytest.mark.parametrize(
    "target",
    [
        "/../press.toml",
        "/../../elsewhere/secrets.env",
        "/%2e%2e/press.toml",
        "/%2E%2E/%2E%2E/elsewhere/secrets.env",
        "/posts/../../press.toml",
        "/..%2f..%2felsewhere%2fsecrets.env",
        "/email/../press.toml",
        "/email/../../press.toml",
        "/email/../email.txt",
        "/email/..%2f..%2fpress.toml/email.txt",
        "/email/%2e%2e/email.txt",
    ],
)
def test_serve_never_climbs_out_of_out_with_dot_dot(live: LiveServer, target: str) -> None:
    status, body = raw_get(live.port, target)
    assert status == 404, (target, status, body[:200])
    assert b"base_url" not in body and CANARY.encode() not in body


def test_serve_with_a_hostile_static_link_shows_the_error_and_serves_nothing_of_it(newsletter_site: Path, outside: Path) -> None:
    (newsletter_site / "static").mkdir()
    os.symlink(outside / "secrets.env", newsletter_site / "static/env.txt")
    server = LiveServer(newsletter_site, port=0, debounce_ms=50)
    server.start()
    try:
        assert server.state.error and "static/env.txt: links outside the site" in server.state.error
        status, body = raw_get(server.port, "/env.txt")
        assert status == 404 and CANARY.encode() not in body
    finally:
        server.stop()
    assert not (newsletter_site / "out").exists()  # the refused build wrote nothing


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serve_refuses_links_and_dot_dot(newsletter_site: Path, outside: Path, tmp_path: Path) -> None:
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "review_press", "serve", "--site", str(newsletter_site), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **SECRET_ENV},
    )
    try:
        for _ in range(600):  # the server answers once its first build is done
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            pytest.fail("serve did not answer: " + (tmp_path / "serve.log").read_text())
        os.symlink("/proc/self/environ", newsletter_site / "out/environ.txt")
        os.symlink(outside, newsletter_site / "out/leak")
        for target in ("/environ.txt", "/leak/secrets.env", "/../press.toml", "/%2e%2e/%2e%2e/elsewhere/secrets.env"):
            status, body = raw_get(port, target)
            assert status == 404, target
            assert CANARY.encode() not in body and b"base_url" not in body, target
        assert raw_get(port, "/posts/hello/")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


# --- 2. a template that raises while rendering ---------------------------------------------


def test_cli_names_the_template_line_that_raised(site: Path) -> None:
    before = snapshot_with_mtimes(site / "out")
    (site / "templates").mkdir()
    (site / "templates/post.html").write_text("{{ 1/0 }}\n", "utf-8")
    result = cli("build", "--site", str(site), cwd=site)
    assert_cli_refused(
        result, "error: templates/post.html:1: template error: ZeroDivisionError: division by zero (while rendering post.html)"
    )
    assert snapshot_with_mtimes(site / "out") == before


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "post.html",
            '{% extends "base.html" %}\n{% block content %}\n<p>{{ post.title }}</p>\n{{ post.nope.deeper }}\n{% endblock %}\n',
            "templates/post.html:4: template error: 'review_press.content.Post object' has no attribute 'nope'",
        ),
        (
            "post.html",
            "<p>\n{% if post %}{{ post.title | no_such_filter }}{% endif %}\n",
            "templates/post.html:2: template error: No filter named 'no_such_filter'",
        ),
        ("post.html", "<p>\n\n{{ no_such_function() }}\n", "templates/post.html:3: template error: 'no_such_function' is undefined"),
        ("post.html", '{{ "%d" % post.title }}\n', "templates/post.html:1: template error: TypeError: %d format"),
        ("post.html", 'ok\n{% include "_no_such_partial.html" %}\n', "templates/post.html:2: template '_no_such_partial.html' not found"),
        ("_card.html", "<article>\n  {{ post.title[1:] + 5 }}\n</article>\n", "templates/_card.html:2: template error: TypeError"),
        (
            "index.html",
            "{% macro boom(x) %}\n{{ x // 0 }}\n{% endmacro %}\n{{ boom(1) }}\n",
            "templates/index.html:2: template error: ZeroDivisionError",
        ),
    ],
)
def test_a_template_that_raises_names_its_file_and_line(site: Path, name: str, text: str, expected: str) -> None:
    before = snapshot_with_mtimes(site / "out")
    (site / "templates").mkdir()
    (site / "templates" / name).write_text(text, "utf-8")
    assert_refused(site, before, [expected])


def test_an_email_template_that_raises_names_its_line(newsletter_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(newsletter_site, NOW)
    before = snapshot_with_mtimes(newsletter_site / "out")
    monkeypatch.chdir(newsletter_site)
    (newsletter_site / "templates/email").mkdir(parents=True)
    (newsletter_site / "templates/email/edition.html").write_text("<html>\n<body>\n{{ post.title.missing.deeper }}\n", "utf-8")
    assert_refused(newsletter_site, before, ["templates/email/edition.html:3: template error: 'str object' has no attribute 'missing'"])


# --- 3. dates that overflow when converted ------------------------------------------------


def test_cli_names_a_date_that_overflows_utc(site: Path) -> None:
    before = snapshot_with_mtimes(site / "out")
    (site / "posts/2026-01-04-x.md").write_text(post_text("X", date="0001-01-01T00:00:00+14:00"), "utf-8")
    result = cli("build", "--site", str(site), cwd=site)
    assert_cli_refused(
        result,
        "error: posts/2026-01-04-x.md:3: date '0001-01-01T00:00:00+14:00' is out of range: in UTC it is before the year 1"
        " (write a date from 0001-01-02 to 9999-12-30)",
    )
    assert snapshot_with_mtimes(site / "out") == before


@pytest.mark.parametrize(
    ("text", "expected", "timezone"),
    [
        (
            post_text(date="9999-12-31T23:00:00-05:00"),
            "x.md:3: date '9999-12-31T23:00:00-05:00' is out of range: in UTC it is after the year 9999",
            None,
        ),
        (
            post_text(date="9999-12-31T23:59:59Z"),
            "x.md:3: date '9999-12-31T23:59:59Z' is out of range: in UTC it is after 9999-12-30",
            None,
        ),
        (post_text(date="0001-01-01"), "x.md:3: date '0001-01-01' is out of range: in UTC it is before 0001-01-02", None),
        (
            post_text(date="9999-12-31T22:00:00"),
            "x.md:3: date '9999-12-31T22:00:00' is out of range: in UTC it is after the year 9999",
            "America/New_York",
        ),
        (
            post_text(date="0001-01-01T05:00:00"),
            "x.md:3: date '0001-01-01T05:00:00' is out of range: in UTC it is before the year 1",
            "Asia/Tokyo",
        ),
        (post_text(updated="0001-01-01T00:00:00+14:00"), "x.md:4: updated date '0001-01-01T00:00:00+14:00' is out of range", None),
        ('+++\ntitle = "T"\ndate = 0001-01-01T00:00:00+14:00\n+++\n', "x.md:3: date '0001-01-01T00:00:00+14:00' is out of range", None),
        ('+++\ntitle = "T"\ndate = 9999-12-31\n+++\n', "x.md:3: date '9999-12-31' is out of range: in UTC it is after 9999-12-30", None),
    ],
)
def test_an_extreme_date_names_the_file_and_date_line(site: Path, text: str, expected: str, timezone: str | None) -> None:
    if timezone:
        (site / "press.toml").write_text(BASE_TOML.replace("Europe/London", timezone), "utf-8")
    before = snapshot_with_mtimes(site / "out")
    (site / "posts/x.md").write_text(text, "utf-8")
    [message] = assert_refused(site, before, ["posts/" + expected])
    assert message.endswith("(write a date from 0001-01-02 to 9999-12-30)")


def test_dates_at_the_edges_of_the_range_build(tmp_path: Path) -> None:
    posts = {
        "first.md": post_text("First", date="0001-01-02T00:00:00Z"),
        "last.md": post_text("Last", date="9999-12-30T23:59:59Z", updated="9999-12-30T23:59:59Z"),
        "last-too.md": post_text("Last too", date="9999-12-30T23:59:59+00:00"),
    }
    root = write_site(tmp_path / "edges", posts, NEWSLETTER_TOML.replace("since = 2026-01-01", "since = 0001-01-01"))
    build(root, BuildOptions(now=NOW.now, future=True))
    assert (root / "out/posts/first/index.html").is_file() and (root / "out/posts/last/index.html").is_file()
    assert "9999-12-3" in (root / "out/atom.xml").read_text() and (root / "out/archive/1/index.html").is_file()
    assert (root / "out/email/first/email.eml").is_file()  # a build mails no future post; a preview renders any
    from review_press.preview import preview

    assert preview(root, "last", now=NOW.now).paths[0].is_file()


# --- 4. a key given twice in front matter ---------------------------------------------------


def test_cli_names_both_lines_of_a_key_given_twice(site: Path) -> None:
    before = snapshot_with_mtimes(site / "out")
    (site / "posts/x.md").write_text('---\ntitle: "X"\nslug: first\ndate: 2026-01-04\nslug: second\n---\nBody\n', "utf-8")
    result = cli("build", "--site", str(site), cwd=site)
    assert_cli_refused(result, "error: posts/x.md:5: 'slug' is given twice (first on line 3)")
    assert snapshot_with_mtimes(site / "out") == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("---\ntitle: A\ndate: 2026-01-04\ntitle: B\n---\n", "posts/x.md:4: 'title' is given twice (first on line 2)"),
        ('---\ntitle: A\n"date": 2026-01-04\ndate: 2026-01-05\n---\n', "posts/x.md:4: 'date' is given twice (first on line 3)"),
        (
            "---\ntitle: A\ndate: 2026-01-04\nrating:\n  stars: 4\n  of: 5\n  stars: 5\n---\n",
            "posts/x.md:7: 'stars' is given twice (first on line 5)",
        ),
        ("---\ntitle: A\ndate: 2026-01-04\ncast: {lead: Ann, lead: Bo}\n---\n", "posts/x.md:4: 'lead' is given twice (first on line 4)"),
        ('+++\ntitle = "A"\nslug = "a"\ndate = 2026-01-04\nslug = "b"\n+++\n', "posts/x.md:5: 'slug' is given twice (first on line 3)"),
        ('+++\ntitle = "A"\ndate = 2026-01-04\n"title" = "B"\n+++\n', "posts/x.md:4: 'title' is given twice (first on line 2)"),
    ],
)
def test_a_key_given_twice_is_refused(site: Path, text: str, expected: str) -> None:
    before = snapshot_with_mtimes(site / "out")
    (site / "posts/x.md").write_text(text, "utf-8")
    assert_refused(site, before, [expected])


def test_yaml_merge_keys_may_still_be_overridden(site: Path) -> None:
    text = "---\ntitle: Merged\ndate: 2026-01-04\nbase: &base {stars: 3, of: 5}\nscore:\n  <<: *base\n  stars: 4\n---\nBody\n"
    (site / "posts/x.md").write_text(text, "utf-8")
    plan, _ = build(site, NOW)
    [post] = [p for p in plan.site.posts if p.title == "Merged"]
    assert post.meta["score"] == {"stars": 4, "of": 5}


@pytest.mark.parametrize("target", [".review-press/press.db", ".review-press", "out/index.html"])
def test_a_link_into_the_sites_private_files_is_refused(tmp_path: Path, target: str) -> None:

    site = write_site(tmp_path / "site", {"a.md": post_text("A")})
    with SQLiteStore.open(site / ".review-press" / "press.db") as store:
        store.add("secret-reader@example.org")
    (site / "out").mkdir()
    (site / "out" / "index.html").write_text("old", "utf-8")
    (site / "static").mkdir()
    os.symlink(site / target, site / "static" / "leak")
    result = cli("build", cwd=site)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "static/leak: links into the site's private files" in result.stderr
    assert not (site / "out" / "leak").exists()
