"""Test support for the email edition: small newsletter sites and their editions."""

from __future__ import annotations

from pathlib import Path

from review_press.config import Config, load_config
from review_press.content import Post, load_posts
from review_press.edition import Edition, make_edition
from review_press.theme import Theme
from sites import BASE_TOML, post_text, write_site

REPO = Path(__file__).resolve().parents[1]
NEWSLETTER_TOML = (
    BASE_TOML
    + """
[newsletter]
since = 2026-01-01
from = "Test Letters <letters@example.org>"
reply_to = "tess@example.org"
postal_address = "Test Site, 1 Test Road, Testville"
list_id = "Test Site <test.example.org>"
unsubscribe_mailto = "unsubscribe@example.org"

[web]
url = "https://example.org/newsletter/"
"""
)


def sample() -> tuple[Post, Config, Theme]:
    """The repository's own site: the Run Away review, press.toml and the default theme."""
    config = load_config(REPO)
    posts = load_posts(config, use_cache=False)
    return posts[0], config, Theme.for_site(config.templates_dir)


def one_post(tmp: Path, body: str, **front: str) -> tuple[Post, Config, Theme]:
    """A newsletter site in `tmp` with one post holding `body` (front matter from `front`)."""
    front.setdefault("date", "2026-02-03")
    root = write_site(tmp, {"2026-02-03-letter.md": post_text(title=front.pop("title", "A letter"), body=body, **front)}, NEWSLETTER_TOML)
    config = load_config(root)
    (post,) = load_posts(config, use_cache=False)
    return post, config, Theme.for_site(config.templates_dir)


def edition_of(tmp: Path, body: str, **front: str) -> tuple[Edition, Post]:
    """The edition of a one-post site, and the post."""
    post, config, theme = one_post(tmp, body, **front)
    return make_edition(post, config, theme), post


def body_line(post: Post, needle: str) -> int:
    """The line number (in the post's file) of the first line holding `needle`."""
    for number, line in enumerate(post.source.read_text("utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {post.source}")
