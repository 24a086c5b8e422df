"""The offline web app's JS core (static_pwa/js/core) against the Python formats and a
real headquarters node: value tokens, data keys, grants and blind indexes decrypt and
match both ways; MessagePack (timestamps, 64-bit clocks) round-trips msgspec's batches;
a JS-signed request verifies; and a device enrolled through the REST API pulls its
share, records a visit, registers a customer and logs a complaint that reach HQ.

Driven by Playwright on Debian's chromium; the server and browser come from
tests/pwa_server.py. Each page is a JS file of the app (so the origin is the node's and
the app itself does not boot) that imports the core modules dynamically.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page

from crypto import (
    blind_index,
    decrypt_value,
    encrypt_value,
    index_key,
    new_key,
    request_message,
    unwrap_data_key,
    verify,
    wrap_data_key,
    wrap_to,
)
from schema._values import mask
from schema._vault import data_key_id
from sync import Batch, Cell, Row, Tally, decode, encode
from tests.pwa_server import Hq, browser, new_page, pwa_hq  # noqa: F401  (fixtures)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _open(browser: Browser, hq: Hq) -> Page:  # noqa: F811
    _, page = new_page(browser)
    page.goto(f"{hq.url}/js/core/msgpack.js")
    return page


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_js_tokens_keys_index_msgpack_and_signatures_match_python(
        pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    page = _open(browser, pwa_hq)
    dek, class_key, root = new_key(), new_key(), new_key()
    token = encrypt_value(dek, "+8613912345678", table="customers", column="mobile",
                          row_id="r1", cls="confidential")
    wrapped_dek = wrap_data_key(class_key, dek, customer_id="c1", cls="confidential", version=1)
    when = datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    batch = Batch(protocol=1, schema=1, sender="hq", nodes=["hq", "dev"],
                  columns={"visits": ["customer_id", "visited_at"]},
                  rows=[Row("visits", "v1", 1, 7_000_000_000_000_000_123, 0, ["c1", when],
                            [Cell("visited_at", when, 7_000_000_000_000_000_124, 1, 0,
                                  {"hq": 7_000_000_000_000_000_123})],
                            [Tally("points", 1, 5, 2)])],
                  cursor="3:visits:v1", more=False)
    out = page.evaluate("""async (a) => {
      const mp = await import('/js/core/msgpack.js');
      const f = await import('/js/core/fields.js');
      const k = await import('/js/core/keys.js');
      const u8 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
      const dek = u8(a.dek);
      const plain = await f.decryptValue(dek, a.token,
        {table: 'customers', column: 'mobile', rowId: 'r1'});
      const mine = await f.encryptValue(dek, '王芳 上海',
        {table: 'contacts', column: 'email', rowId: 'r2', cls: 'confidential'});
      const dek2 = await f.unwrapDataKey(u8(a.classKey), a.wrappedDek,
        {customerId: 'c1', cls: 'confidential', version: 1});
      const wrapped = await f.wrapDataKey(u8(a.classKey), dek,
        {customerId: 'c9', cls: 'secret', version: 2});
      const bidx = await f.blindIndex(u8(a.root), 'customers', 'mobile', '+8613912345678');
      const batch = mp.decode(u8(a.batch));
      const again = mp.encode(batch);
      const keys = await k.generateDeviceKeys();
      const body = mp.encode(
        {type: 'pull', protocol: 1, schema: 1, node: 'dev', cursor: '', limit: 5});
      const message = await k.requestMessage('POST', '/sync/v1/pull', 'dev', 1700000000000, body);
      const sig = await k.sign(keys.signKey, message);
      let s = ''; for (const b of again) s += String.fromCharCode(b);
      let t = ''; for (const b of body) t += String.fromCharCode(b);
      return {plain, mine, dek2: k.toHex(dek2), wrapped, bidx, again: btoa(s), body: btoa(t), sig,
              pub: keys.publicKey, uuid5: await f.dataKeyId('c1', 'confidential'),
              clock: String(batch.rows[0][3]), at: batch.rows[0][5][1].toISOString(),
              mask: f.mask('mobile', '+8613912345678'),
              address: f.mask('address', '上海市浦东新区世纪大道1号')};
    }""", {"dek": _b64(dek), "token": token, "classKey": _b64(class_key),
           "wrappedDek": wrapped_dek, "root": _b64(root), "batch": _b64(encode(batch))})
    assert out["plain"] == "+8613912345678"
    assert decrypt_value(dek, out["mine"], table="contacts", column="email",
                         row_id="r2") == "王芳 上海"
    assert out["dek2"] == dek.hex()
    assert unwrap_data_key(class_key, out["wrapped"], customer_id="c9", cls="secret",
                           version=2) == dek
    assert out["bidx"] == blind_index(index_key(root, "customers", "mobile"), "+8613912345678")
    assert decode(base64.b64decode(out["again"])) == batch
    assert out["clock"] == "7000000000000000123" and out["at"] == "2024-05-01T10:00:00.123Z"
    assert out["uuid5"] == data_key_id("c1", "confidential")
    assert out["mask"] == mask("mobile", "+8613912345678")
    assert out["address"] == mask("address", "上海市浦东新区世纪大道1号")
    body = base64.b64decode(out["body"])
    verify(out["pub"], out["sig"], request_message("POST", "/sync/v1/pull", "dev",
                                                   1700000000000, body))
    page.context.close()
    _grant_roundtrip(browser, pwa_hq)


def _grant_roundtrip(browser: Browser, hq: Hq) -> None:  # noqa: F811
    """A class key granted to the browser's X25519 key (crypto.wrap_to) opens there."""
    page = _open(browser, hq)
    pub = page.evaluate("""async () => {
      const k = await import('/js/core/keys.js');
      window.__keys = await k.generateDeviceKeys();
      return window.__keys.boxPublicKey;
    }""")
    key = new_key()
    grant = wrap_to(pub, key, label="class:confidential:1")
    got = page.evaluate("""async (g) => {
      const k = await import('/js/core/keys.js');
      const w = window.__keys;
      const raw = await k.unwrapFrom(w.boxKey, w.boxPublicKey, g, 'class:confidential:1');
      return k.toHex(raw);
    }""", grant)
    assert got == key.hex()
    page.context.close()


