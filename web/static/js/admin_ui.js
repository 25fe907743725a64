// Small helpers of the admin page (/admin), which hold no state of the page: the message
// catalogue, Beijing-time formatting, elements, the status line, form errors next to their
// fields, tables and selects, and native dialogs. Every section module (admin_schools.js,
// _classrooms, _pairings, _lessons, _live), admin_core.js, admin_rows.js and the error
// sentences (admin_errors.js) use these.

import { $, el } from './dom.js';

export const MAX_RECEIVING = 4;
// Lesson times are entered and shown in Beijing time. Asia/Shanghai has been UTC+8 all
// year since 1991, so a form value converts with a fixed offset.
export const ZONE = 'Asia/Shanghai';
export const ZONE_OFFSET = '+08:00';

export const lang = new URLSearchParams(window.location.search).get('lang') === 'en' ? 'en' : 'zh-CN';
export { $, el };

export let messages = {};

// ------------------------------------------------------------------ i18n

export function t(key, vars = {}) {
  const text = messages[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ''));
}

export async function loadMessages() {
  const response = await fetch(`/static/i18n/${lang}.json`);
  messages = await response.json();
  document.documentElement.lang = lang;
  document.title = t('admin.page_title');
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll('[data-i18n-aria-label]')) {
    node.setAttribute('aria-label', t(node.dataset.i18nAriaLabel));
  }
  updateLangSwitch();
}

export function updateLangSwitch() {
  const params = new URLSearchParams(window.location.search);
  if (lang === 'en') params.delete('lang');
  else params.set('lang', 'en');
  const query = params.toString();
  const swap = $('lang-switch');
  swap.textContent = lang === 'en' ? '中文' : 'English';
  swap.lang = lang === 'en' ? 'zh-CN' : 'en'; // the link speaks the language it leads to
  swap.href = window.location.pathname + (query ? `?${query}` : '') + window.location.hash;
}

// ------------------------------------------------------------------ formatting

export const dateTime = new Intl.DateTimeFormat(lang, {
  timeZone: ZONE,
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  hour12: false,
});
export const timeOnly = new Intl.DateTimeFormat(lang, { timeZone: ZONE, hour: '2-digit', minute: '2-digit', hour12: false });

export function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : dateTime.format(date);
}

export function span(startIso, endIso) {
  const end = new Date(endIso);
  return `${when(startIso)}–${Number.isNaN(end.getTime()) ? '' : timeOnly.format(end)}`;
}

/** A Date as the value of a datetime-local input, in Beijing time: "2025-03-03T08:00". */
export function toLocalInput(date) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', {
      timeZone: ZONE,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      hour12: false,
    })
      .formatToParts(date)
      .map((p) => [p.type, p.value]),
  );
  const hour = parts.hour === '24' ? '00' : parts.hour;
  return `${parts.year}-${parts.month}-${parts.day}T${hour}:${parts.minute}`;
}

/** A datetime-local value (Beijing time) as RFC 3339 with its offset, or null. */
export function fromLocalInput(value) {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value)) return null;
  return `${value.length === 16 ? `${value}:00` : value}${ZONE_OFFSET}`;
}

export function megabytes(bytes) {
  return `${(Number(bytes || 0) / 1_000_000).toFixed(1)} MB`;
}

export function setStatus(text, kind = 'info') {
  const status = $('status');
  status.textContent = text;
  status.dataset.status = kind;
}

// ------------------------------------------------------------------ forms

export function clearErrors(form) {
  for (const node of form.querySelectorAll('[data-error-for]')) node.textContent = '';
  for (const node of form.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
}

/** Show `text` next to `field` (or at the form's foot when no such field); focus it. */
export function showError(form, field, text, { focus = true } = {}) {
  let holder = field ? form.querySelector(`[data-error-for="${CSS.escape(field)}"]`) : null;
  if (!holder) holder = form.querySelector('[data-error-for=""]');
  holder.textContent = text;
  const control = field ? form.querySelector(`[name="${CSS.escape(field)}"]`) : null;
  const target = control ?? (field ? holder.closest('fieldset') : null);
  if (target) {
    target.setAttribute('aria-invalid', 'true');
    if (focus) (target.matches('fieldset') ? target.querySelector('input:not(:disabled)') : target)?.focus();
  }
}

export const trimmed = (form, name) => (form.elements[name].value || '').trim();

export function requireFields(form, names, errors) {
  for (const name of names) if (!trimmed(form, name)) errors[name] = t('admin.error.required');
}

/** The fields of `next` that differ from `before` (arrays compared by value); null if none. */
export function changed(before, next) {
  const body = {};
  for (const [key, value] of Object.entries(next)) {
    if (JSON.stringify(value) !== JSON.stringify(before[key])) body[key] = value;
  }
  return Object.keys(body).length ? body : null;
}

// ------------------------------------------------------------------ tables

export function fillTable(table, rows, emptyKey) {
  const body = table.tBodies[0];
  const columns = table.tHead.rows[0].cells.length;
  body.replaceChildren(
    ...(rows.length ? rows : [el('tr', {}, el('td', { colspan: columns, class: 'empty', text: t(emptyKey) }))]),
  );
}

export function options(select, items, { placeholder, value, label }) {
  const keep = select.value;
  select.replaceChildren(
    ...(placeholder ? [el('option', { value: '', text: t(placeholder) })] : []),
    ...items.map((item) => el('option', { value: String(value(item)), text: label(item) })),
  );
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

// ------------------------------------------------------------------ dialogs
// Native <dialog>: showModal() keeps focus inside and Esc closes it. Closing gives focus
// back to the control that opened it (found again if its row was redrawn meanwhile).

export function openDialog(dialog, opener) {
  const form = dialog.querySelector('form');
  clearErrors(form);
  dialog.returnTo = opener?.dataset?.action
    ? `[data-action="${opener.dataset.action}"][data-id="${opener.dataset.id}"]`
    : null;
  dialog.showModal();
  form.querySelector('input:not([type="checkbox"]):not(:disabled), select:not(:disabled), button[type="submit"]')?.focus();
}
