"""The Litestar application a node serves: REST API, OpenAPI at /schema, the PWA."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.static_files import create_static_files_router

from schema import load_search_dictionaries
from server.api import access, accounts, analytics, care, pwa, registration, service_desk
from server.api import audit as audit_api
from server.api import devices as devices_api
from server.api import reports as reports_api
from server.api import retention as retention_api
from server.api import transfer as transfer_api
from server.api.admin import CustomFieldController, OrgController, UserController, health, me
from server.api.auth import BearerAuth, login
from server.api.conflicts import ConflictController, sync_health
from server.api.customers import CustomerController
from server.api.problems import EXCEPTION_HANDLERS
from server.api.sync import pull as sync_pull
from server.api.sync import push as sync_push
from server.config import Settings
from server.key_jobs import start_key_jobs
from server.node import VERSION, Node, open_node
from server.services.classification import start_classification_schedule
from server.services.reports import start_report_schedule
from server.services.upstream import start_background_sync
from server.services.users import LoginThrottle

CLASSIFY_EVERY_SECONDS = 86_400
"""Classification rules recompute daily (domain.md §4), and on demand through the API."""
STATIC = Path(__file__).resolve().parent.parent / "static_pwa"


def create_app(settings: Settings, *, background_sync: bool = True) -> Litestar:
    """Build the app for a node; the node's database opens at start-up."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # From the app's state, not the closure: a test process builds the app once
        # (registering ~300 handlers takes a second) and points it at each test's node.
        node = app.state.node = await open_node(app.state.settings)
        if background_sync:  # a serving node: not each test's app
            await asyncio.to_thread(load_search_dictionaries)
        tasks = [start_background_sync(node),
                 start_key_jobs(node.db, node.node_id, node.settings.sync_interval_seconds),
                 start_classification_schedule(node, CLASSIFY_EVERY_SECONDS),
                 start_report_schedule(node),
                 ] if background_sync else []
        try:
            yield
        finally:
            for task in tasks:
                if task is not None:
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
            await node.close()

    async def provide_node(state: State) -> Node:
        node: Node = state.node
        return node

    app = Litestar(
        route_handlers=[
            health, login, me, CustomerController, UserController, OrgController,
            CustomFieldController, ConflictController, sync_health, sync_pull, sync_push,
            *registration.ROUTES, *service_desk.ROUTES, *care.ROUTES, *accounts.ROUTES,
            *analytics.ROUTES, *access.ROUTES,
            *audit_api.ROUTES,
            *retention_api.ROUTES,
            *reports_api.ROUTES,
            *transfer_api.ROUTES, *pwa.ROUTES,
            *devices_api.ROUTES,
            create_static_files_router(path="/", directories=[STATIC], html_mode=True,
                                       opt={"exclude_from_auth": True},
                                       include_in_schema=False),
        ],
        dependencies={"node": Provide(provide_node)},
        middleware=[DefineMiddleware(BearerAuth, exclude=["^/schema"])],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(title="Branchline", version=VERSION, path="/schema"),
        request_max_body_size=settings.max_body_bytes,
        lifespan=[lifespan],
        cors_config=CORSConfig(allow_origins=[]),
        debug=False,
        logging_config=None,
    )
    app.state.settings = settings
    app.state.throttle = LoginThrottle(settings.login_max_failures,
                                       settings.login_window_seconds)
    logging.getLogger("branchline").setLevel(logging.INFO)
    return app
