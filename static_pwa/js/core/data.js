// Domain operations the UI calls. All work offline on the device's replica; writes are
// the rows the server services would write (server/services/visits.py, customers.py +
// registration.py, complaints.py, tickets.py, loyalty.py), queued for the next sync.

import { newId } from "./hlc.js";
import { SENSITIVE, BLIND_INDEXED, dataKeyId, decryptValue, encryptValue, isToken, mask,
  normalizeMobile, normalizePhone, tokenClass } from "./fields.js";
import * as store from "./store.js";
import * as sync from "./sync.js";
import * as session from "./session.js";

export { session };
export const on = sync.on;
export const syncNow = sync.syncNow;

const READABLE = {
  general_manager: ["confidential", "secret", "credit"], sales_director: ["confidential", "secret", "credit"],
  archive_clerk: ["confidential", "secret", "credit"], dept_manager: ["confidential"],
  sales_rep: ["confidential"], customer_service: ["confidential"], complaint_handler: ["confidential"],
  technician: ["confidential"], finance: ["confidential", "credit"], auditor: [], admin: [],
};
const MANAGERS = ["dept_manager", "sales_director", "general_manager"];
const EDITORS = ["general_manager", "sales_director", "dept_manager", "customer_service", "sales_rep", "archive_clerk"];
const VISITORS = [...EDITORS, "complaint_handler"];
const TAKERS = ["complaint_handler", "customer_service", "sales_rep", ...MANAGERS];
const HANDLERS = ["complaint_handler", "customer_service", ...MANAGERS];
const KINDS = ["visit", "return_visit", "survey", "care"];
const SCORED = ["return_visit", "survey"];
export const DEMANDS = ["refund", "return", "exchange", "compensation", "criticism"];
export const CHANNELS = ["in_person", "phone", "letter", "email", "online", "wechat"];
export const TICKET_CHANNELS = ["front_desk", "phone", "online", "wechat"];
const DEADLINE_MS = 7 * 24 * 3600 * 1000;
const HQ_DEADLINE_MS = 24 * 3600 * 1000;
const FINISHED = ["declined", "closed", "return_visited"];

export class DataError extends Error {
  constructor(field, message) { super(field ? `${field}: ${message}` : message); this.field = field; }
}

function principal() {
  const s = session.current();
  if (!s) throw new DataError(null, "locked: unlock first");
  session.touch();
  const d = session.deviceInfo();
  return { id: s.user.id, role: s.user.role, branch: d?.branch ?? s.user.branch ?? null,
    department: s.user.department ?? null, keyring: s.keyring };
}
function now() { return new Date(Date.now()); }
/** schema clean_text: NFC, trimmed, no control characters; empty → null. */
export function cleanText(field, value, required = false) {
  if (value == null) { if (required) throw new DataError(field, "must not be empty"); return null; }
  const v = String(value).normalize("NFC").trim();
  if ([...v].some((ch) => /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/.test(ch))) throw new DataError(field, "contains control characters");
  if (!v) { if (required) throw new DataError(field, "must not be empty"); return null; }
  return v;
}
function require(p, roles, what) { if (!roles.includes(p.role)) throw new DataError(null, `a ${p.role} cannot ${what}`); }
/** records.new_number: prefix, branch, UTC date, random tail of a UUIDv7. */
export function newNumber(prefix, branch) {
  const d = new Date().toISOString().slice(0, 10).replace(/-/g, "");
  return `${prefix}-${branch || "HQ"}-${d}-${newId().slice(-6).toUpperCase()}`;
}
function localDay(date) { // Asia/Shanghai (UTC+8, no DST)
  return new Date(date.getTime() + 8 * 3600 * 1000).toISOString().slice(0, 10);
}

// -- reading --------------------------------------------------------------------------

async function live(tbl, id) {
  const r = await store.getRow(tbl, id);
  return r && !r.deleted && r.cl % 2 === 1 ? r : null;
}

