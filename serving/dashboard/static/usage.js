import { API, api, apiAll, connectLive, credits, flash, h, loadModels, num, setupChrome, showError, when } from "./api.js";
import { bars, columns } from "./charts.js";

setupChrome();
const MAX_ROWS = 2000; // charts summarise at most this many of the newest requests
const PAGE = 100;
const RANGES = { "1h": [3600e3, 300e3], "24h": [86400e3, 3600e3], "7d": [7 * 86400e3, 6 * 3600e3], "30d": [30 * 86400e3, 86400e3] };
const form = document.getElementById("filters");
const body = document.querySelector("#usage-table tbody");
const more = document.getElementById("usage-more");
let filter = {};
let rows = [];
let shown = PAGE;
let cursor = null;
let hasMore = false;
let keyNames = {};
const rated = {}; // request id -> 1 | -1, rated on this page
const sending = new Set(); // request ids whose rating is on its way

// thumbs up / down on a request: POST /feedback with its id (the X-Request-Id it was answered with)
function feedback(r) {
  if (r.status !== "success") return "";
  const button = (rating, label, symbol) => h("button", {
    type: "button", class: "secondary small" + (rated[r.id] === rating ? " chosen" : ""),
    "data-rate": String(rating), "data-request": r.id, "aria-label": label,
    "aria-pressed": String(rated[r.id] === rating), title: label, disabled: sending.has(r.id),
  }, symbol);
  return [button(1, "Good answer", "👍"), button(-1, "Bad answer", "👎")];
}

function currentFilter() {
  const range = form.range.value;
  let start, end, bucket;
  if (range === "custom") {
    start = form.querySelector("#f-start").value ? new Date(form.querySelector("#f-start").value + "Z") : new Date(Date.now() - 86400e3);
    end = form.querySelector("#f-end").value ? new Date(form.querySelector("#f-end").value + "Z") : null;
    bucket = Math.max(60e3, ((end || new Date()) - start) / 24);
  } else {
    start = new Date(Date.now() - RANGES[range][0]);
    end = null;
    bucket = RANGES[range][1];
  }
  return { start, end, bucket, model: form.model.value, key_id: form.key_id.value };
}

function query(f, after) {
  const q = new URLSearchParams({ limit: String(PAGE), start: f.start.toISOString() });
  if (f.end) q.set("end", f.end.toISOString());
  if (f.model) q.set("model", f.model);
  if (f.key_id) q.set("key_id", f.key_id);
  if (after) q.set("cursor", after);
  return q;
}

function matches(r) {
  const t = new Date(r.created_at);
  if (t < filter.start || (filter.end && t >= filter.end)) return false;
  if (filter.model && r.requested_model !== filter.model && r.served_model !== filter.model) return false;
  return !filter.key_id || r.key_id === filter.key_id;
}

function routing(r) {
  if (!r.routing_task) return h("span", { class: "muted" }, "direct");
  const conf = r.routing_confidence == null ? "" : ` · ${(r.routing_confidence * 100).toFixed(0)}%`;
  return `${r.routing_task} · ${r.routing_complexity || "?"}${conf}`;
}

function row(r, fresh) {
  const model = r.served_model && r.served_model !== r.requested_model ? `${r.requested_model} → ${r.served_model}` : r.requested_model;
  return h("tr", { "data-usage": r.id, class: fresh ? "fresh" : "" },
    h("td", { "data-label": "Time" }, when(r.created_at)),
    h("td", { "data-label": "Key" }, keyNames[r.key_id] || (r.key_id ? r.key_id.slice(0, 10) : "session")),
    h("td", { "data-label": "Model" }, model),
    h("td", { "data-label": "Routing" }, routing(r)),
    h("td", { "data-label": "Tokens", class: "num" }, `${num(r.prompt_tokens)} + ${num(r.completion_tokens)}`),
    h("td", { "data-label": "Cost", class: "num cost" }, credits(r.cost_micros)),
    h("td", { "data-label": "Latency", class: "num" }, r.latency_ms == null ? "—" : `${num(r.latency_ms)} ms`),
    h("td", { "data-label": "Status" }, h("span", { class: "badge " + (r.status === "success" ? "ok" : "bad"), title: r.error_type || "" }, r.status)),
    h("td", { "data-label": "Rate the answer", class: "actions" }, feedback(r)));
}

