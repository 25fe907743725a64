// The week view of the timetable page: one teaching week of the chosen term, Monday to
// Sunday as columns and the term's periods (节次) as rows, for one pairing, classroom or
// teacher; holidays and 调休 days are marked in the column heads. Each lesson opens a
// dialog with what can be done to that one occurrence — cancel, move (date + period, or
// times), substitute teacher (代课) — without touching its series.
//
// The lessons come from GET /lessons for the week (every lesson there, so an ad-hoc one
// that blocks a room shows too); which of them are occurrences of a series, and of which,
// from GET /series/{id}/occurrences of the series of the pairings on screen. Times are
// shown in the term's zone.

import { api } from './api.js';
import { fillPeriods, readTimes, wirePeriodChoice } from './timetable_series.js';
import {
  $,
  addDays,
  confirmAction,
  el,
  handleForm,
  isoWeekday,
  localParts,
  monthDay,
  openDialog,
  setOptions,
  today,
} from './timetable_ui.js';

const PAGE = 200; // GET /lessons' largest page
const MAX_PAGES = 50;
let ctx;
let view = { by: 'pairing', target: '', week: 1, termId: null };
let shown = { lessons: [], occurrences: new Map(), days: [] };
let chosen = null; // {lesson, occurrence} in the dialog
let generation = 0; // only the latest load draws (the week may change while one is on the way)
let syncMovePeriod = () => {};

const normalise = (name) => (name || '').normalize('NFKC').replace(/\s+/g, '');

// ------------------------------------------------------------------ the term's weeks

function firstMonday(term) {
  return addDays(term.start_date, 1 - isoWeekday(term.start_date));
}

function weekDays(term, n) {
  const monday = addDays(firstMonday(term), 7 * (n - 1));
  return [0, 1, 2, 3, 4, 5, 6].map((i) => addDays(monday, i));
}

function weekOf(term, day) {
  const [a, b] = [firstMonday(term), day].map((d) => Date.parse(`${d}T00:00:00Z`));
  return Math.floor((b - a) / (7 * 86400000)) + 1;
}

function holidayOn(term, day) {
  return term.holidays.find((h) => h.start_date <= day && day <= h.end_date) ?? null;
}

function makeupOn(term, day) {
  return term.makeup_days.find((m) => m.date === day) ?? null;
}

// ------------------------------------------------------------------ choosing what to show

async function targetOptions() {
  const { t } = ctx;
  if (view.by === 'pairing') {
    return ctx.pairings.filter((p) => p.active !== false).map((p) => [p.id, ctx.pairingLabel(p.id)]);
  }
  if (view.by === 'classroom') {
    return ctx.classrooms.filter((c) => c.active !== false).map((c) => [c.id, `${c.school_name}/${c.name}`]);
  }
  // Teachers: the names the term's series use, and the teacher accounts' names.
  const names = new Map();
  const series = ctx.term ? (await api.get(`/terms/${ctx.term.id}/series`)).items : [];
  for (const s of series) names.set(normalise(s.teacher_name), s.teacher_name);
  for (const u of ctx.teachers) if (u.display_name) names.set(normalise(u.display_name), u.display_name);
  return [...names.entries()].sort((a, b) => a[1].localeCompare(b[1], 'zh-CN')).map(([key, name]) => [key, name || t('timetable.week.no_name')]);
}

async function renderControls() {
  const { t } = ctx;
  const term = ctx.term;
  $('week-by').value = view.by;
  $('week-target-label').textContent = t(`timetable.week.target_${view.by}`);
  setOptions($('week-target'), await targetOptions(), { placeholder: t(`timetable.week.choose_${view.by}`) });
  $('week-target').value = view.target;
  if ($('week-target').value !== view.target) view.target = $('week-target').value;
  const weeks = term ? Array.from({ length: term.weeks }, (_, i) => i + 1) : [];
  setOptions(
    $('week-number'),
    weeks.map((n) => {
      const days = weekDays(term, n);
      return [n, t('timetable.week.option', { n, from: monthDay(days[0]), to: monthDay(days[6]) })];
    }),
  );
  $('week-number').value = String(view.week);
  $('week-prev').disabled = !term || view.week <= 1;
  $('week-next').disabled = !term || view.week >= term.weeks;
}

