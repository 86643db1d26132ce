"""Failures of the machine, not of the input: a full disk, a read-only folder, a database busy
in another process, a killed Maildir delivery, a browser tab that goes away. Each is one clear
line naming the file, exit 1, no traceback, and the database and out/ as they were.

The full and read-only disks are real: a small tmpfs mounted for the test (root only; the
tests skip elsewhere)."""

from __future__ import annotations

import contextlib
import mailbox
import os
import random
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import review_press
from files import snapshot
from publishing import NEWSLETTER, POSTS
from review_press.config import load_config
from review_press.errors import StorageError
from review_press.serve import LiveServer
from review_press.store import SQLiteStore, db_path, open_store
from sites import cli

CAN_MOUNT = os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "256k") -> Iterator[Path]:
    """A real tmpfs of `size` mounted at `where` for the block."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Fill the file system of `folder` to the last byte."""
    fd = os.open(folder / "ballast", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0"):
                pass
    finally:
        os.close(fd)


def readers(n: int) -> str:
    return "email,name\n" + "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(n))


def test_the_state_folder_and_database_are_readable_by_their_owner_only(make_site: Callable[..., Path]) -> None:
    root = make_site(POSTS, NEWSLETTER)
    state = root / ".review-press"
    state.mkdir(mode=0o755)  # as an older version left it
    os.chmod(state, 0o755)
    assert cli("subscribers", "add", "ann@example.org", "--site", str(root)).returncode == 0
    assert cli("build", "--site", str(root)).returncode == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("press.db", "press.db-wal", "secret", "manifest.json"):
        path = state / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, name
    assert (state / "press.db").exists()


def test_a_database_busy_in_another_process_is_a_clear_error_after_a_bounded_wait(make_site: Callable[..., Path]) -> None:
    root = make_site(POSTS, NEWSLETTER)
    path = db_path(load_config(root))
    with SQLiteStore.open(path) as store:
        store.add("ann@example.org")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None);"
         " c.execute('BEGIN EXCLUSIVE'); print('held', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with SQLiteStore.open(path, busy_timeout=0.3) as store, pytest.raises(StorageError) as caught:
            store.add("bob@example.org")
        assert "press.db is busy (another review-press running?)" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
    with SQLiteStore.open(path) as store:
        assert [s.address for s in store.iter_subscribers()] == ["ann@example.org"]


@pytest.mark.skipif(not CAN_MOUNT, reason="needs root to mount a tmpfs")
def test_a_full_disk_during_import_add_and_publish_is_one_line_and_loses_nothing(make_site: Callable[..., Path], tmp_path: Path) -> None:
    root = make_site(POSTS, NEWSLETTER)
    big = tmp_path / "readers.csv"
    big.write_text(readers(4000), "utf-8")
    with tmpfs(root / ".review-press", "512k"):
        assert cli("subscribers", "add", "ann@example.org", "--site", str(root)).returncode == 0
        fill(root / ".review-press")
        before = snapshot(root / ".review-press")
        for command in (["subscribers", "import", str(big)], ["subscribers", "add", "bob@example.org"], ["publish"]):
            result = cli(*command, "--site", str(root))
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            assert "no space left on device" in result.stderr, (command, result.stderr)
            assert "Traceback" not in result.stderr
        (root / ".review-press" / "ballast").unlink()
        with open_store(load_config(root)) as store:  # as it was: one reader, no campaign
            assert [s.address for s in store.iter_subscribers()] == ["ann@example.org"]
            assert store.conn.execute("SELECT count(*) FROM campaigns").fetchone() == (0,)
        assert before.keys() - {"ballast"} <= snapshot(root / ".review-press").keys()


