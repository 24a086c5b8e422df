"""A running node: its settings, database and token signer; and creating one."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crypto import (
    BoxKey,
    KeyFileError,
    NodeKey,
    TokenSigner,
    derive_root_key,
    generate_db_key,
    parse_hex_key,
    read_key_file,
    write_key_file,
)
from schema import (
    Database,
    SchemaError,
    WrongKeyError,
    new_id,
    node_meta,
    nodes,
    quarantine_count,
    retry_parked,
    utcnow,
)
from server.config import (
    CONFIG_FILE,
    DB_FILE,
    NodeConfig,
    Role,
    Settings,
    default_key_file,
    default_root_key_file,
    write_config,
)
from server.errors import NodeError
from server.keys import create_hq_keys, load_vault, refresh_vault, store_grants

VERSION = "0.1.0"


@dataclass
class Node:
    """Everything a request handler or command needs from the node it runs on."""

    settings: Settings
    db: Database
    signer: TokenSigner
    key: NodeKey

    @property
    def node_id(self) -> str:
        return self.settings.node.node_id

    @property
    def role(self) -> Role:
        return self.settings.node.role

    @property
    def hq_node_id(self) -> str:
        """The id of this node's headquarters (itself at HQ)."""
        return self.settings.node.hq_node_id or self.settings.node.node_id

    async def close(self) -> None:
        await self.db.dispose()


async def _meta(db: Database) -> dict[str, str]:
    async with db.read() as conn:
        rows = await conn.execute(select(node_meta.c.key, node_meta.c.value))
        return dict(rows.all())


async def _open_db(settings: Settings) -> Database:
    try:
        return await Database.open(settings.database_url, settings.db_key)
    except WrongKeyError:
        # A rekey interrupted after the database changed but before the new key file
        # replaced the old one leaves the working key staged beside it.
        staged = Path(f"{settings.node.key_file}.new") if settings.node.key_file else None
        if settings.key_from_env or staged is None or not staged.exists():
            raise
        key = read_key_file(staged)
        db = await Database.open(settings.database_url, key)
        staged.replace(Path(str(settings.node.key_file)))
        settings.db_key = key
        return db


async def open_node(settings: Settings) -> Node:
    """Open the node's database, apply pending migrations, and load its secrets."""
    try:
        db = await _open_db(settings)
    except SchemaError as exc:
        raise NodeError(str(exc)) from None
    try:
        await db.migrate()
        meta = await _meta(db)
    except BaseException:
        await db.dispose()
        raise
    if meta.get("node_id") != settings.node.node_id:
        await db.dispose()
        raise NodeError("the database belongs to another node than node.json says")
    db.hq_authority = settings.node.role == "hq"
    try:
        await refresh_vault(db, node_id=settings.node.node_id, role=settings.node.role,
                            root_key=settings.root_key)
    except BaseException:
        await db.dispose()
        raise
    node = Node(settings, db, TokenSigner(bytes.fromhex(meta["token_secret"])),
                NodeKey.from_hex(meta["signing_key"]))
    if await quarantine_count(db):
        # Changes parked by an older schema apply once this one knows their columns.
        async with db.read() as conn:
            known = (await conn.execute(select(nodes.c.id, nodes.c.kind, nodes.c.branch))).all()
        # HQ checks every writer's branch; a branch checks its devices' (HQ writes freely).
        writers = {n.id: n.branch if node.role == "hq" or n.kind == "device" else None
                   for n in known}
        await retry_parked(db, node_id=node.node_id, hq_node=node.hq_node_id,
                           writer_branches=writers)
    return node


@dataclass
class InitResult:
    """What `init` created; the admin password is shown once and never stored."""

    node: NodeConfig
    admin_username: str
    admin_password: str
    password_generated: bool
    key_file: Path | None