/** The archive `id` redirects to after merges (itself if never merged). */
async function survivor(id) {
  const seen = [];
  let cur = id;
  while (!seen.includes(cur)) {
    seen.push(cur);
    const r = await live("customers", cur);
    if (!r || !r.values.merged_into) return cur;
    cur = r.values.merged_into;
  }
  return seen.sort()[0];
}
async function group(id) {
  const all = await store.rowsOf("customers");
  const out = [id];
  let frontier = [id];
  while (frontier.length) {
    const found = all.filter((r) => frontier.includes(r.values.merged_into) && !out.includes(r.id)).map((r) => r.id);
    out.push(...found); frontier = found;
  }
  return out;
}

async function dataKeyFor(p, customerId, cls, create = false) {
  const row = await live("data_keys", await dataKeyId(customerId, cls));
  if (row) return [await p.keyring.dataKey({ id: row.id, ...row.values }), null];
  if (!create) return [null, null];
  if (!p.keyring.holds(cls)) throw new DataError(null, `this device holds no ${cls} key`);
  return p.keyring.newDataKey(customerId, cls);
}

/** A row as `p` may see it: plaintext where the role reads the class and the device
 * holds the key, the mask otherwise; never a token. */
async function shown(p, tbl, record) {
  const out = { id: record.id, ...record.values, pending: (record.pending ?? 0) > 0, quarantined: record.quarantined ?? null };
  const columns = SENSITIVE[tbl] ?? {};
  const readable = READABLE[p.role] ?? [];
  const customerId = tbl === "customers" ? record.id : record.values.customer_id;
  for (const [col, cls] of Object.entries(columns)) {
    const value = out[col];
    if (value == null) continue;
    let plain = null;
    if (isToken(value) && readable.includes(cls)) {
      try {
        const [key] = await dataKeyFor(p, customerId, tokenClass(value));
        if (key) plain = await decryptValue(key, value, { table: tbl, column: col, rowId: record.id });
      } catch { plain = null; }
    }
    out[col] = plain ?? out[`${col}_mask`] ?? null;
  }
  for (const k of Object.keys(out)) if (k.endsWith("_bidx")) delete out[k];
  return out;
}

/** Customers by name (partial, Chinese included) or mobile (blind index, confirmed by
 * decrypting), newest first; merged-away archives are not listed. */
export async function searchCustomers(q, { limit = 50 } = {}) {
  const p = principal();
  let rows = (await store.rowsOf("customers")).filter((r) => r.cl % 2 === 1 && !r.deleted && !r.values.merged_into);
  const term = (cleanText("q", q ?? "") ?? "").toLowerCase();
  const mobile = term ? normalizeMobile(term) : null;
  let exact = null;
  if (mobile) {
    const bidx = await p.keyring.index("customers", "mobile", mobile);
    rows = rows.filter((r) => (bidx ? r.values.mobile_bidx === bidx : false) || (r.values.mobile_mask === mask("mobile", mobile)));
    exact = mobile;
  } else if (term) {
    rows = rows.filter((r) => String(r.values.name ?? "").toLowerCase().includes(term)
      || String(r.values.mobile_mask ?? "").includes(term));
  }
  rows.sort((a, b) => (a.id < b.id ? 1 : -1));
  const out = [];
  for (const r of rows) {
    const s = await shown(p, "customers", r);
    if (exact && s.mobile !== exact && !(r.values.mobile_bidx && !String(s.mobile ?? "").startsWith("+"))) continue;
    out.push(s);
    if (out.length >= limit) break;
  }
  return out;
}

/** One customer (the survivor of merges) with its contacts, decrypted where allowed. */
export async function getCustomer(id) {
  const p = principal();
  const sid = await survivor(id);
  const r = await live("customers", sid);
  if (!r) return null;
  const ids = await group(sid);
  const contacts = (await store.rowsOfCustomer("contacts", ids)).filter((c) => !c.deleted);
  return { ...(await shown(p, "customers", r)), contacts: await Promise.all(contacts.map((c) => shown(p, "contacts", c))) };
}

