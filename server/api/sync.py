"""/sync/v1: the changeset protocol over HTTP, MessagePack bodies, node signatures."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency

from crypto import response_message
from server.node import Node
from server.services import devices as device_service
from server.services import nodes as node_service
from server.services import sync as sync_service
from sync import PullRequest, PushRequest, compress, decode, decompress, encode

MEDIA = "application/msgpack"


def _signed(node: Node, message: bytes, status: int = 200, *, identity: bool = False
            ) -> Response[bytes]:
    # Compressed here rather than by HTTP content-encoding so the signature covers
    # exactly the bytes on the wire. Browsers have no zstd: a device asking for
    # `identity` gets the plain MessagePack (SPEC §20).
    body = message if identity else compress(message)
    millis = int(time.time() * 1000)
    return Response(body, status_code=status, media_type=MEDIA, headers={
        "x-branchline-encoding": "identity" if identity else "zstd",
        "x-branchline-time": str(millis),
        "x-branchline-signature": node.key.sign(
            response_message(status, node.node_id, millis, body)),
    })


async def _message(request: Request[Any, Any, Any], node: Node) -> tuple[dict[str, Any], Any]:
    body = await request.body()
    peer = await node_service.authenticate(node, method=request.method, path=request.url.path,
                                           headers=dict(request.headers), body=body)
    if peer["kind"] == "device":
        await device_service.require_active_user(node, peer)
    try:
        if request.headers.get("content-encoding") == "zstd":
            body = decompress(body, node.settings.sync_body_bytes)
        return peer, decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise sync_service.ProtocolError(f"malformed message: {exc}") from None


def _identity(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("x-branchline-accept-encoding", "").strip() == "identity"


@post("/sync/v1/pull", exclude_from_auth=True, tags=["sync"], status_code=200,
       request_max_body_size=1024 * 1024)
async def pull(request: Request[Any, Any, Any], node: NamedDependency[Node]) -> Response[bytes]:
    """Changes in the calling node's scope after its cursor (MessagePack `Batch`)."""
    peer, message = await _message(request, node)
    if not isinstance(message, PullRequest):
        raise sync_service.ProtocolError("expected a pull request")
    return _signed(node, encode(await sync_service.pull(node, peer, message)),
                   identity=_identity(request))


@post("/sync/v1/push", exclude_from_auth=True, tags=["sync"], status_code=200,
      request_max_body_size=256 * 1024 * 1024)
async def push(request: Request[Any, Any, Any], node: NamedDependency[Node]) -> Response[bytes]:
    """Apply the calling node's changes; answers a `PushAck`."""
    peer, message = await _message(request, node)
    if not isinstance(message, PushRequest):
        raise sync_service.ProtocolError("expected a push request")
    return _signed(node, encode(await sync_service.push(node, peer, message)),
                   identity=_identity(request))
