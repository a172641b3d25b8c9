// Flagged and repeat callers (恶意骚扰). The agent's part: the current caller's flag, shown on the call card
// and the screen pop, and a reason + button to flag the caller. The supervisor's part: the flags (with
// 解除标记, the supervisor's alone), a form to flag a number, the audit of every change (who, when, why), the
// numbers suggested for calling N times in M minutes (a suggestion only) and the calls per number.
// Every value is a text node (dom.js): a hostile reason shows as the characters it is.

import { api, query } from "./api.js";
import { el, fill, when } from "./dom.js";

const REASON_MAX = 200; // telephony/callers/flags.py REASON_MAX
const at = (epoch) => (epoch ? when(new Date(epoch * 1000).toISOString()) : "—");
const who = (by) => (by === "supervisor" ? "班长" : `坐席 ${by}`);

// The line that says a caller is flagged, or nothing.
export function flagNote(flag, id) {
  if (!flag) return null;
  return el("p", { id, class: "failure caller-flag", role: "alert", dataset: { by: flag.by } },
    `⚠ 已标记为骚扰来电：${flag.reason}（${who(flag.by)}，${at(flag.at)}）`);
}

export class CallerFlag {
  constructor(s) {
    this.s = s;
    this.number = "";
    this.mine = {}; // number -> the flag this page just set (until the next call message says so too)
  }

  render() {
    this.note = el("div", { id: "call-flag" });
    this.reason = el("input", { id: "flag-reason", maxlength: REASON_MAX, placeholder: "标记原因（必填）" });
    this.button = el("button", { type: "button", id: "flag-caller", class: "secondary", disabled: true,
      onclick: () => this.flag() }, "标记为骚扰来电");
    this.error = el("p", { id: "flag-error", class: "error", role: "alert" });
    return el("div", {}, this.note, el("div", { class: "actions" }, this.reason, this.button), this.error);
  }

  show(number, flag) {
    if (number !== this.number) fill(this.error);
    this.number = number || "";
    const shown = flag || this.mine[this.number];
    fill(this.note, flagNote(shown, "call-flag-note"));
    this.button.disabled = !this.number;
  }

  async flag() {
    const reason = this.reason.value.trim();
    fill(this.error);
    if (!this.number) return;
    if (!reason) {
      fill(this.error, "请填写标记原因");
      return;
    }
    try {
      const flag = await api("POST", "/v1/callers/flags", { number: this.number, reason, agent: this.s.agent });
      this.mine[this.number] = flag;
      this.reason.value = "";
      this.show(this.number, flag);
    } catch (error) {
      fill(this.error, `标记失败：${error.message}`);
    }
  }
}

export class CallerAdmin {
  render() {
    const head = (...names) => el("thead", {}, el("tr", {}, names.map((n) => el("th", {}, n))));
    this.flags = el("tbody");
    this.audit = el("tbody");
    this.suggested = el("tbody");
    this.counts = el("tbody");
    this.window = el("span", { class: "hint" });
    this.error = el("p", { id: "caller-error", class: "error", role: "alert" });
    this.number = el("input", { id: "flag-number", inputmode: "tel", maxlength: 21, placeholder: "来电号码" });
    this.reason = el("input", { id: "flag-number-reason", maxlength: REASON_MAX, placeholder: "标记原因（必填）" });
    const form = el("form", { id: "flag-form", class: "search", onsubmit: (e) => { e.preventDefault(); this.flag(); } },
      el("label", {}, "号码", this.number), el("label", {}, "原因", this.reason),
      el("button", { type: "submit", id: "flag-submit" }, "标记为骚扰来电"));
    return el("div", { id: "callers" },
      el("section", { id: "caller-flags", class: "card" }, el("h2", {}, "骚扰来电标记"), form, this.error,
        el("table", {}, head("号码", "原因", "标记人", "时间", ""), this.flags)),
      el("section", { id: "caller-suggestions", class: "card" }, el("h2", {}, "频繁来电（建议核查）", this.window),
        el("table", {}, head("号码", "窗口内次数", "首次", "最近", ""), this.suggested)),
      el("section", { id: "caller-counts", class: "card" }, el("h2", {}, "来电次数（按号码）"),
        el("table", {}, head("号码", "窗口内", "累计", "最近", "已标记"), this.counts)),
      el("section", { id: "caller-audit", class: "card" }, el("h2", {}, "标记记录"),
        el("table", {}, head("时间", "操作", "号码", "操作人", "原因"), this.audit)));
  }

