"""Making things from nothing: a new site (`init`) and a new post (`new`)."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path

from .config import CONFIG_NAME, load_config
from .content import slugify
from .errors import PressError
from .theme import default_theme_dir

_PRESS_TOML = """\
# Site settings. Secrets (the SMTP password, the signing key) never go here: they come
# from environment variables. Every key is described in review-press's README.
title = "{title}"
description = "A new review-press site."
base_url = "https://example.org/"
language = "en"
timezone = "UTC"
posts_per_page = 10
feed_length = 20
feed_content = "full"   # or "summary"

[author]
name = "Your Name"
email = "you@example.org"

[newsletter]
# Only posts dated on or after this day are emailed: old posts you bring over stay web-only.
since = {today}
from = "{title} <newsletter@example.org>"
reply_to = "you@example.org"
postal_address = "Your postal address (required by CAN-SPAM)"
list_id = "{title} <newsletter.example.org>"
"""

_FIRST_POST = """\
---
title: "Hello, world"
date: {today}
id: {id}
tags: [news]
draft: true   # drafts are never published or mailed; delete this line when the post is ready
---

This is your first post. Write in [Markdown](https://commonmark.org/help/); everything
above the `<!-- more -->` line below is the summary shown on the index and in feeds.

<!-- more -->

Run `review-press build` and open `out/index.html`.
"""


def new_id() -> str:
    """A fresh post id: random, so two posts never share one; it stays with the post through renames."""
    return str(uuid.uuid4())


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def init_site(directory: Path, today: dt.date, with_templates: bool = False) -> Path:
    """Make press.toml and posts/ with one example post; copy the theme only if asked."""
    if (directory / CONFIG_NAME).exists():
        raise PressError(f"a site already exists here ({CONFIG_NAME} found)", path=directory / CONFIG_NAME, hint="choose an empty folder")
    (directory / "posts").mkdir(parents=True, exist_ok=True)
    title = directory.resolve().name.replace("-", " ").replace("_", " ").title() or "My Site"
    (directory / CONFIG_NAME).write_text(_PRESS_TOML.format(title=title.replace('"', ""), today=today.isoformat()), "utf-8")
    (directory / "posts" / f"{today.isoformat()}-hello-world.md").write_text(
        _FIRST_POST.format(today=today.isoformat(), id=new_id()), "utf-8"
    )
    (directory / ".gitignore").write_text("/out/\n/outbox/\n/.review-press/\n", "utf-8")
    if with_templates:
        shutil.copytree(default_theme_dir(), directory / "templates", ignore=shutil.ignore_patterns("__pycache__"))
    return directory


def new_post(root: Path, title: str, now: dt.datetime, draft: bool = True) -> Path:
    """Write posts/<date>-<slug>.md with front matter (a draft unless `draft=False`, and a
    fresh `id` so that renaming the file or its slug later never sends it twice)."""
    if not title.strip() or "\n" in title or "\r" in title:
        raise PressError("the title must be one non-empty line")
    config = load_config(root)
    local = now.astimezone(config.tz).replace(microsecond=0)
    path = config.posts_dir / f"{local.date().isoformat()}-{slugify(title)}.md"
    if path.exists():
        raise PressError("a post with this name already exists", path=path, hint="choose another title")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["---", f"title: {_yaml_string(title.strip())}", f"date: {local.isoformat()}", f"id: {new_id()}", "tags: []"]
    if draft:
        lines.append("draft: true")
    path.write_text("\n".join([*lines, "---", "", "Write here.", ""]), "utf-8")
    return path
