// The admin pages: schools, classrooms, pairings, lessons and the live overview, as hash
// routes of one page (#schools, #classrooms, #pairings, #lessons, #live).
//
// Every request goes through admin_api.js (the one file that knows how we authenticate).
// Every string comes from the message catalogue (zh-CN by default, ?lang=en for English).
// Validation happens twice: here, for what a form can know by itself (required fields,
// 1–4 receiving rooms, end after start), and on the server, whose {"error": {code,
// message, field}} is shown next to the field it names, in the page's language.
//
// Tests read `window.tongbuAdmin` (end of this file) rather than scraping the DOM.

import { ApiError, api, signIn, signOut, signedIn, takeTokenFromUrl } from './admin_api.js';

const SECTIONS = ['schools', 'classrooms', 'pairings', 'lessons', 'live'];
const DEFAULT_SECTION = 'lessons';
const LIVE_POLL_MS = 3000;
const LESSON_PAGE = 20;
const MAX_RECEIVING = 4;
// Lesson times are entered and shown in Beijing time. Asia/Shanghai has been UTC+8 all
// year since 1991, so a form value converts with a fixed offset.
const ZONE = 'Asia/Shanghai';
const ZONE_OFFSET = '+08:00';

const lang = new URLSearchParams(window.location.search).get('lang') === 'en' ? 'en' : 'zh-CN';
const $ = (id) => document.getElementById(id);

let messages = {};
const cache = { schools: [], classrooms: [], pairings: [] };
let current = null; // the section on screen
let lessonOffset = 0;
let livePoll = null;
let liveGeneration = 0;
const watchLinks = new Map(); // lesson id -> {url, expires} minted on demand
const state = { lastLive: [], liveUpdates: 0 };

// ------------------------------------------------------------------ i18n

function t(key, vars = {}) {
  const text = messages[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ''));
}

async function loadMessages() {
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

function updateLangSwitch() {
  const params = new URLSearchParams(window.location.search);
  if (lang === 'en') params.delete('lang');
  else params.set('lang', 'en');
  const query = params.toString();
  const swap = $('lang-switch');
  swap.textContent = lang === 'en' ? '中文' : 'English';
  swap.href = window.location.pathname + (query ? `?${query}` : '') + window.location.hash;
}

// ------------------------------------------------------------------ formatting

const dateTime = new Intl.DateTimeFormat(lang, {
  timeZone: ZONE,
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  hour12: false,
});
const timeOnly = new Intl.DateTimeFormat(lang, { timeZone: ZONE, hour: '2-digit', minute: '2-digit', hour12: false });

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : dateTime.format(date);
}

function span(startIso, endIso) {
  const end = new Date(endIso);
  return `${when(startIso)}–${Number.isNaN(end.getTime()) ? '' : timeOnly.format(end)}`;
}

/** A Date as the value of a datetime-local input, in Beijing time: "2025-03-03T08:00". */
function toLocalInput(date) {
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
function fromLocalInput(value) {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value)) return null;
  return `${value.length === 16 ? `${value}:00` : value}${ZONE_OFFSET}`;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function setStatus(text, kind = 'info') {
  const status = $('status');
  status.textContent = text;
  status.dataset.status = kind;
}

// ------------------------------------------------------------------ server errors