// ------------------------------------------------------------------ loading

async function lessonsOfWeek(days) {
  const params = {
    from: `${addDays(days[0], -1)}T00:00:00Z`,
    to: `${addDays(days[6], 2)}T00:00:00Z`,
    limit: PAGE,
  };
  if (view.by === 'pairing') params.pairing_id = view.target;
  if (view.by === 'classroom') params.classroom_id = view.target;
  const items = [];
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const answer = await api.get('/lessons', { ...params, offset: page * PAGE });
    items.push(...answer.items);
    if (items.length >= answer.total || !answer.items.length) break;
  }
  const inWeek = new Set(days);
  return items.filter((lesson) => {
    if (!inWeek.has(localParts(lesson.planned_start, ctx.zone).date)) return false;
    if (view.by === 'teacher') return normalise(lesson.teacher_name) === view.target;
    return true;
  });
}

/** lesson id → occurrence, for the series (of this term) of the pairings shown. */
async function occurrencesOf(lessons) {
  const pairings = new Set(lessons.map((l) => l.pairing_id));
  const map = new Map();
  if (!pairings.size || !ctx.term) return map;
  const series = (await api.get(`/terms/${ctx.term.id}/series`)).items.filter((s) => pairings.has(s.pairing_id));
  const lists = await Promise.all(series.map((s) => api.get(`/series/${s.id}/occurrences`)));
  lists.forEach((answer, i) => {
    for (const occ of answer.items) map.set(occ.lesson_id, { ...occ, series: series[i] });
  });
  return map;
}

// ------------------------------------------------------------------ the grid

function rowKey(lesson) {
  const start = localParts(lesson.planned_start, ctx.zone).time;
  const end = localParts(lesson.planned_end, ctx.zone).time;
  const period = ctx.term.periods.find((p) => p.starts_at === start && p.ends_at === end)
    ?? ctx.term.periods.find((p) => p.starts_at === start);
  return period ? `p${period.number}` : 'other';
}

function lessonButton(lesson) {
  const { t } = ctx;
  const occ = shown.occurrences.get(lesson.id);
  const start = localParts(lesson.planned_start, ctx.zone);
  const end = localParts(lesson.planned_end, ctx.zone);
  const marks = [];
  if (lesson.state !== 'scheduled') marks.push(t(`lesson.state.${lesson.state}`));
  if (occ?.changed && lesson.state === 'scheduled') marks.push(t('timetable.week.changed'));
  if (!occ) marks.push(t('timetable.week.ad_hoc'));
  const label = t('timetable.week.lesson_label', {
    weekday: ctx.weekdayName(isoWeekday(start.date)),
    date: monthDay(start.date),
    from: start.time,
    to: end.time,
    title: lesson.title,
    subject: lesson.subject,
    grade: lesson.grade,
    teacher: lesson.teacher_name,
    marks: marks.join('、'),
  });
  return el(
    'button',
    {
      type: 'button',
      class: 'tt-lesson',
      'aria-label': label,
      dataset: { lessonId: lesson.id, state: lesson.state, changed: String(!!occ?.changed), series: occ ? occ.series_id : '' },
      onclick: (event) => openLesson(lesson, event.currentTarget),
    },
    el('span', { class: 'tt-lesson-title', text: lesson.title }),
    el('span', { class: 'tt-lesson-meta', text: `${lesson.subject} · ${lesson.grade} · ${lesson.teacher_name}` }),
    rowKey(lesson) === 'other' ? el('span', { class: 'tt-lesson-meta', text: `${start.time}–${end.time}` }) : null,
    marks.length ? el('span', { class: 'tt-marks' }, marks.map((m) => el('span', { class: 'pill', text: m }))) : null,
  );
}

