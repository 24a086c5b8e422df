"""The network and helpers the rule tests share (tests named after sync/SPEC.md rules)."""

from __future__ import annotations

import time
from typing import Any

from tests._sync_net import Net, rows
from tests.sync_harness import customer


async def new_customer(net: Net, at: str, branch: str, **extra: Any) -> str:
    async with await net[at].write() as uow:
        c = await uow.insert("customers", customer(f"客户{time.monotonic_ns() % 10_000}",
                                                   branch, **extra))
    return str(c["id"])


async def update(net: Net, at: str, table: str, row_id: str, changes: dict[str, Any],
                  **kw: Any) -> None:
    async with await net[at].write() as uow:
        await uow.update(table, row_id, changes, **kw)


async def everywhere(net: Net, *names: str) -> None:
    for name in names:
        await net.sync(name)


async def agree(net: Net, *names: str) -> None:
    for name in names:
        assert await net.diff(name) == {}, name


async def conflicts(net: Net, at: str) -> list[dict[str, Any]]:
    return await rows(net[at], "conflicts")


