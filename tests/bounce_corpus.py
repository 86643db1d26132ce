"""Test support: the returned messages real mail systems write, as bytes, about one message we sent.

Each function builds one format, faithful to what the named system produces (the layout of its
notification text, the fields of its delivery-status or feedback-report part, the way it returns
the original: whole, headers only, or quoted as text), parameterised by the message it is about
(`Sent`: its Message-ID, envelope sender (a VERP return path or the plain sender), recipient),
the status code and the diagnostic. The bounce mailbox's own delivery trace (`Return-Path: <>`,
`Delivered-To:` the envelope sender the report was sent to) is on top, as Postfix or Dovecot
write it into a Maildir.

The formats follow public samples (RFC 3464 and RFC 5965 examples, Postfix's bounce templates,
Exim's bounce text, the Sisimai and flufl.bounce sample sets). `GARBAGE` lists the hostile or
broken messages, `CASES` every case with what reading it must give.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace

DATE = "Mon, 05 Jan 2026 09:00:00 +0000"
LATER = "Mon, 05 Jan 2026 09:00:07 +0000"


@dataclass(frozen=True)
class Sent:
    """The message a report is about, as the report quotes it."""

    message_id: str  # with its angle brackets
    return_path: str  # the envelope sender: a VERP address or the plain sender
    recipient: str
    sender: str = "letters@example.org"
    subject: str = "First"


def _uid(sent: Sent, *variant: object) -> str:
    """A report's own unique part of its Message-ID: each report about each message is another
    message (as it is from a real MTA), the same bytes for the same arguments."""
    return hashlib.sha256(repr((sent, variant)).encode()).hexdigest()[:14]


def _crlf(text: str) -> bytes:
    """A message's text as the bytes a Maildir holds (LF line ends, UTF-8)."""
    return text.replace("\r\n", "\n").encode("utf-8")


def _trace(to: str, sender: str = "") -> str:
    """What the bounce mailbox's MTA puts on top of a message it delivers (null sender by default)."""
    return (
        f"Return-Path: <{sender}>\n"
        f"Delivered-To: {to}\n"
        "Received: from mx.remote.example (mx.remote.example [192.0.2.25])\n"
        "\tby mail.example.org (Postfix) with ESMTPS id 4Dq1Zx0Mnbz9sWm\n"
        f"\tfor <{to}>; {LATER}\n"
    )


def original_headers(sent: Sent) -> str:
    """The headers of the newsletter message as it left us (and as a returned copy shows them)."""
    return (
        f"Return-Path: <{sent.return_path}>\n"
        "Received: from press.example.org (press.example.org [198.51.100.7])\n"
        "\tby mail.example.org (Postfix) with ESMTPSA id 4Dq1Zw6fL2z9sWk\n"
        f"\tfor <{sent.recipient}>; {DATE}\n"
        f"From: The Press <{sent.sender}>\n"
        f"To: Reader <{sent.recipient}>\n"
        f"Subject: {sent.subject}\n"
        f"Date: {DATE}\n"
        f"Message-ID: {sent.message_id}\n"
        "List-Id: The Press <press.example.org>\n"
        "List-Unsubscribe: <https://example.org/newsletter/unsubscribe?token=t0k3n>\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n"
        "MIME-Version: 1.0\n"
        'Content-Type: text/plain; charset="utf-8"\n'
        "Content-Transfer-Encoding: 7bit\n"
    )


def original(sent: Sent) -> str:
    """The whole newsletter message (headers and a short body)."""
    return original_headers(sent) + "\nThe first letter.\n\nUnsubscribe: https://example.org/newsletter/unsubscribe?token=t0k3n\n"


# --- Postfix --------------------------------------------------------------------------------------


