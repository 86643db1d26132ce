"""The email edition: subject, preheader, HTML made for email, plain text, personalisation,
the MIME message, and the build's out/email/<slug>/ files."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import re
from pathlib import Path

import pytest
from PIL import Image

from email_sites import NEWSLETTER_TOML, edition_of, one_post, sample
from review_press.config import load_config
from review_press.content import load_posts
from review_press.delivery.message import build_message
from review_press.edition import MANAGE_SLOT, NAME_SLOT, UNSUBSCRIBE_SLOT, lint, make_edition, preheader
from review_press.edition import plan as edition_plan
from review_press.edition.plan import edition_files, plan_editions
from review_press.errors import BuildError, DeliveryError, PressError
from review_press.newsletter import is_newsletter
from review_press.preview import preview
from review_press.site import make_site
from review_press.theme import Theme
from sites import post_text, write_site

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
URL = re.compile(r"https?://[^\s)>\]]+|mailto:[^\s)>\]]+")
SENDER = {
    "from_name": "Review Press",
    "from_address": "letters@reviews.example.org",
    "reply_to": "ada@reviews.example.org",
    "list_id": "Review Press <reviews.example.org>",
    "unsubscribe_mailto": "unsubscribe@reviews.example.org",
}
RICH = """\
Intro with a [relative link](/about/) and a footnote.[^1]

## A heading

