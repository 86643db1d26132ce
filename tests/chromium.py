"""Test support: where Debian's headless Chromium is and how this machine must start it.

Without the background-networking flags Chromium keeps dialling Google's hosts, which the
closed network refuses; as root it needs --no-sandbox.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
