// Strings and formats. Simplified Chinese first, English as a switch; dates, times,
// money, names and mobile numbers the way Chinese users read them (Asia/Shanghai).

const ZH = {
  app_name: '网点客户管理', app_short: 'Branchline',
  lang_switch: 'English', lang_switch_label: '切换到英文界面',
  online: '在线', offline: '离线', pending: '待同步 {n} 条', last_sync: '上次同步 {t}',
  never_synced: '尚未同步', sync_now: '立即同步', sync_status: '同步状态', syncing: '正在同步…',
  sync_error: '同步失败：{e}', not_synced: '未同步', conflict: '有冲突',
  login_title: '登录', username: '用户名', password: '密码', server: '服务器',
  login: '登录', logging_in: '正在登录…', login_offline: '首次登录需要网络连接。',
  pin_title: '设置 PIN 码（可选）', pin_hint: '4–12 位数字，离线时用于快速解锁。',
  pin: 'PIN 码', pin_again: '再次输入 PIN 码', set_pin: '设置 PIN', skip: '跳过',
  pin_mismatch: '两次输入的 PIN 不一致', pin_format: 'PIN 须为 4–12 位数字',
  locked_title: '已锁定', unlock_hint: '输入 PIN 码或密码解锁', pin_or_password: 'PIN 或密码',
  unlock: '解锁', lock: '锁定', logout: '退出登录',
  logout_confirm: '退出登录会清除本设备上的全部数据（含未同步的 {n} 条记录）。确定退出？',
  wiped: '本设备的数据已清除。', revoked: '本设备已被停用，数据已清除。',
  nav_customers: '客户', nav_register: '登记客户', nav_complaints: '投诉', nav_tickets: '报修',
  nav_manager: '管理', nav_main: '主导航', menu: '菜单',
  eg: '例：{x}', search: '搜索客户', search_go: '搜索', search_hint: '姓名或手机号', search_placeholder: '输入姓名或手机号',
  no_results: '没有找到客户', results: '{n} 位客户', results_more: '显示前 {n} 位客户，输入关键字可缩小范围', type_to_search: '输入姓名或手机号搜索客户',
  customer: '客户', archive: '客户档案', contacts: '联系人', no_contacts: '暂无联系人',
  recent_visits: '最近拜访', recent_complaints: '投诉', recent_tickets: '报修单',
  points: '积分', points_balance: '积分余额', none: '暂无', masked: '无权查看',
  back: '返回', save: '保存', cancel: '取消', submit: '提交', saved: '已保存（待同步）',
  saved_online: '已保存', required: '必填', optional: '选填', error: '出错了：{e}',
  loading: '加载中…', retry: '重试', close: '关闭', yes: '是', no: '否',
  f_name: '姓名 / 名称', f_mobile: '手机', f_phone: '电话', f_email: '邮箱',
  f_address: '地址', f_id_number: '身份证号', f_org_code: '统一社会信用代码',
  f_bank_account: '银行账号', f_birthday: '生日', f_credit_status: '信用状况',
  f_customer_class: '客户等级', f_lifecycle_stage: '生命周期', f_source: '来源',
  f_owner: '负责人', f_branch: '门店', f_registered_at: '登记时间', f_notes: '备注',
  f_intention: '有购买意向', f_referrer: '推荐人（客户）', f_tags: '标签',
  f_filing_status: '备案状态', f_preferences: '偏好', f_title: '职务', f_department: '部门',
  lc_potential: '潜在客户', lc_new: '新客户', lc_stable: '稳定客户', lc_old: '老客户', lc_lost: '流失客户',
  fs_registered: '已登记', fs_filed: '已备案', fs_archived: '已归档',
  source_walk_in: '到店', source_call: '来电', source_own_development: '自主开发',
  source_referral: '转介绍', source_agency: '代理',
  record_visit: '记录拜访', register_customer: '登记新客户', log_complaint: '登记投诉',
  new_ticket: '新建报修单', redeem_points: '积分兑换',
  visit_kind: '拜访类型', kind_visit: '拜访', kind_return_visit: '回访', kind_survey: '满意度调查',
  kind_care: '关怀', visit_content: '拜访内容', visit_result: '结果', next_step: '下一步',
  place: '地点', satisfaction: '满意度（1–5）', visited_at: '拜访时间',
  complainant: '投诉人', complaint_phone: '联系电话', demand: '诉求', channel: '渠道',
  complaint_content: '投诉内容', demand_refund: '退款', demand_return: '退货',
  demand_exchange: '换货', demand_compensation: '赔偿', demand_criticism: '批评',
  ch_in_person: '当面', ch_phone: '电话', ch_letter: '信函', ch_email: '邮件',
  ch_online: '网上', ch_wechat: '微信', ch_written: '书面', ch_oral: '口头',
  ch_front_desk: '前台',
  complaint: '投诉', complaint_no: '投诉单 {n}', deadline: '处理期限', overdue: '已超期',
  hq_overdue: '总部 24 小时已超期', received_at: '受理时间', status: '状态',
  st_received: '待受理', st_declined: '不予受理', st_accepted: '已受理', st_assigned: '已分派',
  st_investigated: '已调查', st_reviewed: '已审核', st_replied: '已答复', st_closed: '已结案',
  st_return_visited: '已回访', st_undispatched: '待派工', st_dispatched: '已派工',
  st_confirmed: '已确认', st_done: '已完工', st_pending: '待审批', st_approved: '已批准',
  st_rejected: '已驳回', st_open: '待处理', st_resolved: '已处理', st_expired: '已过期',
  st_returned: '已归还', st_revoked: '已撤销',
  act_accept: '受理', act_decline: '不予受理', act_assign: '分派', act_investigate: '提交调查报告',
  act_review: '审核', act_reply: '答复客户', act_close: '结案', act_return_visit: '回访',
  act_escalate: '升级为重大投诉', act_compensation: '申请赔偿', act_reopen: '重新打开',
  reason: '原因', handler: '处理人', department: '部门', cause: '原因分析',
  course: '经过', responsible: '责任人', conclusion: '结论', countermeasures: '整改措施',
  prevention: '预防措施', review_note: '审核意见', reply_text: '答复内容',
  reply_channel: '答复方式', note: '备注', amount_yuan: '金额（元）',
  ticket: '报修单', ticket_no: '报修单 {n}', description: '故障描述', appointment_at: '预约时间',
  act_arrive: '到达现场', act_confirm: '确认接单', act_complete: '完工', price_code: '收费项目代码',
  consent: '客户同意按价目表收费并施工', signature: '客户签名', clear_signature: '清除签名',
  sign_here: '请在此处签名', work_done: '施工内容', no_tickets: '暂无报修单',
  no_complaints: '暂无投诉', no_visits: '暂无拜访记录', fee: '费用',
  redeem: '兑换', points_to_redeem: '兑换积分', redeem_note: '兑换说明',
  not_enough_points: '积分不足',
  manager: '管理', online_only: '此页面需要网络连接。', approvals: '审批',
  approve: '批准', decline: '驳回', decision_note: '意见', no_approvals: '没有待审批的申请',
  requested_at: '申请时间', purpose: '用途', requester: '申请人', ak_view: '调阅', ak_lend: '借阅', ak_export: '导出', st_requested: '待审批',
  deadlines: '投诉期限', only_overdue: '只看超期', conflicts: '冲突', no_conflicts: '没有待处理的冲突',
  keep_winner: '保留当前值', use_loser: '改用另一值', winner: '当前值', loser: '被覆盖的值',
  field: '字段', table: '表', sync_health: '同步状况', peer: '节点', last_contact: '上次联系',
  waiting: '待发送', quarantined: '隔离', clock_offset: '时钟偏差', last_error: '最近错误',
  reports: '报表', report_kind: '报表类型', period: '月份', show: '查看',
  rk_complaints: '投诉', rk_sla: '时效', rk_visits: '拜访', rk_tickets: '报修', rk_reps: '业务员',
  rk_sync_health: '同步状况', total: '合计', by_branch: '按门店',
  analytics: '分析', contribution: '二八曲线', pyramid: '客户金字塔', rfm: 'RFM 分群',
  contribution_desc: '前 {p} 的客户贡献了 {s} 的金额', buyers: '购买客户', amount: '金额',
  customers_n: '客户数', share_of_customers: '客户占比', share_of_amount: '金额占比',
  seg_champions: '重要价值', seg_loyal: '忠诚', seg_potential_loyalist: '潜在忠诚',
  seg_new: '新客户', seg_promising: '有潜力', seg_need_attention: '需关注',
  seg_about_to_sleep: '即将沉睡', seg_cant_lose: '不能失去', seg_at_risk: '有流失风险',
  seg_hibernating: '沉睡', seg_lost: '已流失', unclassified: '未分级',
  show_data: '查看数据', cls_key: '重点客户', cls_ordinary: '普通客户', cls_potential: '潜在客户',
  cls_none: '未分级',
  rkey_received: '受理', rkey_accepted: '已受理', rkey_declined: '不予受理',
  rkey_awaiting_acceptance: '待受理', rkey_closed: '已结案', rkey_sla_judged: '已判定时效',
  rkey_closed_within_7_days: '7 日内结案', rkey_still_running: '处理中', rkey_overdue_open: '超期未结',
  rkey_major: '重大投诉', rkey_major_within_24h: '24 小时内上报', rkey_compensation_approved_fen: '批准赔偿',
  rkey_satisfaction_count: '满意度回访数', rkey_satisfaction_avg: '平均满意度', rkey_by_channel: '按渠道',
  rkey_by_demand: '按诉求', rkey_visits: '拜访', rkey_customers: '客户', rkey_tickets: '报修单',
  rkey_done: '已完工', rkey_on_time: '准时', rkey_timeliness_rate: '准时率', rkey_pass_rate: '合格率',
  rkey_fees_fen: '费用', rkey_total: '合计', rkey_on_time_rate: '按时率', rkey_close_rate: '结案率',
  forbidden: '您的角色无权查看此内容。', session_expired: '登录已过期，请联网后重新登录。',
  idle_locked: '长时间未操作，已自动锁定。', skip_to_content: '跳到主要内容',
  tickets_title: '报修单', complaints_title: '投诉', pending_only: '只看未同步',
  role: '角色', user: '用户', device: '设备',
};

