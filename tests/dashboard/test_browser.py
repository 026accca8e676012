"""End to end in headless Chromium against a real gunicorn gateway: sign in, create a key, use it
from the OpenAI SDK, watch usage and balance arrive live, revoke it, and see the SDK get 403."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from serving.testing.server import PASSWORD, Server
from tests.dashboard.ui import at, live, shot, text, visible, wait

EMAIL = "ada@example.com"


def credits(micros: int) -> str:
    s = f"{micros / 1_000_000:.6f}".rstrip("0")
    whole, frac = s.split(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def test_dashboard_end_to_end(gateway: Server, browser: Any, artifacts: Path) -> None:
    d = browser
    # Signed out: every page sends you to the login page, which keeps where you were going.
    d.get(gateway.url + "/dashboard/usage")
    at(d, "/dashboard/login")
    email = visible(d, "#email")
    # Keyboard only: type, Tab, type, Enter. A wrong password shows the API's own message.
    email.send_keys(EMAIL, Keys.TAB, "wrong password", Keys.ENTER)
    assert visible(d, "#login-error").text == "Incorrect email or password."
    shot(d, artifacts, "login-error")
    d.find_element(By.ID, "password").send_keys(Keys.CONTROL, "a")
    d.find_element(By.ID, "password").send_keys(PASSWORD, Keys.ENTER)
    at(d, "/dashboard/usage")

    # Create a key with a pool and a mode; the raw key is shown once.
    d.get(gateway.url + "/dashboard/keys")
    visible(d, "#create-pool input[value='local/tiny-a']")
    d.find_element(By.ID, "key-name").send_keys("Production")
    d.find_element(By.CSS_SELECTOR, "#create-pool input[value='local/tiny-a']").click()
    d.find_element(By.CSS_SELECTOR, "#create-pool input[value='local/tiny-b']").click()
    d.find_element(By.CSS_SELECTOR, "#key-mode option[value='cost']").click()
    d.find_element(By.CSS_SELECTOR, "#create-form button[type=submit]").click()
    raw = visible(d, "#raw-key").text
    assert raw.startswith("inf_") and len(raw) >= 40
    row = visible(d, "#keys-table tr[data-key]")
    assert raw[:12] in row.text and "local/tiny-a, local/tiny-b" in row.text
    assert "Cheapest" in row.text and raw not in row.text
    shot(d, artifacts, "keys-new")
    d.find_element(By.ID, "dismiss-key").click()
    assert raw not in d.page_source
    d.refresh()
    visible(d, "#keys-table tr[data-key]")
    assert raw not in d.page_source

    # Edit the key: rename it, swap a pool model, prefer quality.
    d.find_element(By.CSS_SELECTOR, "#keys-table button[data-edit]").click()
    dialog = visible(d, "#edit-dialog")
    name = dialog.find_element(By.ID, "edit-name")
    name.clear()
    name.send_keys("Prod EU")
    assert dialog.find_element(By.CSS_SELECTOR, "input[value='local/tiny-a']").is_selected()
    dialog.find_element(By.CSS_SELECTOR, "input[value='local/tiny-a']").click()
    dialog.find_element(By.CSS_SELECTOR, "input[value='Qwen/Qwen3-14B']").click()
    dialog.find_element(By.CSS_SELECTOR, "#edit-mode option[value='quality']").click()
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(d).until(lambda d: "Prod EU" in text(d, "#keys-table tr[data-key]"))
    row = d.find_element(By.CSS_SELECTOR, "#keys-table tr[data-key]")
    assert "local/tiny-b, Qwen/Qwen3-14B" in row.text and "Best quality" in row.text

    # The usage page is open; a request from the SDK shows up on it live, with the balance.
    d.get(gateway.url + "/dashboard/usage")
    live(d)
    d.execute_script("window.__notReloaded = true")
    before = int(d.find_element(By.ID, "hdr-balance").get_attribute("data-micros"))
    assert before == 5_000_000
    client = openai.OpenAI(api_key=raw, base_url=gateway.url + "/api/v1/inference", max_retries=0)
    reply = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Sort a list in Python"}]
    )
    assert reply.model == "local/tiny-b"  # the priciest of the key's pool, mode "quality"
    rows = httpx.get(
        gateway.url + "/api/v1/inference/usage", headers={"Authorization": f"Bearer {raw}"}
    ).json()["data"]
    cost = rows[0]["cost_micros"]
    assert cost > 0
    row = visible(d, f"#usage-table tr[data-usage='{rows[0]['id']}']")
    assert "auto → local/tiny-b" in row.text and "general_qa · simple · 90%" in row.text
    assert credits(cost) in row.text
    wait(d).until(lambda d: text(d, "#hdr-balance") == credits(5_000_000 - cost))
    assert d.execute_script("return window.__notReloaded") is True
    assert "Prod EU" in row.text  # the key's name, not its id
    shot(d, artifacts, "usage")

    # Credits: the balance and the charge.
    d.get(gateway.url + "/dashboard/credits")
    wait(d).until(lambda d: text(d, "#balance") == credits(5_000_000 - cost))
    assert "Charged" in visible(d, "#tx-table tbody").text
    shot(d, artifacts, "credits")

    # Models: health, price and queue.
    d.get(gateway.url + "/dashboard/models")
    row = visible(d, "#models-table tr[data-model='local/tiny-a']")
    wait(d).until(lambda d: "ready" in text(d, "tr[data-model='local/tiny-a'] .health"))
    assert "$0.10" in row.text and "4,096" in row.text
    shot(d, artifacts, "models")

    # Playground: stream an auto-routed answer with the routing decision beside it.
    d.get(gateway.url + "/dashboard/playground")
    visible(d, "#p-model option[value='local/tiny-b']")
    d.find_element(By.ID, "p-message").send_keys("Explain recursion", Keys.CONTROL, Keys.ENTER)
    wait(d).until(lambda d: text(d, "#p-output") == "hello from the fake engine with several words")
    wait(d).until(lambda d: text(d, "#p-status").startswith("Done in"))
    routing = text(d, "#p-routing")
    assert "general_qa" in routing and "90.0%" in routing and "simple" in routing
    assert "fake-router@1" in routing
    live(d)
    shot(d, artifacts, "playground")
    # An API error becomes a readable message, not a status code.
    d.find_element(By.ID, "p-max").clear()
    d.find_element(By.ID, "p-max").send_keys("0")
    d.execute_script(
        "const o=document.createElement('option');o.value='no/such-model';o.textContent='x';"
        "document.getElementById('p-model').append(o);document.getElementById('p-model').value=o.value"
    )
    d.find_element(By.ID, "p-send").click()
    flash = visible(d, "#flash")
    assert "no/such-model" in flash.text and "does not exist" in flash.text

    # Revoke, with confirmation; the next SDK call is refused.
    d.get(gateway.url + "/dashboard/keys")
    visible(d, "#keys-table button[data-revoke]").click()
    dialog = visible(d, "#revoke-dialog")
    assert "Prod EU" in dialog.text
    shot(d, artifacts, "keys-revoke")
    dialog.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait(d).until(lambda d: "revoked" in text(d, "#keys-table tr[data-key]"))
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "still there?"}]
        )
    assert e.value.status_code == 403

    # A narrow window: nothing scrolls sideways, tables become labelled rows.
    d.set_window_size(390, 900)
    try:
        for page in ("keys", "usage", "playground"):
            d.get(gateway.url + "/dashboard/" + page)
            visible(d, "main h1")
            if page == "usage":
                visible(d, "#usage-table tr[data-usage]")
            width = d.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, f"{page} scrolls sideways ({width}px)"
            shot(d, artifacts, f"narrow-{page}")
    finally:
        d.set_window_size(1280, 1000)

    # Sign out ends the session.
    d.get(gateway.url + "/dashboard/keys")
    visible(d, "#logout").click()
    at(d, "/dashboard/login")
    d.get(gateway.url + "/dashboard/keys")
    at(d, "/dashboard/login")
