"""Where a node's field keys live, and how they reach it (crypto/THREATS.md).

* **HQ** creates the class keys (`confidential`, `secret`, `credit`, version 1) and the
  blind-index root at `init`, and keeps them in `node_meta` wrapped by its root key,
  which lives outside the data directory (a 0600 key file, or `BRANCHLINE_ROOT_KEY`).
* **A branch** gets, in its sealed enrolment file, an X25519 key pair made for it and
  *grants*: the class keys its users need and the index root, each wrapped to that
  X25519 key. It stores them so in `node_meta` (inside its SQLCipher database).

Either way the keys are unwrapped into a `Vault` only in memory, when the node opens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import delete

from crypto import BoxKey, FieldCryptoError, new_key, unwrap_local, wrap_local, wrap_to
from schema import Database, Vault, node_meta
from server.errors import NodeError

CLASSES = ("confidential", "secret", "credit")
"""Key classes: the two sensitivity classes, and credit status (finance reads it)."""
INDEX = "index"


def _label(cls: str, version: int) -> str:
    return f"class:{cls}:{version}"


async def create_hq_keys(db: Database, root_key: bytes) -> None:
    """Create version 1 of every class key and the blind-index root (HQ, at init)."""
    rows = [{"key": f"fkey:{_label(cls, 1)}",
             "value": wrap_local(root_key, new_key(), label=_label(cls, 1))} for cls in CLASSES]
    rows += [{"key": f"fkey-current:{cls}", "value": "1"} for cls in CLASSES]
    rows.append({"key": f"fkey:{INDEX}", "value": wrap_local(root_key, new_key(), label=INDEX)})
    async with db.admin() as conn:
        await conn.execute(node_meta.insert(), rows)


async def store_grants(db: Database, box_private_hex: str, grants: Mapping[str, str]) -> None:
    """Keep a branch's X25519 key and the grants HQ wrapped to it (replacing older ones)."""
    async with db.admin() as conn:
        await conn.execute(delete(node_meta).where(node_meta.c.key.like("fkey%")))
        await conn.execute(delete(node_meta).where(node_meta.c.key == "box_key"))
        await conn.execute(node_meta.insert(), [
            {"key": "box_key", "value": box_private_hex},
            *({"key": f"fkey:{label}", "value": wrapped} for label, wrapped in grants.items())])


def _parse(label: str) -> tuple[str, int] | None:
    parts = label.split(":")
    if len(parts) == 3 and parts[0] == "class" and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None


def load_vault(meta: Mapping[str, str], *, role: str, root_key: bytes | None) -> Vault | None:
    """The node's field keys, unwrapped in memory; None if it holds none (a node without
    keys still stores and relays ciphertext, and shows masks)."""
    wrapped = {k[len("fkey:"):]: v for k, v in meta.items() if k.startswith("fkey:")}
    if not wrapped:
        return None
    if role == "hq":
        if root_key is None:
            return None

        def unwrap(label: str, value: str) -> bytes:
            assert root_key is not None
            return unwrap_local(root_key, value, label=label)
    else:
        if "box_key" not in meta:
            return None
        box = BoxKey.from_hex(meta["box_key"])

        def unwrap(label: str, value: str) -> bytes:
            return box.unwrap(value, label=label)
    vault = Vault()
    try:
        for label, value in wrapped.items():
            if label == INDEX:
                vault.index_root = unwrap(label, value)
                continue
            parsed = _parse(label)
            if parsed is None:
                continue
            cls, version = parsed
            vault.class_keys.setdefault(cls, {})[version] = unwrap(label, value)
    except FieldCryptoError as exc:
        hint = " (wrong root key?)" if role == "hq" else ""
        raise NodeError(f"cannot unwrap this node's field keys{hint}: {exc}") from None
    for cls, versions in vault.class_keys.items():
        current = meta.get(f"fkey-current:{cls}")
        vault.current[cls] = int(current) if current else max(versions)
    return vault


def grants_for(vault: Vault, box_public_hex: str, classes: Iterable[str]) -> dict[str, str]:
    """Every version of the given class keys, and the index root, wrapped to a node's
    X25519 key (what its enrolment file carries)."""
    out: dict[str, str] = {}
    for cls in classes:
        if cls not in vault.class_keys:
            raise NodeError(f"no {cls} key to grant")
        for version, key in vault.class_keys[cls].items():
            out[_label(cls, version)] = wrap_to(box_public_hex, key, label=_label(cls, version))
    if vault.index_root is not None:
        out[INDEX] = wrap_to(box_public_hex, vault.index_root, label=INDEX)
    return out
