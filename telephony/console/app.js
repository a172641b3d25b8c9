// The console's entry: sign-in, then the agent's or the supervisor's view fed by the event stream.

import { ApiError, api, clearSession, health, saveSession, session } from "./api.js";
import { $, fill } from "./dom.js";
import { openStream } from "./sse.js";
import { AgentView } from "./agent.js";
import { SupervisorView } from "./supervisor.js";

const NOTICE = "linkage.notice";
const NO_TICKET = "0".repeat(26); // a well-formed id no ticket has: asks the server whose token this is

async function whose(token, agent) {
  // There is no "who am I" route yet: a transition on a ticket that does not exist is refused with 403 when
  // the token belongs to another agent and with 404 otherwise, and writes nothing either way.
  try {
    await api("POST", `/v1/tickets/${NO_TICKET}/transitions`, { type: "accepted", agent }, token);
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) return false;
    if (error instanceof ApiError && error.status === 404) return true;
    throw error;
  }
  return true;
}

async function signIn(agent, token) {
  await api("GET", "/v1/calls", undefined, token); // 401 for a wrong token
  let role = "agent";
  if (!agent) {
    try {
      await api("GET", "/v1/dead-letters", undefined, token);
      role = "supervisor";
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) throw new Error("这是坐席本人的令牌，请填写工号");
      throw error;
    }
  } else if (!(await whose(token, agent))) {
    throw new Error("工号与令牌不符");
  }
  const site = await health();
  const value = { token, agent, role, site: site.site || "", platform: site.platform || "" };
  saveSession(value);
  return value;
}

function message(error) {
  if (error instanceof ApiError && error.status === 401) return "令牌错误或已失效，请重新输入";
  if (error instanceof ApiError && error.status === 429) return "请求过于频繁，请稍后再试";
  if (error instanceof TypeError) return "无法连接控制器";
  return error.message || String(error);
}

let stop = () => {};

function start(s) {
  $("#sign-in").hidden = true;
  $("#sign-out").hidden = false;
  fill($("#whoami"), s.role === "supervisor" ? `班长 · ${s.site}` : `坐席 ${s.agent} · ${s.site}`);
  const view = s.role === "supervisor" ? new SupervisorView($("#supervisor-view"), s)
    : new AgentView($("#agent-view"), s);
  view.show();
  const pill = $("#stream-state");
  // the agent's own stream (a site token signed in for an agent would otherwise get the whole site's)
  const path = s.role === "supervisor" ? "/v1/stream" : `/v1/stream?agent=${encodeURIComponent(s.agent)}`;
  stop = openStream(path, s.token, {
    message: (m) => {
      let data = null;
      try {
        data = JSON.parse(m.data);
      } catch {
        data = m.data; // `dropped` carries a count, not JSON
      }
      view.onStream(m.type, data);
    },
    state: (state) => {
      document.body.dataset.stream = state;
      pill.className = `pill ${state}`;
      fill(pill, { open: "实时连接正常", retrying: "重新连接中…", refused: "实时推送被拒绝" }[state] || state);
      if (state === "open") view.refresh();
      if (state === "refused") signOut("登录已失效，请重新登录");
    },
  });
}

function signOut(why = "") {
  stop();
  clearSession();
  if (why) sessionStorage.setItem(NOTICE, why);
  location.reload(); // drops the view's timers and everything it held
}

function boot() {
  const form = $("#sign-in-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const agent = $("#sign-in-agent").value.trim();
    const token = $("#sign-in-token").value.trim();
    fill($("#sign-in-error"));
    $("#sign-in-submit").disabled = true;
    try {
      const s = await signIn(agent, token);
      $("#sign-in-token").value = "";
      start(s);
    } catch (error) {
      fill($("#sign-in-error"), message(error));
    } finally {
      $("#sign-in-submit").disabled = false;
    }
  });
  $("#sign-out").addEventListener("click", () => signOut());
  fill($("#sign-in-error"), sessionStorage.getItem(NOTICE) || "");
  sessionStorage.removeItem(NOTICE);
  const s = session();
  if (s && s.token) start(s);
}

boot();
