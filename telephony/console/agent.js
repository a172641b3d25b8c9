// The agent's view: the current call, the screen pop, the 联动单 form (autosaved as the call's draft), one
// button per target with its keyboard shortcut, the transfer's progress, and the inbox.

import { AdviceBox } from "./advice.js";
import { ApiError, api } from "./api.js";
import { EVENT, STATUS, clock, duration, el, fill, reason, when } from "./dom.js";
import { Inbox, catalogue, categoryName } from "./inbox.js";
import { Referral, URGENCY } from "./referral.js";
import { CallerFlag, flagNote } from "./callers.js";
import { QueueStatus } from "./queue.js";

const THREEWAY_KEY = 9; // Alt+9; the targets take Alt+1, Alt+2, … in order, up to Alt+7
const CONSULT_KEY = 8; // Alt+8, the attended transfer: the agent talks to the other platform first
const RETURN_KEY = 0; // Alt+0, 退回: a linked call goes back to the platform it came from, with the reason
// the console's reasons for a return (the agent may add words of their own)
const RETURN_REASONS = ["非本平台职责范围", "属12345受理范围（非警务事项）", "属110受理范围（警情）",
  "信息不全，无法受理", "重复转办"];
const STEPS = ["created", "delivered", "offered", "signed_for"];
// What PUT /v1/calls/{linkedid}/draft accepts (telephony/tickets/models.py Draft)
const DRAFT_FIELDS = ["category", "content", "address", "division", "title", "caller_name", "officer_contact",
  "urgency"];
const SAVE_DELAY = 400; // ms of quiet typing before the draft is saved
const POLL = 2000; // the calls are re-read this often even without a stream message

export class AgentView {
  constructor(root, s) {
    this.root = root;
    this.s = s;
    this.call = null; // the call from GET /v1/calls
    this.info = {}; // linkedid -> what `call` stream messages said (caller number, start)
    this.seen = {}; // linkedid -> when this page first saw it (the duration's start without a message)
    this.formCall = ""; // the call the form's text belongs to
    this.tracked = null; // the ticket of this agent's latest transfer
    this.pop = null;
    this.timer = null;
    this.saving = Promise.resolve();
    this.inbox = new Inbox(s);
    this.referral = new Referral(s);
    this.advice = new AdviceBox(s); // 智能转办: shown under the content as the agent types it
    this.flagBox = new CallerFlag(s); // 恶意骚扰: the caller's flag, and flagging the caller
    this.queue = new QueueStatus(s); // 排队: logged in, paused, logged out
  }

  targets() {
    // the site's transfer targets as GET /v1/whoami named them at sign-in, in key order
    return (this.s.targets || []).map((t) => t.name);
  }

  show() {
    this.render();
    this.root.hidden = false;
    catalogue().then((c) => { this.fillPicks(c); this.referral.fillPicks(c); });
    setInterval(() => this.refreshCalls(), POLL);
    setInterval(() => this.tick(), 1000);
    document.addEventListener("keydown", (event) => this.onKey(event));
  }

  refresh() {
    this.refreshCalls();
    this.inbox.refresh();
    this.queue.refresh();
  }

  onStream(type, data) {
    const ringsHere = data && data.event && data.event.actor && data.event.actor.agent === this.s.agent;
    if (type === "screen_pop" && data && data.ticket && ringsHere) this.showPop(data.ticket, data.event, data.caller_flag);
    if ((type === "ticket" || type === "screen_pop") && data && data.ticket) this.follow(data.ticket);
    if (type === "call" && data && data.call) {
      this.info[data.call.linkedid] = { ...data.call, state: data.state };
    }
    if (type === "dropped") this.inbox.refresh();
    if (type === "call") this.queue.refresh();
    if (type !== "dropped") this.inbox.later();
    this.refreshCalls();
  }

  // ---- the page ----