const EN = {
  app_name: 'Branchline customers', app_short: 'Branchline',
  lang_switch: '中文', lang_switch_label: 'Switch to Chinese',
  online: 'Online', offline: 'Offline', pending: '{n} to sync', last_sync: 'Synced {t}',
  never_synced: 'Never synced', sync_now: 'Sync now', sync_status: 'Sync status', syncing: 'Syncing…',
  sync_error: 'Sync failed: {e}', not_synced: 'Not yet synced', conflict: 'Conflict',
  login_title: 'Sign in', username: 'Username', password: 'Password', server: 'Server',
  login: 'Sign in', logging_in: 'Signing in…', login_offline: 'The first sign-in needs a network.',
  pin_title: 'Set a PIN (optional)', pin_hint: '4–12 digits, to unlock quickly when offline.',
  pin: 'PIN', pin_again: 'PIN again', set_pin: 'Set PIN', skip: 'Skip',
  pin_mismatch: 'The PINs differ', pin_format: 'A PIN is 4–12 digits',
  locked_title: 'Locked', unlock_hint: 'Enter your PIN or password', pin_or_password: 'PIN or password',
  unlock: 'Unlock', lock: 'Lock', logout: 'Sign out',
  logout_confirm: 'Signing out wipes all data on this device (including {n} unsynced records). Sign out?',
  wiped: 'This device’s data was wiped.', revoked: 'This device was revoked; its data was wiped.',
  nav_customers: 'Customers', nav_register: 'Register', nav_complaints: 'Complaints',
  nav_tickets: 'Tickets', nav_manager: 'Manage', nav_main: 'Main navigation', menu: 'Menu',
  eg: 'e.g. {x}', search: 'Search customers', search_go: 'Search', search_hint: 'Name or mobile', search_placeholder: 'Name or mobile',
  no_results: 'No customers found', results: '{n} customers', results_more: 'The first {n} customers; type to narrow down', type_to_search: 'Type a name or mobile number',
  customer: 'Customer', archive: 'Customer archive', contacts: 'Contacts', no_contacts: 'No contacts',
  recent_visits: 'Recent visits', recent_complaints: 'Complaints', recent_tickets: 'Service tickets',
  points: 'Points', points_balance: 'Points balance', none: 'None', masked: 'Not readable',
  back: 'Back', save: 'Save', cancel: 'Cancel', submit: 'Submit', saved: 'Saved (to sync)',
  saved_online: 'Saved', required: 'required', optional: 'optional', error: 'Error: {e}',
  loading: 'Loading…', retry: 'Retry', close: 'Close', yes: 'Yes', no: 'No',
  f_name: 'Name', f_mobile: 'Mobile', f_phone: 'Phone', f_email: 'Email',
  f_address: 'Address', f_id_number: 'ID number', f_org_code: 'Organisation code',
  f_bank_account: 'Bank account', f_birthday: 'Birthday', f_credit_status: 'Credit status',
  f_customer_class: 'Class', f_lifecycle_stage: 'Lifecycle', f_source: 'Source',
  f_owner: 'Owner', f_branch: 'Branch', f_registered_at: 'Registered', f_notes: 'Notes',
  f_intention: 'Intends to buy', f_referrer: 'Referred by (customer)', f_tags: 'Tags',
  f_filing_status: 'Filing', f_preferences: 'Preferences', f_title: 'Title', f_department: 'Department',
  lc_potential: 'Potential', lc_new: 'New', lc_stable: 'Stable', lc_old: 'Long-standing', lc_lost: 'Lost',
  fs_registered: 'Registered', fs_filed: 'Filed', fs_archived: 'Archived',
  source_walk_in: 'Walk-in', source_call: 'Call', source_own_development: 'Own development',
  source_referral: 'Referral', source_agency: 'Agency',
  record_visit: 'Record a visit', register_customer: 'Register a customer',
  log_complaint: 'Log a complaint', new_ticket: 'New service ticket', redeem_points: 'Redeem points',
  visit_kind: 'Kind', kind_visit: 'Visit', kind_return_visit: 'Return visit', kind_survey: 'Survey',
  kind_care: 'Care', visit_content: 'What was discussed', visit_result: 'Result', next_step: 'Next step',
  place: 'Place', satisfaction: 'Satisfaction (1–5)', visited_at: 'Visited at',
  complainant: 'Complainant', complaint_phone: 'Phone', demand: 'Demand', channel: 'Channel',
  complaint_content: 'Complaint', demand_refund: 'Refund', demand_return: 'Return',
  demand_exchange: 'Exchange', demand_compensation: 'Compensation', demand_criticism: 'Criticism',
  ch_in_person: 'In person', ch_phone: 'Phone', ch_letter: 'Letter', ch_email: 'Email',
  ch_online: 'Online', ch_wechat: 'WeChat', ch_written: 'Written', ch_oral: 'Oral',
  ch_front_desk: 'Front desk',
  complaint: 'Complaint', complaint_no: 'Complaint {n}', deadline: 'Deadline', overdue: 'Overdue',
  hq_overdue: 'HQ 24 h overdue', received_at: 'Received', status: 'Status',
  st_received: 'Received', st_declined: 'Declined', st_accepted: 'Accepted', st_assigned: 'Assigned',
  st_investigated: 'Investigated', st_reviewed: 'Reviewed', st_replied: 'Replied', st_closed: 'Closed',
  st_return_visited: 'Return-visited', st_undispatched: 'Not dispatched', st_dispatched: 'Dispatched',
  st_confirmed: 'Confirmed', st_done: 'Done', st_pending: 'Pending', st_approved: 'Approved',
  st_rejected: 'Rejected', st_open: 'Open', st_resolved: 'Resolved', st_expired: 'Expired',
  st_returned: 'Returned', st_revoked: 'Revoked',
  act_accept: 'Accept', act_decline: 'Decline', act_assign: 'Assign', act_investigate: 'File investigation',
  act_review: 'Review', act_reply: 'Reply', act_close: 'Close', act_return_visit: 'Return visit',
  act_escalate: 'Escalate as major', act_compensation: 'Request compensation', act_reopen: 'Reopen',
  reason: 'Reason', handler: 'Handler', department: 'Department', cause: 'Cause',
  course: 'Course of events', responsible: 'Responsible', conclusion: 'Conclusion',
  countermeasures: 'Countermeasures', prevention: 'Prevention', review_note: 'Review note',
  reply_text: 'Reply', reply_channel: 'Reply channel', note: 'Note', amount_yuan: 'Amount (yuan)',
  ticket: 'Ticket', ticket_no: 'Ticket {n}', description: 'Fault description', appointment_at: 'Appointment',
  act_arrive: 'Arrived on site', act_confirm: 'Confirm the job', act_complete: 'Complete', price_code: 'Price-list code',
  consent: 'The customer agrees to the listed price and the work', signature: 'Customer signature',
  clear_signature: 'Clear signature', sign_here: 'Sign here', work_done: 'Work done',
  no_tickets: 'No tickets', no_complaints: 'No complaints', no_visits: 'No visits yet', fee: 'Fee',
  redeem: 'Redeem', points_to_redeem: 'Points to redeem', redeem_note: 'What for',
  not_enough_points: 'Not enough points',
  manager: 'Manage', online_only: 'This page needs a network connection.', approvals: 'Approvals',
  approve: 'Approve', decline: 'Decline', decision_note: 'Note', no_approvals: 'Nothing to approve',
  requested_at: 'Requested', purpose: 'Purpose', requester: 'Requester', ak_view: 'View', ak_lend: 'Lend', ak_export: 'Export', st_requested: 'Requested',
  deadlines: 'Complaint deadlines', only_overdue: 'Overdue only', conflicts: 'Conflicts',
  no_conflicts: 'No open conflicts', keep_winner: 'Keep current', use_loser: 'Use the other',
  winner: 'Current', loser: 'Overwritten', field: 'Field', table: 'Table',
  sync_health: 'Sync health', peer: 'Node', last_contact: 'Last contact', waiting: 'Waiting',
  quarantined: 'Quarantined', clock_offset: 'Clock offset', last_error: 'Last error',
  reports: 'Reports', report_kind: 'Report', period: 'Month', show: 'Show',
  rk_complaints: 'Complaints', rk_sla: 'SLA', rk_visits: 'Visits', rk_tickets: 'Tickets', rk_reps: 'Reps',
  rk_sync_health: 'Sync health', total: 'Total', by_branch: 'By branch',
  analytics: 'Analytics', contribution: '80/20 curve', pyramid: 'Customer pyramid', rfm: 'RFM segments',
  contribution_desc: 'The top {p} of buyers bring {s} of the amount', buyers: 'Buyers', amount: 'Amount',
  customers_n: 'Customers', share_of_customers: 'Share of customers', share_of_amount: 'Share of amount',
  seg_champions: 'Champions', seg_loyal: 'Loyal', seg_potential_loyalist: 'Potential loyalist',
  seg_new: 'New', seg_promising: 'Promising', seg_need_attention: 'Need attention',
  seg_about_to_sleep: 'About to sleep', seg_cant_lose: 'Can’t lose', seg_at_risk: 'At risk',
  seg_hibernating: 'Hibernating', seg_lost: 'Lost', unclassified: 'Unclassified',
  show_data: 'Show the figures', cls_key: 'Key', cls_ordinary: 'Ordinary', cls_potential: 'Potential',
  cls_none: 'Unclassified',
  forbidden: 'Your role may not see this.', session_expired: 'Session expired: sign in again online.',
  idle_locked: 'Locked after inactivity.', skip_to_content: 'Skip to content',
  tickets_title: 'Service tickets', complaints_title: 'Complaints', pending_only: 'Unsynced only',
  role: 'Role', user: 'User', device: 'Device',
};