@pytest.mark.slow
@pytest.mark.skipif(not CAN_MOUNT, reason="needs root to mount a tmpfs")
def test_a_full_or_read_only_state_folder_during_build_names_the_file_and_leaves_out_alone(make_site: Callable[..., Path]) -> None:
    root = make_site(POSTS, NEWSLETTER)
    assert cli("build", "--site", str(root)).returncode == 0
    out_before = snapshot(root / "out")
    (root / "posts" / "2026-03-01-new.md").write_text("---\ntitle: New\ndate: 2026-03-01\n---\n\nNew.\n", "utf-8")
    shutil.rmtree(root / ".review-press")
    with tmpfs(root / ".review-press", "64k"):
        fill(root / ".review-press")
        result = cli("build", "--site", str(root))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert re.search(r"cannot write .review-press/cache/bodies\S*: no space left on device", result.stderr.replace(str(root) + "/", ""))
        assert snapshot(root / "out") == out_before
        (root / ".review-press" / "ballast").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(root / ".review-press")], check=True)
        result = cli("subscribers", "add", "ann@example.org", "--site", str(root))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "cannot write" in result.stderr and "read-only" in result.stderr, result.stderr
        assert snapshot(root / "out") == out_before


@pytest.mark.slow
def test_maildir_deliveries_killed_at_random_leave_nothing_in_tmp_and_everyone_gets_each_post_once(
    make_site: Callable[..., Path],
) -> None:
    root = make_site(POSTS, NEWSLETTER)  # no [smtp]: the Maildir outbox
    with open_store(load_config(root)) as store:
        for i in range(600):
            store.add(f"reader{i}@example.org")
    (root / "outbox" / "tmp").mkdir(parents=True)
    (root / "outbox" / "tmp" / "1700000000.M1P1.half").write_bytes(b"To: someone\n\nhalf a mess")  # as a kill leaves it
    env = {**os.environ, "PYTHONPATH": str(Path(review_press.__file__).parents[1])}
    command = [sys.executable, "-m", "review_press", "publish", "--site", str(root)]
    rng = random.Random(int(os.environ.get("KILL_SEED", time.time())))
    for _ in range(4):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert list((root / "outbox" / "tmp").iterdir()) == []
    got: dict[str, int] = {}
    for message in mailbox.Maildir(root / "outbox", create=False):
        got[message["Message-ID"]] = got.get(message["Message-ID"], 0) + 1
    assert len(got) == 2 * 600  # every reader has both posts
    with open_store(load_config(root)) as store:
        assert store.conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall() == [("sent", 1200)]