async def init_node(
    data_dir: Path,
    *,
    role: Role,
    name: str,
    environ: Mapping[str, str],
    key_file: Path | None = None,
    database_url: str | None = None,
    branch_code: str | None = None,
    node_id: str | None = None,
    node_key: NodeKey | None = None,
    trusted: list[dict[str, Any]] | None = None,
    hq_node_id: str | None = None,
    upstream_url: str | None = None,
    public_url: str | None = None,
    admin: bool = True,
    grants: tuple[str, dict[str, str]] | None = None,
    root_key_file: Path | None = None,
) -> tuple[Node, InitResult]:
    """Create a new node in `data_dir`: key, database, schema, identity, admin user."""
    from server.services.users import create_user  # services import the node module

    data_dir = data_dir.resolve()
    if (data_dir / CONFIG_FILE).exists():
        raise NodeError(f"{data_dir} already holds a node")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise NodeError(f"{data_dir} is not empty")
    created_dir = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db_key: bytes | None = None
    key_path: Path | None = None
    wrote_key = False  # only a key this call wrote may be removed on failure
    wrote_root: Path | None = None
    try:
        if database_url is None:
            env_key = environ.get("BRANCHLINE_DB_KEY")
            if env_key:
                db_key = parse_hex_key(env_key, "BRANCHLINE_DB_KEY")
            else:
                db_key = generate_db_key()
                key_path = (key_file or default_key_file(data_dir, environ)).resolve()
                if key_path.exists():
                    if key_file is not None:
                        raise NodeError(f"key file {key_path} already exists; choose another")
                    # The default key of a node once kept at this (now empty) path: keep
                    # it aside rather than destroy a key someone may still need.
                    key_path.replace(key_path.with_name(f"{key_path.name}.{int(time.time())}.old"))
                write_key_file(key_path, db_key)
                wrote_key = True
        root_key: bytes | None = None
        root_path: Path | None = None
        root_salt: str | None = None
        if role == "hq":
            if environ.get("BRANCHLINE_ROOT_KEY"):
                root_key = parse_hex_key(environ["BRANCHLINE_ROOT_KEY"], "BRANCHLINE_ROOT_KEY")
            elif environ.get("BRANCHLINE_ROOT_PASSPHRASE"):
                # No key on disk at all: whoever starts HQ types (or injects) it.
                root_salt = secrets.token_hex(16)
                root_key = derive_root_key(environ["BRANCHLINE_ROOT_PASSPHRASE"],
                                           bytes.fromhex(root_salt))
            else:
                root_key = generate_db_key()
                beside = key_path.with_name(key_path.stem + ".root.key") if key_path else None
                root_path = (root_key_file or beside
                             or default_root_key_file(data_dir, environ)).resolve()
                if root_path.exists():
                    if root_key_file is not None:
                        raise NodeError(f"root key file {root_path} already exists")
                    root_path.replace(root_path.with_name(
                        f"{root_path.name}.{int(time.time())}.old"))
                write_key_file(root_path, root_key)
                wrote_root = root_path
        config = NodeConfig(
            node_id=node_id or new_id(), role=role, name=name, database_url=database_url,
            key_file=str(key_path) if key_path else None, branch_code=branch_code,
            hq_node_id=hq_node_id, upstream_url=upstream_url, public_url=public_url,
            root_key_file=str(root_path) if root_path else None, root_key_salt=root_salt,
        )
        key = node_key or NodeKey.generate()
        settings = Settings(data_dir=data_dir, node=config, db_key=db_key, root_key=root_key)
        try:
            db = await Database.open(settings.database_url, db_key)
        except SchemaError as exc:
            raise NodeError(str(exc)) from None
        try:
            await db.migrate()
            async with db.admin() as conn:
                existing = (await conn.execute(select(node_meta.c.key))).first()
                if existing is not None:
                    raise NodeError("the database already holds a node")
                await conn.execute(node_meta.insert(), [
                    {"key": "node_id", "value": config.node_id},
                    {"key": "role", "value": role},
                    {"key": "token_secret", "value": secrets.token_hex(32)},
                    {"key": "signing_key", "value": key.private_hex()},
                ])
                # The X25519 key bundles are encrypted to: HQ makes its own, a branch's
                # comes in its enrolment file with its grants.
                box = BoxKey.from_hex(grants[0]) if grants is not None else BoxKey.generate()
                if grants is None:
                    await conn.execute(node_meta.insert(), [
                        {"key": "box_key", "value": box.private_hex()}])
                own = {"id": config.node_id, "kind": role, "name": name,
                       "branch": branch_code, "public_key": key.public_hex(),
                       "box_public_key": box.public_hex(),
                       "url": public_url, "enrolled_at": utcnow()}
                await conn.execute(nodes.insert(), [
                    own, *({"box_public_key": None, **t} for t in trusted or [])])
            if root_key is not None:
                await create_hq_keys(db, root_key)
            if grants is not None:
                await store_grants(db, *grants)
            meta = await _meta(db)
            db.hq_authority = role == "hq"
            db.vault = load_vault(meta, role=role, root_key=root_key)
            node = Node(settings, db, TokenSigner(bytes.fromhex(meta["token_secret"])), key)
            password = environ.get("BRANCHLINE_ADMIN_PASSWORD") or ""
            generated = not password
            if admin:
                if generated:
                    password = secrets.token_urlsafe(12)
                await create_user(node, None, username="admin", password=password,
                                  role="admin", display_name="系统管理员")
        except BaseException:
            await db.dispose()
            raise
        write_config(data_dir, config)
    except BaseException as exc:
        if wrote_key and key_path is not None and key_path.exists():
            key_path.unlink()
        if wrote_root is not None and wrote_root.exists():
            wrote_root.unlink()
        if created_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            for leftover in data_dir.glob(DB_FILE + "*"):
                leftover.unlink()
        if isinstance(exc, KeyFileError):
            raise NodeError(str(exc)) from None
        raise
    return node, InitResult(config, "admin", password, generated, key_path)

