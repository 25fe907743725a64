"""The OpenAPI document is valid, complete, and says no exactly where the server says no."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from signaling.app import ROUTES
from signaling.rest.openapi import API_PREFIX


@pytest.fixture
async def document(app_client: TestClient) -> dict[str, Any]:
    response = await app_client.get("/api/v1/openapi.json")
    assert response.status == 200
    return await response.json()


async def test_the_document_is_valid_openapi_3_1(document: dict) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"


async def test_every_route_is_served_and_described_once(
    app_client: TestClient, document: dict
) -> None:
    described = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    table = {(r.method, API_PREFIX + r.path) for r in ROUTES}
    assert described == table and len(table) == len(ROUTES)
    served = {
        (route.method, route.resource.canonical)
        for route in app_client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith(API_PREFIX)
    }
    assert table <= served
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert "security" not in login
    assert document["paths"]["/api/v1/lessons"]["post"]["security"] == [
        {"bearer": []},
        {"session": []},
    ]


def body_schema(document: dict, path: str) -> OAS31Validator:
    operation = document["paths"][API_PREFIX + path]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return OAS31Validator(
        {"$ref": ref, "components": document["components"]},
        format_checker=OAS31Validator.FORMAT_CHECKER,
    )


SAMPLES = [
    ("/schools", {"name": "城关一中", "kind": "city"}),
    ("/schools", {"name": "城关一中", "kind": "city", "region": "东区", "timezone": "Asia/Urumqi"}),
    ("/schools", {"name": "x", "kind": "town"}),
    ("/schools", {"name": "x"}),
    ("/schools", {"name": "x", "kind": "city", "extra": 1}),
    ("/schools", {"name": "", "kind": "city"}),
    ("/schools", {"name": 5, "kind": "city"}),
    ("/schools", ["x"]),
    ("/pairings", {"name": "p", "main_classroom_id": 1, "receiving_classroom_ids": []}),
    ("/pairings", {"name": "p", "main_classroom_id": 0, "receiving_classroom_ids": [2]}),
    ("/pairings", {"name": "p", "main_classroom_id": 1, "receiving_classroom_ids": [2] * 5}),
    ("/lessons", {"pairing_id": 1, "kind": "dedicated"}),
    (
        "/lessons",
        {
            "pairing_id": 1,
            "kind": "lecture",
            "subject": "s",
            "grade": "g",
            "teacher_name": "t",
            "title": "t",
            "planned_start": "2025-03-03T08:00:00Z",
            "planned_end": "2025-03-03T08:40:00Z",
        },
    ),
    (
        "/lessons",
        {
            "pairing_id": 1,
            "kind": "dedicated",
            "subject": "s",
            "grade": "g",
            "teacher_name": "t",
            "title": "t",
            "planned_start": "soon",
            "planned_end": "2025-03-03T08:40:00Z",
        },
    ),
    (
        "/lessons",
        {
            "pairing_id": 1,
            "kind": "dedicated",
            "subject": "s",
            "grade": "g",
            "teacher_name": "t",
            "title": "t",
            "planned_start": "2025-03-03T08:00:00",
            "planned_end": "2025-03-03T08:40:00",
        },
    ),
    ("/lessons/1/join-tokens", {"role": "watch", "ttl_s": 5}),
    ("/lessons/1/join-tokens", {"role": "guest"}),
    ("/lessons/1/join-tokens", {"role": "watch", "ttl_s": 600}),
    ("/auth/login", {"username": "a", "password": "b", "otp": "123"}),
]


@pytest.mark.parametrize(("path", "body"), SAMPLES)
async def test_a_body_the_schema_rejects_the_server_rejects(
    app_client: TestClient, admin_headers: dict, document: dict, path: str, body: Any
) -> None:
    schema_path = "/lessons/{id}/join-tokens" if "join-tokens" in path else path
    schema_accepts = body_schema(document, schema_path).is_valid(body)
    response = await app_client.post(f"/api/v1{path}", json=body, headers=admin_headers)
    answer = await response.json()
    server_refused_body = response.status == 400 and answer["error"]["code"] == "invalid_body"
    assert server_refused_body == (not schema_accepts), (response.status, answer)
