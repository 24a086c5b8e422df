"""HQ and three branches exchange only bundles over a lossy, duplicating, reordering
"mail" — and converge exactly as online sync would (SPEC §14, §15)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from schema import TABLES
from server.node import Node
from server.services.bundles import export_to, import_files
from tests.sync_harness import Replica, customer, snapshot
from tests.test_field_encryption import Client
from tests.test_sync_http import _branch, _sync

CODES = ("S081", "S082", "S083")


def _replica(node: Node, branch: str | None = None) -> Replica:
    return Replica(db=node.db, id=node.node_id, branch=branch)


async def _work(rng: random.Random, node: Node, branch: str | None, step: int) -> None:
    """A few writes at one node: new customers, edits of existing ones, a delete."""
    t = TABLES["customers"]
    async with node.db.read() as conn:
        query = select(t.c.id, t.c.branch)
        ids = [(r.id, r.branch) for r in await conn.execute(query)
               if branch is None or r.branch == branch]
    async with node.db.write(node.node_id, None) as uow:
        for i in range(rng.randint(1, 3)):
            where = branch or rng.choice(CODES)
            await uow.insert("customers", customer(f"客户{step}-{i}-{node.node_id[-4:]}",
                                                   where, notes=f"created {step}"))
        for cid, _ in rng.sample(ids, min(len(ids), rng.randint(0, 3))):
            await uow.update("customers", cid, {"notes": f"edit {step} by {node.node_id[-4:]}",
                                                "industry": rng.choice(["零售", "餐饮", None])})
        if ids and rng.random() < 0.2:
            await uow.delete("customers", rng.choice(ids)[0])


async def _deliver(rng: random.Random, mail: list[tuple[Node, list[Path]]], lossy: bool
                   ) -> None:
    """Deliver queued bundles: some lost, some twice, parts and bundles shuffled."""
    deliveries: list[tuple[Node, Path]] = []
    for to, files in mail:
        if lossy and rng.random() < 0.25:
            continue
        copies = 2 if lossy and rng.random() < 0.25 else 1
        deliveries += [(to, f) for f in files for _ in range(copies)]
    rng.shuffle(deliveries)
    inbox: dict[str, list[Path]] = {}
    for n, (to, f) in enumerate(deliveries):
        copy = f.parent / "delivered" / f"{n}" / f.name  # a duplicate is another file
        copy.parent.mkdir(parents=True)
        shutil.copyfile(f, copy)
        inbox.setdefault(to.node_id, []).append(copy)
        if rng.random() < 0.5:  # import in several sittings, as mail trickles in
            report = await import_files(to, inbox.pop(to.node_id))
            assert report.ok, report.rejected
    by_id = {to.node_id: to for to, _ in mail}
    for node_id, files in inbox.items():
        report = await import_files(by_id[node_id], files)
        assert report.ok, report.rejected
    mail.clear()


async def _exchange(hq: Node, branches: list[Node], out: Path, n: int) -> list[Any]:
    mail: list[Any] = []
    for b in branches:
        sent = await export_to(hq, b.settings.node.branch_code or "", out / f"{n}-hq-{b.node_id}",
                               max_part=4096)
        mail.append((b, sent.files))
        up = await export_to(b, "hq", out / f"{n}-{b.node_id}-hq", max_part=4096)
        mail.append((hq, up.files))
    return mail


@pytest.mark.parametrize("seed", [7, 2024])
async def test_bundles_with_loss_duplication_and_reordering_converge_like_online(
        tmp_path: Path, node: Node, client: Client, seed: int) -> None:
    rng = random.Random(seed)
    pairs = [await _branch(tmp_path, node, code) for code in CODES]
    branches = [b for b, _ in pairs]
    out = tmp_path / "mail"
    try:
        # Enrolment and the first bundle of each branch arrive (a branch starts empty).
        await _deliver(rng, await _exchange(node, branches, out, 0), lossy=False)
        for step in range(1, 7):
            await _work(rng, node, None, step)
            for b in branches:
                await _work(rng, b, b.settings.node.branch_code, step)
            await _deliver(rng, await _exchange(node, branches, out, step), lossy=True)
        # The link gets better: re-exports cover whatever was lost.
        for step in range(7, 10):
            await _deliver(rng, await _exchange(node, branches, out, step), lossy=False)
        hq_state = await snapshot(_replica(node))
        assert any(k.startswith("customers/") for k in hq_state)
        for b in branches:
            code = b.settings.node.branch_code
            assert await snapshot(_replica(b), code) == await snapshot(_replica(node), code)
        # Identical to exchanging online: an online round now changes nothing anywhere.
        for b, up in pairs:
            before = await snapshot(_replica(b))
            await _sync(b, up, client)
            assert await snapshot(_replica(b)) == before
        assert await snapshot(_replica(node)) == hq_state
    finally:
        for b in branches:
            await b.close()


async def test_a_branch_mixing_online_days_and_bundle_days_loses_nothing(
        tmp_path: Path, node: Node, client: Client) -> None:
    rng = random.Random(99)
    branch, up = await _branch(tmp_path, node, "S084")
    out = tmp_path / "mail"
    try:
        for day in range(8):
            await _work(rng, node, None if day % 3 else "S084", day)
            await _work(rng, branch, "S084", day)
            if day % 2:  # online today
                await _sync(branch, up, client)
            else:  # the VPN is down: bundles both ways, one of them delivered twice
                down = await export_to(node, "S084", out / f"d{day}", max_part=1 << 20)
                upb = await export_to(branch, "hq", out / f"u{day}", max_part=1 << 20)
                assert (await import_files(node, upb.files)).ok
                assert (await import_files(branch, down.files)).ok
                again = await import_files(branch, down.files)
                assert again.ok and again.rows == 0
        await _sync(branch, up, client)
        await _sync(branch, up, client)
        assert (await snapshot(_replica(branch), "S084")
                == await snapshot(_replica(node), "S084"))
        notes = TABLES["customers"]
        async with branch.db.read() as conn:
            created = {r.name for r in await conn.execute(select(notes.c.name))}
        assert sum(name.endswith(branch.node_id[-4:]) for name in created) >= 8
    finally:
        await branch.close()
