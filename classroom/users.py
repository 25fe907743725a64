"""Users, passwords (argon2) with lockout, and API bearer tokens.

Passwords are hashed with argon2id in a worker thread: a hash costs tens of milliseconds
of CPU, and the event loop also carries live lessons. After MAX_FAILED_LOGINS wrong
passwords an account is locked for LOCKOUT, which turns online guessing into a crawl.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import Parameters, PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import refusals
from classroom.models import (
    ApiToken,
    Classroom,
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    School,
    User,
    UserRole,
    utcnow,
)

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "tb_"  # makes a leaked token recognisable to secret scanners and humans
# Writing last_used_at on every request would turn every read into a write.
LAST_USED_GRANULARITY = timedelta(minutes=1)

# RFC 9106's second recommended choice (argon2id, 64 MiB, 3 passes, 4 lanes; its first needs
# 2 GiB a hash): ~0.15 s of CPU on a 2-core box. The test process swaps in argon2's CHEAPEST
# through use_password_parameters (tests/conftest.py); a stored hash carries its own.
PASSWORD_PARAMETERS = profiles.RFC_9106_LOW_MEMORY
_hasher = PasswordHasher.from_parameters(PASSWORD_PARAMETERS)


def use_password_parameters(parameters: Parameters) -> None:
    """Hash new passwords with these: for the test suite, which makes a few thousand
    accounts and would spend minutes of CPU on them. Verification reads each hash's own
    parameters, so hashes made before still verify."""
    global _hasher
    _hasher = PasswordHasher.from_parameters(parameters)
    dummy_hash.cache_clear()


@functools.cache
def dummy_hash() -> str:
    """Verified against when the username is unknown, so that a miss costs as long as a hit
    and response times do not reveal which usernames exist. Made on first use (an argon2
    hash costs ~0.2 s, which every `tongbu` command would pay at import); the server makes
    it as it starts (signaling/app.py), so no sign-in pays it."""
    return _hasher.hash(secrets.token_urlsafe(16))


class AuthenticationFailed(DomainError):
    """Wrong username or password, a disabled or a locked account.

    `reason` is for the audit log only; callers show one message for all of them.
    """

    def __init__(self, reason: str, user: User | None = None) -> None:
        message, params = refusals.render(reason, {})
        super().__init__(message, reason=reason, params=params)
        self.user = user


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


async def create_user(
    db: AsyncSession,
    *,
    username: str,
    password: str,
    role: UserRole | str,
    display_name: str = "",
    school_id: int | None = None,
    classroom_id: int | None = None,
) -> User:
    """A new account; commits. A device account names its classroom, and its school is
    that classroom's (`school_id`, when given too, must agree)."""
    try:
        role = UserRole(role)
    except ValueError:
        raise InvalidInput.because("unknown_role", field="role", role=role) from None
    check_password_rules(username, password)
    if role == UserRole.DEVICE or classroom_id is not None:
        school_id = (await device_classroom(db, role, classroom_id, school_id)).school_id
    elif school_id is not None and await db.get(School, school_id) is None:
        raise NotFound.because("school_not_found", field="school_id", id=school_id)
    user = User(
        username=username,
        display_name=display_name or username,
        role=role.value,
        school_id=school_id,
        classroom_id=classroom_id,
        password_hash=await hash_password(password),
    )
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise Conflict.because("username_taken", field="username", username=username) from None
    return user


async def device_classroom(
    db: AsyncSession, role: UserRole | str, classroom_id: int | None, school_id: int | None
) -> Classroom:
    """The classroom a device account is bound to, checked: only devices are bound, every
    device is, to an existing active classroom, in `school_id` when that is given."""
    if role != UserRole.DEVICE:
        raise InvalidInput.because("not_a_device", field="classroom_id")
    if classroom_id is None:
        raise InvalidInput.because("device_needs_classroom", field="classroom_id")
    classroom = await db.get(Classroom, classroom_id)
    if classroom is None:
        raise NotFound.because("classroom_not_found", field="classroom_id", id=classroom_id)
    if not classroom.active:
        raise Conflict.because("classroom_archived", field="classroom_id", id=classroom_id)
    if school_id is not None and school_id != classroom.school_id:
        raise InvalidInput.because(
            "device_school_mismatch",
            field="school_id",
            classroom_id=classroom_id,
            classroom_school_id=classroom.school_id,
            school_id=school_id,
        )
    return classroom


async def get_user_by_name(db: AsyncSession, username: str) -> User | None:
    return await db.scalar(sa.select(User).where(User.username == username))


async def join_token_revoked(
    db: AsyncSession, username: str | None, classroom_id: int | None
) -> str | None:
    """Why a join token minted for `username` no longer speaks for it, or None.

    Join tokens are signed, not stored, so disabling an account could not reach the tokens
    it already holds (a box's rejoin token lasts until after its lesson). Their holder is
    checked at every join instead. A subject that names no account (the demo, a token an
    operator minted on the server) is the server's own word and stays valid.
    """
    if username is None:
        return None
    user = await get_user_by_name(db, username)
    return None if user is None else token_revoked_for(user, classroom_id)


def token_revoked_for(user: User, classroom_id: int | None) -> str | None:
    """The rule behind `join_token_revoked`, also applied to the sessions already joined
    when an admin changes the account."""
    if user.disabled:
        return f"the account {user.username!r} is disabled"
    if user.role == UserRole.DEVICE and classroom_id is not None and (
        user.classroom_id != classroom_id
    ):
        return (f"the device account {user.username!r} no longer belongs to classroom "
                f"{classroom_id}")
    return None


