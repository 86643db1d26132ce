"""Benchmark the email edition: full editions per post, and personalisation per recipient.

usage: python bench/edition.py [N] [--keep DIR] [--recipients R]

Makes N posts (default 5,000) with bench/make_corpus.py (same N, same bytes) and a
press.toml whose `[newsletter] since` is far in the past, then prints
- the median (and p90) milliseconds per post for the full edition: email HTML (template +
  premailer), plain text and the email lint (target < 30 ms);
- the median microseconds per recipient for `Edition.personalize` over R recipients
  (default 100,000; target < 20 µs), and for the whole MIME message (`build_message`);
- the bytes of the email HTML of one long post of 1,000, 3,000, 6,000 and 12,000 words (corpus
  bodies one after another), the share of those bytes in inline `style=""` attributes, and
  whether the post was cut (target: 6,000 words whole, under Gmail's 102 KB; longer ones cut
  at a paragraph, still under 102 KB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import io
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from review_press.config import load_config  # noqa: E402
from review_press.content import load_posts  # noqa: E402
from review_press.delivery.message import build_message  # noqa: E402
from review_press.edition import lint, make_edition  # noqa: E402
from review_press.site import make_site  # noqa: E402
from review_press.theme import Theme  # noqa: E402

CORPUS = HERE / "make_corpus.py"  # carried in the repository: runs from a fresh clone
PRESS_TOML = """\
title = "Benchmark"
description = "A generated corpus."
base_url = "https://bench.example.org/"
timezone = "Europe/London"

[author]
name = "Bench Mark"
email = "bench@example.org"

[newsletter]
since = 2000-01-01
from = "Bench Letters <letters@bench.example.org>"
reply_to = "bench@example.org"
postal_address = "Bench Press, 1 Example Street, Testville"
list_id = "Bench <bench.example.org>"
unsubscribe_mailto = "unsubscribe@bench.example.org"

[web]
url = "https://bench.example.org/newsletter/"
"""


def make_corpus(root: Path, n: int) -> None:
    """N posts under root/posts (reused when already there), the images the odd ones show from
    static/images/ (a build checks that they exist), and the press.toml above."""
    posts = root / "posts"
    if not (posts.is_dir() and len(list(posts.glob("*.md"))) == n):
        shutil.rmtree(posts, ignore_errors=True)
        subprocess.run([sys.executable, str(CORPUS), "posts", str(n), str(posts)], check=True)
    images = root / "static" / "images"
    images.mkdir(parents=True, exist_ok=True)
    still = io.BytesIO()
    Image.new("RGB", (1200, 675), (90, 80, 70)).save(still, "JPEG", quality=60)
    for i in range(1, n, 2):
        if not (images / f"{i}.jpg").is_file():
            (images / f"{i}.jpg").write_bytes(still.getvalue())
    (root / "press.toml").write_text(PRESS_TOML, "utf-8")


SIZES = (1000, 3000, 6000, 12000)
GMAIL_CLIP = 102 * 1024
_STYLE_ATTR = re.compile(r"""\sstyle=("[^"]*"|'[^']*')""")


def long_body(words: int) -> str:
    """A post body of at least `words` words: blocks of corpus bodies, one after another (same bytes every time)."""
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS)
    assert spec is not None and spec.loader is not None
    corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus)
    rng = random.Random(words)
    blocks: list[str] = []
    count = i = 0
    while count < words:
        for block in corpus.body(rng, i).split("\n\n"):
            if count >= words:
                break
            blocks.append(block.strip())
            count += len(block.split())
        i += 1
    return "\n\n".join(blocks).replace("](/images/", "](https://images.example.org/") + "\n"


