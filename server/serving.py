"""Running the node's app under uvicorn."""

from __future__ import annotations

import uvicorn

from server.app import create_app
from server.config import Settings
from server.node import open_node


async def check_node(settings: Settings) -> None:
    """Open and close the node once, so a wrong key fails before the server starts."""
    node = await open_node(settings)
    await node.close()


def serve_forever(settings: Settings, host: str, port: int, *, tls_cert: str | None = None,
                  tls_key: str | None = None) -> None:
    """Serve until interrupted; over HTTPS when given a certificate and its key (the web
    app on a tablet needs a secure origin for its service worker and WebCrypto, which
    browsers grant plain HTTP only on localhost)."""
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                access_log=False, server_header=False, ssl_certfile=tls_cert,
                ssl_keyfile=tls_key)