def test_a_browser_tab_that_goes_away_prints_no_traceback(make_site: Callable[..., Path], capfd: pytest.CaptureFixture[str]) -> None:
    root = make_site({"a.md": "---\ntitle: A\ndate: 2026-01-02\n---\n\n" + "Long text. " * 20000 + "\n"})
    server = LiveServer(root, port=0, debounce_ms=20)
    server.start()
    try:
        for _ in range(5):  # a big page, a reset before it is read: the server's writes hit a dead socket
            with socket.create_connection(("127.0.0.1", server.port)) as s:
                s.sendall(b"GET /posts/a/ HTTP/1.1\r\nHost: x\r\n\r\n")
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        seen = server.state.number
        with socket.create_connection(("127.0.0.1", server.port)) as s:  # a live-reload long poll, abandoned
            s.sendall(f"GET /__reload?build={seen} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        (root / "posts" / "a.md").write_text("---\ntitle: A2\ndate: 2026-01-02\n---\n\nShort.\n", "utf-8")
        server.wait_for_build(seen, 10)
        time.sleep(0.3)  # let the handler threads finish writing to the dead sockets
    finally:
        server.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err, err


@pytest.mark.parametrize("target", [".review-press", "posts"])
def test_an_out_folder_that_is_a_link_is_refused_and_nothing_it_points_at_is_touched(make_site: Callable[..., Path], target: str) -> None:
    root = make_site(POSTS, NEWSLETTER)
    assert cli("subscribers", "add", "ann@example.org", "--site", str(root)).returncode == 0
    before = snapshot(root / target)
    os.symlink(target, root / "out")
    result = cli("build", "--site", str(root))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "out/ is a link (to " + target + "), not a folder" in result.stderr
    after = snapshot(root / target)
    assert {name: after.get(name) for name in before} == before  # nothing it held was removed or changed
    assert "index.html" not in after  # and nothing of the site was written into it


def test_hidden_files_in_out_are_left_alone_and_stale_temporaries_go(make_site: Callable[..., Path]) -> None:
    root = make_site(POSTS, NEWSLETTER)
    (root / "out" / ".git").mkdir(parents=True)
    (root / "out" / ".git" / "HEAD").write_text("ref: refs/heads/gh-pages\n", "utf-8")
    (root / "out" / ".nojekyll").write_text("", "utf-8")
    (root / "out" / ".tmp-abc~").write_text("half", "utf-8")
    assert cli("build", "--site", str(root)).returncode == 0
    assert (root / "out" / ".git" / "HEAD").read_text("utf-8") == "ref: refs/heads/gh-pages\n"
    assert (root / "out" / ".nojekyll").exists() and not (root / "out" / ".tmp-abc~").exists()


def test_a_hard_link_to_the_signing_key_or_database_is_never_published(make_site: Callable[..., Path]) -> None:
    root = make_site(POSTS, NEWSLETTER)
    assert cli("subscribers", "add", "ann@example.org", "--site", str(root)).returncode == 0
    (root / ".review-press" / "secret").write_text("k" * 64, "utf-8")
    (root / "static").mkdir()
    os.link(root / ".review-press" / "secret", root / "static" / "key.txt")
    os.link(root / ".review-press" / "press.db", root / "static" / "db.bin")
    result = cli("build", "--site", str(root))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "static/key.txt: is a hard link to the site's private files" in result.stderr
    assert "static/db.bin: is a hard link to the site's private files" in result.stderr
    assert not (root / "out").exists()


def test_a_file_swapped_for_a_link_after_the_check_is_refused_when_read(tmp_path: Path) -> None:
    from review_press.errors import BuildError
    from review_press.sitefiles import read_inside

    site = tmp_path / "site"
    (site / "static").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET", "utf-8")
    (site / "static" / "x.txt").write_text("ok", "utf-8")
    assert read_inside(site / "static" / "x.txt", site, BuildError) == b"ok"
    (site / "static" / "x.txt").unlink()
    os.symlink(secret, site / "static" / "x.txt")  # what a race between the walk and the copy would see
    with pytest.raises(BuildError, match="links outside the site or into its private files"):
        read_inside(site / "static" / "x.txt", site, BuildError)


@pytest.mark.slow
@pytest.mark.skipif(not CAN_MOUNT, reason="needs root to mount a tmpfs")
def test_a_full_disk_in_the_middle_of_writing_out_leaves_out_as_it_was(make_site: Callable[..., Path]) -> None:
    root = make_site(POSTS, NEWSLETTER)
    with tmpfs(root / "out", "200k"):
        assert cli("build", "--site", str(root)).returncode == 0
        before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((root / "out").rglob("*")) if p.is_file()}
        folders = sorted(p for p in (root / "out").rglob("*") if p.is_dir())
        for i in range(12):
            body = f"Post {i}. " + "Words fill the disk. " * 300
            (root / "posts" / f"2026-03-{i + 1:02d}-p{i}.md").write_text(
                f"---\ntitle: P{i}\ndate: 2026-03-{i + 1:02d}\n---\n\n{body}\n", "utf-8"
            )
        result = cli("build", "--site", str(root))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "no space left on device" in result.stderr
        after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((root / "out").rglob("*")) if p.is_file()}
        assert after == before  # every file as it was, none half-written, no temporaries
        assert sorted(p for p in (root / "out").rglob("*") if p.is_dir()) == folders  # no new empty folders


