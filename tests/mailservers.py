"""Real mail servers on loopback for the bundle tests: aiosmtpd (STARTTLS + AUTH,
delivering into a Maildir) and Debian's dovecot serving that Maildir over IMAPS.

Both use a self-signed certificate made here for 127.0.0.1; clients trust it through
`--ca-file`. Dovecot must be installed (`.ci/run` installs dovecot-imapd); a missing
dovecot fails the tests, it does not skip them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
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
    imap_port: int
    cafile: Path
    maildir: Path


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


def _dovecot_conf(root: Path, home: Path, cert: Path, key: Path, port: int, uid: int,
                  gid: int) -> str:
    return f"""
base_dir = {root}/run
state_dir = {root}/state
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
    port = 0
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
def mail_servers(root: Path) -> Iterator[MailSetup]:
    """SMTP (STARTTLS, AUTH PLAIN/LOGIN) delivering to USER's Maildir, and IMAPS on it."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Mailbox
    from aiosmtpd.smtp import AuthResult

    dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(dovecot).exists():
        raise RuntimeError("dovecot is not installed (apt-get install dovecot-imapd)")
    root.mkdir(parents=True, exist_ok=True)
    cert, key = make_certificate(root)
    # The mail user (nobody, when the tests run as root) must reach its home: not
    # below pytest's private (0700) temporary directory.
    home = Path(tempfile.mkdtemp(prefix="branchline-mail-"))
    home.chmod(0o755)
    maildir = home / USER / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    uid, gid = (65534, 65534) if os.getuid() == 0 else (os.getuid(), os.getgid())
    if os.getuid() == 0:
        for path in [home / USER, maildir,
                     *(maildir / s for s in ("cur", "new", "tmp"))]:
            os.chown(path, uid, gid)
    for d in ("run", "state"):
        (root / d).mkdir(exist_ok=True)
    imap_port, smtp_port = _free_port(), _free_port()
    conf = root / "dovecot.conf"
    conf.write_text(_dovecot_conf(root, home, cert, key, imap_port, uid, gid))
    proc = subprocess.Popen([dovecot, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = (getattr(auth_data, "login", None) == USER.encode()
              and getattr(auth_data, "password", None) == PASSWORD.encode())
        return AuthResult(success=ok)

    class Deliver(Mailbox):  # type: ignore[misc]
        """Deliver as the mailbox owner would: readable by dovecot's mail user."""

        def handle_message(self, message: Any) -> None:
            super().handle_message(message)
            if os.getuid() == 0:
                for f in (maildir / "new").iterdir():
                    os.chown(f, uid, gid)

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    controller = Controller(Deliver(maildir), hostname="127.0.0.1", port=smtp_port,
                            tls_context=tls, require_starttls=True,
                            authenticator=authenticate, auth_require_tls=True)
    controller.start()
    try:
        _wait(imap_port, proc, root / "dovecot.log")
        yield MailSetup(smtp_port=smtp_port, imap_port=imap_port, cafile=cert, maildir=maildir)
    finally:
        controller.stop()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)
