"""Users and authentication."""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict, deque
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto import TokenError, dummy_hash, hash_password, verify_password
from schema import ROLES, TABLES, node_meta
from server.errors import NodeError
from server.node import Node
from server.services import audit
from server.services.errors import (
    AuthError,
    ConflictError,
    FieldError,
    ForbiddenError,
    NotFoundError,
    ThrottledError,
)
from server.services.principal import Principal

users = TABLES["users"]
branches = TABLES["branches"]
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 8


async def create_user(
    node: Node, actor: Principal | None, *, username: str, password: str, role: str,
    display_name: str | None = None, branch: str | None = None, department: str | None = None,
) -> dict[str, Any]:
    """Create a user. `actor` None means the node itself (init, CLI)."""
    if actor is not None and actor.role != "admin":
        raise ForbiddenError("only an administrator can create users")
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise FieldError("username", "use 2-64 lowercase letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD:
        raise FieldError("password", f"must have at least {MIN_PASSWORD} characters")
    _check_role(role, branch)
    password_hash = await asyncio.to_thread(hash_password, password)  # slow: off the loop
    async with node.db.write(node.node_id, actor.id if actor else None) as uow:
        taken = await uow.conn.execute(select(users.c.id).where(users.c.username == username))
        if taken.first() is not None:
            raise ConflictError(f"username {username!r} is taken")
        await _check_branch(uow.conn, branch)
        row = await uow.insert("users", {
            "username": username, "display_name": display_name or username,
            "password_hash": password_hash, "role": role, "branch": branch,
            "department": department, "active": True, "token_version": 0,
        })
        await audit.append(uow, node, actor, "user_created", object_table="users",
                           object_id=row["id"], detail={"username": username, "role": role,
                                                        "branch": branch})
        return row


def _check_role(role: str, branch: str | None) -> None:
    if role not in ROLES:
        raise FieldError("role", f"must be one of {', '.join(ROLES)}")
    if role in ("admin", "auditor") and branch:
        raise FieldError("branch", f"a {role} works for the whole company")


async def _check_branch(conn: AsyncConnection, branch: str | None) -> None:
    if branch is not None and (await conn.execute(
            select(branches.c.id).where(branches.c.code == branch))).first() is None:
        raise FieldError("branch", f"no branch {branch!r}")


_RIGHTS = ("role", "branch", "department", "active")
"""Changes that alter what a user may see: they end the user's sessions and revoke the
user's devices (a device keeps the field keys its user's role read; the app wipes
itself when revoked, and the next sign-in enrols it afresh with the new rights)."""


async def update_user(node: Node, actor: Principal | None, who: str,
                      changes: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Change a user's name, role, branch, department or active flag, at headquarters
    (users replicate from there). `who` is the user's id or username; `actor` None means
    the node itself (CLI). Returns the
    row and the ids of the devices revoked because the user's rights changed."""
    from server.services import nodes as node_service
    from server.services.devices import USER_META

    if actor is not None and actor.role != "admin":
        raise ForbiddenError("only an administrator can change users")
    if node.role != "hq":
        raise ForbiddenError("users are managed at headquarters")
    unknown = sorted(set(changes) - {"display_name", *_RIGHTS})
    if unknown:
        raise FieldError(unknown[0], "cannot be changed here")
    async with node.db.write(node.node_id, actor.id if actor else None) as uow:
        row = (await uow.conn.execute(select(users).where(or_(
            users.c.id == who, users.c.username == who.strip().lower())))).mappings().first()
        if row is None:
            raise NotFoundError(f"no user {who!r}")
        if actor is not None and row["id"] == actor.id and changes.get("active") is False:
            raise ConflictError("an administrator cannot deactivate themselves")
        _check_role(changes.get("role", row["role"]), changes.get("branch", row["branch"]))
        await _check_branch(uow.conn, changes.get("branch"))
        changed = {k: v for k, v in changes.items() if row[k] != v}
        if not changed:
            return dict(row), []
        rights = sorted(k for k in changed if k in _RIGHTS)
        if rights:  # sessions signed for the old rights end now
            changed["token_version"] = row["token_version"] + 1
        updated = await uow.update("users", row["id"], changed)
        await audit.append(uow, node, actor, "user_updated", object_table="users",
                           object_id=row["id"], detail={
                               "username": row["username"],
                               "changed": {k: [row[k], v] for k, v in changes.items()
                                           if k in changed}})
        devices: list[str] = []
        if rights:
            devices = [r[0] for r in await uow.conn.execute(
                select(node_meta.c.key).where(node_meta.c.key.startswith(USER_META),
                                              node_meta.c.value == row["id"]))]
    revoked: list[str] = []
    for key in devices:
        device_id = key.removeprefix(USER_META)
        try:
            await node_service.revoke(
                node, node_id=device_id, branch=None, principal=actor,
                reason=f"the user's {', '.join(rights)} changed: sign in again",
                action="device_revoked")
        except NodeError:
            continue  # revoked already
        revoked.append(device_id)
    return dict(updated), revoked


async def list_users(node: Node, actor: Principal) -> list[dict[str, Any]]:
    """All users, for administrators; a branch-bound admin sees their branch only."""
    if actor.role not in ("admin", "general_manager", "auditor"):
        raise ForbiddenError("only administrators, general managers and auditors list users")
    async with node.db.read() as conn:
        rows = await conn.execute(select(users).order_by(users.c.username))
        return [dict(r) for r in rows.mappings()]


class LoginThrottle:
    """Refuses logins for a username or client after repeated failures in a window."""

    def __init__(self, max_failures: int, window_seconds: int) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def check(self, keys: tuple[str, ...], now: float) -> None:
        for key in keys:
            q = self._recent(key, now)
            if len(q) >= self.max_failures:
                raise ThrottledError("too many failed logins; try again later",
                                     retry_after=int(q[0] + self.window - now) + 1)

    def fail(self, keys: tuple[str, ...], now: float) -> None:
        for key in keys:
            self._failures[key].append(now)

    def succeed(self, username_key: str) -> None:
        self._failures.pop(username_key, None)


async def login(node: Node, throttle: LoginThrottle, username: str, password: str,
                client: str) -> tuple[str, int, dict[str, Any]]:
    """Check a password; return (token, expires_at, user row)."""
    now = time.time()
    keys = (f"user:{username.strip().lower()}", f"client:{client}")
    throttle.check(keys, now)
    async with node.db.read() as conn:
        row = (await conn.execute(
            select(users).where(users.c.username == username.strip().lower())
        )).mappings().first()
    ok = await asyncio.to_thread(
        verify_password, row["password_hash"] if row else dummy_hash(), password
    )
    if row is None or not ok or not row["active"]:
        throttle.fail(keys, now)
        # Refusals by the throttle above are not logged, so a guessing attack writes at
        # most max_failures entries per window. Never the password, not even its length.
        reason = "unknown_user" if row is None else "inactive" if ok else "wrong_password"
        await audit.log(node, None, "login_failed", actor_id=row["id"] if row else None,
                        actor_name=username.strip().lower()[:64],
                        detail={"username": username.strip().lower()[:64],
                                "client": client[:64], "reason": reason})
        raise AuthError("wrong username or password")
    throttle.succeed(keys[0])
    await audit.log(node, Principal.from_row(row), "login", object_table="users",
                    object_id=row["id"], detail={"client": client[:64]})
    expires_at = int(now) + node.settings.token_ttl_seconds
    token = node.signer.issue(row["id"], row["token_version"], expires_at)
    return token, expires_at, dict(row)


async def authenticate(node: Node, token: str) -> Principal:
    """The principal behind a bearer token, or `AuthError`."""
    try:
        claims = node.signer.verify(token, int(time.time()))
    except TokenError as exc:
        raise AuthError(str(exc)) from None
    async with node.db.read() as conn:
        row = (await conn.execute(
            select(users).where(users.c.id == claims.user_id)
        )).mappings().first()
    if row is None or not row["active"] or row["token_version"] != claims.generation:
        raise AuthError("token no longer valid")
    return Principal.from_row(row)

