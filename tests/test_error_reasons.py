"""Refusal reasons (classroom/refusals.py): every one the API may answer has a sentence in
both page catalogues with exactly the placeholders it names; real refusals through the API
carry their reason and params; no page translates by parsing the server's English."""

from __future__ import annotations

import json
import re
from pathlib import Path

from aiohttp.test_utils import TestClient

from classroom import refusals
from classroom.models import UserRole
from tests.test_timetable_api import TERM, Client, registers, series_body

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "web" / "static"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_every_reason_has_a_sentence_in_both_languages_with_its_params() -> None:
    for lang in ("zh-CN", "en"):
        catalogue = json.loads((STATIC / "i18n" / f"{lang}.json").read_text())
        for refusal in refusals.shown():
            key = f"error.{refusal.name}"
            assert key in catalogue, (lang, key)
            assert set(PLACEHOLDER.findall(catalogue[key])) == set(refusal.says), (lang, key)


def test_every_reason_is_documented() -> None:
    doc = (ROOT / "docs" / "api.md").read_text()
    missing = [r.name for r in refusals.shown() if f"`{r.name}`" not in doc]
    assert not missing, missing


def test_a_raise_gives_exactly_the_params_of_its_reason() -> None:
    for refusal in refusals.REFUSALS.values():
        assert refusal.says is refusal.params or set(refusal.says) <= set(refusal.params) or (
            refusal.says == refusals.CLASH_SENTENCE
        ), refusal.name
    message, params = refusals.render("term_too_long", {"days": 366})
    assert (message, params) == ("a term lasts at most 366 days", {"days": 366})
    try:
        refusals.render("term_too_long", {"weeks": 52})
    except TypeError:
        pass
    else:
        raise AssertionError("a param the reason does not name is refused")


def test_no_page_parses_the_servers_messages() -> None:
    # The old translation tables matched English sentences of the server.
    tell_tales = (
        "is already booked by",
        "is not an active teacher",
        "is in active pairing",
        "Expected `",
        "has rooms connected",
        "is outside the term",
        "changed meanwhile",
    )
    for path in (STATIC / "js").glob("*.js"):
        text = path.read_text()
        for phrase in tell_tales:
            assert phrase not in text, (path.name, phrase)
        assert not re.search(r"message\.match\(|\.test\(message\)", text), path.name


def reason_of(answer: dict) -> tuple[str, dict]:
    return answer["error"]["reason"], answer["error"]["params"]


async def test_real_refusals_carry_their_reason_and_params(
    app_client: TestClient, admin_headers, headers_for
) -> None:
    admin = Client(app_client, admin_headers)
    ids = await registers(admin)

    # A domain rule of a term, with the value its sentence names.
    refused = await admin.call("POST", "/terms", 400, json={**TERM, "timezone": "Mars/Base"})
    assert reason_of(refused) == ("unknown_timezone", {"zone": "Mars/Base"})
    assert refused["error"]["message"] == "unknown timezone 'Mars/Base'"
    periods = [{"number": 2, "starts_at": "09:00", "ends_at": "08:00"}]
    refused = await admin.call("POST", "/terms", 400, json={**TERM, "periods": periods})
    assert reason_of(refused) == ("period_end_before_start", {"number": 2})
    term = await admin.call("POST", "/terms", 201, json=TERM)
    refused = await admin.call("POST", "/terms", 409, json=TERM)
    assert reason_of(refused)[0] == "term_name_taken"
    assert refused["error"]["params"]["name"] == TERM["name"]

    # Request validation names its limit.
    refused = await admin.call(
        "POST", "/schools", 400, json={"name": "x" * 300, "kind": "city"}
    )
    assert reason_of(refused) == ("too_long", {"max": 200})

    # A double booking names both sides.
    path = f"/terms/{term['id']}/series"
    await admin.call("POST", path, 201, json=series_body(ids["pairing"]))
    refused = await admin.call("POST", path, 409, json=series_body(ids["pairing"], title="再来"))
    reason, params = reason_of(refused)
    assert reason == "double_booked"
    assert params["what_kind"] == "series" and params["what_title"] == "再来"
    assert params["other_kind"] == "lesson" and params["other_title"] == "一次函数"
    assert params["resource"] in ("classroom", "teacher") and params["more"] >= 0
    assert refused["error"]["message"] == refusals.REFUSALS["double_booked"].message(params)

    # Not found: the id, and the REST layer's own refusals.
    refused = await admin.call("GET", "/terms/99999", 404)
    assert reason_of(refused) == ("term_not_found", {"id": 99999})
    rural_admin = Client(
        app_client, await headers_for(UserRole.SCHOOL_ADMIN, school_id=ids["rural"])
    )
    refused = await rural_admin.call("POST", path, 403, json=series_body(ids["pairing"]))
    assert reason_of(refused) == ("not_your_pairing", {"id": ids["pairing"]})

    # A refused CSV import: every row with its reason.
    csv = (
        "星期,节次,学科,年级,主讲教室,听课教室,教师,课题\n"
        "周八,3,数学,初二,城关一中/301,乡村小学/听课,王,x\n"
    )
    refused = await admin.call(
        "POST",
        f"/terms/{term['id']}/import",
        400,
        data=csv.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert reason_of(refused) == ("csv_rows_refused", {"count": 1, "lines": "2"})
    [row] = refused["rows"]
    assert (row["reason"], row["params"]) == ("csv_not_weekday", {"value": "周八"})
    assert row["message"] == "'周八' is not a weekday (星期一..星期日, 周一, 1..7)"