const DICTS = { 'zh-CN': ZH, en: EN };
const TZ = 'Asia/Shanghai';
let current = (typeof localStorage !== 'undefined' && localStorage.getItem('bl.lang')) || 'zh-CN';
if (!DICTS[current]) current = 'zh-CN';

/** The language in use: 'zh-CN' or 'en'. */
export function lang() { return current; }

/** Switch language, remember it, and tell the app to re-render. */
export function setLang(code) {
  current = DICTS[code] ? code : 'zh-CN';
  localStorage.setItem('bl.lang', current);
  document.documentElement.lang = current;
  window.dispatchEvent(new CustomEvent('bl-lang'));
}

/** The string `key` in the current language with `{name}` placeholders filled. */
export function t(key, vars = {}) {
  const s = DICTS[current][key] ?? ZH[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? ''));
}

/** `t` for an optional code with a prefix, falling back to the code itself. */
export function tc(prefix, code) {
  if (code == null || code === '') return '—';
  const key = prefix + code;
  return DICTS[current][key] ? t(key) : String(code);
}

function toDate(v) {
  if (v == null || v === '') return null;
  if (v instanceof Date) return v;
  if (typeof v === 'bigint') return new Date(Number(v));
  if (typeof v === 'number') return new Date(v);
  if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v)) return new Date(v + 'T00:00:00+08:00');
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

