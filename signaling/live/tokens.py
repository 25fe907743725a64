"""Join tokens: short-lived, signed, bound to one lesson, one classroom and one role.

A classroom box or a browser receives one from the REST API and presents it in the
WebSocket `join`; the signaling server needs no database lookup to know who is knocking
(docs/ARCHITECTURE.md, decision 6). HS256 with the server's secret key: signer and verifier are
the same service, so there is no reason for public-key signatures.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt

from signaling.errors import ErrorCode

AUDIENCE = "tongbu-join"
ALGORITHM = "HS256"
# Tolerated clock difference between the server that minted and the one that verifies.
LEEWAY = timedelta(seconds=10)


class JoinRole(StrEnum):
    MAIN = "main"  # the teaching (city) classroom: publishes, stages, mutes
    RECEIVING = "receiving"  # a rural classroom: publishes, raises a hand
    WATCH = "watch"  # receives only; no classroom


class TokenError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class JoinClaims:
    lesson_id: int
    classroom_id: int | None
    role: JoinRole
    expires_at: datetime
    token_id: str
    subject: str | None  # who asked for it (a username), for the audit trail


class JoinTokens:
    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("an empty secret would sign nothing")
        self._secret = secret

    def mint(
        self,
        *,
        lesson_id: int,
        classroom_id: int | None,
        role: JoinRole,
        ttl: timedelta,
        subject: str | None = None,
    ) -> tuple[str, datetime]:
        """A token and its expiry (whole seconds, as JWT `exp` carries).

        A ttl of zero or less mints an already expired token, which tests of refusals use.
        """
        role = JoinRole(role)
        _check_room(role, classroom_id, ValueError)
        now = datetime.now(UTC)
        expires_at = datetime.fromtimestamp(int((now + ttl).timestamp()), UTC)
        claims: dict[str, Any] = {
            "aud": AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": secrets.token_urlsafe(12),
            "lsn": lesson_id,
            "cls": classroom_id,
            "role": role.value,
        }
        if subject is not None:
            claims["sub"] = subject
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_at

    def verify(
        self,
        token: str,
        *,
        lesson_id: int | None,
        role: JoinRole | None = None,
        now: datetime | None = None,
    ) -> JoinClaims:
        """The token's claims, or TokenError with the code a client can act on.

        Checked in this order so that the code is the most useful one: signature and shape
        (token_invalid), expiry (token_expired), lesson (token_wrong_lesson), role
        (token_wrong_role). `lesson_id=None` accepts the token's own lesson.
        """
        try:
            raw = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                leeway=LEEWAY,
                options={"require": ["exp", "aud", "jti", "lsn", "role"], "verify_exp": False},
            )
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise TokenError(ErrorCode.TOKEN_INVALID, f"invalid join token: {exc}") from None
        claims = _claims(raw)
        now = now or datetime.now(UTC)
        if claims.expires_at + LEEWAY <= now:
            raise TokenError(
                ErrorCode.TOKEN_EXPIRED,
                f"the join token expired at {claims.expires_at.isoformat()}",
            )
        if lesson_id is not None and claims.lesson_id != lesson_id:
            raise TokenError(
                ErrorCode.TOKEN_WRONG_LESSON,
                f"the join token is for lesson {claims.lesson_id}, not {lesson_id}",
            )
        if role is not None and claims.role != JoinRole(role):
            raise TokenError(
                ErrorCode.TOKEN_WRONG_ROLE,
                f"the join token is for role {claims.role}, not {JoinRole(role)}",
            )
        return claims


def _check_room(role: JoinRole, classroom_id: object, error: type[Exception]) -> None:
    """Publishing roles speak for one classroom; a watcher speaks for none."""
    if role == JoinRole.WATCH and classroom_id is not None:
        raise error("a watch token names no classroom")
    if role != JoinRole.WATCH and (not isinstance(classroom_id, int) or classroom_id <= 0):
        raise error(f"a {role} token names its classroom")


def _claims(raw: dict[str, Any]) -> JoinClaims:
    def invalid(message: str) -> TokenError:
        return TokenError(ErrorCode.TOKEN_INVALID, f"invalid join token: {message}")

    lesson_id, classroom_id = raw.get("lsn"), raw.get("cls")
    if not isinstance(lesson_id, int) or isinstance(lesson_id, bool):
        raise invalid("lesson is not an integer")
    if not isinstance(raw.get("exp"), int | float) or isinstance(raw.get("exp"), bool):
        raise invalid("expiry is not a number")
    if isinstance(classroom_id, bool):
        raise invalid("classroom is not an integer")
    try:
        role = JoinRole(raw.get("role", ""))  # missing: ValueError, as for an unknown role
    except ValueError:
        raise invalid("unknown role") from None
    try:
        _check_room(role, classroom_id, ValueError)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    subject = raw.get("sub")
    return JoinClaims(
        lesson_id=lesson_id,
        classroom_id=classroom_id,
        role=role,
        expires_at=datetime.fromtimestamp(raw["exp"], UTC),
        token_id=str(raw["jti"]),
        subject=subject if isinstance(subject, str) else None,
    )
