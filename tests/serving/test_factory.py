from serving import create_app


def test_factory_is_not_testing_by_default():
    assert not create_app().testing
    assert create_app({"TESTING": True}).testing


def test_healthz():
    client = create_app({"TESTING": True}).test_client()
    rv = client.get("/healthz")
    assert rv.status_code == 200
    assert rv.get_json() == {"status": "ok"}
