"""Shapes every REST resource shares: field types, the request and response bases, and
the one error body.

Request structs refuse unknown fields: a typo in a field name is an error, not a silently
ignored option. The same structs validate requests, encode responses and generate the
OpenAPI document (signaling/rest/openapi.py), so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from signaling.errors import ErrorCode

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Short = Annotated[str, Meta(min_length=1, max_length=100)]
Id = Annotated[int, Meta(ge=1)]
# Aware datetimes only: a lesson time without a zone is ambiguous by eight hours.
AwareDatetime = Annotated[datetime, Meta(tz=True)]

SchoolKindName = Literal["city", "rural"]
LessonKindName = Literal["dedicated", "famous_teacher", "famous_school"]
LessonStateName = Literal["scheduled", "open", "live", "ended", "cancelled"]
UserRoleName = Literal["admin", "school_admin", "teacher", "reviewer", "device"]
JoinRoleName = Literal["main", "receiving", "watch"]

Password = Annotated[str, Meta(min_length=1, max_length=1000)]


class Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies."""


class Response(msgspec.Struct, kw_only=True):
    """Base of response bodies."""


# ------------------------------------------------------------------ errors


class ErrorDetail(Response):
    """`code` says what kind of refusal (a client may branch on it); `reason` names the rule
    that refused, stable across releases (pages translate it, with `params` filling in the
    names, dates and numbers of the sentence); `message` is the same in English for logs."""

    code: ErrorCode
    message: str
    field: str | None = None
    reason: str = ""
    params: dict[str, str | int | float | bool | None] = msgspec.field(default_factory=dict)


class ErrorBody(Response):
    """Every error response has this shape."""

    error: ErrorDetail


class Deleted(Response):
    """A register row that nothing referred to, deleted."""

    id: int


class ApiError(Exception):
    """Raised anywhere below a REST handler; becomes an ErrorBody with this HTTP status."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        reason: str | None = None,
        params: Mapping[str, str | int | float | bool | None] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.reason = reason or code.value
        self.params = dict(params or {})

    def body(self) -> ErrorBody:
        return ErrorBody(
            error=ErrorDetail(
                code=self.code,
                message=self.message,
                field=self.field,
                reason=self.reason,
                params=self.params,
            )
        )


Out = TypeVar("Out", bound=msgspec.Struct)


def from_row(into: type[Out], row: object, **computed: Any) -> Out:
    """A response read from an ORM row (or any object): each field of `into` from the row's
    attribute of the same name, but those given in `computed`. The field list is written
    once, in the struct, and the result is validated like a request: a column holding a
    value outside the schema's Literal fails here, loudly, instead of reaching a client."""
    values = {name: getattr(row, name) for name in into.__struct_fields__ if name not in computed}
    values.update(computed)
    return msgspec.convert(values, into, from_attributes=True)
