"""Schools, classrooms, pairings, users and the audit trail, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom import audit, schools, users
from classroom.models import Conflict, InvalidInput, NotFound, utcnow

Sessions = async_sessionmaker[AsyncSession]


async def test_classroom_names_are_unique_within_a_school_only(db: Sessions) -> None:
    async with db() as s:
        a = await schools.create_school(s, name="甲校", kind="city")
        b = await schools.create_school(s, name="乙校", kind="rural", region="山区")
        await schools.create_classroom(s, school_id=a.id, name="301")
        await schools.create_classroom(s, school_id=b.id, name="301")
        with pytest.raises(Conflict) as clash:
            await schools.create_classroom(s, school_id=a.id, name="301")
        assert clash.value.field == "name"
        with pytest.raises(NotFound):
            await schools.create_classroom(s, school_id=999, name="x")
    async with db() as s:
        assert [c.school.name for c in await schools.list_classrooms(s)] == ["甲校", "乙校"]
        assert len(await schools.list_classrooms(s, school_id=b.id)) == 1


async def test_school_kind_and_timezone_are_checked(db: Sessions) -> None:
    async with db() as s:
        with pytest.raises(InvalidInput) as kind:
            await schools.create_school(s, name="x", kind="suburban")
        assert kind.value.field == "kind"
        with pytest.raises(InvalidInput) as zone:
            await schools.create_school(s, name="x", kind="city", timezone="Mars/Olympus")
        assert zone.value.field == "timezone"
        school = await schools.create_school(s, name="x", kind="city")
        assert school.timezone == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("receiving", "error"),
    [
        ([], InvalidInput),
        ([1, 2, 3, 4, 5], InvalidInput),
        ([1, 1], InvalidInput),
        (["main"], InvalidInput),
        ([999], NotFound),
    ],
)
async def test_a_pairing_has_one_to_four_distinct_receiving_rooms(
    db: Sessions, receiving: list, error: type[Exception]
) -> None:
    async with db() as s:
        school = await schools.create_school(s, name="x", kind="rural")
        rooms = [
            (await schools.create_classroom(s, school_id=school.id, name=f"{i}")).id
            for i in range(6)
        ]
        main = rooms[5]
        ids = [main if r == "main" else (r if r == 999 else rooms[r - 1]) for r in receiving]
        with pytest.raises(error):
            await schools.create_pairing(
                s, name="p", main_classroom_id=main, receiving_classroom_ids=ids
            )
        pairing = await schools.create_pairing(
            s, name="ok", main_classroom_id=main, receiving_classroom_ids=rooms[3::-1]
        )
    async with db() as s:
        again = await schools.get_pairing(s, pairing.id)
    assert again is not None
    assert [m.classroom_id for m in again.members] == rooms[3::-1]


async def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(db: Sessions) -> None:
    async with db() as s:
        await users.create_user(s, username="li", password="right-password", role="teacher")
        for _ in range(users.MAX_FAILED_LOGINS):
            with pytest.raises(users.AuthenticationFailed):
                await users.authenticate(s, "li", "wrong-password")
        with pytest.raises(users.AuthenticationFailed) as locked:
            await users.authenticate(s, "li", "right-password")
        assert locked.value.reason == "locked"
        later = utcnow() + users.LOCKOUT + timedelta(seconds=1)
        user = await users.authenticate(s, "li", "right-password", now=later)
        assert user.username == "li" and user.failed_logins == 0


async def test_unknown_users_and_disabled_accounts_are_refused(db: Sessions) -> None:
    async with db() as s:
        user = await users.create_user(s, username="zhao", password="pass-word-1", role="reviewer")
        with pytest.raises(users.AuthenticationFailed) as unknown:
            await users.authenticate(s, "nobody", "pass-word-1")
        assert unknown.value.reason == "unknown_user"
        user.disabled = True
        await s.commit()
        with pytest.raises(users.AuthenticationFailed) as disabled:
            await users.authenticate(s, "zhao", "pass-word-1")
        assert disabled.value.reason == "disabled"
        with pytest.raises(Conflict):
            await users.create_user(s, username="zhao", password="pass-word-1", role="reviewer")
        with pytest.raises(InvalidInput):
            await users.create_user(s, username="short", password="1234", role="reviewer")


async def test_api_tokens_resolve_until_revoked_or_expired(db: Sessions) -> None:
    async with db() as s:
        user = await users.create_user(s, username="wang", password="pass-word-1", role="admin")
        forever = await users.issue_token(s, user, name="script")
        brief = await users.issue_token(
            s, user, name="login", expires_at=utcnow() + timedelta(minutes=1)
        )
        assert (await users.resolve_token(s, forever)).username == "wang"
        assert await users.resolve_token(s, brief) is not None
        later = utcnow() + timedelta(minutes=2)
        assert await users.resolve_token(s, brief, now=later) is None
        assert await users.resolve_token(s, forever + "x") is None
        assert await users.revoke_token(s, forever)
        assert await users.resolve_token(s, forever) is None


async def test_audit_events_keep_actor_action_and_detail(db: Sessions) -> None:
    async with db() as s:
        user = await users.create_user(s, username="sun", password="pass-word-1", role="admin")
        await audit.record(s, user, "lesson_ended", "lesson:3", {"reason": "x"}, "10.0.0.5")
        await audit.record(s, "someone", "login_failed", "user:someone", None, None)
    async with db() as s:
        newest, older = await audit.list_events(s)
    assert (newest.action, newest.actor_id, newest.actor_name) == ("login_failed", None, "someone")
    assert (older.actor_id, older.detail, older.remote) == (user.id, {"reason": "x"}, "10.0.0.5")
