"""Benchmark the site build: cold, nothing changed, one post edited.

usage: python bench/build.py N [--keep DIR]

Makes N posts with bench/make_corpus.py (same N, same bytes), writes a press.toml,
then times three builds in fresh processes (so each one pays its own start-up and loads its
caches from disk, as a user's run does) and prints posts/second and peak RSS for each.
Targets for N = 5,000 on the 2-core machine: cold < 10 s, nothing changed < 1 s,
one edited post < 2 s, peak RSS < 500 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "make_corpus.py"  # carried in the repository: runs from a fresh clone
PRESS_TOML = """\
title = "Benchmark"
description = "A generated corpus."
base_url = "https://bench.example.org/"
timezone = "Europe/London"
posts_per_page = 10
feed_length = 20

[author]
name = "Bench Mark"
email = "bench@example.org"
"""

# Runs in a child process: one build, then its own figures as JSON on the last line.
CHILD = """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from review_press.build import build, BuildOptions
plan, report = build(Path(sys.argv[1]), BuildOptions())
elapsed = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "rss_mb": rss, "posts": len(plan.site.posts), "files": len(plan.artifacts),
                  "rendered": report.rendered, "written": len(report.written)}))
"""


def run_build(site: Path) -> dict:
    wall = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(site)], check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["wall"] = time.perf_counter() - wall
    return figures


def write_stills(site: Path, n: int) -> None:
    """The images the corpus's odd posts show from the site (`/images/<i>.jpg`): a build checks
    they are in static/ and reads each one's size. 1200 x 675 JPEGs, a different one each, so the
    cold build also makes two resized copies of each (480 and 960 px), as for a real still."""
    from PIL import Image

    (site / "static" / "images").mkdir(parents=True)
    for i in range(1, n, 2):
        still = Image.linear_gradient("L").resize((1200, 675)).convert("RGB")
        still.paste((i * 37 % 256, i * 91 % 256, i * 53 % 256), (100, 100, 500, 400))
        still.save(site / "static" / "images" / f"{i}.jpg", quality=85)


def line(name: str, f: dict) -> str:
    return (
        f"{name:<16} {f['wall']:7.2f} s wall ({f['seconds']:6.2f} s in build)  {f['posts'] / f['wall']:9.0f} posts/s  "
        f"peak RSS {f['rss_mb']:6.0f} MB  rendered {f['rendered']:>6}  written {f['written']:>6} of {f['files']} files"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int)
    parser.add_argument("--keep", type=Path, help="build in DIR and keep it")
    args = parser.parse_args()
    site = args.keep or Path(tempfile.mkdtemp(prefix="press-bench-"))
    if site.exists():
        shutil.rmtree(site)
    subprocess.run([sys.executable, str(CORPUS), "posts", str(args.n), str(site / "posts")], check=True)
    (site / "press.toml").write_text(PRESS_TOML, "utf-8")
    write_stills(site, args.n)
    print(f"review-press build benchmark: {args.n} posts, Python {sys.version.split()[0]}")
    cold = run_build(site)
    print(line("cold", cold))
    print(line("nothing changed", run_build(site)))
    edited = site / "posts" / f"post-{args.n // 2}.md"
    edited.write_text(edited.read_text("utf-8") + "\nAn added closing paragraph.\n", "utf-8")
    print(line("one post edited", run_build(site)))
    print(f"(peak RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    if not args.keep:
        shutil.rmtree(site)


if __name__ == "__main__":
    main()
