"""Every page, on a classroom PC (1366x768) and on a phone (360x740), in Chinese and English.

One real server holds two open lessons (taught by "王老师" and by "李芳") and one library
entry registered from a real MP4. An admin signs in from the browser (POST
/api/v1/auth/session through session.js); /login is seen signed out. For each page:

- nothing scrolls sideways: document.scrollingElement.scrollWidth <= innerWidth + 1;
- <html lang> is zh-CN by default and en with ?lang=en;
- no visible text (nor placeholder, aria-label or title) is a catalogue key left
  untranslated ("library.filter.q");
- the English page shows no Chinese character outside data: a CJK run is allowed only as
  part of a string the database holds (a school, classroom, lesson or user name, found by
  asking the API) or inside an element marked lang="zh-*" (the link back to 中文);
- from the keyboard (zh, 1366): Tab reaches every visible enabled control, each one has an
  accessible name, and its computed outline / box-shadow / border / background when
  focused differs from when it is not (a visible focus indicator);
- screenshots: test-artifacts/screenshots/reach-<page>-<width>.png (Chinese).

The lesson headers show a teacher's title once: "王老师" as given, "李芳" as 李芳老师 (and
Teacher 李芳 in English), through api.js teacherTitle().

Every finding is collected and reported together, so one run tells all that is wrong.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_available, launch_chromium
from tests.live_harness import LiveServer, create_lesson, running_server
from tests.page_session import eventually, screenshot
from tests.test_reviewer_browser import make_pairing, mp4, register_entry  # noqa: F401

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
]

ADMIN = ("e2e-admin", "e2e-password-1")  # created by running_server
CLASSROOM_PC = {"width": 1366, "height": 768}
PHONE = {"width": 360, "height": 740}
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+")
STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


@dataclass
class Page:
    """One page to visit: its name in screenshots, its path, and when it is drawn."""

    name: str
    path: str
    ready: str = "true"  # a JS expression that holds once the page has drawn its content
    signed_in: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


# What a page shows once it is drawn; every page first mounts the shared top bar.
INSPECT = r"""
(dataStrings) => {
  const KEY = /^[a-z_]+(\.[a-z0-9_]+)+$/;
  const CJK = /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+/g;
  const shown = (el) => {
    const box = el.closest('select') ?? el;
    return box.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true });
  };
  const inZh = (el) => (el.closest('[lang]')?.getAttribute('lang') ?? '').startsWith('zh')
    && el.closest('[lang]') !== document.documentElement;
  const keys = [];
  const cjk = [];
  const outsideData = (text) => {
    let rest = text;
    for (const s of dataStrings) if (rest.includes(s)) rest = rest.split(s).join(' ');
    return rest.match(CJK) ?? [];
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    const text = node.textContent.trim();
    if (!text || !el || ['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(el.tagName)) continue;
    if (!shown(el)) continue;
    const where = el.id ? `#${el.id}` : `${el.tagName.toLowerCase()}.${el.className}`;
    if (KEY.test(text)) keys.push(`${where}: ${text}`);
    if (!inZh(el) && outsideData(text).length) cjk.push(`${where}: ${text.slice(0, 80)}`);
  }
  for (const el of document.querySelectorAll('[placeholder], [aria-label], [title]')) {
    if (!shown(el)) continue;
    for (const name of ['placeholder', 'aria-label', 'title']) {
      const value = (el.getAttribute(name) ?? '').trim();
      if (!value) continue;
      const where = `${el.id ? '#' + el.id : el.tagName.toLowerCase()}[${name}]`;
      if (KEY.test(value)) keys.push(`${where}: ${value}`);
      if (!inZh(el) && outsideData(value).length) cjk.push(`${where}: ${value.slice(0, 80)}`);
    }
  }
  if (outsideData(document.title).length) cjk.push(`<title>: ${document.title}`);
  return {
    lang: document.documentElement.getAttribute('lang'),
    scrollWidth: document.scrollingElement.scrollWidth,
    innerWidth: window.innerWidth,
    wide: [...document.querySelectorAll('body *')]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1 && shown(el))
      .slice(0, 6)
      .map((el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${el.className}`
        + ` right=${Math.round(el.getBoundingClientRect().right)}`),
    keys,
    cjk,
  };
}
"""

# The controls Tab should reach, and for the element that has focus now: who it is, its
# accessible name, and its look; the element focused before is described as it looks now.
KEYBOARD = r"""
() => {
  const STYLE = ['outlineStyle', 'outlineWidth', 'outlineColor', 'boxShadow', 'borderTopColor',
    'borderBottomColor', 'backgroundColor', 'textDecorationLine', 'color'];
  const look = (el) => { const s = getComputedStyle(el); return STYLE.map((k) => s[k]).join('|'); };
  const text = (el) => (el?.textContent ?? '').replace(/\s+/g, ' ').trim();
  const name = (el) => {
    const by = el.getAttribute('aria-labelledby');
    if (by) return by.split(/\s+/).map((id) => text(document.getElementById(id))).join(' ').trim();
    if (el.getAttribute('aria-label')) return el.getAttribute('aria-label').trim();
    if (el.labels && el.labels.length) return [...el.labels].map(text).join(' ').trim();
    if (['A', 'BUTTON', 'SUMMARY', 'OPTION'].includes(el.tagName)) {
      const t = text(el) || [...el.querySelectorAll('img[alt]')].map((i) => i.alt).join(' ');
      if (t) return t;
    }
    if (el.tagName === 'INPUT' && ['submit', 'button', 'reset'].includes(el.type)) return el.value;
    return (el.getAttribute('title') || el.getAttribute('placeholder') || '').trim();
  };
  const id = (el) => {
    if (!el.dataset.reach) el.dataset.reach = String(++window.__reachSeq);
    return el.dataset.reach;
  };
  const label = (el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}`
    + `${el.getAttribute('href') ? '[href=' + el.getAttribute('href') + ']' : ''}`
    + ` "${name(el).slice(0, 30)}"`;
  window.__reachSeq ??= 0;
  const el = document.activeElement;
  const prev = window.__reachPrev;
  window.__reachPrev = el;
  return {
    id: el && el !== document.body ? id(el) : null,
    what: el ? label(el) : '',
    name: el ? name(el) : '',
    control: Boolean(el?.matches('a[href], button, input, select, textarea, summary, [tabindex]')),
    look: el ? look(el) : '',
    prevId: prev && prev !== document.body ? id(prev) : null,
    prevLook: prev ? look(prev) : '',
  };
}
"""

EXPECTED_CONTROLS = r"""
() => {
  window.__reachSeq ??= 0;
  const out = [];
  const radios = new Set();
  const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary,'
    + ' video[controls], audio[controls], [tabindex]';
  for (const el of document.querySelectorAll(sel)) {
    if (el.disabled || el.tabIndex < 0 || el.closest('[inert], dialog:not([open])')) continue;
    if (!el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
    const box = el.getBoundingClientRect();
    if (box.width < 1 || box.height < 1) continue;
    if (el.type === 'radio') {  // one stop per group
      if (radios.has(el.name)) continue;
      radios.add(el.name);
    }
    if (!el.dataset.reach) el.dataset.reach = String(++window.__reachSeq);
    const what = `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}`;
    const text = (el.textContent || '').trim().slice(0, 24);
    out.push({ id: el.dataset.reach, what: `${what} ${text}` });
  }
  return out;
}
"""


# True once the DOM has not changed for QUIET_MS since the first call, or MAX_WAIT_MS after
# it (a live page's clock or meters may never rest).
SETTLED = r"""
(() => {
  const QUIET_MS = 250, MAX_WAIT_MS = 2000;
  const now = performance.now();
  if (!window.__settle) {
    window.__settle = { first: now, last: now };
    new MutationObserver(() => { window.__settle.last = performance.now(); }).observe(
      document, { subtree: true, childList: true, characterData: true, attributes: true });
    return false;
  }
  return now - window.__settle.last >= QUIET_MS || now - window.__settle.first >= MAX_WAIT_MS;
})()
"""


async def data_strings(server: LiveServer) -> list[str]:
    """Every string the database gave the API that holds a Chinese character, longest
    first (so 城关一中 is taken out of a line before 城关 could be)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and CJK.search(value):
            found.add(value.strip())
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in ("/schools", "/classrooms", "/pairings", "/lessons", "/users", "/library"):
        walk(await server.api.call("GET", path))
    # A district's rating rubric (评课量表) is data too: its criteria are named in the DB.
    for entry in (await server.api.call("GET", "/library"))["items"]:
        walk(await server.api.call("GET", f"/library/{entry['id']}/rubric"))
    return sorted(found, key=len, reverse=True)


async def open_page(context: Any, base: str, page: Page, lang: str) -> Any:
    tab = await context.new_page()
    query = "?lang=en" if lang == "en" else ""
    path, _, hash_ = page.path.partition("#")
    await tab.goto(f"{base}{path}{query}{'#' + hash_ if hash_ else ''}")
    # Polled with evaluate: the pages' CSP forbids the eval that wait_for_function uses.
    # Drawn, then settled: a status line or a list may be drawn after the last answer.
    drawn = f"document.body.classList.contains('with-nav') && ({page.ready})"
    await eventually(
        lambda: tab.evaluate(f"({drawn}) && {SETTLED}"), bool, 20, f"{page.path} drawn",
        interval=0.05,
    )
    return tab


async def walk_keyboard(tab: Any) -> list[str]:
    """Tab through the page; what is wrong with its keyboard use, in words."""
    problems: list[str] = []
    expected = await tab.evaluate(EXPECTED_CONTROLS)
    await tab.evaluate("document.activeElement?.blur(); window.__reachPrev = null")
    await tab.mouse.move(0, 0)
    steps: list[dict[str, Any]] = []
    wanted = {c["id"] for c in expected}
    reached: set[str] = set()
    # A date input takes a Tab per part (year, month, day), hence the slack; one more Tab
    # after the last control shows how it looks once left.
    for _ in range(3 * len(expected) + 10):
        await tab.keyboard.press("Tab")
        steps.append(await tab.evaluate(KEYBOARD))
        if wanted <= reached:
            break
        reached.add(steps[-1]["id"])
    missing = [c["what"] for c in expected if c["id"] not in reached]
    if missing:
        problems.append(f"Tab never reaches {len(missing)} control(s): {missing[:8]}")
    seen: set[str] = set()
    for step, after in itertools.pairwise(steps):
        if not step["id"] or step["id"] in seen or not step["control"]:
            continue
        if after["id"] == step["id"]:
            continue  # still inside it (the parts of a date input): judged when left
        seen.add(step["id"])
        if not step["name"]:
            problems.append(f"no accessible name: {step['what']}")
        if after["prevLook"] == step["look"]:
            problems.append(f"no visible focus indicator: {step['what']}")
    return problems


async def check_page(context: Any, base: str, page: Page, data: list[str], width: int) -> list[str]:
    problems: list[str] = []
    for lang in ("zh-CN", "en"):
        tab = await open_page(context, base, page, lang)
        try:
            seen = await tab.evaluate(INSPECT, data)
            where = f"{page.name} {width}px {lang}"
            if seen["lang"] != lang:
                problems.append(f"{where}: <html lang={seen['lang']!r}>")
            if seen["scrollWidth"] > seen["innerWidth"] + 1:
                problems.append(
                    f"{where}: scrolls sideways ({seen['scrollWidth']} > {seen['innerWidth']}):"
                    f" {seen['wide']}"
                )
            problems += [f"{where}: catalogue key shown: {k}" for k in seen["keys"]]
            if lang == "en":
                problems += [f"{where}: Chinese outside data: {c}" for c in seen["cjk"]]
            if lang == "zh-CN":
                await screenshot(tab, f"reach-{page.name}-{width}")
                if width == CLASSROOM_PC["width"]:
                    problems += [f"{where}: {p}" for p in await walk_keyboard(tab)]
        finally:
            await tab.close()
    return problems


async def lesson_headers(context: Any, base: str, teach_id: int, watch_id: int) -> list[str]:
    """王老师 stays 王老师; 李芳 becomes 李芳老师 / Teacher 李芳 (api.js teacherTitle)."""
    problems: list[str] = []
    expectations = [
        (f"/teach/{teach_id}", "", "王老师 · ", "王老师老师"),
        (f"/watch/{watch_id}", "", "李芳老师 · ", "李芳 老师"),
        (f"/watch/{watch_id}", "?lang=en", "Teacher 李芳 · ", "老师"),
    ]
    for path, query, wanted, never in expectations:
        tab = await context.new_page()
        try:
            await tab.goto(f"{base}{path}{query}")
            await eventually(
                lambda tab=tab: tab.evaluate(
                    "document.getElementById('lesson-meta')?.textContent.includes(' · ')"
                ),
                bool,
                20,
                f"{path} lesson header",
            )
            meta = await tab.text_content("#lesson-meta")
            if wanted not in meta or never in meta:
                problems.append(f"{path}{query} header: {meta!r} (want {wanted!r})")
        finally:
            await tab.close()
    return problems


async def test_every_page_fits_speaks_both_languages_and_works_from_the_keyboard(
    tmp_path: Path,
    mp4: Path,  # noqa: F811
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        taught = await create_lesson(api, receiving=1, tag="甲")  # teacher 王老师, open
        other = await create_lesson(api, receiving=1, tag="乙")
        await api.call("PATCH", f"/lessons/{other.lesson_id}", {"teacher_name": "李芳"})
        pairing = await make_pairing(api, "城关二中", "东山小学")
        recording = await register_entry(
            server, mp4, pairing, "2026-03-02T08:00:00+08:00",
            kind="dedicated", subject="语文", grade="四年级", teacher_name="李芳", title="古诗两首",
        )  # fmt: skip
        data = await data_strings(server)
        base = server.base_url

        pages = [
            Page("login", "/login", "!document.getElementById('login-form').hidden", False),
            Page("home", "/"),
            Page("teach", f"/teach/{taught.lesson_id}",
                 "document.getElementById('lesson-meta').textContent !== ''"),
            Page("room", f"/room/{taught.lesson_id}"),
            Page("watch", f"/watch/{other.lesson_id}",
                 "document.getElementById('lesson-meta').textContent !== ''"),
            *[
                Page(f"admin-{section}", f"/admin#{section}",
                     f"window.tongbuAdmin?.section === '{section}'")
                for section in ("schools", "classrooms", "pairings", "lessons", "live")
            ],
            Page("library", "/library", "window.tongbuLibrary?.state.status === 'ready'"),
            Page("replay", f"/replay/{recording}",
                 "window.tongbuReplay && window.tongbuReplay.state.status !== 'loading'"),
            Page("broadcast", f"/broadcast/{taught.lesson_id}"),
        ]  # fmt: skip
        # Pages other work is finishing: visited when they are there.
        if (STATIC / "stats.html").exists():
            pages.append(Page("stats", "/admin/stats"))
        if (STATIC / "timetable.html").exists():
            pages.append(Page("timetable", "/admin/timetable"))

        problems: list[str] = []
        async with playwright_api.async_playwright() as p:
            browser = await launch_chromium(p)
            try:
                for viewport in (CLASSROOM_PC, PHONE):
                    anonymous = await browser.new_context(viewport=viewport, locale="zh-CN")
                    admin = await browser.new_context(viewport=viewport, locale="zh-CN")
                    signing = await admin.new_page()
                    await signing.goto(f"{base}/login")
                    await signing.evaluate(
                        "async ([u, p]) => (await import('/static/js/session.js')).signIn(u, p)",
                        list(ADMIN),
                    )
                    await signing.close()
                    for page in pages:
                        context = admin if page.signed_in else anonymous
                        problems += await check_page(context, base, page, data, viewport["width"])
                    if viewport is CLASSROOM_PC:
                        problems += await lesson_headers(
                            admin, base, taught.lesson_id, other.lesson_id
                        )
                    await anonymous.close()
                    await admin.close()
            finally:
                await browser.close()
        assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
