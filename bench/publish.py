"""Benchmark `publish`: import N subscribers, send one post to all of them through a local SMTP sink.

usage: python bench/publish.py N [--concurrency C] [--batch B] [--sink postfix|aiosmtpd] [--keep DIR]
                               [--database sqlite|auto|postgresql://...] [--workers W] [--compare]
                               [--peer] [--dkim] [--import-only]

`--database auto` starts a PostgreSQL server of its own (Debian's package, fsync on, as the
test fixture does) for the run; a URL uses yours (password from PGPASSWORD). `--workers W`
sends with W processes (`publish --workers`, PostgreSQL only). `--compare` runs the same corpus
twice in one run, SQLite with one sender and then PostgreSQL with W senders, and prints the ratio.
`--peer` also runs Postfix's own client, `smtp-source`, with C sessions and messages of the same
size into a fresh `smtp-sink`, before and after review-press (the machine drifts), and prints
review-press's rate against theirs. `--dkim` publishes the same corpus twice, without and with
DKIM (an RSA-2048 key), and prints the ratio. `--import-only` stops after the import.

Makes N subscribers with bench/make_corpus.py, imports them (timed, in a fresh
process), then publishes the sample post (posts/ of this repository) to a sink in a separate
process: Postfix's `smtp-sink` (taken from the Debian package with `apt-get download postfix`
and `dpkg -x`, never installed) or, failing that, an aiosmtpd server that only counts. The
ledger is the real one: WAL, synchronous=FULL, batches committed as `sending` before they go.
Prints import time, messages/second, peak RSS of the publish process and the sink's count.
Targets at N = 100,000: >= 1,500 messages/second, peak RSS < 200 MB, import < 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from startup import byte_compile

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS = HERE / "make_corpus.py"  # carried in the repository: runs from a fresh clone
POSTFIX_CACHE = Path(tempfile.gettempdir()) / "review-press-bench" / "postfix"
PRESS_TOML = """\
title = "Benchmark"
base_url = "https://bench.example.org/"
timezone = "Europe/London"

[newsletter]
since = 2026-01-01
from = "Bench Press <letters@bench.example.org>"
reply_to = "editor@bench.example.org"
list_id = "Bench Press <bench.example.org>"

[web]
url = "https://bench.example.org/newsletter/"

[smtp]
host = "127.0.0.1"
port = {port}
starttls = false
concurrency = {concurrency}
max_attempts = 3
{dkim}"""
DKIM = 'dkim_key_file = "dkim.pem"\ndkim_selector = "bench"\ndkim_domain = "bench.example.org"\n'


IMPORT = """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from review_press.config import load_config
from review_press.importers import import_csv
from review_press.store import open_store
with open_store(load_config(Path(sys.argv[1]))) as store:
    report = import_csv(store, Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - t0, "added": report.added, "problems": len(report.problems),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PUBLISH = """
import json, resource, sys, time
from pathlib import Path
from review_press.publish import PublishOptions, publish
marks = {}
def progress(p):
    marks.setdefault("first", time.perf_counter())
    marks["last"] = time.perf_counter()
t0 = time.perf_counter()
report = publish(Path(sys.argv[1]), PublishOptions(batch_size=int(sys.argv[2]), workers=int(sys.argv[3])), progress=progress)
elapsed = time.perf_counter() - t0
post = report.posts[0]
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": elapsed, "send_seconds": marks["last"] - marks["first"] if marks else elapsed, "sent": post.sent,
                  "failed": post.failed, "rss_mb": me.ru_maxrss / 1024, "child_rss_mb": kids.ru_maxrss / 1024,
                  "cpu_seconds": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime}))
"""

COUNTING_SINK = """
import signal, sys, threading
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 2.0.0 Ok"
c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
done.wait()
c.stop()
print(f"mesg={Count.n}", flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smtp_sink() -> Path | None:
    """Postfix's smtp-sink, extracted from the Debian package on first use; None if unavailable."""
    binary = POSTFIX_CACHE / "usr" / "sbin" / "smtp-sink"
    if binary.exists():
        return binary
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        return None
    POSTFIX_CACHE.mkdir(parents=True, exist_ok=True)
    download = POSTFIX_CACHE.parent
    got = subprocess.run(["apt-get", "download", "postfix"], cwd=download, capture_output=True)
    debs = sorted(download.glob("postfix_*.deb"))
    if got.returncode != 0 and not debs:
        return None
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(POSTFIX_CACHE)], check=True)
    return binary if binary.exists() else None


