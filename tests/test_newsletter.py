"""`review_press.newsletter`: one sender, one newsletter rule, one Message-ID maker, shared by the
build's preview .eml, `publish` (to a real aiosmtpd server) and the web confirmation email."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from review_press.build import BuildOptions, build
from review_press.config import load_config
from review_press.content import load_posts
from review_press.errors import DeliveryError
from review_press.newsletter import (
    confirm_url,
    is_newsletter,
    manage_url,
    message_id,
    newsletter_posts,
    require_web_url,
    sender,
    unsubscribe_url,
)
from review_press.publish import PublishOptions, publish
from review_press.store import open_store
from smtp_servers import smtp_server

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
POSTS = {
    "2025-12-01-old.md": "---\ntitle: Old\ndate: 2025-12-01\n---\n\nBefore since.\n",
    "2026-01-05-first.md": "---\ntitle: First\ndate: 2026-01-05\n---\n\nThe *first* letter.\n",
    "2026-02-02-draft.md": "---\ntitle: Draft\ndate: 2026-02-02\ndraft: true\n---\n\nNot yet.\n",
    "2099-01-01-future.md": "---\ntitle: Future\ndate: 2099-01-01\n---\n\nLater.\n",
}
NEWSLETTER = """
[newsletter]
since = 2026-01-01
from = "{sender}"
reply_to = "editor@example.org"
list_id = "The Press <press.example.org>"

[web]
url = "https://example.org/newsletter/"

[smtp]
host = "127.0.0.1"
port = {port}
starttls = false
concurrency = 1
max_attempts = 2
timeout = 5
"""
SHARED = ("From", "Reply-To", "List-Id", "List-Unsubscribe-Post")
MID_FORM = re.compile(r"^<[A-Za-z0-9-]+\.[A-Za-z0-9-]+\.[0-9a-f]{12}@([A-Za-z0-9.-]+)>$")


@pytest.mark.parametrize("from_", ["The Press <letters@example.org>", "letters@example.org"])
def test_the_preview_eml_and_the_sent_message_carry_the_same_sender_headers(make_site: Callable[..., Path], from_: str) -> None:
    with smtp_server() as (server, port):
        root = make_site(POSTS, NEWSLETTER.format(sender=from_, port=port))
        build(root, BuildOptions(now=NOW))
        preview = email.message_from_bytes((root / "out/email/first/email.eml").read_bytes(), policy=email.policy.default)
        with open_store(load_config(root)) as store:
            store.add("ann@example.org", "Ann")
        report = publish(root, PublishOptions(environ={}))
        assert [p.slug for p in report.posts] == ["first"], report.refused
        (sent,) = [r.message for r in server.received]
    for name in SHARED:
        assert str(preview[name]) == str(sent[name]), name
    name = "The Press" if "<" in from_ else load_config(root).title  # no display name: the site's title, in both
    assert (sent["From"].addresses[0].display_name, sent["From"].addresses[0].addr_spec) == (name, "letters@example.org")
    preview_mid, sent_mid = MID_FORM.match(str(preview["Message-ID"])), MID_FORM.match(str(sent["Message-ID"]))
    assert preview_mid and sent_mid and preview_mid.group(1) == sent_mid.group(1) == "example.org"
    assert str(preview["List-Unsubscribe"]).startswith("<https://example.org/newsletter/unsubscribe?token=")
    assert str(sent["List-Unsubscribe"]).startswith("<https://example.org/newsletter/unsubscribe?token=")


def test_no_display_name_means_the_site_title_everywhere(make_site: Callable[..., Path]) -> None:
    config = load_config(make_site(POSTS, NEWSLETTER.format(sender="letters@example.org", port=25)))
    who = sender(config)
    assert (who.name, who.address, who.envelope, who.domain) == (config.title, "letters@example.org", "letters@example.org", "example.org")


def test_a_newsletter_post_is_since_not_draft_not_future(make_site: Callable[..., Path]) -> None:
    config = load_config(make_site(POSTS, NEWSLETTER.format(sender="letters@example.org", port=25)))
    posts = load_posts(config)
    assert [p.slug for p in newsletter_posts(config, posts, NOW)] == ["first"]
    assert {p.slug: is_newsletter(p, config, NOW) for p in posts} == {"old": False, "first": True, "draft": False, "future": False}


def test_a_build_with_drafts_and_future_posts_makes_no_email_files_for_them(make_site: Callable[..., Path]) -> None:
    root = make_site(POSTS, NEWSLETTER.format(sender="letters@example.org", port=25))
    build(root, BuildOptions(now=NOW, drafts=True, future=True))
    assert sorted(p.name for p in (root / "out/email").iterdir()) == ["first"]


def test_message_ids_share_one_form() -> None:
    ids = [
        message_id("campaign", "example.org", slug="a post", subscriber_id=7, secret=b"k" * 32),
        message_id("preview", "example.org", slug="a post", seed="x"),
        message_id("test", "example.org", slug="a post"),
        message_id("confirm", "example.org"),
    ]
    assert all(MID_FORM.match(i) for i in ids), ids
    assert ids[0] == message_id("campaign", "example.org", slug="a post", subscriber_id=7, secret=b"k" * 32)  # a re-send has the same one
    assert ids[0] != message_id("campaign", "example.org", slug="a post", subscriber_id=7, secret=b"j" * 32)  # keyed: no one else makes one
    with pytest.raises(ValueError):
        message_id("campaign", "example.org", slug="a post", subscriber_id=7)
    assert message_id("test", "example.org", slug="p") != message_id("test", "example.org", slug="p")


def test_links_live_under_the_web_url(make_site: Callable[..., Path]) -> None:
    config = load_config(make_site(POSTS, NEWSLETTER.format(sender="letters@example.org", port=25)))
    assert require_web_url(config) == "https://example.org/newsletter/"
    assert unsubscribe_url(config, "tok") == "https://example.org/newsletter/unsubscribe?token=tok"
    assert manage_url(config, "tok") == "https://example.org/newsletter/manage?token=tok"
    assert confirm_url(config, "tok") == "https://example.org/newsletter/confirm/tok"
    bare = load_config(make_site(POSTS, "[newsletter]\nsince = 2026-01-01\n", name="bare"))
    with pytest.raises(DeliveryError, match=r"\[web\] url is not set"):
        require_web_url(bare)
    with pytest.raises(DeliveryError, match=r"\[newsletter\] from is not set"):
        sender(bare)
    assert sender(bare, preview=True).domain  # the build's placeholder .eml still gets a sender
