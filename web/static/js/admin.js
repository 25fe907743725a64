// The admin pages: schools, classrooms, pairings, lessons and the live overview, as hash
// routes of one page (#schools, #classrooms, #pairings, #lessons, #live).
//
// Signed in with the session cookie through session.js, like every page: no session sends
// the browser to the login page (and back here afterwards); a signed-in account that is not
// an admin or a school admin is told so and shown no data. Every string comes from the
// message catalogue (zh-CN by default, ?lang=en for English).
//
// Rows are created by the forms on the page and edited in dialogs (pre-filled; only what
// changed is sent). Removal asks first: a row nothing refers to is deleted, one that lessons
// or recordings refer to is refused by the server, and the dialog then offers to archive it.
// Validation happens twice: here, for what a form can know by itself, and on the server,
// whose {"error": {code, message, field}} is shown next to the field it names, in the
// page's language. A refused edit is not half-saved: the server checks it whole first.
//
// Tests read `window.tongbuAdmin` (end of this file) rather than scraping the DOM.

import { mountNav } from './nav.js';
import { ApiError, api, currentSession, loginUrl } from './session.js';
import { describeError } from './admin_errors.js';
import {
  $,
  MAX_RECEIVING,
  el,
  fromLocalInput,
  lang,
  loadMessages,
  megabytes,
  messages,
  setStatus,
  span,
  t,
  timeOnly,
  toLocalInput,
  updateLangSwitch,
  when,
} from './admin_ui.js';

const SECTIONS = ['schools', 'classrooms', 'pairings', 'lessons', 'live'];
const DEFAULT_SECTION = 'lessons';
const ADMIN_ROLES = new Set(['admin', 'school_admin']);
const LIVE_POLL_MS = 3000;
const LESSON_PAGE = 20;

let me = null; // the signed-in user
const cache = { schools: [], classrooms: [], pairings: [] };
const shownLessons = new Map(); // id -> lesson, as last listed
let current = null; // the section on screen ('denied' when the role may not be here)
let lessonOffset = 0;
let livePoll = null;
let liveGeneration = 0;
const watchLinks = new Map(); // lesson id -> {url, expires} minted on demand
const state = { lastLive: [], liveUpdates: 0, lastAlerts: [] };

const isAdmin = () => me?.role === 'admin';

/** A signed-out or expired session: off to the login page, which brings us back here. */
function leaveIfSignedOut(error) {
  if (error instanceof ApiError && error.status === 401) {
    stopLive();
    window.location.assign(loginUrl());
    return true;
  }
  return false;
}

// ------------------------------------------------------------------ forms

function clearErrors(form) {
  for (const node of form.querySelectorAll('[data-error-for]')) node.textContent = '';
  for (const node of form.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
}

/** Show `text` next to `field` (or at the form's foot when no such field); focus it. */
function showError(form, field, text, { focus = true } = {}) {
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

/**
 * Submit a form: `check()` returns client-side errors ({field: text}) and the body to send
 * (null: nothing changed); a refusal from the server is shown next to its field. Nothing
 * is sent twice at once. A create form is emptied after success; an edit form is not.
 */
function handleForm(form, { check, send, done, unchanged, reset = true }) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    const button = form.querySelector('button[type="submit"]');
    if (button.disabled) return;
    const { errors, body } = check();
    const fields = Object.keys(errors ?? {});
    if (fields.length) {
      fields.forEach((field, i) => showError(form, field, errors[field], { focus: i === 0 }));
      setStatus(t('admin.status.fix_errors'), 'error');
      return;
    }
    if (body === null) {
      await unchanged?.();
      return;
    }
    button.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const answer = await send(body);
      if (reset) form.reset();
      await done(answer);
    } catch (error) {
      if (leaveIfSignedOut(error)) return;
      const { field, text } = describeError(error);
      showError(form, field, text);
      setStatus(t('admin.status.refused'), 'error');
    } finally {
      button.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });
}

const trimmed = (form, name) => (form.elements[name].value || '').trim();

function requireFields(form, names, errors) {
  for (const name of names) if (!trimmed(form, name)) errors[name] = t('admin.error.required');
}

/** The fields of `next` that differ from `before` (arrays compared by value); null if none. */
function changed(before, next) {
  const body = {};
  for (const [key, value] of Object.entries(next)) {
    if (JSON.stringify(value) !== JSON.stringify(before[key])) body[key] = value;
  }
  return Object.keys(body).length ? body : null;
}

// ------------------------------------------------------------------ dialogs
// Native <dialog>: showModal() keeps focus inside and Esc closes it. Closing gives focus
// back to the control that opened it (found again if its row was redrawn meanwhile).

function openDialog(dialog, opener) {
  const form = dialog.querySelector('form');
  clearErrors(form);
  dialog.returnTo = opener?.dataset?.action
    ? `[data-action="${opener.dataset.action}"][data-id="${opener.dataset.id}"]`
    : null;
  dialog.showModal();
  form.querySelector('input:not([type="checkbox"]):not(:disabled), select:not(:disabled), button[type="submit"]')?.focus();
}

function wireDialogs() {
  for (const dialog of document.querySelectorAll('dialog.admin-dialog')) {
    for (const button of dialog.querySelectorAll('[data-close]')) button.addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => {
      const back = dialog.returnTo && document.querySelector(`#section-${current} ${dialog.returnTo}`);
      if (back?.matches('h2')) back.tabIndex = -1;
      back?.focus();
    });
  }
}

const whatOf = (kind) => t(`admin.what.${kind}`);

// ------------------------------------------------------------------ registers

async function loadRegisters() {
  const [schools, classrooms, pairings] = await Promise.all([
    api.get('/schools'),
    api.get('/classrooms'),
    api.get('/pairings'),
  ]);
  cache.schools = schools.items;
  cache.classrooms = classrooms.items;
  cache.pairings = pairings.items;
}

