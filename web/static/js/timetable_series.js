// Weekly lesson series (每周课程) of the chosen term: the list, a form to add one or edit
// one (pairing, weekday, period or explicit times, 单双周, subject, grade, teacher, title),
// ending one (its last date), and regenerating the term's lessons.
//
// Adding or changing a series generates its lessons on the server in the same request; the
// answer's counts (created, updated, removed, unchanged, kept) are shown. A double booking
// refuses the whole change (409), and the server's message naming the clash — classroom
// or teacher, the lesson or series already there, and when — is shown at the foot of the
// form, in the page's language.

import { api } from './api.js';
import { generationText } from './timetable_terms.js';
import { $, clearErrors, el, fillTable, handleForm, openDialog, setOptions } from './timetable_ui.js';

const CUSTOM = 'custom';
let ctx;
let list = []; // the term's series, as last listed
let editing = null; // the series being edited
let ending = null; // the series being ended

// ------------------------------------------------------------------ labels

export function periodOptions(context, term) {
  return (term?.periods ?? []).map((p) => [p.number, context.t('timetable.period_option', { number: p.number, from: p.starts_at, to: p.ends_at })]);
}

export function timeText(context, s, term) {
  if (s.period !== null && s.period !== undefined) {
    const p = term?.periods.find((x) => x.number === s.period);
    return p
      ? context.t('timetable.period_option', { number: p.number, from: p.starts_at, to: p.ends_at })
      : context.t('timetable.period_short', { number: s.period });
  }
  return `${s.start_time}–${s.end_time}`;
}

function seriesName(s) {
  return ctx.t('timetable.series.name', { title: s.title, weekday: ctx.weekdayName(s.weekday), time: timeText(ctx, s, ctx.term) });
}

// ------------------------------------------------------------------ the form

/** The period select offers "custom times", which shows the two time fields. */
export function wirePeriodChoice(form) {
  const sync = () => {
    const custom = form.elements.period.value === CUSTOM;
    for (const field of form.querySelectorAll('[data-when="custom-times"]')) field.hidden = !custom;
  };
  form.elements.period.addEventListener('change', sync);
  return sync;
}

export function fillPeriods(context, select, term, value = null) {
  setOptions(select, [...periodOptions(context, term), [CUSTOM, context.t('timetable.period_custom')]]);
  if (value !== null) select.value = String(value);
  else if (select.options.length > 1 && !select.value) select.value = select.options[0].value;
}

/** {period} or {start_time, end_time} from a form with the period choice, and its errors. */
export function readTimes(context, form, errors) {
  const f = form.elements;
  if (f.period.value !== CUSTOM && f.period.value) return { period: Number(f.period.value), start_time: null, end_time: null };
  const start = f.start_time.value.slice(0, 5);
  const end = f.end_time.value.slice(0, 5);
  if (!start) errors.start_time = context.t('timetable.error.required');
  if (!end) errors.end_time = context.t('timetable.error.required');
  if (start && end && end <= start) errors.end_time = context.t('timetable.error.end_after_start');
  return { period: null, start_time: start, end_time: end };
}

let syncPeriod = () => {};

function fillAccounts(select, pairingId, value = null) {
  setOptions(
    select,
    ctx.teachersFor(pairingId).map((u) => [u.id, ctx.teacherLabel(u)]),
    { placeholder: ctx.t('timetable.field.no_account') },
  );
  select.value = value === null || value === undefined ? '' : String(value);
  if (select.value === '' && value) select.value = '';
}

function renderForm() {
  const { t } = ctx;
  const form = $('series-form');
  const f = form.elements;
  const choices = ctx.pairings.filter((p) => p.active !== false && ctx.maySchedule(p.id));
  setOptions(f.pairing_id, choices.map((p) => [p.id, ctx.pairingLabel(p.id)]), { placeholder: t('timetable.choose.pairing') });
  setOptions(f.weekday, [1, 2, 3, 4, 5, 6, 7].map((n) => [n, ctx.weekdayName(n)]));
  fillPeriods(ctx, f.period, ctx.term, editing ? (editing.period ?? CUSTOM) : null);
  fillAccounts(f.teacher_user_id, Number(f.pairing_id.value), f.teacher_user_id.value || null);
  syncPeriod();
}

function startCreate({ focus = false } = {}) {
  const { t } = ctx;
  editing = null;
  const form = $('series-form');
  form.reset();
  clearErrors(form);
  form.elements.pairing_id.disabled = false;
  $('series-form-title').textContent = t('timetable.series.new');
  $('series-submit').textContent = t('timetable.series.create');
  $('series-cancel-edit').hidden = true;
  renderForm();
  if (focus) form.elements.pairing_id.focus();
}

