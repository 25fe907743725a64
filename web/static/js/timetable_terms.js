// Terms (学期) on the timetable page: the list, and a dialog to create or edit one with its
// holidays (ranges of days off, 国庆节), its make-up workdays (调休: a date that runs another
// weekday's timetable) and its periods (节次: number, start, end).
//
// Terms are the district's calendar: admins write them (POST /terms, PUT /terms/{id}, which
// also regenerates every series of the term), school accounts only read them. Holidays,
// make-up days and periods are rows in the form named like the API's fields
// (`holidays[1].end_date`), so a refusal naming `holidays[1]` or `periods[0].ends_at`
// lands next to that row.

import { api } from './api.js';
import { $, clearErrors, el, fillTable, handleForm, openDialog } from './timetable_ui.js';

const LISTS = ['holidays', 'makeup_days', 'periods'];
let ctx;
let editing = null; // the term being edited, null when creating

// ------------------------------------------------------------------ the list

function span(a, b) {
  return a === b ? a.slice(5) : `${a.slice(5)}–${b.slice(5)}`;
}

function termRow(term) {
  const { t } = ctx;
  const list = (items) => (items.length ? el('ul', { class: 'inline-list' }, items.map((x) => el('li', { text: x }))) : '—');
  const actions = el('td', { class: 'actions' });
  if (ctx.isAdmin) {
    actions.append(
      el('button', {
        type: 'button',
        dataset: { action: 'edit-term', id: term.id },
        'aria-label': t('timetable.terms.edit_named', { name: term.name }),
        text: t('timetable.action.edit'),
        onclick: (event) => openEditor(term, event.currentTarget),
      }),
    );
  }
  actions.append(
    el('button', {
      type: 'button',
      dataset: { action: 'term-series', id: term.id },
      'aria-label': t('timetable.terms.series_named', { name: term.name }),
      text: t('timetable.terms.to_series'),
      onclick: () => {
        ctx.termId = term.id;
        $('tt-term').value = String(term.id);
        $('tt-term').dispatchEvent(new Event('change'));
        window.location.hash = '#series';
      },
    }),
  );
  return el(
    'tr',
    { dataset: { id: term.id }, class: term.id === ctx.termId ? 'tt-current' : null },
    el('th', { scope: 'row', text: term.name }),
    el('td', { text: term.school_year }),
    el('td', { text: term.region || '—' }),
    el('td', { text: `${term.start_date} – ${term.end_date}` }),
    el('td', { text: term.weeks }),
    el('td', {}, list(term.holidays.map((h) => `${h.name || t('timetable.term.holiday')} ${span(h.start_date, h.end_date)}`))),
    el('td', {}, list(term.makeup_days.map((m) => t('timetable.term.makeup_line', { date: m.date.slice(5), weekday: ctx.weekdayName(m.follows_weekday) })))),
    el('td', {}, list(term.periods.map((p) => t('timetable.term.period_line', { number: p.number, from: p.starts_at, to: p.ends_at })))),
    actions,
  );
}

export async function show(context) {
  ctx = context;
  $('term-new').hidden = !ctx.isAdmin;
  $('terms-readonly').hidden = ctx.isAdmin;
  fillTable($('term-table'), ctx.terms.map(termRow), ctx.t('timetable.terms.empty'));
}

// ------------------------------------------------------------------ rows of the form

function rowsOf(name) {
  return document.querySelector(`#term-form [data-rows="${name}"]`);
}

function labelled(id, label, control) {
  control.id = id;
  return el('div', { class: 'tt-cell' }, el('label', { for: id, text: label }), control);
}

function weekdaySelect(name, value) {
  const select = el('select', { name });
  for (let n = 1; n <= 7; n += 1) select.append(el('option', { value: String(n), text: ctx.weekdayName(n) }));
  select.value = String(value ?? 6);
  return select;
}

