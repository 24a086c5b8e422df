"""`/sw.js`: the web app's service worker, stamped with a digest of the app shell.

The worker caches the shell under a version name; a new version caches the new shell
and drops the old one. The node computes that version from the files it serves, so a
node upgraded with a changed shell moves every tablet to it, and nobody has to remember
to bump a number.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

from litestar import Response, get
from litestar.datastructures import CacheControlHeader

STATIC = Path(__file__).resolve().parent.parent.parent / "static_pwa"
_VERSION = re.compile(r"const VERSION = '[^']*';")


@cache
def shell_digest() -> str:
    """A digest of every file of the app shell (path and content)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in STATIC.rglob("*")
                       if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts):
        digest.update(path.relative_to(STATIC).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@cache
def _worker() -> bytes:
    text = (STATIC / "sw.js").read_text(encoding="utf-8")
    return _VERSION.sub(f"const VERSION = '{shell_digest()}';", text, count=1).encode()


@get("/sw.js", exclude_from_auth=True, include_in_schema=False,
     cache_control=CacheControlHeader(no_cache=True))
async def service_worker() -> Response[bytes]:
    """The service worker with this node's shell version."""
    return Response(_worker(), media_type="text/javascript; charset=utf-8")


ROUTES = [service_worker]
