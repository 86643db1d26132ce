"""Test support: write small real sites into a temporary folder, serve them, and run the real
`review-press` command on them."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

BASE_TOML = """\
title = "Test Site"
description = "A site for tests."
base_url = "https://example.org/blog/"
language = "en"
timezone = "Europe/London"
posts_per_page = 2
feed_length = 3

[author]
name = "Tess Ter"
email = "tess@example.org"
"""


def post_text(title: str = "A post", date: str = "2026-01-02", body: str = "Hello *world*.", **extra: str) -> str:
    """A post file's text with YAML front matter; extra keys are written as given."""
    lines = ["---", f'title: "{title}"', f"date: {date}", *(f"{k}: {v}" for k, v in extra.items()), "---", "", body, ""]
    return "\n".join(lines)


def write_site(root: Path, posts: dict[str, str | bytes], toml: str = BASE_TOML) -> Path:
    """press.toml plus posts/<name> files (text or raw bytes) under `root`."""
    (root / "posts").mkdir(parents=True, exist_ok=True)
    (root / "press.toml").write_text(toml, "utf-8")
    for name, text in posts.items():
        path = root / "posts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, "utf-8")
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without printing a line per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 for `directory` (which may be made later); yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command (`python -m review_press`) in a subprocess."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "review_press", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
