"""The class policy: which key class encrypts each sensitive field, and which classes
each role reads in plaintext.

The defaults are declared with the entities (`SENSITIVE`) and the roles
(`READABLE_CLASSES`). HQ may change both while the system runs (`branchline keys
policy`); its choices are rows of the replicated `key_policies` table, so every node
enforces the same policy once it has synced. A field moves only between key classes:
making an ordinary field confidential adds mask columns, which is a schema migration.
A field moved to another class is re-encrypted at HQ in the background
(`server/keys.py`); until then its values open with the key of the class their token
names, but only readers of the *new* class see plaintext.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema._entities import SENSITIVE
from schema._errors import SchemaError
from schema._roles import READABLE_CLASSES, ROLES
from schema._tables import TABLES

KEY_CLASSES = ("confidential", "secret", "credit")
"""Every key class: the two sensitivity classes, and credit status (finance reads it)."""
POLICY_NS = uuid.UUID("5e0c7b8a-3f14-4d2b-9c61-0a8e2f4d7b19")


class PolicyError(SchemaError):
    """A class policy change names an unknown field, role or class."""


def policy_id(kind: str, name: str) -> str:
    """The id of a `key_policies` row (the same wherever it is made)."""
    return str(uuid.uuid5(POLICY_NS, f"{kind}|{name}"))


@dataclass(frozen=True)
class ClassPolicy:
    """Key class per sensitive column (per table), readable classes per role."""

    fields: Mapping[str, Mapping[str, str]]
    roles: Mapping[str, frozenset[str]]

    def columns(self, table: str) -> Mapping[str, str]:
        """The sensitive columns of `table` and the class that encrypts each."""
        return self.fields.get(table, {})

    def readable(self, role: str) -> frozenset[str]:
        """The classes `role` reads in plaintext; nothing for an unknown role."""
        return self.roles.get(role, frozenset())

    def with_rows(self, rows: Iterable[tuple[str, str, str]]) -> ClassPolicy:
        """This policy changed by `key_policies` rows (kind, name, classes); rows that
        name something this version does not know are ignored, not fatal."""
        fields = {t: dict(cols) for t, cols in self.fields.items()}
        roles = dict(self.roles)
        for kind, name, classes in rows:
            wanted = frozenset(c for c in classes.split(",") if c)
            if not wanted <= set(KEY_CLASSES):
                continue
            if kind == "field":
                table, _, column = name.partition(".")
                if column in fields.get(table, {}) and len(wanted) == 1:
                    fields[table][column] = next(iter(wanted))
            elif kind == "role" and name in ROLES:
                roles[name] = wanted
        return ClassPolicy(fields, roles)


DEFAULT_POLICY = ClassPolicy(SENSITIVE, READABLE_CLASSES)
"""The policy as declared, before HQ changes anything."""


def check_change(kind: str, name: str, classes: Iterable[str]) -> str:
    """Validate one policy change; returns the `classes` value to store."""
    wanted = sorted(set(classes))
    unknown = [c for c in wanted if c not in KEY_CLASSES]
    if unknown:
        raise PolicyError(f"unknown key class {unknown[0]!r} (classes: "
                          f"{', '.join(KEY_CLASSES)})")
    if kind == "field":
        table, _, column = name.partition(".")
        if column not in SENSITIVE.get(table, {}):
            raise PolicyError(f"{name} is not an encrypted field (give table.column; moving "
                              "an ordinary field into a class is a schema migration)")
        if len(wanted) != 1:
            raise PolicyError("a field belongs to exactly one key class")
    elif kind == "role":
        if name not in ROLES:
            raise PolicyError(f"unknown role {name!r}")
    else:
        raise PolicyError(f"unknown policy kind {kind!r}")
    return ",".join(wanted)


async def load_policy(conn: AsyncConnection) -> ClassPolicy:
    """The policy in force on this node: the defaults changed by HQ's rows."""
    t = TABLES["key_policies"]
    rows = await conn.execute(select(t.c.kind, t.c.name, t.c.classes).order_by(t.c.id))
    return DEFAULT_POLICY.with_rows((r.kind, r.name, r.classes) for r in rows)


__all__ = ["DEFAULT_POLICY", "KEY_CLASSES", "ClassPolicy", "PolicyError", "check_change",
           "load_policy", "policy_id"]
