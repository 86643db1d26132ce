"""Which transport a site sends through: `[smtp]` when configured, else the Maildir outbox.

Shared by `publish` and the web app's confirmation email (which must not import `publish`).
"""

from __future__ import annotations

import os

from ..config import CONFIG_NAME, Config
from ..errors import DeliveryError
from .maildir import MaildirConnector, outbox_path
from .smtp import Connector, SmtpConnector


def connector_for(config: Config, environ: dict[str, str] | None = None) -> Connector:
    """The transport press.toml asks for: `[smtp]`, else the Maildir outbox. Reads the password here."""
    smtp = config.smtp
    if smtp is None:
        return MaildirConnector(outbox_path(config))
    env = os.environ if environ is None else environ
    password = ""
    if smtp.password_env:
        if smtp.password_env not in env:
            raise DeliveryError(
                f"[smtp] password_env names {smtp.password_env}, which is not set",
                path=config.root / CONFIG_NAME,
                hint=f"export {smtp.password_env}=... before publishing",
            )
        password = env[smtp.password_env]
    return SmtpConnector(
        host=smtp.host,
        port=smtp.port,
        username=smtp.username,
        password=password,
        starttls=smtp.starttls,
        ssl=smtp.ssl,
        timeout=smtp.timeout,
    )
