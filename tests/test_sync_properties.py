"""Property tests of sync (sync/SPEC.md §12): replicas receiving changes in any order,
duplicated or retried, end identical; a lost concurrent write is recorded exactly once
and a write that saw the other is never a conflict.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from schema import sync_rows
from schema._entities import FILING_STATES
from sync import (
    Merge,
    Stamp,
    beats,
    counter_value,
    decide,
    merge_lineage,
    merge_totals,
    set_members,
)
from tests._sync_net import Net, quarantine, row, rows, stamp
from tests.sync_harness import customer

BRANCHES = ("S001", "S002", "S003")
NODES = ("hq", *BRANCHES)


def fast(examples: int) -> settings:
    """Few, slowish examples: each one opens real databases."""
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# -- operations -------------------------------------------------------------------------

node = st.sampled_from(NODES)
pick = st.integers(0, 5)
limit = st.integers(1, 7)
sync_step = st.tuples(st.sampled_from(("push", "pull")), st.sampled_from(BRANCHES), limit,
                      st.booleans(), st.booleans())
edit = st.tuples(st.just("edit"), node, pick, st.sampled_from(("industry", "notes")),
                st.sampled_from(("甲", "乙", "丙")))
operation = st.one_of(
    st.tuples(st.just("create"), node, st.sampled_from(BRANCHES), st.booleans()),
    edit, edit,
    st.tuples(st.just("points"), node, pick, st.integers(-5, 9)),
    st.tuples(st.just("tags"), node, pick, st.sets(st.sampled_from("xyz")).map(sorted)),
    st.tuples(st.just("filing"), node, pick, st.sampled_from(FILING_STATES)),
    st.tuples(st.just("owner"), node, pick, st.sampled_from(("u1", "u2"))),
    st.tuples(st.just("contact"), node, pick),
    st.tuples(st.just("delete_contact"), node, pick),
    st.tuples(st.just("delete"), node, pick),
    st.tuples(st.just("recreate"), node, pick),
    st.tuples(st.just("transfer"), pick, st.sampled_from(BRANCHES)),
    st.tuples(st.just("replay"), st.sampled_from(BRANCHES), pick),
    sync_step, sync_step, sync_step,
)


class World:
    """Runs drawn operations against a network, choosing rows from each replica's own
    current state (so an operation is always legal where it runs)."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.branch_of: dict[str, str] = {}
        """Every customer id ever created, with the branch HQ last filed it under."""

    async def _live(self, at: str, table: str = "customers") -> list[dict[str, Any]]:
        return sorted(await rows(self.net[at], table), key=lambda r: r["id"])

    async def _choose(self, at: str, k: int, table: str = "customers"
                      ) -> dict[str, Any] | None:
        live = await self._live(at, table)
        if not live:
            return None
        if table == "customers" and self.branch_of:
            # The same k names the same customer on every node that holds it, so that
            # HQ and a branch often write the same row without seeing each other.
            wanted = list(self.branch_of)[k % len(self.branch_of)]
            for c in live:
                if c["id"] == wanted:
                    return c
        return live[k % len(live)]

    async def run(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind in ("push", "pull"):
            _, name, lim, drop, twice = op
            step = self.net.push_page if kind == "push" else self.net.pull_page
            await step(name, lim, drop_ack=drop, times=2 if twice else 1)
            return
        if kind == "replay":  # a push page delivered late, after newer ones
            sent = self.net.pushed.get(op[1])
            if sent:
                await self.net.apply_at_hq(op[1], sent[op[2] % len(sent)])
            return
        if kind == "transfer":
            c = await self._choose("hq", op[1])
            if c is not None and c["branch"] != op[2]:
                async with await self.net.hq.write() as uow:
                    await uow.update("customers", c["id"], {"branch": op[2]})
                self.branch_of[c["id"]] = op[2]
            return
        at = op[1]
        r = self.net[at]
        if kind == "create":
            branch = r.branch or op[2]
            async with await r.write() as uow:
                c = await uow.insert("customers", customer("客户", branch, tags=["x"]))
                if op[3]:
                    await uow.insert("contacts", {"customer_id": c["id"], "name": "联系人"})
            self.branch_of[c["id"]] = branch
            return
        if kind == "recreate":
            async with r.db.read() as conn:
                dead = sorted(s.row_id for s in await conn.execute(select(sync_rows).where(
                    sync_rows.c.tbl == "customers")) if s.cl % 2 == 0)
            dead = [i for i in dead if r.branch in (None, self.branch_of.get(i))]
            if dead:
                i = dead[op[2] % len(dead)]
                async with await r.write() as uow:
                    await uow.insert("customers", customer("重建", self.branch_of[i], id=i))
            return
        if kind == "delete_contact":
            contact = await self._choose(at, op[2], "contacts")
            if contact is not None:
                async with await r.write() as uow:
                    await uow.delete("contacts", contact["id"])
            return
        c = await self._choose(at, op[2])
        if c is None:
            return
        async with await r.write() as uow:
            if kind == "edit":
                await uow.update("customers", c["id"], {op[3]: op[4]})
            elif kind == "points" and op[3]:
                await uow.increment("customers", c["id"], "points", op[3])
            elif kind == "tags":
                await uow.update("customers", c["id"], {"tags": op[3]})
            elif kind == "filing":
                here, there = FILING_STATES.index(c["filing_status"]), FILING_STATES.index(op[3])
                if here != there:
                    await uow.update("customers", c["id"], {"filing_status": op[3]},
                                     new_cycle=frozenset({"filing_status"} if there < here
                                                         else ()))
            elif kind == "owner":
                await uow.update("customers", c["id"], {"owner_id": op[3]},
                                 new_cycle=frozenset({"owner_id"} if c["owner_id"] else ()))
            elif kind == "contact":
                await uow.insert("contacts", {"customer_id": c["id"], "name": "新联系人"})
            elif kind == "delete":
                for contact in await rows(r, "contacts", customer_id=c["id"]):
                    await uow.delete("contacts", contact["id"])
                await uow.delete("customers", c["id"])


async def _network(folder: Path) -> Net:
    return await Net.open(folder, {b: b for b in BRANCHES})


async def _check_converged(net: Net, world: World) -> None:
    rounds = await net.settle(rounds=4)
    diffs = {name: await net.diff(name) for name in net.nodes}
    assert rounds <= 4 and not any(diffs.values()), diffs
    # HQ holds the union: every customer ever created lives there unless deleted.
    for cid in world.branch_of:
        live = await row(net.hq, "customers", cid)
        s = await stamp(net.hq, "customers", cid)
        assert (live is not None) == (s is not None and s.cl % 2 == 1), cid
        assert s is not None, f"customer {cid} never reached HQ"
    # Nothing was kept aside but rows of customers the writer no longer (or never) held.
    for q in await quarantine(net.hq):
        assert "belongs to" in q["reason"], q
    for name in net.nodes:
        assert await quarantine(net.nodes[name]) == []
    # A lost write is recorded once, not once per detecting node or per relay.
    found = await rows(net.hq, "conflicts")
    losers = Counter((c["row_id"], c["column_name"], c["loser_node"], c["loser_clock"])
                     for c in found)
    assert all(n == 1 for n in losers.values()), losers
    for c in found:
        assert c["winner_value"] != c["loser_value"]


@fast(30)
@given(ops=st.lists(operation, min_size=1, max_size=30))
def test_replicas_converge_under_any_interleaving(ops: list[tuple[Any, ...]]) -> None:
    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as folder:
            net = await _network(Path(folder))
            try:
                world = World(net)
                for op in ops:
                    await world.run(op)
                await _check_converged(net, world)
            finally:
                await net.close()

    asyncio.run(scenario())


# -- two writers: exactly one conflict, or none -------------------------------------------

FIELDS = {  # field: (first value, second value, new cycle for a sequential second write)
    "industry": ("零售", "餐饮", False),
    "owner_id": ("u1", "u2", True),
    "filing_status": ("filed", "archived", False),
}
WRITERS = ("hq", "S001", "S001b")


@fast(25)
@given(writers=st.permutations(WRITERS).map(lambda p: p[:2]),
       column=st.sampled_from(sorted(FIELDS)),
       concurrent=st.booleans(),
       schedule=st.lists(st.one_of(
           st.tuples(st.sampled_from(("push", "pull")), st.sampled_from(("S001", "S001b")),
                     limit, st.booleans(), st.booleans()),
           st.tuples(st.just("replay"), st.sampled_from(("S001", "S001b")), pick)),
           max_size=8))
def test_a_lost_concurrent_write_is_recorded_exactly_once(
        writers: tuple[str, str], column: str, concurrent: bool,
        schedule: list[tuple[Any, ...]]) -> None:
    """A and B write one field. Without seeing each other: exactly one conflict record,
    the same on every replica. B after receiving A's value (relayed through HQ when both
    are branch PCs): none. Deliveries are reordered, duplicated and lose their acks."""
    first, second, cycle = FIELDS[column]
    a, b = writers

    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as folder:
            net = await Net.open(Path(folder), {"S001": "S001", "S001b": "S001"})
            try:
                async with await net["S001"].write() as uow:
                    c = (await uow.insert("customers", customer("客户", "S001")))["id"]
                for name in ("S001", "S001b"):
                    await net.sync(name)

                async def write(at: str, value: str, new_cycle: bool) -> None:
                    async with await net[at].write() as uow:
                        await uow.update("customers", c, {column: value},
                                         new_cycle=frozenset({column} if new_cycle else ()))

                await write(a, first, False)
                if not concurrent:  # B receives A's value first, through HQ if need be
                    for name in (a, b):
                        if name != "hq":
                            await net.sync(name)
                await write(b, second, cycle and not concurrent)
                world = World(net)
                for step in schedule:
                    await world.run(step)
                await net.settle()
                assert await net.diff("S001") == {} and await net.diff("S001b") == {}
                found = {name: sorted(x["id"] for x in await rows(net[name], "conflicts"))
                         for name in ("hq", "S001", "S001b")}
                assert found["hq"] == found["S001"] == found["S001b"]
                assert len(found["hq"]) == (1 if concurrent else 0), found
                if concurrent:
                    record = (await rows(net.hq, "conflicts"))[0]
                    assert record["column_name"] == column
                    assert {record["winner_value"], record["loser_value"]} == {first, second}
                    assert {record["winner_node"], record["loser_node"]} == {
                        net[a].id, net[b].id}
                    assert record["winner_value"] == (await row(net.hq, "customers", c)
                                                      or {})[column]
            finally:
                await net.close()

    asyncio.run(scenario())


# -- the pure merge: any order, any duplication, same winner --------------------------------

NODE_IDS = ("n1", "n2", "n3", "n4")
stamps = st.sets(st.tuples(st.integers(1, 6), st.sampled_from(NODE_IDS), st.integers(0, 2)),
                 min_size=1, max_size=6)


@st.composite
def versions(draw: st.DrawFn) -> list[tuple[Stamp, dict[str, int], str]]:
    out = []
    for clock, origin, rank in sorted(draw(stamps)):
        seen = draw(st.dictionaries(st.sampled_from(NODE_IDS), st.integers(0, 6), max_size=3))
        lineage = merge_lineage(seen, {origin: clock})
        out.append((Stamp(clock, origin, rank), lineage, f"{clock}/{origin}/{rank}"))
    return out


def _fold(policy: Merge, order: list[tuple[Stamp, dict[str, int], str]]
          ) -> tuple[Stamp, dict[str, int], str]:
    here, lineage, value = order[0]
    for stamp_, lin, val in order[1:]:
        d = decide(policy, here, lineage, value, stamp_, lin, val)
        lineage = d.lineage
        if d.take_incoming:
            here, value = stamp_, val
    return here, lineage, value


@settings(max_examples=200, deadline=None)
@given(policy=st.sampled_from(list(Merge)), vs=versions(), data=st.data())
def test_merge_order_does_not_matter(policy: Merge,
                                     vs: list[tuple[Stamp, dict[str, int], str]],
                                     data: st.DataObject) -> None:
    # `beats` is a strict total order on the versions.
    for x, y in itertools.product(vs, repeat=2):
        if x[0] != y[0]:
            assert beats(policy, x[0], y[0]) != beats(policy, y[0], x[0])
        else:
            assert not beats(policy, x[0], y[0])
    best = [v for v in vs if all(v[0] == w[0] or beats(policy, v[0], w[0]) for w in vs)]
    assert len(best) == 1
    everything: dict[str, int] = {}
    for _, lin, _ in vs:
        everything = merge_lineage(everything, lin)
    # Folding in any order, with duplicates and re-deliveries, gives that winner and
    # the lineage that has seen every version.
    order = data.draw(st.permutations(vs))
    extra = data.draw(st.lists(st.sampled_from(vs), max_size=4))
    positions = data.draw(st.lists(st.integers(0, len(order)), min_size=len(extra),
                                   max_size=len(extra)))
    for version, at in zip(extra, positions, strict=True):
        order.insert(at, version)
    winner, lineage, value = _fold(policy, order)
    assert (winner, value) == (best[0][0], best[0][2])
    assert lineage == everything
    assert _fold(policy, list(reversed(order))) == (winner, lineage, value)


@settings(max_examples=100, deadline=None)
@given(vs=versions())
def test_conflict_flag_is_symmetric(vs: list[tuple[Stamp, dict[str, int], str]]) -> None:
    for (s1, l1, v1), (s2, l2, v2) in itertools.combinations(vs, 2):
        for policy in Merge:
            one = decide(policy, s1, l1, v1, s2, l2, v2)
            other = decide(policy, s2, l2, v2, s1, l1, v1)
            assert one.conflict == other.conflict
            assert one.take_incoming != other.take_incoming
            assert one.lineage == other.lineage


totals = st.tuples(st.integers(0, 50), st.integers(0, 50))


@settings(max_examples=100, deadline=None)
@given(per_node=st.lists(st.lists(totals, min_size=1, max_size=3), min_size=1, max_size=4),
       data=st.data())
def test_counter_and_set_merges_do_not_depend_on_order(
        per_node: list[list[tuple[int, int]]], data: st.DataObject) -> None:
    # A node's (increments, decrements) — or an element's (added, removed) clocks —
    # only grow; replicas receive the successive versions in any order, some twice.
    grown = [[(sum(i for i, _ in xs[:n + 1]), sum(d for _, d in xs[:n + 1]))
              for n in range(len(xs))] for xs in per_node]
    deliveries = [(n, t) for n, ts in enumerate(grown) for t in ts]

    def merged(order: list[tuple[int, tuple[int, int]]]) -> dict[int, tuple[int, int]]:
        state: dict[int, tuple[int, int]] = {}
        for n, t in order:
            state[n] = merge_totals(state.get(n, (0, 0)), t)
        return state

    one = data.draw(st.permutations(deliveries))
    other = data.draw(st.permutations(deliveries))
    other += data.draw(st.lists(st.sampled_from(deliveries), max_size=5))
    assert merged(one) == merged(other) == {n: ts[-1] for n, ts in enumerate(grown)}
    assert counter_value(merged(one).values()) == sum(i - d for i, d in
                                                       (ts[-1] for ts in grown))
    assert set_members({"e": list(merged(one).values())}) == set_members(
        {"e": list(merged(other).values())})
