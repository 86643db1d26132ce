"""Rendering on every core (`output._render_many`, forked renderers): the same bytes as one
process, in any order the processes finish; an error in a forked renderer is the same clear
error, and out/ stays as it was."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from files import snapshot
from review_press import output
from review_press.build import BuildOptions, build
from review_press.errors import PressError
from sites import post_text, write_site

NOW = BuildOptions(now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
POSTS = {
    f"p{i:03d}.md": post_text(
        f"Post {i}", date=f"2026-0{1 + i % 5}-{1 + i % 27:02d}", body=f"Body *{i}*.\n\n```python\nx = {i}\n```", tags=f"[t{i % 7}, all]"
    )
    for i in range(60)
}


def test_forked_renderers_write_the_same_bytes_as_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = write_site(tmp_path / "serial", POSTS)
    parallel = write_site(tmp_path / "parallel", POSTS)
    monkeypatch.setattr(output, "PARALLEL_FROM", 10**9)
    build(serial, NOW)
    monkeypatch.setattr(output, "PARALLEL_FROM", 2)  # on a machine with 2 cores or more: forked renderers
    _, report = build(parallel, NOW)
    assert report.rendered > 100
    assert snapshot(serial / "out") == snapshot(parallel / "out")


def test_an_error_in_a_forked_renderer_is_the_same_error_and_out_stays_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_site(tmp_path / "site", POSTS)
    build(root, NOW)
    before = snapshot(root / "out")
    (root / "templates").mkdir()
    (root / "templates/post.html").write_text('{% extends "base.html" %}\n{% block content %}{{ post.no_such.thing }}{% endblock %}\n')
    messages = []
    for threshold in (10**9, 2):  # one process, then forked renderers
        monkeypatch.setattr(output, "PARALLEL_FROM", threshold)
        with pytest.raises(PressError) as caught:
            build(root, NOW)
        messages.append(str(caught.value))
        assert snapshot(root / "out") == before
    assert messages[0] == messages[1] and "post.html" in messages[0]


@pytest.mark.slow
def test_a_build_killed_with_sigkill_leaves_no_forked_worker_behind(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    import psutil

    posts = {f"p{i:04d}.md": post_text(f"Post {i}", body="Words. " * 300) for i in range(600)}
    root = write_site(tmp_path / "site", posts)
    build = subprocess.Popen(
        [sys.executable, "-m", "review_press", "build", "--site", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    parent = psutil.Process(build.pid)
    workers: list[psutil.Process] = []
    deadline = time.monotonic() + 60
    while len(workers) < 2 and build.poll() is None and time.monotonic() < deadline:
        workers = parent.children()  # the forked parsers (or renderers), once the pool has started
        time.sleep(0.01)
    assert len(workers) >= 2, "the build ended before its workers could be seen"
    build.send_signal(signal.SIGKILL)
    build.wait(10)
    _, alive = psutil.wait_procs(workers, timeout=30)  # they notice their parent is gone and end
    assert not alive, [p.pid for p in alive]
