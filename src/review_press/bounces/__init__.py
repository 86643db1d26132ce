"""Bounces and complaints after the SMTP session: reading them (`reports`), telling which
message each is about (`verp`, `inbox.Attributor`), fetching them from a bounce mailbox
(`inbox.fetch`; `maildir`, `remote` for IMAP and POP3) or a provider's webhook (`webhooks`), and
recording them through the store's `feedback` (each report once). The modules are imported one
by one: `newsletter` needs `verp` for the return path, and `inbox` needs `newsletter`.
"""
