// The supervisor's per-agent activity: from the latest tickets (one page of GET /v1/tickets), how many each
// agent created, had offered (rung) and signed for. A count of what that page holds, not a report.

import { el, fill } from "./dom.js";

export const ACTIVITY_PAGE = 200;

// agent id -> { created, offered, signed }; `site` keeps the counts to this site's own agents
export function activity(items, site) {
  const rows = new Map();
  const bump = (agent, key) => {
    if (!agent) return;
    const row = rows.get(agent) || { created: 0, offered: 0, signed: 0 };
    row[key] += 1;
    rows.set(agent, row);
  };
  for (const t of items) {
    if (t.source && t.source.site === site) bump(t.agent_id, "created");
    if (t.target && t.target.site === site) {
      bump(t.offered_to, "offered");
      bump(t.signed_for_by, "signed");
    }
  }
  return [...rows.entries()].sort(([a], [b]) => a.localeCompare(b));
}

export class AgentActivity {
  constructor(s) {
    this.s = s;
  }

  render() {
    this.body = el("tbody");
    this.note = el("p", { class: "hint" });
    return el("section", { id: "agent-activity", class: "card" }, el("h2", {}, "坐席工作量"), this.note,
      el("table", {}, el("thead", {}, el("tr", {}, ["坐席", "发起联动单", "被振铃", "签收"].map((h) => el("th", {}, h)))),
        this.body));
  }

  draw(page) {
    const items = page.items || [];
    fill(this.note, `统计最近 ${items.length} 件联动单（共 ${page.total ?? items.length} 件）`);
    const rows = activity(items, this.s.site);
    fill(this.body, rows.length ? rows.map(([agent, r]) => el("tr", { dataset: { agent } },
      el("td", {}, agent), el("td", { class: "created" }, String(r.created)),
      el("td", { class: "offered" }, String(r.offered)), el("td", { class: "signed" }, String(r.signed)))) : el("tr", {}, el("td", { colspan: 4 }, "暂无")));
  }
}