def postfix_dsn(
    sent: Sent,
    *,
    status: str = "5.1.1",
    diagnostic: str = "",
    action: str = "failed",
    headers_only: bool = False,
) -> bytes:
    """Postfix's "Undelivered Mail Returned to Sender" (bounce template, RFC 3464): a 5.x.x
    refusal by the remote server, or (with a 4.x.x `status`) the final failure of a message that
    stayed in the queue past `maximal_queue_lifetime`."""
    rcpt = sent.recipient
    diagnostic = diagnostic or f"smtp; 550 {status} <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"
    temporary = status.startswith("4")
    why = (
        f"<{rcpt}>: connect to mx.remote.example[192.0.2.25]:25: Connection timed out"
        if temporary
        else f"<{rcpt}>: host mx.remote.example[192.0.2.25] said: {diagnostic.split(';', 1)[-1].strip()} (in reply to RCPT TO command)"
    )
    intro = (
        "I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients. It's attached below.\n"
        if not temporary
        else "I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients. It's attached below.\n"
        "\nThe message stayed in the queue for 5 days and has now been returned.\n"
    )
    returned = (
        "Content-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n" + original_headers(sent)
        if headers_only
        else "Content-Description: Undelivered Message\nContent-Type: message/rfc822\n\n" + original(sent)
    )
    return _crlf(
        _trace(sent.return_path) + "From: MAILER-DAEMON@mail.example.org (Mail Delivery System)\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        f"To: {sent.return_path}\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status;\n"
        '\tboundary="4Dq1Zx0Mnbz9sWm.1767603607/mail.example.org"\n'
        "Content-Transfer-Encoding: 8bit\n"
        f"Message-Id: <20260105090007.{_uid(sent, status, diagnostic, action, headers_only)}@mail.example.org>\n"
        f"Date: {LATER}\n"
        "\n"
        "This is a MIME-encapsulated message.\n"
        "\n"
        "--4Dq1Zx0Mnbz9sWm.1767603607/mail.example.org\n"
        "Content-Description: Notification\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "This is the mail system at host mail.example.org.\n"
        "\n" + intro + "\n"
        "For further assistance, please send mail to postmaster.\n"
        "\n"
        "If you do so, please include this problem report. You can\n"
        "delete your own text from the attached returned message.\n"
        "\n"
        "                   The mail system\n"
        "\n" + why + "\n"
        "\n"
        "--4Dq1Zx0Mnbz9sWm.1767603607/mail.example.org\n"
        "Content-Description: Delivery report\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mail.example.org\n"
        "X-Postfix-Queue-ID: 4Dq1Zw6fL2z9sWk\n"
        f"X-Postfix-Sender: rfc822; {sent.return_path}\n"
        f"Arrival-Date: {DATE}\n"
        "\n"
        f"Final-Recipient: rfc822; {rcpt}\n"
        f"Original-Recipient: rfc822;{rcpt}\n"
        f"Action: {action}\n"
        f"Status: {status}\n"
        "Remote-MTA: dns; mx.remote.example\n"
        f"Diagnostic-Code: {diagnostic}\n"
        "\n"
        "--4Dq1Zx0Mnbz9sWm.1767603607/mail.example.org\n" + returned + "\n"
        "--4Dq1Zx0Mnbz9sWm.1767603607/mail.example.org--\n"
    )


def postfix_delayed(sent: Sent) -> bytes:
    """Postfix's "Delayed Mail (still being retried)" warning (`delay_warning_time`): Action: delayed."""
    rcpt = sent.recipient
    return _crlf(
        _trace(sent.return_path) + "From: MAILER-DAEMON@mail.example.org (Mail Delivery System)\n"
        "Subject: Delayed Mail (still being retried)\n"
        f"To: {sent.return_path}\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status;\n"
        '\tboundary="4Dq1Zx1Abcz9sWn.1767618007/mail.example.org"\n'
        "Content-Transfer-Encoding: 8bit\n"
        f"Message-Id: <20260105130007.{_uid(sent, 'delayed')}@mail.example.org>\n"
        "Date: Mon, 05 Jan 2026 13:00:07 +0000\n"
        "\n"
        "This is a MIME-encapsulated message.\n"
        "\n"
        "--4Dq1Zx1Abcz9sWn.1767618007/mail.example.org\n"
        "Content-Description: Notification\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "This is the mail system at host mail.example.org.\n"
        "\n"
        "####################################################################\n"
        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
        "####################################################################\n"
        "\n"
        "Your message could not be delivered for more than 4 hour(s).\n"
        "It will be retried until it is 5 day(s) old.\n"
        "\n"
        "                   The mail system\n"
        "\n"
        f"<{rcpt}>: connect to mx.remote.example[192.0.2.25]:25: Connection timed out\n"
        "\n"
        "--4Dq1Zx1Abcz9sWn.1767618007/mail.example.org\n"
        "Content-Description: Delivery report\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mail.example.org\n"
        "X-Postfix-Queue-ID: 4Dq1Zw6fL2z9sWk\n"
        f"X-Postfix-Sender: rfc822; {sent.return_path}\n"
        f"Arrival-Date: {DATE}\n"
        "\n"
        f"Final-Recipient: rfc822; {rcpt}\n"
        f"Original-Recipient: rfc822;{rcpt}\n"
        "Action: delayed\n"
        "Status: 4.4.1\n"
        "Diagnostic-Code: X-Postfix; connect to mx.remote.example[192.0.2.25]:25: Connection timed out\n"
        "Will-Retry-Until: Sat, 10 Jan 2026 09:00:00 +0000 (UTC)\n"
        "\n"
        "--4Dq1Zx1Abcz9sWn.1767618007/mail.example.org\n"
        "Content-Description: Undelivered Message Headers\n"
        "Content-Type: text/rfc822-headers\n"
        "\n" + original_headers(sent) + "\n"
        "--4Dq1Zx1Abcz9sWn.1767618007/mail.example.org--\n"
    )


def postfix_expired(sent: Sent) -> bytes:
    """Postfix's final failure after the queue lifetime, of a mailbox that stayed full (4.2.2)."""
    return postfix_dsn(
        sent,
        status="4.2.2",
        diagnostic=f"smtp; 452 4.2.2 <{sent.recipient}>: Recipient address rejected: Mailbox full",
        headers_only=True,
    )


# --- Exim -----------------------------------------------------------------------------------------


