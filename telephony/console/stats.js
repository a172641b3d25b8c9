// 统计: the quarterly review's figures for a period (GET /v1/stats, the supervisor's token), each with its
// formula, as `linkage report` prints them: titles, formulas and column heads come in zh-CN from the server
// (telephony/reporting/figures.py, queue_figures.py), written once there. Every value goes in as text (dom.js).

import { api, query } from "./api.js";
import { el, fill } from "./dom.js";

function day(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

export class StatsPage {
  render() {
    const today = new Date();
    const quarter = new Date(today.getFullYear(), Math.floor(today.getMonth() / 3) * 3, 1);
    this.from = el("input", { id: "stats-from", type: "date", value: day(quarter), required: "required" });
    this.to = el("input", { id: "stats-to", type: "date", value: day(today), required: "required" });
    this.error = el("p", { id: "stats-error", class: "error", role: "alert" });
    this.summary = el("p", { id: "stats-summary", class: "hint" });
    this.out = el("div", { id: "stats-figures" });
    const form = el("form", { id: "stats-form", class: "search", onsubmit: (e) => { e.preventDefault(); this.load(); } },
      el("label", {}, "起始日期", this.from), el("label", {}, "截止日期（含）", this.to),
      el("button", { id: "stats-submit", type: "submit" }, "查询"));
    return el("section", { id: "stats", class: "card" }, el("h2", {}, "统计"),
      el("p", { class: "hint" }, "会商交流的各项指标，每项附计算公式；来电号码已隐去。"),
      form, this.error, this.summary, this.out);
  }

  async load() {
    fill(this.error);
    try {
      const data = await api("GET", `/v1/stats${query({ from: this.from.value, to: this.to.value })}`);
      this.draw(data);
    } catch (error) {
      fill(this.error, `统计查询失败：${error.message}`);
    }
  }

  draw(data) {
    fill(this.summary, `站点 ${data.site}：${data.from} 至 ${data.to}（${data.tz}），期间创建联动单 ${data.tickets} 件；`
      + `早释阈值 ${data.early_release_seconds} 秒。`);
    fill(this.out, (data.figures || []).map((f) => this.figure(f)));
  }

  figure(f) {
    const rows = f.rows || [];
    const table = f.table || [];
    return el("section", { class: "figure", dataset: { key: f.key } },
      el("h3", {}, f.title),
      el("p", { class: "formula" }, "公式：", el("code", {}, f.formula)),
      f.rate ? el("p", { class: "rate", dataset: { num: f.rate.num, den: f.rate.den } }, f.rate.text) : null,
      rows.length ? el("table", { class: "rows" }, el("tbody", {}, rows.map(([label, value]) => el("tr", {},
        el("td", { class: "text" }, label), el("td", {}, value))))) : null,
      table.length ? el("table", { class: "matrix" },
        el("thead", {}, el("tr", {}, (f.columns || []).map((c) => el("th", {}, c)))),
        el("tbody", {}, table.map((row) => el("tr", {}, row.map((v) => el("td", {}, v)))))) : null,
      !f.rate && !rows.length && !table.length ? el("p", { class: "hint" }, "本期无数据") : null);
  }
}