def test_a_control_character_in_a_post_is_an_error_at_its_line(make_site: Callable[..., Path]) -> None:
    root = make_site(
        {
            "a.md": '---\ntitle: "a\x0bb"\ndate: 2026-01-02\n---\n\nText.\n',
            "b.md": "---\ntitle: B\ndate: 2026-01-02\n---\n\nOne\n\nTwo \x1b[31m\n",
        }
    )
    result = cli("build", "--site", str(root))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "a.md:2: the text holds a control character (U+000B)" in result.stderr
    assert "b.md:8: the text holds a control character (U+001B)" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_an_import_killed_at_random_stores_all_of_the_file_or_none_of_it(make_site: Callable[..., Path], tmp_path: Path, sig: int) -> None:
    root = make_site(POSTS, NEWSLETTER)
    assert cli("subscribers", "add", "ann@example.org", "--site", str(root)).returncode == 0
    big = tmp_path / "readers.csv"
    big.write_text(readers(20000), "utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(review_press.__file__).parents[1])}
    rng = random.Random(int(os.environ.get("KILL_SEED", time.time())))
    counts = set()
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "review_press", "subscribers", "import", str(big), "--site", str(root)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(sig)
        proc.wait()
        with open_store(load_config(root)) as store:
            counts.add(sum(store.count().values()))
    assert counts <= {1, 20001}  # the reader before, plus nothing or the whole file: never part of it
    assert cli("subscribers", "import", str(big), "--site", str(root)).returncode == 0
    with open_store(load_config(root)) as store:
        assert sum(store.count().values()) == 20001


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_build_killed_at_random_leaves_every_file_whole_and_the_next_build_finishes(make_site: Callable[..., Path], sig: int) -> None:
    posts = {
        f"2026-02-{i % 28 + 1:02d}-p{i}.md": f"---\ntitle: P{i}\ndate: 2026-02-{i % 28 + 1:02d}\n---\n\n{'Words. ' * 400}\n"
        for i in range(300)
    }
    root = make_site(posts, NEWSLETTER)
    (root / "static/docs").mkdir(parents=True)
    (root / "static/docs/a.txt").write_text("a\n")
    assert cli("build", "--site", str(root)).returncode == 0
    reference = snapshot(root / "out")
    for name in list(posts)[:150]:
        (root / "posts" / name).write_text(posts[name].replace("Words.", "Changed words."), "utf-8")
    shutil.rmtree(root / "static/docs")
    (root / "static/docs").write_text("now a file\n")  # the old out/docs/ is moved aside as the build finishes
    env = {**os.environ, "PYTHONPATH": str(Path(review_press.__file__).parents[1])}
    rng = random.Random(int(os.environ.get("KILL_SEED", time.time())))
    proc = subprocess.Popen(
        [sys.executable, "-m", "review_press", "build", "--site", str(root)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(rng.uniform(0.5, 2.5))
    proc.send_signal(sig)
    proc.wait()
    left = snapshot(root / "out")
    assert cli("build", "--site", str(root)).returncode == 0
    final = snapshot(root / "out")

    def temporary(rel: str) -> bool:  # a build's own temporaries: a file or a staging folder named .tmp-*
        return any(part.startswith(".tmp-") for part in Path(rel).parts)

    for rel, data in left.items():  # whatever the kill left: only whole files, each the old one or the new one (builds are deterministic)
        if not temporary(rel):
            assert data in (reference.get(rel), final.get(rel)), rel
    assert not any(temporary(rel) for rel in final)  # the next build removed them
    if sig == signal.SIGINT:  # Ctrl-C: the build itself puts back what it moved and removes its temporaries
        assert not any(temporary(rel) for rel in left), sorted(rel for rel in left if temporary(rel))[:3]
    assert b"Changed words." in final["posts/p0/index.html"] and final["docs"] == b"now a file\n"
    clean = root.parent / "clean"  # the same site built from nothing: out/ is exactly that, whatever the kill left to find
    shutil.copytree(root, clean, ignore=shutil.ignore_patterns("out", ".review-press"))
    assert cli("build", "--site", str(clean)).returncode == 0
    assert snapshot(clean / "out") == final