function renderGrid() {
  const { t } = ctx;
  const term = ctx.term;
  const table = $('week-table');
  const days = shown.days;
  const head = el('tr', {}, el('th', { scope: 'col', class: 'tt-corner', text: t('timetable.field.period') }));
  for (const day of days) {
    const holiday = holidayOn(term, day);
    const makeup = makeupOn(term, day);
    const outside = day < term.start_date || day > term.end_date;
    const notes = [];
    if (holiday) notes.push(t('timetable.week.holiday', { name: holiday.name || t('timetable.term.holiday') }));
    if (makeup) notes.push(t('timetable.week.makeup', { weekday: ctx.weekdayName(makeup.follows_weekday) }));
    if (outside) notes.push(t('timetable.week.outside'));
    head.append(
      el(
        'th',
        {
          scope: 'col',
          class: holiday ? 'tt-day tt-holiday' : makeup ? 'tt-day tt-makeup' : outside ? 'tt-day tt-outside' : 'tt-day',
          dataset: { date: day },
        },
        el('span', { class: 'tt-day-name', text: ctx.weekdayName(isoWeekday(day)) }),
        el('span', { class: 'tt-day-date', text: monthDay(day) }),
        notes.map((n) => el('span', { class: 'tt-day-note', text: n })),
      ),
    );
  }
  table.tHead.replaceChildren(head);

  const cells = new Map(); // "p3|2037-09-09" → [lesson]
  for (const lesson of shown.lessons) {
    const key = `${rowKey(lesson)}|${localParts(lesson.planned_start, ctx.zone).date}`;
    if (!cells.has(key)) cells.set(key, []);
    cells.get(key).push(lesson);
  }
  const rows = [...term.periods]
    .sort((a, b) => a.starts_at.localeCompare(b.starts_at))
    .map((p) => ({ key: `p${p.number}`, name: t('timetable.period_short', { number: p.number }), time: `${p.starts_at}–${p.ends_at}` }));
  if (shown.lessons.some((l) => rowKey(l) === 'other') || !rows.length) {
    rows.push({ key: 'other', name: t('timetable.week.other_times'), time: '' });
  }
  table.tBodies[0].replaceChildren(
    ...rows.map((row) =>
      el(
        'tr',
        { dataset: { row: row.key } },
        el('th', { scope: 'row' }, el('span', { text: row.name }), row.time ? el('span', { class: 'tt-day-date', text: row.time }) : null),
        days.map((day) => {
          const lessons = (cells.get(`${row.key}|${day}`) ?? []).sort((a, b) => a.planned_start.localeCompare(b.planned_start));
          return el(
            'td',
            { dataset: { date: day }, class: holidayOn(term, day) ? 'tt-holiday' : null },
            lessons.map(lessonButton),
          );
        }),
      ),
    ),
  );
  const target = [...$('week-target').options].find((o) => o.value === view.target)?.textContent ?? '';
  $('week-caption').textContent = t('timetable.week.caption', {
    target,
    n: view.week,
    from: monthDay(days[0]),
    to: monthDay(days[6]),
    count: shown.lessons.length,
  });
}

async function load() {
  const { t } = ctx;
  const term = ctx.term;
  const mine = ++generation;
  await renderControls();
  if (mine !== generation) return;
  const table = $('week-table');
  if (!term || !view.target) {
    shown = { lessons: [], occurrences: new Map(), days: [] };
    table.tHead.replaceChildren();
    table.tBodies[0].replaceChildren();
    $('week-caption').textContent = t(term ? `timetable.week.choose_${view.by}` : 'timetable.series.no_term');
    return;
  }
  const days = weekDays(term, view.week);
  const lessons = await lessonsOfWeek(days);
  const occurrences = await occurrencesOf(lessons);
  if (mine !== generation) return;
  shown = { lessons, occurrences, days };
  renderGrid();
}

