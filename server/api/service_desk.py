"""/api/v1: complaints (客户投诉) and service tickets (报修 / 派工)
with the price list (domain.md §6-§7).
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

ROUTES: list[ControllerRouterHandler] = []
"""The controllers and handlers of this module, registered by server/app.py."""
