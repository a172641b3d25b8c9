// Building the page from data: every server value goes in as a text node or an attribute, never as markup,
// so a ticket's content such as `<img onerror=…>` shows as the characters it is.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "value") node.value = value;
    else if (key === "disabled" || key === "checked" || key === "hidden") node[key] = Boolean(value);
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) { // nested lists too: a row may come with its unfolded history
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function clock(date = new Date()) {
  return date.toLocaleTimeString("zh-CN", { hour12: false });
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : `${d.toLocaleDateString("zh-CN")} ${clock(d)}`;
}

export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

export const STATUS = {
  created: "已创建", delivered: "已送达", signed_for: "已签收", accepted: "已受理", returned: "已退回",
  in_progress: "处理中", resolved: "已办结", followed_up: "已回访", closed: "已归档",
  transfer_failed: "转接失败", cancelled: "已撤销",
};

export const EVENT = {
  created: "联动单已创建", delivered: "已送达对方平台", offered: "对方坐席振铃", signed_for: "对方已签收",
  accepted: "已受理", returned: "已退回", in_progress: "处理中", resolved: "已办结", followed_up: "已回访",
  closed: "已归档", transfer_failed: "转接失败", cancelled: "已撤销", amended: "已修改", overdue: "已超时",
  routed: "已转至区县", transferred: "已转出", decided: "三方商定", abandoned: "来电人已挂机",
};

// Why a transfer failed, from the dial status Asterisk reported; the controller's own words follow in brackets.
export const DIAL_STATUS = {
  busy: "对方忙", noanswer: "无人接听", congestion: "线路拥塞", chanunavail: "对方不可达", cancel: "呼叫已取消",
};

export function reason(payload) {
  const p = payload || {};
  const text = String(p.reason || p.dial_status || "未知原因");
  const known = DIAL_STATUS[String(p.dial_status || "").toLowerCase()];
  return known ? `${known}（${text}）` : text;
}
