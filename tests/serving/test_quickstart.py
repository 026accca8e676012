"""`inferbase up`'s demo account: a fresh quick-start key each run, the previous one revoked."""

from __future__ import annotations

from serving import accounts, db
from serving.quickstart import DEMO_EMAIL, issue_demo_key

CHAT = "/api/v1/inference/chat/completions"


def test_demo_key_works_and_the_previous_one_is_revoked(app, client):
    with app.app_context():
        first, password = issue_demo_key(app, DEMO_EMAIL, 5_000_000)
        second, again = issue_demo_key(app, DEMO_EMAIL, 5_000_000)
        with db.write() as conn:
            assert accounts.check_login(conn, DEMO_EMAIL, password)["email"] == DEMO_EMAIL
    assert password and again is None  # the password is made once, with the account
    body = {"model": "local/tiny-a", "messages": [{"role": "user", "content": "hi"}]}
    rv = client.post(CHAT, json=body, headers={"Authorization": f"Bearer {second}"})
    assert rv.status_code == 200, rv.get_json()
    rv = client.post(CHAT, json=body, headers={"Authorization": f"Bearer {first}"})
    assert rv.status_code == 403
    assert rv.get_json()["error"]["code"]
    rv = client.get("/api/v1/inference/credits", headers={"Authorization": f"Bearer {second}"})
    assert rv.get_json()["balance_micros"] < 5_000_000  # one deposit, one billed request


def test_the_demo_secrets_go_to_the_terminal_not_to_a_redirected_log(tmp_path, capsys):
    from serving.quickstart import reveal

    terminal = tmp_path / "tty"  # stands for /dev/tty while stdout is redirected (pytest)
    terminal.touch()
    assert reveal("key inf_secret", tmp_path / "home", tty=str(terminal)) == str(terminal)
    assert "inf_secret" in terminal.read_text()
    assert "inf_secret" not in capsys.readouterr().out

    # no terminal at all (a service): a file only the owner can read, and its path on stdout
    where = reveal("key inf_secret2", tmp_path / "home", tty=str(tmp_path / "no" / "tty"))
    out = capsys.readouterr().out
    assert "inf_secret2" not in out and where in out
    assert (tmp_path / "home" / "quickstart.txt").read_text() == "key inf_secret2\n"
    assert (tmp_path / "home" / "quickstart.txt").stat().st_mode & 0o777 == 0o600