async function children(tbl, id, order) {
  const p = principal();
  const ids = await group(await survivor(id));
  const rows = (await store.rowsOfCustomer(tbl, ids)).filter((r) => !r.deleted);
  const out = await Promise.all(rows.map((r) => shown(p, tbl, r)));
  return out.sort((a, b) => (String(b[order] ?? b.id) > String(a[order] ?? a.id) ? 1 : -1));
}
export const customerVisits = (id) => children("visits", id, "visited_at");
export async function customerComplaints(id) {
  const t = Date.now();
  return (await children("complaints", id, "received_at")).map((c) => ({ ...c, ...complaintFlags(c, t) }));
}
export const customerTickets = (id) => children("tickets", id, "created_at");

function complaintFlags(row, t = Date.now()) {
  const running = !FINISHED.includes(row.status);
  return { overdue: running && t > new Date(row.deadline_at).getTime(),
    hq_overdue: running && !!row.major && row.hq_deadline_at != null && t > new Date(row.hq_deadline_at).getTime() };
}

/** One complaint with its flags. */
export async function getComplaint(id) {
  const p = principal();
  const r = await live("complaints", id);
  return r ? { ...(await shown(p, "complaints", r)), ...complaintFlags(r.values) } : null;
}

// -- writing --------------------------------------------------------------------------

async function visibleCustomer(p, id) {
  const r = await live("customers", await survivor(String(id)));
  if (!r) throw new DataError(null, "customer not found");
  return r;
}

/** Record a visit, return visit, survey or care contact (server visits.record_visit). */
export async function recordVisit(customerId, values) {
  const p = principal();
  require(p, VISITORS, "record customer visits");
  const kind = values.kind;
  if (!KINDS.includes(kind)) throw new DataError("kind", `must be one of ${KINDS.join(", ")}`);
  const score = values.satisfaction ?? null;
  if (SCORED.includes(kind) && score == null) throw new DataError("satisfaction", `a ${kind} records the customer's score (1-5)`);
  if (!SCORED.includes(kind) && score != null) throw new DataError("satisfaction", "only a return visit or a survey carries a score");
  if (score != null && !(score >= 1 && score <= 5)) throw new DataError("satisfaction", "must be 1-5");
  const at = now();
  const nextOn = values.next_visit_on ?? null;
  if (nextOn != null && nextOn <= localDay(at)) throw new DataError("next_visit_on", "must be after the day of the visit");
  const customer = await visibleCustomer(p, customerId);
  const row = { customer_id: customer.id, contact_id: values.contact_id ?? null, kind, visited_at: at,
    place: cleanText("place", values.place), content: cleanText("content", values.content),
    result: cleanText("result", values.result), next_step: cleanText("next_step", values.next_step),
    next_visit_on: nextOn, satisfaction: score == null ? null : Number(score), related_id: values.related_id ?? null,
    user_id: p.id, branch: customer.values.branch ?? null, created_at: at };
  const id = newId();
  await sync.localInsert("visits", id, row);
  return { id, ...row, pending: true };
}

async function seal(p, table, rowId, customerId, values, created) {
  for (const [col, cls] of Object.entries(SENSITIVE[table] ?? {})) {
    const text = values[col];
    if (text == null || isToken(text)) continue;
    let [key, fresh] = await dataKeyFor(p, customerId, cls, false);
    if (!key) {
      const pendingKey = created.find((c) => c.cls === cls);
      if (pendingKey) key = pendingKey.key;
      else { [key, fresh] = await dataKeyFor(p, customerId, cls, true); created.push({ cls, key, row: fresh }); }
    }
    values[`${col}_mask`] = mask(col, text);
    if ((BLIND_INDEXED[table] ?? []).includes(col)) values[`${col}_bidx`] = await p.keyring.index(table, col, text);
    values[col] = await encryptValue(key, text, { table, column: col, rowId, cls });
  }
}

async function writeDataKeys(created) {
  for (const c of created) {
    if (!c.row) continue;
    const at = now();
    const { id, ...rest } = c.row;
    await sync.localInsert("data_keys", id, { ...rest, created_at: at, updated_at: at });
  }
}

/** Register a customer (server registration.register_customer): owned by the rep,
 * filed under the device's branch, mobile sealed with mask and blind index. */
