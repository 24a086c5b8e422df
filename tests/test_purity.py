"""Architecture rules that code review alone would let slip."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PURE = ("sync", "crypto", "schema")
WEB = {"litestar", "uvicorn", "httpx", "starlette", "fastapi", "requests", "aiohttp"}
# The pure core may not reach up into the I/O layers either.
UPWARD = {"server", "branches"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _sources(*packages: str) -> list[Path]:
    return [p for pkg in packages for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_pure_packages_import_no_web_framework_or_io_layer() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & (WEB | UPWARD))
        for p in _sources(*PURE)
        if _imports(p) & (WEB | UPWARD)
    }
    assert offenders == {}


def test_sync_and_crypto_do_not_touch_storage() -> None:
    storage = {"sqlalchemy", "aiosqlite", "sqlcipher3", "asyncpg", "schema"}
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & storage)
        for p in _sources("sync", "crypto")
        if _imports(p) & storage
    }
    assert offenders == {}


WRITE_CALL = re.compile(r"\b(\w+)\.(insert|update|delete)\(")
WRITE_FUNC = re.compile(r"\b(insert|update|delete)\((\w+)")
SQL_WRITE = re.compile(r"""["'](INSERT|UPDATE|DELETE)\s""", re.IGNORECASE)
# Replicated tables are reached by their entity name, `TABLES[...]` bound to `t` or
# `table`, or the TABLES mapping itself.
REPLICATED = {"customers", "contacts", "users", "branches", "regions", "departments",
              "custom_field_defs", "field_history", "conflicts", "change_requests",
              "t", "table", "TABLES"}


def test_one_write_path_for_replicated_data() -> None:
    """Only the unit of work writes replicated tables; everything else calls it."""
    allowed = {ROOT / "schema" / n for n in (
        # the unit of work, and the sync write path
        "_uow.py", "_apply.py", "_upsert.py", "_bulk.py", "_gc.py", "_exchange.py")}
    offenders: list[str] = []
    for path in _sources("server", "branches", "schema", "sync", "crypto"):
        if path in allowed or "migrations" in path.parts:
            continue
        for lineno, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            hits = [m.group(1) for m in WRITE_CALL.finditer(line)]
            hits += [m.group(2) for m in WRITE_FUNC.finditer(line)]
            if any(h in REPLICATED or "TABLES[" in line for h in hits):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
            if SQL_WRITE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert offenders == []


def test_the_write_path_check_would_catch_a_side_door(tmp_path: Path) -> None:
    line = 'await conn.execute(customers.insert(), [row])'
    assert WRITE_CALL.search(line) and WRITE_CALL.search(line).group(1) in REPLICATED  # type: ignore[union-attr]
    assert WRITE_FUNC.search("update(t).where(t.c.id == 1)").group(2) in REPLICATED  # type: ignore[union-attr]
    assert SQL_WRITE.search('text("UPDATE customers SET name = 1")')


def test_every_module_imports_first() -> None:
    """Any module can be the first of ours a process imports (a command, a worker, a
    test): no import cycle that only some orders survive."""
    import importlib
    import pkgutil
    import sys

    ours = ("server", "branches", "schema", "sync", "crypto")
    names = [m.name for pkg in ours
             for m in pkgutil.walk_packages([str(ROOT / pkg)], f"{pkg}.")] + list(ours)
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ours}
    failures = []
    try:
        for name in sorted(names):
            for k in [k for k in sys.modules if k.split(".")[0] in ours]:
                del sys.modules[k]
            try:
                importlib.import_module(name)
            except ImportError as exc:
                failures.append(f"{name}: {exc}")
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in ours]:
            del sys.modules[k]
        sys.modules.update(saved)
    assert failures == []
