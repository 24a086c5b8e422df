"""The web app's shell as a node serves it: the service worker carries a version the
node derives from the shell's files, and caches every file the shell is made of."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient

from server.api.pwa import STATIC, shell_digest

SHIPPED = (".js", ".css", ".png", ".svg", ".webmanifest", ".html")


async def test_service_worker_version_is_the_shell_digest(client: AsyncTestClient[Any]
                                                          ) -> None:
    r = await client.get("/sw.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert "no-cache" in r.headers.get("cache-control", "")
    versions = re.findall(r"const VERSION = '([^']*)';", r.text)
    assert versions == [shell_digest()] and len(versions[0]) == 16


def test_service_worker_caches_every_shell_file() -> None:
    text = (STATIC / "sw.js").read_text(encoding="utf-8")
    block = text[text.index("const SHELL = ["):text.index("];", text.index("const SHELL"))]
    listed = set(re.findall(r"'(/[^']*)'", block))
    files = {"/" + p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*")
             if p.is_file() and p.suffix in SHIPPED and p.name != "sw.js"}
    assert files - listed == set(), "shell files the worker would not cache offline"
    assert listed - files - {"/"} == set(), "the worker lists files that do not exist"