  render() {
    this.state = el("span", { id: "call-state", class: "state" }, "空闲");
    this.number = el("div", { id: "call-number", class: "call-number" }, "—");
    this.clock = el("div", { id: "call-duration", class: "call-duration" }, "00:00");
    this.callId = el("small", { id: "call-id" });
    this.popCard = el("section", { id: "pop", class: "card", hidden: true });
    this.steps = el("ol", { id: "progress-steps", class: "steps" });
    this.progressText = el("p", { id: "progress-text" }, "暂无转接");
    this.failure = el("p", { id: "progress-failure", class: "failure", role: "alert" });
    this.returned = el("p", { id: "progress-return", class: "failure", role: "alert" });
    this.outcome = el("p", { id: "progress-outcome" });
    this.buttons = [];
    this.targets().forEach((target, i) => {
      this.buttons.push(el("button", { type: "button", class: "transfer", dataset: { target },
        onclick: () => this.transfer(target) }, `转${target}`, i + 1 < CONSULT_KEY && el("kbd", {}, `Alt+${i + 1}`)));
    });
    this.buttons.push(el("button", { type: "button", id: "threeway", class: "secondary",
      onclick: () => this.threeway() }, "三方通话", el("kbd", {}, `Alt+${THREEWAY_KEY}`)));
    this.buttons.push(el("button", { type: "button", id: "consult", class: "secondary",
      onclick: () => this.consult() }, "转接咨询", el("kbd", {}, `Alt+${CONSULT_KEY}`)));
    this.returnReason = el("select", { id: "return-reason" }, RETURN_REASONS.map((r) => el("option", { value: r }, r)));
    this.returnText = el("input", { id: "return-text", maxlength: 500, placeholder: "补充说明（可选）" });
    this.returnButton = el("button", { type: "button", id: "return", class: "secondary",
      onclick: () => this.giveBack() }, "退回来源平台", el("kbd", {}, `Alt+${RETURN_KEY}`));
    this.returnBox = el("div", { id: "return-box", class: "actions", hidden: true }, this.returnReason,
      this.returnText, this.returnButton);
    this.saved = el("span", { id: "draft-state", class: "hint" }, "");
    fill(this.root, el("div", { class: "grid" },
      el("div", {},
        el("section", { id: "call", class: "card" }, el("h2", {}, "当前来电 ", this.state),
          this.number, this.clock, this.callId, this.flagBox.render()),
        this.popCard,
        el("section", { id: "progress", class: "card" }, el("h2", {}, "转接进度"), this.steps, this.progressText,
          this.outcome, this.failure, this.returned)),
      el("div", {}, this.queue.render(), this.form())), this.inbox.render(), this.referral.render());
    this.queue.refresh();
    this.renderCall();
    this.renderProgress();
  }

  form() {
    this.inputs = {};
    this.errors = {};
    const field = (name, label, input) => {
      this.inputs[name] = input;
      this.errors[name] = el("div", { class: "field-error", dataset: { errorFor: name } });
      input.addEventListener("input", () => this.schedule());
      input.addEventListener("change", () => this.schedule());
      return el("label", {}, label, input, this.errors[name]);
    };
    const section = el("section", { id: "ticket-form", class: "card" },
      el("h2", {}, "联动单 ", this.saved),
      field("category", "类别", el("select", { id: "f-category" }, el("option", { value: "" }, "请选择"))),
      field("title", "标题", el("input", { id: "f-title", maxlength: 200 })),
      field("content", "诉求内容", el("textarea", { id: "f-content", maxlength: 5000 })), this.advice.render(),
      field("address", "地址", el("input", { id: "f-address", maxlength: 500 })),
      field("division", "行政区划", el("select", { id: "f-division" }, el("option", { value: "" }, "请选择"))),
      field("caller_name", "来电人姓名", el("input", { id: "f-caller-name", maxlength: 100 })),
      field("officer_contact", "出警民警联系方式（110 处警后转办时填写）",
        el("input", { id: "f-officer-contact", maxlength: 200 })),
      field("urgency", "紧急程度", el("select", { id: "f-urgency" },
        URGENCY.map(([value, name]) => el("option", { value }, name)))),
      el("div", { class: "actions" }, this.buttons), this.returnBox);
    const advise = () => this.advice.schedule(this.inputs.content.value, this.inputs.category.value);
    this.inputs.content.addEventListener("input", advise);
    this.inputs.category.addEventListener("change", advise);
    return section;
  }

  fillPicks(c) {
    for (const item of c.categories) this.inputs.category.append(el("option", { value: item.key }, item.name));
    for (const item of c.divisions) {
      this.inputs.division.append(el("option", { value: item.code }, `${item.name}（${item.code}）`));
    }
  }

  // ---- the call ----