export async function registerCustomer(values) {
  const p = principal();
  require(p, EDITORS, "register customers");
  const name = cleanText("name", values.name, true);
  let mobile = null;
  if (values.mobile) {
    mobile = normalizeMobile(values.mobile);
    if (!mobile) throw new DataError("mobile", "is not a valid mobile number");
    const taken = await searchCustomers(mobile, { limit: 1 });
    if (taken.length) throw new DataError("mobile", `${mask("mobile", mobile)} is already registered (客户已登记)`);
  }
  const at = now();
  const id = newId();
  const row = {
    name, customer_type: values.customer_type ?? "person", source: values.source ?? "walk_in",
    intention: !!values.intention, agency: !!values.agency,
    referrer_customer_id: values.referrer_customer_id ?? null, referrer_user_id: values.referrer_user_id ?? null,
    notes: cleanText("notes", values.notes), mobile, mobile_mask: null, mobile_bidx: null,
    tags: [], points: 0, filing_status: "registered", id_copy_on_file: false, contract_signed: false,
    last_year_settled: false, secrecy: "ordinary", consent_marketing: false, consent_sharing: false,
    custom: {}, branch: p.branch, department: p.department, owner_id: p.id, registered_at: at,
    created_by: p.id, created_at: at, updated_at: at,
  };
  const created = [];
  await seal(p, "customers", id, id, row, created);
  await writeDataKeys(created);
  await sync.localInsert("customers", id, row);
  return getCustomer(id);
}

/** Log a complaint (server complaints.create_complaint): deadline 7 days from receipt. */
export async function logComplaint(values) {
  const p = principal();
  require(p, TAKERS, "record complaints");
  const at = now();
  const phone = values.phone ? normalizePhone(values.phone) : null;
  if (values.phone && !phone) throw new DataError("phone", "is not a valid phone number");
  if (!DEMANDS.includes(values.demand)) throw new DataError("demand", `must be one of ${DEMANDS.join(", ")}`);
  if (!CHANNELS.includes(values.channel)) throw new DataError("channel", `must be one of ${CHANNELS.join(", ")}`);
  const customer = await visibleCustomer(p, values.customer_id);
  const branch = p.branch || customer.values.branch || null;
  const id = newId();
  const row = { customer_id: customer.id, number: newNumber("TS", branch), branch,
    complainant: cleanText("complainant", values.complainant, true), phone, phone_mask: null,
    demand: values.demand, content: cleanText("content", values.content, true), channel: values.channel,
    received_at: at, deadline_at: new Date(at.getTime() + DEADLINE_MS), major: false, status: "received",
    created_by: p.id, created_at: at, updated_at: at };
  if (values.major) Object.assign(row, { major: true, escalated_at: at, hq_deadline_at: new Date(at.getTime() + HQ_DEADLINE_MS) });
  const created = [];
  await seal(p, "complaints", id, customer.id, row, created);
  await writeDataKeys(created);
  await sync.localInsert("complaints", id, row);
  return getComplaint(id);
}

const NO_HISTORY = new Set(["updated_at", "created_at", "phone_mask", "signature"]);
function jsonable(v) { return v instanceof Date ? v.toISOString().replace(".000Z", "Z").replace(/\.(\d{3})Z$/, ".$1000Z") : v; }

/** An update of a kept-history table: the change plus one field_history row per field
 * (schema/_uow.py `_history`). */
async function historyUpdate(p, tbl, record, changes, opts) {
  const old = { ...record.values };
  const after = await sync.localUpdate(tbl, record.id, changes, opts);
  const updated = await store.getRow(tbl, record.id);
  const at = now();
  for (const [col, val] of Object.entries(changes)) {
    if (NO_HISTORY.has(col) || sameValue(old[col], val)) continue;
    await sync.localInsert("field_history", newId(), { table_name: tbl, row_id: record.id, column_name: col,
      customer_id: record.values.customer_id ?? null, old_value: jsonable(old[col] ?? null), new_value: jsonable(val ?? null),
      changed_by: p.id, changed_at: at, node_id: session.state().nodeId, clock: updated.cells[col]?.clock ?? 0n });
  }
  return after;
}
function sameValue(a, b) { return (a instanceof Date && b instanceof Date) ? a.getTime() === b.getTime() : a === b || (a == null && b == null); }

