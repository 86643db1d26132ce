"""Benchmark the site build: cold, nothing changed, one post edited.

usage: python bench/build.py N [--keep DIR] [--hugo PATH] [--rounds R] [--text-only]

Makes N posts with bench/make_corpus.py (same N, same bytes), writes a press.toml,
then times three builds in fresh processes (so each one pays its own start-up and loads its
caches from disk, as a user's run does) and prints posts/second and peak RSS for each.
Targets for N = 5,000 on the 2-core machine: cold < 10 s, nothing changed < 1 s,
one edited post < 2 s, peak RSS < 500 MB.

When a `hugo` binary is on PATH (or given with --hugo), the same posts (make_corpus.py's hugo
flavour: the same text and front matter) are also built by Hugo with a small theme that makes the
same kinds of pages (each post, the paginated index, a page per tag, RSS for the site and each
tag, the sitemap), cold (`--gc` into an empty folder, no cache), and the two cold builds are
interleaved over R rounds (the machine drifts): the best and median walls of each, and their ratio.
Both resize the stills (ours with Pillow, Hugo's with its image processing); `--text-only` takes
the images out of the posts for a comparison of Markdown, templates and feeds alone.
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

from startup import byte_compile

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
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest forked parser or renderer
print(json.dumps({"seconds": elapsed, "rss_mb": rss, "workers_mb": workers, "posts": len(plan.site.posts), "files": len(plan.artifacts),
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


HUGO_CONFIG = """\
baseURL = "https://bench.example.org/"
title = "Benchmark"
languageCode = "en"
paginate = 10
disableKinds = ["section"]
[taxonomies]
tag = "tags"
[markup.highlight]
noClasses = false
[markup.goldmark.renderer]
unsafe = true
"""
HUGO_LAYOUTS = {
    "_default/baseof.html": '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ .Title }}</title>'
    '<link rel="alternate" type="application/rss+xml" href="{{ "index.xml" | absURL }}"></head>'
    '<body><header><a href="{{ .Site.BaseURL }}">{{ .Site.Title }}</a></header><main>{{ block "main" . }}{{ end }}</main></body></html>',
    "_default/single.html": '{{ define "main" }}<article><h1>{{ .Title }}</h1><time>{{ .Date.Format "2006-01-02" }}</time>'
    '{{ .Content }}<ul>{{ range .Params.tags }}<li><a href="{{ "tags/" | absURL }}{{ . | urlize }}/">{{ . }}</a></li>{{ end }}</ul>'
    "</article>{{ end }}",
    "_default/list.html": '{{ define "main" }}<h1>{{ .Title }}</h1>{{ range .Paginator.Pages }}<article><h2>'
    '<a href="{{ .Permalink }}">{{ .Title }}</a></h2><p>{{ .Summary }}</p></article>{{ end }}'
    '{{ with .Paginator.Next }}<a href="{{ .URL }}">older</a>{{ end }}{{ end }}',
    "_default/terms.html": '{{ define "main" }}<ul>{{ range .Data.Terms.Alphabetical }}<li><a href="{{ .Page.Permalink }}">'
    "{{ .Page.Title }}</a> {{ .Count }}</li>{{ end }}</ul>{{ end }}",
    # the stills as our build treats them: resized to 480 and 960 px wide, offered in a srcset
    "_default/_markup/render-image.html": '{{ $img := resources.Get (strings.TrimPrefix "/" .Destination) }}{{ with $img }}'
    '{{ $a := .Resize "480x" }}{{ $b := .Resize "960x" }}<img src="{{ $b.RelPermalink }}" srcset="{{ $a.RelPermalink }} 480w, '
    '{{ $b.RelPermalink }} 960w" width="{{ $b.Width }}" height="{{ $b.Height }}" alt="{{ $.Text }}" loading="lazy">'
    '{{ else }}<img src="{{ .Destination | safeURL }}" alt="{{ .Text }}">{{ end }}',
    "index.html": '{{ define "main" }}{{ range (.Paginate (where .Site.RegularPages "Type" "posts")).Pages }}<article><h2>'
    '<a href="{{ .Permalink }}">{{ .Title }}</a></h2><p>{{ .Summary }}</p></article>{{ end }}{{ end }}',
}


def drop_images(posts: Path) -> None:
    """Take the image lines out of every post (for --text-only)."""
    for post in posts.glob("*.md"):
        text = post.read_text("utf-8")
        post.write_text("\n".join(line for line in text.split("\n") if not line.startswith("![")), "utf-8")


def hugo_site(root: Path, n: int, stills: Path | None) -> Path:
    """The same corpus as a Hugo site (content/posts, the theme above, the same stills as assets)."""
    if stills is not None:
        shutil.copytree(stills, root / "assets" / "images")
    subprocess.run([sys.executable, str(CORPUS), "posts", str(n), str(root / "content" / "posts"), "--flavor", "hugo"], check=True)
    if stills is None:
        drop_images(root / "content" / "posts")
    (root / "hugo.toml").write_text(HUGO_CONFIG, "utf-8")
    for name, text in HUGO_LAYOUTS.items():
        (root / "layouts" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "layouts" / name).write_text(text, "utf-8")
    return root


def run_hugo(hugo: str, site: Path) -> dict:
    """One cold Hugo build into an empty public/ (no resource cache), timed like ours."""
    shutil.rmtree(site / "public", ignore_errors=True)
    shutil.rmtree(site / "resources", ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run([hugo, "--quiet", "--gc", "--source", str(site), "--cacheDir", str(site / ".hugo-cache")], check=True)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    files = sum(1 for p in (site / "public").rglob("*") if p.is_file())
    return {"wall": wall, "cpu": cpu, "files": files, "rss_mb": after.ru_maxrss / 1024}


def line(name: str, f: dict) -> str:
    return (
        f"{name:<16} {f['wall']:7.2f} s wall ({f['seconds']:6.2f} s in build)  {f['posts'] / f['wall']:9.0f} posts/s  "
        f"peak RSS {f['rss_mb']:6.0f} MB (largest worker {f['workers_mb']:4.0f} MB)  rendered {f['rendered']:>6}  written {f['written']:>6} of {f['files']} files"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int)
    parser.add_argument("--keep", type=Path, help="build in DIR and keep it")
    parser.add_argument("--hugo", help="the hugo binary to compare with (default: hugo on PATH, if any)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved cold builds of each, for the comparison")
    parser.add_argument("--text-only", action="store_true", help="no images in the posts (no resizing on either side)")
    args = parser.parse_args()
    site = args.keep or Path(tempfile.mkdtemp(prefix="press-bench-"))
    if site.exists():
        shutil.rmtree(site)
    subprocess.run([sys.executable, str(CORPUS), "posts", str(args.n), str(site / "posts")], check=True)
    (site / "press.toml").write_text(PRESS_TOML, "utf-8")
    if args.text_only:
        drop_images(site / "posts")
    else:
        write_stills(site, args.n)
    print(f"review-press build benchmark: {args.n} posts, Python {sys.version.split()[0]}")
    print(byte_compile())
    cold = run_build(site)
    print(line("cold", cold))
    print(line("nothing changed", run_build(site)))
    edited = site / "posts" / f"post-{args.n // 2}.md"
    edited.write_text(edited.read_text("utf-8") + "\nAn added closing paragraph.\n", "utf-8")
    print(line("one post edited", run_build(site)))
    print(f"(peak RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    hugo = args.hugo or shutil.which("hugo")
    if hugo:
        compare_with_hugo(hugo, site, args.n, args.rounds)
    else:
        print("(no hugo on PATH: no comparison; give one with --hugo PATH)")
    if not args.keep:
        shutil.rmtree(site)


def cold_build(site: Path) -> dict:
    """A cold build of our site: no out/, no cache."""
    shutil.rmtree(site / "out", ignore_errors=True)
    shutil.rmtree(site / ".review-press", ignore_errors=True)
    return run_build(site)


def compare_with_hugo(hugo: str, site: Path, n: int, rounds: int) -> None:
    """Cold builds of the same posts by review-press and by Hugo, interleaved; walls and ratio."""
    import statistics

    version = subprocess.run([hugo, "version"], capture_output=True, text=True).stdout.split()[1]
    stills = site / "static" / "images"
    peer = hugo_site(site.parent / (site.name + "-hugo"), n, stills if stills.exists() else None)
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(cold_build(site))
        theirs.append(run_hugo(hugo, peer))
    best = lambda runs: min(r["wall"] for r in runs)  # noqa: E731
    median = lambda runs: statistics.median(r["wall"] for r in runs)  # noqa: E731
    print(f"== cold build vs Hugo {version}, {n} posts, {rounds} interleaved rounds")
    print(
        f"review-press     best {best(ours):6.2f} s  median {median(ours):6.2f} s  files {ours[0]['files']}  peak RSS {max(r['rss_mb'] for r in ours):.0f} MB"
    )
    print(
        f"hugo             best {best(theirs):6.2f} s  median {median(theirs):6.2f} s  files {theirs[0]['files']}  CPU {statistics.median(r['cpu'] for r in theirs):.2f} s"
    )
    print(f"== ratio: review-press / hugo = {best(ours) / best(theirs):.2f}x (best walls), {median(ours) / median(theirs):.2f}x (medians)")
    shutil.rmtree(peer, ignore_errors=True)


if __name__ == "__main__":
    main()
