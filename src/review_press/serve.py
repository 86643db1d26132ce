"""`review-press serve`: out/ on localhost, rebuilt on every change, with live reload.

A `LiveServer` builds the site, serves out/ from a thread (the standard library's HTTP
server) and watches posts/, templates/, static/ and press.toml (watchfiles). Each finished
rebuild bumps a build number; HTML responses get a small script, added while serving and
never written to out/, that long-polls `/__reload` and reloads the page when the number
changes, or shows the build error over the page when a rebuild fails.

`/email/` lists every post's email edition; `/email/<slug>/` serves the built files when the
post is a newsletter post, else renders the preview on the fly, so a writer sees the web
page and the email side by side while writing. The email page shows its images from this
server (`preview.local_image_urls`), not from the public site, which may not have them yet.
"""

from __future__ import annotations

import html
import json
import mimetypes
import os
import re
import shutil
import stat
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

import watchfiles

from .config import CONFIG_NAME, load_config
from .errors import PressError
from .preview import local_image_urls, served_from
from .sitefiles import is_inside

RELOAD_PATH = "/__reload"
POLL_SECONDS = 25.0
WATCHED_DIRS = ("posts", "templates", "static")
RELOAD_SCRIPT = """<script>/* review-press serve: live reload (not in built files) */
(function () {
  var build = %d;
  function banner(text) {
    var box = document.getElementById("review-press-error") || document.createElement("pre");
    box.id = "review-press-error";
    box.textContent = text;
    box.style.cssText = "position:fixed;left:0;right:0;bottom:0;margin:0;padding:12px;max-height:50vh;overflow:auto;z-index:2147483647;background:#7f2019;color:#fff;font:13px/1.4 monospace;white-space:pre-wrap";
    document.body.appendChild(box);
  }
  function poll() {
    fetch("%s?build=" + build, {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (data) {
      if (data.build !== build) {
        build = data.build;
        if (data.error) { banner(data.error); } else { location.reload(); return; }
      }
      poll();
    }).catch(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
</script>
"""


