"""Benchmark the web endpoints: requests/second and latency of one-click unsubscribe and confirm.

    python bench/web.py [--subscribers 10000] [--requests 5000] [--concurrency 16] [--workers 1] [--plain]

Makes a throwaway site whose database holds N subscribers (half active with a campaign's
ledger rows, half pending), starts `uvicorn review_press.web:app` in a subprocess on
127.0.0.1, then fires REQUESTS distinct `POST /unsubscribe/<token>` (RFC 8058 body) and
REQUESTS distinct `GET /confirm/<token>` from CONCURRENCY httpx clients, each request a real
write committed to SQLite (WAL, synchronous=FULL). Prints throughput and latency percentiles.
Target (issue 5): over 1,000 requests/second with p99 under 50 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn

from review_press.config import load_config
from review_press.store import SQLiteStore, db_path, ledger, now_iso
from review_press.tokens import make_token
from review_press.web.confirm import confirm_key, make_confirm_token

TOML = """\
title = "Bench Site"
base_url = "https://example.org/"
timezone = "UTC"

[newsletter]
since = 2026-01-01
from = "Bench <letters@example.org>"

[web]
url = "http://127.0.0.1:{port}/"
"""


@dataclass(frozen=True)
class Result:
    """One endpoint's run: how long, the latencies (s), the failures, and CPU seconds each side used."""

    name: str
    seconds: float
    latencies: tuple[float, ...]
    failures: int
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    def report(self) -> str:
        lat = sorted(self.latencies)
        pct = {p: lat[min(len(lat) - 1, int(len(lat) * p / 100))] * 1000 for p in (50, 90, 99)}
        return (
            f"{self.name:<28} {len(lat):>6} req in {self.seconds:6.2f} s = {len(lat) / self.seconds:8.0f} req/s   "
            f"p50 {pct[50]:6.1f} ms  p90 {pct[90]:6.1f} ms  p99 {pct[99]:6.1f} ms  max {lat[-1] * 1000:6.1f} ms  "
            f"mean {statistics.fmean(lat) * 1000:5.1f} ms  failures {self.failures}\n"
            f"{'':<28} CPU per request: server {self.server_cpu / len(lat) * 1e6:5.0f} us "
            f"(= {len(lat) / self.server_cpu if self.server_cpu else 0:5.0f} req/s per server core), "
            f"httpx client {self.client_cpu / len(lat) * 1e6:5.0f} us"
        )


