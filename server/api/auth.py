"""Bearer-token authentication on every route, and the login endpoint."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, post
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import JSONBody

from server.api.types import LoginRequest, LoginResponse, UserOut, to_out
from server.errors import AuthError
from server.node import Node
from server.services import users as user_service


class BearerAuth(AbstractAuthenticationMiddleware):
    """Sets `request.user` to the `Principal` behind `Authorization: Bearer …`."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing bearer token")
        node: Node = connection.app.state.node
        principal = await user_service.authenticate(node, token.strip())
        return AuthenticationResult(user=principal, auth=token)


@post("/api/v1/auth/login", exclude_from_auth=True, status_code=200, tags=["auth"])
async def login(request: Request[Any, Any, Any], data: JSONBody[LoginRequest]) -> LoginResponse:
    """Exchange a username and password for a bearer token."""
    node: Node = request.app.state.node
    client = request.client.host if request.client else "unknown"
    token, expires_at, row = await user_service.login(
        node, request.app.state.throttle, data.username, data.password, client
    )
    return LoginResponse(
        token=token, expires_at=datetime.fromtimestamp(expires_at, UTC), user=to_out(row, UserOut)
    )
