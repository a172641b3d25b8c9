// The queue (排队): an agent's own state in the site's queue — logged in, paused with a reason, logged out — with
// the buttons that change it, and the supervisor's panel of every agent, the callers waiting and surge support
// (突发事件县级座席支援). Everything shown comes from GET /v1/queue as text.

import { api } from "./api.js";
import { duration, el, fill } from "./dom.js";

export const REASONS = { break: "小休", meal: "就餐", training: "培训", meeting: "会议", admin: "事务" };

export function memberState(m) {
  if (!m || !m.logged_in) return "已签出";
  if (m.paused) return `小休中（${REASONS[m.reason] || "其他"}）`;
  return "已签入";
}

export class QueueStatus {
  constructor(s) {
    this.s = s;
  }

  render() {
    this.state = el("span", { id: "queue-state", class: "state" }, "—");
    this.reason = el("select", { id: "queue-reason" },
      Object.entries(REASONS).map(([k, v]) => el("option", { value: k }, v)));
    this.error = el("p", { id: "queue-error", class: "error", role: "alert" });
    const button = (id, label, action) => el("button", { type: "button", id, class: "secondary",
      onclick: () => this.act(action) }, label);
    this.buttons = {
      login: button("queue-login", "签入", "login"), logout: button("queue-logout", "签出", "logout"),
      pause: button("queue-pause", "小休", "pause"), unpause: button("queue-unpause", "恢复接听", "unpause"),
    };
    this.root = el("section", { id: "queue", class: "card" }, el("h2", {}, "排队签入 ", this.state),
      el("div", { class: "actions" }, this.buttons.login, this.buttons.logout, this.reason, this.buttons.pause,
        this.buttons.unpause), this.error);
    return this.root;
  }

  async refresh() {
    try {
      this.draw(await api("GET", "/v1/queue"));
    } catch (e) {
      fill(this.error, `读取排队状态失败：${e.message}`);
    }
  }

  draw(q) {
    const me = (q.members || []).find((m) => m.agent === this.s.agent);
    fill(this.state, memberState(me));
    const inQueue = Boolean(me && me.logged_in);
    this.buttons.login.hidden = inQueue;
    this.buttons.logout.hidden = !inQueue;
    this.buttons.pause.hidden = !inQueue || me.paused;
    this.reason.hidden = !inQueue || me.paused;
    this.buttons.unpause.hidden = !inQueue || !me.paused;
  }

  async act(action) {
    const body = action === "pause" ? { action, reason: this.reason.value } : { action };
    try {
      await api("POST", `/v1/queue/members/${encodeURIComponent(this.s.agent)}`, body);
      fill(this.error);
    } catch (e) {
      fill(this.error, `操作失败：${e.message}`);
    }
    await this.refresh();
  }
}

export class QueuePanel {
  render() {
    this.members = el("tbody");
    this.summary = el("p", { id: "queue-summary" });
    this.surge = el("p", { id: "surge-state", role: "status" });
    this.history = el("ul", { id: "surge-history", class: "hint" });
    const head = el("thead", {}, el("tr", {}, ["坐席", "状态", "已接听", "持续", "操作"].map((n) => el("th", {}, n))));
    return el("section", { id: "queue-panel", class: "card" }, el("h2", {}, "排队与县级支援"), this.summary,
      this.surge, el("table", {}, head, this.members), this.history);
  }

  async refresh() {
    this.draw(await api("GET", "/v1/queue"));
  }

  draw(q) {
    const waiting = q.waiting || [];
    const linked = waiting.filter((w) => w.linked).length;
    fill(this.summary, `排队等待 ${waiting.length} 通（其中联动来电 ${linked} 通），最长已等待 ${duration((q.oldest_wait || 0) * 1000)}`);
    const s = q.surge || {};
    this.surge.className = s.active ? "failure" : "hint";
    if (!s.configured) fill(this.surge, "县级支援：未配置");
    else if (s.active) fill(this.surge, `县级支援中：新来电转至 ${(s.to || []).join("、")}，已转 ${s.calls} 通`);
    else fill(this.surge, `县级支援：未启动（排队 ≥ ${s.on.waiting} 通或最长等待 ≥ ${s.on.oldest} 秒时启动）`);
    fill(this.history, (s.history || []).slice(-5).reverse().map((h) => el("li", {},
      `${new Date(h.at * 1000).toLocaleTimeString("zh-CN", { hour12: false })} ${h.active ? "启动" : "停止"}`
      + `（排队 ${h.waiting} 通，最长等待 ${h.oldest} 秒）`)));
    const now = Date.now() / 1000;
    fill(this.members, (q.members || []).map((m) => el("tr", { dataset: { agent: m.agent } },
      el("td", {}, m.agent), el("td", { class: "queue-member-state" }, memberState(m)), el("td", {}, m.calls_taken),
      el("td", {}, m.since ? duration((now - m.since) * 1000) : "—"),
      el("td", {}, m.logged_in && m.paused && el("button", { type: "button", class: "secondary",
        onclick: () => this.act(m.agent, "unpause") }, "恢复"),
      m.logged_in ? el("button", { type: "button", class: "secondary", onclick: () => this.act(m.agent, "logout") }, "签出")
        : el("button", { type: "button", class: "secondary", onclick: () => this.act(m.agent, "login") }, "签入")))));
  }

  async act(agent, action) {
    await api("POST", `/v1/queue/members/${encodeURIComponent(agent)}`, { action });
    await this.refresh();
  }
}