def http_impl() -> str:
    """Which HTTP parser and event loop uvicorn picks here (httptools and uvloop when installed)."""
    parts = []
    for module, fast, slow in (("httptools", "httptools", "h11"), ("uvloop", "uvloop", "asyncio loop")):
        try:
            __import__(module)
            parts.append(fast)
        except ImportError:
            parts.append(slow)
    return " + ".join(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_site(root: Path, port: int, subscribers: int, secret: bytes) -> tuple[list[str], list[str]]:
    """A site with `subscribers` rows and a campaign; returns (unsubscribe tokens, confirm tokens)."""
    (root / "posts").mkdir(parents=True)
    (root / "press.toml").write_text(TOML.format(port=port), "utf-8")
    config = load_config(root)
    half = subscribers // 2
    stamp = now_iso()
    with SQLiteStore.open(db_path(config)) as store:
        with store.transaction() as conn:
            conn.executemany(
                "INSERT INTO subscribers (address, envelope, address_key, name, status, consent_source, created_at, updated_at)"
                " VALUES (?, ?, ?, '', ?, 'bench', ?, ?)",
                ((f"reader{i}@example.org",) * 3 + ("active" if i < half else "pending", stamp, stamp) for i in range(subscribers)),
            )
        ledger.fill(store, "2026-01-02-earlier-post", late_joiners=True)
        store.conn.execute("UPDATE deliveries SET status = 'sent'")
        ledger.fill(store, "2026-02-01-this-post", late_joiners=True)  # pending rows the unsubscribes must cancel
        rows = store.conn.execute("SELECT id, address, status FROM subscribers ORDER BY id").fetchall()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
    key = confirm_key(secret)
    unsub = [make_token(secret, i) for i, _, status in rows if status == "active"]
    conf = [make_confirm_token(key, i, address, expires) for i, address, status in rows if status == "pending"]
    return unsub, conf


def start_server(root: Path, port: int, secret: bytes, workers: int, plain: bool) -> subprocess.Popen[bytes]:
    """uvicorn on the site, in a subprocess; returns once /healthz answers (bounded wait)."""
    env = {**os.environ, "REVIEW_PRESS_SITE": str(root), "REVIEW_PRESS_SECRET": secret.decode()}
    cmd = [sys.executable, "-m", "uvicorn", "review_press.web:app", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--no-access-log", "--log-level", "warning", "--workers", str(workers)]
    if plain:
        cmd += ["--http", "h11", "--loop", "asyncio"]
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` and its children (uvicorn workers)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in (proc, *proc.children(recursive=True)):
        t = p.cpu_times()
        total += t.user + t.system
    return total


def run_async(coro: Coroutine[Any, Any, Result]) -> Result:
    """Run the client on uvloop when installed (it halves the client's own overhead), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def measured(name: str, pid: int, run: Callable[[], Result]) -> Result:
    """Run one load phase and add the CPU time the server and this client spent on it."""
    server0, client0 = cpu_seconds(pid), time.process_time()
    result = run()
    return replace(result, name=name, server_cpu=cpu_seconds(pid) - server0, client_cpu=time.process_time() - client0)


async def hammer(name: str, base: str, method: str, paths: Sequence[str], concurrency: int, body: bytes = b"") -> Result:
    """Send every path once from `concurrency` keep-alive clients; time each request."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in paths:
        queue.put_nowait(p)
    latencies: list[float] = []
    failures = 0
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}

    async def worker() -> None:
        nonlocal failures
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while not queue.empty():
                path = queue.get_nowait()
                t0 = time.perf_counter()
                r = await client.request(method, path, content=body or None, headers=headers)
                latencies.append(time.perf_counter() - t0)
                failures += r.status_code != 200

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, time.perf_counter() - t0, tuple(latencies), failures)


def verify(root: Path, unsubscribed: int, confirmed: int) -> str:
    """Count what the database says happened, as a check on the figures."""
    with SQLiteStore.open(db_path(load_config(root))) as store:
        counts = store.count()
        skipped = store.conn.execute("SELECT count(*) FROM deliveries WHERE status = 'skipped'").fetchone()[0]
    ok = counts["unsubscribed"] == unsubscribed and counts["active"] >= confirmed and skipped == unsubscribed
    return f"database: {counts}, ledger rows skipped: {skipped} -> {'consistent' if ok else 'MISMATCH'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="make uvicorn use h11 and asyncio even if httptools and uvloop are installed")
    args = parser.parse_args()
    if args.requests > args.subscribers // 2:
        raise SystemExit("--requests must be at most half of --subscribers (each request touches a distinct subscriber)")
    secret = secrets.token_hex(32).encode()
    with tempfile.TemporaryDirectory(prefix="review-press-bench-") as tmp:
        root, port = Path(tmp) / "site", free_port()
        t0 = time.perf_counter()
        unsub, conf = make_site(root, port, args.subscribers, secret)
        print(f"site with {args.subscribers} subscribers and 2 campaigns made in {time.perf_counter() - t0:.1f} s")
        proc = start_server(root, port, secret, args.workers, args.plain)
        try:
            base = f"http://127.0.0.1:{port}/"
            print(
                f"uvicorn {uvicorn.__version__} ({'h11 + asyncio loop' if args.plain else http_impl()}), {args.workers} worker(s), {os.cpu_count()} CPUs, "
                f"load average {os.getloadavg()[0]:.2f}; {args.concurrency} concurrent httpx clients"
            )
            pid, c = proc.pid, args.concurrency
            print(measured("warm-up GET /healthz", pid, lambda: run_async(hammer("", base, "GET", ["healthz"] * 1000, c))).report())
            paths = [f"unsubscribe/{t}" for t in unsub[: args.requests]]
            one_click = b"List-Unsubscribe=One-Click"
            print(measured("POST /unsubscribe/<token>", pid, lambda: run_async(hammer("", base, "POST", paths, c, one_click))).report())
            paths2 = [f"confirm/{t}" for t in conf[: args.requests]]
            print(measured("GET /confirm/<token>", pid, lambda: run_async(hammer("", base, "GET", paths2, c))).report())
        finally:
            proc.terminate()
            proc.wait(10)
        print(verify(root, args.requests, args.requests))


if __name__ == "__main__":
    main()
