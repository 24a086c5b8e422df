from typing import Any

from litestar.testing import AsyncTestClient


async def test_health_names_node_and_database(client: AsyncTestClient[Any], backend: str) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["role"] == "hq" and body["database"] == backend and body["version"]
