// The controller's API from the page: the token the agent typed, kept in sessionStorage (gone when the tab
// closes), sent only as a bearer header. Never in a URL, never in a cookie, so no other site can ride it.

const KEY = "linkage.session";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.field = (this.body.details && this.body.details.field) || "";
  }
}

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function saveSession(value) {
  sessionStorage.setItem(KEY, JSON.stringify(value));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

export function authHeaders(token) {
  return { Authorization: `Bearer ${token}` };
}

export async function api(method, path, body, token = (session() || {}).token) {
  const headers = { Accept: "application/json", ...authHeaders(token) };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text.slice(0, 200) };
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export async function health() {
  const response = await fetch("/v1/health", { cache: "no-store", credentials: "omit" });
  return response.json();
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}
