"""Importing a school's timetable CSV: all or nothing, every bad row named by line."""

from __future__ import annotations

from datetime import time

import pytest
import sqlalchemy as sa

from classroom import schools, timetable, timetable_csv
from classroom.models import InvalidInput, Lesson, UserRole
from classroom.timetable_csv import ImportRejected, parse_period, parse_weekday
from classroom.timetable_models import LessonSeries
from classroom.users import create_user
from tests.timetable_helpers import BEFORE_TERM, make_term, weekly

HEADER = "星期,节次,学科,年级,主讲教室,听课教室,教师,课题,单双周\n"
GOOD = (
    "星期一,第3节,数学,初二,城关一中/301,乡村小学一/听课一、乡村小学二/听课二,王芳,一次函数,\n"
    "周三,4,语文,初二,城关一中/302,听课三,李明,春,双周\n"
)


async def registers(s) -> dict[str, int]:
    """城关一中 301 → 乡村小学一 听课一 + 乡村小学二 听课二; 302 → 乡村小学三 听课三."""
    city = await schools.create_school(s, name="城关一中", kind="city")
    ids: dict[str, int] = {"city": city.id}
    for room in ("301", "302"):
        ids[room] = (await schools.create_classroom(s, school_id=city.id, name=room)).id
    for n, name in enumerate(("乡村小学一", "乡村小学二", "乡村小学三"), start=1):
        school = await schools.create_school(s, name=name, kind="rural")
        room = "听课" + "一二三"[n - 1]
        ids[room] = (await schools.create_classroom(s, school_id=school.id, name=room)).id
    ids["p301"] = (
        await schools.create_pairing(
            s,
            name="301",
            main_classroom_id=ids["301"],
            receiving_classroom_ids=[ids["听课一"], ids["听课二"]],
        )
    ).id
    ids["p302"] = (
        await schools.create_pairing(
            s, name="302", main_classroom_id=ids["302"], receiving_classroom_ids=[ids["听课三"]]
        )
    ).id
    teacher = await create_user(
        s,
        username="wangfang",
        password="correct horse battery",
        role=UserRole.TEACHER,
        school_id=city.id,
        display_name="王芳",
    )
    ids["wangfang"] = teacher.id
    return ids


async def counts(s) -> tuple[int, int]:
    series = await s.scalar(sa.select(sa.func.count()).select_from(LessonSeries))
    lessons = await s.scalar(sa.select(sa.func.count()).select_from(Lesson))
    return int(series or 0), int(lessons or 0)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "gb18030", "utf-16"])
async def test_a_good_file_imports_in_every_encoding_excel_writes(db, encoding: str) -> None:
    text = HEADER + GOOD
    if encoding == "utf-16":  # Excel's "Unicode text": UTF-16 with BOM, tab-separated
        text = text.replace(",", "\t")
    data = text.encode(encoding)
    if encoding == "gb18030":
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")  # really not UTF-8
    async with db() as s:
        term_id = await make_term(s)
        ids = await registers(s)
        report = await timetable_csv.import_timetable(s, term_id, data, now=BEFORE_TERM)
        series = list((await s.scalars(sa.select(LessonSeries).order_by(LessonSeries.id))).all())
        lessons = await counts(s)
    # Mondays but 10-05: 18. Wednesdays of even weeks (week 1 holds 09-01): 09-09 .. 01-13,
    # ten, week 6's being Saturday 10-10 (调休 for Wednesday 10-07, 国庆).
    assert (report.rows, report.series_created, report.lessons_created) == (2, 2, 18 + 10)
    assert lessons == (2, 28)
    monday, wednesday = series
    assert (monday.pairing_id, monday.weekday, monday.period, monday.teacher_name) == (
        ids["p301"],
        1,
        3,
        "王芳",
    )
    assert monday.teacher_user_id == ids["wangfang"]  # the name matched the teacher's account
    assert (wednesday.pairing_id, wednesday.weekday, wednesday.period) == (ids["p302"], 3, 4)
    assert (wednesday.week_parity, wednesday.teacher_user_id, wednesday.title) == (
        "even",
        None,
        "春",
    )