const schoolById = (id) => cache.schools.find((s) => s.id === id);
const classroomById = (id) => cache.classrooms.find((c) => c.id === id);
const active = (items) => items.filter((item) => item.active !== false);

function classroomLabel(id) {
  const room = classroomById(id);
  return room ? `${room.school_name} · ${room.name}` : t('tile.unnamed', { id });
}

function fillTable(table, rows, emptyKey) {
  const body = table.tBodies[0];
  const columns = table.tHead.rows[0].cells.length;
  body.replaceChildren(
    ...(rows.length ? rows : [el('tr', {}, el('td', { colspan: columns, class: 'empty', text: t(emptyKey) }))]),
  );
}

function options(select, items, { placeholder, value, label }) {
  const keep = select.value;
  select.replaceChildren(
    ...(placeholder ? [el('option', { value: '', text: t(placeholder) })] : []),
    ...items.map((item) => el('option', { value: String(value(item)), text: label(item) })),
  );
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

function activeCell(item) {
  const on = item.active !== false;
  return el('td', {}, el('span', { class: `pill ${on ? '' : 'pill-archived'}`, dataset: { active: String(on) }, text: t(on ? 'admin.active.yes' : 'admin.active.no') }));
}

/** The row's buttons: edit, archive or restore, delete (each as the role allows). */
function registerActions(kind, item, name, { archive = true, remove = true } = {}) {
  const button = (action) =>
    el('button', {
      type: 'button',
      class: action === 'delete' ? 'danger' : null,
      dataset: { action, id: item.id, kind },
      'aria-label': t(`admin.action.${action}_named`, { name }),
      text: t(`admin.action.${action}`),
      onclick: (event) => rowAction(kind, action, item, name, event.currentTarget),
    });
  const on = item.active !== false;
  return el(
    'td',
    { class: 'actions' },
    button('edit'),
    archive ? button(on ? 'archive' : 'restore') : null,
    remove ? button('delete') : null,
  );
}

function schoolKindLabel(s) {
  return t('admin.choose.school_label', { name: s.name, kind: t(`school.kind.${s.kind}`) });
}

function renderSchools() {
  // Registering a school is the district admin's: a school admin sees only their own.
  $('school-form').hidden = !isAdmin();
  fillTable(
    $('school-table'),
    cache.schools.map((s) =>
      el(
        'tr',
        { dataset: { id: s.id, active: String(s.active !== false) } },
        el('td', { text: s.id }),
        el('td', { text: s.name }),
        el('td', { text: t(`school.kind.${s.kind}`) }),
        el('td', { text: s.region || '—' }),
        activeCell(s),
        registerActions('school', s, s.name, { archive: isAdmin(), remove: isAdmin() }),
      ),
    ),
    'admin.schools.empty',
  );
}

function renderClassrooms() {
  options($('classroom-school'), active(cache.schools), {
    placeholder: 'admin.choose.school',
    value: (s) => s.id,
    label: schoolKindLabel,
  });
  fillTable(
    $('classroom-table'),
    cache.classrooms.map((c) =>
      el(
        'tr',
        { dataset: { id: c.id, active: String(c.active !== false) } },
        el('td', { text: c.id }),
        el('td', { text: c.school_name }),
        el('td', { text: c.name }),
        activeCell(c),
        registerActions('classroom', c, `${c.school_name} · ${c.name}`),
      ),
    ),
    'admin.classrooms.empty',
  );
}

const roomsOfKind = (kind) => active(cache.classrooms).filter((c) => schoolById(c.school_id)?.kind === kind);

/**
 * Tick boxes for 1–4 receiving classrooms; the order they are ticked in is the screen
 * order, shown as a number beside each. Used by the pairing forms and the lesson dialog.
 */
class RoomPicker {
  constructor(container, prefix) {
    this.container = container;
    this.prefix = prefix;
    this.order = [];
    container.addEventListener('change', (event) => {
      const id = Number(event.target.value);
      this.order = this.order.filter((x) => x !== id);
      if (event.target.checked) this.order.push(id);
      this.marks();
    });
  }

  /** `rooms`: [{id, label}]; `order`: the ids ticked, in order. */
  render(rooms, order = this.order) {
    this.order = order.filter((id) => rooms.some((r) => r.id === id));
    this.container.replaceChildren(
      ...(rooms.length
        ? rooms.map((room) => {
            const id = `${this.prefix}-${room.id}`;
            return el(
              'div',
              { class: 'choice' },
              el('input', {
                type: 'checkbox',
                id,
                name: 'receiving_classroom_ids',
                value: String(room.id),
                checked: this.order.includes(room.id),
              }),
              el('label', { for: id }, room.label, el('span', { class: 'order', 'aria-hidden': 'true' })),
            );
          })
        : [el('p', { class: 'meta', text: t('admin.pairings.no_rural') })]),
    );
    this.marks();
  }

  marks() {
    for (const box of this.container.querySelectorAll('input[type="checkbox"]')) {
      const position = this.order.indexOf(Number(box.value));
      box.nextElementSibling.querySelector('.order').textContent = position >= 0 ? ` ${position + 1}` : '';
      // 1拖4: at most four; the rest wait until one is unticked.
      box.disabled = position < 0 && this.order.length >= MAX_RECEIVING;
    }
  }

  error() {
    return this.order.length < 1 || this.order.length > MAX_RECEIVING
      ? t('admin.error.receiving_count', { max: MAX_RECEIVING })
      : null;
  }
}

let newPairingRooms;
let editPairingRooms;
let editLessonRooms;

/** Rural rooms to offer, plus those already chosen (an archived room stays visible). */
function receivingChoices(chosen = [], labels = new Map()) {
  const rooms = roomsOfKind('rural').map((c) => ({ id: c.id, label: `${c.school_name} · ${c.name}` }));
  for (const id of chosen) {
    if (!rooms.some((r) => r.id === id)) rooms.push({ id, label: labels.get(id) ?? classroomLabel(id) });
  }
  return rooms;
}

function renderPairings() {
  options($('pairing-main'), roomsOfKind('city'), {
    placeholder: 'admin.choose.main',
    value: (c) => c.id,
    label: (c) => `${c.school_name} · ${c.name}`,
  });
  newPairingRooms.render(receivingChoices());
  fillTable(
    $('pairing-table'),
    cache.pairings.map((p) =>
      el(
        'tr',
        { dataset: { id: p.id, active: String(p.active !== false) } },
        el('td', { text: p.id }),
        el('td', { text: p.name }),
        el('td', { text: classroomLabel(p.main_classroom_id) }),
        el('td', {}, el('ol', { class: 'inline-list' }, ...p.receiving_classroom_ids.map((id) => el('li', { text: classroomLabel(id) })))),
        activeCell(p),
        // A school admin changes the pairings taught from their school; the others they
        // only see (their classroom receives).
        isAdmin() || classroomById(p.main_classroom_id) ? registerActions('pairing', p, p.name) : el('td'),
      ),
    ),
    'admin.pairings.empty',
  );
}

function pairingLabel(p) {
  return t('admin.choose.pairing_label', {
    name: p.name,
    main: classroomLabel(p.main_classroom_id),
    count: p.receiving_classroom_ids.length,
  });
}

function renderLessonForm() {
  options($('lesson-pairing'), active(cache.pairings), { placeholder: 'admin.choose.pairing', value: (p) => p.id, label: pairingLabel });
}

function setLessonDefaults() {
  const form = $('lesson-form');
  const start = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000);
  if (!form.elements.planned_start.value) form.elements.planned_start.value = toLocalInput(start);
  if (!form.elements.planned_end.value) {
    form.elements.planned_end.value = toLocalInput(new Date(start.getTime() + 45 * 60_000));
  }
  form.elements.broadcast.checked = form.elements.kind.value === 'famous_school';
}

