import { API, connectLive, flash, h, loadModels, messageFor, num, request, setupChrome, showError } from "./api.js";

setupChrome();
const form = document.getElementById("chat-form");
const out = document.getElementById("p-output");
const status = document.getElementById("p-status");
const usage = document.getElementById("p-usage");
const send = document.getElementById("p-send");
const stop = document.getElementById("p-stop");
let controller = null;

function showRouting(r) {
  const rows = [
    ["Task", r.task], ["Complexity", r.complexity],
    ["Confidence", r.confidence == null ? "—" : `${(r.confidence * 100).toFixed(1)}%`],
    ["Chosen model", r.model], ["Optimize", r.optimize],
    ["Routing time", r.routing_time_ms == null ? "—" : `${num(r.routing_time_ms, 2)} ms`],
    ["Router", r.router_version], ["Fell back from", r.fallback_from],
  ].filter(([, v]) => v !== undefined && v !== null);
  document.getElementById("p-routing").replaceChildren(...rows.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, String(v)))));
  const cands = r.candidates || r.scores;
  const box = document.getElementById("p-candidates");
  box.replaceChildren();
  if (cands && typeof cands === "object") {
    const entries = Array.isArray(cands) ? cands.map((c) => [c.model, c]) : Object.entries(cands);
    entries.sort((a, b) => (b[1].score ?? 0) - (a[1].score ?? 0));
    const f = (v, d) => (v == null ? "—" : num(v, d));
    box.append(h("div", { class: "tablewrap" }, h("table", {},
      h("caption", {}, "Candidates"),
      h("thead", {}, h("tr", {}, ["Model", "Score", "Quality", "Cost", "Latency"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, entries.map(([m, c]) => h("tr", { class: m === r.model ? "chosen" : "" },
        h("th", { scope: "row" }, m), h("td", { class: "num" }, f(c.score, 3)), h("td", { class: "num" }, f(c.quality, 3)),
        h("td", { class: "num" }, c.cost == null ? "—" : "$" + Number(c.cost).toPrecision(3)), h("td", { class: "num" }, c.latency_ms == null ? "—" : f(c.latency_ms) + " ms")))))));
  }
}

function body() {
  const messages = [];
  if (form.system.value.trim()) messages.push({ role: "system", content: form.system.value.trim() });
  messages.push({ role: "user", content: form.message.value });
  const b = { model: form.model.value, messages, stream: true, stream_options: { include_usage: true } };
  const max = parseInt(document.getElementById("p-max").value, 10);
  const temp = parseFloat(document.getElementById("p-temp").value);
  if (max > 0) b.max_tokens = max;
  if (!Number.isNaN(temp)) b.temperature = temp;
  if (b.model === "auto" && form.optimize.value) b.routing = { optimize: form.optimize.value };
  return b;
}

// Parse `data:` frames of the SSE body as they arrive.
async function* frames(reader) {
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data) yield data;
    }
  }
}

async function run() {
  flash("");
  if (!form.message.value.trim()) { flash("Write a message first."); form.message.focus(); return; }
  out.textContent = "";
  usage.textContent = "";
  status.textContent = "Sending…";
  send.disabled = true;
  stop.disabled = false;
  controller = new AbortController();
  const started = performance.now();
  let first = null;
  try {
    const rv = await request("POST", API + "/chat/completions", body(), { signal: controller.signal, headers: { Accept: "text/event-stream" } });
    if (!rv.ok) {
      let data = null;
      try { data = await rv.json(); } catch { data = null; }
      status.textContent = "";
      flash(messageFor(rv.status, data));
      return;
    }
    status.textContent = "Streaming…";
    for await (const data of frames(rv.body.getReader())) {
      if (data === "[DONE]") break;
      const ev = JSON.parse(data);
      if (ev.error) { flash("The answer stopped early: " + messageFor(0, ev)); continue; }
      if (ev.object === "routing") { showRouting(ev); continue; }
      for (const c of ev.choices || []) {
        const text = c.delta && c.delta.content;
        if (text) {
          if (first === null) first = performance.now() - started;
          out.textContent += text;
        }
      }
      if (ev.usage) usage.textContent = `${num(ev.usage.prompt_tokens)} prompt + ${num(ev.usage.completion_tokens)} completion tokens · model ${ev.model}`;
    }
    const total = performance.now() - started;
    status.textContent = `Done in ${num(total)} ms` + (first === null ? "" : ` (first token after ${num(first)} ms)`) + ".";
  } catch (e) {
    if (e.name === "AbortError") status.textContent = "Stopped.";
    else { status.textContent = ""; showError(e); }
  } finally {
    send.disabled = false;
    stop.disabled = true;
    controller = null;
  }
}

form.addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
form.message.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(); }
});
stop.addEventListener("click", () => controller && controller.abort());

loadModels()
  .then((models) => models.forEach((m) => form.model.append(h("option", { value: m.id }, m.id))))
  .catch(showError);


connectLive({}); // the header balance follows what the playground spends