async def test_mixed_good_and_bad_rows_import_nothing_and_name_every_bad_row(db) -> None:
    rows = [
        # line 2, good:
        "星期一,3,数学,初二,城关一中/301,乡村小学一/听课一、乡村小学二/听课二,王芳,一次函数,",
        "星期八,3,数学,初二,城关一中/301,听课一;听课二,王芳,一次函数,",  # 3 bad weekday
        "星期二,3,数学,初二,城关一中/999,听课一;听课二,王芳,一次函数,",  # 4 unknown classroom
        "星期二,第九节,数学,初二,城关一中/301,听课一;听课二,王芳,一次函数,",  # 5 unknown period
        "周一,第三节,英语,初二,301,听课一|听课二,赵六,Unit 1,",  # 6 same room as line 2
        "星期四,1,物理,初二,城关一中/301,听课三,王芳,力,",  # 7 not a pairing
        "星期二,1,化学,初三,城关一中/302,听课三,钱七,元素,",  # 8 clashes with the database
        "星期五,1,化学,初三,城关一中/302,听课三,钱七,元素,隔周",  # 9 bad parity
        "星期五,2,,初三,城关一中/302,听课三,钱七,元素,",  # 10 empty subject
    ]
    data = (HEADER + "\n".join(rows) + "\n").encode("utf-8-sig")
    async with db() as s:
        term_id = await make_term(s)
        ids = await registers(s)
        # Already on the calendar: 302 on Tuesdays, period 1.
        existing, _ = await timetable.create_series(
            s, term_id, weekly(ids["p302"], 2, 1), now=BEFORE_TERM
        )
        existing_id = existing.id
        before = await counts(s)
        with pytest.raises(ImportRejected) as rejected:
            await timetable_csv.import_timetable(s, term_id, data, now=BEFORE_TERM)
        after = await counts(s)

    assert after == before  # nothing imported
    errors = {e.line: e for e in rejected.value.errors}
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9, 10]  # line 2 is good
    assert errors[3].column == "星期" and "星期八" in errors[3].message
    assert (
        errors[4].column == "主讲教室" and "unknown classroom '城关一中/999'" in errors[4].message
    )
    assert errors[5].column == "节次" and "no period 9" in errors[5].message
    assert "conflict" in errors[6].message and "CSV line 2" in errors[6].message
    assert f"classroom {ids['301']} (城关一中 301)" in errors[6].message
    assert "2026-09-07 09:55–10:40 +08:00" in errors[6].message
    assert errors[7].column == "听课教室" and "no pairing" in errors[7].message
    assert f"series {existing_id}" in errors[8].message and "CSV line 8" in errors[8].message
    assert "lessons of this row clash" in errors[8].message
    assert errors[9].column == "单双周" and errors[10].column == "学科"
    assert "8 row(s)" in rejected.value.message


async def test_a_dry_run_reports_and_writes_nothing(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        await registers(s)
        report = await timetable_csv.import_timetable(
            s, term_id, (HEADER + GOOD).encode(), dry_run=True, now=BEFORE_TERM
        )
        assert (report.series_created, report.lessons_created) == (2, 28)
        assert await counts(s) == (0, 0)


async def test_a_school_admins_import_is_limited_to_their_school(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        ids = await registers(s)
        other = await schools.create_school(s, name="实验中学", kind="city")
        with pytest.raises(ImportRejected) as rejected:
            await timetable_csv.import_timetable(
                s, term_id, (HEADER + GOOD).encode(), school_id=other.id, now=BEFORE_TERM
            )
    assert [(e.line, e.column) for e in rejected.value.errors] == [(2, "主讲教室"), (3, "主讲教室")]
    assert "not in your school" in rejected.value.errors[0].message
    assert ids  # registers were made


async def test_headers_are_checked_before_rows(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        with pytest.raises(InvalidInput, match="missing columns 主讲教室"):
            await timetable_csv.import_timetable(
                s, term_id, "星期,节次,学科,年级,听课教室,教师,课题\n".encode()
            )
        with pytest.raises(InvalidInput, match="neither UTF-8 nor GB18030"):
            await timetable_csv.import_timetable(s, term_id, b"\x81\x30\xff\xff,\x00")


def test_cells_in_the_forms_schools_write() -> None:
    assert [
        parse_weekday(x) for x in ("星期一", "周三", "礼拜五", "星期日", "周天", "7", "Tue")
    ] == [1, 3, 5, 7, 7, 7, 2]
    assert [parse_period(x) for x in ("3", "第3节", "第三节", "第十节", "第十二节", " 5 ")] == [
        3,
        3,
        3,
        10,
        12,
        5,
    ]
    assert timetable_csv.parse_time("9:55") == time(9, 55)
    assert timetable_csv.parse_time("09：55") == time(9, 55)  # full-width colon
    for bad, parse in (
        ("星期八", parse_weekday),
        ("第零节", parse_period),
        ("25:00", timetable_csv.parse_time),
    ):
        with pytest.raises(ValueError):
            parse(bad)


async def test_archived_rooms_and_pairings_are_not_scheduled(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        ids = await registers(s)
        await schools.update_pairing(s, ids["p302"], active=False)
        await schools.update_classroom(s, ids["听课三"], active=False)
        with pytest.raises(ImportRejected) as rejected:
            await timetable_csv.import_timetable(
                s, term_id, (HEADER + GOOD).encode(), now=BEFORE_TERM
            )
        assert await counts(s) == (0, 0)
    [error] = rejected.value.errors
    assert (error.line, error.column) == (3, "听课教室")
    assert error.message == "classroom 乡村小学三/听课三 is archived"