/** One row of a list; its inputs are named `${list}[${i}].${field}`. */
function makeRow(list, i, value = {}) {
  const { t } = ctx;
  const name = (field) => `${list}[${i}].${field}`;
  const id = (field) => `term-${list}-${i}-${field}`;
  const input = (field, type, extra = {}) => el('input', { name: name(field), type, value: value[field] ?? '', ...extra });
  let cells;
  if (list === 'holidays') {
    cells = [
      labelled(id('name'), t('timetable.term.holiday_name'), input('name', 'text', { maxlength: 100, placeholder: t('timetable.placeholder.holiday') })),
      labelled(id('start_date'), t('timetable.term.from'), input('start_date', 'date')),
      labelled(id('end_date'), t('timetable.term.to'), input('end_date', 'date')),
    ];
  } else if (list === 'makeup_days') {
    cells = [
      labelled(id('date'), t('timetable.term.makeup_date'), input('date', 'date')),
      labelled(id('follows_weekday'), t('timetable.term.follows'), weekdaySelect(name('follows_weekday'), value.follows_weekday)),
      labelled(id('name'), t('timetable.term.makeup_name'), input('name', 'text', { maxlength: 100 })),
    ];
  } else {
    cells = [
      labelled(id('number'), t('timetable.term.period_number'), input('number', 'number', { min: 1, max: 20, step: 1, inputmode: 'numeric' })),
      labelled(id('starts_at'), t('timetable.term.starts_at'), input('starts_at', 'time')),
      labelled(id('ends_at'), t('timetable.term.ends_at'), input('ends_at', 'time')),
    ];
  }
  const remove = el('button', {
    type: 'button',
    class: 'tt-remove',
    'aria-label': t(`timetable.term.remove_${list}`, { n: i + 1 }),
    text: t('timetable.action.remove'),
    onclick: () => removeRow(list, i),
  });
  return el(
    'div',
    { class: 'tt-row', dataset: { index: i, field: `${list}[${i}]` } },
    ...cells,
    remove,
    el('p', { class: 'field-error tt-row-error', dataset: { errorFor: `${list}[${i}]` } }),
  );
}

/** The rows of a list as the API wants them. */
function readRows(list) {
  return [...rowsOf(list).querySelectorAll('.tt-row')].map((row) => {
    const value = (field) => (row.querySelector(`[name$=".${field}"]`)?.value ?? '').trim();
    if (list === 'holidays') return { name: value('name'), start_date: value('start_date'), end_date: value('end_date') };
    if (list === 'makeup_days') return { date: value('date'), follows_weekday: Number(value('follows_weekday')), name: value('name') };
    return { number: value('number') === '' ? null : Number(value('number')), starts_at: value('starts_at'), ends_at: value('ends_at') };
  });
}

function renderRows(list, rows) {
  rowsOf(list).replaceChildren(...rows.map((value, i) => makeRow(list, i, value)));
}

function removeRow(list, index) {
  const rows = readRows(list);
  rows.splice(index, 1);
  renderRows(list, rows);
  const next = rowsOf(list).querySelectorAll('.tt-row')[Math.min(index, rows.length - 1)];
  (next?.querySelector('input, select') ?? document.querySelector(`#term-form [data-add="${list}"]`)).focus();
}

function addMinutes(hhmm, minutes) {
  const [h, m] = hhmm.split(':').map(Number);
  const total = Math.min(h * 60 + m + minutes, 23 * 60 + 59);
  return `${String(Math.floor(total / 60)).padStart(2, '0')}:${String(total % 60).padStart(2, '0')}`;
}

/** A new row; a period follows the last one (ten minutes' break, forty-five minutes). */
function addRow(list) {
  const rows = readRows(list);
  let value = {};
  if (list === 'makeup_days') value = { follows_weekday: 1, name: ctx.t('timetable.term.makeup_default') };
  if (list === 'periods') {
    const last = rows.at(-1);
    const starts = last?.ends_at ? addMinutes(last.ends_at, 10) : '08:00';
    value = { number: (last?.number ?? 0) + 1, starts_at: starts, ends_at: addMinutes(starts, 45) };
  }
  rows.push(value);
  renderRows(list, rows);
  rowsOf(list).querySelectorAll('.tt-row')[rows.length - 1].querySelector('input, select').focus();
}

