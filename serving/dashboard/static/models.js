import { API, api, connectLive, credits, h, loadModels, modelPath, num, setupChrome, showError, when } from "./api.js";

setupChrome();
const body = document.querySelector("#models-table tbody");
const state = new Map();
const REFRESH_MS = 15000;

function price(m, which) {
  const p = m.pricing || {};
  const key = Object.keys(p).find((k) => k.startsWith(which));
  return key === undefined ? "—" : credits(p[key]);
}

function badge(status) {
  const cls = { ready: "ok", loading: "warn", unavailable: "bad" }[status] || "";
  return h("span", { class: "badge " + cls }, status || "unknown");
}

function render() {
  body.replaceChildren();
  for (const [id, s] of state) {
    body.append(h("tr", { "data-model": id },
      h("th", { scope: "row", "data-label": "Model" }, id),
      h("td", { "data-label": "Health", class: "health" }, badge(s.status)),
      h("td", { "data-label": "Input / Mtok", class: "num" }, price(s.info, "input")),
      h("td", { "data-label": "Output / Mtok", class: "num" }, price(s.info, "output")),
      h("td", { "data-label": "Context", class: "num" }, num(s.info.context_length)),
      h("td", { "data-label": "Queue", class: "num queue" }, num(s.queue_depth, 1)),
      h("td", { "data-label": "TTFT", class: "num" }, s.ttft_ms == null ? "—" : num(s.ttft_ms, 0) + " ms")));
  }
  if (!state.size) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No models in the catalog.")));
  document.getElementById("models-updated").textContent = "last change " + when(new Date().toISOString());
}

async function pollHealth() {
  await Promise.all([...state.keys()].map(async (id) => {
    try {
      const rv = await api("GET", `${API}/models/${modelPath(id)}/health`);
      state.get(id).status = rv.status;
    } catch (e) { state.get(id).status = "unavailable"; }
  }));
  render();
}

const early = new Map(); // live states that arrived before the catalog did

function apply(m) {
  const s = state.get(m.model);
  if (!s) { early.set(m.model, m); return; }
  Object.assign(s, { status: m.status, queue_depth: m.queue_depth, ttft_ms: m.ttft_ms });
}

(async () => {
  try {
    for (const m of await loadModels()) state.set(m.id, { info: m, status: null, queue_depth: null, ttft_ms: null });
    early.forEach(apply);
    await pollHealth();
    setInterval(() => pollHealth().catch(showError), REFRESH_MS);
  } catch (e) { showError(e); }
})();

connectLive({
  hello: (ev) => { ev.models.forEach(apply); render(); },
  model: (ev) => { apply(ev.data); render(); },
});
