"""The command line: help, exit codes, `path:line: message (hint)` on stderr, no tracebacks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from review_press.cli import app
from sites import BASE_TOML, cli, post_text, write_site

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


COMMANDS = ["build", "check", "new", "init", "preview", "serve", "publish", "status", "subscribers", "web"]


@pytest.mark.parametrize("command", [*COMMANDS, "subscribers import", "subscribers list", "subscribers export"])
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "--site" in result.output or command in {"init", "subscribers"}


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("review-press ")


@pytest.mark.slow
def test_init_new_build(tmp_path: Path) -> None:
    site = tmp_path / "my-zine"
    result = cli("init", str(site))
    assert result.returncode == 0, result.stderr
    assert (site / "press.toml").is_file() and not (site / "templates").exists()
    [example] = list((site / "posts").glob("*.md"))
    assert "hello-world" in example.name
    result = cli("new", "Run Away: a second look", cwd=site)
    assert result.returncode == 0, result.stderr
    today = dt.date.today().isoformat()
    new = site / "posts" / f"{today}-run-away-a-second-look.md"
    assert new.is_file() and 'title: "Run Away: a second look"' in new.read_text()
    assert cli("new", "Run Away: a second look", cwd=site).returncode == 1  # never overwrites
    assert "\ndraft: true\n" in new.read_text() and "\nid: " in new.read_text()  # new posts are drafts with an id
    result = cli("build", "--site", str(site))
    assert result.returncode == 0, result.stderr
    assert "built 0 posts" in result.stdout  # the example post and the new one are drafts
    assert "base_url = 'https://example.org/' is a placeholder" in result.stderr
    result = cli("build", "--site", str(site), "--drafts")
    assert result.returncode == 0, result.stderr
    assert "built 2 posts" in result.stdout
    assert (site / "out/posts/run-away-a-second-look/index.html").is_file()


def test_init_with_templates_copies_theme(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "s"), "--with-templates"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s/templates/assets/style.css").is_file()
    assert runner.invoke(app, ["init", str(tmp_path / "s")]).exit_code == 1  # refuses an existing site


def test_bad_posts_all_reported_without_traceback(tmp_path: Path) -> None:
    write_site(tmp_path, {"a.md": "", "b.md": "---\ntitle: T\ndate: soon\n---\n", "ok.md": post_text()})
    for command in ("build", "check"):
        result = cli(command, cwd=tmp_path)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "error: posts/a.md:1: file is empty (a post needs front matter with a title and a date)" in result.stderr
        assert "error: posts/b.md:3: cannot read date 'soon'" in result.stderr
        assert "2 problems found" in result.stderr
    assert not (tmp_path / "out").exists()


def test_broken_config_reported(tmp_path: Path) -> None:
    write_site(tmp_path, {"a.md": post_text()}, toml=BASE_TOML.replace("https://example.org/blog/", "example.org"))
    result = cli("build", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "press.toml:3: base_url must start with http:// or https://" in result.stderr


def test_no_site_here(tmp_path: Path) -> None:
    result = cli("build", cwd=tmp_path)
    assert result.returncode == 1
    assert "no press.toml here" in result.stderr and "--site DIR" in result.stderr


def test_drafts_flag(tmp_path: Path) -> None:
    write_site(tmp_path, {"a.md": post_text("Visible"), "d.md": post_text("Hidden", draft="true")})
    assert runner.invoke(app, ["build", "--site", str(tmp_path)]).exit_code == 0
    assert not (tmp_path / "out/posts/d").exists()
    assert runner.invoke(app, ["build", "--site", str(tmp_path), "--drafts"]).exit_code == 0
    assert (tmp_path / "out/posts/d/index.html").exists()
