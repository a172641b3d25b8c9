// The console's entry: sign-in, then the agent's or the supervisor's view fed by the event stream.

import { ApiError, api, clearSession, saveSession, session } from "./api.js";
import { $, fill } from "./dom.js";
import { openStream } from "./sse.js";
import { AgentView } from "./agent.js";
import { SupervisorView } from "./supervisor.js";

const NOTICE = "linkage.notice";

async function signIn(agent, token) {
  // GET /v1/whoami says whose token this is (401 for a wrong one) and what this site can transfer to.
  const who = await api("GET", "/v1/whoami", undefined, token);
  if (who.role === "agent" && agent && agent !== who.agent) throw new Error("工号与令牌不符");
  if (who.role === "supervisor" && agent && !(who.agents || []).includes(agent)) throw new Error("本站没有这个工号");
  // an agent's token acts as its agent; the site's token is the supervisor, or any agent whose id is typed
  const role = who.role === "agent" || agent ? "agent" : "supervisor";
  const value = { token, agent: who.role === "agent" ? who.agent : agent, role, site: who.site,
    platform: who.platform, targets: who.targets || [] };
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
