// The supervisor's view (the site token): the calls in progress, the tickets by state, the dead letters.

import { api, query } from "./api.js";
import { STATUS, el, fill, when } from "./dom.js";
import { catalogue, categoryName } from "./inbox.js";

const POLL = 5000;

export class SupervisorView {
  constructor(root, s) {
    this.root = root;
    this.s = s;
    this.status = "";
    this.pending = null;
  }

  show() {
    this.calls = el("tbody");
    this.tickets = el("tbody");
    this.letters = el("div", { id: "dead-letters" });
    this.error = el("p", { class: "error", role: "alert" });
    this.counts = el("p", { id: "ticket-counts", class: "hint" });
    const pick = el("select", { id: "status-filter", onchange: (e) => { this.status = e.target.value; this.refresh(); } },
      el("option", { value: "" }, "全部状态"),
      Object.entries(STATUS).map(([k, v]) => el("option", { value: k }, v)));
    const head = (...names) => el("thead", {}, el("tr", {}, names.map((n) => el("th", {}, n))));
    fill(this.root, this.error,
      el("section", { id: "live-calls", class: "card" }, el("h2", {}, "在线通话"),
        el("table", {}, head("通话", "话路", "已接通", "联动单", "转接中"), this.calls)),
      el("section", { id: "tickets-by-state", class: "card" }, el("h2", {}, "联动单（按状态）"), pick, this.counts,
        el("table", {}, head("编号", "方向", "状态", "类别", "坐席", "内容", "创建", "更新"), this.tickets)),
      el("section", { class: "card" }, el("h2", {}, "投递失败（死信）"), this.letters));
    this.root.hidden = false;
    catalogue().then(() => this.refresh());
    setInterval(() => this.refresh(), POLL);
  }

  onStream() {
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.refresh(), 250);
  }

  async refresh() {
    try {
      const [calls, tickets, letters] = await Promise.all([
        api("GET", "/v1/calls"),
        api("GET", `/v1/tickets${query({ status: this.status, page_size: 200 })}`),
        api("GET", "/v1/dead-letters"),
      ]);
      this.drawCalls(calls.items || []);
      this.drawTickets(tickets);
      this.drawLetters(letters.peers || []);
      fill(this.error);
    } catch (error) {
      fill(this.error, `刷新失败：${error.message}`);
    }
  }

  drawCalls(items) {
    fill(this.calls, items.length ? items.map((c) => el("tr", { dataset: { linkedid: c.linkedid } },
      el("td", {}, c.linkedid),
      el("td", {}, (c.legs || []).map((l) => `${l.endpoint || l.channel}（${l.state}）`).join("，")),
      el("td", {}, c.bridged ? "是" : "否"), el("td", {}, c.ticket_id || "—"),
      el("td", {}, c.transferring ? "是" : "否"))) : el("tr", {}, el("td", { colspan: 5 }, "暂无通话")));
  }

  drawTickets(page) {
    const items = (page.items || []).sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    const byState = {};
    for (const t of items) byState[t.status] = (byState[t.status] || 0) + 1;
    fill(this.counts, `共 ${page.total ?? items.length} 件：`,
      Object.entries(byState).map(([k, n]) => `${STATUS[k] || k} ${n}`).join("，"));
    fill(this.tickets, items.length ? items.map((t) => el("tr", { dataset: { ticketId: t.id, status: t.status } },
      el("td", {}, t.id), el("td", {}, t.direction), el("td", {}, STATUS[t.status] || t.status),
      el("td", {}, categoryName(t.category)), el("td", {}, t.agent_id || "—"),
      el("td", { class: "text" }, t.content || "—"), el("td", {}, when(t.created_at)),
      el("td", {}, when(t.updated_at)))) : el("tr", {}, el("td", { colspan: 8 }, "暂无")));
  }

  drawLetters(peers) {
    fill(this.letters, peers.map((p) => el("div", { dataset: { peer: p.peer } },
      el("p", {}, `对端 ${p.peer}：${p.count} 条`,
        p.count ? el("button", { type: "button", class: "secondary", onclick: () => this.replay(p.peer) },
          "全部重发") : null),
      p.count ? el("table", {}, el("tbody", {}, (p.items || []).map((i) => el("tr", {},
        el("td", {}, i.ticket_id), el("td", {}, i.event_type || i.kind),
        el("td", {}, i.parked_at ? when(new Date(i.parked_at * 1000).toISOString()) : "—"),
        el("td", { class: "text" }, i.error))))) : null)));
  }

  async replay(peer) {
    try {
      await api("POST", `/v1/dead-letters/${encodeURIComponent(peer)}/replay`, { all: true });
    } catch (error) {
      fill(this.error, `重发失败：${error.message}`);
    }
    this.refresh();
  }
}