export async function show(context) {
  ctx = context;
  const term = ctx.term;
  if (view.termId !== (term?.id ?? null)) {
    const day = term ? today(term.timezone) : '';
    view.week = term && term.start_date <= day && day <= term.end_date ? weekOf(term, day) : 1;
    view.termId = term?.id ?? null;
  }
  if (ctx.weekTarget) {
    Object.assign(view, ctx.weekTarget);
    ctx.weekTarget = null;
  }
  if (!view.target && view.by === 'pairing' && ctx.pairings.length === 1) view.target = String(ctx.pairings[0].id);
  await load();
}

/** Redraw after a change, keeping focus on the lesson when it is still in the week. */
async function reload(lessonId = null) {
  try {
    await load();
  } catch (error) {
    ctx.failed(error);
    return;
  }
  const again = lessonId && document.querySelector(`#week-table .tt-lesson[data-lesson-id="${lessonId}"]`);
  (again || $('week-number')).focus();
}

// ------------------------------------------------------------------ one lesson

function detail(term, value) {
  return [el('dt', { text: term }), el('dd', { text: value })];
}

function openLesson(lesson, opener) {
  const { t } = ctx;
  const occ = shown.occurrences.get(lesson.id) ?? null;
  chosen = { lesson, occurrence: occ };
  const start = localParts(lesson.planned_start, ctx.zone);
  const end = localParts(lesson.planned_end, ctx.zone);
  const when = t('timetable.week.when', {
    date: start.date,
    weekday: ctx.weekdayName(isoWeekday(start.date)),
    from: start.time,
    to: end.time,
  });
  $('occ-title').textContent = `${lesson.title} · ${when}`;
  const rooms = lesson.rooms.map((r) => ctx.classroomLabel(r.classroom_id)).join('、');
  $('occ-details').replaceChildren(
    ...detail(t('timetable.col.lesson'), `${lesson.subject} · ${lesson.grade} · ${t(`kind.${lesson.kind}`)}`),
    ...detail(t('timetable.field.teacher'), lesson.teacher_name),
    ...detail(t('timetable.occ.rooms'), rooms),
    ...detail(t('timetable.occ.state'), t(`lesson.state.${lesson.state}`)),
    ...detail(
      t('timetable.occ.series'),
      occ
        ? t('timetable.occ.series_text', { id: occ.series_id, date: occ.occurrence_date, changed: occ.changed ? t('timetable.occ.changed') : '' })
        : t('timetable.week.ad_hoc_long'),
    ),
  );
  const mine = ctx.maySchedule(lesson.pairing_id);
  const scheduled = lesson.state === 'scheduled';
  const canMove = mine && scheduled && !!occ;
  const canCancel = mine && (scheduled || lesson.state === 'open');
  $('occ-move').hidden = !canMove;
  $('occ-substitute').hidden = !canMove;
  $('occ-cancel').hidden = !canCancel;
  let note = '';
  if (!mine) note = t('timetable.occ.not_yours');
  else if (!scheduled && !canCancel) note = t('timetable.occ.not_scheduled', { state: t(`lesson.state.${lesson.state}`) });
  else if (!occ) note = t('timetable.occ.ad_hoc_note');
  $('occ-note').textContent = note;
  $('occ-note').hidden = !note;
  if (canMove) {
    const form = $('occ-move');
    form.reset();
    form.elements.date.value = start.date;
    form.elements.date.min = ctx.term.start_date;
    form.elements.date.max = ctx.term.end_date;
    const key = rowKey(lesson);
    fillPeriods(ctx, form.elements.period, ctx.term, key === 'other' ? 'custom' : key.slice(1));
    form.elements.start_time.value = start.time;
    form.elements.end_time.value = end.time;
    syncMovePeriod();
    const sub = $('occ-substitute');
    sub.reset();
    setOptions(
      sub.elements.teacher_user_id,
      ctx.teachersFor(lesson.pairing_id).map((u) => [u.id, ctx.teacherLabel(u)]),
      { placeholder: t('timetable.field.no_account') },
    );
  }
  $('occ-cancel-text').textContent = t('timetable.occ.cancel_text', { title: lesson.title, when });
  openDialog($('occ-dialog'), opener);
}

