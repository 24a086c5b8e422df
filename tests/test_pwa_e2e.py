"""Issue 8's scenario in a real browser: a sales rep's day offline, through the web app.

Debian's chromium (Playwright) against a served headquarters node (tests/pwa_server.py):
the rep signs in online and sets a PIN; the network goes away (`context.set_offline`);
a reload still opens the app (service worker) at the lock screen; the rep unlocks with
the PIN, searches, opens a card, records a visit, registers the customer's friend and
logs a complaint — all pending in the outbox; the network comes back, the outbox drains
by itself, and HQ's REST API shows the records with the rep as their owner. The device
never held a secret in plaintext: ID numbers (secret; a rep reads only confidential)
stay `§s…` tokens, confidential values are ciphertext at rest too, another rep's
customer never reached the device, and a role that reads nothing sees only masks.

Screenshots of every screen at 390×844 and 1280×800 go to tests/artifacts/pwa/.
Controls are found by the `data-testid`s listed at the top of static_pwa/js/app.js.
"""

from __future__ import annotations

import re
import struct
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, expect

from tests.pwa_server import (  # noqa: F401  (fixtures)
    PASSWORD,
    Hq,
    browser,
    dump_indexeddb,
    dump_text,
    new_page,
    pwa_hq,
    screenshots,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
expect.set_options(timeout=10_000)
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


def test_rep_works_offline_and_the_outbox_reaches_hq(pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    hq = pwa_hq
    wang, li, zhao = (hq.seeded.customers[k] for k in ("wang", "li", "zhao"))
    rep = hq.seeded.users["rep1"]
    context, page = new_page(browser, "phone")
    grants = enrolments(page)

    # Online: sign in (enrols the device), set a PIN, sync: the rep's share arrives.
    sign_in(page, hq, "rep1", shots="rep")
    holds(page, [wang["id"], li["id"]])
    synced(page)
    assert {wang["id"], li["id"]} <= set(search(page, ""))
    screenshots(page, "rep-customers")
    page.evaluate("navigator.serviceWorker.ready")  # the shell is cached (install done)

    # The device got the class keys a sales rep reads, and not the secret ones.
    assert len(grants) == 1, grants
    labels = {g["label"] for g in grants[0]["grants"]}
    assert labels and all(label.startswith("class:confidential:") for label in labels), labels

    # Offline: a reload opens the app (service worker) at the lock screen; the PIN unlocks;
    # the status bar still says when the device last synced.
    last_sync = tid(page, "last-sync").inner_text()
    context.set_offline(True)
    page.reload()
    assert_offline_shell(context, page)
    expect(tid(page, "unlock-form")).to_be_visible()
    screenshots(page, "rep-offline-locked")
    tid(page, "unlock-secret").fill(PIN)
    tid(page, "unlock-submit").click()
    expect(tid(page, "net-status")).to_have_attribute("data-online", "false")
    expect(tid(page, "last-sync")).to_have_text(last_sync)

    # Search by name (partial Chinese) and by mobile; open the archive card.
    assert search(page, "王") == [wang["id"]]
    assert search(page, wang["mobile"]) == [wang["id"]]
    tid(page, "customer-item").first.click()
    expect(tid(page, "customer-name")).to_contain_text(wang["name"])
    mobile = tid(page, "customer-mobile").inner_text().replace(" ", "").replace("-", "")
    assert wang["mobile"] in mobile, "confidential: decrypted in memory for a rep"
    id_shown = tid(page, "customer-id-number").inner_text()
    assert wang["id_number"] not in id_shown, "secret: a rep never sees the ID number"
    screenshots(page, "rep-card")

    # Record a visit.
    tid(page, "action-visit").click()
    expect(tid(page, "visit-form")).to_be_visible()
    tid(page, "visit-kind").select_option("visit")
    tid(page, "visit-content").fill("介绍新品，客户有购买意向")
    tid(page, "visit-result").fill("约定下周到店体验")
    tid(page, "visit-place").fill("客户门店")
    screenshots(page, "rep-visit-form")
    tid(page, "visit-submit").click()
    expect(tid(page, "customer-name")).to_be_visible()
    visit_item = tid(page, "customer-visits").get_by_test_id("visit-item").first
    expect(visit_item).to_contain_text("介绍新品")
    expect(visit_item.get_by_test_id("pending-badge")).to_be_visible()
    visit_id = str(visit_item.get_attribute("data-id"))

    # Register the customer's friend (a referral).
    tid(page, "action-refer").click()
    expect(tid(page, "register-form")).to_be_visible()
    tid(page, "register-name").fill("欧阳晓晓")
    tid(page, "register-mobile").fill("136 0000 2468")
    tid(page, "register-intention").check()
    screenshots(page, "rep-register-form")
    tid(page, "register-submit").click()
    new_id = route_id(page, "customer")
    expect(tid(page, "customer-name")).to_contain_text("欧阳晓晓")
    expect(tid(page, "customer-name").get_by_test_id("pending-badge")).to_be_visible()
    assert search(page, "欧阳") == [new_id]

    # Log a complaint for the first customer.
    page.evaluate(f"location.hash = '#/customer/{wang['id']}'")
    tid(page, "action-complaint").click()
    expect(tid(page, "complaint-form")).to_be_visible()
    expect(tid(page, "complaint-complainant")).to_have_value(wang["name"])
    tid(page, "complaint-demand").select_option("refund")
    tid(page, "complaint-channel").select_option("phone")
    tid(page, "complaint-content").fill("收到的商品外包装破损")
    screenshots(page, "rep-complaint-form")
    tid(page, "complaint-submit").click()
    complaint_id = route_id(page, "complaint")
    expect(tid(page, "complaint-status")).to_be_visible()
    pending = int(tid(page, "pending-count").get_attribute("data-count") or 0)
    assert pending >= 3, f"visit, customer and complaint wait in the outbox ({pending})"
    screenshots(page, "rep-complaint-offline")

    # Nothing secret at rest, and confidential values are ciphertext there too.
    dump = dump_indexeddb(page)
    text = dump_text(dump)
    for c in (wang, li, zhao):
        assert c["id_number"] not in text, f"plaintext ID number of {c['name']} in IndexedDB"
    for number in (wang["mobile"], li["mobile"], "13600002468"):
        assert number not in text, "a plaintext mobile in IndexedDB"
    ids = field_values(dump, wang["id"], "id_number")
    assert ids and all(str(v).startswith("§s") for v in ids), ids

    # Back online: the outbox drains by itself; the screen shows it.
    context.set_offline(False)
    synced(page, timeout=20_000)
    expect(tid(page, "net-status")).to_have_attribute("data-online", "true")
    screenshots(page, "rep-synced")

    # HQ has the records, owned by the rep, exactly as its own services would write them.
    visits = hq.api("GET", "/api/v1/visits", "gm", customer_id=wang["id"])["items"]
    [visit] = [v for v in visits if v["id"] == visit_id]
    assert visit["user_id"] == rep["id"] and visit["branch"] == "S001"
    assert visit["content"] == "介绍新品，客户有购买意向" and visit["place"] == "客户门店"
    friend = hq.api("GET", f"/api/v1/customers/{new_id}", "gm")
    assert friend["name"] == "欧阳晓晓" and friend["owner_id"] == rep["id"]
    assert friend["branch"] == "S001" and friend["mobile"] == "+8613600002468"
    assert friend["source"] == "referral" and friend["referrer_customer_id"] == wang["id"]
    complaint = hq.api("GET", f"/api/v1/complaints/{complaint_id}", "gm")
    assert complaint["created_by"] == rep["id"] and complaint["customer_id"] == wang["id"]
    assert complaint["status"] == "received" and complaint["demand"] == "refund"
    received = datetime.fromisoformat(complaint["received_at"].replace("Z", "+00:00"))
    deadline = datetime.fromisoformat(complaint["deadline_at"].replace("Z", "+00:00"))
    assert deadline - received == timedelta(days=7)
    # …and the rep's own view of HQ lists the new customer as theirs.
    mine = hq.api("GET", "/api/v1/customers", "rep1", q="欧阳晓晓")["items"]
    assert [c["id"] for c in mine] == [new_id]
    context.close()


def test_a_role_that_reads_no_class_holds_only_ciphertext_and_sees_masks(
        pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    """An auditor reads no confidential class: the device gets no class key and no blind
    index key, so even mobiles stay tokens at rest and masks on screen."""
    hq = pwa_hq
    wang = hq.seeded.customers["wang"]
    context, page = new_page(browser, "pc")
    grants = enrolments(page)
    sign_in(page, hq, "audit1", pin=None)
    holds(page, [c["id"] for c in hq.seeded.customers.values()])
    assert len(grants) == 1 and grants[0]["grants"] == [] and grants[0]["index_grant"] is None
    page.evaluate(f"location.hash = '#/customer/{wang['id']}'")
    expect(tid(page, "customer-name")).to_contain_text(wang["name"])
    assert wang["mobile"] not in tid(page, "customer-mobile").inner_text().replace(" ", "")
    screenshots(page, "auditor-card")
    text = dump_text(dump_indexeddb(page))
    for c in hq.seeded.customers.values():
        assert c["id_number"] not in text and c["mobile"] not in text
    assert all(str(v).startswith("§c") for v in
               field_values(dump_indexeddb(page), wang["id"], "mobile")), "mobile as token"
    context.close()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_app_shell_is_installable_and_opens_offline(pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    context, page = new_page(browser, "phone")
    page.goto(f"{pwa_hq.url}/")
    expect(tid(page, "login-form")).to_be_visible()
    href = page.locator("link[rel=manifest]").get_attribute("href")
    assert href
    r = page.request.get(f"{pwa_hq.url}{href}")
    assert r.ok
    manifest = r.json()
    assert manifest["name"] and manifest["short_name"] and manifest["lang"] == "zh-CN"
    assert manifest["start_url"] == "/" and manifest["display"] in ("standalone", "fullscreen")
    sizes = {}
    for icon in manifest["icons"]:
        got = page.request.get(f"{pwa_hq.url}{icon['src']}")
        assert got.ok, icon
        if icon["type"] == "image/png":
            w, h = _png_size(got.body())
            assert f"{w}x{h}" == icon["sizes"], icon
            sizes[icon.get("purpose", "any")] = sizes.get(icon.get("purpose", "any"), set()) | {w}
    assert {192, 512} <= sizes["any"], "Chrome's install criteria: 192 and 512 px icons"
    scope = page.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
    assert scope == f"{pwa_hq.url}/"
    assert page.evaluate("navigator.serviceWorker.ready.then((r) => r.active.scriptURL)") \
        == f"{pwa_hq.url}/sw.js"
    # Every image on the login screen loaded (icons included).
    assert page.evaluate("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
    context.set_offline(True)
    page.reload()
    assert_offline_shell(context, page)
    expect(tid(page, "login-form")).to_be_visible()  # not enrolled yet: the sign-in screen
    assert page.errors == [], page.errors
    context.close()


def test_every_control_has_a_label(pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    """Each control of the sign-in, PIN, list and form screens has an accessible name
    (a <label>, aria-label or text), in Chinese and after the switch to English."""
    context, page = new_page(browser, "pc")
    page.goto(f"{pwa_hq.url}/")
    expect(tid(page, "login-form")).to_be_visible()
    problems = {"login": unlabelled_controls(page)}
    sign_in(page, pwa_hq, "rep2", pin=None)
    zhao = pwa_hq.seeded.customers["zhao"]["id"]  # rep2's customer
    holds(page, [zhao])
    for route, ready in (("#/customers", "search-form"), (f"#/customer/{zhao}", "customer-facts"),
                         (f"#/visit/{zhao}", "visit-form"), ("#/register", "register-form"),
                         (f"#/complaint/new?customer={zhao}", "complaint-form"),
                         (f"#/ticket/new?customer={zhao}", "ticket-form"),
                         ("#/complaints", "complaint-list"), ("#/tickets", "ticket-list")):
        page.evaluate(f"location.hash = {route!r}")
        expect(tid(page, ready)).to_be_visible()
        problems[route] = unlabelled_controls(page)
    tid(page, "lang-switch").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.evaluate("location.hash = '#/register'")
    expect(tid(page, "register-form")).to_be_visible()
    problems["#/register (en)"] = unlabelled_controls(page)
    screenshots(page, "register-en")
    assert {k: v for k, v in problems.items() if v} == {}
    assert page.errors == [], page.errors
    context.close()


# --- The share a device holds -------------------------------------------------------

def test_the_first_online_sign_in_brings_the_share_without_pressing_sync(
        pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    context, page = new_page(browser, "phone")
    sign_in(page, pwa_hq, "rep2", pin=None, press_sync=False)
    try:
        holds(page, [pwa_hq.seeded.customers["zhao"]["id"]], timeout=3_000)
    finally:
        context.close()


def test_a_reps_device_lists_and_holds_only_the_reps_own_customers(
        pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    zhao, wang = pwa_hq.seeded.customers["zhao"], pwa_hq.seeded.customers["wang"]
    context, page = new_page(browser, "phone")
    try:
        sign_in(page, pwa_hq, "rep2", pin=None)
        holds(page, [zhao["id"]])
        assert search(page, "") == [zhao["id"]], "another rep's customers in rep2's list"
        assert wang["id"] not in dump_text(dump_indexeddb(page)), "rep1's customer on rep2's device"
    finally:
        context.close()


def test_remote_revocation_wipes_the_device(pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    """SPEC §20 [device-revoked-wipes], in the browser: a manager revokes a rep's tablet
    at the node; its next sync is refused and the app wipes its store and keys, back to
    the sign-in screen."""
    hq = pwa_hq
    context, page = new_page(browser, "phone")
    grants = enrolments(page)
    sign_in(page, hq, "rep2", pin=None)
    holds(page, [hq.seeded.customers["zhao"]["id"]])
    assert len(grants) == 1
    hq.api("POST", f"/api/v1/devices/{grants[0]['node_id']}/revoke", "gm",
           {"reason": "平板丢失"})
    tid(page, "sync-button").click()
    expect(tid(page, "login-form")).to_be_visible(timeout=15_000)
    text = dump_text(dump_indexeddb(page))
    assert hq.seeded.customers["zhao"]["name"] not in text and grants[0]["node_id"] not in text
    context.close()


DATA = "await import('/js/core/data.js')"


def test_service_work_done_offline_reaches_hq(pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    """The issue's other offline work: customer service accepts and assigns a complaint,
    takes a service ticket and redeems points with no network; a technician confirms and
    completes the dispatched ticket with no network; back online HQ has all of it, and
    the redemption is in the balance exactly once (counter policy)."""
    hq = pwa_hq
    li = hq.seeded.customers["li"]
    staff = {}
    for username, role, display in (("svc1", "customer_service", "王客服"),
                                    ("tech1", "technician", "李师傅")):
        staff[username] = hq.api("POST", "/api/v1/users", "admin", {
            "username": username, "password": PASSWORD, "role": role, "branch": "S001",
            "display_name": display}, expect=201)["id"]
    before = hq.api("GET", f"/api/v1/customers/{li['id']}/points", "gm")["balance"]
    hq.api("POST", "/api/v1/points/earn", "gm", {"member_id": li["id"], "points": 500},
           expect=201)

    context, page = new_page(browser, "pc")
    sign_in(page, hq, "svc1", pin=None)
    holds(page, [li["id"]])
    assert poll(page, f"async (id) => (await ({DATA}).getCustomer(id)).points >= 500",
                li["id"])
    context.set_offline(True)
    done = page.evaluate(f"""async ([cid, me]) => {{
        const d = {DATA};
        const c = await d.logComplaint({{customer_id: cid, complainant: '李娜',
            phone: '13812349876', demand: 'exchange', content: '热水器不出热水',
            channel: 'phone'}});
        await d.complaintAction(c.id, 'accept');
        await d.complaintAction(c.id, 'assign', {{department: '客服部', handler_id: me}});
        const t = await d.createTicket({{customer_id: cid, channel: 'phone',
            description: '热水器上门检修'}});
        await d.redeemPoints(cid, 200, '兑换保温杯');
        return {{complaint: c.id, ticket: t.id, pending: (await d.status()).pending}};
    }}""", [li["id"], staff["svc1"]])
    assert done["pending"] >= 3
    context.set_offline(False)
    tid(page, "sync-button").click()
    synced(page)
    context.close()

    complaint = hq.api("GET", f"/api/v1/complaints/{done['complaint']}", "gm")
    assert complaint["status"] == "assigned" and complaint["handler_id"] == staff["svc1"]
    assert complaint["created_by"] == staff["svc1"]
    points = hq.api("GET", f"/api/v1/customers/{li['id']}/points", "gm")
    assert points["balance"] == before + 500 - 200 and points["unposted_delta"] == 0
    hq.api("POST", f"/api/v1/tickets/{done['ticket']}/dispatch", "gm",
           {"technician_id": staff["tech1"]})

    context, page = new_page(browser, "phone")
    sign_in(page, hq, "tech1", pin=None)
    assert poll(page, "async (id) => (await (await import('/js/core/store.js'))"
                ".getRow('tickets', id))?.values?.status === 'dispatched'", done["ticket"])
    context.set_offline(True)
    page.evaluate(f"""async (id) => {{
        const d = {DATA};
        await d.ticketAction(id, 'confirm');
        await d.ticketAction(id, 'arrive');
        await d.ticketAction(id, 'complete', {{work_done: '更换温控器', consent: true,
            signature: 'data:image/png;base64,iVBORw0KGgo='}});
    }}""", done["ticket"])
    context.set_offline(False)
    tid(page, "sync-button").click()
    synced(page)
    context.close()
    ticket = hq.api("GET", f"/api/v1/tickets/{done['ticket']}", "gm")
    assert ticket["status"] == "done" and ticket["technician_id"] == staff["tech1"]
    assert ticket["consent"] is True and ticket["work_done"] == "更换温控器"


def test_a_conflict_is_shown_on_its_record(pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    """A complaint accepted on an offline tablet while HQ declined it: after sync the
    furthest state wins everywhere (state policy) and the losing write is a conflict
    record, shown on the complaint on the tablet."""
    hq = pwa_hq
    wang = hq.seeded.customers["wang"]
    hq.api("POST", "/api/v1/users", "admin", {
        "username": "svc2", "password": PASSWORD, "role": "customer_service",
        "branch": "S001", "display_name": "赵客服"}, expect=201)
    context, page = new_page(browser, "pc")
    sign_in(page, hq, "svc2", pin=None)
    holds(page, [wang["id"]])
    cid = page.evaluate(f"""async (cid) => (await ({DATA}).logComplaint({{customer_id: cid,
        complainant: '王芳', phone: '13912345678', demand: 'refund', content: '洗衣机漏水',
        channel: 'phone'}})).id""", wang["id"])
    tid(page, "sync-button").click()
    synced(page)
    context.set_offline(True)
    page.evaluate(f"async (id) => {{ await ({DATA}).complaintAction(id, 'accept'); }}", cid)
    hq.api("POST", f"/api/v1/complaints/{cid}/decline", "gm", {"reason": "不属于本店产品"})
    context.set_offline(False)
    tid(page, "sync-button").click()
    synced(page)
    tid(page, "sync-button").click()
    synced(page)
    assert poll(page, f"async (id) => (await ({DATA}).conflicts('complaints', id)).length > 0",
                cid), "the conflict record did not reach the tablet"
    assert hq.api("GET", f"/api/v1/complaints/{cid}", "gm")["status"] == "accepted"
    page.evaluate(f"location.hash = '#/complaint/{cid}'")
    expect(page.locator("[data-testid=conflict-badge]").first).to_be_visible(timeout=10_000)
    screenshots(page, "complaint-conflict")
    context.close()


def test_an_idle_tablet_locks_and_the_pin_opens_it(pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    """Left idle, the app locks: class keys leave memory, the lock screen shows, and the
    PIN set while online opens it again (offline too)."""
    hq = pwa_hq
    context, page = new_page(browser, "phone")
    sign_in(page, hq, "rep1")
    holds(page, [hq.seeded.customers["wang"]["id"]])
    context.set_offline(True)
    page.evaluate("async () => (await import('/js/core/session.js')).setIdleTimeout(500)")
    expect(tid(page, "unlock-form")).to_be_visible(timeout=10_000)
    assert page.evaluate("async () => (await import('/js/core/session.js')).state().locked")
    page.evaluate("async () => (await import('/js/core/session.js')).setIdleTimeout(0)")
    tid(page, "unlock-secret").fill(PIN)
    tid(page, "unlock-submit").click()
    expect(tid(page, "status-bar")).to_be_visible()
    assert not page.evaluate(
        "async () => (await import('/js/core/session.js')).state().locked")
    context.close()


def test_the_general_manager_works_the_manager_screens(pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    """Online manager screens: an access request in the approvals inbox is approved
    there; complaint deadlines, sync health, a report and the three charts show."""
    hq = pwa_hq
    zhao = hq.seeded.customers["zhao"]
    asked = hq.api("POST", "/api/v1/access-requests", "rep1", {
        "kind": "view", "customer_id": zhao["id"], "purpose": "客户回访",
        "reason": "同事休假", "hours": 24}, expect=201)
    context, page = new_page(browser, "pc")
    sign_in(page, hq, "gm", pin=None)
    page.evaluate("location.hash = '#/manager/approvals'")
    item = page.locator(f"[data-testid=approval-item][data-id='{asked['id']}']")
    expect(item).to_be_visible(timeout=15_000)
    screenshots(page, "manager-approvals")
    item.locator("[data-testid=approval-approve]").click()
    deadline = time.monotonic() + 15
    while hq.api("GET", f"/api/v1/access-requests/{asked['id']}", "gm")["status"] != "approved":
        assert time.monotonic() < deadline, "the approval did not reach the node"
        time.sleep(0.3)
    for tab in ("deadlines", "sync"):
        page.evaluate(f"location.hash = '#/manager/{tab}'")
        expect(tid(page, f"manager-{tab}")).to_be_visible(timeout=15_000)
        expect(tid(page, "forbidden")).to_have_count(0)
    page.evaluate("location.hash = '#/manager/analytics'")
    for chart in ("contribution", "pyramid", "rfm"):
        expect(tid(page, f"chart-{chart}")).to_be_visible(timeout=15_000)
        assert tid(page, f"chart-{chart}").evaluate("e => e.tagName.toLowerCase()") == "svg" \
            or tid(page, f"chart-{chart}").locator("svg").count() > 0
    screenshots(page, "manager-analytics")
    page.evaluate("location.hash = '#/manager/reports'")
    tid(page, "report-show").click()
    expect(tid(page, "report-view")).to_be_visible(timeout=15_000)
    context.close()
