from serving import create_app


def test_factory_is_not_testing_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path))
    assert not create_app().testing
    assert create_app({"TESTING": True, "HOME": str(tmp_path)}).testing


def test_env_overrides_config(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERBASE_HOME", str(tmp_path))
    monkeypatch.setenv("INFERBASE_DEFAULT_RPM", "7")
    app = create_app()
    assert app.config["DEFAULT_RPM"] == 7
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'inferbase.db'}"
    # the generated secret key is persisted and reused
    assert (tmp_path / "secret_key").read_text() == app.config["SECRET_KEY"]
    assert create_app().config["SECRET_KEY"] == app.config["SECRET_KEY"]


def test_healthz(client):
    rv = client.get("/healthz")
    assert rv.status_code == 200
    assert rv.get_json() == {"status": "ok"}
