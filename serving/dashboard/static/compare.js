import { api, connectLive, h, setupChrome, showError } from "./api.js";

// Arena-style votes on side-by-side pairs: anonymised (model names shown only after the vote) and
// in a random order (pairs shuffled; each pair's A/B order was drawn when it was made, and the page
// swaps the sides once more at random, mapping the vote back).
setupChrome();
const TRAFFIC = "/api/v1/traffic";
let queue = [];
let current = null;
let swapped = false;
let total = 0;

function shuffle(xs) {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

function content(m) {
  if (typeof m.content === "string") return m.content;
  return JSON.stringify(m.content);
}

function show() {
  current = queue.shift() || null;
  document.getElementById("pair").hidden = !current;
  document.getElementById("no-pairs").hidden = !!current;
  if (!current) return;
  swapped = Math.random() < 0.5;
  const [left, right] = swapped ? ["b", "a"] : ["a", "b"];
  document.getElementById("pair-progress").textContent = `Pair ${total - queue.length} of ${total}`;
  document.getElementById("pair-messages").replaceChildren(
    ...current.messages.map((m) => h("li", { class: "msg " + m.role }, h("strong", {}, m.role + ": "), content(m))));
  document.getElementById("answer-a").textContent = current["answer_" + left];
  document.getElementById("answer-b").textContent = current["answer_" + right];
  document.getElementById("model-a").textContent = current["model_" + left];
  document.getElementById("model-b").textContent = current["model_" + right];
  document.querySelectorAll(".reveal").forEach((n) => { n.hidden = true; });
  document.querySelectorAll("[data-vote]").forEach((b) => { b.disabled = false; });
  document.getElementById("next-pair").hidden = true;
}

document.getElementById("vote-buttons").addEventListener("click", async (ev) => {
  const b = ev.target.closest("[data-vote]");
  if (!b || !current) return;
  const shown = b.dataset.vote;
  const winner = shown === "tie" || !swapped ? shown : (shown === "a" ? "b" : "a");
  document.querySelectorAll("[data-vote]").forEach((x) => { x.disabled = true; });
  try {
    await api("POST", `${TRAFFIC}/pairs/${encodeURIComponent(current.id)}/votes`, { winner });
    document.querySelectorAll(".reveal").forEach((n) => { n.hidden = false; });
    const next = document.getElementById("next-pair");
    next.hidden = false;
    next.focus();
  } catch (e) {
    document.querySelectorAll("[data-vote]").forEach((x) => { x.disabled = false; });
    showError(e);
  }
});

document.getElementById("next-pair").addEventListener("click", show);

(async () => {
  try {
    const page = await api("GET", `${TRAFFIC}/pairs?unvoted=true&limit=100`);
    queue = shuffle(page.data);
    total = queue.length;
  } catch (e) { showError(e); }
  show();
})();
connectLive({});