def check_password_rules(username: str, password: str, *, field: str = "password") -> None:
    """Refuse passwords that are too short or are the username (in any case)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput.because("password_too_short", field=field, min=MIN_PASSWORD_LENGTH)
    if password.strip().casefold() == username.strip().casefold():
        raise InvalidInput.because("password_is_username", field=field)


async def set_password(db: AsyncSession, user: User, password: str) -> None:
    check_password_rules(user.username, password)
    user.password_hash = await hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    await db.commit()


async def authenticate(
    db: AsyncSession, username: str, password: str, *, now: datetime | None = None
) -> User:
    """The user if the password is right and the account usable; commits the counters.

    A locked account is refused even with the right password, so a guesser learns nothing
    while the lock lasts.
    """
    now = now or utcnow()
    user = await get_user_by_name(db, username)
    if user is None:
        await _verify(dummy_hash(), password)
        raise AuthenticationFailed("unknown_user")
    if user.locked_until is not None and user.locked_until > now:
        await _verify(dummy_hash(), password)
        raise AuthenticationFailed("locked", user)
    if not await _verify(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
        await db.commit()
        raise AuthenticationFailed(
            "locked_now" if user.locked_until and user.locked_until > now else "bad_password",
            user,
        )
    if user.disabled:
        raise AuthenticationFailed("disabled", user)
    user.failed_logins = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
    await db.commit()
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    db: AsyncSession, user: User, *, name: str = "", expires_at: datetime | None = None
) -> str:
    """A new bearer token for `user`; the plain text is returned once and never stored.

    `expires_at` None: valid until revoked (for scripts and classroom boxes).
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.add(
        ApiToken(
            user_id=user.id,
            token_sha256=_digest(token),
            name=name,
            expires_at=expires_at,
        )
    )
    await db.commit()
    return token


async def resolve_token(
    db: AsyncSession, token: str, *, now: datetime | None = None
) -> User | None:
    """The user behind a bearer token, or None if unknown, revoked, expired or disabled."""
    now = now or utcnow()
    row = await db.scalar(sa.select(ApiToken).where(ApiToken.token_sha256 == _digest(token)))
    if row is None or row.revoked or row.user.disabled:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
        row.last_used_at = now
        await db.commit()
    return row.user


async def revoke_token(db: AsyncSession, token: str) -> bool:
    result = await db.execute(
        sa.update(ApiToken).where(ApiToken.token_sha256 == _digest(token)).values(revoked=True)
    )
    await db.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]  # DML: a CursorResult, typed Result


async def revoke_tokens_of(db: AsyncSession, user_id: int, *, keep: str | None = None) -> int:
    """Revoke every API token of a user but `keep` (a token's plain text); commits."""
    query = sa.update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked.is_(False))
    if keep is not None:
        query = query.where(ApiToken.token_sha256 != _digest(keep))
    result = await db.execute(query.values(revoked=True))
    await db.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]  # DML: a CursorResult, typed Result


async def change_password(db: AsyncSession, user: User, current: str, new: str) -> User:
    """Set a new password after checking the current one; commits.

    The check goes through authenticate(), so wrong guesses count towards the lockout
    like wrong logins do: a stolen session cannot be used to guess the password.
    Raises AuthenticationFailed or InvalidInput (field "new").
    """
    user = await authenticate(db, user.username, current)
    check_password_rules(user.username, new, field="new")
    if new == current:
        raise InvalidInput.because("password_unchanged", field="new")
    await set_password(db, user, new)
    return user


async def list_users(db: AsyncSession, *, school_id: int | None = None) -> list[User]:
    query = sa.select(User).order_by(User.id)
    if school_id is not None:
        query = query.where(User.school_id == school_id)
    return list((await db.scalars(query)).all())


async def update_user(
    db: AsyncSession,
    user: User,
    *,
    display_name: str | None = None,
    role: UserRole | str | None = None,
    school_id: int | None = None,
    clear_school: bool = False,
    disabled: bool | None = None,
    classroom_id: int | None = None,
) -> User:
    """Change the given fields; commits. The caller decides who may change what.

    A device stays bound to a classroom: binding one (`classroom_id`) moves it to the
    classroom's school, and moving it to another school needs a classroom there. A user
    who stops being a device loses the binding. Everything is checked before anything
    changes.
    """
    if role is not None:
        try:
            role = UserRole(role)
        except ValueError:
            raise InvalidInput.because("unknown_role", field="role", role=role) from None
    new_role = role or UserRole(user.role)
    bound = classroom_id
    if new_role == UserRole.DEVICE and bound is None and user.classroom_id is not None:
        keeps_school = school_id is None or school_id == user.school_id
        bound = user.classroom_id if keeps_school else None
    if new_role == UserRole.DEVICE and (
        bound is not None or role is not None or school_id is not None
    ):
        school_id = (await device_classroom(db, new_role, bound, school_id)).school_id
    elif classroom_id is not None:
        await device_classroom(db, new_role, classroom_id, school_id)  # raises: not a device
    if school_id is not None and await db.get(School, school_id) is None:
        raise NotFound.because("school_not_found", field="school_id", id=school_id)
    if role is not None:
        user.role = role.value
    user.classroom_id = bound if new_role == UserRole.DEVICE else None
    if school_id is not None:
        user.school_id = school_id
    elif clear_school:
        user.school_id = None
    if display_name is not None:
        user.display_name = display_name
    if disabled is not None:
        user.disabled = disabled
    await db.commit()
    return user


async def unlock(db: AsyncSession, user: User) -> User:
    user.failed_logins = 0
    user.locked_until = None
    await db.commit()
    return user


def is_locked(user: User, *, now: datetime | None = None) -> bool:
    return user.locked_until is not None and user.locked_until > (now or utcnow())