def start_sink(kind: str, port: int, log: Path) -> subprocess.Popen[str]:
    """A sink in its own process, listening on 127.0.0.1:port; its counters go to `log` (a pipe
    nobody reads would fill up and stall the sink)."""
    out = log.open("w")
    binary = smtp_sink() if kind == "postfix" else None
    if binary is not None:
        env = {**os.environ, "LD_LIBRARY_PATH": str(POSTFIX_CACHE / "usr" / "lib" / "postfix")}
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        proc = subprocess.Popen([str(binary), "-c", *user, f"127.0.0.1:{port}", "256"], stdout=out, text=True, env=env)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return proc
            time.sleep(0.05)
        raise SystemExit("smtp-sink did not start")
    proc = subprocess.Popen([sys.executable, "-c", COUNTING_SINK, str(port)], stdout=out, text=True)
    for _ in range(200):
        if "ready" in log.read_text():
            return proc
        time.sleep(0.05)
    raise SystemExit("the aiosmtpd sink did not start")


def stop_sink(proc: subprocess.Popen[str], log: Path) -> int:
    """Stop the sink and return how many messages it accepted."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    counts = re.findall(r"mesg=(\d+)", log.read_text(errors="replace"))
    return int(counts[-1]) if counts else -1


def child(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def database(kind: str) -> Iterator[dict[str, str]]:
    """The environment that points review-press at the store: {} for SQLite; for `auto`, a
    PostgreSQL server started for this run (fsync on) and a fresh database in it."""
    if kind == "sqlite":
        yield {}
        return
    if kind.startswith("postgresql://"):
        yield {"REVIEW_PRESS_DATABASE_URL": kind}
        return
    sys.path.insert(0, str(REPO / "tests"))
    import pg_server

    with pg_server.running_server(fsync=True) as server, server.fresh_database() as url:
        yield {"REVIEW_PRESS_DATABASE_URL": url, "PGPASSWORD": pg_server.PASSWORD}


@dataclass(frozen=True)
class Run:
    label: str
    imported: dict[str, float]
    sent: dict[str, float]
    received: int
    cpu: dict[str, float]  # CPU seconds during the publish: the machine's, the sink's, the database server's


def cpu_snapshot(sink_pid: int) -> dict[str, float]:
    """CPU seconds used so far: by the whole machine (busy time), the sink, PostgreSQL's processes."""
    import psutil

    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
    sink = sum(psutil.Process(sink_pid).cpu_times()[:2])
    pg = 0.0  # the server and its backends, and (in the server's children times) the backends that have exited
    for proc in psutil.process_iter(["name", "cpu_times"]):
        if proc.info["name"] == "postgres" and proc.info["cpu_times"]:
            pg += sum(proc.info["cpu_times"][:4])
    return {"machine": busy, "sink": sink, "postgres": pg}