function renderTable(freshId) {
  body.replaceChildren(...rows.slice(0, shown).map((r) => row(r, r.id === freshId)));
  if (!rows.length) body.append(h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No requests match these filters.")));
  more.hidden = !(rows.length > shown || hasMore);
}

function tally(key, value) {
  const out = new Map();
  for (const r of rows) {
    const k = key(r);
    if (k !== null) out.set(k, (out.get(k) || 0) + value(r));
  }
  return [...out.entries()].sort((a, b) => b[1] - a[1]);
}

function renderCharts() {
  const end = filter.end ? filter.end.getTime() : Date.now();
  const n = Math.max(1, Math.ceil((end - filter.start.getTime()) / filter.bucket));
  const buckets = Array.from({ length: n }, (_, i) => {
    const t = new Date(filter.start.getTime() + i * filter.bucket);
    const label = t.toISOString().replace("T", " ").slice(0, 16);
    return { label, short: filter.bucket >= 86400e3 ? label.slice(5, 10) : label.slice(11, 16), spend: 0, tokens: 0, lat: 0, latN: 0 };
  });
  for (const r of rows) {
    const i = Math.floor((new Date(r.created_at) - filter.start) / filter.bucket);
    const b = buckets[Math.min(Math.max(i, 0), n - 1)];
    b.spend += r.cost_micros;
    b.tokens += r.total_tokens;
    if (r.latency_ms != null) { b.lat += r.latency_ms; b.latN += 1; }
  }
  const pick = (f) => buckets.map((b) => ({ label: b.label, short: b.short, value: f(b) }));
  columns(document.getElementById("chart-spend"), pick((b) => b.spend), credits, "Spend over time");
  columns(document.getElementById("chart-tokens"), pick((b) => b.tokens), (v) => num(v), "Tokens over time");
  columns(document.getElementById("chart-latency"), pick((b) => (b.latN ? b.lat / b.latN : 0)), (v) => num(v) + " ms", "Mean latency over time");
  bars(document.getElementById("chart-tasks"), tally((r) => r.routing_task || "direct (no routing)", () => 1), (v) => num(v), "Requests per task type");
  bars(document.getElementById("chart-models"), tally((r) => r.served_model || r.requested_model, () => 1), (v) => num(v), "Requests per served model");
  const lat = rows.filter((r) => r.latency_ms != null);
  const ttft = rows.filter((r) => r.ttft_ms != null);
  const stat = (label, value) => [h("div", {}, h("dt", {}, label), h("dd", {}, value))];
  document.getElementById("summary").replaceChildren(
    ...stat("Requests", num(rows.length)),
    ...stat("Spend", credits(rows.reduce((s, r) => s + r.cost_micros, 0))),
    ...stat("Tokens", num(rows.reduce((s, r) => s + r.total_tokens, 0))),
    ...stat("Mean latency", lat.length ? num(lat.reduce((s, r) => s + r.latency_ms, 0) / lat.length) + " ms" : "—"),
    ...stat("Mean time to first token", ttft.length ? num(ttft.reduce((s, r) => s + r.ttft_ms, 0) / ttft.length) + " ms" : "—"),
    ...stat("Errors", num(rows.filter((r) => r.status !== "success").length)));
  document.getElementById("sample-note").textContent = hasMore
    ? `Charts and summary cover the newest ${num(rows.length)} requests of this range.` : "";
}

async function fetchMore(limitRows) {
  do {
    const page = await api("GET", `${API}/usage?${query(filter, cursor)}`);
    rows.push(...page.data);
    cursor = page.next_cursor;
    hasMore = page.has_more;
  } while (hasMore && rows.length < limitRows);
}

async function reload() {
  filter = currentFilter();
  rows = []; cursor = null; hasMore = false; shown = PAGE;
  try {
    await fetchMore(MAX_ROWS);
    renderTable();
    renderCharts();
  } catch (e) { showError(e); }
}

body.addEventListener("click", async (ev) => {
  const b = ev.target.closest("[data-rate]");
  if (!b) return;
  const id = b.dataset.request;
  const rating = Number(b.dataset.rate);
  // one record per rating: a double click, or a click on the rating already recorded, sends nothing
  if (sending.has(id) || rated[id] === rating) return;
  sending.add(id);
  b.closest("td").querySelectorAll("[data-rate]").forEach((x) => { x.disabled = true; });
  try {
    await api("POST", `${API}/feedback`, { request_id: id, rating });
    rated[id] = rating;
    flash("Thanks: your rating was recorded.", "info");
  } catch (e) { showError(e); }
  sending.delete(id);
  renderTable();
});

form.range.addEventListener("change", () => {
  form.querySelectorAll(".custom").forEach((n) => { n.hidden = form.range.value !== "custom"; });
});
form.addEventListener("submit", (ev) => { ev.preventDefault(); reload(); });
more.addEventListener("click", async () => {
  shown += PAGE;
  try { if (rows.length < shown && hasMore) await fetchMore(shown); } catch (e) { showError(e); }
  renderTable();
});

(async () => {
  try {
    const [models, keys] = await Promise.all([loadModels(), apiAll(API + "/keys")]);
    for (const m of models) form.model.append(h("option", { value: m.id }, m.id));
    for (const k of keys) {
      keyNames[k.id] = k.name;
      form.key_id.append(h("option", { value: k.id }, `${k.name} (${k.prefix}…)`));
    }
  } catch (e) { showError(e); }
  await reload();
})();

connectLive({
  usage: (ev) => {
    const r = ev.data;
    if (!matches(r) || rows.some((x) => x.id === r.id)) return;
    rows.unshift(r);
    renderTable(r.id);
    renderCharts();
  },
});
