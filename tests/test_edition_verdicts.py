"""One input, one verdict: the email edition and its lint give the same bytes and the same
verdict under any hash seed and in any folder; a post's email problems never keep the site from
building (warnings in `build`, errors in `check` and `build --strict`, a refusal of that post
alone in `publish`); a long post fits Gmail's 102 KB whole up to 6,000 words and is cut at a
paragraph, with a link to the rest, past that."""

from __future__ import annotations

import email
import email.policy
import hashlib
import mailbox
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from email_sites import NEWSLETTER_TOML, REPO, edition_of, sample
from review_press.campaigns import EmailRefusal
from review_press.config import load_config
from review_press.content import load_posts
from review_press.edition import lint, make_edition
from review_press.edition.lint import HTML_LIMIT, EmailProblem, lint_html
from review_press.publish import PublishOptions, publish
from review_press.store import open_store
from review_press.theme import Theme
from sites import post_text, write_site
from smtp_servers import message_builder, smtp_server

GMAIL_CLIP = 102 * 1024
SEEDS = ("0", "1", "7", "4242")
SPOILERS = """Intro paragraph.

<details><summary>Spoilers</summary>

The butler did it, and the *gardener* helped.

</details>

After the spoiler.
"""
NESTED = """1. First, with a nested list:
   - inner *one*
   - inner two with [a link](https://example.com/inner)
     1. deeper
2. Second, with a quote:

   > A quote inside a list item,
   > on two lines.

- [ ] not a task list, just brackets
"""
TABLES_AND_CODE = """| Show | Year | Verdict |
|:---|---:|:---:|
| Run Away | 2024 | Bleak |
| Fool Me Once | 2024 | Fast |

```python
def score(review: dict[str, int]) -> float:
    return sum(review.values()) / len(review)
```

Inline `code` and a footnote.[^note] And another.[^2]

[^note]: The note, with [a source](https://example.net/source).
[^2]: A second note.
"""
RTL = """مرحبا بالعالم. هذه فقرة باللغة العربية مع [رابط](https://example.org/ar).

שלום עולם, פסקה בעברית.

Mixed: English then العربية then English.
"""
HTTP_LINK = "Intro.\n\nSee [the old site](http://old.example.org/page) for more.\n"
EMBED = (
    "Intro.\n\n"
    '<blockquote class="instagram-media"><a href="https://www.instagram.com/p/abc/">'
    '<img src="https://scontent.example.com/p.jpg"></a></blockquote>\n\n'
    "After the embed.\n"
)


def tricky_site(root: Path) -> Path:
    """The sample post and posts holding every construct that once made the verdict wobble."""
    sample = next((REPO / "posts").glob("*run-away*.md")).read_text("utf-8")
    posts = {
        "2026-01-01-run-away-season-1-review.md": sample,
        "2026-02-01-spoilers.md": post_text(title="Spoilers", date="2026-02-01", body=SPOILERS),
        "2026-02-02-nested.md": post_text(title="Nested", date="2026-02-02", body=NESTED),
        "2026-02-03-tables.md": post_text(title="Tables and code", date="2026-02-03", body=TABLES_AND_CODE),
        "2026-02-04-rtl.md": post_text(title="مرحبا", date="2026-02-04", body=RTL),
        "2026-02-05-http.md": post_text(title="An http link", date="2026-02-05", body=HTTP_LINK),
        "2026-02-06-embed.md": post_text(title="An embed", date="2026-02-06", body=EMBED),
    }
    return write_site(root, posts, NEWSLETTER_TOML)


def run(*args: str, cwd: Path, seed: str = "0") -> subprocess.CompletedProcess[str]:
    """The real command (`python -m review_press`) in a subprocess with this hash seed."""
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "review_press", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def email_files(root: Path) -> dict[str, str]:
    """sha256 of every file under out/email/."""
    out = root / "out" / "email"
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*")) if p.is_file()}


# --- one input, one verdict ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_same_site_gives_the_same_bytes_and_verdict_under_any_hash_seed_in_any_folder(tmp_path: Path) -> None:
    source = tricky_site(tmp_path / "source")
    results = []
    for where, seed in [*((f"seed-{s}", s) for s in SEEDS), ("elsewhere/deeper/site", "99")]:
        root = tmp_path / where
        shutil.copytree(source, root)
        done = run("build", cwd=root, seed=seed)
        stderr = done.stderr.replace(str(root), "SITE")
        results.append((done.returncode, stderr, email_files(root)))
    first = results[0]
    assert first[0] == 0, first[1]
    assert "warning: posts/2026-02-05-http.md:" in first[1] and "warning: posts/2026-02-06-embed.md:" in first[1]
    assert "publish will not send embed" in first[1]
    assert "summary" not in first[1]  # the spoiler's label inherits its cell's font and colour
    assert len(first[2]) == 7 * 3
    for other in results[1:]:
        assert other == first


