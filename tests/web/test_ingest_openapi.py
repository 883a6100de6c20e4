"""The OpenAPI document a client generator reads (issue 20): valid OpenAPI 3.1, the ingest
routes' request bodies and answers, the one error shape, the security schemes, and the event
JSON Schema both in the document and served on its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from crisis.settings import Settings
from crisis.sources.events import event_json_schema
from tests.conftest import ApiHarness, api_for
from tests.ingest_support import event

INGEST = ("/api/v1/events", "/api/v1/cap", "/api/v1/reports")
ERRORS = {"$ref": "#/components/schemas/Errors"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'crisis.db'}",
        secret_key="test-secret",
    )
    async with api_for(settings) as harness:
        yield harness


@pytest.fixture
def spec(api: ApiHarness) -> dict[str, Any]:
    document: dict[str, Any] = api.app.openapi()
    return document


def test_the_whole_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises on the first violation of the OpenAPI 3.1 schema


def test_ingest_routes_declare_bodies_answers_errors_and_security(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["sessionCookie"]["in"] == "cookie"
    media = {
        "/api/v1/events": {
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "application/json",
        },
        "/api/v1/cap": {"application/cap+xml", "application/xml", "text/xml"},
        "/api/v1/reports": {
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        },
    }
    for path in INGEST:
        operation = spec["paths"][path]["post"]
        body = operation["requestBody"]
        assert body["required"] is True and set(body["content"]) == media[path], path
        accepted = operation["responses"]["202"]["content"]["application/json"]["schema"]
        assert accepted["$ref"].startswith("#/components/schemas/"), path
        for status in ("400", "401", "403", "413", "415", "422", "429", "507"):
            answer = operation["responses"][status]["content"]["application/json"]["schema"]
            assert answer == ERRORS, (path, status)
        assert {"bearerAuth": []} in operation["security"], path
    events = spec["paths"]["/api/v1/events"]["post"]["requestBody"]
    assert "ce-" in events["description"]  # binary mode is described
    assert events["content"]["application/cloudevents+json"]["schema"] == {
        "$ref": "#/components/schemas/CloudEvent"
    }
    cap_accepted = spec["components"]["schemas"]["CapAccepted"]["properties"]
    assert {"accepted", "units", "identifier", "note", "warnings"} <= set(cap_accepted)
    cap = spec["paths"]["/api/v1/cap"]["post"]["requestBody"]["content"]
    assert cap["application/cap+xml"]["schema"]["type"] == "string"
    form = spec["components"]["schemas"]["ReportForm"]
    assert {"unit", "category", "place", "what", "severity"} <= set(form["properties"])
    assert set(form["required"]) == {"category", "place", "what"}

    error = spec["components"]["schemas"]["ErrorItem"]
    assert set(error["required"]) == {"index", "field", "message"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # the real shape only
    assert "security" not in spec["paths"]["/healthz"]["get"]  # no login there


def test_the_event_schema_in_the_document_judges_events(spec: dict[str, Any]) -> None:
    root = {"$ref": "#/components/schemas/CloudEvent", "components": spec["components"]}
    validator = jsonschema.Draft202012Validator(root)
    good = event(1)
    assert list(validator.iter_errors(good)) == []
    traced = {**good, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    assert list(validator.iter_errors({**traced, "knativearrivaltime": "x"})) == []
    assert [e.json_path for e in validator.iter_errors({**good, "traceparent": "00-ab"})] == [
        "$.traceparent"
    ]
    bad_data = {**good, "data": {"area": 5}}
    assert [e.json_path for e in validator.iter_errors(bad_data)] == ["$.data.area"]
    assert list(validator.iter_errors({**good, "colour": {"r": 1}}))


async def test_the_event_schema_is_served(api: ApiHarness, spec: dict[str, Any]) -> None:
    r = await api.client.get("/api/v1/schemas/event")
    assert r.status_code == 401 and r.json()["errors"][0]["field"]
    auth = await api.user("op", "operator", unit="agder-froland")
    r = await api.client.get("/api/v1/schemas/event", headers=auth)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/schema+json")
    assert r.json() == event_json_schema()
    served = await api.client.get("/openapi.json", headers=auth)
    assert (
        served.json()["components"]["schemas"]["CloudEvent"]
        == (spec["components"]["schemas"]["CloudEvent"])
    )
