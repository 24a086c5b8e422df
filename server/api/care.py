"""/api/v1: classification schemes, overrides and class history (客户异动),
visit plans, visits, surveys, care and reception expenses (domain.md §4-§5).
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

ROUTES: list[ControllerRouterHandler] = []
"""The controllers and handlers of this module, registered by server/app.py."""