def test_unstyled_text_is_flagged_every_time_whatever_was_linted_before() -> None:
    """The lint once remembered elements by `id()` of lxml's short-lived proxies, so a new element
    could take a dead one's id and its verdict: unstyled text passed or failed by memory layout."""
    post, config, theme = sample()
    edition = make_edition(post, config, theme)
    html = edition.html.replace("</body>", "<div><summary>Spoilers</summary><p>Hidden text</p></div></body>")
    verdicts = {
        tuple((p.rule, p.message) for p in lint_html(html, edition.text, url=edition.url, preheader=edition.preheader)) for _ in range(5)
    }
    assert len(verdicts) == 1
    (problems,) = verdicts
    assert [rule for rule, _ in problems] == [7] and "<summary>" in problems[0][1]


def test_details_become_a_bold_line_over_the_shown_body_and_the_text_marks_them(tmp_path: Path) -> None:
    edition, post = edition_of(tmp_path, SPOILERS)
    assert lint(edition, post) == []
    assert "<details" not in edition.html and "<summary" not in edition.html
    summary = re.search(r'<p class="summary" style="([^"]*)">Spoilers</p>', edition.html)
    assert summary and "font-weight:bold" in summary.group(1)
    body = edition.html[edition.html.index('<div class="post">') :]
    assert body.index("Spoilers</p>") < body.index("The butler did it")
    assert "Intro paragraph.\n\nSpoilers:\n\nThe butler did it, and the _gardener_ helped.\n\nAfter the spoiler." in edition.text


def test_rtl_nested_and_tabular_posts_pass_the_lint(tmp_path: Path) -> None:
    for i, body in enumerate((NESTED, TABLES_AND_CODE, RTL)):
        edition, post = edition_of(tmp_path / str(i), body)
        assert lint(edition, post) == [], body[:20]


# --- long posts -------------------------------------------------------------------------------------

WORDS = (
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
    "café",
    "naïve",
)


def long_body(words: int, seed: int = 5) -> str:
    """About `words` words of a realistic post: headings, paragraphs, lists, a table, code, a quote
    and links every few hundred words. Paragraph N starts `Paragraph N.` and ends `(end N)`."""
    rng = random.Random(seed)
    blocks: list[str] = []
    count = n = 0
    while count < words:
        if n % 6 == 0:
            blocks.append(f"## Part {n // 6 + 1}: the {rng.choice(WORDS)} {rng.choice(WORDS)}")
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 110)))
        blocks.append(f"Paragraph {n}. {text.capitalize()}, with [a link](https://example.com/p/{n}). (end {n})")
        if n % 12 == 3:
            blocks.append(f"- first *point* of {n}\n- second **point**\n- third point with `code`")
        if n % 24 == 7:
            blocks.append("| Series | Focus | Tone |\n|---|---|---|\n| Fool Me Once | Twists | Fast |\n| Run Away | Family | Bleak |")
        if n % 24 == 15:
            blocks.append("```python\ndef score(review):\n    return sum(review.stars) / len(review.stars)\n```")
            blocks.append("> " + " ".join(rng.choice(WORDS) for _ in range(30)))
        count = sum(len(b.split()) for b in blocks)
        n += 1
    return "\n\n".join(blocks) + "\n"


def test_a_6000_word_post_fits_whole_under_gmail_s_102_kb(tmp_path: Path) -> None:
    body = long_body(6000)
    assert len(body.split()) >= 6000
    edition, post = edition_of(tmp_path, body)
    size = len(edition.html.encode("utf-8"))
    assert not edition.cut and size <= HTML_LIMIT < GMAIL_CLIP, size
    assert lint(edition, post) == []
    assert "(end " + str(body.count("Paragraph ") - 1) + ")" in edition.html  # the last paragraph is there


