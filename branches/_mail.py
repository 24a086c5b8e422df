"""Carrying bundle parts by e-mail: SMTP out, IMAP (TLS), a Maildir or `.eml` files in.

One message per part file, so every message stays under the part size that was chosen
for the mail system's limits. Mail may lose, duplicate and reorder messages: the bundle
protocol does not care (SPEC §Bundles). Nothing here reads the bundles; it only moves
`.blb` attachments between mailboxes and a folder.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import mailbox
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

from branches._errors import BranchError

Security = Literal["tls", "starttls", "none"]
SUFFIX = ".blb"


class MailError(BranchError):
    """The mail server could not be reached, refused us, or a message is unreadable."""


@dataclass(frozen=True)
class Mailbox:
    """Where to send or fetch: host, port, TLS mode, login (password from the
    environment, read by the CLI), and a CA file for a server with its own certificate."""

    host: str
    port: int
    security: Security = "tls"
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    timeout: float = 60.0

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)


def _fail(action: str, box: Mailbox, exc: BaseException) -> MailError:
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, smtplib.SMTPAuthenticationError | imaplib.IMAP4.error):
        reason = "login refused (user or password wrong?)"
    return MailError(f"{action} {box.host}:{box.port} failed: {reason}")


def send_parts(box: Mailbox, files: Iterable[Path], *, mail_from: str, mail_to: str,
               subject: str) -> int:
    """Send each part file as the attachment of its own message; returns the count."""
    parts = list(files)
    try:
        if box.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(box.host, box.port, timeout=box.timeout,
                                                  context=box.context())
        else:
            smtp = smtplib.SMTP(box.host, box.port, timeout=box.timeout)
        with smtp:
            if box.security == "starttls":
                smtp.starttls(context=box.context())
            if box.username:
                smtp.login(box.username, box.password or "")
            for i, path in enumerate(parts, 1):
                msg = EmailMessage()
                msg["From"], msg["To"] = mail_from, mail_to
                msg["Subject"] = f"{subject} ({i}/{len(parts)})"
                msg["X-Branchline-Bundle"] = path.name
                msg.set_content("Branchline sync bundle part (signed and encrypted). Import "
                                "it with `branchline bundle receive` or `bundle import`.\n")
                msg.add_attachment(path.read_bytes(), maintype="application",
                                   subtype="octet-stream", filename=path.name)
                smtp.send_message(msg)
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        raise _fail("sending mail via", box, exc) from None
    return len(parts)


def attachments(raw: bytes, into: Path) -> list[Path]:
    """Save the bundle parts attached to one message into `into`."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    saved: list[Path] = []
    for part in msg.walk():
        name = part.get_filename()
        if not name or not name.endswith(SUFFIX) or "/" in name or "\\" in name:
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            target = into / Path(name).name
            target.write_bytes(payload)
            saved.append(target)
    return saved


Handler = Callable[[list[Path]], None]
"""Imports the files saved from one batch of messages; raises to keep them unread."""


def fetch_imap(box: Mailbox, into: Path, handle: Handler, *, folder: str = "INBOX",
               move_to: str | None = None) -> int:
    """Fetch unread messages, save their bundle parts, let `handle` import them, then
    mark the messages read (or move them to `move_to`). Returns the message count."""
    try:
        if box.security == "tls":
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(box.host, box.port,
                                                    ssl_context=box.context(),
                                                    timeout=box.timeout)
        else:
            imap = imaplib.IMAP4(box.host, box.port, timeout=box.timeout)
            if box.security == "starttls":
                imap.starttls(ssl_context=box.context())
        with imap:
            imap.login(box.username or "", box.password or "")
            status, _ = imap.select(folder)
            if status != "OK":
                raise MailError(f"IMAP folder {folder!r} cannot be opened")
            _, found = imap.uid("SEARCH", "UNSEEN")
            uids = found[0].split() if found and found[0] else []
            files: list[Path] = []
            for uid in uids:
                _, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((d[1] for d in data if isinstance(d, tuple)), None)
                if isinstance(raw, bytes):
                    files += attachments(raw, into)
            if not uids:
                return 0
            handle(files)
            if move_to:
                imap.create(move_to)  # an existing folder answers NO: fine
            for uid in uids:
                if move_to:
                    imap.uid("COPY", uid, move_to)
                    imap.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted \Seen)")
                else:
                    imap.uid("STORE", uid, "+FLAGS.SILENT", r"(\Seen)")
            if move_to:
                imap.expunge()
            return len(uids)
    except (TimeoutError, OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
        raise _fail("fetching mail from", box, exc) from None


def fetch_maildir(path: Path, into: Path, handle: Handler) -> int:
    """Like `fetch_imap`, for a local Maildir: unread messages, then marked read."""
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise MailError(f"{path} is not a Maildir (no cur/ and new/)")
    box = mailbox.Maildir(path, factory=None, create=False)
    keys = [k for k, m in box.items() if "S" not in m.get_flags()]
    files: list[Path] = []
    for key in keys:
        files += attachments(box.get_bytes(key), into)
    if not keys:
        return 0
    handle(files)
    for key in keys:
        msg = box[key]
        msg.set_subdir("cur")
        msg.add_flag("S")
        box[key] = msg
    return len(keys)


def read_eml(paths: Iterable[Path], into: Path) -> list[Path]:
    """Bundle parts attached to saved `.eml` messages."""
    files: list[Path] = []
    for path in paths:
        try:
            files += attachments(path.read_bytes(), into)
        except OSError as exc:
            raise MailError(f"cannot read {path}: {exc}") from None
    return files


__all__ = ["MailError", "Mailbox", "Security", "attachments", "fetch_imap", "fetch_maildir",
           "read_eml", "send_parts"]