async function refreshSection() {
  await loadRegisters();
  if (current === 'schools') renderSchools();
  if (current === 'classrooms') renderClassrooms();
  if (current === 'pairings') renderPairings();
  if (current === 'lessons') {
    renderLessonForm();
    await renderLessons();
  }
}

// ------------------------------------------------------------------ row actions

const PATHS = { school: '/schools', classroom: '/classrooms', pairing: '/pairings' };
let confirming = null; // {kind, item, name, action} while the confirm dialog is open

function rowAction(kind, action, item, name, opener) {
  if (action === 'edit') return openEditor(kind, item, opener);
  if (action === 'restore') return restore(kind, item, name, opener);
  confirming = { kind, item, name, action };
  const what = whatOf(kind);
  $('confirm-title').textContent = t(`admin.confirm.${action}_title`, { what, name });
  $('confirm-text').textContent = t(`admin.confirm.${action}_text`);
  const yes = $('confirm-yes');
  yes.textContent = t(`admin.action.${action}`);
  yes.className = action === 'delete' ? 'danger' : 'primary';
  yes.hidden = false;
  $('confirm-archive').hidden = true;
  openDialog($('confirm-dialog'), opener);
}

async function restore(kind, item, name) {
  try {
    await api.patch(`${PATHS[kind]}/${item.id}`, { active: true });
    await refreshSection();
    setStatus(t('admin.status.restored', { what: whatOf(kind), name }), 'ok');
  } catch (error) {
    if (leaveIfSignedOut(error)) return;
    setStatus(describeError(error).text, 'error');
  }
  document.querySelector(`#section-${current} [data-id="${item.id}"][data-kind="${kind}"][data-action="archive"]`)?.focus();
}

async function confirmed(action) {
  const { kind, item, name } = confirming;
  const form = $('confirm-form');
  const path = `${PATHS[kind]}/${item.id}`;
  clearErrors(form);
  for (const button of form.querySelectorAll('button')) button.disabled = true;
  try {
    if (action === 'delete') await api.delete(path);
    else await api.patch(path, { active: false });
    await refreshSection();
    const dialog = $('confirm-dialog');
    // An archived row keeps its place (focus goes to its restore button); a deleted one
    // is gone, so focus goes to the section's heading.
    dialog.returnTo = action === 'archive' ? `[data-action="restore"][data-id="${item.id}"]` : 'h2';
    dialog.close();
    setStatus(t(action === 'delete' ? 'admin.status.deleted' : 'admin.status.archived', { what: whatOf(kind), name }), 'ok');
  } catch (error) {
    if (leaveIfSignedOut(error)) return;
    const described = describeError(error);
    showError(form, null, described.text);
    setStatus(t('admin.status.refused'), 'error');
    // Still referred to: archiving is what a delete can become.
    const archivable = action === 'delete' && described.inUse && item.active !== false && (kind !== 'school' || isAdmin());
    $('confirm-archive').hidden = !archivable;
    $('confirm-yes').hidden = archivable;
  } finally {
    for (const button of form.querySelectorAll('button')) button.disabled = false;
    if (!$('confirm-archive').hidden) $('confirm-archive').focus();
  }
}

// ------------------------------------------------------------------ editors

let editing = null; // the row being edited, as the server last sent it

