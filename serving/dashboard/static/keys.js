import { API, api, apiAll, connectLive, flash, h, loadModels, setupChrome, showError, when, ApiError } from "./api.js";

setupChrome();
// the page renders the optimize modes (InferRoute's list) into its form: their labels come from there
const MODES = Object.fromEntries([...document.querySelectorAll("#key-mode option")].map((o) => [o.value, o.textContent]));
let models = [];
let keys = [];
let editing = null;
let revoking = null;

function poolBoxes(fieldset, prefix, checked = []) {
  fieldset.querySelectorAll(":scope > :not(legend)").forEach((n) => n.remove());
  if (!models.length) fieldset.append(h("p", { class: "muted" }, "No models in the catalog."));
  models.forEach((m, i) => {
    const id = `${prefix}-${i}`;
    fieldset.append(h("div", { class: "check" },
      h("input", { type: "checkbox", id, value: m.id, checked: checked.includes(m.id) }),
      h("label", { for: id }, m.id)));
  });
}

function chosen(fieldset) {
  return [...fieldset.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
}

// the form's percentage as the API's share (0-1); an empty field is 0 (off)
function captureRate(input) {
  const pct = Number(input.value || 0);
  if (!(pct >= 0 && pct <= 100)) throw new ApiError(400, "Capture is a percentage from 0 to 100.");
  return pct / 100;
}

function render() {
  const body = document.querySelector("#keys-table tbody");
  body.replaceChildren();
  if (!keys.length) {
    body.append(h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No keys yet: create one above.")));
    return;
  }
  for (const k of keys) {
    const actions = k.revoked ? "" : [
      h("button", { type: "button", class: "secondary small", "data-edit": k.id, "aria-label": `Edit ${k.name}` }, "Edit"),
      h("button", { type: "button", class: "danger small", "data-revoke": k.id, "aria-label": `Revoke ${k.name}` }, "Revoke"),
    ];
    body.append(h("tr", { "data-key": k.id, class: k.revoked ? "revoked" : "" },
      h("td", { "data-label": "Name" }, k.name),
      h("td", { "data-label": "Key" }, h("code", {}, k.prefix + "…")),
      h("td", { "data-label": "Model pool" }, k.model_pool.length ? k.model_pool.join(", ") : h("span", { class: "muted" }, "all models")),
      h("td", { "data-label": "Mode" }, MODES[k.optimize_mode] || k.optimize_mode),
      h("td", { "data-label": "Capture", class: "capture" }, k.capture_rate ? `${+(k.capture_rate * 100).toFixed(2)}%` : h("span", { class: "muted" }, "off")),
      h("td", { "data-label": "Created" }, when(k.created_at)),
      h("td", { "data-label": "Last used", class: "last-used" }, when(k.last_used_at)),
      h("td", { "data-label": "Status" }, k.revoked ? h("span", { class: "badge bad" }, "revoked") : h("span", { class: "badge ok" }, "active")),
      h("td", { class: "actions" }, actions)));
  }
}

async function refresh() {
  try {
    keys = await apiAll(API + "/keys");
    render();
  } catch (e) { showError(e); }
}

document.getElementById("create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  flash("");
  const form = ev.currentTarget;
  const name = form.name.value.trim();
  if (!name) { flash("Give the key a name."); form.name.focus(); return; }
  try {
    const created = await api("POST", API + "/keys", {
      name, model_pool: chosen(document.getElementById("create-pool")), optimize_mode: form.optimize_mode.value,
      capture_rate: captureRate(form.capture),
    });
    const panel = document.getElementById("new-key");
    document.getElementById("raw-key").textContent = created.key;
    document.getElementById("copy-status").textContent = "";
    panel.hidden = false;
    panel.focus();
    form.reset();
    await refresh();
  } catch (e) { showError(e); }
});

document.getElementById("copy-key").addEventListener("click", async () => {
  const raw = document.getElementById("raw-key").textContent;
  const status = document.getElementById("copy-status");
  try {
    await navigator.clipboard.writeText(raw);
    status.textContent = "Copied to the clipboard.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents(document.getElementById("raw-key"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    status.textContent = "Selected: press Ctrl+C to copy.";
  }
});

document.getElementById("dismiss-key").addEventListener("click", () => {
  document.getElementById("raw-key").textContent = "";
  document.getElementById("new-key").hidden = true;
  document.getElementById("key-name").focus();
});

document.querySelector("#keys-table tbody").addEventListener("click", (ev) => {
  const edit = ev.target.closest("[data-edit]");
  const revoke = ev.target.closest("[data-revoke]");
  if (edit) {
    editing = keys.find((k) => k.id === edit.dataset.edit);
    const form = document.getElementById("edit-form");
    form.name.value = editing.name;
    form.optimize_mode.value = editing.optimize_mode;
    form.capture.value = +(editing.capture_rate * 100).toFixed(4);
    poolBoxes(document.getElementById("edit-pool"), "edit-pool", editing.model_pool);
    document.getElementById("edit-error").hidden = true;
    document.getElementById("edit-dialog").showModal();
  } else if (revoke) {
    revoking = keys.find((k) => k.id === revoke.dataset.revoke);
    document.getElementById("revoke-name").textContent = revoking.name;
    document.getElementById("revoke-prefix").textContent = revoking.prefix + "…";
    document.getElementById("revoke-error").hidden = true;
    document.getElementById("revoke-dialog").showModal();
  }
});

document.querySelectorAll("dialog [data-close]").forEach((b) =>
  b.addEventListener("click", () => b.closest("dialog").close()));

async function submitDialog(ev, errId, call) {
  ev.preventDefault();
  const err = document.getElementById(errId);
  const dialog = ev.currentTarget.closest("dialog");
  try {
    await call();
    dialog.close();
    await refresh();
  } catch (e) {
    err.textContent = e instanceof ApiError ? e.message : String(e);
    err.hidden = false;
  }
}

document.getElementById("edit-form").addEventListener("submit", (ev) => {
  const form = ev.currentTarget;
  submitDialog(ev, "edit-error", () => api("PATCH", `${API}/keys/${editing.id}`, {
    name: form.name.value.trim(), model_pool: chosen(document.getElementById("edit-pool")),
    optimize_mode: form.optimize_mode.value, capture_rate: captureRate(form.capture),
  }));
});

document.getElementById("revoke-form").addEventListener("submit", (ev) => {
  submitDialog(ev, "revoke-error", () => api("DELETE", `${API}/keys/${revoking.id}`));
});

(async () => {
  try { models = await loadModels(); } catch (e) { showError(e); }
  poolBoxes(document.getElementById("create-pool"), "create-pool");
  await refresh();
})();

connectLive({
  usage: (ev) => {
    const k = keys.find((x) => x.id === ev.data.key_id);
    if (k) { k.last_used_at = ev.data.created_at; render(); }
  },
});
