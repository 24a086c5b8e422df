"""Users and authentication."""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict, deque
from typing import Any

from sqlalchemy import select

from crypto import TokenError, dummy_hash, hash_password, verify_password
from schema import ROLES, TABLES
from server.node import Node
from server.services import audit
from server.services.errors import (
    AuthError,
    ConflictError,
    FieldError,
    ForbiddenError,
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
    if role not in ROLES:
        raise FieldError("role", f"must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise FieldError("password", f"must have at least {MIN_PASSWORD} characters")
    if role in ("admin", "auditor") and branch:
        raise FieldError("branch", f"a {role} works for the whole company")
    password_hash = await asyncio.to_thread(hash_password, password)  # slow: off the loop
    async with node.db.write(node.node_id, actor.id if actor else None) as uow:
        taken = await uow.conn.execute(select(users.c.id).where(users.c.username == username))
        if taken.first() is not None:
            raise ConflictError(f"username {username!r} is taken")
        if branch is not None:
            found = await uow.conn.execute(select(branches.c.id).where(branches.c.code == branch))
            if found.first() is None:
                raise FieldError("branch", f"no branch {branch!r}")
        row = await uow.insert("users", {
            "username": username, "display_name": display_name or username,
            "password_hash": password_hash, "role": role, "branch": branch,
            "department": department, "active": True, "token_version": 0,
        })
        await audit.append(uow, node, actor, "user_created", object_table="users",
                           object_id=row["id"], detail={"username": username, "role": role,
                                                        "branch": branch})
        return row


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

