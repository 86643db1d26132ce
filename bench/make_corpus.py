#!/usr/bin/env python3
"""Make a reproducible corpus of Markdown posts and subscribers for benchmarks.

usage: make_corpus.py posts N DIR [--flavor press|pelican|hugo]
       make_corpus.py subscribers N FILE.csv

posts: N posts with YAML front matter (title, date with offset, tags, summary),
~600 words each, with headings, lists, a fenced code block, a table, a blockquote,
footnote-style links, an image (absolute URL on even posts, site-relative on odd),
and non-ASCII text. Tags follow a skewed distribution over 60 names. Same N, same bytes.
The pelican and hugo flavors write the same posts in those tools' front matter, so a
peer can be timed on identical content.

subscribers: a CSV with header email,name,created_at; every address is distinct and valid.
"""

import csv
import datetime as dt
import os
import random
import sys

WORDS = [
    "the",
    "a",
    "season",
    "family",
    "thriller",
    "review",
    "episode",
    "secret",
    "daughter",
    "father",
    "search",
    "city",
    "night",
    "story",
    "cast",
    "performance",
    "director",
    "camera",
    "silence",
    "tension",
    "violence",
    "truth",
    "lie",
    "home",
    "road",
    "newsletter",
    "archive",
    "reader",
    "feed",
    "letter",
    "subscriber",
    "publish",
    "draft",
    "edition",
    "weekly",
    "critic",
    "café",
    "naïve",
    "déjà",
    "über",
    "façade",
    "jalapeño",
]
TAGS = [f"tag-{i}" for i in range(60)] + ["Crime", "Netflix", "Harlan Coben", "TV review", "C++"]


def sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def paragraph(rng):
    return " ".join(sentence(rng, rng.randint(8, 18)) for _ in range(rng.randint(3, 6)))


def body(rng, i):
    parts = [paragraph(rng)]
    for s in range(4):
        parts.append(f"## Part {s + 1}: {sentence(rng, 4)[:-1]}")
        parts.append(paragraph(rng))
        parts.append(paragraph(rng))
        if s == 0:
            parts.append(f"- first *point*\n- second **point** with [a link](https://example.org/p/{i})\n- third point with `code`")
        if s == 1:
            parts.append("```python\ndef score(review):\n    return sum(review.stars) / len(review.stars)\n```")
        if s == 2:
            parts.append("| Series | Focus | Tone |\n|---|---|---|\n| Fool Me Once | Twists | Fast |\n| Run Away | Family | Bleak |")
            parts.append("> " + sentence(rng, 14))
        if s == 3:
            src = f"https://images.example.org/{i}.jpg" if i % 2 == 0 else f"/images/{i}.jpg"
            parts.append(f"![Still from episode {i % 8 + 1}]({src})")
            parts.append(f"See the [previous post](/posts/post-{max(i - 1, 0)}/) for more.")
    return "\n\n".join(parts) + "\n"


def posts(n, root, flavor):
    rng = random.Random(42)
    os.makedirs(root, exist_ok=True)
    start = dt.datetime(2015, 1, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    weights = [1 / (k + 1) for k in range(len(TAGS))]
    for i in range(n):
        date = start + dt.timedelta(hours=7 * i)
        tags = sorted(set(rng.choices(TAGS, weights, k=3)))
        title = f"Post {i}: {sentence(rng, 5)[:-1]}"
        summary = sentence(rng, 20)
        text = body(rng, i)
        if flavor == "press" or flavor == "hugo":

            def q(s: str) -> str:
                return '"' + s.replace('"', '\\"') + '"'

            head = (
                f"---\ntitle: {q(title)}\ndate: {date.isoformat()}\ntags: [{', '.join(q(t) for t in tags)}]\nsummary: {q(summary)}\n---\n\n"
            )
        elif flavor == "pelican":
            head = (
                f"Title: {title}\nDate: {date.strftime('%Y-%m-%d %H:%M')}\nTags: {', '.join(tags)}\nSummary: {summary}\nSlug: post-{i}\n\n"
            )
        else:
            sys.exit(f"unknown flavor {flavor}")
        with open(os.path.join(root, f"post-{i}.md"), "w", encoding="utf-8") as f:
            f.write(head + text)


def subscribers(n, path):
    rng = random.Random(7)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "name", "created_at"])
        for i in range(n):
            w.writerow([f"reader{i}@example.com", f"Reader {i}", (start + dt.timedelta(minutes=rng.randint(0, 2_000_000))).isoformat()])


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 3 and a[0] == "posts":
        flavor = a[4] if len(a) > 4 and a[3] == "--flavor" else "press"
        posts(int(a[1]), a[2], flavor)
    elif len(a) == 3 and a[0] == "subscribers":
        subscribers(int(a[1]), a[2])
    else:
        sys.exit(__doc__)
