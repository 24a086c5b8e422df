"""Sync bundles (sync/SPEC.md §Bundles): export, import, parts, gaps, refusals."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from schema import TABLES, sync_peers, utcnow
from schema._tables import bundle_log
from server.node import Node
from server.services.bundles import export_to, import_files
from server.services.nodes import revoke
from tests.test_field_encryption import ID_NUMBER, MOBILE, Client, _customer
from tests.test_sync_http import _branch


async def _names(node: Node) -> set[str]:
    t = TABLES["customers"]
    async with node.db.read() as conn:
        return {r.name for r in await conn.execute(select(t.c.name))}


async def _notes(node: Node, customer_id: str) -> Any:
    t = TABLES["customers"]
    async with node.db.read() as conn:
        return (await conn.execute(select(t.c.notes).where(t.c.id == customer_id))).scalar()


async def test_bundle_resumes_from_ack_and_carries_acknowledgements(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str]) -> None:
    branch, _ = await _branch(tmp_path, node, "S061")
    try:
        c = await _customer(client, clerk, branch="S061")
        out = tmp_path / "to-branch"
        sent = await export_to(node, "S061", out, max_part=10 * 1024 * 1024)
        assert sent.number == 1 and sent.rows >= 3 and len(sent.files) == 1
        report = await import_files(branch, sent.files)
        assert report.ok and report.rows == sent.rows, report
        assert "王秘" in await _names(branch)
        # Work at the branch, back to HQ by bundle; HQ's acknowledgement comes back.
        async with branch.db.write(branch.node_id, None) as uow:
            await uow.update("customers", c["id"], {"notes": "离线回访"})
        back = await export_to(branch, "hq", tmp_path / "to-hq", max_part=10 * 1024 * 1024)
        assert (await import_files(node, back.files)).ok
        assert await _notes(node, c["id"]) == "离线回访"
        again = await import_files(node, back.files)  # the same files again: a no-op
        assert again.ok and again.rows == 0 and "already imported" in again.skipped[0]
        reply = await export_to(node, "S061", tmp_path / "to-branch-2", max_part=1 << 20)
        assert (await import_files(branch, reply.files)).ok
        async with branch.db.read() as conn:
            pushed = (await conn.execute(select(sync_peers.c.pushed).where(
                sync_peers.c.peer_id == node.node_id))).scalar()
        assert pushed, "HQ's bundle acknowledged the branch's changes"
        # The next export from the branch starts after what HQ acknowledged: no rows.
        assert (await export_to(branch, "hq", tmp_path / "x", max_part=1 << 20)).rows == 0
        # No plaintext customer secret in any bundle file.
        for f in [*sent.files, *back.files, *reply.files]:
            data = f.read_bytes()
            for secret in (MOBILE, ID_NUMBER, "王秘", "离线回访"):
                assert secret.encode() not in data
    finally:
        await branch.close()


async def test_parts_in_any_order_and_a_missing_part_is_named(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str]) -> None:
    branch, _ = await _branch(tmp_path, node, "S062")
    try:
        for i in range(30):
            await _customer(client, clerk, branch="S062", name=f"客户{i}")
        sent = await export_to(node, "S062", tmp_path / "out", max_part=4096)
        assert len(sent.files) >= 3
        last = sent.files[-1]
        report = await import_files(branch, list(reversed(sent.files[:-1])))
        assert report.ok and not report.applied
        total = len(sent.files)
        assert report.waiting == [
            f"bundle #1 from {node.node_id} ({sent.bundle_id[:8]}): waiting for part(s) "
            f"{total} of {total}"]
        assert await _names(branch) == set()
        report = await import_files(branch, [last])  # the rest waited in pending/
        assert report.ok and len(report.applied) == 1
        assert len(await _names(branch)) == 30
        assert not list((branch.settings.data_dir / "bundles" / "pending").iterdir())
    finally:
        await branch.close()


async def test_bundle_gap_waits_for_the_earlier_one(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str]) -> None:
    branch, _ = await _branch(tmp_path, node, "S063")
    try:
        await _customer(client, clerk, branch="S063", name="甲")
        first = await export_to(node, "S063", tmp_path / "1", max_part=1 << 20)
        assert (await import_files(branch, first.files)).ok
        ack = await export_to(branch, "hq", tmp_path / "ack", max_part=1 << 20)
        assert (await import_files(node, ack.files)).ok
        await _customer(client, clerk, branch="S063", name="乙")
        second = await export_to(node, "S063", tmp_path / "2", max_part=1 << 20)
        # The branch lost what the first bundle brought (restored from an old backup).
        async with branch.db.admin() as conn:
            await conn.execute(update(sync_peers).where(
                sync_peers.c.peer_id == node.node_id).values(pulled=""))
            await conn.execute(delete(bundle_log))
        report = await import_files(branch, second.files)
        assert report.ok and not report.applied
        assert "starts after changes not received yet" in report.waiting[0]
        report = await import_files(branch, first.files)  # the earlier one: both apply
        assert len(report.applied) == 2, report
        assert await _names(branch) == {"甲", "乙"}
    finally:
        await branch.close()


async def test_bundle_verified_before_decrypt_refuses_tampered_foreign_expired_revoked(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str]) -> None:
    branch, _ = await _branch(tmp_path, node, "S064")
    other, _ = await _branch(tmp_path, node, "S065")
    try:
        await _customer(client, clerk, branch="S064")
        quarantine = branch.settings.data_dir / "bundles" / "quarantine"

        async def refused(files: list[Path], at: Node = branch) -> str:
            report = await import_files(at, files)
            assert not report.ok and not report.applied and len(report.rejected) == 1
            assert await _names(at) == set()
            assert not any(f.exists() for f in files)  # moved to quarantine
            return report.rejected[0]

        def fresh(name: str, **kw: Any) -> Any:
            return export_to(node, "S064", tmp_path / name, max_part=1 << 20, **kw)

        sent = await fresh("a")
        data = bytearray(sent.files[0].read_bytes())
        data[len(data) // 2] ^= 0x01
        sent.files[0].write_bytes(bytes(data))
        assert "signature does not verify" in await refused(sent.files)
        assert (quarantine / sent.files[0].name).exists()
        sent = await fresh("b")
        sent.files[0].write_bytes(sent.files[0].read_bytes()[:-100])
        assert "signature does not verify" in await refused(sent.files)
        sent = await fresh("c")
        assert "addressed to another node" in await refused(sent.files, other)
        sent = await fresh("d", ttl=timedelta(seconds=-1))
        assert "expired" in await refused(sent.files)
        # A well-formed bundle addressed to the branch from a node nobody enrolled.
        from branches._bundles import BundleEnd, BundleHeader, PartHeader, Sealer, write_parts
        from crypto import NodeKey
        from schema import nodes

        async with branch.db.read() as conn:
            box = (await conn.execute(select(nodes.c.box_public_key).where(
                nodes.c.id == branch.node_id))).scalar_one()
        now = utcnow()
        stranger = BundleHeader(bundle_id="f" * 36, sender="0" * 36, recipient=branch.node_id,
                                number=1, created_at=now, expires_at=now + timedelta(days=1),
                                schema=1, protocol=1, since="", ack="")
        (tmp_path / "e").mkdir()
        sealer = Sealer(tmp_path / "e", stranger, NodeKey.generate(), box)
        sealer.payload.end(BundleEnd(until="", batches=0, rows=0))
        sealer.close()
        forged = write_parts(sealer.path, tmp_path / "e", PartHeader(
            bundle_id=stranger.bundle_id, sender=stranger.sender, recipient=branch.node_id,
            number=1, part=1, parts=1), 1 << 20, lambda p, n: f"stranger.{p}of{n}.blb")
        sealer.discard()
        assert "unknown sender" in await refused(forged)
        junk = tmp_path / "junk.blb"
        junk.write_bytes(b"hello, not a bundle")
        assert "not a Branchline bundle file" in await refused([junk])
        # A revoked branch's bundle is refused at HQ.
        async with branch.db.write(branch.node_id, None) as uow:
            await uow.insert("customers", {"name": "分店", "customer_type": "person",
                                           "source": "call", "branch": "S064",
                                           "registered_at": utcnow()})
        up = await export_to(branch, "hq", tmp_path / "up", max_part=1 << 20)
        await revoke(node, node_id=branch.node_id, branch=None, reason="stolen")
        report = await import_files(node, up.files)
        assert not report.ok and "revoked" in report.rejected[0]
        assert "分店" not in await _names(node)
    finally:
        await branch.close()
        await other.close()


async def test_bundle_applies_whole_or_not_at_all(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str]) -> None:
    """A correctly signed bundle whose second frame is damaged: nothing of the first
    frame stays applied."""
    from branches._bundles import (
        FRAME_BATCH,
        BundleHeader,
        PartHeader,
        Sealer,
        frame,
        part_name,
        write_parts,
    )
    from schema import Scope, outgoing
    from server.services.bundles import bundle_node
    from sync import PROTOCOL_VERSION

    branch, _ = await _branch(tmp_path, node, "S066")
    try:
        await _customer(client, clerk, branch="S066")
        me = await bundle_node(node)
        async with node.db.read() as conn:
            from schema import nodes

            box = (await conn.execute(select(nodes.c.box_public_key).where(
                nodes.c.id == branch.node_id))).scalar_one()
        batch = await outgoing(node.db, sender=node.node_id, peer=branch.node_id,
                               scope=Scope("S066"), cursor="", limit=1000)
        assert batch.rows
        now = utcnow()
        header = BundleHeader(bundle_id="0" * 8 + "-bad", sender=node.node_id,
                              recipient=branch.node_id, number=1, created_at=now,
                              expires_at=now + timedelta(days=1), schema=1,
                              protocol=PROTOCOL_VERSION, since="", ack="")
        out = tmp_path / "bad"
        out.mkdir()
        sealer = Sealer(out, header, me.key, box)
        sealer.payload.batch(batch)
        sealer.payload.raw(frame(FRAME_BATCH, b"\x93 not a batch"))
        sealer.close()
        files = write_parts(sealer.path, out, PartHeader(
            bundle_id=header.bundle_id, sender=node.node_id, recipient=branch.node_id,
            number=1, part=1, parts=1), 1 << 20, lambda p, n: part_name("hq", "s066", 1,
                                                                        header.bundle_id, p, n))
        sealer.discard()
        report = await import_files(branch, files)
        assert not report.ok and "nothing applied" in report.rejected[0]
        assert await _names(branch) == set()
    finally:
        await branch.close()
