"""Delivery: an edition becomes one MIME message per subscriber (`message`), claimed in the
ledger (`ledger`), sent over SMTP (`smtp`) or dropped in the Maildir outbox (`maildir`)."""