def test_a_12000_word_post_is_cut_at_a_paragraph_with_the_continue_link(tmp_path: Path) -> None:
    body = long_body(12000)
    toml = NEWSLETTER_TOML.replace("[newsletter]\n", '[newsletter]\ncontinue_reading = "Read the rest of this review"\n')
    root = write_site(tmp_path, {"2026-02-03-long.md": post_text(title="Long", date="2026-02-03", body=body)}, toml)
    config = load_config(root)
    (post,) = load_posts(config, use_cache=False)
    edition = make_edition(post, config, Theme.for_site(config.templates_dir))
    html = edition.html
    assert edition.cut and len(html.encode("utf-8")) <= HTML_LIMIT < GMAIL_CLIP
    assert lint(edition, post) == []
    link = f'<a href="{edition.url}" style="color:#a3322a;text-decoration:underline">Read the rest of this review</a></p>'
    assert link in html
    shown = html[html.index('<div class="post">') : html.index(link)]
    last = max(int(n) for n in re.findall(r"Paragraph (\d+)\.", shown))
    assert f"(end {last})" in shown and f"Paragraph {last + 1}." not in shown  # a whole paragraph, and nothing of the next
    assert last > 50  # most of what fits is kept
    assert "unsubscribe" in html.rsplit(link, 1)[1].lower()  # the footer follows, inside the limit
    assert f"(end {body.count('Paragraph ') - 1})" in edition.text  # the plain text is whole
    again = make_edition(post, config, Theme.for_site(config.templates_dir))
    assert again.html == html  # the same cut every time


def test_continue_reading_must_be_one_line_of_text(tmp_path: Path) -> None:
    from review_press.errors import PressError

    toml = NEWSLETTER_TOML.replace("[newsletter]\n", '[newsletter]\ncontinue_reading = ""\n')
    root = write_site(tmp_path, {}, toml)
    with pytest.raises(PressError, match="continue_reading"):
        load_config(root)


# --- build, check, publish --------------------------------------------------------------------------


def http_site(root: Path) -> Path:
    return write_site(
        root,
        {
            "2026-02-01-good.md": post_text(title="Good", date="2026-02-01", body="All https."),
            "2026-02-05-http.md": post_text(title="An http link", date="2026-02-05", body=HTTP_LINK),
        },
        NEWSLETTER_TOML,
    )


@pytest.mark.slow
def test_an_http_link_is_a_warning_the_site_builds_strict_and_check_fail(tmp_path: Path) -> None:
    root = http_site(tmp_path / "site")
    line = 8  # front matter (4 lines), a blank line, "Intro.", a blank line, the link
    assert "old.example.org" in (root / "posts" / "2026-02-05-http.md").read_text().splitlines()[line - 1]
    built = run("build", cwd=root)
    assert built.returncode == 0, built.stderr
    assert f"warning: posts/2026-02-05-http.md:{line}: email edition of 'http': <a href='http://old.example.org/page'>" in built.stderr
    assert "publish will not send" not in built.stderr  # a warning never stops a post
    assert (root / "out" / "posts" / "http" / "index.html").is_file() and "An http link" in (root / "out" / "feed.xml").read_text()
    assert (root / "out" / "email" / "http" / "index.html").is_file()
    rebuilt = run("build", cwd=root)  # nothing changed and nothing re-rendered: the same verdict
    assert rebuilt.returncode == 0 and "0 written" in rebuilt.stdout
    assert [ln for ln in rebuilt.stderr.splitlines() if "email" in ln] == [ln for ln in built.stderr.splitlines() if "email" in ln]

    (root / "posts" / "2026-02-01-good.md").write_text(post_text(title="Good, edited", date="2026-02-01", body="Still https."))
    before = {p: p.read_bytes() for p in (root / "out").rglob("*") if p.is_file()}
    strict = run("build", "--strict", cwd=root)
    assert strict.returncode == 1
    assert f"posts/2026-02-05-http.md:{line}: email edition of 'http'" in strict.stderr and "Traceback" not in strict.stderr
    assert {p: p.read_bytes() for p in (root / "out").rglob("*") if p.is_file()} == before  # strict writes nothing

    checked = run("check", cwd=root)
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert f"warning: posts/2026-02-05-http.md:{line}: email edition of 'http'" in checked.stderr


def test_an_email_error_is_reported_by_build_but_the_post_is_on_the_web(tmp_path: Path) -> None:
    root = write_site(
        tmp_path / "site", {"2026-02-06-embed.md": post_text(title="An embed", date="2026-02-06", body=EMBED)}, NEWSLETTER_TOML
    )
    built = run("build", cwd=root)
    assert built.returncode == 0, built.stderr
    assert "warning: posts/2026-02-06-embed.md:8: email edition of 'embed': <img src='https://scontent.example.com/p.jpg'> has no alt" in (
        built.stderr
    )
    assert "publish will not send embed" in built.stderr
    assert (root / "out" / "posts" / "embed" / "index.html").is_file() and "An embed" in (root / "out" / "atom.xml").read_text()
    checked = run("check", cwd=root)
    assert checked.returncode == 1 and "error: posts/2026-02-06-embed.md:8:" in checked.stderr


