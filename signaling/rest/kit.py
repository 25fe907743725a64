"""The REST kit: a `Call` per request, the dispatch of each `Route` (authentication, CSRF,
role, then body and query validated against their structs), and the middleware that
turns every failure under /api/ into one ErrorBody.

Resource modules (accounts, users, registers, lessons, timetable, statistics, schedule,
and recorder/library/api.py) each own their handlers, schemas and ROUTES; signaling/app.py
collects the ROUTES and hands them to `setup_api`, which also serves the OpenAPI document
built from the same table, so the document cannot miss or invent an endpoint.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom import audit, lessons
from classroom.models import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    User,
    UserRole,
)
from classroom.refusals import refused, validation_refusal
from signaling.appkeys import DB
from signaling.errors import ErrorCode
from signaling.rest.auth import (
    Credential,
    check_csrf,
    check_origin,
    current_credential,
    optional_credential,
    require,
    require_bound_device,
)
from signaling.rest.openapi import ANY_USER, API_PREFIX, Route
from signaling.rest.schemas import ApiError

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # bytes; the largest real body (a lesson) is well under 1 KiB
OPENAPI = web.AppKey("openapi_document", bytes)


@dataclass
class Call:
    """One API request, after authentication and validation."""

    request: web.Request
    user: User | None
    body: Any
    query: Any
    credential: Credential | None = None

    @property
    def db(self) -> async_sessionmaker[AsyncSession]:
        return self.request.app[DB]

    @property
    def remote(self) -> str | None:
        return self.request.remote

    @property
    def me(self) -> User:
        assert self.user is not None, "public routes have no user"
        return self.user

    def id(self, name: str = "id") -> int:
        try:
            value = int(self.request.match_info[name])
        except ValueError:
            raise ApiError(404, ErrorCode.NOT_FOUND, f"{name} must be a positive integer") from None
        if value < 1:
            raise ApiError(404, ErrorCode.NOT_FOUND, f"{name} must be a positive integer")
        return value


def not_found(what: str, ident: int) -> ApiError:
    return ApiError(404, ErrorCode.NOT_FOUND, **refused(f"{what}_not_found", id=ident))


def json_response(result: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(result), status=status, content_type="application/json"
    )


# ------------------------------------------------------------------ edits
# Every change is audited with its {field: [old, new]}.


def sent_fields(body: msgspec.Struct) -> dict[str, Any]:
    """The fields a PATCH body carries (absent ones are UNSET)."""
    return {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}


async def audit_change(
    call: Call, db: AsyncSession, action: str, target: str, changes: dict[str, Any],
    **consequences: Any,
) -> None:
    """Audit an edit by what it changed, and what followed from it when anything did;
    an edit that changed nothing leaves no event."""
    if changes:
        detail = {"changes": changes, **{k: v for k, v in consequences.items() if v}}
        await audit.record(db, call.me, action, target, detail, call.remote)


async def openapi_document(call: Call) -> web.Response:
    """This API's OpenAPI 3.1 description."""
    return web.Response(body=call.request.app[OPENAPI], content_type="application/json")


# ------------------------------------------------------------- role groups

STAFF = (UserRole.SCHOOL_ADMIN, UserRole.TEACHER)
SCHOOL_ACCOUNTS = (*STAFF, UserRole.DEVICE)  # every account that belongs to one school


# ------------------------------------------------------------ machinery


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED = re.compile(r"(?:unknown|required) field `(?P<name>[^`]+)`")


def _field_of(message: str) -> str | None:
    """The field a msgspec error names: "Expected `int` ... - at `$.a[1]`" -> "a[1]"."""
    path = ""
    if match := _AT.search(message):
        path, message = match["path"], message[: match.start()]
    if named := _NAMED.search(message):
        path = f"{path}.{named['name']}"
    return path.lstrip(".") or None


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"the body exceeds {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, ErrorCode.TOO_LARGE, f"the body exceeds {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _decode_body(request: web.Request, route: Route) -> Any:
    assert route.body is not None
    data = await _read_body(request)
    if not data.strip():
        if route.body_required:
            raise ApiError(400, ErrorCode.INVALID_BODY, "a JSON body is required")
        return route.body()
    try:
        return msgspec.json.decode(data, type=route.body)
    except msgspec.ValidationError as exc:
        reason, params = validation_refusal(str(exc))
        raise ApiError(
            400, ErrorCode.INVALID_BODY, str(exc), field=_field_of(str(exc)), reason=reason,
            params=params,
        ) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, ErrorCode.INVALID_BODY, f"not valid JSON: {exc}") from None


