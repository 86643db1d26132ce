"""Which site a command runs on, through the real CLI in a subprocess: the global `--site`
before the command, a command's own `--site` (which wins), and the site found from a
subfolder by walking up to press.toml; plus shell completion and the help's flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sites import post_text, write_site


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m review_press ARGS` in `cwd`."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "review_press", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_global_site_before_the_command(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", {"a.md": post_text("Global")})
    result = cli("--site", str(site), "build", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (site / "out" / "index.html").is_file()


def test_the_commands_own_site_wins_over_the_global_one(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", {"a.md": post_text("Own")})
    (tmp_path / "empty").mkdir()
    result = cli("--site", str(tmp_path / "empty"), "build", "--site", str(site), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (site / "out" / "index.html").is_file() and not (tmp_path / "empty" / "out").exists()


def test_the_site_is_found_from_a_subfolder(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", {"a.md": post_text("Found")})
    deep = site / "posts" / "drafts" / "deeper"
    deep.mkdir(parents=True)
    result = cli("build", cwd=deep)
    assert result.returncode == 0, result.stderr
    assert (site / "out" / "index.html").is_file() and not (deep / "out").exists()


def test_no_site_above_names_the_start_folder(tmp_path: Path) -> None:
    start = tmp_path / "nowhere" / "deep"
    start.mkdir(parents=True)
    result = cli("check", cwd=start)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no press.toml here" in result.stderr and str(start.resolve()) in result.stderr and "--site DIR" in result.stderr


def test_shell_completion_is_on(tmp_path: Path) -> None:
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def test_boolean_flags_have_no_bool_metavar(tmp_path: Path) -> None:
    result = cli("build", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--drafts", "--future", "--strict"):
        line = next(line for line in result.stdout.splitlines() if flag in line)
        assert "<bool>" not in line and "BOOLEAN" not in line, line


def test_no_help_page_shows_a_bool_metavar(tmp_path: Path) -> None:
    """Every command's page: our flags, --help and --install-completion alike (one rule in cli.py)."""
    pages = [
        (),
        ("build",),
        ("check",),
        ("publish",),
        ("status",),
        ("web",),
        ("subscribers",),
        ("subscribers", "forget"),
        ("subscribers", "remove"),
    ]
    for words in pages:
        result = cli(*words, "--help", cwd=tmp_path)
        assert result.returncode == 0, (words, result.stderr)
        assert "--help" in result.stdout and "<bool>" not in result.stdout, (words, result.stdout)
