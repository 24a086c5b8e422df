"""/api/v1: registration, ownership collisions (撞单), duplicates and merges,
handover (domain.md §3).
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

ROUTES: list[ControllerRouterHandler] = []
"""The controllers and handlers of this module, registered by server/app.py."""