def _decode_query(request: web.Request, route: Route) -> Any:
    assert route.query is not None
    try:
        return msgspec.convert(dict(request.query), route.query, strict=False)
    except msgspec.ValidationError as exc:
        reason, params = validation_refusal(str(exc))
        raise ApiError(
            400, ErrorCode.INVALID_BODY, str(exc), field=_field_of(str(exc)), reason=reason,
            params=params,
        ) from None


def _endpoint(route: Route) -> Any:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        credential = None
        try:
            if not route.public:
                # Authentication, CSRF and role come before the body is even read: an
                # anonymous or forged caller learns nothing from validation errors.
                credential = await current_credential(request)
                check_csrf(request, credential)
                require(credential.user, *route.roles)
                if route.roles != ANY_USER:  # who one is stays readable, nothing else
                    require_bound_device(credential.user)
            elif route.optional_auth:
                credential = await optional_credential(request)
                check_csrf(request, credential)
            elif request.method not in ("GET", "HEAD"):
                check_origin(request)  # no login CSRF: a foreign page cannot sign us in
            user = credential.user if credential else None
            body = await _decode_body(request, route) if route.body is not None else None
            query = _decode_query(request, route) if route.query is not None else None
            result = await route.handler(Call(request, user, body, query, credential))
        except ApiError as exc:
            if exc.status == 403:
                await _audit_refusal(request, route, credential, exc)
            raise
        if isinstance(result, web.StreamResponse):
            return result
        return json_response(result, route.status)

    endpoint.__name__ = route.operation_id
    return endpoint


async def _audit_refusal(
    request: web.Request, route: Route, credential: Credential | None, exc: ApiError
) -> None:
    """Every 403 of the API leaves a row: `auth.csrf_failed` or `permission.denied`."""
    action = "auth.csrf_failed" if exc.code == ErrorCode.CSRF_FAILED else "permission.denied"
    detail = {
        "route": f"{route.method} {API_PREFIX}{route.path}",
        "via": credential.kind if credential else None,
        "reason": exc.message,
    }
    try:
        async with request.app[DB]() as db:
            actor = credential.user if credential else audit.ANONYMOUS
            await audit.record(db, actor, action, request.path, detail, request.remote)
    except Exception:  # the refusal stands even if its trace cannot be written
        logger.exception("could not audit a refusal of %s %s", request.method, request.path)


def _error_response(exc: ApiError) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(exc.body()), status=exc.status, content_type="application/json"
    )


_DOMAIN_STATUS: list[tuple[type[DomainError], int, ErrorCode]] = [
    (lessons.IllegalTransition, 409, ErrorCode.ILLEGAL_TRANSITION),
    (NotFound, 404, ErrorCode.NOT_FOUND),
    (Conflict, 409, ErrorCode.CONFLICT),
    (InvalidInput, 400, ErrorCode.INVALID_BODY),
]
_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.TOO_LARGE,
}


@web.middleware
async def api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure under /api/ leaves as an ErrorBody; other paths are left alone."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc)
    except DomainError as exc:
        for kind, status, code in _DOMAIN_STATUS:
            if isinstance(exc, kind):
                return _error_response(
                    ApiError(status, code, exc.message, field=exc.field, reason=exc.reason,
                             params=exc.params)
                )
        raise
    except web.HTTPException as exc:
        code = _HTTP_CODES.get(exc.status, ErrorCode.INVALID_BODY)
        if exc.status >= 500:
            code = ErrorCode.INTERNAL
        return _error_response(ApiError(exc.status, code, exc.reason))
    except Exception:
        logger.exception("API request %s %s failed", request.method, request.path)
        return _error_response(ApiError(500, ErrorCode.INTERNAL, "internal error; it was logged"))


ROUTES: tuple[Route, ...] = (  # the kit's own: the document that describes all the others
    Route("GET", "/openapi.json", openapi_document, "OpenAPI document", "meta", public=True),
)


def setup_api(app: web.Application, routes: Sequence[Route], document: bytes) -> None:
    """Register `routes` under /api/v1 with the error middleware; `document` is their
    OpenAPI description, served at /api/v1/openapi.json."""
    app.middlewares.append(api_errors)
    app[OPENAPI] = document
    for route in routes:
        app.router.add_route(route.method, API_PREFIX + route.path, _endpoint(route))