  async refresh() {
    const [flags, audit, suggestions, counts] = await Promise.all([
      api("GET", "/v1/callers/flags"), api("GET", `/v1/audit/flags${query({ limit: 50 })}`),
      api("GET", "/v1/callers/suggestions"), api("GET", `/v1/callers/counts${query({ limit: 20 })}`)]);
    fill(this.window, `（${suggestions.minutes} 分钟内 ${suggestions.calls} 次及以上）`);
    const none = (n, text) => el("tr", {}, el("td", { colspan: n }, text));
    fill(this.flags, flags.items.length ? flags.items.map((f) => el("tr", { dataset: { number: f.number } },
      el("td", {}, f.number), el("td", { class: "text" }, f.reason), el("td", {}, who(f.by)), el("td", {}, at(f.at)),
      el("td", {}, el("button", { type: "button", class: "secondary unflag", onclick: () => this.unflag(f.number) },
        "解除标记")))) : none(5, "暂无标记"));
    fill(this.suggested, suggestions.items.length ? suggestions.items.map((x) => el("tr", { dataset: { number: x.number } },
      el("td", {}, x.number), el("td", {}, String(x.calls)), el("td", {}, at(x.first)), el("td", {}, at(x.last)),
      el("td", {}, el("button", { type: "button", class: "secondary", onclick: () => this.pick(x.number) }, "标记…"))))
      : none(5, "暂无建议"));
    fill(this.counts, counts.items.length ? counts.items.map((x) => el("tr", { dataset: { number: x.number } },
      el("td", {}, x.number), el("td", {}, String(x.recent)), el("td", {}, String(x.total)), el("td", {}, at(x.last)),
      el("td", {}, x.flagged ? "是" : "否"))) : none(5, "暂无来电"));
    fill(this.audit, audit.items.length ? audit.items.map((e) => el("tr", { dataset: { action: e.action, number: e.number } },
      el("td", {}, at(e.at)), el("td", {}, e.action === "flag" ? "标记" : "解除"), el("td", {}, e.number),
      el("td", { class: "by" }, who(e.by)), el("td", { class: "text reason" }, e.reason))) : none(5, "暂无记录"));
  }

  pick(number) {
    this.number.value = number;
    this.reason.focus();
  }

  async flag() {
    fill(this.error);
    try {
      await api("POST", "/v1/callers/flags", { number: this.number.value.trim(), reason: this.reason.value.trim() });
      this.number.value = "";
      this.reason.value = "";
    } catch (error) {
      fill(this.error, `标记失败：${error.message}`);
    }
    await this.refresh();
  }

  async unflag(number) {
    const row = this.flags.querySelector(`tr[data-number="${CSS.escape(number)}"]`);
    const reason = el("input", { class: "unflag-reason", maxlength: REASON_MAX, placeholder: "解除原因（必填）" });
    const confirm = el("button", { type: "button", class: "unflag-confirm", onclick: async () => {
      fill(this.error);
      try {
        await api("POST", "/v1/callers/unflag", { number, reason: reason.value.trim() });
      } catch (error) {
        fill(this.error, `解除失败：${error.message}`);
        return;
      }
      await this.refresh();
    } }, "确认解除");
    if (row) fill(row.lastChild, reason, confirm);
    reason.focus();
  }
}
