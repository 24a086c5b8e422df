"""/api/v1/devices: enrolling the offline web app's devices as sync nodes, listing and
revoking them (sync/SPEC.md §20)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import FromQuery, JSONBody, PathParameter, QueryParameter
from litestar.types import ControllerRouterHandler

from server.api.devices_types import (
    DeviceEnrol,
    DeviceEnrolled,
    DeviceOut,
    DevicePage,
    DeviceRevoke,
)
from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.types import Uuid, to_out
from server.services import devices

NodeId = Annotated[str, PathParameter(pattern=r"^[0-9a-f-]{36}$")]


class DeviceController(Controller):
    """Devices (tablets, phones, store PCs running the web app) enrolled at this node."""

    path = "/api/v1/devices"
    tags = ["devices"]

    @post("/", status_code=201)
    async def enrol(self, request: Req, node: NodeDep,
                    data: JSONBody[DeviceEnrol]) -> DeviceEnrolled:
        """Enrol the caller's device (the same key again: the same registration, with
        fresh grants of the class keys the caller's role reads)."""
        out = await devices.enrol(node, request.user, name=data.name,
                                  public_key=data.public_key,
                                  box_public_key=data.box_public_key)
        return to_out(out, DeviceEnrolled)

    @get("/")
    async def list(self, request: Req, node: NodeDep, cursor: Cursor = None,
                   limit: Limit = 50,
                   user_id: Annotated[Uuid | None, QueryParameter()] = None,
                   revoked: FromQuery[bool | None] = None) -> DevicePage:
        """The caller's devices; managers and administrators see their branch's (HQ-wide:
        all). Newest first."""
        rows, nxt = await devices.list_devices(node, request.user, user_id=user_id,
                                               revoked=revoked, cursor=cursor, limit=limit)
        return DevicePage(items=[to_out(r, DeviceOut) for r in rows], next_cursor=nxt)

    @post("/{node_id:str}/revoke", status_code=200)
    async def revoke(self, request: Req, node: NodeDep, node_id: NodeId,
                     data: JSONBody[DeviceRevoke]) -> DeviceOut:
        """Revoke a device (its user, an administrator, their manager): its next sync is
        refused with 403 "node revoked: …" and the app wipes its data."""
        return to_out(await devices.revoke(node, request.user, node_id, data.reason),
                      DeviceOut)


ROUTES: list[ControllerRouterHandler] = [DeviceController]
"""The controllers of this module, registered by server/app.py."""