_BUILD_NUMBER = re.compile(r"-?[0-9]{1,18}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def open_inside(path: Path | str, root: Path | str) -> tuple[BinaryIO, os.stat_result] | None:
    """The regular file at `path`, opened once for reading, with its stat; None unless the file
    that was opened lies inside `root`.

    The check is made on the opened file, not on the name: a name checked, then opened again,
    could meanwhile have become a symlink to a file outside (a race). On Linux the kernel's own
    path of the open descriptor (`/proc/self/fd/N`) is checked; elsewhere the descriptor's
    inode must be the one at the resolved path inside `root` (`lstat`, so a link put there in
    between does not count). Folders, FIFOs and devices are None too, and opening never blocks.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and _opened_inside(fd, path, st, os.path.realpath(root)):
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb"), st
    except OSError:
        pass
    os.close(fd)
    return None


def _opened_inside(fd: int, path: Path | str, st: os.stat_result, root: str) -> bool:
    """Whether the open file `fd` (stat `st`, opened as `path`) lies inside the resolved `root`."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc: compare the inode with what the resolved name holds now
        real = os.path.realpath(path)
        there = os.lstat(real)
        if (there.st_dev, there.st_ino) != (st.st_dev, st.st_ino):
            return False
    return os.path.commonpath([real, root]) == root and real != root


def read_inside(path: Path | str, root: Path | str) -> bytes | None:
    """The bytes of the regular file at `path` if the file opened lies inside `root` (`open_inside`), else None."""
    opened = open_inside(path, root)
    if opened is None:
        return None
    with opened[0] as f:
        return f.read()


def inject_reload(page: bytes, build: int) -> bytes:
    """`page` with the live-reload script before `</body>` (or at the end)."""
    script = (RELOAD_SCRIPT % (build, RELOAD_PATH)).encode()
    at = page.lower().rfind(b"</body>")
    return page[:at] + script + page[at:] if at >= 0 else page + script


@dataclass(frozen=True)
class BuildResult:
    """What a rebuild left: its number, the error that stopped it (if any), and the posts by slug."""

    number: int
    error: str | None
    posts: dict[str, Any]
    context: Any  # (config, theme) of the last good build, for on-the-fly email previews


def _default_build(drafts: bool, future: bool) -> Callable[[Path], Any]:
    def run(root: Path) -> Any:
        from .build import BuildOptions, build

        plan, _ = build(root, BuildOptions(drafts=drafts, future=future))
        return plan

    return run


def watched(root: Path) -> Callable[[watchfiles.Change, str], bool]:
    """A watchfiles filter: changes in posts/, templates/, static/ and to press.toml; no editor droppings."""
    root = root.resolve()
    dirs = tuple(root / d for d in WATCHED_DIRS)
    config = root / CONFIG_NAME

    def keep(_change: watchfiles.Change, path: str) -> bool:
        p = Path(path)
        if p.name.startswith((".", "#")) or p.name.endswith(("~", ".swp", ".tmp")):
            return False
        return p == config or any(p.is_relative_to(d) for d in dirs)

    return keep


class LiveServer:
    """out/ over HTTP on `host:port` with rebuild-on-change and live reload; `start()`, then `stop()`."""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        drafts: bool = False,
        future: bool = False,
        build: Callable[[Path], Any] | None = None,
        debounce_ms: int = 150,
    ) -> None:
        self.root = root.resolve()
        config = load_config(self.root)
        self.out_dir = config.out_dir
        self._base_url = config.base_url
        self.host, self.port = host, port
        self.debounce_ms = debounce_ms
        self._build = build or _default_build(drafts, future)
        self._changed = threading.Condition()
        self._state = BuildResult(number=0, error=None, posts={}, context=None)
        self._stop = threading.Event()
        self._watching = threading.Event()
        self._threads: list[threading.Thread] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._previews: dict[tuple[int, str], dict[str, bytes]] = {}

    # --- building -------------------------------------------------------------------------

    @property
    def state(self) -> BuildResult:
        return self._state

    def rebuild(self) -> BuildResult:
        """Build once; a `PressError` is kept (and shown in the browser), the last good out/ still served."""
        previous = self._state
        try:
            plan = self._build(self.root)
            posts = {p.slug: p for p in getattr(getattr(plan, "site", None), "posts", ())}
            context = (plan.config, plan.theme) if hasattr(plan, "theme") else previous.context
            state = BuildResult(number=previous.number + 1, error=None, posts=posts or previous.posts, context=context)
        except PressError as exc:
            state = BuildResult(number=previous.number + 1, error=str(exc), posts=previous.posts, context=previous.context)
        with self._changed:
            self._state = state
            self._previews.clear()
            self._changed.notify_all()
        return state

    def wait_for_build(self, seen: int, timeout: float) -> BuildResult:
        """The state once its number differs from `seen`, or after `timeout` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self._state.number != seen or self._stop.is_set(), timeout=timeout)
            return self._state

    def _watch(self) -> None:
        """Rebuild after each batch of changes. The first (possibly empty) batch means the watch is live."""
        for changes in watchfiles.watch(
            self.root,
            watch_filter=watched(self.root),
            stop_event=self._stop,
            debounce=self.debounce_ms,
            step=50,
            rust_timeout=200,
            yield_on_timeout=True,
            raise_interrupt=False,
        ):
            self._watching.set()
            if changes:
                self.rebuild()

    # --- email previews -------------------------------------------------------------------

    def email_file(self, slug: str, name: str) -> bytes | None:
        """A post's email file from out/ (newsletter posts) or rendered now (any other post)."""
        if slug in ("", ".", ".."):
            return None
        built = self.out_dir / "email" / slug / name
        if os.path.lexists(built):
            return read_inside(built, self.out_dir)  # None for a symlink that leads out of out/: never served
        if not is_inside(built.parent, self.out_dir):
            return None
        state = self._state
        post = state.posts.get(slug)
        if post is None or state.context is None:
            return None
        key = (state.number, slug)
        if key not in self._previews:
            from .edition.plan import render_preview

            config, theme = state.context
            files, _problems = render_preview(post, config, theme)
            self._previews[key] = files
        return self._previews[key].get(name)

    def with_local_images(self, page: bytes) -> bytes:
        """An email page whose images under the site's `base_url` come from this server (root-relative
        URLs, so any address the browser used works); the files in out/ are never changed."""
        context = self._state.context
        base_url = context[0].base_url if context is not None else self._base_url
        return local_image_urls(page.decode("utf-8"), base_url, served_from("/")).encode("utf-8")

    def email_index(self) -> bytes:
        """/email/: every post with links to its email, plain text and .eml."""
        rows = []
        for slug, post in self._state.posts.items():
            s = html.escape(slug)
            rows.append(
                f'<li><a href="/email/{s}/">{html.escape(post.title)}</a> '
                f'<small>{post.date:%Y-%m-%d} · <a href="/email/{s}/email.txt">text</a> · '
                f'<a href="/email/{s}/email.eml">.eml</a> · <a href="/{html.escape(post.path)}">web page</a></small></li>'
            )
        body = "\n".join(rows) or "<li>No posts yet.</li>"
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>Email editions</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem}"
            "li{margin:.4rem 0}small{color:#666}</style></head><body><h1>Email editions</h1>"
            f"<ul>{body}</ul></body></html>"
        ).encode()

    # --- serving --------------------------------------------------------------------------

    def start(self) -> None:
        """Watch, build, then serve; returns once the watch is live, so no later edit is missed."""
        self._spawn(self._watch)
        self.rebuild()
        self._httpd = QuietServer((self.host, self.port), _handler(self))
        self.port = self._httpd.server_address[1]
        self._spawn(self._httpd.serve_forever)
        self._watching.wait(timeout=10)

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True, name=f"review-press-serve-{target.__name__}")
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving and watching; waiting long-polls return at once."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


