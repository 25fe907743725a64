"""Join tokens: each way a token can be wrong gives its own code, so a client knows what to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from signaling.errors import ErrorCode
from signaling.live.tokens import AUDIENCE, JoinRole, JoinTokens, TokenError

SECRET = b"s" * 32
tokens = JoinTokens(SECRET)


def mint(**kw: object) -> str:
    fields: dict = dict(
        lesson_id=7, classroom_id=3, role=JoinRole.RECEIVING, ttl=timedelta(minutes=5)
    )
    fields.update(kw)
    return tokens.mint(**fields)[0]


def code_of(token: str, **kw: object) -> ErrorCode:
    with pytest.raises(TokenError) as refused:
        tokens.verify(token, **{"lesson_id": 7, **kw})
    assert refused.value.message
    return refused.value.code


def test_a_good_token_gives_its_claims() -> None:
    token, expires_at = tokens.mint(
        lesson_id=7, classroom_id=3, role=JoinRole.MAIN, ttl=timedelta(minutes=5), subject="li"
    )
    claims = tokens.verify(token, lesson_id=7, role=JoinRole.MAIN)
    assert (claims.lesson_id, claims.classroom_id, claims.role) == (7, 3, JoinRole.MAIN)
    assert claims.expires_at == expires_at and claims.subject == "li" and claims.token_id
    assert timedelta(minutes=4) < expires_at - datetime.now(UTC) <= timedelta(minutes=5)
    # lesson_id=None accepts the token's own lesson; role=None accepts its own role
    assert tokens.verify(token, lesson_id=None).lesson_id == 7


def test_each_token_has_its_own_id() -> None:
    assert (
        tokens.verify(mint(), lesson_id=7).token_id != tokens.verify(mint(), lesson_id=7).token_id
    )


def test_an_expired_token_says_so() -> None:
    assert code_of(mint(ttl=timedelta(seconds=-60))) == ErrorCode.TOKEN_EXPIRED
    token = mint(ttl=timedelta(seconds=60))
    later = datetime.now(UTC) + timedelta(seconds=60 + 11)
    assert code_of(token, now=later) == ErrorCode.TOKEN_EXPIRED
    # within the clock-skew leeway it still works
    assert tokens.verify(token, lesson_id=7, now=later - timedelta(seconds=5)).lesson_id == 7


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature
        lambda t: (
            t.split(".")[0]
            + "."
            + jwt.utils.base64url_encode(b'{"lsn":8}').decode()
            + "."
            + t.split(".")[2]
        ),
        lambda t: "not a token",
        lambda t: "",
        lambda t: JoinTokens(b"another-secret-of-32-bytes-long!").mint(
            lesson_id=7, classroom_id=3, role=JoinRole.RECEIVING, ttl=timedelta(minutes=5)
        )[0],
    ],
    ids=["signature", "payload", "garbage", "empty", "other-secret"],
)
def test_a_tampered_or_foreign_token_is_invalid(tamper) -> None:
    assert code_of(tamper(mint())) == ErrorCode.TOKEN_INVALID


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "someone-else", "lsn": 7, "cls": 3, "role": "receiving", "jti": "x"},
        {"aud": AUDIENCE, "lsn": 7, "cls": 3, "jti": "x"},  # no role
        {"aud": AUDIENCE, "lsn": "7", "cls": 3, "role": "receiving", "jti": "x"},
        {"aud": AUDIENCE, "lsn": 7, "cls": 3, "role": "teacher", "jti": "x"},
        {"aud": AUDIENCE, "lsn": 7, "cls": None, "role": "main", "jti": "x"},
        {"aud": AUDIENCE, "lsn": 7, "cls": 3, "role": "watch", "jti": "x"},
    ],
    ids=["audience", "no-role", "lesson-type", "role-name", "main-without-room", "watch-with-room"],
)
def test_a_well_signed_token_of_the_wrong_shape_is_invalid(claims: dict) -> None:
    claims = {**claims, "exp": int(datetime.now(UTC).timestamp()) + 300}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert code_of(token) == ErrorCode.TOKEN_INVALID


def test_an_unsigned_token_is_invalid() -> None:
    claims = {"aud": AUDIENCE, "lsn": 7, "cls": 3, "role": "main", "jti": "x", "exp": 2**31}
    token = jwt.encode(claims, None, algorithm="none")
    assert code_of(token) == ErrorCode.TOKEN_INVALID


def test_a_token_for_another_lesson_says_so() -> None:
    assert code_of(mint(lesson_id=8)) == ErrorCode.TOKEN_WRONG_LESSON


def test_a_token_for_another_role_says_so() -> None:
    assert code_of(mint(), role=JoinRole.MAIN) == ErrorCode.TOKEN_WRONG_ROLE


def test_expiry_is_reported_before_the_wrong_lesson() -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    assert code_of(mint(lesson_id=8), now=later) == ErrorCode.TOKEN_EXPIRED


def test_a_watch_token_names_no_classroom() -> None:
    token = mint(role=JoinRole.WATCH, classroom_id=None)
    claims = tokens.verify(token, lesson_id=7, role=JoinRole.WATCH)
    assert (claims.role, claims.classroom_id) == (JoinRole.WATCH, None)
    with pytest.raises(ValueError):
        mint(role=JoinRole.WATCH, classroom_id=3)
    with pytest.raises(ValueError):
        mint(role=JoinRole.MAIN, classroom_id=None)
