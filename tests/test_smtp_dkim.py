"""DKIM signing: a real key (made with openssl), messages through a real server, verified with dkimpy."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest

from publishing import NEWSLETTER, POSTS, options, smtp_table, subscribe
from review_press.errors import DeliveryError
from review_press.publish import publish
from smtp_servers import smtp_server

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a key")


def make_key(folder: Path) -> bytes:
    """Write folder/dkim.pem; return the DNS TXT record that publishes its public key."""
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True).stdout
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def test_messages_are_signed_over_the_list_headers_and_verify(make_site: Callable[..., Path], tmp_path: Path) -> None:
    with smtp_server() as (server, port):
        toml = NEWSLETTER + smtp_table(port, dkim_key_file="dkim.pem", dkim_selector="mail", dkim_domain="example.org")
        root = make_site(POSTS, toml)
        record = make_key(root)
        subscribe(root, 2)
        publish(root, options(slug="first"))
    assert len(server.received) == 2
    for got in server.received:
        signature = got.message["DKIM-Signature"]
        assert "d=example.org" in signature and "s=mail" in signature
        signed = {h.strip().lower() for h in signature.split("h=")[1].split(";")[0].replace("\r\n", "").split(":")}
        assert {"from", "subject", "list-unsubscribe", "list-unsubscribe-post", "list-id", "message-id"} <= signed
        assert dkim.verify(got.data, dnsfunc=lambda name, timeout=5: record if name == b"mail._domainkey.example.org." else None)
        tampered = got.data.replace(b"List-Unsubscribe: <https://", b"List-Unsubscribe: <http://", 1)
        assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: record)


def test_a_bad_key_stops_publish_before_anything_is_sent(make_site: Callable[..., Path]) -> None:
    with smtp_server() as (server, port):
        root = make_site(POSTS, NEWSLETTER + smtp_table(port, dkim_key_file="dkim.pem", dkim_selector="mail", dkim_domain="example.org"))
        subscribe(root, 1)
        with pytest.raises(DeliveryError, match="cannot read the DKIM key"):
            publish(root, options())
        (root / "dkim.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
        with pytest.raises(DeliveryError, match="not a usable private key"):
            publish(root, options())
    assert server.received == []
