"""/api/v1: purchases, loyalty points and credit
(domain.md §5, §8).
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

ROUTES: list[ControllerRouterHandler] = []
"""The controllers and handlers of this module, registered by server/app.py."""