function openEditor(kind, item, opener) {
  editing = item;
  if (kind === 'school') {
    const form = $('school-edit');
    form.elements.name.value = item.name;
    form.elements.kind.value = item.kind;
    form.elements.region.value = item.region || '';
  } else if (kind === 'classroom') {
    const form = $('classroom-edit');
    const schools = active(cache.schools);
    if (!schools.some((s) => s.id === item.school_id)) schools.push(schoolById(item.school_id) ?? { id: item.school_id, name: item.school_name, kind: 'rural' });
    options(form.elements.school_id, schools, { value: (s) => s.id, label: schoolKindLabel });
    form.elements.school_id.value = String(item.school_id);
    // A school admin cannot move a classroom to another school (the server refuses too).
    form.elements.school_id.disabled = !isAdmin();
    form.elements.name.value = item.name;
  } else if (kind === 'pairing') {
    const form = $('pairing-edit');
    const mains = roomsOfKind('city');
    if (!mains.some((c) => c.id === item.main_classroom_id)) {
      mains.push(classroomById(item.main_classroom_id) ?? { id: item.main_classroom_id, school_name: '', name: classroomLabel(item.main_classroom_id) });
    }
    options(form.elements.main_classroom_id, mains, { value: (c) => c.id, label: (c) => (c.school_name ? `${c.school_name} · ${c.name}` : c.name) });
    form.elements.main_classroom_id.value = String(item.main_classroom_id);
    form.elements.name.value = item.name;
    editPairingRooms.render(receivingChoices(item.receiving_classroom_ids), [...item.receiving_classroom_ids]);
  } else if (kind === 'lesson') {
    const form = $('lesson-edit');
    for (const name of ['kind', 'subject', 'grade', 'teacher_name', 'title']) form.elements[name].value = item[name];
    form.elements.planned_start.value = toLocalInput(new Date(item.planned_start));
    form.elements.planned_end.value = toLocalInput(new Date(item.planned_end));
    form.elements.broadcast.checked = item.broadcast;
    const main = item.rooms.find((r) => r.role === 'main');
    const mine = item.rooms.filter((r) => r.role === 'receiving');
    const labels = new Map(mine.map((r) => [r.classroom_id, `${r.school_name} · ${r.name}`]));
    editLessonRooms.render(
      receivingChoices(
        mine.map((r) => r.classroom_id),
        labels,
      ).filter((r) => r.id !== main?.classroom_id),
      mine.map((r) => r.classroom_id),
    );
    $('lesson-edit-hint').textContent = t('admin.lessons.main_room', { room: main ? `${main.school_name} · ${main.name}` : '—' });
  }
  openDialog($(`${kind}-dialog`), opener);
}

function lessonBodyFrom(form) {
  return {
    kind: form.elements.kind.value,
    subject: trimmed(form, 'subject'),
    grade: trimmed(form, 'grade'),
    teacher_name: trimmed(form, 'teacher_name'),
    title: trimmed(form, 'title'),
    planned_start: fromLocalInput(form.elements.planned_start.value),
    planned_end: fromLocalInput(form.elements.planned_end.value),
    broadcast: form.elements.broadcast.checked,
  };
}

function checkLessonTimes(form, body, errors) {
  if (!body.planned_start) errors.planned_start = t('admin.error.time');
  if (!body.planned_end) errors.planned_end = t('admin.error.time');
  if (body.planned_start && body.planned_end && new Date(body.planned_end) <= new Date(body.planned_start)) {
    errors.planned_end = t('admin.error.end_after_start');
  }
}

/** An edit dialog's form: sends only what changed, then redraws the section. */
function handleEdit(kind, form, { check, path, label }) {
  const dialog = $(`${kind}-dialog`);
  handleForm(form, {
    reset: false,
    check,
    send: (body) => api.patch(path(editing), body),
    async unchanged() {
      dialog.close();
      setStatus(t('admin.status.unchanged'), 'ok');
    },
    async done(saved) {
      await refreshSection(); // first, so that closing finds the redrawn row's button
      dialog.close();
      const moved = saved.lessons_rerouted?.length ?? 0;
      const key = moved ? 'admin.status.saved_rerouted' : 'admin.status.saved';
      setStatus(t(key, { what: whatOf(kind), name: label(saved), count: moved }), 'ok');
    },
  });
}

function wireEditors() {
  handleEdit('school', $('school-edit'), {
    path: (s) => `/schools/${s.id}`,
    label: (s) => s.name,
    check() {
      const form = $('school-edit');
      const errors = {};
      requireFields(form, ['name'], errors);
      const next = { name: trimmed(form, 'name'), kind: form.elements.kind.value, region: trimmed(form, 'region') };
      return { errors, body: changed({ ...editing, region: editing.region || '' }, next) };
    },
  });
  handleEdit('classroom', $('classroom-edit'), {
    path: (c) => `/classrooms/${c.id}`,
    label: (c) => `${c.school_name} · ${c.name}`,
    check() {
      const form = $('classroom-edit');
      const errors = {};
      requireFields(form, ['name'], errors);
      const next = { name: trimmed(form, 'name') };
      if (isAdmin()) next.school_id = Number(form.elements.school_id.value);
      return { errors, body: changed(editing, next) };
    },
  });
  handleEdit('pairing', $('pairing-edit'), {
    path: (p) => `/pairings/${p.id}`,
    label: (p) => p.name,
    check() {
      const form = $('pairing-edit');
      const errors = {};
      requireFields(form, ['name'], errors);
      const main = Number(form.elements.main_classroom_id.value);
      if (!main) errors.main_classroom_id = t('admin.error.choose_main');
      const rooms = editPairingRooms.error();
      if (rooms) errors.receiving_classroom_ids = rooms;
      const next = { name: trimmed(form, 'name'), main_classroom_id: main, receiving_classroom_ids: [...editPairingRooms.order] };
      return { errors, body: changed(editing, next) };
    },
  });
  const lessonEdit = $('lesson-edit');
  lessonEdit.elements.kind.addEventListener('change', () => {
    lessonEdit.elements.broadcast.checked = lessonEdit.elements.kind.value === 'famous_school';
  });
  handleEdit('lesson', lessonEdit, {
    path: (l) => `/lessons/${l.id}`,
    label: (l) => l.title,
    check() {
      const form = lessonEdit;
      const errors = {};
      requireFields(form, ['subject', 'grade', 'teacher_name', 'title'], errors);
      const next = lessonBodyFrom(form);
      checkLessonTimes(form, next, errors);
      const rooms = editLessonRooms.error();
      if (rooms) errors.receiving_classroom_ids = rooms;
      next.receiving_classroom_ids = [...editLessonRooms.order];
      const before = {
        ...editing,
        // Compared as instants: the server answers in UTC, the form says +08:00.
        planned_start: fromLocalInput(toLocalInput(new Date(editing.planned_start))),
        planned_end: fromLocalInput(toLocalInput(new Date(editing.planned_end))),
        receiving_classroom_ids: editing.rooms.filter((r) => r.role === 'receiving').map((r) => r.classroom_id),
      };
      return { errors, body: changed(before, next) };
    },
  });

  $('confirm-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (!$('confirm-yes').hidden && !$('confirm-yes').disabled) confirmed(confirming.action);
  });
  $('confirm-archive').addEventListener('click', () => confirmed('archive'));
}

