"""The field keys a node holds, and sealing/opening confidential values with them.

The unit of work calls `seal_rows` before it writes (one write path: no plaintext
confidential value reaches a table), and services call `open_rows` to show a row to a
principal: plaintext of the classes their role may read, masks for the rest. Data keys
(one per customer and class) live in the replicated `data_keys` table, wrapped by a class
key version; a node without that class key stores and relays them without reading them.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto import (
    FieldCryptoError,
    blind_index,
    decrypt_value,
    encrypt_value,
    index_key,
    is_token,
    new_key,
    token_class,
    unwrap_data_key,
    wrap_data_key,
)
from schema._bulk import records
from schema._classes import DEFAULT_POLICY, ClassPolicy, load_policy
from schema._entities import BLIND_INDEXED
from schema._errors import SchemaError
from schema._tables import TABLES, sync_rows
from schema._values import mask

DEK_NS = uuid.UUID("3b0d7f0e-8f5e-4f7e-a7a3-6a0c2e1b9d41")


class KeyMissingError(SchemaError):
    """This node holds no key for a class it was asked to write or read."""


def data_key_id(customer_id: str, cls: str) -> str:
    """The id of a customer's data key for a class (the same on every node)."""
    return str(uuid.uuid5(DEK_NS, f"{customer_id}|{cls}"))