function parts(d, withTime) {
  const opts = { timeZone: TZ, year: 'numeric', month: 'numeric', day: 'numeric' };
  if (withTime) Object.assign(opts, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const out = {};
  for (const p of new Intl.DateTimeFormat('en-US', opts).formatToParts(d)) out[p.type] = p.value;
  return out;
}

/** 2026年11月27日 (en: 2026-11-27), in Asia/Shanghai. */
export function fmtDate(v) {
  const d = toDate(v);
  if (!d) return '—';
  const p = parts(d, false);
  return current === 'en' ? `${p.year}-${p.month.padStart(2, '0')}-${p.day.padStart(2, '0')}`
    : `${p.year}年${p.month}月${p.day}日`;
}

/** 14:05, 24-hour, Asia/Shanghai. */
export function fmtTime(v) {
  const d = toDate(v);
  if (!d) return '—';
  const p = parts(d, true);
  return `${p.hour === '24' ? '00' : p.hour}:${p.minute}`;
}

/** 2026年11月27日 14:05; today's instants show only the time. */
export function fmtDateTime(v, { short = false } = {}) {
  const d = toDate(v);
  if (!d) return '—';
  if (short && fmtDate(d) === fmtDate(new Date())) return fmtTime(d);
  return `${fmtDate(d)} ${fmtTime(d)}`;
}

/** ¥1,234.50 from integer fen (negative: -¥12.00). */
export function fmtMoney(fen) {
  if (fen == null || fen === '') return '—';
  const n = typeof fen === 'bigint' ? fen : BigInt(Math.round(Number(fen)));
  const neg = n < 0n;
  const abs = neg ? -n : n;
  const yuan = (abs / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const cents = (abs % 100n).toString().padStart(2, '0');
  return `${neg ? '-' : ''}¥${yuan}.${cents}`;
}

/** A plain count with thousands separators. */
export function fmtNumber(n) {
  if (n == null) return '—';
  return Number(n).toLocaleString('en-US');
}

/** A share 0..1 as a percentage (one decimal). */
export function fmtPercent(x) {
  if (x == null) return '—';
  return `${(Number(x) * 100).toFixed(1).replace(/\.0$/, '')}%`;
}

/** 138 0000 1111 (also masks: 138 **** 5678); other numbers unchanged. */
export function fmtMobile(v) {
  if (!v) return '—';
  let s = String(v).replace(/[\s-]/g, '');
  if (s.startsWith('+86')) s = s.slice(3);
  if (/^[\d*]{11}$/.test(s)) return `${s.slice(0, 3)} ${s.slice(3, 7)} ${s.slice(7)}`;
  return String(v);
}

/** A person's name as Chinese write it: family name first. Chinese names already are;
 * a Latin "Family, Given" (as some imports store it) becomes "Family Given". */
export function fmtName(v) {
  if (!v) return '—';
  const s = String(v).trim();
  const m = /^([^,，]+)[,，]\s*(.+)$/.exec(s);
  return m ? `${m[1]} ${m[2]}` : s;
}

/** Yuan text typed by a user ("12.5", "1,234.50") → integer fen, or null. */
export function yuanToFen(text) {
  const s = String(text ?? '').replace(/[,，¥\s]/g, '');
  if (!/^\d+(\.\d{1,2})?$/.test(s)) return null;
  const [y, c = ''] = s.split('.');
  return Number(y) * 100 + Number((c + '00').slice(0, 2));
}
