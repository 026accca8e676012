import { api, ApiError } from "./api.js";

const form = document.getElementById("login-form");
const err = document.getElementById("login-error");
form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  err.hidden = true;
  const email = form.email.value.trim();
  const password = form.password.value;
  if (!email || !password) {
    err.textContent = "Enter your email and password.";
    err.hidden = false;
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await api("POST", "/api/v1/auth/login", { email, password });
    location.href = form.dataset.next || "/dashboard/keys";
  } catch (e) {
    err.textContent = e instanceof ApiError ? e.message : String(e);
    err.hidden = false;
    form.password.select();
  } finally {
    button.disabled = false;
  }
});