def exim_text(sent: Sent, *, code: str = "550 5.1.1", reason: str = "User unknown") -> bytes:
    """Exim's classic bounce: plain text, the failed addresses in X-Failed-Recipients, the returned
    message quoted after "------ This is a copy of the message, including all the headers." (no
    delivery-status part: `bounce_message_file` default, before Exim 4.82's DSN support)."""
    rcpt = sent.recipient
    return _crlf(
        _trace(sent.return_path) + f"X-Failed-Recipients: {rcpt}\n"
        "Auto-Submitted: auto-replied\n"
        "From: Mail Delivery System <Mailer-Daemon@mx.remote.example>\n"
        f"To: {sent.return_path}\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        f"Message-Id: <E1vQ7Zx-{_uid(sent, code, reason)}-2u@mx.remote.example>\n"
        f"Date: {LATER}\n"
        "\n"
        "This message was created automatically by mail delivery software.\n"
        "\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n"
        "\n"
        f"  {rcpt}\n"
        "    host mx2.remote.example [192.0.2.26]\n"
        f"    SMTP error from remote mail server after RCPT TO:<{rcpt}>:\n"
        f"    {code} <{rcpt}>: {reason}\n"
        "\n"
        "------ This is a copy of the message, including all the headers. ------\n"
        "\n" + original(sent)
    )


def exim_dsn(sent: Sent, *, code: str = "550 5.1.1", reason: str = "User unknown") -> bytes:
    """Exim 4.82+ bounce as a DSN (multipart/report): Exim's text, a delivery-status whose Status is
    the generic 5.0.0 (the remote's code is in the diagnostic), and the returned message."""
    rcpt = sent.recipient
    boundary = "1767603607-eximdsn-1804289383"
    return _crlf(
        _trace(sent.return_path) + f"X-Failed-Recipients: {rcpt}\n"
        "Auto-Submitted: auto-replied\n"
        "From: Mail Delivery System <Mailer-Daemon@mx.remote.example>\n"
        f"To: {sent.return_path}\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n'
        "MIME-Version: 1.0\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        f"Message-Id: <E1vQ7Zx-{_uid(sent, code, reason)}-3v@mx.remote.example>\n"
        f"Date: {LATER}\n"
        "\n"
        f"--{boundary}\n"
        "Content-type: text/plain; charset=us-ascii\n"
        "\n"
        "This message was created automatically by mail delivery software.\n"
        "\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n"
        "\n"
        f"  {rcpt}\n"
        "    host mx2.remote.example [192.0.2.26]\n"
        f"    SMTP error from remote server for RCPT TO command, host: mx2.remote.example (192.0.2.26) reason: {code} {reason}\n"
        "\n"
        f"--{boundary}\n"
        "Content-type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mx.remote.example\n"
        "\n"
        "Action: failed\n"
        f"Final-Recipient: rfc822;{rcpt}\n"
        "Status: 5.0.0\n"
        "Remote-MTA: dns; mx2.remote.example\n"
        f"Diagnostic-Code: smtp; {code} {reason}\n"
        "\n"
        f"--{boundary}\n"
        "Content-type: message/rfc822\n"
        "\n" + original(sent) + "\n"
        f"--{boundary}--\n"
    )


# --- qmail ----------------------------------------------------------------------------------------


def qmail_text(sent: Sent) -> bytes:
    """qmail-send's bounce (QSBMF): "Hi. This is the qmail-send program", the recipient paragraph,
    then "--- Below this line is a copy of the message." and the message."""
    rcpt = sent.recipient
    return _crlf(
        _trace(sent.return_path) + f"Date: {LATER}\n"
        "From: MAILER-DAEMON@qmail.remote.example\n"
        f"To: {sent.return_path}\n"
        "Subject: failure notice\n"
        f"Message-ID: <20260105090007.{_uid(sent)}.qmail@qmail.remote.example>\n"
        "\n"
        "Hi. This is the qmail-send program at qmail.remote.example.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n"
        "\n"
        f"<{rcpt}>:\n"
        "Sorry, no mailbox here by that name. (#5.1.1)\n"
        "\n"
        "--- Below this line is a copy of the message.\n"
        "\n" + original(sent)
    )


# --- Gmail ----------------------------------------------------------------------------------------

GMAIL_TEXT = {
    "5.1.1": (
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
        " 550-5.1.1 double-checking the recipient's email address for typos or\n"
        " 550-5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser"
    ),
    "5.2.2": (
        "552-5.2.2 The email account that you tried to reach is over quota. Please direct\n"
        " 552-5.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaTemp"
    ),
    "5.7.26": (
        "550-5.7.26 Unauthenticated email from example.org is not accepted due to domain's\n"
        " 550-5.7.26 DMARC policy. Please contact the administrator of example.org domain\n"
        " 550-5.7.26 if this was a legitimate mail. https://support.google.com/mail/answer/2451690"
    ),
}


