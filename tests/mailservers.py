"""Real mail servers on loopback for the bundle tests: aiosmtpd (STARTTLS + AUTH,
delivering into a Maildir) and Debian's dovecot serving that Maildir over IMAPS.

Both use a self-signed certificate made here for 127.0.0.1; clients trust it through
`--ca-file`. Dovecot must be installed (`.ci/run` installs dovecot-imapd); a missing
dovecot fails the tests, it does not skip them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, PASSWORD = "bundles", "mail-secret-1"


@dataclass
class MailSetup:
    smtp_port: int
    """SMTP with STARTTLS required."""
    imap_port: int
    """IMAP over TLS (imaps)."""
    smtps_port: int
    """SMTP over TLS from the first byte."""
    imap_starttls_port: int
    """IMAP with STARTTLS required."""
    cafile: Path
    maildir: Path
    """The first user's Maildir."""
    home: Path

    def maildir_of(self, user: str) -> Path:
        return self.home / user / "Maildir"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None
          ) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.1)
    detail = log.read_text() if log and log.exists() else ""
    raise RuntimeError(f"mail server on port {port} did not start: {detail[-2000:]}")


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "mail.crt", directory / "mail.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def _dovecot_conf(root: Path, home: Path, cert: Path, key: Path, port: int, plain: int,
                  uid: int, gid: int) -> str:
    return f"""
base_dir = {home}/.run
state_dir = {home}/.state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
first_valid_uid = {uid}
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = {plain}
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


@contextmanager
def mail_servers(root: Path, users: tuple[str, ...] = (USER,)) -> Iterator[MailSetup]:
    """SMTP (STARTTLS, AUTH PLAIN/LOGIN; every user logs in with PASSWORD) delivering
    each message to the Maildir of its recipient's local part (`hq@…` → user `hq`),
    and IMAPS on those Maildirs."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(dovecot).exists():
        raise RuntimeError("dovecot is not installed (apt-get install dovecot-imapd)")
    root.mkdir(parents=True, exist_ok=True)
    cert, key = make_certificate(root)
    # The mail user (nobody, when the tests run as root) must reach its home: not
    # below pytest's private (0700) temporary directory.
    # Short, too: dovecot's unix sockets live here, and socket paths are limited to
    # about 100 bytes.
    home = Path(tempfile.mkdtemp(prefix="blmail-", dir="/tmp"))
    home.chmod(0o755)
    uid, gid = (65534, 65534) if os.getuid() == 0 else (os.getuid(), os.getgid())
    for user in users:
        maildir = home / user / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            for path in [home / user, maildir, *(maildir / s for s in ("cur", "new", "tmp"))]:
                os.chown(path, uid, gid)
    for d in (".run", ".state"):
        (home / d).mkdir(exist_ok=True)
    imap_port, smtp_port = _free_port(), _free_port()
    smtps_port, imap_plain_port = _free_port(), _free_port()
    conf = root / "dovecot.conf"
    conf.write_text(_dovecot_conf(root, home, cert, key, imap_port, imap_plain_port, uid,
                                  gid))
    proc = subprocess.Popen([dovecot, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = (getattr(auth_data, "login", b"").decode() in users
              and getattr(auth_data, "password", None) == PASSWORD.encode())
        return AuthResult(success=ok)

    class Deliver:
        """Deliver to each recipient's Maildir, readable by dovecot's mail user."""

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            import mailbox

            for rcpt in envelope.rcpt_tos:
                user = rcpt.split("@")[0]
                if user not in users:
                    return "550 no such mailbox"
                box = mailbox.Maildir(home / user / "Maildir", create=False)
                box.add(envelope.original_content or envelope.content)
                if os.getuid() == 0:
                    for f in (home / user / "Maildir" / "new").iterdir():
                        os.chown(f, uid, gid)
            return "250 OK"

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    controller = Controller(Deliver(), hostname="127.0.0.1", port=smtp_port,
                            tls_context=tls, require_starttls=True,
                            authenticator=authenticate, auth_require_tls=True)
    # Implicit TLS: aiosmtpd does not count it as TLS for AUTH, but the whole session
    # is encrypted from the first byte.
    implicit = Controller(Deliver(), hostname="127.0.0.1", port=smtps_port, ssl_context=tls,
                          authenticator=authenticate, auth_require_tls=False)
    # aiosmtpd warns about its own deprecated attribute on every login.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    controller.start()
    implicit.start()
    try:
        _wait(imap_port, proc, root / "dovecot.log")
        _wait(imap_plain_port, proc, root / "dovecot.log")
        yield MailSetup(smtp_port=smtp_port, imap_port=imap_port, smtps_port=smtps_port,
                        imap_starttls_port=imap_plain_port, cafile=cert,
                        maildir=home / users[0] / "Maildir", home=home)
    finally:
        controller.stop()
        implicit.stop()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)
