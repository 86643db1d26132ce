"""Issue 15: every newsletter email links to the reader's manage-your-subscription page, with
the same signed token as its one-click unsubscribe. A real site in tmp_path, real SQLite, a real
aiosmtpd server; the links read back out of the messages as received."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from publishing import NEWSLETTER, POSTS, options, smtp_table, subscribe
from review_press.config import load_config
from review_press.publish import publish, send_test
from review_press.tokens import site_secret, verify_token
from smtp_servers import smtp_server

WEB = "https://example.org/newsletter/"


def _links(msg: EmailMessage) -> tuple[str, str, str]:
    """(List-Unsubscribe token, manage token in the text, manage URL in the HTML) of one message."""
    header = msg["List-Unsubscribe"].split("token=")[1].split(">")[0]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    in_text = re.search(r"Manage your subscription: (\S+)", text)
    in_html = re.search(r'<a href="([^"]+)"[^>]*>Manage your subscription</a>', html)
    assert in_text and in_html, (text[-400:], html[-1500:])
    assert in_text.group(1).startswith(WEB + "manage?token=")
    assert f"Unsubscribe: {WEB}unsubscribe?token={header}" in text
    return header, in_text.group(1).split("token=")[1], in_html.group(1)


def test_every_campaign_email_links_to_the_readers_manage_page_with_their_own_token(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = make_site(dict(POSTS), NEWSLETTER + smtp_table(port))
        ids = subscribe(root, 3)
        assert [p.sent for p in publish(root, options(slug="first")).posts] == [3]
    secret = site_secret(load_config(root))
    seen = {}
    for received in server.received:
        unsub, manage, html_url = _links(received.message)
        assert manage == unsub and html_url == f"{WEB}manage?token={unsub}"
        seen[received.recipient] = verify_token(secret, manage)
    assert seen == {f"r{i}@example.org": ids[i] for i in range(3)}


def test_a_test_send_carries_the_manage_link_too(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = make_site(dict(POSTS), NEWSLETTER + smtp_table(port))
        send_test(root, "me@example.org", options(slug="first"))
    [received] = server.received
    unsub, manage, _ = _links(received.message)
    assert manage == unsub
