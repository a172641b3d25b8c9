// 统计: the quarterly review's figures for a period (GET /v1/stats, the supervisor's token), each with its
// formula, as `linkage report` prints them. Every value from the server goes in as text (dom.js).

import { api, query } from "./api.js";
import { el, fill } from "./dom.js";

const TITLES = {
  direction: "联动量（按方向）", channel: "联动量（电话 / 非电话渠道）", target: "联动量（按接收方）",
  signed_on_time: "按时签收率", feedback_on_time: "按时反馈率", returned: "退回率及退回原因", closed: "闭环率",
  durations: "签收用时与办结用时", threeway: "三方通话结果（按规则）", failures: "转接失败（按原因）",
  overdue: "超时（按承办单位，联而不动）", satisfaction: "回访满意度", advice: "智能转办：采纳与改派",
  disputed: "高频争议事项（按类别）", hotspots: "融合研判：热点（区划 × 类别，按周）",
  bouncing: "反复流转的事项", queue_answered: "接通率", queue_early: "排队早释率",
  queue_wait: "排队等待时长（平均与 p90）", queue_sl: "服务水平 80/15（SL 与 SL2）",
  queue_by_hour: "排队指标（按站点与时段）",
};
const COLUMNS = {
  site: "站点", hour: "时段", entered: "进入排队", "average wait (s)": "平均等待（秒）",
  "p90 wait (s)": "p90 等待（秒）", division: "区划", category: "类别", total: "合计",
};

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
      el("h3", {}, TITLES[f.key] || f.title),
      el("p", { class: "formula" }, "公式：", el("code", {}, f.formula)),
      f.rate ? el("p", { class: "rate", dataset: { num: f.rate.num, den: f.rate.den } }, f.rate.text) : null,
      rows.length ? el("table", { class: "rows" }, el("tbody", {}, rows.map(([label, value]) => el("tr", {},
        el("td", { class: "text" }, label), el("td", {}, value))))) : null,
      table.length ? el("table", { class: "matrix" },
        el("thead", {}, el("tr", {}, (f.columns || []).map((c) => el("th", {},
          COLUMNS[c] || String(c).replace(/^week of (.*)$/, "$1 当周"))))),
        el("tbody", {}, table.map((row) => el("tr", {}, row.map((v) => el("td", {}, v)))))) : null,
      !f.rate && !rows.length && !table.length ? el("p", { class: "hint" }, "本期无数据") : null);
  }
}
