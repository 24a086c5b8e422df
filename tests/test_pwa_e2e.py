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

import struct
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import Browser, expect

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
from tests.pwa_steps import (
    PIN,
    assert_offline_shell,
    enrolments,
    field_values,
    holds,
    route_id,
    search,
    sign_in,
    synced,
    tid,
    unlabelled_controls,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
expect.set_options(timeout=10_000)


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