// ------------------------------------------------------------------ the dialog

function openEditor(term, opener) {
  const { t } = ctx;
  editing = term;
  const form = $('term-form');
  form.reset();
  clearErrors(form);
  $('term-dialog-title').textContent = term ? t('timetable.terms.edit_title', { name: term.name }) : t('timetable.terms.new');
  const f = form.elements;
  f.name.value = term?.name ?? '';
  f.school_year.value = term?.school_year ?? '';
  f.region.value = term?.region ?? '';
  f.start_date.value = term?.start_date ?? '';
  f.end_date.value = term?.end_date ?? '';
  f.timezone.value = term?.timezone ?? 'Asia/Shanghai';
  renderRows('holidays', term?.holidays ?? []);
  renderRows('makeup_days', term?.makeup_days ?? []);
  renderRows('periods', term?.periods ?? []);
  openDialog($('term-dialog'), opener);
}

function check() {
  const { t } = ctx;
  const form = $('term-form');
  const f = form.elements;
  const errors = {};
  const body = {
    name: f.name.value.trim(),
    school_year: f.school_year.value.trim(),
    region: f.region.value.trim(),
    start_date: f.start_date.value,
    end_date: f.end_date.value,
    timezone: f.timezone.value.trim(),
    holidays: readRows('holidays'),
    makeup_days: readRows('makeup_days'),
    periods: readRows('periods'),
  };
  for (const key of ['name', 'school_year', 'start_date', 'end_date', 'timezone']) {
    if (!body[key]) errors[key] = t('timetable.error.required');
  }
  if (body.start_date && body.end_date && body.end_date < body.start_date) errors.end_date = t('timetable.error.term_end');
  body.holidays.forEach((h, i) => {
    if (!h.start_date || !h.end_date) errors[`holidays[${i}]`] = t('timetable.error.row_incomplete');
    else if (h.end_date < h.start_date) errors[`holidays[${i}]`] = t('timetable.error.holiday_order', { name: h.name });
  });
  body.makeup_days.forEach((m, i) => {
    if (!m.date) errors[`makeup_days[${i}]`] = t('timetable.error.row_incomplete');
  });
  body.periods.forEach((p, i) => {
    if (!Number.isInteger(p.number) || p.number < 1 || p.number > 20) errors[`periods[${i}].number`] = t('timetable.error.period_range');
    else if (!p.starts_at || !p.ends_at) errors[`periods[${i}]`] = t('timetable.error.row_incomplete');
    else if (p.ends_at <= p.starts_at) errors[`periods[${i}]`] = t('timetable.error.period_order', { number: p.number });
  });
  return { errors, body };
}

function generationText(g) {
  return ctx.t('timetable.generation', g);
}

export function init(context) {
  ctx = context;
  $('term-new').addEventListener('click', (event) => openEditor(null, event.currentTarget));
  for (const list of LISTS) {
    document.querySelector(`#term-form [data-add="${list}"]`).addEventListener('click', () => addRow(list));
  }
  handleForm($('term-form'), {
    check,
    send: (body) => (editing ? api.put(`/terms/${editing.id}`, body) : api.post('/terms', body)),
    describe: (error) => ctx.refused(error),
    onError: (error) => ctx.leaveIfSignedOut(error),
    async done(answer) {
      const { t } = ctx;
      const term = answer.term ?? answer;
      $('term-dialog').close();
      await ctx.termsChanged(term.id);
      const text = answer.generation
        ? t('timetable.terms.saved', { name: term.name, result: generationText(answer.generation) })
        : t('timetable.terms.created', { name: term.name, weeks: term.weeks });
      ctx.status(text, 'ok');
    },
  });
}

export { generationText };