def gmail_dsn(sent: Sent, *, status: str = "5.1.1") -> bytes:
    """Gmail's "Delivery Status Notification (Failure)" from mailer-daemon@googlemail.com: text and
    HTML explanation, the delivery-status (the remote's multi-line reply as diagnostic) and the
    returned message; `status` one of `GMAIL_TEXT`."""
    rcpt = sent.recipient
    reply = GMAIL_TEXT[status]
    text_reply = reply.replace("\n ", "\n")
    boundary = "000000000000c1a2b3d4e5f60718"
    return _crlf(
        _trace(sent.return_path) + "Received: by 2002:a05:6a10:1b0c:b0:5f1:2c3d:4e5f with SMTP id u12csp123456pxb;\n"
        f"        {LATER}\n"
        "MIME-Version: 1.0\n"
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
        f"To: {sent.return_path}\n"
        "Auto-Submitted: auto-replied\n"
        "Subject: Delivery Status Notification (Failure)\n"
        f"References: {sent.message_id}\n"
        f"In-Reply-To: {sent.message_id}\n"
        f"X-Failed-Recipients: {rcpt}\n"
        f"Message-ID: <6778c4a7.{_uid(sent, status)}.0001.GMR@mx.google.com>\n"
        f"Date: {LATER}\n"
        f'Content-Type: multipart/report; boundary="{boundary}"; report-type=delivery-status\n'
        "\n"
        f"--{boundary}\n"
        'Content-Type: multipart/related; boundary="000000000000c1a2b3d4e5f60719"\n'
        "\n"
        "--000000000000c1a2b3d4e5f60719\n"
        'Content-Type: multipart/alternative; boundary="000000000000c1a2b3d4e5f6071a"\n'
        "\n"
        "--000000000000c1a2b3d4e5f6071a\n"
        'Content-Type: text/plain; charset="UTF-8"\n'
        "\n"
        "\n"
        "** Address not found **\n"
        "\n"
        f"Your message wasn't delivered to {rcpt} because the address couldn't be found, or is unable to receive mail.\n"
        "\n"
        "Learn more here: https://support.google.com/mail/?p=NoSuchUser\n"
        "\n"
        "The response from the remote server was:\n"
        f"{text_reply}\n"
        "\n"
        "--000000000000c1a2b3d4e5f6071a\n"
        'Content-Type: text/html; charset="UTF-8"\n'
        "\n"
        "<html><head></head><body><h2>Address not found</h2>\n"
        f"<p>Your message wasn't delivered to <b>{rcpt}</b> because the address couldn't be found.</p>\n"
        f'<p style="font-family:monospace">{text_reply}</p></body></html>\n'
        "\n"
        "--000000000000c1a2b3d4e5f6071a--\n"
        "--000000000000c1a2b3d4e5f60719--\n"
        f"--{boundary}\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; googlemail.com\n"
        "Received-From-MTA: dns; mail.example.org\n"
        f"Arrival-Date: {DATE}\n"
        f"X-Original-Message-ID: {sent.message_id}\n"
        "\n"
        f"Final-Recipient: rfc822; {rcpt}\n"
        "Action: failed\n"
        f"Status: {status}\n"
        "Remote-MTA: dns; gmail-smtp-in.l.google.com. (2a00:1450:400c:c0b::1b, the server for the domain gmail.com.)\n"
        f"Diagnostic-Code: smtp; {reply}\n"
        f"Last-Attempt-Date: {LATER}\n"
        "\n"
        f"--{boundary}\n"
        "Content-Type: message/rfc822\n"
        "\n" + original(sent) + "\n"
        f"--{boundary}--\n"
    )


# --- Outlook / Exchange Online --------------------------------------------------------------------

OUTLOOK_TEXT = {
    "5.1.10": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {rcpt} not found by SMTP address lookup",
    "5.4.1": "550 5.4.1 Recipient address rejected: Access denied. For more information see https://aka.ms/EXOSmtpErrors [AM0PR01MB1234.eurprd01.prod.exchangelabs.com 2026-01-05T09:00:07.123Z 08DD2C3B4A5F6E7D]",
}


def outlook_ndr(sent: Sent, *, status: str = "5.1.10") -> bytes:
    """Exchange Online's NDR ("Undeliverable: ...", from postmaster@outlook.com): HTML and text
    explanation, a delivery-status with X-Display-Name, and the returned message; `status` one
    of `OUTLOOK_TEXT`."""
    rcpt = sent.recipient
    reply = OUTLOOK_TEXT[status].format(rcpt=rcpt)
    boundary = "_000_AM0PR01MB1234A1B2C3D4E5F6eurprd01prodexchangelabscom_"
    return _crlf(
        _trace(sent.return_path) + "From: Microsoft Outlook\n"
        "\t<postmaster@outlook.com>\n"
        f"To: <{sent.return_path}>\n"
        "Date: Mon, 5 Jan 2026 09:00:07 +0000\n"
        "Content-Type: multipart/report; report-type=delivery-status;\n"
        f'\tboundary="{boundary}"\n'
        "Content-Language: en-US\n"
        f"Message-ID: <1b2c3d4e-{_uid(sent, status)}@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>\n"
        f"In-Reply-To: {sent.message_id}\n"
        f"References: {sent.message_id}\n"
        f"Subject: Undeliverable: {sent.subject}\n"
        "Auto-Submitted: auto-replied\n"
        "X-MS-Exchange-Message-Is-Ndr:\n"
        "X-MS-PublicTrafficType: Email\n"
        "MIME-Version: 1.0\n"
        "\n"
        f"--{boundary}\n"
        'Content-Type: multipart/alternative; boundary="_002_alt_"\n'
        "\n"
        "--_002_alt_\n"
        'Content-Type: text/plain; charset="us-ascii"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        "Your message to " + rcpt + " couldn't be delivered.\n"
        "\n"
        "The email address wasn't found at the destination domain. It might be misspe=\n"
        "lled or it might not exist.\n"
        "\n"
        "Action Required                          Recipient\n"
        "Unknown To address\n"
        "\n"
        "Diagnostic information for administrators:\n"
        "\n"
        "Generating server: AM0PR01MB1234.eurprd01.prod.exchangelabs.com\n"
        f"{rcpt}\n"
        f"Remote server returned '{reply}'\n"
        "\n"
        "--_002_alt_\n"
        'Content-Type: text/html; charset="us-ascii"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        "<html><body><p>Your message to " + rcpt + " couldn't be delivered.</p></body></html>\n"
        "\n"
        "--_002_alt_--\n"
        "\n"
        f"--{boundary}\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com\n"
        "Received-From-MTA: dns;mail.example.org\n"
        "Arrival-Date: Mon, 5 Jan 2026 09:00:06 +0000\n"
        "\n"
        f"Final-Recipient: rfc822;{rcpt}\n"
        "Action: failed\n"
        f"Status: {status}\n"
        f"Diagnostic-Code: smtp;{reply}\n"
        "X-Display-Name: Reader\n"
        "\n"
        f"--{boundary}\n"
        "Content-Type: message/rfc822\n"
        "\n" + original(sent) + "\n"
        f"--{boundary}--\n"
    )


