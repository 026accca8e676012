"""The optimize modes have one definition (`inferroute.OPTIMIZE`): the wire schema, the CLI and the
dashboard offer and accept exactly those, with the same labels."""

from __future__ import annotations

import re

from click.testing import CliRunner

from serving.cli import cli
from serving.router_client import OPTIMIZE, OPTIMIZE_MODES


def test_the_api_accepts_every_mode_and_only_those(api):
    t = api.tenant(password=True)
    for mode in OPTIMIZE_MODES:
        rv = api.chat(t, model="auto", routing={"optimize": mode})
        assert rv.status_code == 200, rv.get_json()
        assert rv.headers["X-Inferbase-Optimize"] == mode
    rv = api.chat(t, model="auto", routing={"optimize": "fastest"})
    assert rv.status_code == 400
    assert "routing.optimize" in str(rv.get_json()["error"].get("param"))


def test_the_dashboard_offers_the_modes_with_their_labels(api):
    t = api.tenant(password=True)
    rv = api.client.post("/api/v1/auth/login", json={"email": t.email, "password": "pw-" + t.email})
    assert rv.status_code == 200
    keys_page = api.client.get("/dashboard/keys").get_data(as_text=True)
    play_page = api.client.get("/dashboard/playground").get_data(as_text=True)
    options = re.findall(r'<option value="(\w*)"[^>]*>([^<]+)</option>', keys_page)
    expected = [(m.name, m.label) for m in OPTIMIZE.values()]
    assert options == expected * 2  # the create form and the edit dialog
    select = play_page[play_page.index('name="optimize"') :]
    select = select[: select.index("</select>")]
    options = re.findall(r'<option value="(\w*)"[^>]*>([^<]+)</option>', select)
    assert options == [("", "Default"), *expected]


def test_the_cli_offers_exactly_the_modes(tmp_path):
    env = {
        "INFERBASE_HOME": str(tmp_path),
        "INFERBASE_ENGINES_FACTORY": "serving.testing.fakes:make_engines",
        "INFERBASE_SECRET_KEY": "cli-secret-" + "k" * 32,
    }
    args = ["keys", "create", "--account", "a@example.com", "--name", "n", "--optimize", "fastest"]
    r = CliRunner().invoke(cli, args, env=env)
    assert r.exit_code != 0
    for mode in OPTIMIZE_MODES:
        assert repr(mode) in r.output or mode in r.output
