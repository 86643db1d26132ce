"""Test support: wait, boundedly, for something another thread or process does."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_for(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll `check` every `interval` seconds until true or `timeout` seconds pass (a bounded
    loop); after the deadline `check` gets one last try, whose answer is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 30) -> None:
    """End a server process: SIGTERM, then SIGKILL if it has not gone within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