const BOOKED = /^classroom (\d+) \((.*)\) is booked by lesson (\d+) (['"])(.*)\4 from (\S+) to (\S+)$/;

/** The form field an error names: "receiving_classroom_ids[1]" -> "receiving_classroom_ids". */
function baseField(field) {
  if (!field) return null;
  return field.replace(/^\$\.?/, '').replace(/\[\d+\].*$/, '').split('.')[0] || null;
}

/** A msgspec or domain validation message as a sentence from the catalogue. */
function invalidText(message) {
  const m = message || '';
  if (/Expected `array` of length [<>]=/.test(m) || /1 to \d+ receiving classrooms/.test(m)) {
    return t('admin.error.receiving_count', { max: MAX_RECEIVING });
  }
  if (/Expected `str` of length >= 1/.test(m) || /missing required field/i.test(m)) {
    return t('admin.error.required');
  }
  const long = m.match(/Expected `str` of length <= (\d+)/);
  if (long) return t('admin.error.too_long', { max: long[1] });
  if (/must end after it starts/.test(m)) return t('admin.error.end_after_start');
  if (/listed twice/.test(m)) return t('admin.error.receiving_twice');
  if (/main classroom cannot also receive/.test(m)) return t('admin.error.main_also_receiving');
  if (/unknown timezone/.test(m)) return t('admin.error.timezone');
  if (/datetime|timezone/i.test(m)) return t('admin.error.time');
  if (/Invalid enum value|unknown .* kind|Expected `int` >= 1|Expected `int`/.test(m)) {
    return t('admin.error.choice');
  }
  if (/unknown field/i.test(m)) return t('admin.error.unknown_field');
  return t('admin.error.invalid', { message: m });
}

/**
 * An ApiError as {field, text}: `field` is the form field to show it next to (null: the
 * form as a whole), `text` a sentence in the page's language.
 */
function describeError(error) {
  if (!(error instanceof ApiError)) {
    return { field: null, text: t('admin.error.network', { message: String(error?.message ?? error) }) };
  }
  const field = baseField(error.field);
  const message = error.message || '';
  switch (error.code) {
    case 'invalid_body':
      return { field, text: invalidText(message) };
    case 'conflict': {
      const booked = message.match(BOOKED);
      if (booked) {
        return {
          field: field || 'planned_start',
          text: t('admin.error.double_booking', {
            room: booked[2],
            lesson: booked[3],
            title: booked[5],
            time: span(booked[6], booked[7]),
          }),
        };
      }
      if (/already has a classroom named/.test(message)) {
        return { field: field || 'name', text: t('admin.error.duplicate_classroom') };
      }
      return { field, text: t('admin.error.conflict', { message }) };
    }
    case 'not_found':
      return { field, text: field ? t('admin.error.missing_choice') : t('admin.error.not_found') };
    case 'illegal_transition':
      return { field: null, text: t('admin.error.illegal_transition') };
    case 'lesson_ended':
      return { field: null, text: t('admin.error.lesson_ended') };
    case 'unauthorized':
      return { field: null, text: t('admin.error.unauthorized') };
    case 'forbidden':
      return { field: null, text: t('admin.error.forbidden') };
    case 'too_large':
      return { field: null, text: t('admin.error.too_large') };
    case 'network':
      return { field: null, text: t('admin.error.network', { message }) };
    default:
      return { field, text: t('admin.error.unknown', { status: error.status, message }) };
  }
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
    if (focus) (target.matches('fieldset') ? target.querySelector('input') : target)?.focus();
  }
}

/**
 * Submit a form: `check()` returns client-side errors ({field: text}) or the body to send;
 * a refusal from the server is shown next to its field. Nothing is sent twice at once.
 */
function handleForm(form, { check, send, done }) {
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
    button.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const created = await send(body);
      form.reset();
      await done(created);
    } catch (error) {
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
    el('option', { value: '', text: t(placeholder) }),
    ...items.map((item) => el('option', { value: String(value(item)), text: label(item) })),
  );
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

function renderSchools() {
  fillTable(
    $('school-table'),
    cache.schools.map((s) =>
      el(
        'tr',
        { dataset: { id: s.id } },
        el('td', { text: s.id }),
        el('td', { text: s.name }),
        el('td', { text: t(`school.kind.${s.kind}`) }),
        el('td', { text: s.region || '—' }),
      ),
    ),
    'admin.schools.empty',
  );
}

function renderClassrooms() {
  options($('classroom-school'), cache.schools, {
    placeholder: 'admin.choose.school',
    value: (s) => s.id,
    label: (s) => t('admin.choose.school_label', { name: s.name, kind: t(`school.kind.${s.kind}`) }),
  });
  fillTable(
    $('classroom-table'),
    cache.classrooms.map((c) =>
      el('tr', { dataset: { id: c.id } }, el('td', { text: c.id }), el('td', { text: c.school_name }), el('td', { text: c.name })),
    ),
    'admin.classrooms.empty',
  );
}

const roomsOfKind = (kind) => cache.classrooms.filter((c) => schoolById(c.school_id)?.kind === kind);

let receivingOrder = []; // classroom ids in the order they were ticked: the screen order

function renderPairings() {
  options($('pairing-main'), roomsOfKind('city'), {
    placeholder: 'admin.choose.main',
    value: (c) => c.id,
    label: (c) => `${c.school_name} · ${c.name}`,
  });
  const rural = roomsOfKind('rural');
  receivingOrder = receivingOrder.filter((id) => rural.some((c) => c.id === id));
  const choices = $('pairing-receiving-choices');
  choices.replaceChildren(
    ...(rural.length
      ? rural.map((c) => {
          const id = `pairing-rcv-${c.id}`;
          return el(
            'div',
            { class: 'choice' },
            el('input', {
              type: 'checkbox',
              id,
              name: 'receiving_classroom_ids',
              value: String(c.id),
              checked: receivingOrder.includes(c.id),
            }),
            el('label', { for: id }, `${c.school_name} · ${c.name}`, el('span', { class: 'order', 'aria-hidden': 'true' })),
          );
        })
      : [el('p', { class: 'meta', text: t('admin.pairings.no_rural') })]),
  );
  updateReceivingMarks();
  fillTable(
    $('pairing-table'),
    cache.pairings.map((p) =>
      el(
        'tr',
        { dataset: { id: p.id } },
        el('td', { text: p.id }),
        el('td', { text: p.name }),
        el('td', { text: classroomLabel(p.main_classroom_id) }),
        el('td', {}, el('ol', { class: 'inline-list' }, ...p.receiving_classroom_ids.map((id) => el('li', { text: classroomLabel(id) })))),
      ),
    ),
    'admin.pairings.empty',
  );
}

function updateReceivingMarks() {
  const boxes = document.querySelectorAll('#pairing-receiving-choices input[type="checkbox"]');
  for (const box of boxes) {
    const position = receivingOrder.indexOf(Number(box.value));
    box.nextElementSibling.querySelector('.order').textContent = position >= 0 ? ` ${position + 1}` : '';
    // 1拖4: at most four; the rest wait until one is unticked.
    box.disabled = position < 0 && receivingOrder.length >= MAX_RECEIVING;
  }
}

function pairingLabel(p) {
  return t('admin.choose.pairing_label', {
    name: p.name,
    main: classroomLabel(p.main_classroom_id),
    count: p.receiving_classroom_ids.length,
  });
}

function renderLessonForm() {
  options($('lesson-pairing'), cache.pairings, { placeholder: 'admin.choose.pairing', value: (p) => p.id, label: pairingLabel });
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

// ------------------------------------------------------------------ lessons

const ACTIONS = {
  scheduled: ['open', 'cancel'],
  open: ['watch', 'end', 'cancel'],
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
  fillTable(
    $('lesson-table'),
    page.items.map((lesson) => lessonRow(lesson)),
    'admin.lessons.empty',
  );
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
    el('td', { class: 'actions' }, ...ACTIONS[lesson.state].map((action) => actionControl(lesson, action))),
  );
}

function actionControl(lesson, action) {
  if (action === 'watch') return watchControl(lesson.id);
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
      const changed = await api.post(`/lessons/${lesson.id}/${action}`, action === 'open' ? undefined : {});
      setStatus(t('admin.status.lesson_changed', { title: changed.title, state: t(`lesson.state.${changed.state}`) }), 'ok');
    } catch (error) {
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
    live?.recording ? el('p', { class: 'meta', text: t('admin.live.recording', { state: live.recording.state }) }) : null,
    live?.forwarding?.transcodes ? el('p', { class: 'form-error', text: t('admin.live.transcodes', { count: live.forwarding.transcodes }) }) : null,
  );
  card.append(el('div', { class: 'live-actions' }, watchControl(lesson.id)));
  return card;
}