function afterChange(text) {
  const id = chosen.lesson.id;
  $('occ-dialog').close();
  ctx.status(text, 'ok');
  return reload(id);
}

function describeMove(occ) {
  const start = localParts(occ.planned_start, ctx.zone);
  const end = localParts(occ.planned_end, ctx.zone);
  return ctx.t('timetable.week.when', { date: start.date, weekday: ctx.weekdayName(isoWeekday(start.date)), from: start.time, to: end.time });
}

export function init(context) {
  ctx = context;
  $('week-by').addEventListener('change', () => {
    view.by = $('week-by').value;
    view.target = '';
    load().catch((error) => ctx.failed(error));
  });
  $('week-target').addEventListener('change', () => {
    view.target = $('week-target').value;
    load().catch((error) => ctx.failed(error));
  });
  $('week-number').addEventListener('change', () => {
    view.week = Number($('week-number').value) || 1;
    load().catch((error) => ctx.failed(error));
  });
  for (const [id, step] of [['week-prev', -1], ['week-next', 1]]) {
    $(id).addEventListener('click', () => {
      view.week = Math.min(Math.max(1, view.week + step), ctx.term?.weeks ?? 1);
      load()
        .then(() => {
          // A disabled button loses focus; keep the keyboard user in the controls.
          if ($(id).disabled) $('week-number').focus();
        })
        .catch((error) => ctx.failed(error));
    });
  }
  $('week-form').addEventListener('submit', (event) => event.preventDefault());

  const move = $('occ-move');
  syncMovePeriod = wirePeriodChoice(move);
  handleForm(move, {
    check() {
      const errors = {};
      const date = move.elements.date.value;
      if (!date) errors.date = ctx.t('timetable.error.required');
      return { errors, body: { date, ...readTimes(ctx, move, errors) } };
    },
    send: (body) => api.post(`/lessons/${chosen.lesson.id}/move`, body),
    describe: (error) => ctx.refused(error),
    onError: (error) => ctx.leaveIfSignedOut(error),
    done: (occ) => afterChange(ctx.t('timetable.occ.moved', { title: chosen.lesson.title, when: describeMove(occ) })),
  });

  const sub = $('occ-substitute');
  sub.elements.teacher_user_id.addEventListener('change', () => {
    const user = ctx.teachers.find((u) => String(u.id) === sub.elements.teacher_user_id.value);
    if (user && !sub.elements.teacher_name.value.trim()) sub.elements.teacher_name.value = user.display_name || user.username;
  });
  handleForm(sub, {
    check() {
      const errors = {};
      const name = sub.elements.teacher_name.value.trim();
      if (!name) errors.teacher_name = ctx.t('timetable.error.required');
      const account = sub.elements.teacher_user_id.value;
      return { errors, body: { teacher_name: name, teacher_user_id: account ? Number(account) : null } };
    },
    send: (body) => api.post(`/lessons/${chosen.lesson.id}/substitute`, body),
    describe: (error) => ctx.refused(error),
    onError: (error) => ctx.leaveIfSignedOut(error),
    done: (occ) => afterChange(ctx.t('timetable.occ.substituted', { title: chosen.lesson.title, teacher: occ.teacher_name })),
  });

  const cancel = $('occ-cancel');
  cancel.addEventListener('submit', (event) => {
    event.preventDefault();
    const { t } = ctx;
    const lesson = chosen.lesson;
    confirmAction(
      {
        title: t('timetable.occ.cancel_confirm_title'),
        text: $('occ-cancel-text').textContent,
        yes: t('timetable.occ.cancel_submit'),
        run: () => api.post(`/lessons/${lesson.id}/cancel`),
        done: () => afterChange(t('timetable.occ.cancelled', { title: lesson.title })),
      },
      $('occ-cancel-submit'),
    );
  });
}
