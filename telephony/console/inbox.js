// The tickets this site received (and sent), with only the lifecycle steps allowed now as buttons; the
// server still decides; each row counts down to its next deadline (`due`, from the server's supervision rule).
// An open ticket's history has a small form to amend (更正) its content, address and category. Also the pick
// lists (categories, divisions) every view shares.

import { api } from "./api.js";
import { EVENT, STATUS, duration, el, fill, when } from "./dom.js";

let picks = { categories: [], divisions: [] };
let loading = null;

export function catalogue() {
  loading = loading || fetch("/console/catalogue.json", { cache: "no-store", credentials: "omit" })
    .then((r) => r.json()).then((c) => { picks = c; return c; }).catch(() => picks);
  return loading;
}

export function categoryName(key) {
  const item = picks.categories.find((c) => c.key === key);
  return item ? item.name : key || "—";
}

const SATISFACTION = { satisfied: "满意", basically_satisfied: "基本满意", dissatisfied: "不满意" };
// The steps of tickets/state.py a console may post, by this site's side of the ticket and the ticket's state;
// `need` names the payload item the step requires.
const STEPS = {
  receiver: [
    { type: "accepted", label: "受理", from: ["delivered", "signed_for"] },
    { type: "returned", label: "退回", from: ["delivered", "signed_for"], need: "reason", ask: "退回原因" },
    // a return by the phone's key alone left a default reason: the agent completes it here
    { type: "returned", label: "补充退回原因", from: ["returned"], need: "reason", ask: "退回原因",
      when: reasonPending },
    { type: "in_progress", label: "处理中", from: ["accepted"] },
    { type: "resolved", label: "办结", from: ["accepted", "in_progress"], need: "result", ask: "办理结果" },
  ],
  sender: [
    { type: "followed_up", label: "回访", from: ["resolved"], need: "satisfaction", ask: "满意度" },
    { type: "closed", label: "归档", from: ["resolved", "followed_up", "returned", "transfer_failed"] },
    { type: "cancelled", label: "撤销", from: ["created", "delivered", "signed_for", "returned", "transfer_failed"] },
  ],
};
const PAGE = 100;
// what the last follow-up call came to (telephony/followup/services.py)
const OUTCOME = { busy: "占线", no_answer: "无人接听", congestion: "线路拥塞", hung_up: "对方挂断", unreachable: "无法接通",
  no_outcome: "结果丢失", no_key: "接通未评价", no_number: "无回访号码" };

// the ticket's latest return came from the key alone, with the default reason still to be completed
export function reasonPending(t) {
  const last = [...(t.history || [])].reverse().find((e) => e.type === "returned");
  return Boolean(last && last.payload && last.payload.reason_pending);
}
const FINAL = ["closed", "cancelled"]; // tickets/state.py FINAL: no amendment any more
const AMENDABLE = [["category", "类别"], ["content", "诉求内容"], ["address", "地址"]];
const DUE = { signed_for: "签收", accepted: "受理", resolved: "办结" };

// "剩 12:34 签收" before the deadline, "已超时 03:10" after it; the clock is the browser's, the deadline the server's.
export function countdown(due, now = Date.now()) {
  if (!due || !due.at) return "—";
  const left = new Date(due.at).getTime() - now;
  if (Number.isNaN(left)) return "—";
  return left >= 0 ? `剩 ${duration(left)} ${DUE[due.state] || due.state}` : `已超时 ${duration(-left)}`;
}

export class Inbox {
  constructor(s) {
    this.s = s;
    this.side = "receiver";
    this.items = [];
    this.open = new Set(); // tickets whose history is unfolded
    this.notes = new Map(); // ticket id -> what its last amendment came to, kept across the redraws
    this.pending = null;
    this.asking = false;
    this.followups = new Map(); // ticket id -> its open follow-up call (智能回访): scheduled, dialling or manual
    setInterval(() => this.refresh(), 10000);
    setInterval(() => this.tick(), 1000);
  }