1. first
2. second with [an absolute link](https://example.com/a-page)

- bullet
- another bullet

```python
def score(review):
    return sum(review.stars)
```

| Show | Verdict |
|---|---|
| Run Away | Bleak |

![A still](/images/still.jpg)

<iframe src="https://www.youtube.com/embed/dQw4w9WgXcQ" title="Trailer"></iframe>

<iframe src="https://player.example.net/v/42"></iframe>

[^1]: The note, with [a source](https://example.net/source).
"""


def with_still(root: Path) -> Path:
    """`root` with static/images/still.jpg, the 640 x 360 still RICH shows (a build checks that it is there)."""
    (root / "static/images").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (640, 360), (90, 90, 90)).save(root / "static/images/still.jpg")
    return root


@pytest.fixture(scope="module")
def sample_edition():
    post, config, theme = sample()
    return make_edition(post, config, theme), post, config


# --- the edition ---------------------------------------------------------------------------


def test_sample_edition_has_front_matter_subject_preheader_and_canonical_url(sample_edition) -> None:
    edition, post, _config = sample_edition
    assert edition.subject == post.subject == "Run Away, reviewed: Netflix’s most brutal Coben thriller yet"
    assert 40 <= len(edition.preheader) <= 150
    assert edition.preheader.startswith("Some mysteries ask who did it.")
    assert edition.url == "https://reviews.example.org/posts/run-away-season-1-review/"
    assert edition.slug == "run-away-season-1-review"


def test_sample_edition_passes_every_lint_rule(sample_edition) -> None:
    edition, post, _config = sample_edition
    assert lint(edition, post) == []


def test_subject_falls_back_to_the_title(tmp_path: Path) -> None:
    edition, _ = edition_of(tmp_path, "Body text.", title="Just a title")
    assert edition.subject == "Just a title"


@pytest.mark.parametrize(
    ("summary", "body"),
    [
        ("Short.", "Short.\n\nA second paragraph that goes on for a while, giving the preview something to show."),
        ("Tiny.", "Tiny."),
        ("word " * 80, "Body."),
    ],
)
def test_preheader_is_padded_or_trimmed_to_40_to_150_characters(tmp_path: Path, summary: str, body: str) -> None:
    post, _config, _theme = one_post(tmp_path, body, summary=f'"{summary.strip()}"')
    text = preheader(post)
    assert 40 <= len(text) <= 150
    assert text.startswith(summary.strip()[:5])
    if len(summary) > 150:
        assert text.endswith("…")


def test_email_html_is_a_presentation_table_layout_with_head_metadata(sample_edition) -> None:
    html = sample_edition[0].html
    assert re.search(r'<html lang="en" dir="ltr"', html)
    for needle in (
        '<meta charset="utf-8">',
        'name="viewport"',
        'name="x-apple-disable-message-reformatting"',
        'name="color-scheme" content="light dark"',
        'name="supported-color-schemes" content="light dark"',
        '<table role="presentation" class="container" width="600"',
        '<!--[if mso]><table role="presentation" align="center" width="600"',
    ):
        assert needle in html, needle
    body = html.split("<body", 1)[1].split(">", 1)[1]
    assert body.lstrip().startswith('<div class="preheader"')
    footer = html.rsplit('class="footer"', 1)[1]
    assert "Review Press, 1 Example Street, London N1 1AA" in footer
    assert UNSUBSCRIBE_SLOT in footer and "because you subscribed" in footer
    assert f'href="{MANAGE_SLOT}"' in footer and "Manage your subscription</a>" in footer


def test_premailer_keeps_media_queries_with_important_and_inlines_the_rest(sample_edition) -> None:
    html = sample_edition[0].html
    head = html.split("</head>", 1)[0]
    assert "@media (prefers-color-scheme: dark)" in head and "@media only screen and (max-width: 620px)" in head
    media = head.split("@media", 1)[1]
    declarations = [d.strip() for block in re.findall(r"\{([^{}]*)\}", media) for d in block.split(";") if d.strip()]
    assert declarations and all(d.rstrip().endswith("!important") for d in declarations)
    # fonts and colours once per table cell, inherited by the text inside; a paragraph carries its margin
    assert re.search(r"<td class=\"content\" style='font-family:[^>]*color:#1f1d1a", html)
    assert re.search(r'<p [^>]*style="margin:0 0 16px"', html) and not re.search(r"<p [^>]*font-family", html)
    assert "<style>" in head and "<style" not in html.split("</head>", 1)[1]


def test_links_and_images_are_absolute_footnotes_point_at_the_web_page(tmp_path: Path) -> None:
    edition, _ = edition_of(with_still(tmp_path), RICH)
    base = "https://example.org/blog/posts/letter/"
    assert 'href="https://example.org/about/"' in edition.html  # "/about/" is the host's root, as on the web
    assert f'href="{base}#fn1"' in edition.html
    assert re.search(rf'href="{re.escape(base)}#fnref1[^"]*"', edition.html)
    # /images/still.jpg is static/images/still.jpg, which the site serves under its base_url's path
    img = re.search(r'<img src="https://example.org/blog/images/still.jpg"[^>]*>', edition.html)
    assert img and 'width="552"' in img.group(0) and 'height="310"' in img.group(0) and 'alt="A still"' in img.group(0)
    assert 'width="100%"' not in "".join(re.findall(r"<img[^>]*>", edition.html))


def test_iframes_become_links_youtube_with_its_thumbnail(tmp_path: Path) -> None:
    edition, post = edition_of(with_still(tmp_path), RICH)
    assert "<iframe" not in edition.html
    assert '<a href="https://www.youtube.com/watch?v=dQw4w9WgXcQ"' in edition.html
    assert 'src="https://img.youtube.com/vi/dQw4w9WgXcQ/hqdefault.jpg"' in edition.html
    assert 'href="https://player.example.net/v/42"' in edition.html
    assert "https://www.youtube.com/watch?v=dQw4w9WgXcQ" in edition.text
    assert "https://player.example.net/v/42" in edition.text
    assert lint(edition, post) == []


def test_highlighted_code_is_inlined_from_pygments_classes(tmp_path: Path) -> None:
    edition, _ = edition_of(with_still(tmp_path), RICH)
    code = re.search(r'<(?:pre|div) class="highlight".*?</pre>', edition.html, re.DOTALL).group(0)
    assert re.search(r'<span class="k" style="[^"]*color:#008000', code)  # `def`, Pygments' default style
    assert "white-space:pre-wrap" in code


def test_cssutils_says_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        edition_of(with_still(tmp_path), RICH)
    assert not [r for r in caplog.records if r.name.startswith(("CSSUTILS", "cssutils", "premailer"))]


# --- plain text -----------------------------------------------------------------------------


def test_plain_text_holds_every_link_and_wraps_at_72(tmp_path: Path) -> None:
    edition, _ = edition_of(with_still(tmp_path), RICH)
    html_links = set(re.findall(r'href="(https://[^"#]+)', edition.html)) - {"https://example.org/blog/posts/letter/"}
    assert html_links
    for url in html_links:
        assert url in edition.text, url
    for url in ("https://example.org/about/", "https://example.com/a-page", "https://example.net/source"):
        assert url in edition.text
    _html, text = edition.personalize("Ada Lovelace", "https://example.org/newsletter/unsubscribe?token=abc")
    for line in text.splitlines():
        assert len(line) <= 72 or URL.search(line), line


def test_plain_text_reads_like_text(tmp_path: Path) -> None:
    edition, _ = edition_of(with_still(tmp_path), RICH)
    text = edition.text
    assert "A heading\n---------" in text
    assert "1. first\n2. second with an absolute link (https://example.com/a-page)" in text
    assert "- bullet\n- another bullet" in text
    assert "    def score(review):\n        return sum(review.stars)" in text
    assert re.search(r"Show\s+\| Verdict\n-+\+-+\nRun Away \| Bleak", text)
    assert "[Image: A still] (https://example.org/blog/images/still.jpg)" in text
    assert "footnote.[1]" in text and "[1] The note, with a source (https://example.net/source)." in text
    assert "<" not in text.replace("<!--", "")


def test_plain_text_of_the_sample_is_wrapped_and_has_the_footer(sample_edition) -> None:
    edition, _post, _config = sample_edition
    _html, text = edition.personalize("Ada", "https://reviews.example.org/newsletter/unsubscribe?token=t")
    assert all(len(line) <= 72 or URL.search(line) for line in text.splitlines())
    assert "Unsubscribe: https://reviews.example.org/newsletter/unsubscribe?token=t" in text
    assert "Manage your subscription: https://reviews.example.org/newsletter/unsubscribe?token=t" in text  # no manage URL given
    _html, text = edition.personalize("Ada", "https://x.example/u?token=t", "https://x.example/manage?token=t")
    assert "Manage your subscription: https://x.example/manage?token=t\nUnsubscribe: https://x.example/u?token=t" in text
    assert f"Read on the web: {edition.url}" in text
    assert "Review Press, 1 Example Street" in text
    assert "How Run Away Compares to Other Harlan Coben Series\n-----" in text


# --- personalisation ------------------------------------------------------------------------


def test_personalize_escapes_a_hostile_name_and_url(sample_edition) -> None:
    edition = sample_edition[0]
    html, text = edition.personalize('<script>alert("x")</script>\r\nBcc: evil@example.com', "https://x.example/u?a=1&b=<2>")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Bcc: evil@example.com" in html
    assert 'href="https://x.example/u?a=1&amp;b=&lt;2&gt;"' in html
    assert '<script>alert("x")</script> Bcc: evil@example.com' in text
    assert "https://x.example/u?a=1&b=<2>" in text
    assert NAME_SLOT not in html + text and UNSUBSCRIBE_SLOT not in html + text and MANAGE_SLOT not in html + text


def test_personalize_fills_the_manage_link_escaped_and_apart_from_unsubscribe(sample_edition) -> None:
    edition = sample_edition[0]
    html, text = edition.personalize("Ada", "https://x.example/u?token=T", "https://x.example/manage?token=T&a=<b>")
    assert 'href="https://x.example/manage?token=T&amp;a=&lt;b&gt;"' in html and 'href="https://x.example/u?token=T"' in html
    assert html.index("Manage your subscription") < html.index(">Unsubscribe<")
    assert "Manage your subscription: https://x.example/manage?token=T&a=<b>" in text
    assert MANAGE_SLOT not in html + text and UNSUBSCRIBE_SLOT not in html + text


def test_personalize_without_a_name_says_you(sample_edition) -> None:
    html, text = sample_edition[0].personalize("  ", "https://x.example/u")
    assert "This email was sent to you because" in html and "This email was sent to you because" in text


# --- the MIME message -----------------------------------------------------------------------


def _message(edition, **overrides: object) -> bytes:
    args = {
        "to_name": "Zoë Ümlaut",
        "to_address": "zoe@example.org",
        "unsubscribe_url": "https://reviews.example.org/newsletter/unsubscribe?token=a=b&c",
        "message_id": "<post.1.abc@reviews.example.org>",
        "date": dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC),
        **SENDER,
        **overrides,
    }
    return build_message(edition, **args)  # type: ignore[arg-type]


def test_message_is_multipart_alternative_utf8_with_list_headers(sample_edition) -> None:
    edition = sample_edition[0]
    data = _message(edition)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = list(msg.iter_parts())
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    assert str(msg["To"]) == "Zoë Ümlaut <zoe@example.org>"
    assert str(msg["From"]) == "Review Press <letters@reviews.example.org>"
    assert str(msg["Subject"]) == edition.subject
    assert msg["Reply-To"] == "ada@reviews.example.org"
    assert msg["Message-ID"] == "<post.1.abc@reviews.example.org>"
    assert msg["Date"] == "Thu, 01 Jan 2026 09:00:00 +0000"
    assert msg["List-Id"] == "Review Press <reviews.example.org>"
    assert str(msg["List-Unsubscribe"]).replace(" ", "") == (
        "<https://reviews.example.org/newsletter/unsubscribe?token=a=b&c>,<mailto:unsubscribe@reviews.example.org>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    want_html, want_text = edition.personalize("Zoë Ümlaut", "https://reviews.example.org/newsletter/unsubscribe?token=a=b&c")
    assert plain.get_content().replace("\r\n", "\n") == want_text
    assert html.get_content().replace("\r\n", "\n") == want_html
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    assert "Subject: Run Away, reviewed: =?utf-8?q?Netflix=E2=80=99s?= most brutal Coben\r\n thriller yet" in head
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_message_carries_the_manage_link_in_both_bodies_and_only_crlf(sample_edition) -> None:
    edition = sample_edition[0]
    manage = "https://reviews.example.org/newsletter/manage?token=" + "m=" * 50  # longer than a quoted-printable line
    data = _message(edition, manage_url=manage)
    assert b"\n" not in data.replace(b"\r\n", b"")  # every soft break is CRLF, however long a slot or the text between
    msg = email.message_from_bytes(data, policy=email.policy.default)
    want_html, want_text = edition.personalize("Zoë Ümlaut", "https://reviews.example.org/newsletter/unsubscribe?token=a=b&c", manage)
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == want_text
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == want_html
    assert f"Manage your subscription: {manage}" in want_text
    assert "manage" not in str(msg["List-Unsubscribe"])  # the header stays the one-click unsubscribe


@pytest.mark.parametrize(
    "bad", ["http://insecure.example/manage", "https://x.example/m\r\nBcc: v@example.com", "manage?token=t", "https://x.example/a b"]
)
def test_message_refuses_a_manage_url_that_is_not_one_https_url(sample_edition, bad: str) -> None:
    with pytest.raises(DeliveryError):
        _message(sample_edition[0], manage_url=bad)


def test_message_bodies_survive_names_and_urls_that_need_encoding(sample_edition) -> None:
    edition = sample_edition[0]
    long_url = "https://reviews.example.org/newsletter/unsubscribe?token=" + "x=" * 60
    for name in ("Ann = Bee", "Ünïcødé " * 10, "trailing space ", "dot.\r\n.start"):
        msg = email.message_from_bytes(
            _message(edition, to_name=" ".join(name.split()), unsubscribe_url=long_url), policy=email.policy.default
        )
        html, text = edition.personalize(name, long_url)
        assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
        assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == html


@pytest.mark.parametrize(
    "field",
    ["to_name", "to_address", "from_name", "from_address", "reply_to", "list_id", "message_id", "unsubscribe_url", "unsubscribe_mailto"],
)
def test_message_refuses_header_injection(sample_edition, field: str) -> None:
    value = {
        "to_address": "zoe@example.org",
        "from_address": "a@example.org",
        "reply_to": "r@example.org",
        "unsubscribe_mailto": "u@example.org",
    }.get(field, "Nice")
    with pytest.raises(DeliveryError, match="line break"):
        _message(sample_edition[0], **{field: value + "\r\nBcc: victim@example.com"})


def test_message_refuses_a_subject_with_a_line_break(tmp_path: Path) -> None:
    edition, _ = edition_of(tmp_path, "Body.")
    forged = type(edition)(
        slug=edition.slug,
        subject="Hi\nBcc: x@example.com",
        preheader=edition.preheader,
        html=edition.html,
        text=edition.text,
        url=edition.url,
    )
    with pytest.raises(DeliveryError, match="line break"):
        _message(forged)


def test_message_refuses_bad_addresses_and_urls(sample_edition) -> None:
    for overrides in ({"to_address": "not an address"}, {"unsubscribe_url": "http://insecure.example/u"}, {"message_id": "no-at-sign"}):
        with pytest.raises(DeliveryError):
            _message(sample_edition[0], **overrides)
    with pytest.raises(DeliveryError, match="timezone"):
        _message(sample_edition[0], date=dt.datetime(2026, 1, 1))


def test_message_keeps_a_unicode_address_for_smtputf8(sample_edition) -> None:
    data = _message(sample_edition[0], to_address="zoë@exämple.org")
    assert "To: =?utf-8?b?Wm/DqyDDnG1sYXV0?= <zoë@exämple.org>".encode() in data


# --- the build's files ----------------------------------------------------------------------


def _site(tmp_path: Path, toml: str = NEWSLETTER_TOML):
    root = write_site(
        tmp_path / "site",
        {
            "2025-12-31-old.md": post_text(title="Old post", date="2025-12-31"),
            "2026-01-01-new.md": post_text(title="New post", date="2026-01-01", body="See [the docs](https://example.com/docs)."),
            "2026-02-01-later.md": post_text(title="Later post", date="2026-02-01"),
        },
        toml,
    )
    config = load_config(root)
    site = make_site(config, load_posts(config, use_cache=False), now=NOW)
    return site, Theme.for_site(config.templates_dir)


def test_only_posts_since_the_newsletter_date_get_email_files(tmp_path: Path) -> None:
    site, theme = _site(tmp_path)
    paths = sorted(a.path for a in plan_editions(site, theme, "k"))
    assert paths == [f"email/{slug}/{name}" for slug in ("later", "new") for name in ("email.eml", "email.txt", "index.html")]
    assert [p.slug for p in site.posts if is_newsletter(p, site.config, NOW)] == ["later", "new"]


def test_no_since_means_no_email_files(tmp_path: Path) -> None:
    site, theme = _site(tmp_path, NEWSLETTER_TOML.replace("since = 2026-01-01\n", ""))
    assert plan_editions(site, theme, "k") == []


def test_each_edition_is_rendered_once_for_its_three_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, theme = _site(tmp_path)
    calls: list[str] = []
    real = edition_plan.make_edition
    monkeypatch.setattr(edition_plan, "make_edition", lambda post, config, th: calls.append(post.slug) or real(post, config, th))
    arts = plan_editions(site, theme, "k")
    files = {a.path: a.render() for a in arts}
    assert sorted(calls) == ["later", "new"]
    msg = email.message_from_bytes(files["email/new/email.eml"], policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["To"] == "Reader <reader@example.invalid>"
    assert msg["Date"] == "Thu, 01 Jan 2026 00:00:00 +0000"
    assert "https://example.com/docs" in files["email/new/email.txt"].decode()
    assert b"unsubscribe?token=preview" in files["email/new/index.html"]
    assert NAME_SLOT.encode() not in files["email/new/index.html"]


def test_edition_files_are_deterministic_and_keys_follow_the_post(tmp_path: Path) -> None:
    site, theme = _site(tmp_path)
    first = {a.path: (a.key, a.render()) for a in plan_editions(site, theme, "k")}
    again = {a.path: (a.key, a.render()) for a in plan_editions(site, theme, "k")}
    assert first == again
    other_base = {a.path: a.key for a in plan_editions(site, theme, "other")}
    assert all(other_base[p] != first[p][0] for p in first)
    source = site.config.posts_dir / "2026-01-01-new.md"
    source.write_text(source.read_text().replace("the docs", "the manual"))
    changed = make_site(site.config, load_posts(site.config, use_cache=False), now=NOW)
    keys = {a.path: a.key for a in plan_editions(changed, theme, "k")}
    assert keys["email/new/index.html"] != first["email/new/index.html"][0]
    assert keys["email/later/index.html"] == first["email/later/index.html"][0]


def test_a_lint_failure_is_the_post_s_verdict_naming_the_post_and_line(tmp_path: Path) -> None:
    """The files are rendered all the same (the build goes on); the verdict holds the error."""
    root = write_site(
        tmp_path / "site",
        {
            "2026-01-05-bad.md": post_text(
                title="Bad", date="2026-01-05", body='Fine.\n\n<img src="http://insecure.example/a.png" alt="a">\n'
            )
        },
        NEWSLETTER_TOML,
    )
    config = load_config(root)
    site = make_site(config, load_posts(config, use_cache=False), now=NOW)
    planned = edition_plan.edition_plan(site, Theme.for_site(config.templates_dir), "k")
    assert all(a.render() for a in planned.artifacts)
    (verdict,) = planned.verdicts()
    assert not verdict.mailable and verdict.warnings == ()
    (error,) = verdict.errors
    assert isinstance(error, BuildError) and error.severity == "error"
    assert error.path == root / "posts" / "2026-01-05-bad.md" and error.line == 8
    assert "email edition of 'bad'" in str(error) and "http://insecure.example/a.png" in str(error)


def test_preview_renders_any_post_even_one_before_since(tmp_path: Path) -> None:
    site, _theme = _site(tmp_path)
    result = preview(site.config.root, "old", now=NOW)
    assert [p.name for p in result.paths] == ["index.html", "email.txt", "email.eml"]
    assert all(p.is_file() and p.parent == site.config.out_dir / "email" / "old" for p in result.paths)
    assert result.problems == ()
    assert "Old post" in result.html.read_text()
    with pytest.raises(PressError, match="no post with slug"):
        preview(site.config.root, "missing", now=NOW)


def test_edition_files_of_the_sample_post(sample_edition) -> None:
    edition, post, config = sample_edition
    files = edition_files(edition, post, config)
    msg = email.message_from_bytes(files["email.eml"], policy=email.policy.default)
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == files["email.txt"].decode()
    assert msg["List-Id"] == "Review Press <reviews.example.org>"
    assert str(msg["Subject"]) == "Run Away, reviewed: Netflix’s most brutal Coben thriller yet"
    text, html = files["email.txt"].decode(), files["index.html"].decode()
    assert "Manage your subscription: https://reviews.example.org/newsletter/manage?token=preview" in text  # beside its unsubscribe
    assert "Unsubscribe: https://reviews.example.org/newsletter/unsubscribe?token=preview" in text
    assert 'href="https://reviews.example.org/newsletter/manage?token=preview"' in html