# --- Yahoo ----------------------------------------------------------------------------------------


def yahoo_dsn(sent: Sent) -> bytes:
    """Yahoo's "Delivery Status Notification" (RFC 3464 since 2019): "Sorry, we were unable to
    deliver your message", Status 5.0.0 and the "554 delivery error: dd ..." diagnostic."""
    rcpt = sent.recipient
    boundary = "----=_Part_1234567_987654321.1767603607000"
    reply = f"554 delivery error: dd This user doesn't have a yahoo.com account ({rcpt}) [-5] - mta4321.mail.gq1.yahoo.com"
    return _crlf(
        _trace(sent.return_path) + f"Date: {LATER}\n"
        "From: MAILER-DAEMON@yahoo.com\n"
        f"To: {sent.return_path}\n"
        f"Message-ID: <1234567.{_uid(sent)}.1767603607000@mta4321.mail.gq1.yahoo.com>\n"
        "Subject: Failure Notice\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n'
        "\n"
        f"--{boundary}\n"
        "Content-Type: text/plain; charset=UTF-8\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        "Sorry, we were unable to deliver your message to the following address.\n"
        "\n"
        f"<{rcpt}>:\n"
        f"{reply}\n"
        "\n"
        f"--{boundary}\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mta4321.mail.gq1.yahoo.com\n"
        f"Arrival-Date: {DATE}\n"
        "\n"
        f"Final-Recipient: rfc822; {rcpt}\n"
        "Action: failed\n"
        "Status: 5.0.0\n"
        "Remote-MTA: dns; mta6.am0.yahoodns.net\n"
        f"Diagnostic-Code: smtp; {reply}\n"
        "\n"
        f"--{boundary}\n"
        "Content-Type: message/rfc822\n"
        "\n" + original(sent) + "\n"
        f"--{boundary}--\n"
    )


def yahoo_text(sent: Sent) -> bytes:
    """Yahoo's older plain-text "Failure Notice" (no delivery-status; flufl.bounce's Yahoo detector)."""
    rcpt = sent.recipient
    return _crlf(
        _trace(sent.return_path) + f"Date: {LATER}\n"
        "From: MAILER-DAEMON@yahoo.com\n"
        f"To: {sent.return_path}\n"
        "Subject: Failure Notice\n"
        f"Message-ID: <1234568.{_uid(sent)}.1767603607001@mta4322.mail.gq1.yahoo.com>\n"
        "\n"
        "Sorry, we were unable to deliver your message to the following address.\n"
        "\n"
        f"<{rcpt}>:\n"
        f"554: delivery error: dd This user doesn't have a yahoo.com account ({rcpt}) [0] - mta4322.mail.gq1.yahoo.com\n"
        "\n"
        "--- Below this line is a copy of the message.\n"
        "\n" + original(sent)
    )


# --- ARF feedback reports -------------------------------------------------------------------------