// ------------------------------------------------------------------ lessons

const ACTIONS = {
  scheduled: ['edit', 'open', 'cancel'],
  open: ['edit', 'watch', 'end', 'cancel'],
  live: ['watch', 'end'],
  ended: [],
  cancelled: [],
};

async function renderLessons() {
  const filter = $('lesson-filter').value;
  const page = await api.get('/lessons', { state: filter, limit: LESSON_PAGE, offset: lessonOffset });
  if (page.total && lessonOffset >= page.total) {
    lessonOffset = Math.max(0, Math.floor((page.total - 1) / LESSON_PAGE) * LESSON_PAGE);
    return renderLessons();
  }
  $('lesson-count').textContent = t('admin.lessons.count', {
    total: page.total,
    from: page.total ? lessonOffset + 1 : 0,
    to: lessonOffset + page.items.length,
  });
  $('lesson-prev').disabled = lessonOffset === 0;
  $('lesson-next').disabled = lessonOffset + page.items.length >= page.total;
  shownLessons.clear();
  for (const lesson of page.items) shownLessons.set(lesson.id, lesson);
  fillTable(
    $('lesson-table'),
    page.items.map((lesson) => lessonRow(lesson)),
    'admin.lessons.empty',
  );
}

/** Whether the signed-in user schedules this lesson: an admin, or its main room's school admin. */
function ownsLesson(lesson) {
  return isAdmin() || lesson.rooms.some((r) => r.role === 'main' && classroomById(r.classroom_id));
}

function lessonRow(lesson) {
  const rooms = lesson.rooms.map((r) =>
    el('li', { class: r.role === 'main' ? 'room-main' : '' }, `${r.school_name} · ${r.name}`),
  );
  return el(
    'tr',
    { dataset: { id: lesson.id, state: lesson.state } },
    el('td', { text: lesson.id }),
    el(
      'td',
      {},
      el('strong', { text: lesson.title }),
      el('div', { class: 'meta', text: `${t(`kind.${lesson.kind}`)} · ${lesson.subject} · ${lesson.grade} · ${t('admin.lessons.teacher', { teacher: lesson.teacher_name })}` }),
    ),
    el('td', { text: span(lesson.planned_start, lesson.planned_end) }),
    el('td', {}, el('ol', { class: 'inline-list' }, ...rooms)),
    el('td', {}, el('span', { class: 'pill', dataset: { state: lesson.state }, text: t(`lesson.state.${lesson.state}`) })),
    el(
      'td',
      { class: 'actions' },
      ...ACTIONS[lesson.state].filter((a) => a === 'watch' || ownsLesson(lesson)).map((action) => actionControl(lesson, action)),
    ),
  );
}

function actionControl(lesson, action) {
  if (action === 'watch') return watchControl(lesson.id);
  if (action === 'edit') {
    return el('button', {
      type: 'button',
      dataset: { action: 'edit', id: lesson.id, lesson: lesson.id, kind: 'lesson' },
      'aria-label': t('admin.action.edit_named', { name: lesson.title }),
      text: t('admin.action.edit'),
      onclick: (event) => openEditor('lesson', lesson, event.currentTarget),
    });
  }
  const label = t(`admin.action.${action}`);
  const button = el('button', { type: 'button', dataset: { action, lesson: lesson.id }, text: label });
  let armed = null;
  button.addEventListener('click', async () => {
    // Cancel and end cannot be undone: the first press asks, the second does it.
    if ((action === 'cancel' || action === 'end') && !armed) {
      button.textContent = t('admin.action.confirm', { action: label });
      button.classList.add('danger');
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove('danger');
      }, 5000);
      return;
    }
    clearTimeout(armed);
    button.disabled = true;
    $('lesson-action-error').textContent = '';
    try {
      const moved = await api.post(`/lessons/${lesson.id}/${action}`, action === 'open' ? undefined : {});
      setStatus(t('admin.status.lesson_changed', { title: moved.title, state: t(`lesson.state.${moved.state}`) }), 'ok');
    } catch (error) {
      if (leaveIfSignedOut(error)) return;
      $('lesson-action-error').textContent = describeError(error).text;
      setStatus(t('admin.status.refused'), 'error');
    }
    await renderLessons().catch(showLoadError);
    document.querySelector(`#lesson-table tr[data-id="${lesson.id}"] button`)?.focus();
  });
  return button;
}