class QuietServer(ThreadingHTTPServer):
    """The HTTP server of `serve`: a browser tab that goes away mid-answer (a closed tab, a
    reload during a long poll) is normal here, so a broken pipe or a reset prints nothing."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def _handler(server: LiveServer) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        """Files from out/; HTML gets the reload script; /__reload long-polls; /email/ previews."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(server.out_dir), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _page(self, body: bytes) -> None:
            self._send(inject_reload(body, server.state.number), "text/html; charset=utf-8")

        def _refuse(self, status: HTTPStatus, text: str) -> None:
            """A short plain-text refusal (a fixed text: nothing of the request is echoed)."""
            self._send(f"{status.value} {status.phrase}: {text}\n".encode(), "text/plain; charset=utf-8", status)

        def _redirect(self, location: str) -> None:
            """301 to `location`, a path this server built (percent-encoded, one leading slash)."""
            if not location.startswith("/") or location.startswith("//") or _CONTROL.search(location):
                self._refuse(HTTPStatus.BAD_REQUEST, "no such path")  # never a protocol-relative Location (`//host/`)
                return
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            if _CONTROL.search(path):  # CR, LF, NUL...: never into a header or a file name
                self._refuse(HTTPStatus.BAD_REQUEST, "a control character in the path")
                return
            if path == RELOAD_PATH:
                value = (parse_qs(parts.query).get("build") or ["-1"])[0] or "-1"
                if not _BUILD_NUMBER.fullmatch(value):
                    self._refuse(HTTPStatus.BAD_REQUEST, "build must be a whole number")
                    return
                state = server.wait_for_build(int(value), POLL_SECONDS)
                self._send(json.dumps({"build": state.number, "error": state.error}).encode(), "application/json")
                return
            if path in ("/email", "/email/"):
                self._page(server.email_index())
                return
            bits = path.strip("/").split("/")
            if len(bits) in (2, 3) and bits[0] == "email" and (len(bits) == 2 or bits[2] in ("index.html", "email.txt", "email.eml")):
                if not path.endswith("/") and len(bits) == 2:
                    self._redirect(f"/email/{quote(bits[1], safe='')}/")  # built from the slug, never from the raw path
                    return
                name = bits[2] if len(bits) == 3 else "index.html"
                data = server.email_file(bits[1], name)
                if data is None:
                    self.send_error(HTTPStatus.NOT_FOUND, "no such post")
                elif name == "index.html":
                    self._page(server.with_local_images(data))
                else:
                    self._send(data, "text/plain; charset=utf-8")
                return
            self._file(path)

        def _file(self, path: str) -> None:
            """A file of out/, opened once (`open_inside`: never one a symlink leads to outside out/)."""
            file = Path(self.translate_path(self.path))  # `..` and empty segments dropped: a path below out/
            if file.is_dir() and is_inside(file, server.out_dir):  # a folder link out of out/ is not even redirected
                if not path.endswith("/"):
                    rel = os.path.relpath(file, server.out_dir)
                    self._redirect("/" if rel == "." else "/" + quote(Path(rel).as_posix()) + "/")
                    return
                file = file / "index.html"
            opened = open_inside(file, server.out_dir)
            if opened is None:
                missing = read_inside(server.out_dir / "404.html", server.out_dir)
                if missing is not None:
                    self._send(inject_reload(missing, server.state.number), "text/html; charset=utf-8", HTTPStatus.NOT_FOUND)
                else:
                    self.send_error(HTTPStatus.NOT_FOUND, "File not found")
                return
            f, st = opened
            with f:
                if file.suffix == ".html":
                    self._page(f.read())
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", self.guess_type(file))
                self.send_header("Content-Length", str(st.st_size))
                self.send_header("Last-Modified", self.date_time_string(int(st.st_mtime)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if self.command != "HEAD":
                    shutil.copyfileobj(_Limited(f, st.st_size), self.wfile)

        def guess_type(self, path: str | Path) -> str:
            kind = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
            return kind + "; charset=utf-8" if kind.startswith("text/") or kind.endswith(("json", "xml")) else kind

    return Handler


class _Limited:
    """At most `size` bytes of `f` (what Content-Length promised, should the file grow meanwhile)."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n) if n > 0 else b""
        self.left -= len(data)
        return data


def serve(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    drafts: bool = False,
    future: bool = False,
    open_browser: bool = False,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the site until Ctrl-C: the body of `review-press serve`."""
    server = LiveServer(root, host, port, drafts=drafts, future=future)
    server.start()
    echo(f"serving {server.out_dir} at {server.url} (emails at {server.url}email/); Ctrl-C to stop")
    if server.state.error:
        echo(f"error: {server.state.error}")
    if open_browser:
        webbrowser.open(server.url)
    seen = server.state.number
    try:
        while True:
            state = server.wait_for_build(seen, 1.0)
            if state.number != seen:
                seen = state.number
                echo(f"rebuilt (build {state.number})" if state.error is None else f"error: {state.error}")
            time.sleep(0.05)
    except KeyboardInterrupt:
        echo("stopped")
    finally:
        server.stop()