  async refreshCalls() {
    try {
      const data = await api("GET", `/v1/calls?agent=${encodeURIComponent(this.s.agent)}`);
      this.setCall((data.items || [])[0] || null);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) location.reload();
    }
  }

  setCall(call) {
    if (call && !this.seen[call.linkedid]) this.seen[call.linkedid] = Date.now();
    const ended = call && this.info[call.linkedid] && this.info[call.linkedid].state === "ended";
    this.call = ended ? null : call;
    if (this.call && this.formCall && this.formCall !== this.call.linkedid) this.clearForm();
    if (this.call) this.formCall = this.call.linkedid;
    this.renderCall();
  }

  renderCall() {
    const call = this.call;
    const info = (call && this.info[call.linkedid]) || {};
    let state = "idle";
    if (call) state = call.transferring ? "transferring" : call.bridged || info.state === "answered" ? "answered" : "ringing";
    this.state.className = `state ${state}`;
    this.state.dataset.state = state;
    fill(this.state, { idle: "空闲", ringing: "振铃中", answered: "通话中", transferring: "转接中" }[state]);
    const popNumber = this.pop && call && this.pop.shownAt >= (this.seen[call.linkedid] || 0) - 10000
      ? this.pop.ticket.caller_number : "";
    fill(this.number, call ? info.caller_number || call.caller_number || popNumber || "号码未知" : "—");
    this.flagBox.show(call ? info.caller_number || call.caller_number || popNumber : "",
      info.caller_flag || (call && call.caller_flag));
    const ticketId = info.ticket_id || (call && call.ticket_id); // the stream's call message names it first
    fill(this.callId, call ? `通话 ${call.linkedid}${ticketId ? ` · 联动单 ${ticketId}` : ""}` : "");
    for (const b of this.buttons) b.disabled = !call;
    this.returnBox.hidden = !(call && call.received); // only a linked call that came here can go back
    this.tick();
  }

  tick() {
    const call = this.call;
    if (!call) {
      fill(this.clock, "00:00");
      return;
    }
    const info = this.info[call.linkedid] || {};
    const startedAt = info.started_at || call.started_at; // epoch seconds, from the stream or GET /v1/calls
    const start = startedAt ? startedAt * 1000 : this.seen[call.linkedid] || Date.now();
    fill(this.clock, duration(Date.now() - start));
  }

  // ---- the draft ----

  values() {
    const out = {};
    for (const name of DRAFT_FIELDS) out[name] = this.inputs[name].value.trim();
    return out;
  }

  clearForm() {
    for (const name of DRAFT_FIELDS) this.inputs[name].value = "";
    fill(this.saved);
    this.advice.clear();
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { this.saving = this.save(); }, SAVE_DELAY);
  }

  async flush() {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      this.saving = this.save();
    }
    await this.saving;
  }

  async save() {
    this.timer = null;
    if (!this.call) {
      fill(this.saved, "（无来电，暂未保存）");
      return;
    }
    for (const e of Object.values(this.errors)) fill(e);
    try {
      await api("PUT", `/v1/calls/${encodeURIComponent(this.call.linkedid)}/draft`, this.values());
      this.saved.dataset.saved = String(Date.now());
      fill(this.saved, `已自动保存 ${clock()}`);
    } catch (error) {
      const target = this.errors[(error.field || "").replace(/^draft\./, "")];
      if (target) fill(target, error.message);
      fill(this.saved, `保存失败：${error.message}`);
    }
  }

  // ---- the buttons ----

  onKey(event) {
    if (!event.altKey || event.ctrlKey || event.metaKey || !/^Digit[0-9]$/.test(event.code)) return;
    const n = Number(event.code.slice(5));
    const targets = this.targets();
    if (n === RETURN_KEY) this.giveBack();
    else if (n === THREEWAY_KEY) this.threeway();
    else if (n === CONSULT_KEY) this.consult();
    else if (n >= 1 && n < CONSULT_KEY && n <= targets.length) this.transfer(targets[n - 1]);
    else return;
    event.preventDefault();
  }

  async transfer(target) {
    if (!this.call) return;
    await this.flush();
    await this.act(`/v1/calls/${encodeURIComponent(this.call.linkedid)}/transfer`, { target, agent: this.s.agent },
      target);
  }

  async threeway() {
    if (!this.call) return;
    await this.flush();
    await this.act(`/v1/calls/${encodeURIComponent(this.call.linkedid)}/threeway`, { agent: this.s.agent },
      "三方通话");
  }

  async consult() {
    if (!this.call) return;
    await this.flush();
    await this.act(`/v1/calls/${encodeURIComponent(this.call.linkedid)}/consult`, { agent: this.s.agent },
      "转接咨询");
  }

  async giveBack() {
    if (!this.call || !this.call.received) return;
    const extra = this.returnText.value.trim();
    const why = extra ? `${this.returnReason.value}：${extra}` : this.returnReason.value;
    await this.act(`/v1/calls/${encodeURIComponent(this.call.linkedid)}/return`, { agent: this.s.agent, reason: why },
      "退回");
  }

  async act(path, body, label) {
    fill(this.failure);
    try {
      const answer = await api("POST", path, body);
      this.tracked = { id: answer.ticket_id, label, history: [], status: answer.status || "created" };
      this.renderProgress();
      this.refreshCalls();
    } catch (error) {
      fill(this.failure, `${label}未能发起：${error.message}`);
    }
  }

  // ---- progress and the pop ----

  follow(ticket) {
    const mine = ticket.source && ticket.source.site === this.s.site && ticket.agent_id === this.s.agent;
    const onMyCall = this.call && this.call.ticket_id === ticket.id; // a returned caller another agent answered
    if (!mine && !onMyCall) return;
    if (!this.tracked || this.tracked.id !== ticket.id) {
      // a ticket of this agent's that the page did not start: the phone's key was pressed
      // (a live return of this agent's transfer is shown whatever the page saw before: the caller is coming back)
      const comingBack = ticket.status === "returned" && (ticket.history || []).some((e) => e.type === "returned"
        && e.payload && e.payload.with_caller);
      if (ticket.status !== "created" && ticket.status !== "delivered" && !onMyCall && !comingBack) return;
      this.tracked = { id: ticket.id, label: (ticket.target && ticket.target.site) || "", history: [] };
      fill(this.failure);
    }
    this.tracked.history = ticket.history || [];
    this.tracked.status = ticket.status;
    this.tracked.mode = ticket.mode;
    this.tracked.signedBy = ticket.signed_for_by;
    this.tracked.target = ticket.target && ticket.target.site;
    this.renderProgress();
  }

  renderProgress() {
    const t = this.tracked;
    const done = new Set(((t && t.history) || []).map((e) => e.type));
    fill(this.steps, STEPS.map((step) => el("li", { class: done.has(step) ? "done" : "", dataset: { step } },
      EVENT[step])));
    if (!t) return;
    this.steps.dataset.ticketId = t.id;
    fill(this.progressText, `联动单 ${t.id} · ${t.label} · ${STATUS[t.status] || t.status || ""}`);
    this.renderOutcome(t);
    const failed = [...t.history].reverse().find((e) => e.type === "transfer_failed");
    if (failed) {
      fill(this.failure, `转接失败：${reason(failed.payload)}，来电已回到您这里`);
    }
    const back = [...t.history].reverse().find((e) => e.type === "returned");
    const here = t.history.length && t.history[0].actor && t.history[0].actor.site === this.s.site;
    fill(this.returned, back && here ? `退回：${back.payload.reason || ""}${back.payload.with_caller
      ? "，来电已回到您这里" : ""}` : "");
  }

  renderOutcome(t) {
    // the attended transfer's end: Asterisk completed it when this agent hung up, or it was called off
    const last = [...t.history].reverse().find((e) => e.type === "transferred" || e.type === "cancelled");
    const p = (last && last.payload) || {};
    let outcome = "";
    let text = "";
    if (last && last.type === "transferred" && p.mode === "attended") {
      outcome = p.result || "completed";
      text = `咨询转接已完成：来电已转给 ${t.target || "对方平台"}${t.signedBy ? ` 坐席 ${t.signedBy}` : ""}`;
    } else if (last && last.type === "cancelled" && t.mode === "attended") {
      outcome = "cancelled";
      text = "咨询已取消，来电已回到您这里";
    }
    if (outcome) this.outcome.dataset.outcome = outcome;
    else delete this.outcome.dataset.outcome;
    fill(this.outcome, text);
  }

  showPop(ticket, event, flag) {
    const shownAt = performance.timeOrigin + performance.now();
    this.pop = { ticket, shownAt };
    const row = (label, value, id) => [el("dt", {}, label), el("dd", { dataset: { field: id } }, value || "—")];
    fill(this.popCard,
      el("h2", {}, "来电联动单 ", el("span", { class: "ticket-id" }, ticket.id)),
      el("p", { class: "hint" }, `来自 ${ticket.source ? ticket.source.site : "?"} · 振铃于 ${when(event && event.at)}`),
      flagNote(flag, "pop-flag"),
      el("dl", {},
        row("类别", categoryName(ticket.category), "category"),
        row("来电号码", ticket.caller_number, "caller_number"),
        row("来电人", ticket.caller_name, "caller_name"),
        row("地址", ticket.address, "address"),
        row("标题", ticket.title, "title"),
        ticket.officer_contact ? row("出警民警", ticket.officer_contact, "officer_contact") : null),
      el("div", { class: "content", dataset: { field: "content" } }, ticket.content || "（无内容）"));
    this.popCard.dataset.ticketId = ticket.id;
    this.popCard.dataset.shownAt = String(shownAt);
    this.popCard.hidden = false;
    this.renderCall();
  }
}
