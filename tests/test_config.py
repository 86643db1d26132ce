"""press.toml: good values load, bad ones give `press.toml:line: ...` for every problem at once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from review_press.config import load_config, parse_config
from review_press.errors import ConfigError, PressError, PressErrors
from sites import BASE_TOML


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(PressError) as info:
        parse_config(text, tmp_path)
    return [str(e) for e in getattr(info.value, "errors", (info.value,))]


def test_sample_site_config_loads() -> None:
    config = load_config(Path(__file__).parents[1])
    assert config.title == "Review Press"
    assert config.base_url.endswith("/")
    assert config.newsletter.since == dt.date(2026, 1, 1)
    assert config.newsletter.from_address == "letters@reviews.example.org"
    assert config.newsletter.from_name == "Review Press"
    assert config.smtp is None


def test_defaults_and_trailing_slash(tmp_path: Path) -> None:
    config = parse_config('title = "T"\nbase_url = "https://example.org/blog"\n', tmp_path)
    assert config.base_url == "https://example.org/blog/"
    assert (config.posts_per_page, config.feed_length, config.feed_content, config.timezone) == (10, 20, "full", "UTC")
    assert config.max_post_bytes == 10 * 1024 * 1024
    assert config.url("/posts/x/") == "https://example.org/blog/posts/x/"


def test_unknown_key_names_line_and_known_keys(tmp_path: Path) -> None:
    [message] = problems("colour = 'red'\n" + BASE_TOML, tmp_path)
    assert "press.toml:1: unknown key 'colour'" in message
    assert "known keys" in message


def test_wrong_type_names_line(tmp_path: Path) -> None:
    [message] = problems(BASE_TOML.replace("posts_per_page = 2", 'posts_per_page = "two"'), tmp_path)
    assert "press.toml:6: posts_per_page must be an integer" in message


def test_bool_is_not_an_integer(tmp_path: Path) -> None:
    [message] = problems(BASE_TOML.replace("feed_length = 3", "feed_length = true"), tmp_path)
    assert "feed_length must be an integer" in message


def test_base_url_without_scheme(tmp_path: Path) -> None:
    [message] = problems(BASE_TOML.replace("https://example.org/blog/", "example.org"), tmp_path)
    assert "press.toml:3: base_url must start with http:// or https://" in message


def test_every_problem_in_one_run(tmp_path: Path) -> None:
    text = BASE_TOML.replace("https://example.org/blog/", "ftp://x").replace("Europe/London", "Mars/Base") + "bogus = 1\n[smtp]\nport = 0\n"
    found = problems(text, tmp_path)
    assert len(found) == 5, found
    assert any("base_url" in m for m in found)
    assert any("unknown timezone 'Mars/Base'" in m for m in found)
    assert any("unknown key 'bogus'" in m for m in found)
    assert any("[smtp] missing required key 'host'" in m for m in found)
    assert any("[smtp] port must be a port number" in m for m in found)


def test_not_toml(tmp_path: Path) -> None:
    [message] = problems('title = "T"\nbase_url = \n', tmp_path)
    assert "press.toml:2: not valid TOML" in message


def test_missing_required(tmp_path: Path) -> None:
    found = problems('description = "no title"\n', tmp_path)
    assert any("missing required key 'title'" in m for m in found)
    assert any("missing required key 'base_url'" in m for m in found)


def test_newsletter_table(tmp_path: Path) -> None:
    text = BASE_TOML + '[newsletter]\nsince = 2026-03-01\nfrom = "Zine <z@example.org>"\n'
    config = parse_config(text, tmp_path)
    assert config.newsletter.since == dt.date(2026, 3, 1)
    assert (config.newsletter.from_name, config.newsletter.from_address) == ("Zine", "z@example.org")
    [message] = problems(BASE_TOML + "[newsletter]\nsince = 'soon'\n", tmp_path)
    assert "press.toml:13: [newsletter] since must be a date (YYYY-MM-DD)" in message
    [message] = problems(BASE_TOML + "[newsletter]\nfrom = 'nobody'\n", tmp_path)
    assert "is not an email address" in message


def test_smtp_password_is_an_env_name_not_a_secret(tmp_path: Path) -> None:
    [message] = problems(BASE_TOML + '[smtp]\nhost = "mx"\npassword_env = "hunter2 secret!"\n', tmp_path)
    assert "password_env must name an environment variable" in message
    assert "hunter2" not in message
    config = parse_config(BASE_TOML + '[smtp]\nhost = "mx"\npassword_env = "SMTP_PASSWORD"\n', tmp_path)
    assert config.smtp is not None and config.smtp.starttls and config.smtp.port == 587


def test_missing_file_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no press.toml here"):
        load_config(tmp_path)
    (tmp_path / "press.toml").write_bytes(b'title = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"press.toml:1: not UTF-8"):
        load_config(tmp_path)


def test_several_errors_type(tmp_path: Path) -> None:
    with pytest.raises(PressErrors):
        parse_config("x = 1\ny = 2\n", tmp_path)


@pytest.mark.parametrize(
    ("value", "placeholder"),
    [
        ("https://example.org/", True),
        ("https://reviews.example.com:8443/x", True),
        ("https://press.test/", True),
        ("https://www.test-kitchen.com/", False),
        ("https://example.organic.com/", False),
        ("https://myexample.org/", False),
    ],
)
def test_placeholder_domains_are_named_and_real_ones_are_not(tmp_path: Path, value: str, placeholder: bool) -> None:
    from review_press.config import placeholder_warnings

    (tmp_path / "press.toml").write_text(f'title = "T"\nbase_url = "{value}"\n', "utf-8")
    warnings = placeholder_warnings(load_config(tmp_path))
    assert any("base_url" in w and "placeholder" in w for w in warnings) is placeholder, warnings


@pytest.mark.parametrize(
    ("table", "line", "words"),
    [
        ('[smtp]\nhost = "h"\n', "rate_per_second = inf", "[smtp] rate_per_second must be a finite number"),
        ('[smtp]\nhost = "h"\n', "rate_per_second = 1e12", "[smtp] rate_per_second is too large"),
        ("[bounces]\n", "soft_days = nan", "[bounces] soft_days must be a finite number"),
        ("[bounces]\n", "webhook_max_age = inf", "[bounces] webhook_max_age must be a finite number"),
    ],
)
def test_numbers_no_clock_or_counter_can_hold_are_refused_at_their_line(tmp_path: Path, table: str, line: str, words: str) -> None:
    from review_press.config import parse_config
    from review_press.errors import PressError

    text = 'title = "T"\nbase_url = "https://example.org/"\n' + table + line + "\n"
    with pytest.raises(PressError) as caught:
        parse_config(text, tmp_path)
    assert words in str(caught.value) and f"press.toml:{text.count(chr(10))}" in str(caught.value)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('[bounces]\nsource = "ftp://bounces@mail.example.org/"', "[bounces] source must be maildir:PATH"),
        ('[bounces]\nsource = "imaps://bounces:hunter22@mail.example.org/INBOX"', "must not hold a password"),
        ('[bounces]\nsource = "imaps://mail.example.org/INBOX"', "needs a user and a host"),
        ('[bounces]\nsource = "imaps://u@mail.example.org:99999/INBOX"', "is not a URL"),
        ('[bounces]\nsource = "maildir:"', "maildir: needs a folder"),
        ('[bounces]\npassword_env = "hunter22 secret"', "must name an environment variable"),
        ('[bounces]\nses_topic_arns = ["https://sns.example/topic"]', "must be a list of SNS topic ARNs"),
        ('[bounces]\nsendgrid_public_key = "<not base64>"', "must be the base64 key SendGrid shows"),
        ("[bounces]\npause_complaint_rate = 3", "must be a fraction between 0 and 1"),
        ("[bounces]\nsoft_limit = 0", "must be greater than 0"),
        ('[newsletter]\nbounce_address = "not an address"', "[newsletter] bounce_address"),
        ('[newsletter]\nbounce_address = "bounces+x@example.org"', "must not hold a +"),
    ],
)
def test_bad_bounce_settings_are_refused_at_their_line_without_quoting_a_password(tmp_path: Path, table: str, words: str) -> None:
    from review_press.config import parse_config
    from review_press.errors import PressError

    text = 'title = "T"\nbase_url = "https://example.org/"\n' + table + "\n"
    with pytest.raises(PressError) as caught:
        parse_config(text, tmp_path)
    message = str(caught.value)
    assert words in message and f"press.toml:{text.count(chr(10))}" in message, message
    assert "hunter22" not in message


def test_bounces_fetch_without_a_source_says_what_to_set_and_exits_1(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "posts").mkdir()
    (tmp_path / "press.toml").write_text('title = "T"\nbase_url = "https://example.org/"\n', "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "review_press", "bounces", "fetch", "--site", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "[bounces] source is not set" in done.stderr and "Traceback" not in done.stderr
