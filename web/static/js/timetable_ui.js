// Small DOM helpers of the timetable page (/admin/timetable): elements, form errors next to
// their fields, native dialogs, and dates and times in a term's zone.
//
// Every section module of the page (timetable_terms.js, _series, _week, _import, _feeds)
// builds its rows and messages with these, so that a refusal reads the same everywhere:
// next to the field the server names (`holidays[1]`, `periods[0].ends_at`, `date`), or at
// the foot of the form when it names none (a double booking).

import { $, el } from './dom.js';

export { $, el };

/** A select's options; the current choice is kept when it is still offered. */
export function setOptions(select, items, { placeholder = null } = {}) {
  const keep = select.value;
  select.replaceChildren(
    ...(placeholder === null ? [] : [el('option', { value: '', text: placeholder })]),
    ...items.map(([value, text]) => el('option', { value: String(value), text })),
  );
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

/** Rows into a table's body, or one cell saying the list is empty. */
export function fillTable(table, rows, emptyText) {
  const columns = table.tHead.rows[0].cells.length;
  table.tBodies[0].replaceChildren(
    ...(rows.length ? rows : [el('tr', {}, el('td', { colspan: columns, class: 'empty', text: emptyText }))]),
  );
}

// ------------------------------------------------------------------ form errors

export function clearErrors(form) {
  for (const node of form.querySelectorAll('[data-error-for]')) node.textContent = '';
  for (const node of form.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
}

/**
 * The field paths an error may be shown at, most precise first: "holidays[1].end_date" →
 * itself, "holidays[1]", "holidays". The server names fields that way (msgspec paths, or
 * the domain's "makeup_days[0]").
 */
function widen(field) {
  const out = [];
  let path = (field || '').replace(/^\$\.?/, '');
  while (path) {
    out.push(path);
    const cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
    path = cut > 0 ? path.slice(0, cut) : '';
  }
  return out;
}

/** Show `text` at the field the error names (or the form's foot) and mark the control. */
export function showError(form, field, text, { focus = true } = {}) {
  const paths = widen(field);
  let holder = null;
  for (const path of paths) {
    holder = form.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
    if (holder) break;
  }
  holder ??= form.querySelector('[data-error-for=""]');
  holder.textContent = text;
  let control = null;
  for (const path of paths) {
    control = form.querySelector(`[name="${CSS.escape(path)}"]`) ?? form.querySelector(`[data-field="${CSS.escape(path)}"]`);
    if (control) break;
  }
  if (control && !control.matches('input, select, textarea')) control = control.querySelector('input, select');
  if (control) {
    control.setAttribute('aria-invalid', 'true');
    if (focus) control.focus();
  } else if (focus) {
    holder.tabIndex = -1;
    holder.focus();
  }
}

/**
 * Wire a form: `check()` returns {errors: {field: text}, body}; `send(body, submitter)`
 * talks to the server; `done(answer)` shows the result. Refusals go next to their field
 * through `describe(error)` → {field, text}. A second submit while one is under way is
 * ignored.
 */
export function handleForm(form, { check, send, done, describe, onError = null }) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (form.getAttribute('aria-busy') === 'true') return;
    clearErrors(form);
    const { errors = {}, body } = check(event.submitter ?? null);
    const fields = Object.keys(errors);
    if (fields.length) {
      fields.forEach((field, i) => showError(form, field, errors[field], { focus: i === 0 }));
      return;
    }
    form.setAttribute('aria-busy', 'true');
    for (const button of form.querySelectorAll('button[type="submit"]')) button.disabled = true;
    try {
      await done(await send(body, event.submitter ?? null));
    } catch (error) {
      if (onError?.(error)) return;
      const { field, text } = describe(error);
      showError(form, field, text);
    } finally {
      form.removeAttribute('aria-busy');
      for (const button of form.querySelectorAll('button[type="submit"]')) button.disabled = false;
    }
  });
}

// ------------------------------------------------------------------ dialogs
// Native <dialog>: showModal() keeps focus inside and Esc closes it; closing gives focus
// back to what opened it.

export function openDialog(dialog, opener = document.activeElement) {
  for (const form of dialog.querySelectorAll('form')) clearErrors(form);
  dialog.opener = opener;
  dialog.showModal();
  dialog.querySelector('[autofocus], input:not([type="hidden"]):not(:disabled), select:not(:disabled), button:not([data-close])')?.focus();
}

export function wireDialog(dialog) {
  for (const button of dialog.querySelectorAll('[data-close]')) button.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    const back = dialog.opener;
    dialog.opener = null;
    if (back?.isConnected) back.focus();
  });
}

// ------------------------------------------------------------------ dates and times

const partsCache = new Map();

function formatter(zone) {
  if (!partsCache.has(zone)) {
    partsCache.set(
      zone,
      new Intl.DateTimeFormat('en-CA', {
        timeZone: zone,
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        minute: '2-digit',
        hour12: false,
      }),
    );
  }
  return partsCache.get(zone);
}

/** An instant as local {date: "YYYY-MM-DD", time: "HH:MM"} in `zone`. */
export function localParts(iso, zone) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return { date: '', time: '' };
  const p = Object.fromEntries(formatter(zone).formatToParts(date).map((x) => [x.type, x.value]));
  return { date: `${p.year}-${p.month}-${p.day}`, time: `${p.hour === '24' ? '00' : p.hour}:${p.minute}` };
}

/** "YYYY-MM-DD" plus `days` (calendar arithmetic, no zone involved). */
export function addDays(day, days) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

/** ISO weekday of "YYYY-MM-DD": 1 = Monday .. 7 = Sunday. */
export function isoWeekday(day) {
  const [y, m, d] = day.split('-').map(Number);
  return ((new Date(Date.UTC(y, m - 1, d)).getUTCDay() + 6) % 7) + 1;
}

/** Today's date in `zone`. */
export function today(zone) {
  return localParts(new Date().toISOString(), zone).date;
}

/** "2037-09-02" → "09-02" (the year is the term's, shown once elsewhere). */
export const monthDay = (day) => day.slice(5);

// ------------------------------------------------------------------ confirming
// One confirm dialog (#tt-confirm) for the page's destructive actions; it opens over
// another dialog when need be, and focus starts on its safe button.

let pending = null;

export function wireConfirm({ describe, onError }) {
  handleForm($('tt-confirm-form'), {
    check: () => ({ errors: {}, body: null }),
    send: () => pending.run(),
    describe,
    onError,
    async done(answer) {
      const { done } = pending;
      $('tt-confirm').close();
      await done?.(answer);
    },
  });
}

/** Ask first; `run()` does it (its refusal is shown in the dialog), then `done(answer)`. */
export function confirmAction({ title, text, yes, run, done }, opener = document.activeElement) {
  pending = { run, done };
  $('tt-confirm-title').textContent = title;
  $('tt-confirm-text').textContent = text;
  $('tt-confirm-yes').textContent = yes;
  openDialog($('tt-confirm'), opener);
  $('tt-confirm').querySelector('[data-close]').focus();
}
