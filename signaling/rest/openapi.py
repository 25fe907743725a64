"""The route table's shape, and the OpenAPI 3.1 document generated from it.

Each resource module of signaling/rest/ declares each endpoint once as a Route; the same
Route registers the aiohttp handler and describes the operation here, with request and
response schemas taken from the msgspec structs that validate and encode them. Nothing is
written twice.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from classroom.models import UserRole
from signaling.errors import DESCRIPTIONS
from signaling.rest.schemas import ErrorBody

API_PREFIX = "/api/v1"
REF = "#/components/schemas/{name}"
# Every role: reads that any signed-in user may make.
ANY_USER: tuple[UserRole, ...] = tuple(UserRole)
_PATH_PARAM = re.compile(r"\{(\w+)\}")

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    206: "Partial content: the bytes a Range header asked for (Content-Range says which).",
    302: "Redirect to a short-lived presigned URL on object storage.",
    400: "The body or the query does not match its schema (`invalid_body`), or the domain "
    "refuses it.",
    401: "Missing, unknown or expired bearer token (`unauthorized`).",
    403: "The user's role or school may not do this (`forbidden`), or a cookie-signed "
    "state change lacks its X-CSRF-Token or comes from another origin (`csrf_failed`).",
    404: "No such resource (`not_found`, `not_live`).",
    409: "Conflicts with existing data (`conflict`, `illegal_transition`, `lesson_ended`).",
    413: "The body exceeds the size limit (`too_large`).",
    416: "The Range header is malformed or beyond the file (`range_not_satisfiable`).",
}


@dataclass(frozen=True)
class Route:
    """One endpoint: how it is served, who may call it, and what it takes and gives."""

    method: str
    path: str  # below API_PREFIX, OpenAPI style: /lessons/{id}
    handler: Callable[..., Awaitable[Any]]
    summary: str
    tag: str
    # Who may call besides admin, who always may. Default: admin only, so that a route
    # added without thought is closed rather than open. Ignored if public.
    roles: tuple[UserRole, ...] = ()
    public: bool = False
    # With public: a bearer token is optional; when sent it must be valid, and the handler
    # gets its user (anonymous callers see public recordings, signed-in ones more).
    optional_auth: bool = False
    body: type | None = None
    body_required: bool = True
    query: type | None = None
    response: type | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    # A success answer that is not JSON (a file, a CSV): its media type.
    media: str | None = None

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


def build_document(routes: Sequence[Route], *, title: str, version: str) -> dict[str, Any]:
    types: list[Any] = [ErrorBody]
    for route in routes:
        types += [t for t in (route.body, route.query, route.response) if t is not None]
    _, components = msgspec.json.schema_components(list(dict.fromkeys(types)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, components)
        paths.setdefault(API_PREFIX + route.path, {})[route.method.lower()] = operation
    for name in {r.query.__name__ for r in routes if r.query is not None}:
        # Query structs become parameters; they are not bodies anyone sends.
        components.pop(name, None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Errors: "
            + "; ".join(f"`{code}`: {text}" for code, text in DESCRIPTIONS.items()),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from POST /api/v1/auth/login or "
                    "`tongbu admin issue-token`.",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "tongbu_session",
                    "description": "A browser session from POST /api/v1/auth/session; "
                    "POST, PUT, PATCH and DELETE also need the header X-CSRF-Token.",
                },
            },
        },
    }


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
    }
    if (doc := (route.handler.__doc__ or "").strip()) and doc != route.summary:
        operation["description"] = doc
    parameters = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
        for p in route.path_params
    ]
    if route.query is not None:
        schema = components[route.query.__name__]
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": {"$ref": _ref(route.body)}}},
        }
    ok: dict[str, Any] = {"description": _STATUS_TEXT.get(route.status, "OK")}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": {"$ref": _ref(route.response)}}}
    elif route.media is not None:
        ok["content"] = {route.media: {"schema": {"type": "string", "format": "binary"}}}
    responses: dict[str, Any] = {str(route.status): ok}
    errors = set(route.errors)
    if route.body is not None or route.query is not None:
        errors |= {400, 413} if route.body is not None else {400}
    if not route.public or route.optional_auth:
        errors |= {401, 403}
    if route.path_params:
        errors.add(404)
    for status in sorted(errors):
        if status < 400:  # another success or a redirect, not an ErrorBody
            responses[str(status)] = {"description": _STATUS_TEXT.get(status, "OK")}
            continue
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": {"$ref": _ref(ErrorBody)}}},
        }
    operation["responses"] = responses
    if route.optional_auth:
        operation["security"] = [{}, {"bearer": []}, {"session": []}]
        operation["x-roles"] = "anyone; a bearer token, if sent, must be valid"
    if not route.public:
        operation["security"] = [{"bearer": []}, {"session": []}]
        if set(route.roles) >= set(ANY_USER):
            operation["x-roles"] = "any signed-in user"
        else:
            operation["x-roles"] = ", ".join(["admin", *(r.value for r in route.roles)])
    return operation


def _ref(t: type) -> str:
    return REF.format(name=t.__name__)