def arf(
    sent: Sent,
    *,
    feedback_type: str = "abuse",
    user_agent: str = "Yahoo!-Mail-Feedback/2.0",
    reporter: str = "Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>",
    to: str = "",
    rcpt_to: bool = True,
    redact: str = "",
    extra_fields: str = "",
) -> bytes:
    """An RFC 5965 feedback report as mailbox providers send them to a sender's feedback address
    (`to`: where the FBL was registered, by default the plain sender): the human part, the
    machine-readable `message/feedback-report` (Original-Mail-From: the envelope sender;
    Original-Rcpt-To unless `rcpt_to` is False), and the reported message with its Return-Path.
    `redact` replaces the recipient in the returned message (Microsoft JMRP, AOL)."""
    to = to or sent.sender
    returned = original(sent)
    if redact:
        returned = returned.replace(sent.recipient, redact)
    rcpt_line = f"Original-Rcpt-To: <{sent.recipient}>\n" if rcpt_to else ""
    boundary = "----=_Part_7654321_123456789.1767690000000"
    return _crlf(
        _trace(to, "feedback@arf.mail.yahoo.com")
        + f"From: {reporter}\n"
        + f"To: {to}\n"
        + f"Subject: FW: {sent.subject}\n"
        + "Date: Tue, 06 Jan 2026 10:00:00 +0000\n"
        + f"Message-ID: <1767690000.{_uid(sent, feedback_type, user_agent)}.arf@arf.mail.yahoo.com>\n"
        + "MIME-Version: 1.0\n"
        + f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\n'
        + "\n"
        + f"--{boundary}\n"
        + "Content-Type: text/plain; charset=us-ascii\n"
        + "Content-Disposition: inline\n"
        + "\n"
        + "This is an email abuse report for an email message received from IP 198.51.100.7 on Mon, 05 Jan 2026 09:00:00 +0000.\n"
        + "For more information about this format please see http://www.mipassoc.org/arf/.\n"
        + "\n"
        + f"--{boundary}\n"
        + "Content-Type: message/feedback-report\n"
        + "\n"
        + f"Feedback-Type: {feedback_type}\n"
        + f"User-Agent: {user_agent}\n"
        + "Version: 1\n"
        + f"Original-Mail-From: <{sent.return_path}>\n"
        + rcpt_line
        + f"Arrival-Date: {DATE}\n"
        + "Source-IP: 198.51.100.7\n"
        + "Reported-Domain: example.org\n"
        + "Authentication-Results: mta1001.mail.gq1.yahoo.com; dkim=pass header.d=example.org; spf=pass smtp.mailfrom=example.org\n"
        + extra_fields
        + "\n"
        + f"--{boundary}\n"
        + "Content-Type: message/rfc822\n"
        + "Content-Disposition: inline\n"
        + "\n"
        + returned
        + "\n"
        + f"--{boundary}--\n"
    )


def yahoo_arf(sent: Sent) -> bytes:
    """Yahoo's complaint feedback loop: Feedback-Type abuse, Original-Mail-From and Original-Rcpt-To."""
    return arf(sent)


def jmrp_arf(sent: Sent) -> bytes:
    """Microsoft JMRP (Outlook.com, Hotmail): ARF whose recipient is redacted everywhere (no
    Original-Rcpt-To, `To:` rewritten), from staff@hotmail.com."""
    return arf(
        sent,
        user_agent="Hotmail FBL",
        reporter="staff@hotmail.com",
        rcpt_to=False,
        redact="redacted@hotmail.com",
        extra_fields="Removal-Recipient: redacted@hotmail.com\n",
    )


def aol_arf(sent: Sent) -> bytes:
    """AOL's (and Comcast's, same software) feedback loop: ARF with the recipient redacted to a
    placeholder, User-Agent "AOL SComp"."""
    return arf(sent, user_agent="AOL SComp", reporter="AOL Feedback Loop <scomp@aol.net>", rcpt_to=False, redact="redacted@aol.com")


def not_spam_arf(sent: Sent) -> bytes:
    """An ARF "not-spam" report (the reader moved it out of the spam folder): asks nothing of us."""
    return arf(sent, feedback_type="not-spam")


# --- notices that are not failures ----------------------------------------------------------------


def dsn_notice(sent: Sent, *, action: str = "delivered") -> bytes:
    """A success DSN (NOTIFY=SUCCESS): Action delivered or relayed, Status 2.0.0."""
    rcpt = sent.recipient
    return _crlf(
        _trace(sent.return_path) + "From: MAILER-DAEMON@mail.example.org (Mail Delivery System)\n"
        "Subject: Successful Mail Delivery Report\n"
        f"To: {sent.return_path}\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status;\n"
        '\tboundary="4Dq1Zx2Defz9sWp.1767603607/mail.example.org"\n'
        f"Message-Id: <20260105090007.{_uid(sent, action)}@mail.example.org>\n"
        f"Date: {LATER}\n"
        "\n"
        "--4Dq1Zx2Defz9sWp.1767603607/mail.example.org\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "This is the mail system at host mail.example.org.\n\nYour message was successfully delivered to the destination(s)\n"
        "listed below.\n\n"
        f"<{rcpt}>: {action} via mx.remote.example[192.0.2.25]:25: 250 2.0.0 Ok: queued as 4Dq1Zy\n"
        "\n"
        "--4Dq1Zx2Defz9sWp.1767603607/mail.example.org\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mail.example.org\n"
        "\n"
        f"Final-Recipient: rfc822; {rcpt}\n"
        f"Action: {action}\n"
        "Status: 2.0.0\n"
        "Remote-MTA: dns; mx.remote.example\n"
        "Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as 4Dq1Zy\n"
        "\n"
        "--4Dq1Zx2Defz9sWp.1767603607/mail.example.org\n"
        "Content-Type: text/rfc822-headers\n"
        "\n" + original_headers(sent) + "\n"
        "--4Dq1Zx2Defz9sWp.1767603607/mail.example.org--\n"
    )


def out_of_office(sent: Sent) -> bytes:
    """An out-of-office auto-reply (RFC 3834): sent to the return path with a null sender,
    Auto-Submitted: auto-replied, In-Reply-To our message, as Exchange and Gmail send them."""
    return _crlf(
        _trace(sent.return_path) + f"From: Reader <{sent.recipient}>\n"
        f"To: <{sent.return_path}>\n"
        f"Subject: Automatic reply: {sent.subject}\n"
        "Date: Mon, 5 Jan 2026 09:00:09 +0000\n"
        f"Message-ID: <ooo.{_uid(sent)}@remote.example>\n"
        f"In-Reply-To: {sent.message_id}\n"
        f"References: {sent.message_id}\n"
        "Auto-Submitted: auto-replied\n"
        "X-Auto-Response-Suppress: All\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "MIME-Version: 1.0\n"
        "\n"
        "I am out of the office until 12 January with no access to email.\n"
        "For anything urgent please call the front desk.\n"
    )


