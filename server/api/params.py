"""What every API module's handlers take: the node, the request with its principal, and
the paging parameters (`limit`, `cursor`)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from server.node import Node
from server.services.principal import Principal

__all__ = ["Cursor", "Limit", "NodeDep", "Req"]

NodeDep = NamedDependency[Node]
Req = Request[Principal, Any, Any]
Limit = Annotated[int, QueryParameter(ge=1, le=500)]
Cursor = Annotated[str | None, QueryParameter(max_length=200)]
