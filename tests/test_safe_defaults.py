"""Safe defaults for a writer's first weeks: nothing half-written goes out, placeholders are
named, a newsletter whose unsubscribe link would lead nowhere is not sent, and posts held
back by their date are listed, never silently missing. The real CLI in a subprocess, a real
SQLite file and the Maildir outbox."""

from __future__ import annotations

import datetime as dt
import mailbox
from pathlib import Path

import pytest

from sites import cli

REAL_TOML = """\
title = "Real Site"
base_url = "https://reviews.ada.net/"
timezone = "UTC"

[newsletter]
since = 2026-01-01
from = "Ada <letters@ada.net>"
postal_address = "Ada Critic, 5 Mill Lane, Leeds LS1 1AA"

[web]
url = "https://reviews.ada.net/newsletter/"
"""


def outbox_count(site: Path) -> int:
    box = site / "outbox"
    return len(mailbox.Maildir(box, create=False)) if (box / "new").is_dir() else 0


@pytest.mark.slow
def test_init_makes_a_draft_example_and_its_site_is_not_mailed_for_want_of_a_web_url(tmp_path: Path) -> None:
    site = tmp_path / "zine"
    assert cli("init", str(site)).returncode == 0
    [example] = (site / "posts").glob("*.md")
    text = example.read_text("utf-8")
    assert "\ndraft: true" in text and "\nid: " in text
    assert cli("subscribers", "add", "ann@ada.net", "--site", str(site)).returncode == 0
    # publish the example as if it were finished: the missing [web] url stops it, saying what to set
    example.write_text(text.replace("draft: true", "draft: false"), "utf-8")
    result = cli("publish", "--site", str(site))
    assert result.returncode == 1
    assert "press.toml: [web] url is not set, so the unsubscribe link in every email would lead nowhere" in result.stderr
    assert '[web] url = "https://your-site/newsletter/"' in result.stderr and "Traceback" not in result.stderr
    assert outbox_count(site) == 0
    test = cli("publish", "--site", str(site), "--test-to", "me@ada.net")
    assert test.returncode == 1 and "[web] url is not set" in test.stderr


def test_check_names_every_placeholder_of_an_init_site_and_none_of_a_real_one(tmp_path: Path) -> None:
    site = tmp_path / "zine"
    cli("init", str(site))
    result = cli("check", "--site", str(site))
    assert result.returncode == 0, result.stderr  # warnings, not errors
    assert "press.toml: base_url = 'https://example.org/' is a placeholder" in result.stderr
    assert "[newsletter] from = 'newsletter@example.org' is a placeholder" in result.stderr
    assert "[newsletter] postal_address = 'Your postal address (required by CAN-SPAM)' is the sample" in result.stderr
    real = tmp_path / "real"
    real.mkdir()
    (real / "press.toml").write_text(REAL_TOML, "utf-8")
    (real / "posts").mkdir()
    result = cli("check", "--site", str(real))
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


@pytest.mark.slow
def test_a_post_made_by_new_is_not_mailed_until_its_draft_line_goes(tmp_path: Path) -> None:
    site = tmp_path / "real"
    (site / "posts").mkdir(parents=True)
    (site / "press.toml").write_text(REAL_TOML, "utf-8")
    assert cli("subscribers", "add", "ann@ada.net", "--site", str(site)).returncode == 0
    made = cli("new", "Half written", "--site", str(site))
    assert made.returncode == 0 and "a draft" in made.stdout
    [post] = (site / "posts").glob("*.md")
    result = cli("publish", "--site", str(site))
    assert result.returncode == 0, result.stderr
    assert outbox_count(site) == 0 and "nothing to send" in result.stdout
    post.write_text(post.read_text("utf-8").replace("draft: true\n", ""), "utf-8")
    result = cli("publish", "--site", str(site))
    assert result.returncode == 0, result.stderr
    assert outbox_count(site) == 1
    renamed = post.with_name("final-name.md")
    post.rename(renamed)  # `new` wrote an id: a rename afterwards never sends it again
    assert cli("publish", "--site", str(site)).returncode == 0
    assert outbox_count(site) == 1


@pytest.mark.slow
def test_scheduled_and_unsent_posts_are_listed_by_check_build_and_status(tmp_path: Path) -> None:
    site = tmp_path / "real"
    (site / "posts").mkdir(parents=True)
    (site / "press.toml").write_text(REAL_TOML, "utf-8")
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(microsecond=0, second=0)
    (site / "posts/later.md").write_text(f"---\ntitle: Later\ndate: {later.isoformat()}\n---\n\nSoon.\n", "utf-8")
    (site / "posts/now.md").write_text("---\ntitle: Now\ndate: 2026-02-01\n---\n\nHere.\n", "utf-8")
    (site / "posts/draft.md").write_text("---\ntitle: Draft\ndate: 2099-01-01\ndraft: true\n---\n\nNo.\n", "utf-8")
    expected = f"1 scheduled:\n  later at {later:%Y-%m-%d %H:%M} UTC ({site / 'posts/later.md'})"
    for command in ("check", "build", "status"):
        result = cli(command, "--site", str(site))
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout, (command, result.stdout)
        assert "draft" not in result.stdout  # drafts are not scheduled
    status = cli("status", "--site", str(site)).stdout
    assert "1 not sent yet (run review-press publish):\n  now (" in status
    assert "1 scheduled:" not in cli("build", "--site", str(site), "--future").stdout  # --future publishes them now