  render() {
    this.body = el("tbody");
    this.error = el("p", { class: "error", role: "alert" });
    const tab = (side, label) => el("button", { type: "button", class: "secondary", dataset: { side },
      "aria-pressed": String(this.side === side), onclick: () => { this.side = side; this.draw(); } }, label);
    this.tabs = el("div", { class: "tabs" }, tab("receiver", "收到的联动单"), tab("sender", "发出的联动单"));
    this.root = el("section", { id: "inbox", class: "card" }, el("h2", {}, "收件箱"), this.tabs, this.error,
      el("table", {}, el("thead", {}, el("tr", {}, ["编号", "来源/去向", "状态", "类别", "来电号码", "内容", "时间",
        "时限", "操作"].map((h) => el("th", {}, h)))), this.body));
    return this.root;
  }

  later() {
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.refresh(), 250); // many events arrive together: one read for them
  }

  async refresh() {
    if (!this.body) return;
    try {
      const [page, followups] = await Promise.all([api("GET", `/v1/tickets?order=newest&page_size=${PAGE}`),
        api("GET", "/v1/followups").catch(() => ({ items: [] }))]);
      this.items = (page.items || []).sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
      this.followups = new Map((followups.items || []).map((f) => [f.ticket_id, f]));
      fill(this.error);
    } catch (error) {
      fill(this.error, `读取联动单失败：${error.message}`);
    }
    if (!this.asking) this.draw(); // not under the agent's fingers while a reason is being typed
  }

  draw() {
    for (const b of this.tabs.children) b.setAttribute("aria-pressed", String(b.dataset.side === this.side));
    const key = this.side === "receiver" ? "target" : "source";
    const rows = this.items.filter((t) => t[key] && t[key].site === this.s.site);
    fill(this.body, rows.length ? rows.map((t) => this.row(t)) : el("tr", {}, el("td", { colspan: 9 }, "暂无")));
  }

  tick() {
    if (!this.body) return;
    const now = Date.now();
    for (const cell of this.body.querySelectorAll("td.due")) {
      const due = cell.dataset.at ? { state: cell.dataset.state, at: cell.dataset.at } : null;
      cell.textContent = countdown(due, now);
      cell.classList.toggle("overdue", Boolean(due) && new Date(due.at).getTime() < now);
    }
  }

  row(t) {
    const peer = this.side === "receiver" ? `来自 ${t.source.site}` : `转 ${t.target.site}`;
    const actions = el("td", { class: "row-actions" },
      STEPS[this.side].filter((s) => s.from.includes(t.status) && (!s.when || s.when(t))).map((s) => this.button(t, s)),
      el("button", { type: "button", class: "secondary", onclick: () => this.toggle(t.id) },
        this.open.has(t.id) ? "收起" : "详情"));
    const tr = el("tr", { dataset: { ticketId: t.id, status: t.status } },
      el("td", {}, t.id), el("td", {}, peer),
      el("td", { class: "status" }, STATUS[t.status] || t.status, this.followupNote(t)),
      el("td", {}, categoryName(t.category)),
      el("td", {}, t.caller_number || "—"), el("td", { class: "text content" }, t.content || "—"),
      el("td", {}, when(t.created_at)),
      el("td", { class: t.due && new Date(t.due.at).getTime() < Date.now() ? "due overdue" : "due",
        dataset: t.due ? { state: t.due.state, at: t.due.at } : {} }, countdown(t.due)), actions);
    if (!this.open.has(t.id)) return tr;
    return [tr, el("tr", { class: "history" }, el("td", { colspan: 9 }, this.history(t)))];
  }

  followupNote(t) {
    const f = this.side === "sender" && this.followups.get(t.id);
    if (!f) return null;
    const words = { scheduled: "待回访", dialling: "回访呼叫中", manual: "需人工回访" }[f.state] || f.state;
    const why = f.outcome ? `（${OUTCOME[f.outcome] || f.outcome}，已呼 ${f.attempts} 次）` : "";
    return el("span", { class: f.state === "manual" ? "followup manual" : "followup", dataset: { followup: f.state } },
      ` · ${words}${why}`);
  }

  history(t) {
    const fields = [["上级联动单", t.parent], ["标题", t.title], ["地址", t.address], ["区划", t.division],
      ["来电人", t.caller_name],
      ["退回原因", t.return_reason], ["办理结果", t.result], ["满意度", SATISFACTION[t.satisfaction] || t.satisfaction]];
    return el("div", {},
      el("dl", {}, fields.filter(([, v]) => v).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      el("ol", {}, (t.history || []).map((e) => el("li", {},
        `${when(e.at)} ${EVENT[e.type] || e.type} · ${e.actor.site}${e.actor.agent ? `/${e.actor.agent}` : ""}`,
        e.payload && Object.keys(e.payload).length ? ` · ${JSON.stringify(e.payload)}` : ""))),
      FINAL.includes(t.status) ? null : this.amendForm(t));
  }

  amendForm(t) {
    const inputs = {};
    const errors = {};
    const status = el("p", { class: "hint", role: "status" }, this.notes.get(t.id));
    const field = ([name, label]) => {
      const input = name === "category"
        ? el("select", { dataset: { amend: name } }, el("option", { value: "" }, "（无）"),
          picks.categories.map((c) => el("option", { value: c.key }, c.name)))
        : el(name === "content" ? "textarea" : "input", { dataset: { amend: name },
          maxlength: name === "content" ? 5000 : 500 });
      if (name === "category" && t.category && !picks.categories.some((c) => c.key === t.category)) {
        input.append(el("option", { value: t.category }, t.category)); // a category no longer in the catalogue
      }
      input.value = t[name] || "";
      input.addEventListener("input", () => { this.asking = true; }); // no redraw under the agent's fingers
      inputs[name] = input;
      errors[name] = el("div", { class: "field-error", dataset: { errorFor: name } });
      return el("label", {}, label, input, errors[name]);
    };
    const form = el("form", { class: "amend", dataset: { ticketId: t.id } }, el("h3", {}, "更正"),
      AMENDABLE.map(field), status, el("button", { type: "submit" }, "提交更正"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const e of Object.values(errors)) fill(e);
      const fields = {};
      for (const [name] of AMENDABLE) {
        const value = name === "category" ? inputs[name].value : inputs[name].value.trim();
        if (value !== (t[name] || "")) fields[name] = value;
      }
      if (!Object.keys(fields).length) {
        fill(status, "没有修改");
        return;
      }
      try {
        await api("PATCH", `/v1/tickets/${t.id}`, { agent: this.s.agent, fields });
        this.asking = false;
        this.notes.set(t.id, `已更正 ${Object.keys(fields).map((k) => AMENDABLE.find(([n]) => n === k)[1]).join("、")}`);
        await this.refresh();
      } catch (error) {
        const target = errors[String(error.field || "").split(".").pop()];
        fill(target || status, `更正失败：${error.message}`);
      }
    });
    return form;
  }

  toggle(id) {
    if (this.open.has(id)) this.open.delete(id);
    else this.open.add(id);
    this.draw();
  }

  button(t, step) {
    return el("button", { type: "button", dataset: { action: step.when ? `${step.type}-complete` : step.type },
      onclick: (event) => (step.need ? this.ask(event.target, t, step) : this.post(t, step, {})) }, step.label);
  }

  ask(button, t, step) {
    const input = step.need === "satisfaction"
      ? el("select", {}, Object.entries(SATISFACTION).map(([k, v]) => el("option", { value: k }, v)))
      : el("input", { placeholder: step.ask, maxlength: 1000, dataset: { need: step.need } });
    const form = el("form", { class: "ask" }, input,
      el("button", { type: "submit" }, `确认${step.label}`));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.post(t, step, { [step.need]: input.value.trim() });
    });
    this.asking = true;
    button.replaceWith(form);
    input.focus();
  }

  async post(t, step, payload) {
    this.asking = false;
    fill(this.error);
    try {
      await api("POST", `/v1/tickets/${t.id}/transitions`, { type: step.type, agent: this.s.agent, payload });
    } catch (error) {
      fill(this.error, `${step.label}失败：${error.message}`);
    }
    await this.refresh();
  }
}
