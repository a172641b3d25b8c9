// Scope advice (智能转办) as the agent types: after a pause in typing the content, POST /v1/advice, and show the
// platform, the line of the plan's annex that applies and the words that decided it under the content. Only
// text nodes (dom.js): the deciding words are the caller's own.

import { api } from "./api.js";
import { el, fill } from "./dom.js";

const DELAY = 300; // ms of quiet typing before asking

export class AdviceBox {
  constructor(s) {
    this.s = s; // the session: its platform says whether "110" means "this platform" or "transfer"
    this.timer = null;
    this.asked = 0; // the latest question: an older answer arriving late is dropped
    this.box = el("div", { id: "advice", class: "advice", hidden: true, "aria-live": "polite" });
  }

  render() {
    return this.box;
  }

  schedule(content, category) {
    clearTimeout(this.timer);
    const text = content.trim();
    if (!text) {
      this.clear();
      return;
    }
    this.timer = setTimeout(() => this.ask(text, category), DELAY);
  }

  async ask(content, category) {
    const n = ++this.asked;
    try {
      const advice = await api("POST", "/v1/advice", category ? { content, category } : { content });
      if (n === this.asked) this.show(advice);
    } catch (error) {
      if (n !== this.asked) return;
      fill(this.box, el("p", { class: "hint" }, `智能转办建议暂不可用：${error.message}`));
      this.box.hidden = false;
    }
  }

  clear() {
    clearTimeout(this.timer);
    this.asked += 1;
    fill(this.box);
    this.box.hidden = true;
    delete this.box.dataset.platform;
  }

  verdict(a) {
    if (a.platform === "other") return "不属于12345和110受理范围：引导至其他渠道或做好解释";
    if (a.platform === this.s.platform) return `属${a.platform}受理范围：本平台受理`;
    return `属${a.platform}受理范围：建议一键转${a.platform}`;
  }

  show(a) {
    const sure = `把握 ${Math.round(a.confidence * 100)}%${a.by === "danger_rule" ? "（危险情形，规则判定）" : ""}`;
    fill(this.box,
      el("h3", {}, "智能转办建议"),
      a.danger ? el("p", { class: "danger", role: "alert", dataset: { field: "danger" } },
        "危及人身、财产或公共安全：由110先行处置") : null,
      el("p", { class: "verdict", dataset: { field: "verdict" } }, this.verdict(a)),
      el("p", { dataset: { field: "clause" } }, "依据：", a.category_name ? `${a.category_name} · ` : "", a.clause),
      el("p", { dataset: { field: "terms" } }, `关键词：${(a.terms || []).join("、") || "—"}`),
      el("p", { class: "hint", dataset: { field: "confidence" } }, sure),
      a.suggest_threeway ? el("p", { class: "threeway", dataset: { field: "threeway" } },
        "职责不清：建议三方通话（诉求方、12345、110）协商") : null);
    this.box.dataset.platform = a.platform;
    this.box.dataset.danger = String(Boolean(a.danger));
    this.box.hidden = false;
  }
}