const STEPS = {
  accept: [["received"], "accepted", HANDLERS], decline: [["received"], "declined", HANDLERS],
  assign: [["accepted", "assigned"], "assigned", HANDLERS], investigate: [["assigned"], "investigated", HANDLERS],
  review: [["investigated"], "reviewed", MANAGERS], reply: [["reviewed"], "replied", HANDLERS],
  close: [["replied"], "closed", HANDLERS], return_visit: [["closed"], "return_visited", HANDLERS],
  reopen: [FINISHED, "received", MANAGERS],
};
const REPORT = ["cause", "course", "responsible", "conclusion", "countermeasures", "prevention"];

/** Take a complaint flow action (server complaints.py): accept, decline {reason},
 * assign {department, handler_id}, investigate {cause, course, responsible, conclusion,
 * countermeasures, prevention}, review {note}, reply {text, channel}, close,
 * return_visit {satisfaction, note}, reopen, escalate {reason}. */
export async function complaintAction(id, action, data = {}) {
  const p = principal();
  const record = await live("complaints", id);
  if (!record) throw new DataError(null, "complaint not found");
  const v = record.values;
  if (action === "escalate") {
    require(p, HANDLERS, "escalate complaints");
    if (v.major) throw new DataError(null, "the complaint is already major and escalated");
    if (FINISHED.includes(v.status)) throw new DataError(null, `cannot escalate a complaint that is ${v.status}`);
    await historyUpdate(p, "complaints", record, { major: true, escalated_at: now(),
      hq_deadline_at: new Date(new Date(v.received_at).getTime() + HQ_DEADLINE_MS), escalation_reason: cleanText("reason", data.reason, true) });
    return getComplaint(id);
  }
  const step = STEPS[action];
  if (!step) throw new DataError("action", `unknown action ${action}`);
  const [sources, target, roles] = step;
  if (!(action === "investigate" && v.handler_id === p.id)) require(p, roles, `${action.replace("_", " ")} complaints`);
  if (!sources.includes(v.status)) throw new DataError(null, `cannot ${action.replace("_", " ")} a complaint that is ${v.status}`);
  let changes = {};
  if (action === "decline") changes = { decline_reason: cleanText("reason", data.reason, true) };
  if (action === "assign") changes = { department: cleanText("department", data.department, true), handler_id: data.handler_id };
  if (action === "investigate") for (const k of REPORT) changes[k] = cleanText(k, data[k], true);
  if (action === "review") changes = { review_note: cleanText("note", data.note, true), reviewed_by: p.id };
  if (action === "reply") {
    if (!["written", "oral"].includes(data.channel)) throw new DataError("channel", "must be one of written, oral");
    changes = { reply: cleanText("reply", data.text, true), reply_channel: data.channel, replied_at: now() };
  }
  if (action === "close") changes = { closed_at: now() };
  if (action === "reopen") changes = { closed_at: null };
  if (action === "return_visit") {
    const s = Number(data.satisfaction);
    if (!(s >= 1 && s <= 5)) throw new DataError("satisfaction", "must be 1 to 5");
    changes = { satisfaction: s, return_visit_note: cleanText("note", data.note) };
  }
  await historyUpdate(p, "complaints", record, { ...changes, status: target },
    { newCycle: action === "reopen" ? ["status"] : [] });
  if (action === "return_visit") {
    const at = now();
    await sync.localInsert("visits", newId(), { customer_id: v.customer_id, kind: "return_visit", visited_at: at,
      content: changes.return_visit_note, satisfaction: changes.satisfaction, related_id: id, user_id: p.id,
      branch: v.branch ?? null, created_at: at });
  }
  return getComplaint(id);
}

