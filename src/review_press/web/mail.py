"""The confirmation email of double opt-in: a MIME message with the confirm link, sent at once.

It goes through the same transport as the newsletter (`delivery.connect.connector_for`: the Maildir
outbox by default, SMTP with an `[smtp]` table) and is DKIM-signed the same way. Sending runs
in a worker thread after the reply has gone out, so the reply's timing says nothing about
whether an address was already known.

It goes to whatever address the form was given, from the site's own address, before anyone
has shown that the address is theirs: so it says nothing the signup typed. The name is stored
(later newsletters greet the reader with it) but appears nowhere in this email, neither in
the greeting nor as a display name in To:, and the templates get `reader = ""`.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import logging
from collections.abc import Callable
from email.headerregistry import Address
from email.message import EmailMessage

from ..config import Config
from ..delivery.connect import connector_for
from ..delivery.dkim import signer_for
from ..delivery.maildir import MaildirConnector
from ..delivery.smtp import Connector, Envelope, SendError
from ..errors import DeliveryError
from ..newsletter import message_id, sender
from .render import CONFIRM_HTML, CONFIRM_TEXT
from .service import Outgoing, mask

log = logging.getLogger("review_press.web")


class Mailer:
    """Builds and sends confirmation emails for one site."""

    def __init__(self, config: Config, render: Callable[..., str], connector: Connector | None = None) -> None:
        self.config = config
        self.render = render
        self.who = sender(config)
        self.sender = self.who.envelope
        self.connector = connector or connector_for(config)
        self.sign: Callable[[bytes], bytes] | None = signer_for(config)
        if isinstance(self.connector, MaildirConnector):
            self.connector.open().close()  # make the outbox now: two first sends at once would race to create it

    def message(self, out: Outgoing, link: str, now: dt.datetime) -> bytes:
        """The confirmation email to `out` as MIME bytes (multipart/alternative, UTF-8)."""
        context = {"config": self.config, "reader": "", "link": link, "expires": out.expires}  # never the signup's name
        smtputf8 = not out.envelope.isascii()
        msg = EmailMessage(policy=email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP)
        msg["Subject"] = f"Confirm your subscription to {self.config.title}"
        msg["From"] = Address(display_name=self.who.name, addr_spec=self.sender)
        # the bare address, no display name; as text, since `Address` refuses a Unicode local part (SMTPUTF8)
        msg["To"] = out.envelope
        if self.who.reply_to:
            msg["Reply-To"] = self.who.reply_to
        msg["Date"] = email.utils.format_datetime(now)
        msg["Message-ID"] = message_id("confirm", self.who.domain)
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(self.render(CONFIRM_TEXT, **context), cte="quoted-printable")
        msg.add_alternative(self.render(CONFIRM_HTML, **context), subtype="html", cte="quoted-printable")
        data = msg.as_bytes()
        return self.sign(data) if self.sign else data

    def send(self, out: Outgoing, link: str) -> bool:
        """Deliver one confirmation email; a failure is logged (address masked), never raised."""
        try:
            data = self.message(out, link, dt.datetime.now(dt.UTC))
            conn = self.connector.open()
            try:
                conn.send(Envelope(self.sender, out.envelope, data, smtputf8=not out.envelope.isascii()))
            finally:
                conn.close()
        except (DeliveryError, SendError, OSError, ValueError) as exc:  # ValueError: the email package's header defects
            log.warning(
                "confirmation email to %s not sent: %s", mask(out.address), exc.__class__.__name__ if isinstance(exc, ValueError) else exc
            )
            return False
        return True