def write_key(path: Path) -> None:
    """A fresh RSA-2048 DKIM key (PEM) at `path`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def run_once(args: argparse.Namespace, db: str, workers: int, dkim: bool = False) -> Run:
    """Make a site, import the corpus into the store `db`, publish it into a fresh sink."""
    root = (args.keep / db.split(":")[0]) if args.keep else Path(tempfile.mkdtemp(prefix="review-press-publish-"))
    port = free_port()
    (root / "posts").mkdir(parents=True, exist_ok=True)
    for post in (REPO / "posts").glob("*.md"):
        shutil.copy(post, root / "posts" / post.name)
    (root / "press.toml").write_text(PRESS_TOML.format(port=port, concurrency=args.concurrency, dkim=DKIM if dkim else ""), "utf-8")
    if dkim:
        write_key(root / "dkim.pem")
    csv_path = root / "subscribers.csv"
    subprocess.run([sys.executable, str(CORPUS), "subscribers", str(args.n), str(csv_path)], check=True)
    with database(db) as env:
        imported = child(IMPORT, str(root), str(csv_path), env=env)
        if args.import_only:
            return Run("import only", imported, {}, 0, {})
        log = root / "sink.log"
        sink = start_sink(args.sink, port, log)
        try:
            before = cpu_snapshot(sink.pid)
            sent = child(PUBLISH, str(root), str(args.batch), str(workers), env=env)
            after = cpu_snapshot(sink.pid)
        finally:
            count = stop_sink(sink, log)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    label = f"{'SQLite' if db == 'sqlite' else 'PostgreSQL'}, {workers} sender{'s' if workers > 1 else ''}"
    label += ", DKIM on" if dkim else ""
    return Run(label, imported, sent, count, {k: after[k] - before[k] for k in after})


def message_size() -> int:
    """The bytes of one newsletter message of the sample post, as publish sends it."""
    code = (
        "import sys, datetime as dt; from pathlib import Path; from review_press.publish import load_site;"
        " from review_press.edition import make_edition; from review_press.delivery.message import build_message;"
        " c, posts, theme = load_site(Path(sys.argv[1]), dt.datetime.now(dt.UTC)); post = max(posts, key=lambda p: p.date);"
        " e = make_edition(post, c, theme);"
        " print(len(build_message(e, to_name='Reader 1', to_address='reader1@example.com', from_name='Bench Press',"
        " from_address='letters@bench.example.org', reply_to='', list_id='', unsubscribe_url='https://bench.example.org/u?t=' + 'x' * 32,"
        " unsubscribe_mailto='', message_id='<first.1.abcdef012345@bench.example.org>', date=dt.datetime.now(dt.UTC))))"
    )
    root = Path(tempfile.mkdtemp(prefix="review-press-size-"))
    try:
        (root / "posts").mkdir()
        for post in (REPO / "posts").glob("*.md"):
            shutil.copy(post, root / "posts" / post.name)
        (root / "press.toml").write_text(PRESS_TOML.format(port=25, concurrency=1, dkim=""), "utf-8")
        out = subprocess.run(
            [sys.executable, "-c", code, str(root)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")}
        )
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        return int(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def smtp_source_rate(n: int, sessions: int, size: int) -> tuple[float, int]:
    """Postfix's smtp-source sending `n` messages of `size` bytes over `sessions` sessions into a
    fresh smtp-sink: (messages/second, messages the sink received)."""
    binary = smtp_sink()
    if binary is None:
        raise SystemExit("--peer needs Postfix's smtp-source (apt-get download postfix)")
    source = binary.with_name("smtp-source")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="review-press-peer-")) / "sink.log"
    sink = start_sink("postfix", port, log)
    env = {**os.environ, "LD_LIBRARY_PATH": str(POSTFIX_CACHE / "usr" / "lib" / "postfix")}
    try:
        t0 = time.perf_counter()
        subprocess.run(
            [
                str(source),
                "-c",
                "-s",
                str(sessions),
                "-m",
                str(n),
                "-l",
                str(size),
                "-f",
                "letters@bench.example.org",
                "-t",
                "reader@example.com",
                f"127.0.0.1:{port}",
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        seconds = time.perf_counter() - t0
    finally:
        count = stop_sink(sink, log)
    return n / seconds, count


def show(args: argparse.Namespace, run: Run) -> None:
    imported, sent = run.imported, run.sent
    sink_name = "postfix smtp-sink" if args.sink == "postfix" and smtp_sink() else "aiosmtpd counting sink"
    print(f"== {run.label}")
    print(f"subscribers:        {args.n:,} ({imported['added']:,} imported, {int(imported['problems'])} bad rows)")
    print(f"import:             {imported['seconds']:.2f} s  (peak RSS {imported['rss_mb']:.0f} MB)")
    print(
        f"publish:            {sent['sent']:,} sent, {sent['failed']:,} failed in {sent['seconds']:.2f} s (sending {sent['send_seconds']:.2f} s)"
    )
    print(f"messages/second:    {sent['sent'] / sent['send_seconds']:,.0f} while sending, {sent['sent'] / sent['seconds']:,.0f} overall")
    print(
        f"peak RSS (publish): {sent['rss_mb']:.0f} MB"
        + (f"; largest sender process {sent['child_rss_mb']:.0f} MB" if sent["child_rss_mb"] else "")
    )
    print(f"sink ({sink_name}, {args.concurrency} connections per sender, batch {args.batch}): {run.received:,} messages received")
    cores, wall = os.cpu_count() or 1, sent["seconds"]
    print(
        f"CPU during publish:  machine busy {run.cpu['machine'] / (wall * cores):.0%} of {cores} cores;"
        f" review-press {sent['cpu_seconds']:.1f} s, sink {run.cpu['sink']:.1f} s, PostgreSQL {run.cpu['postgres']:.1f} s"
        f" ({sent['cpu_seconds'] * 1000 / max(sent['sent'], 1):.2f} ms of review-press CPU per message)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--sink", choices=("postfix", "aiosmtpd"), default="postfix")
    parser.add_argument("--keep", type=Path, help="build the sites here and keep them")
    parser.add_argument("--database", default="sqlite", help="sqlite (default), auto (a PostgreSQL server for this run), or a URL")
    parser.add_argument("--workers", type=int, default=1, help="sending processes (PostgreSQL only)")
    parser.add_argument("--compare", action="store_true", help="SQLite with 1 sender, then PostgreSQL with --workers, same corpus")
    parser.add_argument("--peer", action="store_true", help="also time Postfix's smtp-source with --concurrency sessions")
    parser.add_argument("--dkim", action="store_true", help="publish without and with DKIM signing, same corpus")
    parser.add_argument("--import-only", action="store_true", help="import the corpus, print the figures, stop")
    args = parser.parse_args()
    print(byte_compile())
    if args.import_only:
        run = run_once(args, args.database, 1)
        print(
            f"import of {args.n:,} rows: {run.imported['seconds']:.2f} s, {run.imported['added']:,} added,"
            f" {int(run.imported['problems'])} bad rows, peak RSS {run.imported['rss_mb']:.0f} MB"
        )
        return
    if args.peer:
        size, sessions = message_size(), args.concurrency * args.workers
        print(f"== Postfix smtp-source, {sessions} sessions, {args.n:,} messages of {size:,} bytes")
        before, got = smtp_source_rate(args.n, sessions, size)
        print(f"messages/second:    {before:,.0f} ({got:,} received)")
        ours = run_once(args, args.database, args.workers)
        show(args, ours)
        after, got = smtp_source_rate(args.n, sessions, size)
        print(f"== Postfix smtp-source again: {after:,.0f} messages/second ({got:,} received)")
        rate = ours.sent["sent"] / ours.sent["send_seconds"]
        print(f"== ratio: review-press / smtp-source = {rate / max(before, after):.2f}x (against the faster of its two runs)")
        return
    if args.dkim:
        off = run_once(args, args.database, args.workers)
        show(args, off)
        on = run_once(args, args.database, args.workers, dkim=True)
        show(args, on)
        rate = lambda r: r.sent["sent"] / r.sent["send_seconds"]  # noqa: E731
        print(f"== ratio: DKIM on / DKIM off = {rate(on) / rate(off):.2f}x messages/second")
        return
    if args.compare:
        base = run_once(args, "sqlite", 1)
        show(args, base)
        scaled = run_once(args, args.database if args.database != "sqlite" else "auto", args.workers)
        show(args, scaled)
        rate = lambda r: r.sent["sent"] / r.sent["send_seconds"]  # noqa: E731
        print(f"== ratio: {scaled.label} / {base.label} = {rate(scaled) / rate(base):.2f}x messages/second")
        return
    show(args, run_once(args, args.database, args.workers))


if __name__ == "__main__":
    main()