/** A button that mints a watch token (on demand: minting is audited) and becomes a link. */
function watchControl(lessonId) {
  const holder = el('span', { class: 'watch', dataset: { lesson: lessonId } });
  const known = watchLinks.get(lessonId);
  const link = (url) =>
    el('a', { href: url, target: '_blank', rel: 'noopener', class: 'watch-link', text: t('admin.action.open_watch') });
  if (known && known.expires > Date.now() + 60_000) {
    holder.append(link(known.url));
    return holder;
  }
  const button = el('button', { type: 'button', dataset: { action: 'watch', lesson: lessonId }, text: t('admin.action.watch') });
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const minted = await api.post(`/lessons/${lessonId}/join-tokens`, { role: 'watch', ttl_s: 3600 });
      const suffix = lang === 'en' ? '?lang=en' : '';
      const url = `/watch/${lessonId}${suffix}#token=${encodeURIComponent(minted.token)}`;
      watchLinks.set(lessonId, { url, expires: new Date(minted.expires_at).getTime() });
      const anchor = link(url);
      holder.replaceChildren(anchor);
      anchor.focus();
    } catch (error) {
      if (leaveIfSignedOut(error)) return;
      button.disabled = false;
      holder.append(el('span', { class: 'field-error', role: 'alert', text: describeError(error).text }));
    }
  });
  holder.append(button);
  return holder;
}

// ------------------------------------------------------------------ live overview

function quality(link) {
  const loss = (link.fraction_lost || 0) * 100;
  const rtt = link.rtt_ms ?? 0;
  if (loss > 5 || rtt > 400) return 'poor';
  if (loss > 1 || rtt > 150) return 'fair';
  return 'good';
}

function linkBadge(direction, link) {
  const parts = [
    t('admin.live.bitrate', { kbps: Math.round(link.bitrate_kbps || 0) }),
    t('admin.live.loss', { percent: ((link.fraction_lost || 0) * 100).toFixed(1) }),
  ];
  if (link.rtt_ms !== null && link.rtt_ms !== undefined) parts.push(t('admin.live.rtt', { ms: Math.round(link.rtt_ms) }));
  return el(
    'span',
    { class: `link-badge q-${quality(link)}`, dataset: { direction }, title: t(`admin.live.${direction}_title`) },
    `${t(`admin.live.${direction}`)} ${parts.join(' · ')}`,
  );
}

function roomItem(room, lessonRoom) {
  const badges = [];
  if (room.on_stage) badges.push(el('span', { class: 'badge badge-stage', text: t('badge.stage') }));
  if (room.hand_raised) badges.push(el('span', { class: 'badge badge-hand', text: t('badge.hand') }));
  if (room.reconnects) badges.push(el('span', { class: 'badge', text: t('admin.live.reconnects', { count: room.reconnects }) }));
  return el(
    'li',
    { class: `live-room ${room.connected ? 'connected' : 'offline'}`, dataset: { classroomId: room.classroom_id, connected: String(room.connected), role: room.role } },
    el('span', { class: 'dot', 'aria-hidden': 'true' }),
    el(
      'span',
      { class: 'live-room-name' },
      el('span', { class: `badge ${room.role === 'main' ? 'badge-main' : ''}`, text: t(`role.${room.role}`) }),
      ` ${lessonRoom?.school_name ? `${lessonRoom.school_name} · ` : ''}${room.name}`,
    ),
    el('span', { class: 'live-room-state', text: t(room.connected ? 'admin.live.connected' : 'admin.live.offline') }),
    room.connected ? [linkBadge('up', room.upstream), linkBadge('down', room.downstream)] : [],
    badges,
  );
}

function broadcastLine(live) {
  const b = live?.broadcast;
  if (!b) return t('admin.live.broadcast_off');
  const stateText = t(`admin.live.broadcast.${b.state}`);
  return t('admin.live.broadcast_on', { state: stateText, segments: b.segments });
}

function recordingLine(recording) {
  if (recording.state === 'waiting') {
    // Rooms connect during the lead-in; pupils are recorded from the bell on.
    return t('admin.live.recording_waiting', { time: timeOnly.format(new Date(recording.starts_at)) });
  }
  const key = `admin.live.recording_state.${recording.state}`;
  return t('admin.live.recording_detail', {
    state: key in messages ? t(key) : recording.state,
    tracks: recording.tracks ?? 0,
    size: megabytes(recording.bytes),
  });
}

function liveCard(lesson, live) {
  const byId = new Map(lesson.rooms.map((r) => [r.classroom_id, r]));
  const rooms = live
    ? live.rooms.filter((r) => r.role !== 'watch')
    : lesson.rooms.map((r) => ({ classroom_id: r.classroom_id, name: r.name, role: r.role, connected: false }));
  const connected = rooms.filter((r) => r.connected).length;
  const card = el(
    'li',
    { class: 'live-card', dataset: { lesson: lesson.id, state: lesson.state, connected: String(connected) } },
    el(
      'header',
      { class: 'live-head' },
      el('h3', {}, lesson.title),
      el('span', { class: 'pill', dataset: { state: lesson.state }, text: t(`lesson.state.${lesson.state}`) }),
    ),
    el('p', { class: 'meta', text: `${t(`kind.${lesson.kind}`)} · ${lesson.subject} · ${lesson.grade} · ${t('admin.lessons.teacher', { teacher: lesson.teacher_name })} · ${span(lesson.planned_start, lesson.planned_end)}` }),
    el('p', { class: 'live-summary', text: t('admin.live.summary', { connected, total: rooms.length, watchers: live?.watchers ?? 0 }) }),
    live ? null : el('p', { class: 'meta', text: t('admin.live.no_session') }),
    el('ul', { class: 'live-rooms' }, ...rooms.map((r) => roomItem(r, byId.get(r.classroom_id)))),
    el('p', { class: 'meta live-broadcast', dataset: { broadcast: live?.broadcast?.state ?? 'off' }, text: broadcastLine(live) }),
    el('p', {
      class: 'meta live-recording',
      dataset: { recording: live?.recording?.state ?? 'off' },
      text: live?.recording ? recordingLine(live.recording) : t('admin.live.recording_off'),
    }),
    live?.forwarding?.transcodes ? el('p', { class: 'form-error', text: t('admin.live.transcodes', { count: live.forwarding.transcodes }) }) : null,
  );
  card.append(el('div', { class: 'live-actions' }, watchControl(lesson.id)));
  return card;
}