async function pollLive() {
  const generation = liveGeneration;
  try {
    const [live, open] = await Promise.all([
      api.get('/lessons', { state: 'live', limit: 50 }),
      api.get('/lessons', { state: 'open', limit: 50 }),
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
  if (error instanceof ApiError && error.status === 401) {
    showSignIn();
    return;
  }
  setStatus(describeError(error).text, 'error');
}

function showSignIn() {
  stopLive();
  current = null;
  for (const section of document.querySelectorAll('.admin-section')) section.hidden = section.id !== 'section-signin';
  $('admin-nav').hidden = true;
  $('sign-out').hidden = true;
  $('whoami').textContent = '';
  setStatus(t('admin.signin.needed'));
  $('signin-username').focus();
}

async function enter() {
  const me = await api.get('/me');
  $('whoami').textContent = t('admin.whoami', { name: me.display_name || me.username, role: t(`admin.role.${me.role}`) });
  $('admin-nav').hidden = false;
  $('sign-out').hidden = false;
  const name = sectionFromHash();
  if (!name) history.replaceState(null, '', `${window.location.pathname}${window.location.search}#${DEFAULT_SECTION}`);
  await show(name ?? DEFAULT_SECTION, { focus: false });
}

// ------------------------------------------------------------------ wiring

function wireForms() {
  handleForm($('signin-form'), {
    check() {
      const form = $('signin-form');
      const token = form.elements.token.value.trim();
      const username = trimmed(form, 'username');
      const password = form.elements.password.value;
      const errors = {};
      if (!token) {
        if (!username) errors.username = t('admin.error.required');
        if (!password) errors.password = t('admin.error.required');
      }
      return { errors, body: token ? { token } : { username, password } };
    },
    send: (body) => signIn(body),
    async done() {
      await enter();
    },
  });

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
    async done(school) {
      setStatus(t('admin.status.created_school', { name: school.name }), 'ok');
      await loadRegisters();
      renderSchools();
      $('school-name').focus();
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
      setStatus(t('admin.status.created_classroom', { name: `${room.school_name} · ${room.name}` }), 'ok');
      await loadRegisters();
      renderClassrooms();
      $('classroom-school').value = String(room.school_id); // the next room is often in the same school
      $('classroom-name').focus();
    },
  });

  $('pairing-receiving-choices').addEventListener('change', (event) => {
    const id = Number(event.target.value);
    receivingOrder = receivingOrder.filter((x) => x !== id);
    if (event.target.checked) receivingOrder.push(id);
    updateReceivingMarks();
  });
  handleForm($('pairing-form'), {
    check() {
      const form = $('pairing-form');
      const errors = {};
      requireFields(form, ['name'], errors);
      const main = Number(form.elements.main_classroom_id.value);
      if (!main) errors.main_classroom_id = t('admin.error.choose_main');
      if (receivingOrder.length < 1 || receivingOrder.length > MAX_RECEIVING) {
        errors.receiving_classroom_ids = t('admin.error.receiving_count', { max: MAX_RECEIVING });
      }
      return {
        errors,
        body: { name: trimmed(form, 'name'), main_classroom_id: main, receiving_classroom_ids: [...receivingOrder] },
      };
    },
    send: (body) => api.post('/pairings', body),
    async done(pairing) {
      setStatus(t('admin.status.created_pairing', { name: pairing.name }), 'ok');
      receivingOrder = [];
      await loadRegisters();
      renderPairings();
      $('pairing-name').focus();
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
      const start = fromLocalInput(form.elements.planned_start.value);
      const end = fromLocalInput(form.elements.planned_end.value);
      if (!start) errors.planned_start = t('admin.error.time');
      if (!end) errors.planned_end = t('admin.error.time');
      if (start && end && new Date(end) <= new Date(start)) errors.planned_end = t('admin.error.end_after_start');
      return {
        errors,
        body: {
          pairing_id: Number(form.elements.pairing_id.value),
          kind: form.elements.kind.value,
          subject: trimmed(form, 'subject'),
          grade: trimmed(form, 'grade'),
          teacher_name: trimmed(form, 'teacher_name'),
          title: trimmed(form, 'title'),
          planned_start: start,
          planned_end: end,
          broadcast: form.elements.broadcast.checked,
        },
      };
    },
    send: (body) => api.post('/lessons', body),
    async done(lesson) {
      setStatus(t('admin.status.created_lesson', { title: lesson.title, time: span(lesson.planned_start, lesson.planned_end) }), 'ok');
      setLessonDefaults();
      lessonOffset = 0;
      await renderLessons();
      $('lesson-pairing').focus();
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

  $('sign-out').addEventListener('click', () => {
    signOut();
    showSignIn();
  });
}

async function main() {
  takeTokenFromUrl();
  await loadMessages();
  wireForms();
  window.addEventListener('hashchange', () => {
    const name = sectionFromHash();
    if (name && signedIn() && name !== current) show(name);
  });
  if (!signedIn()) {
    showSignIn();
    return;
  }
  try {
    await enter();
  } catch (error) {
    showLoadError(error);
  }
}

window.tongbuAdmin = {
  describeError: (error) => describeError(Object.assign(new ApiError(error.status, error.code, error.message, error.field))),
  get liveUpdates() {
    return state.liveUpdates;
  },
  get lastLive() {
    return state.lastLive;
  },
  get section() {
    return current;
  },
};

main();
