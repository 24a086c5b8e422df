"""The rest of a store's day in the browser (issue 8): service work done offline,
conflicts shown on their record, the idle lock, and the manager screens. Same real
server and Debian chromium as tests/test_pwa_e2e.py."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Browser, expect

from tests.pwa_server import (  # noqa: F401  (fixtures)
    PASSWORD,
    Hq,
    browser,
    new_page,
    pwa_hq,
    screenshots,
)
from tests.pwa_steps import PIN, holds, poll, sign_in, synced, tid

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
expect.set_options(timeout=10_000)

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
