"""What the benchmarks do before timing anything: the package byte-compiled, as an install is.

`pip install` writes each module's `.pyc` at install time, and a `python` that imports a module
writes it on first use; a machine (or a CI image) that sets PYTHONDONTWRITEBYTECODE does
neither, and every timed process then compiles the package from source again (a tenth of a
second, most of it in a nothing-changed build's start-up). The benchmarks measure the tool as a
user runs it, so they compile it once first and say so.
"""

from __future__ import annotations

import compileall
import os
from pathlib import Path


def byte_compile() -> str:
    """Write the `.pyc` files of review_press (if missing or stale); a line saying what was done."""
    import review_press

    package = Path(review_press.__file__).parent
    compileall.compile_dir(package, quiet=1)
    setting = os.environ.get("PYTHONDONTWRITEBYTECODE")
    return f"(review_press byte-compiled first, as an install is{'; PYTHONDONTWRITEBYTECODE is set here' if setting else ''})"