def test_device_syncs_and_its_visit_customer_and_complaint_reach_hq(
        pwa_hq: Hq, browser: Browser) -> None:  # noqa: F811
    hq = pwa_hq
    page = _open(browser, hq)
    wang = hq.seeded.customers["wang"]
    rep = hq.seeded.users["rep1"]
    out = page.evaluate("""async (a) => {
      const data = await import('/js/core/data.js');
      const st = await data.session.login('rep1', a.password);
      const first = await data.syncNow();
      const found = await data.searchCustomers('王');
      const byMobile = await data.searchCustomers('139 1234 5678');
      const card = await data.getCustomer(a.wang);
      const visit = await data.recordVisit(a.wang,
        {kind: 'visit', content: '介绍新品', place: '客户门店'});
      const pendingBefore = (await data.status()).pending;
      const cust = await data.registerCustomer({name: '钱多多', mobile: '13600001111',
        source: 'referral', intention: true, referrer_customer_id: a.wang});
      const complaint = await data.logComplaint({customer_id: a.wang, complainant: '王芳',
        phone: '13912345678', demand: 'refund', content: '商品破损', channel: 'phone'});
      const second = await data.syncNow();
      const after = await data.status();
      await data.session.lock();
      let locked = null; try { await data.searchCustomers('王'); } catch (e) { locked = e.message; }
      await data.session.unlock(a.password);
      await data.session.setPin('2468');
      await data.session.lock();
      await data.session.unlock('2468');
      const again = await data.getCustomer(cust.id);
      return {st, first, found: found.map((c) => c.id), byMobile: byMobile.map((c) => c.id),
              mobile: card.mobile, idNumber: card.id_number, visit: visit.id, pendingBefore,
              cust: cust.id, custMobile: cust.mobile, complaint: complaint.id,
              number: complaint.number,
              second, after, locked, againMobile: again.mobile, pendingAfter: again.pending};
    }""", {"password": "pwa-user-pass-1", "wang": wang["id"]})
    assert out["st"]["role"] == "sales_rep" and out["st"]["branch"] == "S001", out
    assert "error" not in out["first"], out["first"]
    assert wang["id"] in out["found"] and out["byMobile"] == [wang["id"]]
    assert out["mobile"] == "+86" + wang["mobile"]  # decrypted on the device
    assert out["idNumber"] != wang["id_number"] and "*" in out["idNumber"]  # secret: mask
    assert out["pendingBefore"] >= 1 and out["custMobile"] == "+8613600001111"
    assert "error" not in out["second"], out["second"]
    assert out["after"]["pending"] == 0 and out["locked"] and out["againMobile"] == "+8613600001111"
    assert out["pendingAfter"] is False
    assert out["number"].startswith("TS-S001-")

    visits = hq.api("GET", "/api/v1/visits", "gm", customer_id=wang["id"])["items"]
    mine = [v for v in visits if v["id"] == out["visit"]]
    assert mine and mine[0]["user_id"] == rep["id"] and mine[0]["branch"] == "S001"
    customer = hq.api("GET", f"/api/v1/customers/{out['cust']}", "gm")
    assert customer["mobile"] == "+8613600001111" and customer["owner_id"] == rep["id"]
    assert customer["branch"] == "S001" and customer["source"] == "referral"
    complaint = hq.api("GET", f"/api/v1/complaints/{out['complaint']}", "gm")
    received = datetime.fromisoformat(complaint["received_at"].replace("Z", "+00:00"))
    deadline = datetime.fromisoformat(complaint["deadline_at"].replace("Z", "+00:00"))
    assert deadline - received == timedelta(days=7)
    assert complaint["phone"] == "+86" + wang["mobile"] and complaint["status"] == "received"
    page.context.close()
