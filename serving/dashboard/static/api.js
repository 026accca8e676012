// Shared helpers for the dashboard pages: the JSON API with the session cookie and CSRF token,
// readable error messages, formatting, a tiny element builder and the live event socket.
export const API = "/api/v1/inference";
const MICROS = Number(document.body.dataset.microsPerCredit || 1000000);

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)inferbase_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

export function loginUrl() {
  return "/dashboard/login?next=" + encodeURIComponent(location.pathname + location.search);
}

const STATUS_TEXT = {
  0: "Cannot reach the server. Check your connection and try again.",
  401: "Your session has ended. Please sign in again.",
  402: "Not enough credits for this request.",
  403: "This is not allowed.",
  404: "Not found.",
  429: "Too many requests. Wait a moment and try again.",
  502: "The model backend failed. It may be starting; try again shortly.",
};

export function messageFor(status, body) {
  const msg = body && body.error && body.error.message;
  return msg || STATUS_TEXT[status] || `The server answered with status ${status}.`;
}

export async function request(method, path, body, extra = {}) {
  const headers = { Accept: "application/json", ...(extra.headers || {}) };
  const opts = { method, credentials: "same-origin", headers, signal: extra.signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = csrfToken();
  try {
    return await fetch(path, opts);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, STATUS_TEXT[0]);
  }
}

// Every item of a paginated list (`has_more` / `next_cursor`), page after page.
export async function apiAll(path) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...page.data);
    cursor = page.has_more ? page.next_cursor : null;
  } while (cursor);
  return items;
}

export async function api(method, path, body) {
  const rv = await request(method, path, body);
  let data = null;
  if (rv.status !== 204) {
    try { data = await rv.json(); } catch { data = null; }
  }
  if (!rv.ok) {
    if (rv.status === 401 && !path.startsWith("/api/v1/auth/")) location.href = loginUrl();
    throw new ApiError(rv.status, messageFor(rv.status, data), data);
  }
  return data;
}

export function flash(message, kind = "error") {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.className = "flash " + kind;
  box.hidden = !message;
}

export function showError(e) {
  if (e && e.name === "AbortError") return;
  flash(e instanceof ApiError ? e.message : "Something went wrong: " + (e && e.message));
}

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function credits(micros) {
  if (micros === null || micros === undefined) return "—";
  const v = Number(micros) / MICROS;
  let s = v.toFixed(6).replace(/0{1,4}$/, "");
  if (s.endsWith(".")) s += "00";
  return (v < 0 ? "−$" : "$") + s.replace("-", "");
}

export function when(iso) {
  if (!iso) return "never";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function num(v, digits = 0) {
  if (v === null || v === undefined) return "—";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits });
}

export function modelPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

export async function loadModels() {
  const rv = await api("GET", API + "/models");
  return rv.data;
}

export function setupChrome() {
  const out = document.getElementById("logout");
  if (out) {
    out.addEventListener("click", async () => {
      try {
        await api("POST", "/api/v1/auth/logout");
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 401) return showError(e);
      }
      location.href = "/dashboard/login";
    });
  }
}

// The live event socket: reconnects with back-off, shows its state in the header.
export function connectLive(handlers) {
  const badge = document.getElementById("live");
  let delay = 1000;
  const state = (text, cls) => {
    if (!badge) return;
    badge.textContent = text;
    badge.className = "live " + cls;
  };
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/events`, ["inferbase.events.v1"]);
    ws.onopen = () => { delay = 1000; state("● live", "on"); };
    ws.onmessage = (msg) => {
      let ev;
      try { ev = JSON.parse(msg.data); } catch { return; }
      const bal = document.getElementById("hdr-balance");
      if (bal && (ev.type === "hello" || ev.type === "balance")) {
        const c = ev.type === "hello" ? ev.credits : ev.data;
        bal.textContent = credits(c.available_micros);
        bal.dataset.micros = c.available_micros;
      }
      const fn = handlers[ev.type];
      if (fn) fn(ev);
    };
    ws.onclose = (e) => {
      if (e.code === 4401) { location.href = loginUrl(); return; }
      state("reconnecting…", "off");
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 15000);
    };
  };
  open();
}
