"""The OpenAPI document describes the errors the service really sends: `ErrorBody` for every error status a
route can answer, and never FastAPI's default validation error shape."""
from __future__ import annotations

import re

import pytest

from service.schemas import ErrorBody, ReloadRefused

ERROR = "#/components/schemas/ErrorBody"
AUTH = {"Authorization": "Bearer k3y"}


@pytest.fixture(scope="module")
def doc(client) -> dict:
    return client.get("/openapi.json").json()


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def body_schema(doc: dict, operation: dict) -> dict:
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_fastapis_default_validation_error_is_nowhere(doc):
    assert not {"HTTPValidationError", "ValidationError"} & set(doc["components"]["schemas"])
    for path, method, operation in operations(doc):
        for status, response in operation["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            assert "HTTPValidationError" not in str(schema), (method, path, status)


def test_every_error_response_is_the_error_body(doc):
    schemas = doc["components"]["schemas"]
    error = schemas["ErrorBody"]
    checked = 0
    for path, method, operation in operations(doc):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = response["content"]["application/json"]["schema"]
            if (path, status) == ("/readyz", "503"):  # not an error of the request: the readiness report
                assert schema == {"$ref": "#/components/schemas/Readiness"}
                continue
            checked += 1
            if schema == {"$ref": ERROR}:
                continue
            # else a body that extends it: every field of the error body, as required as there
            extended = schemas[schema["$ref"].rsplit("/", 1)[1]]
            assert (method, path, status) == ("post", "/admin/reload", "409")
            assert all(extended["properties"].get(name) == field for name, field in error["properties"].items())
            assert set(error["required"]) <= set(extended["required"])
    assert checked >= 20


def test_each_route_documents_what_it_can_answer(doc):
    for path, method, operation in operations(doc):
        statuses = set(operation["responses"])
        takes_input = "requestBody" in operation or bool(operation.get("parameters"))
        assert ("422" in statuses) == takes_input, (method, path)
        if "model" in body_schema(doc, operation).get("properties", {}):
            assert {"404", "503"} <= statuses, (method, path)
    assert {"401", "404", "422", "503"} <= set(doc["paths"]["/rank"]["post"]["responses"])
    assert {"401", "404", "422", "503"} <= set(doc["paths"]["/recommend"]["post"]["responses"])


def test_401_is_documented_exactly_where_the_key_is_asked_for(make_client):
    client = make_client(api_key="k3y")
    doc = client.get("/openapi.json", headers=AUTH).json()
    for path, method, operation in operations(doc):
        response = client.request(method, path.replace("{user_id}", "u1"), json={})
        assert (response.status_code == 401) == ("401" in operation["responses"]), (method, path)
    assert {"/rank", "/models", "/admin/reload", "/metrics"} <= {p for p, _, o in operations(doc)
                                                                 if "401" in o["responses"]}


def test_the_error_bodies_sent_are_the_documented_ones(make_client, tmp_path):
    client = make_client(api_key="k3y")
    rank = {"model": "nrms", "user_id": "u1", "candidates": ["N1"]}
    answers = [
        client.post("/rank", json=rank),  # 401
        client.post("/rank", json={**rank, "model": "nope"}, headers=AUTH),  # 404
        client.post("/rank", json={**rank, "candidates": [], "extra": 1}, headers=AUTH),  # 422, validation
        client.post("/recommend", json={"model": "nrms", "user_id": "u1", "k": 5000}, headers=AUTH),  # 422
        client.post("/users/u1/events", json={"items": "x"}, headers=AUTH),  # 422 from FastAPI's own parsing
        make_client(artifacts=tmp_path).post("/rank", json=rank),  # 503
    ]
    assert [a.status_code for a in answers] == [401, 404, 422, 422, 422, 503]
    for answer in answers:
        ErrorBody.model_validate(answer.json())  # no field missing, none extra
    assert len(answers[2].json()["errors"]) == 2 and "errors" not in answers[3].json()


def test_a_refused_reload_sends_the_documented_409(make_client, artifacts):
    name = "gru4recf"
    latest = (artifacts / name / "LATEST").read_text().strip()
    (artifacts / name / latest / "item_ids.npy").write_text("[]")
    client = make_client(artifacts=artifacts)
    answer = client.post("/admin/reload")
    assert answer.status_code == 409
    ReloadRefused.model_validate(answer.json())


def test_the_description_names_no_fixed_set_of_models(doc):
    """The served kinds are whatever bundles the artifacts folder holds, so the description lists none."""
    description = doc["info"]["description"]
    assert "artifacts folder" in description and "GET /models" in description
    assert not re.search(r"nrms|convncf|gru4rec|bert4rec", description, re.IGNORECASE)


def test_the_fallback_flag_is_documented_on_rank_responses(doc):
    for path in ("/rank", "/recommend"):
        ok = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"] == "#/components/schemas/RankResponse"
    fallback = doc["components"]["schemas"]["RankResponse"]["properties"]["fallback"]
    assert {"enum": ["popularity", "recency_popularity"], "type": "string"} in fallback["anyOf"]
    assert "could not score the user" in fallback["description"]
    assert "fallback" not in doc["components"]["schemas"]["RankResponse"]["required"]
