// The supervisor's view (the site token): the calls in progress, the tickets by state, the overdue list,
// delivery health per peer, the dead letters, who exported what, per-agent activity (activity.js), the
// search with its export (search.js) and the statistics (统计, stats.js).

import { api, query } from "./api.js";
import { STATUS, el, fill, when } from "./dom.js";
import { ACTIVITY_PAGE, AgentActivity } from "./activity.js";
import { catalogue, categoryName } from "./inbox.js";
import { TicketSearch } from "./search.js";
import { CallerAdmin } from "./callers.js";
import { QueuePanel } from "./queue.js";
import { StatsPage } from "./stats.js";

const POLL = 5000;

export class SupervisorView {
  constructor(root, s) {
    this.root = root;
    this.s = s;
    this.status = "";
    this.pending = null;
    this.activity = new AgentActivity(s);
    this.search = new TicketSearch();
    this.callers = new CallerAdmin(); // 恶意骚扰: flags, their audit, repeat callers
    this.queue = new QueuePanel(); // 排队 and 县级支援
    this.stats = new StatsPage(); // 统计: the review's figures, loaded on demand (not on every refresh)
  }

  show() {
    this.calls = el("tbody");
    this.tickets = el("tbody");
    this.letters = el("div", { id: "dead-letters" });
    this.overdue = el("tbody");
    this.delivery = el("tbody");
    this.exports = el("tbody");
    this.error = el("p", { class: "error", role: "alert" });
    this.counts = el("p", { id: "ticket-counts", class: "hint" });
    const pick = el("select", { id: "status-filter", onchange: (e) => { this.status = e.target.value; this.refresh(); } },
      el("option", { value: "" }, "全部状态"),
      Object.entries(STATUS).map(([k, v]) => el("option", { value: k }, v)));
    const head = (...names) => el("thead", {}, el("tr", {}, names.map((n) => el("th", {}, n))));
    fill(this.root, this.error, this.queue.render(),
      el("section", { id: "live-calls", class: "card" }, el("h2", {}, "在线通话"),
        el("table", {}, head("通话", "话路", "已接通", "联动单", "转接中"), this.calls)),
      el("section", { id: "tickets-by-state", class: "card" }, el("h2", {}, "联动单（按状态）"), pick, this.counts,
        el("table", {}, head("编号", "方向", "状态", "类别", "坐席", "内容", "创建", "更新"), this.tickets)),
      el("section", { id: "overdue", class: "card" }, el("h2", {}, "超时未办"),
        el("table", {}, head("编号", "状态", "超时环节", "应完成", "承办坐席", "内容"), this.overdue)),
      el("section", { id: "delivery", class: "card" }, el("h2", {}, "投递状况（按对端）"),
        el("table", {}, head("对端", "待投递", "最早一条排队自", "死信"), this.delivery)),
      el("section", { class: "card" }, el("h2", {}, "投递失败（死信）"), this.letters),
      this.activity.render(), this.callers.render(), this.search.render(), this.stats.render(),
      el("section", { id: "exports", class: "card" }, el("h2", {}, "导出记录"),
        el("table", {}, head("时间", "操作者", "格式", "条件", "条数"), this.exports)));
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
      const latest = `/v1/tickets${query({ order: "newest", page_size: ACTIVITY_PAGE })}`;
      const [calls, tickets, letters, delivery, exports, all] = await Promise.all([
        api("GET", "/v1/calls"),
        api("GET", `/v1/tickets${query({ status: this.status, order: "newest", page_size: 200 })}`),
        api("GET", "/v1/dead-letters"),
        api("GET", "/v1/delivery"),
        api("GET", "/v1/audit/exports?limit=20"),
        this.status ? api("GET", latest) : null, // the activity counts every state
      ]);
      this.drawCalls(calls.items || []);
      this.drawTickets(tickets);
      this.drawOverdue(tickets.items || []);
      this.drawLetters(letters.peers || []);
      this.drawDelivery(delivery.peers || []);
      this.drawExports(exports.items || []);
      this.activity.draw(all || tickets);
      await this.callers.refresh();
      await this.queue.refresh();
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

  drawOverdue(items) {
    // a ticket's overdue alerts are events in its history (supervision), with the state and the deadline
    const late = items.filter((t) => (t.flags || []).includes("overdue"));
    fill(this.overdue, late.length ? late.map((t) => {
      const alert = [...(t.history || [])].reverse().find((e) => e.type === "overdue") || { payload: {} };
      const holder = t.signed_for_by || t.offered_to || "";
      return el("tr", { dataset: { ticketId: t.id, late: alert.payload.state || "", holder } },
        el("td", {}, t.id), el("td", {}, STATUS[t.status] || t.status),
        el("td", { class: "late" }, STATUS[alert.payload.state] || alert.payload.state || "—"),
        el("td", { class: "deadline", dataset: { at: alert.payload.deadline || "" } }, when(alert.payload.deadline)),
        el("td", { class: "holder" }, holder || "—"), el("td", { class: "text" }, t.content || "—"));
    }) : el("tr", {}, el("td", { colspan: 6 }, "暂无超时")));
  }

  drawDelivery(peers) {
    fill(this.delivery, peers.map((p) => el("tr", { dataset: { peer: p.peer, queued: p.queued, dead: p.dead_letters } },
      el("td", {}, p.peer), el("td", { class: "queued" }, String(p.queued)),
      el("td", { class: "oldest", dataset: { at: p.oldest_since || "" } },
        p.oldest_since ? when(new Date(p.oldest_since * 1000).toISOString()) : "—"),
      el("td", { class: "dead" }, String(p.dead_letters)))));
  }

  drawExports(items) {
    fill(this.exports, items.length ? items.map((x) => el("tr", {},
      el("td", {}, when(new Date(x.at * 1000).toISOString())), el("td", {}, `${x.by}（${x.remote || "?"}）`),
      el("td", {}, x.format), el("td", { class: "text" }, JSON.stringify(x.filter || {})),
      el("td", {}, `${x.rows}${x.complete ? "" : "（未完成）"}`))) : el("tr", {}, el("td", { colspan: 5 }, "暂无导出")));
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
