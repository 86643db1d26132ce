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


HERO = "images/run-away-hero.jpg"  # under static/: the sample post's hero in the screenshots
SAMPLE_CODE = """\
How the score adds up, for the spreadsheet-minded:

```python
scores = {"plot": 4.5, "acting": 5.0, "pacing": 4.0}
print(round(sum(scores.values()) / len(scores), 1))  # 4.5 stars
```
"""


def hero_jpeg(width: int = 1200, height: int = 630) -> bytes:
    """A real JPEG for a hero image: a dusk gradient with a road and a figure, made by Pillow
    (the same bytes every run), so a screenshot shows a picture, not a flat box."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=(int(40 + 150 * t), int(30 + 60 * t), int(70 + 20 * t)))
    horizon = int(height * 0.62)
    draw.rectangle([0, horizon, width, height], fill=(24, 22, 30))
    draw.polygon([(width * 0.47, horizon), (width * 0.53, horizon), (width * 0.75, height), (width * 0.25, height)], fill=(60, 58, 66))
    draw.ellipse([width * 0.70, height * 0.16, width * 0.80, height * 0.16 + width * 0.10], fill=(242, 214, 160))
    cx = width * 0.5
    draw.rectangle([cx - 6, horizon - 70, cx + 6, horizon - 10], fill=(10, 10, 14))
    draw.ellipse([cx - 9, horizon - 92, cx + 9, horizon - 74], fill=(10, 10, 14))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def sample_with_hero_and_code(tmp: Path) -> tuple[Post, Config, Theme]:
    """The repository's sample post in a copy of its site, given a hero image (front matter
    `image:`, the file in static/) and a highlighted code block after its first paragraph:
    what the README's screenshots show."""
    root = tmp / "sample"
    (root / "posts").mkdir(parents=True)
    (root / "static" / HERO).parent.mkdir(parents=True)
    (root / "static" / HERO).write_bytes(hero_jpeg())
    (root / "press.toml").write_bytes((REPO / "press.toml").read_bytes())
    source = next((REPO / "posts").glob("*run-away-season-1-review.md"))
    text = source.read_text("utf-8").replace("\n---\n", f"\nimage: /{HERO}\n---\n", 1)
    text = text.replace("<!-- more -->\n", "<!-- more -->\n\n" + SAMPLE_CODE, 1)
    (root / "posts" / source.name).write_text(text, "utf-8")
    config = load_config(root)
    (post,) = load_posts(config, use_cache=False)
    return post, config, Theme.for_site(config.templates_dir)