def human_reply(sent: Sent) -> bytes:
    """A person answering the letter, with the bounce address (or the return path) as recipient."""
    return _crlf(
        _trace(sent.return_path, sent.recipient) + f"From: Reader <{sent.recipient}>\n"
        f"To: {sent.return_path}\n"
        f"Subject: Re: {sent.subject}\n"
        "Date: Mon, 5 Jan 2026 10:12:00 +0000\n"
        f"Message-ID: <CAHuman+{_uid(sent)}@mail.remote.example>\n"
        f"In-Reply-To: {sent.message_id}\n"
        f"References: {sent.message_id}\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "MIME-Version: 1.0\n"
        "\n"
        "Thanks for the letter! Could you send the next one to my work address?\n"
        "\n"
        f"> {original(sent).splitlines()[-1]}\n"
    )


# --- damaged but still real ------------------------------------------------------------------------


def dsn_latin1_diagnostic(sent: Sent) -> bytes:
    """A French server's refusal quoted in Latin-1 inside the delivery-status and the notification
    text declared utf-8 (8-bit bytes in a DSN field: seen from Postfix relaying such replies)."""
    data = postfix_dsn(sent, diagnostic=f"smtp; 550 5.1.1 <{sent.recipient}>: adresse inconnue")
    data = data.replace(b"adresse inconnue", "adresse inconnue, le destinataire n'existe pas (\xe9chec)".encode("latin-1"))
    return data.replace(b"This is the mail system", "Syst\xe8me de messagerie: this is the mail system".encode("latin-1"), 1)


def dsn_unknown_charset(sent: Sent) -> bytes:
    """A Postfix DSN whose notification part names a charset no codec knows."""
    return postfix_dsn(sent).replace(b"text/plain; charset=utf-8", b"text/plain; charset=x-unknown", 1)


def dsn_broken_base64_headers(sent: Sent) -> bytes:
    """A Postfix DSN whose returned headers part is base64 that does not decode."""
    data = postfix_dsn(sent, headers_only=True)
    head, _, _ = data.partition(b"Content-Type: text/rfc822-headers\n\n")
    broken = base64.b64encode(original_headers(sent).encode())[:-7] + b"!!*\n"
    return head + b"Content-Type: text/rfc822-headers\nContent-Transfer-Encoding: base64\n\n" + broken


def global_dsn(sent: Sent) -> bytes:
    """An SMTPUTF8 bounce (RFC 6533): message/global-delivery-status and message/global-headers,
    as Postfix sends when the message used SMTPUTF8."""
    data = postfix_dsn(sent, headers_only=True)
    return data.replace(b"Content-Type: message/delivery-status", b"Content-Type: message/global-delivery-status").replace(
        b"Content-Type: text/rfc822-headers", b"Content-Type: message/global-headers"
    )


# --- garbage --------------------------------------------------------------------------------------


def truncated_mime(sent: Sent) -> bytes:
    """A multipart message cut off inside its first part: the boundary is never closed."""
    return _crlf(
        _trace(sent.return_path, "someone@remote.example") + "From: someone@remote.example\n"
        f"To: {sent.return_path}\n"
        "Subject: Re: letters\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="XyZ"\n'
        "\n"
        "--XyZ\n"
        "Content-Type: text/plain\n"
        "\n"
        "I was going to write that the mess"
    )


def bad_charsets(sent: Sent) -> bytes:
    """A message declaring utf-8 with Latin-1 bytes in it, and a part in charset x-unknown."""
    return (
        _crlf(_trace(sent.return_path, "someone@remote.example"))
        + b"From: someone@remote.example\nTo: "
        + sent.return_path.encode()
        + b"\nSubject: =?x-unknown?q?caf=E9?=\nMIME-Version: 1.0\n"
        + b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain; charset=utf-8\n\nCaf\xe9 cr\xe8me\n'
        + b"--b\nContent-Type: text/plain; charset=x-unknown\nContent-Transfer-Encoding: quoted-printable\n\n=E9=FF=\n--b--\n"
    )


def broken_base64(sent: Sent) -> bytes:
    """A message whose only part is base64 with bad padding and characters outside the alphabet."""
    return _crlf(
        _trace(sent.return_path, "someone@remote.example") + "From: someone@remote.example\n"
        f"To: {sent.return_path}\n"
        "Subject: attached\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "SGVsbG8gd29y!!bGQ=\n=Zm9v\n****\n"
    )


def junk_headers(sent: Sent) -> bytes:
    """8-bit bytes in headers (From, Return-Path, Subject) and a header line with no colon."""
    return (
        b"Return-Path: <\xff\xfe@\x80>\nDelivered-To: "
        + sent.return_path.encode()
        + b"\nFrom: MAILER-DAEMON \xc3\x28\xa0\xa1 <\xe9>\nSubject: \x00\x01\x02 \xff\nX-Failed-Recipients: \xfe\xfe@\xfe\n"
        + b"this line has no colon\nContent-Type: multipart/report; report-type=\xff; boundary=\xff\n\n--\xff\n\xff\xfe\n"
    )