def size_report(root: Path) -> None:
    """Print the email bytes of long posts and the share of inline style bytes (see the module docstring)."""
    site = root / "sizes"
    (site / "posts").mkdir(parents=True, exist_ok=True)
    (site / "press.toml").write_text(PRESS_TOML, "utf-8")
    for words in SIZES:
        front = f'---\ntitle: "A {words:,}-word post"\ndate: 2026-01-01T09:00:00+00:00\n---\n\n'
        (site / "posts" / f"long-{words}.md").write_text(front + long_body(words), "utf-8")
    config = load_config(site)
    theme = Theme.for_site(config.templates_dir)
    posts = {p.slug: p for p in load_posts(config, use_cache=False)}
    for words in SIZES:
        post = posts[f"long-{words}"]
        edition = make_edition(post, config, theme)
        size = len(edition.html.encode("utf-8"))
        styles = sum(len(m.group(0).encode("utf-8")) for m in _STYLE_ATTR.finditer(edition.html))
        cut = "cut at a paragraph" if getattr(edition, "cut", False) else "whole"
        verdict = "under" if size < GMAIL_CLIP else "OVER"
        print(
            f"email of a {len(post.body_markdown.split()):,}-word post: {size / 1024:.1f} KB ({verdict} 102 KB), "
            f"inline styles {styles / 1024:.1f} KB = {100 * styles / size:.0f}% of it, {cut}; {len(lint(edition, post))} lint problems"
        )


def quantile(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=5000)
    parser.add_argument("--keep", type=Path, help="make (or reuse) the corpus here instead of a temporary folder")
    parser.add_argument("--recipients", type=int, default=100_000)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="rp-bench-edition-"))
    try:
        size_report(root)
        make_corpus(root, args.n)
        config = load_config(root)
        site = make_site(config, load_posts(config, use_cache=False), now=dt.datetime.now(dt.UTC))
        theme = Theme.for_site(config.templates_dir)
        posts = site.posts
        print(f"{len(posts)} posts in {root}")
        make_edition(posts[-1], config, theme)  # warm up: templates, stylesheet parse, selector cache

        per_post: list[float] = []
        problems = 0
        editions = []
        started = time.perf_counter()
        for post in posts:
            t0 = time.perf_counter()
            edition = make_edition(post, config, theme)
            problems += len(lint(edition, post))
            per_post.append((time.perf_counter() - t0) * 1000)
            if len(editions) < 3:
                editions.append(edition)
        total = time.perf_counter() - started
        print(
            f"full edition (HTML + text + lint): median {statistics.median(per_post):.2f} ms/post, "
            f"p90 {quantile(per_post, 0.9):.2f} ms, {len(posts) / total:.0f} posts/s; "
            f"{problems} lint problems; HTML {len(editions[0].html) / 1024:.1f} KB  (target < 30 ms)"
        )

        edition = editions[0]
        names = [f"Reader {i} <Ünïcødé & co>" for i in range(1000)]
        urls = [f"https://bench.example.org/newsletter/unsubscribe?token=tok{i:06d}&x=1" for i in range(1000)]
        clock = time.perf_counter_ns
        samples = []
        for i in range(args.recipients):
            name, url = names[i % 1000], urls[i % 1000]
            t0 = clock()
            edition.personalize(name, url)
            samples.append(clock() - t0)
        print(
            f"personalize: median {statistics.median(samples) / 1000:.2f} µs/recipient over {args.recipients:,} recipients  (target < 20 µs)"
        )

        sender = {
            "from_name": config.newsletter.from_name,
            "from_address": config.newsletter.from_address,
            "reply_to": config.newsletter.reply_to,
            "list_id": config.newsletter.list_id,
            "unsubscribe_mailto": config.newsletter.unsubscribe_mailto,
        }
        now = dt.datetime.now(dt.UTC)
        samples = []
        for i in range(min(args.recipients, 20_000)):
            t0 = clock()
            build_message(
                edition,
                to_name=names[i % 1000],
                to_address=f"reader{i}@example.com",
                unsubscribe_url=urls[i % 1000],
                message_id=f"<post-0.{i}.bench@bench.example.org>",
                date=now,
                **sender,
            )
            samples.append(clock() - t0)
        median = statistics.median(samples) / 1000
        print(
            f"build_message: median {median:.2f} µs/recipient over {len(samples):,} messages (~{1e6 / median:,.0f} messages/s on one core)"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
