"""Regression tests for what fuzzing the gateway with schemathesis found (`make fuzz`,
tests/serving/test_fuzz.py): each is a request the OpenAPI document allows that the server refused,
one it forbids that the server accepted, a 500, or an answer the document did not describe."""

from __future__ import annotations

import orjson
import pytest
from jsonschema import Draft202012Validator

BASE = "/api/v1/inference"


def _spec(client):
    return client.get("/openapi.json").get_json()


@pytest.mark.parametrize(
    "start", ["2020-01-01T00:00:00", "2020-01-01", "0.5", "-1", "2020-01-01 00:00:00Z", "1e9"]
)
def test_usage_times_must_be_rfc3339_with_offset_or_unix_seconds(api, start):
    """Was: `?start=0.5` (and naive or bare-date times, read as local) were accepted."""
    t = api.tenant()
    rv = api.client.get(f"{BASE}/usage", query_string={"start": start}, headers=t.headers)
    err = rv.get_json()["error"]
    assert rv.status_code == 400 and err["param"] == "start", start


@pytest.mark.parametrize(
    "start", ["2020-01-01T00:00:00Z", "2020-01-01t01:00:00+01:00", "2016-12-31T23:59:60Z", "0"]
)
def test_usage_times_the_document_allows_are_accepted(api, start):
    t = api.tenant()
    api.chat(t)
    rv = api.client.get(f"{BASE}/usage", query_string={"start": start}, headers=t.headers)
    assert rv.status_code == 200 and len(rv.get_json()["data"]) == 1


def test_changing_a_revoked_key_is_a_conflict(api):
    """Was a 400 for a well-formed request (the document allows it): the key's state refuses it."""
    t = api.tenant()
    child = api.client.post(f"{BASE}/keys", json={"name": "c"}, headers=t.headers).get_json()
    assert api.client.delete(f"{BASE}/keys/{child['id']}", headers=t.headers).status_code == 200
    rv = api.client.patch(f"{BASE}/keys/{child['id']}", json={"name": "x"}, headers=t.headers)
    assert rv.status_code == 409 and rv.get_json()["error"]["code"] == "key_revoked"


def test_unknown_routing_pool_ids_are_refused_with_any_model(api):
    """Was: ignored (200) unless `model` was "auto"."""
    t = api.tenant()
    rv = api.chat(t, routing={"model_pool": ["no/such-model"]})
    assert rv.status_code == 400 and rv.get_json()["error"]["param"] == "routing.model_pool"


def test_integral_numbers_are_integers_and_reach_the_engine_as_ints(api, engines):
    """Was: `"n": 1.0` a 400 (strict), and `"max_tokens": 3.0`, once accepted, a 500 upstream."""
    t = api.tenant()
    rv = api.chat(t, n=1.0, max_tokens=3.0, seed=7.0)
    assert rv.status_code == 200, rv.get_json()
    sent = engines.calls[-1]
    assert (sent["n"], sent["max_tokens"], sent["seed"]) == (1, 3, 7)
    assert all(type(sent[k]) is int for k in ("n", "max_tokens", "seed"))
    assert rv.get_json()["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(
    "field",
    [
        {"n": 1.5},
        {"n": "2"},
        {"n": True},
        {"stream_options": {"include_usage": "yes"}},
        {"messages": [{"role": "user", "content": "hi", "name": 5}]},
        {"routing": {"optimize": 1}},
    ],
)
def test_wrong_json_types_are_400s(api, field):
    t = api.tenant()
    assert api.chat(t, **field).status_code == 400


def test_an_integer_beyond_64_bits_is_not_rounded_onto_the_bound(api):
    """Was: seed -2**63 - 1 arrived as a float equal to -2**63 and was accepted."""
    t = api.tenant()
    body = (
        b'{"model": "local/tiny-a", "messages": [{"role": "user"}], "seed": -9223372036854775809}'
    )
    rv = api.client.post(
        f"{BASE}/chat/completions",
        data=body,
        headers={**t.headers, "Content-Type": "application/json"},
    )
    assert rv.status_code == 400 and rv.get_json()["error"]["param"] == "seed"


def test_key_limits_are_strict_integers(api):
    """Was: `"rpm_limit": true` created a key limited to 1 request a minute."""
    t = api.tenant()
    rv = api.client.post(f"{BASE}/keys", json={"name": "b", "rpm_limit": True}, headers=t.headers)
    assert rv.status_code == 400 and rv.get_json()["error"]["param"] == "rpm_limit"
    rv = api.client.post(f"{BASE}/keys", json={"name": "f", "tpm_limit": 5417.0}, headers=t.headers)
    assert rv.status_code == 201 and rv.get_json()["tpm_limit"] == 5417


def test_the_document_names_the_catalog_and_closes_the_chat_request(client, app):
    spec = _spec(client)
    schemas = spec["components"]["schemas"]
    ids = [m.id for m in app.extensions["engines"].models()]
    chat = schemas["ChatCompletionRequest"]
    assert chat["properties"]["model"]["enum"] == [*ids, "auto"]
    assert chat["additionalProperties"] is False and "logit_bias" in chat["properties"]
    assert chat["x-engine-params"]["local/tiny-a"] == [
        "fake_fail_after",
        "return_token_ids",
        "top_k",
    ]
    assert schemas["KeyCreate"]["properties"]["model_pool"]["items"]["enum"] == ids
    keys_post = spec["paths"][f"{BASE}/keys"]["post"]["responses"]["201"]
    assert keys_post["links"]["RevokeKey"] == {
        "operationId": "delete__api_v1_inference_keys_key_id",
        "parameters": {"key_id": "$response.body#/id"},
    }
    op_ids = {op["operationId"] for ops in spec["paths"].values() for op in ops.values()}
    for ops in spec["paths"].values():
        for op in ops.values():
            for response in op["responses"].values():
                for target in response.get("links", {}).values():
                    assert target["operationId"] in op_ids


def test_every_stream_event_matches_the_document(api, client):
    """Was: the document described each event as a string; a routed stream's first frame is the
    routing decision, then chunks, then `[DONE]`."""
    spec = _spec(client)
    op = spec["paths"][f"{BASE}/chat/completions"]["post"]
    event = op["responses"]["200"]["content"]["text/event-stream"]["schema"]
    frames = event["properties"]["data"]["anyOf"][1]["contentSchema"]
    check = Draft202012Validator({**frames, "components": spec["components"]})
    t = api.tenant()
    rv = api.chat(t, model="auto", stream=True)
    text = rv.get_data(as_text=True)
    rv.close()  # ends the stream's app context
    datas = [f.removeprefix("data: ") for f in text.split("\n\n") if f]
    assert datas[-1] == "[DONE]" and orjson.loads(datas[0])["object"] == "routing"
    for data in datas[:-1]:
        check.validate(orjson.loads(data))