@dataclass
class Vault:
    """Class keys by class and version, the current version of each, and the
    blind-index root. Built once when the node opens; never stored in plaintext."""

    class_keys: dict[str, dict[int, bytes]] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    index_root: bytes | None = None
    policy: ClassPolicy = DEFAULT_POLICY
    """Which class encrypts each field and which classes each role reads (HQ may change
    it; schema/_classes.py)."""
    policy_mark: int | None = field(default=None, repr=False)
    reloader: Callable[[], Awaitable[Vault | None]] | None = field(default=None, repr=False)
    """Reads the node's keys again: a data key wrapped by a version this process has not
    loaded yet (rotated by `keys rotate`, or granted by a sync) triggers it once."""

    def adopt(self, other: Vault) -> None:
        """Take over the keys of a freshly loaded vault, in place."""
        self.class_keys, self.current, self.index_root = (
            other.class_keys, other.current, other.index_root)
        self.policy, self.policy_mark = other.policy, other.policy_mark

    async def refresh_policy(self, conn: AsyncConnection) -> ClassPolicy:
        """The class policy, re-read if it changed since this process last read it (HQ's
        CLI, or a sync, may change it while the server runs); a cheap indexed check."""
        mark = (await conn.execute(select(func.max(sync_rows.c.seq)).where(
            sync_rows.c.tbl == "key_policies"))).scalar()
        if mark != self.policy_mark:
            self.policy, self.policy_mark = await load_policy(conn), mark
        return self.policy

    def readable(self, role: str) -> frozenset[str]:
        """The classes `role` reads in plaintext under the policy in force."""
        return self.policy.readable(role)

    def holds(self, cls: str) -> bool:
        """Whether this node can read and write values of `cls`."""
        return cls in self.current

    def index(self, table: str, column: str, normalised: str) -> str:
        """The blind index of a normalised value (exact search without decrypting)."""
        if self.index_root is None:
            raise KeyMissingError("this node holds no blind-index key")
        return blind_index(index_key(self.index_root, table, column), normalised)

    async def _load(self, conn: AsyncConnection, wanted: set[tuple[str, str]]
                    ) -> dict[tuple[str, str], bytes]:
        """The data keys of `wanted` (customer, class) pairs that exist and that this node
        can unwrap. Never cached between calls: a key erased elsewhere (its row deleted by
        sync) stops working here at once."""
        deks: dict[tuple[str, str], bytes] = {}
        missing = sorted(wanted)
        t = TABLES["data_keys"]
        ids = [data_key_id(c, cls) for c, cls in missing]
        rows: list[Any] = []
        for i in range(0, len(ids), 500):
            rows += records(await conn.execute(select(t).where(t.c.id.in_(ids[i:i + 500]))))
        if self.reloader is not None and any(
                r.cls in self.class_keys and r.key_version not in self.class_keys[r.cls]
                for r in rows):
            fresh = await self.reloader()
            if fresh is not None:
                self.adopt(fresh)
        for r in rows:
            key = self.class_keys.get(r.cls, {}).get(r.key_version)
            if key is None:
                continue
            deks[(r.customer_id, r.cls)] = unwrap_data_key(
                key, r.wrapped, customer_id=r.customer_id, cls=r.cls, version=r.key_version)
        return deks

    def _new_dek(self, deks: dict[tuple[str, str], bytes], customer_id: str, cls: str
                 ) -> dict[str, Any]:
        version = self.current[cls]
        dek = new_key()
        deks[(customer_id, cls)] = dek
        return {"id": data_key_id(customer_id, cls), "customer_id": customer_id, "cls": cls,
                "key_version": version,
                "wrapped": wrap_data_key(self.class_keys[cls][version], dek,
                                         customer_id=customer_id, cls=cls, version=version)}

    async def seal_rows(self, conn: AsyncConnection, table: str,
                        rows: Iterable[tuple[str, str, dict[str, Any]]]
                        ) -> list[dict[str, Any]]:
        """Encrypt the plaintext sensitive values of `rows` ((row id, customer id, values)
        triples, changed in place), filling their masks and blind indexes. Returns the
        `data_keys` rows to insert for customers that had none yet."""
        columns = self.policy.columns(table)
        todo = [(row_id, customer_id, values) for row_id, customer_id, values in rows
                if any(values.get(c) is not None and not is_token(values[c])
                       for c in columns)]
        for _, _, values in todo:
            for c in columns:
                if c in values and values[c] is None:
                    values[f"{c}_mask"] = None
                    if c in BLIND_INDEXED.get(table, ()):
                        values[f"{c}_bidx"] = None
        if not todo:
            return []
        needed = {(customer_id, columns[c]) for _, customer_id, values in todo
                  for c in columns if values.get(c) is not None and not is_token(values[c])}
        for _, cls in needed:
            if not self.holds(cls):
                raise KeyMissingError(f"this node holds no {cls} key: it cannot write "
                                      f"{cls} fields")
        deks = await self._load(conn, needed)
        created = [self._new_dek(deks, c, cls) for c, cls in sorted(needed)
                   if (c, cls) not in deks]
        for row_id, customer_id, values in todo:
            for c, cls in columns.items():
                value = values.get(c)
                if value is None or is_token(value):
                    continue
                text = value.isoformat() if hasattr(value, "isoformat") else str(value)
                values[f"{c}_mask"] = mask(c, text)
                if c in BLIND_INDEXED.get(table, ()) and self.index_root is not None:
                    values[f"{c}_bidx"] = self.index(table, c, text)
                values[c] = encrypt_value(deks[(customer_id, cls)], text, table=table,
                                          column=c, row_id=row_id, cls=cls)
        return created

    async def open_rows(self, conn: AsyncConnection, table: str,
                        rows: list[tuple[str, dict[str, Any]]], readable: frozenset[str]
                        ) -> list[tuple[str, str, list[str]]]:
        """Show `rows` ((customer id, row) pairs, changed in place) to a reader of the
        `readable` classes: plaintext where allowed and held, the mask elsewhere.
        Returns what was revealed in plaintext: (customer id, row id, columns)."""
        revealed: list[tuple[str, str, list[str]]] = []
        # Readability follows the field's class now; the key is the one the token names
        # (they differ only while a re-classified field is being re-encrypted).
        columns = {c: cls for c, cls in self.policy.columns(table).items() if cls in readable}
        wanted: set[tuple[str, str]] = set()
        for customer_id, row in rows:
            for c in columns:
                sealed = token_class(row[c]) if is_token(row.get(c)) else None
                if sealed is not None and self.holds(sealed):
                    wanted.add((customer_id, sealed))
        deks = await self._load(conn, wanted) if wanted else {}
        masked = self.policy.columns(table)
        for customer_id, row in rows:
            opened: list[str] = []
            for c in masked:
                value = row.get(c)
                if value is None:
                    continue
                sealed = token_class(value) if c in columns and is_token(value) else None
                dek = deks.get((customer_id, sealed)) if sealed is not None else None
                if dek is None:
                    row[c] = row.get(f"{c}_mask")
                    continue
                try:
                    row[c] = decrypt_value(dek, value, table=table, column=c,
                                           row_id=row["id"])
                    opened.append(c)
                except FieldCryptoError:
                    row[c] = row.get(f"{c}_mask")
            if opened:
                revealed.append((customer_id, row["id"], opened))
        return revealed

    async def reveal(self, conn: AsyncConnection, table: str, column: str, row_id: str,
                     customer_id: str, value: Any, readable: frozenset[str]) -> Any:
        """One stored value (e.g. from field history or a conflict) as a reader of
        `readable` may see it: plaintext, a mask made now, or `"(encrypted)"`."""
        cls = self.policy.columns(table).get(column)
        sealed = token_class(value) if is_token(value) else None
        if cls is None or sealed is None:
            return value
        dek = (await self._load(conn, {(customer_id, sealed)})).get((customer_id, sealed))
        if dek is None:
            return "(encrypted)"
        try:
            plain = decrypt_value(dek, value, table=table, column=column, row_id=row_id)
        except FieldCryptoError:
            return "(encrypted)"
        return plain if cls in readable else mask(column, plain)


__all__ = ["DEK_NS", "KeyMissingError", "Vault", "data_key_id"]