function startEdit(s) {
  const { t } = ctx;
  editing = s;
  const form = $('series-form');
  clearErrors(form);
  const f = form.elements;
  renderForm();
  f.pairing_id.value = String(s.pairing_id);
  if (f.pairing_id.value !== String(s.pairing_id)) {
    f.pairing_id.append(el('option', { value: String(s.pairing_id), text: ctx.pairingLabel(s.pairing_id) }));
    f.pairing_id.value = String(s.pairing_id);
  }
  f.pairing_id.disabled = true; // a series keeps its pairing
  f.weekday.value = String(s.weekday);
  fillPeriods(ctx, f.period, ctx.term, s.period ?? CUSTOM);
  f.start_time.value = s.start_time ?? '';
  f.end_time.value = s.end_time ?? '';
  f.week_parity.value = s.week_parity;
  f.kind.value = s.kind;
  f.subject.value = s.subject;
  f.grade.value = s.grade;
  f.teacher_name.value = s.teacher_name;
  fillAccounts(f.teacher_user_id, s.pairing_id, s.teacher_user_id);
  f.title.value = s.title;
  f.first_date.value = s.first_date ?? '';
  f.last_date.value = s.last_date ?? '';
  syncPeriod();
  $('series-form-title').textContent = t('timetable.series.edit_title', { id: s.id, name: seriesName(s) });
  $('series-submit').textContent = t('timetable.action.save');
  $('series-cancel-edit').hidden = false;
  form.scrollIntoView({ block: 'start' });
  f.weekday.focus();
}

function check() {
  const { t } = ctx;
  const form = $('series-form');
  const f = form.elements;
  const errors = {};
  if (!ctx.term) errors[''] = t('timetable.series.no_term');
  const pairing = Number(f.pairing_id.value);
  if (!pairing) errors.pairing_id = t('timetable.error.choose_pairing');
  for (const name of ['subject', 'grade', 'teacher_name', 'title']) {
    if (!f[name].value.trim()) errors[name] = t('timetable.error.required');
  }
  const times = readTimes(ctx, form, errors);
  const first = f.first_date.value || null;
  const last = f.last_date.value || null;
  if (first && last && last < first) errors.last_date = t('timetable.error.last_before_first');
  const body = {
    pairing_id: pairing,
    weekday: Number(f.weekday.value),
    ...times,
    week_parity: f.week_parity.value,
    kind: f.kind.value,
    subject: f.subject.value.trim(),
    grade: f.grade.value.trim(),
    title: f.title.value.trim(),
    teacher_name: f.teacher_name.value.trim(),
    teacher_user_id: f.teacher_user_id.value ? Number(f.teacher_user_id.value) : null,
    first_date: first,
    last_date: last,
  };
  if (editing) body.broadcast = editing.broadcast;
  return { errors, body };
}

/** The body that replaces `s` as it is, with `changes` (ending it sets its last date). */
function bodyOf(s, changes = {}) {
  return {
    pairing_id: s.pairing_id,
    kind: s.kind,
    subject: s.subject,
    grade: s.grade,
    title: s.title,
    teacher_name: s.teacher_name,
    teacher_user_id: s.teacher_user_id,
    broadcast: s.broadcast,
    weekday: s.weekday,
    period: s.period,
    start_time: s.start_time,
    end_time: s.end_time,
    week_parity: s.week_parity,
    first_date: s.first_date,
    last_date: s.last_date,
    ...changes,
  };
}

function showResult(text, kind = 'ok') {
  const line = $('series-result');
  line.textContent = text;
  line.dataset.status = kind;
}

// ------------------------------------------------------------------ the list

function seriesRow(s) {
  const { t } = ctx;
  const mine = ctx.maySchedule(s.pairing_id);
  const button = (action, text, label, onclick, extra = {}) =>
    el('button', { type: 'button', dataset: { action, id: s.id }, 'aria-label': label, text, onclick, ...extra });
  const name = seriesName(s);
  const actions = el(
    'td',
    { class: 'actions' },
    mine ? button('edit-series', t('timetable.action.edit'), t('timetable.series.edit_named', { name }), () => startEdit(s)) : null,
    mine ? button('end-series', t('timetable.series.end'), t('timetable.series.end_named', { name }), (e) => openEnd(s, e.currentTarget), { class: 'danger' }) : null,
    button('week-series', t('timetable.series.week'), t('timetable.series.week_named', { name }), () => {
      ctx.weekTarget = { by: 'pairing', target: String(s.pairing_id) };
      window.location.hash = '#week';
    }),
  );
  const spanText = s.first_date || s.last_date
    ? t('timetable.series.span', { from: s.first_date ?? ctx.term.start_date, to: s.last_date ?? ctx.term.end_date })
    : t('timetable.series.whole_term');
  return el(
    'tr',
    { dataset: { id: s.id } },
    el('td', { text: s.id }),
    el('td', { text: ctx.weekdayName(s.weekday) }),
    el('td', { text: timeText(ctx, s, ctx.term) }),
    el('td', { text: t(`timetable.parity.${s.week_parity}`) }),
    el('td', {}, el('span', { class: 'tt-title', text: s.title }), el('span', { class: 'meta', text: ` ${s.subject} · ${s.grade} · ${t(`kind.${s.kind}`)}` })),
    el('td', { text: s.teacher_name }),
    el('td', { text: ctx.pairingLabel(s.pairing_id) }),
    el('td', { text: spanText }),
    actions,
  );
}