def empty(sent: Sent) -> bytes:
    """An empty file (a delivery that wrote nothing)."""
    return b""


def huge(sent: Sent, size: int) -> bytes:
    """A real bounce padded past `size` bytes (a 20 MB attachment returned whole)."""
    data = postfix_dsn(sent)
    pad = b"A" * 76 + b"\n"
    return data + pad * (size // len(pad) + 1)


def forged_verp(sent: Sent) -> bytes:
    """A Postfix DSN about `sent` as if sent to its VERP return path with the token's MAC (its last
    16 characters) replaced by a made-up one: a forger who knows the format, not the secret."""
    local, _, domain = sent.return_path.partition("@")
    mac = local[-16:]
    forged = local[:-16] + ("b" * 16 if mac == "a" * 16 else "a" * 16)
    return postfix_dsn(replace(sent, return_path=f"{forged}@{domain}"))


def nested_multipart(sent: Sent, depth: int = 5000) -> bytes:
    """Multiparts nested `depth` deep (a parser's recursion limit)."""
    head = _crlf(_trace(sent.return_path) + "From: MAILER-DAEMON@remote.example\nMIME-Version: 1.0\n")
    parts = [b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth)]
    return head + b"".join(parts) + b"Content-Type: text/plain\n\nx\n"


# --- the corpus -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One corpus message and what reading it must give: `kind` (Report.kind), the first
    failure's `failure` kind and `code` (hard/soft; empty for none), the `feedback_type` of a
    feedback report, and whether the report carries the original's Message-ID (`has_id`) and its
    return path (`has_path`)."""

    name: str
    build: Callable[[Sent], bytes]
    kind: str
    failure: str = ""
    code: str = ""
    feedback_type: str = ""
    has_id: bool = True
    has_path: bool = True


REAL: tuple[Case, ...] = (
    Case("postfix-5.1.1", postfix_dsn, "bounce", "hard", "5.1.1"),
    Case("postfix-5.1.1-headers", lambda s: postfix_dsn(s, headers_only=True), "bounce", "hard", "5.1.1"),
    Case("postfix-delayed", postfix_delayed, "delay"),
    Case("postfix-expired-4.2.2", postfix_expired, "bounce", "soft", "4.2.2"),
    Case("exim-text", exim_text, "bounce", "hard", "5.1.1"),
    Case("exim-text-4.2.2-expired", lambda s: exim_text(s, code="452 4.2.2", reason="Mailbox full"), "bounce", "soft", "4.2.2"),
    Case("exim-dsn", exim_dsn, "bounce", "hard", "5.0.0"),
    Case("qmail-text", qmail_text, "bounce", "hard", "5.1.1"),
    Case("gmail-5.1.1", gmail_dsn, "bounce", "hard", "5.1.1"),
    Case("gmail-5.2.2-full", lambda s: gmail_dsn(s, status="5.2.2"), "bounce", "soft", "5.2.2"),
    Case("gmail-5.7.26-dmarc", lambda s: gmail_dsn(s, status="5.7.26"), "bounce", "soft", "5.7.26"),
    Case("outlook-5.1.10", outlook_ndr, "bounce", "hard", "5.1.10"),
    Case("outlook-5.4.1", lambda s: outlook_ndr(s, status="5.4.1"), "bounce", "hard", "5.4.1"),
    Case("yahoo-dsn", yahoo_dsn, "bounce", "hard", "5.0.0"),
    Case("yahoo-text", yahoo_text, "bounce", "hard"),
    Case("yahoo-arf", yahoo_arf, "complaint", feedback_type="abuse"),
    Case("jmrp-arf", jmrp_arf, "complaint", feedback_type="abuse"),
    Case("aol-arf", aol_arf, "complaint", feedback_type="abuse"),
    Case("arf-not-spam", not_spam_arf, "other", feedback_type="not-spam"),
    Case("dsn-delivered", dsn_notice, "other"),
    Case("dsn-relayed", lambda s: dsn_notice(s, action="relayed"), "other"),
    Case("out-of-office", out_of_office, "other", has_path=True),
    Case("dsn-latin1-diagnostic", dsn_latin1_diagnostic, "bounce", "hard", "5.1.1"),
    Case("dsn-unknown-charset", dsn_unknown_charset, "bounce", "hard", "5.1.1"),
    Case("dsn-broken-base64-headers", dsn_broken_base64_headers, "bounce", "hard", "5.1.1", has_id=False),
    Case("global-dsn", global_dsn, "bounce", "hard", "5.1.1"),
)
"""Real formats: each read as `kind`, attributed by the original's Message-ID and return path."""

GARBAGE: tuple[Case, ...] = (
    Case("human-reply", human_reply, "unreadable"),
    Case("truncated-mime", truncated_mime, "unreadable"),
    Case("bad-charsets", bad_charsets, "unreadable"),
    Case("broken-base64", broken_base64, "unreadable"),
    Case("junk-headers", junk_headers, "unreadable"),
    Case("empty", empty, "unreadable"),
    Case("nested-multipart", nested_multipart, "unreadable"),
)
"""Messages that are no report: never a bounce or complaint, never an exception."""
