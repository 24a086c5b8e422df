"""Steps the web app's browser tests share: find a control by its test id, sign in,
wait for the outbox to drain, poll an async page function, read what IndexedDB holds."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import BrowserContext, Page, Response, expect

from tests.pwa_server import PASSWORD, Hq, screenshots

PIN = "2468"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# Roles of the accessibility tree that are controls and need an accessible name.
CONTROL_ROLES = {"textbox", "searchbox", "combobox", "listbox", "checkbox", "radio", "switch",
                 "spinbutton", "slider", "button", "link", "menuitem", "tab"}


def tid(page: Page, name: str) -> Any:
    return page.get_by_test_id(name)


def unlabelled_controls(page: Page) -> list[str]:
    """Controls on the page without an accessible name, as Chromium computes it (labels,
    aria-label/labelledby, text; shadow DOM included)."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        cdp.detach()
    bad = []
    for n in nodes:
        role = n.get("role", {}).get("value")
        if n.get("ignored") or role not in CONTROL_ROLES:
            continue
        if not str(n.get("name", {}).get("value", "")).strip():
            bad.append(f"{role} (backend node {n.get('backendDOMNodeId')})")
    return bad


def enrolments(page: Page) -> list[dict[str, Any]]:
    """Collects the JSON of every device enrolment response (POST /api/v1/devices)."""
    seen: list[dict[str, Any]] = []

    def on_response(r: Response) -> None:
        if r.request.method == "POST" and r.url.rstrip("/").endswith("/api/v1/devices") \
                and r.status == 201:
            seen.append(r.json())

    page.on("response", on_response)
    return seen


def sign_in(page: Page, hq: Hq, username: str, *, pin: str | None = PIN,
            shots: str | None = None, press_sync: bool = True) -> None:
    """Online sign-in (enrols the device), then the PIN screen (set one or skip), then
    (`press_sync`) the status bar's 立即同步 button: the first sync does not start by
    itself yet, see test_the_first_online_sign_in_brings_the_share_without_pressing_sync."""
    page.goto(f"{hq.url}/")
    expect(tid(page, "login-form")).to_be_visible()
    tid(page, "login-username").fill(username)
    tid(page, "login-password").fill(PASSWORD)
    if shots:
        screenshots(page, f"{shots}-login")
    tid(page, "login-submit").click()
    expect(tid(page, "pin-form")).to_be_visible(timeout=20_000)
    if pin is None:
        tid(page, "pin-skip").click()
    else:
        tid(page, "pin-input").fill(pin)
        tid(page, "pin-confirm").fill(pin)
        if shots:
            screenshots(page, f"{shots}-pin")
        tid(page, "pin-submit").click()
    expect(tid(page, "status-bar")).to_be_visible()
    if press_sync:
        tid(page, "sync-button").click()


def synced(page: Page, timeout: float = 15_000) -> None:
    """Wait until the outbox is empty and a sync has happened."""
    assert poll(page, "async () => { const s = await (await import('/js/core/data.js')).status();"
                " return Boolean(s.lastSync) && !s.pending; }", timeout=timeout), \
        "the outbox did not drain"
    expect(tid(page, "pending-count")).to_have_attribute("data-count", "0", timeout=timeout)
    assert not tid(page, "sync-error").count(), tid(page, "sync-error").get_attribute("title")


def poll(page: Page, script: str, arg: Any = None, timeout: float = 15_000) -> Any:
    """Evaluate an async page function until it returns something truthy (Playwright's
    wait_for_function does not await a returned promise); its last value."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        value = page.evaluate(script, arg)
        if value or time.monotonic() > deadline:
            return value
        page.wait_for_timeout(200)


def holds(page: Page, ids: list[str], timeout: float = 15_000) -> None:
    """Wait until the device's store shows these customers (the first sync is done)."""
    assert poll(page, "async (ids) => { const d = await import('/js/core/data.js');"
                " const got = await d.searchCustomers('', {limit: 500});"
                " return ids.every((id) => got.some((c) => c.id === id)); }", ids, timeout), \
        "the device did not receive its share after the online sign-in"


def search(page: Page, text: str) -> list[str]:
    """Search the customer list; the ids of the results."""
    page.evaluate("location.hash = '#/customers'")
    tid(page, "customer-search").fill(text)
    tid(page, "search-submit").click()
    results = tid(page, "customer-results")
    expect(results.get_by_test_id("customer-item").or_(
        results.get_by_test_id("no-results")).first).to_be_visible()
    page.wait_for_timeout(250)  # a debounced search from typing may still land; let it
    items = results.get_by_test_id("customer-item")
    return [str(items.nth(i).get_attribute("data-id")) for i in range(items.count())]


def route_id(page: Page, prefix: str) -> str:
    """The id in the current hash route `#/<prefix>/<id>` (waits for it)."""
    page.wait_for_url(re.compile(rf"#/{prefix}/{UUID}$"))
    return page.url.split(f"#/{prefix}/", 1)[1]


def records(dump: Any, ident: str) -> list[dict[str, Any]]:
    """Every object anywhere in an IndexedDB dump whose `id` is `ident` (rows, outbox
    entries and whatever else the store keeps)."""
    found: list[dict[str, Any]] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            if v.get("id") == ident:
                found.append(v)
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(dump)
    return found


def field_values(dump: Any, ident: str, column: str) -> list[Any]:
    """The values of `column` in every stored record of row `ident` (top level or under
    `values`)."""
    out = []
    for rec in records(dump, ident):
        for holder in (rec, rec.get("values")):
            if isinstance(holder, dict) and column in holder:
                out.append(holder[column])
    return out


def assert_offline_shell(context: BrowserContext, page: Page) -> None:
    """The app shell opened from the service worker's cache with no network."""
    expect(page).to_have_title("网点客户管理 Branchline")
    assert page.evaluate("navigator.onLine") is False
    assert page.evaluate("!!navigator.serviceWorker.controller"), "page not served by the SW"