async function loadList() {
  list = ctx.term ? (await api.get(`/terms/${ctx.term.id}/series`)).items : [];
  fillTable($('series-table'), list.map(seriesRow), ctx.t(ctx.term ? 'timetable.series.empty' : 'timetable.series.no_term'));
}

export async function show(context) {
  ctx = context;
  $('series-form').hidden = !ctx.term;
  $('series-generate').hidden = !(ctx.isAdmin && ctx.term);
  if (!editing || editing.term_id !== ctx.term?.id) startCreate();
  else renderForm();
  await loadList();
}

// ------------------------------------------------------------------ ending a series

function openEnd(s, opener) {
  const { t } = ctx;
  ending = s;
  $('series-end-text').textContent = t('timetable.series.end_text', { name: seriesName(s) });
  const day = new Date().toISOString().slice(0, 10);
  const input = $('series-end-date');
  input.min = ctx.term.start_date;
  input.max = ctx.term.end_date;
  input.value = day < ctx.term.start_date ? ctx.term.start_date : day > ctx.term.end_date ? ctx.term.end_date : day;
  openDialog($('series-end-dialog'), opener);
}

export function init(context) {
  ctx = context;
  const form = $('series-form');
  syncPeriod = wirePeriodChoice(form);
  form.elements.pairing_id.addEventListener('change', () => fillAccounts(form.elements.teacher_user_id, Number(form.elements.pairing_id.value)));
  form.elements.teacher_user_id.addEventListener('change', () => {
    const user = ctx.teachers.find((u) => String(u.id) === form.elements.teacher_user_id.value);
    if (user && !form.elements.teacher_name.value.trim()) form.elements.teacher_name.value = user.display_name || user.username;
  });
  $('series-cancel-edit').addEventListener('click', () => startCreate({ focus: true }));
  form.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && editing) startCreate({ focus: true });
  });

  handleForm(form, {
    check,
    send: (body) => (editing ? api.put(`/series/${editing.id}`, body) : api.post(`/terms/${ctx.term.id}/series`, body)),
    describe: (error) => ctx.refused(error),
    onError: (error) => ctx.leaveIfSignedOut(error),
    async done(answer) {
      const { t } = ctx;
      const key = editing ? 'timetable.series.saved' : 'timetable.series.created';
      const text = t(key, { name: seriesName(answer.series), result: generationText(answer.generation) });
      const pairing = form.elements.pairing_id.value;
      startCreate();
      form.elements.pairing_id.value = pairing; // the next series is often the same pairing's
      fillAccounts(form.elements.teacher_user_id, Number(pairing));
      await loadList();
      showResult(text);
      ctx.status(text, 'ok');
      form.elements.pairing_id.focus();
    },
  });

  handleForm($('series-end-form'), {
    check() {
      const value = $('series-end-date').value;
      const errors = {};
      if (!value) errors.last_date = ctx.t('timetable.error.required');
      return { errors, body: bodyOf(ending, { last_date: value }) };
    },
    send: (body) => api.put(`/series/${ending.id}`, body),
    describe: (error) => ctx.refused(error),
    onError: (error) => ctx.leaveIfSignedOut(error),
    async done(answer) {
      $('series-end-dialog').close();
      const text = ctx.t('timetable.series.ended', { name: seriesName(answer.series), date: answer.series.last_date, result: generationText(answer.generation) });
      await loadList();
      showResult(text);
      ctx.status(text, 'ok');
    },
  });

  $('series-generate').addEventListener('click', async (event) => {
    const button = event.currentTarget;
    const { t } = ctx;
    button.disabled = true;
    showResult(t('timetable.series.generating'), 'info');
    try {
      const answer = await api.post(`/terms/${ctx.term.id}/generate`);
      showResult(t('timetable.series.generated', { result: generationText(answer) }));
    } catch (error) {
      if (ctx.leaveIfSignedOut(error)) return;
      showResult(ctx.describe(error).text, 'error');
    } finally {
      button.disabled = false;
    }
  });
}