/** Take a service ticket (server tickets.create_ticket). */
export async function createTicket(values) {
  const p = principal();
  require(p, ["customer_service", "sales_rep", "technician", ...MANAGERS], "take service tickets");
  const customer = await visibleCustomer(p, values.customer_id);
  const branch = p.branch || customer.values.branch || null;
  const at = now();
  const id = newId();
  const row = { customer_id: customer.id, number: newNumber("BX", branch), branch,
    channel: values.channel, description: cleanText("description", values.description ?? "", true),
    appointment_at: values.appointment_at ? new Date(values.appointment_at) : null, status: "undispatched",
    consent: false, created_by: p.id, created_at: at, updated_at: at };
  await sync.localInsert("tickets", id, row);
  return shown(p, "tickets", await store.getRow("tickets", id));
}

/** Move a ticket on: confirm, arrive, complete {work_done, fee_fen, price_code, consent,
 * signature}, check {passed} (the technician's and checker's steps of tickets.py). */
export async function ticketAction(id, action, data = {}) {
  const p = principal();
  const record = await live("tickets", id);
  if (!record) throw new DataError(null, "ticket not found");
  const v = record.values;
  const techOnly = () => { if (v.technician_id !== p.id) throw new DataError(null, `only the technician the ticket is dispatched to can ${action}`); };
  let changes;
  if (action === "confirm") { techOnly(); if (v.status !== "dispatched") throw new DataError(null, `cannot confirm a ticket that is ${v.status}`); changes = { status: "confirmed", confirmed_at: now() }; }
  else if (action === "arrive") { techOnly(); if (v.status !== "confirmed") throw new DataError(null, `cannot arrive at a ticket that is ${v.status}`); changes = { arrived_at: now() }; }
  else if (action === "complete") {
    techOnly();
    if (v.status !== "confirmed") throw new DataError(null, `cannot complete a ticket that is ${v.status}`);
    changes = { status: "done", completed_at: now(), work_done: cleanText("work_done", data.work_done, true),
      price_code: data.price_code ?? null, fee_fen: data.fee_fen ?? null, consent: !!data.consent, signature: data.signature ?? null };
  } else if (action === "check") { require(p, MANAGERS, "check tickets"); changes = { passed: !!data.passed, checked_by: p.id }; }
  else throw new DataError("action", `unknown action ${action}`);
  await historyUpdate(p, "tickets", record, changes);
  return shown(p, "tickets", await store.getRow("tickets", id));
}

/** Redeem points at this store (server loyalty): a point_entries row of the device's
 * branch; posted at once (counter and posted_at in one write) when the member is held. */
export async function redeemPoints(customerId, points, note) {
  const p = principal();
  const n = Number(points);
  if (!Number.isInteger(n) || n <= 0) throw new DataError("points", "must be a positive whole number");
  const member = await live("customers", await survivor(customerId));
  if (member && Number(member.values.points ?? 0) < n) throw new DataError("points", `the balance is ${member.values.points}`);
  const at = now();
  const id = newId();
  const held = !!member;
  await sync.localInsert("point_entries", id, { branch: p.branch, member_id: member?.id ?? customerId, delta: -n,
    reason: "redeem", note: cleanText("note", note), purchase_id: null, user_id: p.id, at,
    posted_at: held ? at : null, posted_by: held ? p.id : null, created_at: at, updated_at: at });
  if (held) await sync.localIncrement("customers", member.id, "points", -n);
  return { id, delta: -n, pending: true };
}

// -- status ---------------------------------------------------------------------------

/** {pending, lastSync, lastError, online} */
export async function status() {
  const s = sync.syncStatus();
  return { pending: await store.outboxCount(), lastSync: s.lastSync, lastError: s.lastError,
    online: typeof navigator === "undefined" ? true : navigator.onLine };
}
/** Whether a record has local writes not yet acknowledged. */
export async function isPending(tbl, id) { return ((await store.getRow(tbl, id))?.pending ?? 0) > 0; }
/** Open conflicts recorded on a record, and any refusal of its last push. */
export async function conflicts(tbl, id) {
  const out = (await store.rowsOf("conflicts")).filter((r) => r.values.table_name === tbl && r.values.row_id === id && r.values.status === "open")
    .map((r) => ({ id: r.id, ...r.values }));
  const row = await store.getRow(tbl, id);
  if (row?.quarantined) out.push({ id: null, table_name: tbl, row_id: id, status: "refused", reason: row.quarantined });
  return out;
}