// Alerts (GET /alerts, classroom/alerts.py): a lesson not started five minutes after its
// time, a room that dropped and has not come back. Only the summary line is a live region,
// and it changes only when the number of alerts does, so a screen reader is not told the
// same list every few seconds.
function alertItem(alert, serverTime) {
  const since = new Date(alert.since);
  const minutes = Math.max(0, Math.floor((serverTime - since) / 60000));
  const vars = {
    lesson: alert.lesson_id,
    title: alert.lesson_title,
    school: alert.school_name,
    classroom: alert.classroom_name,
    role: t(`role.${alert.role}`),
    time: timeOnly.format(new Date(alert.planned_start)),
  };
  const text = alert.kind === 'dropped' ? t('stats.alert.dropped', vars) : t('stats.alert.not_started', vars);
  return el(
    'li',
    { class: `alert alert-${alert.kind}`, dataset: { key: alert.key, kind: alert.kind, lesson: alert.lesson_id, classroomId: alert.classroom_id } },
    el('strong', { class: 'alert-kind', text: alert.kind === 'dropped' ? t('stats.alert.kind.dropped') : t('stats.alert.kind.not_started') }),
    el('span', { class: 'alert-text', text }),
    el('span', { class: 'alert-since', text: t('stats.alert.since', { time: timeOnly.format(since), minutes }) }),
  );
}

function renderAlerts(answer) {
  state.lastAlerts = answer.items;
  const serverTime = new Date(answer.server_time);
  $('stats-link').href = lang === 'en' ? '/admin/stats?lang=en' : '/admin/stats';
  const box = $('live-alerts');
  box.dataset.count = String(answer.items.length);
  $('live-alerts-list').replaceChildren(...answer.items.map((a) => alertItem(a, serverTime)));
  const summary = answer.items.length ? t('stats.alert.count', { count: answer.items.length }) : t('stats.alert.none');
  if ($('live-alerts-summary').textContent !== summary) $('live-alerts-summary').textContent = summary;
}

async function pollLive() {
  const generation = liveGeneration;
  try {
    const [live, open, alerts] = await Promise.all([
      api.get('/lessons', { state: 'live', limit: 50 }),
      api.get('/lessons', { state: 'open', limit: 50 }),
      api.get('/alerts'),
    ]);
    const lessons = [...live.items, ...open.items];
    const states = await Promise.all(
      lessons.map((lesson) =>
        api.get(`/lessons/${lesson.id}/live`).catch((error) => {
          if (error instanceof ApiError && error.code === 'not_live') return null;
          throw error;
        }),
      ),
    );
    if (generation !== liveGeneration) return; // left the section meanwhile
    renderAlerts(alerts);
    state.lastLive = lessons.map((lesson, i) => ({ lesson, live: states[i] }));
    state.liveUpdates += 1;
    const cards = $('live-cards');
    // Keep focus where it was across a refresh (a keyboard user on a watch link).
    const focused = document.activeElement?.closest?.('.live-card')?.dataset.lesson;
    cards.replaceChildren(
      ...(lessons.length
        ? state.lastLive.map(({ lesson, live: s }) => liveCard(lesson, s))
        : [el('li', { class: 'empty', text: t('admin.live.empty') })]),
    );
    if (focused) cards.querySelector(`.live-card[data-lesson="${focused}"] .live-actions a, .live-card[data-lesson="${focused}"] .live-actions button`)?.focus({ preventScroll: true });
    $('live-updated').textContent = t('admin.live.updated', { time: timeOnly.format(new Date()), seconds: LIVE_POLL_MS / 1000 });
    $('live-updated').dataset.status = 'ok';
  } catch (error) {
    if (generation !== liveGeneration) return;
    if (leaveIfSignedOut(error)) return;
    $('live-updated').textContent = describeError(error).text;
    $('live-updated').dataset.status = 'error';
  }
  if (generation === liveGeneration) livePoll = setTimeout(pollLive, LIVE_POLL_MS);
}

function stopLive() {
  liveGeneration += 1;
  clearTimeout(livePoll);
  livePoll = null;
}

// ------------------------------------------------------------------ sections

function sectionFromHash() {
  const name = window.location.hash.slice(1);
  return SECTIONS.includes(name) ? name : null;
}

