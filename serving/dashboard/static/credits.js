import { API, api, connectLive, credits, h, setupChrome, showError, when } from "./api.js";

setupChrome();
const KINDS = { deposit: "Deposit", reservation: "Reserved", release: "Released", deduction: "Charged" };
const body = document.querySelector("#tx-table tbody");
const more = document.getElementById("tx-more");
let cursor = null;
let seen = new Set();

function showBalance(c) {
  document.getElementById("balance").textContent = credits(c.available_micros);
  document.getElementById("balance-detail").textContent =
    `Balance ${credits(c.balance_micros)}, of which ${credits(c.reserved_micros)} is held by requests in flight.`;
}

function row(tx, fresh = false) {
  seen.add(tx.id);
  return h("tr", { "data-tx": tx.id, class: fresh ? "fresh" : "" },
    h("td", { "data-label": "Time" }, when(tx.created_at)),
    h("td", { "data-label": "Kind" }, KINDS[tx.kind] || tx.kind),
    h("td", { "data-label": "Amount", class: "num " + (tx.amount_micros < 0 ? "neg" : "pos") }, credits(tx.amount_micros)),
    h("td", { "data-label": "Description" }, tx.description || ""));
}

async function loadPage() {
  const q = new URLSearchParams({ limit: "50" });
  if (cursor) q.set("cursor", cursor);
  const page = await api("GET", `${API}/credits/transactions?${q}`);
  body.querySelectorAll("tr:not([data-tx])").forEach((n) => n.remove());
  for (const tx of page.data) if (!seen.has(tx.id)) body.append(row(tx));
  if (!body.children.length) body.append(h("tr", { class: "empty" }, h("td", { colspan: 4, class: "muted" }, "No transactions yet.")));
  cursor = page.next_cursor;
  more.hidden = !page.has_more;
}

more.addEventListener("click", () => loadPage().catch(showError));

(async () => {
  try {
    showBalance(await api("GET", API + "/credits"));
    await loadPage();
  } catch (e) { showError(e); }
})();

connectLive({
  hello: (ev) => showBalance(ev.credits),
  balance: (ev) => {
    showBalance(ev.data);
    body.querySelector("tr.empty")?.remove();
    for (const tx of ev.transactions) if (!seen.has(tx.id)) body.prepend(row(tx, true));
  },
});
