"""Bundles by e-mail against real servers on loopback: SMTP with STARTTLS and AUTH
(aiosmtpd), IMAP over TLS (dovecot); also a Maildir and saved .eml files."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

import pytest
from sqlalchemy import select

from branches import Mailbox, MailError, fetch_imap, fetch_maildir, read_eml, send_parts
from schema import TABLES
from server.node import Node
from server.services.bundles import export_to, import_files
from tests.mailservers import PASSWORD, USER, mail_servers
from tests.test_field_encryption import ID_NUMBER, MOBILE, Client, _customer
from tests.test_sync_http import _branch


async def _names(node: Node) -> set[str]:
    t = TABLES["customers"]
    async with node.db.read() as conn:
        return {r.name for r in await conn.execute(select(t.c.name))}


# The mail path does not touch storage differently per backend: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_bundle_parts_travel_by_smtp_and_imap(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str], backend: str
) -> None:
    branch, _ = await _branch(tmp_path, node, "S071")
    try:
        for i in range(12):
            await _customer(client, clerk, branch="S071", name=f"邮件客户{i}")
        with mail_servers(tmp_path / "mail") as mail:
            smtp = Mailbox("127.0.0.1", mail.smtp_port, "starttls", USER, PASSWORD,
                           str(mail.cafile))
            imap = Mailbox("127.0.0.1", mail.imap_port, "tls", USER, PASSWORD,
                           str(mail.cafile))
            sent = await export_to(node, "S071", tmp_path / "out", max_part=8192)
            assert len(sent.files) >= 2
            count = await asyncio.to_thread(send_parts, smtp, sent.files,
                                            mail_from="hq@example.com",
                                            mail_to=f"{USER}@example.com", subject="bundle")
            assert count == len(sent.files)
            # What went over the wire and sits in the mailbox holds no customer secret.
            for f in (mail.maildir / "new").iterdir():
                raw = f.read_bytes()
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                payloads = b"".join(p.get_payload(decode=True) or b"" for p in msg.walk()
                                    if p.get_filename())
                for secret in (MOBILE, ID_NUMBER, "邮件客户"):
                    assert secret.encode() not in payloads
            inbox = tmp_path / "inbox"
            inbox.mkdir()
            imported: list[Path] = []
            n = await asyncio.to_thread(fetch_imap, imap, inbox, imported.extend)
            assert n == len(sent.files) and len(imported) == len(sent.files)
            report = await import_files(branch, imported)
            assert report.ok and len(report.applied) == 1, report
            assert len(await _names(branch)) == 12
            # Processed messages are marked read: a second fetch finds nothing new.
            again: list[Path] = []
            assert await asyncio.to_thread(fetch_imap, imap, inbox, again.extend) == 0
            # Or moved to another folder once processed.
            more = await export_to(node, "S071", tmp_path / "more", max_part=1 << 20)
            await asyncio.to_thread(send_parts, smtp, more.files, mail_from="hq@example.com",
                                    mail_to=f"{USER}@example.com", subject="bundle")
            moved: list[Path] = []
            assert await asyncio.to_thread(fetch_imap, imap, inbox, moved.extend,
                                           move_to="Processed") == 1
            assert (await import_files(branch, moved)).ok
            assert await asyncio.to_thread(fetch_imap, imap, inbox, again.extend) == 0
            assert await asyncio.to_thread(fetch_imap, imap, inbox, again.extend,
                                           folder="Processed") == 1  # it is kept there

            # SMTP over TLS from the first byte, and IMAP with STARTTLS, work the same.
            smtps = Mailbox("127.0.0.1", mail.smtps_port, "tls", USER, PASSWORD,
                            str(mail.cafile))
            third = await export_to(node, "S071", tmp_path / "third", max_part=1 << 20)
            await asyncio.to_thread(send_parts, smtps, third.files, mail_from="hq@example.com",
                                    mail_to=f"{USER}@example.com", subject="bundle")
            starttls = Mailbox("127.0.0.1", mail.imap_starttls_port, "starttls", USER,
                               PASSWORD, str(mail.cafile))
            got: list[Path] = []
            assert await asyncio.to_thread(fetch_imap, starttls, inbox, got.extend) == 1
            assert (await import_files(branch, got)).ok
            # Wrong password or an untrusted certificate: one clear error.
            bad = Mailbox("127.0.0.1", mail.imap_port, "tls", USER, "wrong", str(mail.cafile))
            with pytest.raises(MailError, match="login refused"):
                await asyncio.to_thread(fetch_imap, bad, inbox, again.extend)
            untrusted = Mailbox("127.0.0.1", mail.smtp_port, "starttls", USER, PASSWORD)
            with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED"):
                await asyncio.to_thread(send_parts, untrusted, sent.files,
                                        mail_from="a@b", mail_to=f"{USER}@example.com",
                                        subject="x")
    finally:
        await branch.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_bundles_from_a_maildir_and_from_eml_files(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str], backend: str
) -> None:
    import mailbox
    from email.message import EmailMessage

    branch, _ = await _branch(tmp_path, node, "S072")
    try:
        await _customer(client, clerk, branch="S072", name="目录客户")
        sent = await export_to(node, "S072", tmp_path / "out", max_part=1 << 20)
        box = mailbox.Maildir(tmp_path / "Maildir", create=True)
        msg = EmailMessage()
        msg["Subject"] = "bundle"
        msg.set_content("x")
        for f in sent.files:
            msg.add_attachment(f.read_bytes(), maintype="application",
                               subtype="octet-stream", filename=f.name)
        box.add(msg)
        got: list[Path] = []
        inbox = tmp_path / "in"
        inbox.mkdir()
        assert fetch_maildir(tmp_path / "Maildir", inbox, got.extend) == 1
        assert fetch_maildir(tmp_path / "Maildir", inbox, got.extend) == 0  # marked read
        assert (await import_files(branch, got)).ok
        assert await _names(branch) == {"目录客户"}
        eml = tmp_path / "saved.eml"
        eml.write_bytes(msg.as_bytes())
        again = read_eml([eml], inbox)
        report = await import_files(branch, again)
        assert report.ok and "already imported" in report.skipped[0]
        with pytest.raises(MailError, match="not a Maildir"):
            fetch_maildir(tmp_path, inbox, got.extend)
    finally:
        await branch.close()
