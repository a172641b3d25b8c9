// A matter that reached this platform over the internet (web, app, mini-program, email, letter) sent to the
// other platform with no call (网络渠道转办): POST /v1/transfers makes the ticket, with the same lifecycle.

import { api } from "./api.js";
import { el, fill } from "./dom.js";

export const URGENCY = [["", "请选择"], ["normal", "一般"], ["urgent", "紧急"], ["emergency", "特急"]];
const CHANNELS = [["web", "网站"], ["app", "App"], ["mini_program", "小程序"], ["wechat", "微信"], ["email", "电子邮件"],
  ["letter", "信件"], ["other", "其他"]];
const FIELDS = ["caller_name", "caller_number", "category", "title", "content", "address", "division", "urgency"];

export class Referral {
  constructor(s) {
    this.s = s;
  }

  render() {
    this.inputs = {};
    this.errors = {};
    const field = (name, label, input) => {
      this.inputs[name] = input;
      this.errors[name] = el("div", { class: "field-error", dataset: { errorFor: `referral.${name}` } });
      return el("label", {}, label, input, this.errors[name]);
    };
    const targets = (this.s.targets || []).filter((t) => t.ticket);
    this.result = el("p", { id: "referral-result", role: "status" });
    this.form = el("form", { id: "referral-form", autocomplete: "off", onsubmit: (e) => this.submit(e) },
      field("target", "转往", el("select", { id: "r-target" },
        targets.map((t) => el("option", { value: t.name }, t.name)))),
      field("channel", "来源渠道", el("select", { id: "r-channel" },
        CHANNELS.map(([value, name]) => el("option", { value }, name)))),
      field("caller_name", "诉求人", el("input", { id: "r-caller-name", maxlength: 100 })),
      field("caller_number", "联系电话", el("input", { id: "r-caller-number", maxlength: 21, inputmode: "tel" })),
      field("category", "类别", el("select", { id: "r-category" }, el("option", { value: "" }, "请选择"))),
      field("title", "标题", el("input", { id: "r-title", maxlength: 200 })),
      field("content", "诉求内容", el("textarea", { id: "r-content", maxlength: 5000 })),
      field("address", "地址", el("input", { id: "r-address", maxlength: 500 })),
      field("division", "行政区划", el("select", { id: "r-division" }, el("option", { value: "" }, "请选择"))),
      field("urgency", "紧急程度", el("select", { id: "r-urgency" },
        URGENCY.map(([value, name]) => el("option", { value }, name)))),
      el("div", { class: "actions" }, el("button", { type: "submit", id: "r-submit" }, "提交转办")),
      this.result);
    return el("section", { id: "referral", class: "card" }, el("h2", {}, "网络渠道转办（无来电）"), this.form);
  }

  fillPicks(c) {
    for (const item of c.categories) this.inputs.category.append(el("option", { value: item.key }, item.name));
    for (const item of c.divisions) {
      this.inputs.division.append(el("option", { value: item.code }, `${item.name}（${item.code}）`));
    }
  }

  async submit(event) {
    event.preventDefault();
    for (const e of Object.values(this.errors)) fill(e);
    fill(this.result);
    const body = { target: this.inputs.target.value, channel: this.inputs.channel.value };
    if (this.s.agent) body.agent = this.s.agent;
    for (const name of FIELDS) {
      const value = this.inputs[name].value.trim();
      if (value) body[name] = value;
    }
    try {
      const ticket = await api("POST", "/v1/transfers", body);
      this.result.dataset.ticketId = ticket.id;
      fill(this.result, `已转办：联动单 ${ticket.id}（${ticket.target ? ticket.target.site : body.target}）`);
      for (const name of ["caller_name", "caller_number", "title", "content", "address"]) this.inputs[name].value = "";
    } catch (error) {
      const target = this.errors[(error.field || "").replace(/^(referral|draft)\./, "")];
      if (target) fill(target, error.message);
      fill(this.result, `转办失败：${error.message}`);
    }
  }
}