def refusing_site(root: Path, extra: str = "") -> Path:
    posts = {
        "2026-02-01-good.md": post_text(title="Good", date="2026-02-01", body="All https."),
        "2026-02-05-http.md": post_text(title="An http link", date="2026-02-05", body=HTTP_LINK),
        "2026-02-06-embed.md": post_text(title="An embed", date="2026-02-06", body=EMBED),
    }
    return write_site(root, posts, NEWSLETTER_TOML.replace("[web]", extra + "\n[web]"))


@pytest.mark.slow
def test_publish_refuses_only_the_post_whose_email_breaks_a_rule_and_sends_the_others(tmp_path: Path) -> None:
    root = refusing_site(tmp_path / "site")
    for i in range(3):
        assert run("subscribers", "add", f"r{i}@example.org", cwd=root).returncode == 0
    done = run("publish", cwd=root)
    assert done.returncode == 1, done.stderr
    assert "error: posts/2026-02-06-embed.md:8: not sent: email edition of 'embed': <img src=" in done.stderr
    assert "email rule 4" in done.stderr and "Traceback" not in done.stderr
    assert "warning: posts/2026-02-05-http.md:8: email edition of 'http'" in done.stderr  # sent all the same
    assert "good: 3 sent" in done.stdout and "http: 3 sent" in done.stdout and "embed:" not in done.stdout
    box = mailbox.Maildir(root / "outbox", create=False)
    subjects = sorted(str(m["Subject"]) for m in box)
    assert subjects == ["An http link"] * 3 + ["Good"] * 3

    (root / "posts" / "2026-02-06-embed.md").write_text(
        post_text(title="An embed", date="2026-02-06", body=EMBED.replace("<img ", '<img alt="A photo" '))
    )
    again = run("publish", cwd=root)
    assert again.returncode == 0, again.stderr
    assert "embed: 3 sent" in again.stdout and "good:" not in again.stdout
    assert sorted(str(m["Subject"]) for m in mailbox.Maildir(root / "outbox", create=False)).count("An embed") == 3


def test_publish_through_smtp_refuses_the_unmailable_post_by_the_same_verdict_as_check(tmp_path: Path) -> None:
    with smtp_server() as (server, port):
        smtp = f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\nconcurrency = 1\n'
        root = refusing_site(tmp_path / "site")
        (root / "press.toml").write_text((root / "press.toml").read_text() + smtp)
        with open_store(load_config(root)) as store:
            store.add("ann@example.org", "Ann")
            store.add("bob@example.org", "Bob")
        report = publish(root, PublishOptions(build_message=message_builder(), environ={}))
    assert [(p.slug, p.sent) for p in report.posts] == [("good", 2), ("http", 2)]
    (refusal,) = report.refused
    assert isinstance(refusal, EmailRefusal) and refusal.post.slug == "embed"
    (problem,) = refusal.problems
    assert isinstance(problem, EmailProblem) and problem.line == 8 and "email rule 4" in (problem.hint or "")
    assert [w.severity for w in report.warnings] == ["warning"] and "http://old.example.org/page" in str(report.warnings[0])
    assert {r.message["Subject"] for r in server.received} == {"Good", "An http link"}
    for received in server.received:
        html = received.message.get_body(("html",)).get_content()
        assert "http://old.example.org/page" in html or received.message["Subject"] == "Good"
    checked = run("check", cwd=root)
    assert checked.returncode == 1 and "posts/2026-02-06-embed.md:8:" in checked.stderr


@pytest.mark.slow
def test_a_cut_email_is_sent_whole_to_the_limit(tmp_path: Path) -> None:
    """A post past the size limit is never refused: it goes out cut, with its continue link."""
    root = write_site(
        tmp_path / "site", {"2026-02-03-long.md": post_text(title="Long", date="2026-02-03", body=long_body(12000))}, NEWSLETTER_TOML
    )
    assert run("subscribers", "add", "ann@example.org", cwd=root).returncode == 0
    done = run("publish", cwd=root)
    assert done.returncode == 0, done.stderr
    (message,) = list(mailbox.Maildir(root / "outbox", create=False))
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    html = parsed.get_body(("html",)).get_content()
    assert "Continue reading on the web</a>" in html and len(html.encode("utf-8")) < GMAIL_CLIP