async function show(name, { focus = true } = {}) {
  stopLive();
  current = name;
  for (const section of document.querySelectorAll('.admin-section')) section.hidden = section.id !== `section-${name}`;
  for (const link of document.querySelectorAll('#admin-nav a')) {
    if (link.dataset.section === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${t(`admin.nav.${name}`)} · ${t('admin.page_title')}`;
  updateLangSwitch();
  if (focus) {
    const heading = document.querySelector(`#section-${name} h2`);
    heading.tabIndex = -1;
    heading.focus({ preventScroll: false });
  }
  setStatus(t('status.loading'));
  try {
    if (name === 'live') {
      setStatus('');
      await pollLive();
      return;
    }
    await loadRegisters();
    if (name === 'schools') renderSchools();
    if (name === 'classrooms') renderClassrooms();
    if (name === 'pairings') renderPairings();
    if (name === 'lessons') {
      renderLessonForm();
      setLessonDefaults();
      await renderLessons();
    }
    setStatus('');
  } catch (error) {
    showLoadError(error);
  }
}

function showLoadError(error) {
  if (leaveIfSignedOut(error)) return;
  setStatus(describeError(error).text, 'error');
}

/** A signed-in account whose role has no admin pages: say so, show nothing else. */
function showDenied() {
  current = 'denied';
  for (const section of document.querySelectorAll('.admin-section')) section.hidden = section.id !== 'section-denied';
  $('admin-nav').hidden = true;
  setStatus('');
  const heading = document.querySelector('#section-denied h2');
  heading.tabIndex = -1;
  heading.focus();
}

async function enter() {
  $('admin-nav').hidden = false;
  const name = sectionFromHash();
  if (!name) history.replaceState(null, '', `${window.location.pathname}${window.location.search}#${DEFAULT_SECTION}`);
  await show(name ?? DEFAULT_SECTION, { focus: false });
}

// ------------------------------------------------------------------ wiring

function wireForms() {
  newPairingRooms = new RoomPicker($('pairing-receiving-choices'), 'pairing-rcv');
  editPairingRooms = new RoomPicker($('pairing-edit-choices'), 'pairing-edit-rcv');
  editLessonRooms = new RoomPicker($('lesson-edit-choices'), 'lesson-edit-rcv');

  handleForm($('school-form'), {
    check() {
      const form = $('school-form');
      const errors = {};
      requireFields(form, ['name'], errors);
      const body = { name: trimmed(form, 'name'), kind: form.elements.kind.value };
      if (trimmed(form, 'region')) body.region = trimmed(form, 'region');
      return { errors, body };
    },
    send: (body) => api.post('/schools', body),
    // The status is set last: "ok" on screen means the page is ready for the next entry.
    async done(school) {
      await loadRegisters();
      renderSchools();
      $('school-name').focus();
      setStatus(t('admin.status.created_school', { name: school.name }), 'ok');
    },
  });

  handleForm($('classroom-form'), {
    check() {
      const form = $('classroom-form');
      const errors = {};
      if (!form.elements.school_id.value) errors.school_id = t('admin.error.choose_school');
      requireFields(form, ['name'], errors);
      return { errors, body: { school_id: Number(form.elements.school_id.value), name: trimmed(form, 'name') } };
    },
    send: (body) => api.post('/classrooms', body),
    async done(room) {
      await loadRegisters();
      renderClassrooms();
      $('classroom-school').value = String(room.school_id); // the next room is often in the same school
      $('classroom-name').focus();
      setStatus(t('admin.status.created_classroom', { name: `${room.school_name} · ${room.name}` }), 'ok');
    },
  });

  handleForm($('pairing-form'), {
    check() {
      const form = $('pairing-form');
      const errors = {};
      requireFields(form, ['name'], errors);
      const main = Number(form.elements.main_classroom_id.value);
      if (!main) errors.main_classroom_id = t('admin.error.choose_main');
      const rooms = newPairingRooms.error();
      if (rooms) errors.receiving_classroom_ids = rooms;
      return {
        errors,
        body: { name: trimmed(form, 'name'), main_classroom_id: main, receiving_classroom_ids: [...newPairingRooms.order] },
      };
    },
    send: (body) => api.post('/pairings', body),
    async done(pairing) {
      newPairingRooms.order = [];
      await loadRegisters();
      renderPairings();
      $('pairing-name').focus();
      setStatus(t('admin.status.created_pairing', { name: pairing.name }), 'ok');
    },
  });

  const lessonForm = $('lesson-form');
  lessonForm.elements.kind.addEventListener('change', () => {
    lessonForm.elements.broadcast.checked = lessonForm.elements.kind.value === 'famous_school';
  });
  handleForm(lessonForm, {
    check() {
      const form = lessonForm;
      const errors = {};
      if (!form.elements.pairing_id.value) errors.pairing_id = t('admin.error.choose_pairing');
      requireFields(form, ['subject', 'grade', 'teacher_name', 'title'], errors);
      const body = { pairing_id: Number(form.elements.pairing_id.value), ...lessonBodyFrom(form) };
      checkLessonTimes(form, body, errors);
      return { errors, body };
    },
    send: (body) => api.post('/lessons', body),
    async done(lesson) {
      setLessonDefaults();
      lessonOffset = 0;
      await renderLessons();
      $('lesson-pairing').focus();
      setStatus(t('admin.status.created_lesson', { title: lesson.title, time: span(lesson.planned_start, lesson.planned_end) }), 'ok');
    },
  });

  $('lesson-filter').addEventListener('change', () => {
    lessonOffset = 0;
    renderLessons().catch(showLoadError);
  });
  $('lesson-prev').addEventListener('click', () => {
    lessonOffset = Math.max(0, lessonOffset - LESSON_PAGE);
    renderLessons().catch(showLoadError);
  });
  $('lesson-next').addEventListener('click', () => {
    lessonOffset += LESSON_PAGE;
    renderLessons().catch(showLoadError);
  });

}

async function main() {
  await loadMessages();
  let session;
  try {
    session = await currentSession();
  } catch (error) {
    setStatus(describeError(error).text, 'error');
    return;
  }
  if (!session) {
    window.location.assign(loginUrl());
    return;
  }
  me = session.user;
  // The shared top bar (who is signed in, sign-out, home, timetable, library); this page
  // keeps its own language link, which carries the section hash along.
  await mountNav(t, { session, current: 'admin', langSwitch: false, beforeSignOut: stopLive });
  if (!ADMIN_ROLES.has(me.role)) {
    showDenied();
    return;
  }
  wireForms();
  wireEditors();
  wireDialogs();
  window.addEventListener('hashchange', () => {
    const name = sectionFromHash();
    if (name && name !== current) show(name);
  });
  await enter();
}

window.tongbuAdmin = {
  describeError: (error) => describeError(Object.assign(new ApiError(error.status, error.code, error.message, error.field))),
  get liveUpdates() {
    return state.liveUpdates;
  },
  get lastLive() {
    return state.lastLive;
  },
  get alerts() {
    return state.lastAlerts;
  },
  get section() {
    return current;
  },
  get role() {
    return me?.role ?? null;
  },
};

main();
