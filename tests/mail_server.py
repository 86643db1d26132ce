"""A real IMAP and POP3 server for the tests: Debian's Dovecot (`dovecot-imapd`,
`dovecot-pop3d`), started on loopback on free ports in a temporary folder, and stopped at the end
of the session.

It listens for IMAPS, IMAP with STARTTLS, POP3S and POP3 with STLS, with a server certificate
for 127.0.0.1 and localhost signed by a CA made here (`Server.ca_file`: a client trusts it through
SSL_CERT_FILE, which OpenSSL's default paths honour). Each test makes an account of its own
(`Server.account`), with the password `PASSWORD` and a Maildir under the folder. When the tests run as root, the mail is
owned by the unprivileged user `nobody` (Dovecot will not keep mail as root); otherwise Dovecot
runs rootless, as ourselves. `deliver` puts a message in the INBOX (written into the Maildir, as a
local delivery agent would), `contents` reads what each folder holds through IMAP.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import grp
import imaplib
import ipaddress
import itertools
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from smtp_servers import free_port
from waiting import stop

DOVECOT = "/usr/sbin/dovecot"
HOSTS = {"imaps": "127.0.0.1", "nomove": "127.0.0.2", "bare": "127.0.0.3"}  # where each IMAPS listener is
ACCOUNTS = 200  # more than one test session uses
PASSWORD = "imap-secret-" + uuid.uuid4().hex[:12]  # a test asserts it never shows up in output


def available() -> bool:
    """Whether Dovecot with its IMAP and POP3 servers is installed."""
    return os.access(DOVECOT, os.X_OK) and all(os.path.exists(f"/usr/lib/dovecot/{p}") for p in ("imap", "pop3"))


@dataclass(frozen=True)
class Certificates:
    """A CA (`ca_file`, the one a client trusts) and a server certificate it signed."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(folder: Path, name: str = "Test") -> Certificates:
    """A self-signed CA and a server certificate for 127.0.0.1 and localhost, written in `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"review-press {name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in HOSTS.values())]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    found = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    found.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    found.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(found.key_file, 0o600)
    return found


@dataclass(frozen=True)
class Ports:
    """Where the server listens on 127.0.0.1."""

    imaps: int
    imap: int  # STARTTLS
    pop3s: int
    pop3: int  # STLS
    nomove: int  # IMAPS on 127.0.0.2, announcing UIDPLUS but not MOVE
    bare: int  # IMAPS on 127.0.0.3, announcing neither MOVE nor UIDPLUS


@dataclass(frozen=True)
class Server:
    """A running Dovecot on 127.0.0.1 at `ports`, its CA in `ca_file`; every account's password
    is `PASSWORD`. `account()` makes a fresh one (so tests never see each other's mail)."""

    folder: Path
    ports: Ports
    ca_file: Path
    uid: int
    gid: int
    serial: Iterator[int] = field(default_factory=itertools.count)

    def account(self) -> Account:
        """An account no one used yet, with an empty INBOX (all are made at start: Dovecot
        re-reads its passwd-file at most once a second, so one added later may be unknown)."""
        return Account(self, f"u{next(self.serial):03d}")


@dataclass(frozen=True)
class Account:
    """One user of the server: where its mail is, how a client reaches it, what it holds."""

    server: Server
    user: str

    @property
    def maildir(self) -> Path:
        return self.server.folder / "mail" / self.user

    def url(self, scheme: str, folder: str = "", port: int | None = None) -> str:
        """A `[bounces] source` for this account (no password in it); `scheme` is a protocol or
        one of the IMAPS listeners that announce fewer capabilities (`nomove`, `bare`)."""
        host = HOSTS.get(scheme, "127.0.0.1")
        port = port or getattr(self.server.ports, scheme)
        return f"{'imaps' if scheme in HOSTS else scheme}://{self.user}@{host}:{port}" + (f"/{folder}" if folder else "")

    def deliver(self, data: bytes) -> None:
        """Put one message in the INBOX, as a local delivery agent does (tmp/, then new/)."""
        name = f"{time.time_ns()}.P{os.getpid()}Q{uuid.uuid4().hex[:12]}.localhost"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(data.replace(b"\r\n", b"\n"))
        os.chown(tmp, self.server.uid, self.server.gid)
        os.chmod(tmp, 0o600)
        os.rename(tmp, self.maildir / "new" / name)

    @contextmanager
    def imap(self) -> Iterator[imaplib.IMAP4_SSL]:
        """A logged-in IMAPS session (for looking, from the test)."""
        context = ssl.create_default_context(cafile=str(self.server.ca_file))
        conn = imaplib.IMAP4_SSL("127.0.0.1", self.server.ports.imaps, ssl_context=context, timeout=30)
        try:
            conn.login(self.user, PASSWORD)
            yield conn
        finally:
            with suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    def count(self, folder: str) -> int:
        """How many messages `folder` holds (0 when there is no such folder)."""
        with self.imap() as conn:
            typ, data = conn.status(f'"{folder}"', "(MESSAGES)")
        if typ != "OK":
            return 0
        m = re.search(rb"MESSAGES (\d+)", data[0])
        return int(m.group(1)) if m else 0

    def contents(self) -> dict[str, list[str]]:
        """Every folder's messages, as their Message-IDs (`no-id:UID` for a message without one),
        in UID order; messages flagged \\Deleted are left out."""
        found: dict[str, list[str]] = {}
        with self.imap() as conn:
            _, listing = conn.list()
            for line in listing:
                if not isinstance(line, bytes):
                    continue
                m = re.match(rb'^\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$', line)
                assert m, line
                if b"\\Noselect" in m.group("flags") or b"\\NonExistent" in m.group("flags"):
                    continue
                name = m.group("name").decode()
                typ, _ = conn.select(name, readonly=True)
                assert typ == "OK", name
                _, data = conn.uid("SEARCH", "UNDELETED")
                items = []
                for uid in data[0].split() if data and data[0] else []:
                    _, parts = conn.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                    header = next(p[1] for p in parts if isinstance(p, tuple))
                    msg = email.message_from_bytes(header, policy=email.policy.compat32)
                    items.append(" ".join(str(msg.get("Message-ID") or f"no-id:{uid.decode()}").split()))
                found[name.strip('"')] = items
        return found


def _owner() -> tuple[int, int, dict[str, str]]:
    """The uid and gid that own the mail, and the Dovecot users to run as: `nobody` and the
    package's own users when we are root, else ourselves (a rootless Dovecot)."""
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
        return user.pw_uid, user.pw_gid, {}
    me, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    return os.geteuid(), os.getegid(), {"default_internal_user": me, "default_internal_group": group, "default_login_user": me}


CONFIG = """
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
instance_name = review-press-test-{tag}
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:{folder}/mail/%u
first_valid_uid = 1
first_valid_gid = 1
{users}
namespace inbox {{
  inbox = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={folder}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
  inet_listener imaps_nomove {{
    address = 127.0.0.2
    port = {nomove}
    ssl = yes
  }}
  inet_listener imaps_bare {{
    address = 127.0.0.3
    port = {bare}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
    ssl = yes
  }}
}}
local 127.0.0.2 {{
  protocol imap {{
    imap_capability = IMAP4rev1 LITERAL+ UIDPLUS
  }}
}}
local 127.0.0.3 {{
  protocol imap {{
    imap_capability = IMAP4rev1 LITERAL+
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def running_server() -> Iterator[Server]:
    """Start Dovecot in a temporary folder and stop it afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="rp-dovecot-"))
    os.chmod(folder, 0o755)
    uid, gid, users = _owner()
    certs = make_certificates(folder / "tls")
    ports = Ports(*(free_port() for _ in range(6)))
    for sub in ("mail", "home"):
        (folder / sub).mkdir(mode=0o700)
        os.chown(folder / sub, uid, gid)
    (folder / "passwd").write_text("".join(f"u{n:03d}:{{PLAIN}}{PASSWORD}::::::\n" for n in range(ACCOUNTS)))
    for n in range(ACCOUNTS):
        maildir = folder / "mail" / f"u{n:03d}"
        for sub in (maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
            sub.mkdir(mode=0o700)
            os.chown(sub, uid, gid)
    os.chmod(folder / "passwd", 0o600)
    if os.geteuid() == 0:  # read by Dovecot's auth process, which runs as the package's `dovecot` user
        internal = pwd.getpwnam("dovecot")
        os.chown(folder / "passwd", internal.pw_uid, internal.pw_gid)
    config = folder / "dovecot.conf"
    config.write_text(
        CONFIG.format(
            folder=folder,
            tag=uuid.uuid4().hex[:8],
            cert=certs.cert_file,
            key=certs.key_file,
            uid=uid,
            gid=gid,
            users="\n".join(f"{k} = {v}" for k, v in users.items()),
            **vars(ports),
        )
    )
    log = folder / "dovecot.log"
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "stderr.log", "wb"),  # noqa: SIM115 - the server's own errors, kept for a failing test
        cwd=folder,
        env={"PATH": os.environ.get("PATH", ""), "LANG": "C", "LC_ALL": "C"},
    )
    server = Server(folder, ports, certs.ca_file, uid, gid)
    try:
        deadline = time.monotonic() + 60
        while not all(_listening(p, HOSTS.get(name, "127.0.0.1")) for name, p in vars(ports).items()):
            if proc.poll() is not None or time.monotonic() > deadline:
                text = (folder / "stderr.log").read_text(errors="replace") + (log.read_text(errors="replace") if log.exists() else "")
                raise RuntimeError("Dovecot did not start: " + text[-3000:])
            time.sleep(0.1)

        yield server
    finally:
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
