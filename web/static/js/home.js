// The home page (/): what the signed-in user can do now, by role.
//
//   teacher       the lessons they teach (live, today, the coming days) → the console
//                 /teach/{id}; a receiving room of their school → /room/{id}?classroom=
//   school_admin  lessons their school takes part in: console for its main rooms, the
//   device        receiving page for its receiving rooms (a school admin also watches)
//   reviewer      live and about-to-start lessons to watch, and the library
//   admin         every live and upcoming lesson with console, rooms and watch, plus
//                 the admin pages and the library
//
// Everything comes from GET /lessons (the server narrows it to what the user may read)
// and, for school accounts, GET /classrooms (which of the lesson's rooms are theirs).
// The list refreshes every 30 s, so a classroom screen left on this page sees a lesson
// go live. Tests read `window.tongbuHome`.

import { ApiError, api, loadCatalogue, pageLang } from './api.js';
import { ownClassroomIds } from './live_entry.js';
import { mountNav, withLang } from './nav.js';
import { requireSession } from './session.js';

const lang = pageLang();
const $ = (id) => document.getElementById(id);
const DAYS_AHEAD = 7;
const REFRESH_MS = 30_000;
const PAGE_SIZE = 200; // the API's largest page; a school has far fewer lessons a week
const SHOWN_STATES = new Set(['scheduled', 'open', 'live']);

let t = Object.assign((key) => key, { has: () => false });
let drawn = null; // what the lists show now, so a refresh that changed nothing redraws nothing

window.tongbuHome = { state: 'loading', role: null, lessons: [] };

// ------------------------------------------------------------------ what a user may do

/**
 * The links a lesson offers this user: [{kind: 'teach'|'room'|'watch', href, room?}].
 * Mirrors the server's rules (docs/api.md, join tokens), so a button never leads to a
 * refusal; `own` is the set of classroom ids whose seat the user may take (null: any).
 */
export function lessonActions(lesson, user, own) {
  const admin = user.role === 'admin';
  const mine = (room) => own === null || own.has(room.classroom_id);
  const actions = [];
  const main = lesson.rooms.find((r) => r.role === 'main');
  const teaches =
    main &&
    mine(main) &&
    (admin ||
      user.role === 'school_admin' ||
      user.role === 'device' ||
      (user.role === 'teacher' && (lesson.teacher_user_id == null || lesson.teacher_user_id === user.id)));
  if (teaches) actions.push({ kind: 'teach', href: `/teach/${lesson.id}`, room: main });
  if (user.role !== 'reviewer') {
    for (const room of lesson.rooms) {
      if (room.role === 'receiving' && mine(room)) {
        actions.push({ kind: 'room', href: `/room/${lesson.id}?classroom=${room.classroom_id}`, room });
      }
    }
  }
  if (['admin', 'school_admin', 'reviewer'].includes(user.role)) {
    actions.push({ kind: 'watch', href: `/watch/${lesson.id}` });
  }
  return actions;
}

/** A teacher sees the lessons they can act in; everyone else every lesson they may read. */
function relevant(user, actions) {
  if (user.role === 'teacher') return actions.some((a) => a.kind !== 'watch');
  return actions.length > 0;
}

// ------------------------------------------------------------------ loading

function startOfToday() {
  const now = new Date();
  return new Date(now.getFullYear(), now.getMonth(), now.getDate());
}

async function loadLessons(user) {
  const today = startOfToday();
  const horizon = new Date(today.getTime() + (DAYS_AHEAD + 1) * 86_400_000);
  // Live lessons whatever their timetable (one may overrun into tomorrow), then the
  // window from this morning; a reviewer only watches, so open lessons are enough.
  const queries = [api.get('/lessons', { state: 'live', limit: PAGE_SIZE })];
  if (user.role === 'reviewer') queries.push(api.get('/lessons', { state: 'open', limit: PAGE_SIZE }));
  else {
    queries.push(
      api.get('/lessons', { from: today.toISOString(), to: horizon.toISOString(), limit: PAGE_SIZE }),
    );
  }
  const [pages, own] = await Promise.all([Promise.all(queries), ownClassroomIds(user)]);
  const byId = new Map();
  let truncated = false;
  for (const page of pages) {
    truncated ||= page.total > page.items.length;
    for (const lesson of page.items) if (SHOWN_STATES.has(lesson.state)) byId.set(lesson.id, lesson);
  }
  return { lessons: [...byId.values()], own, truncated };
}

// ------------------------------------------------------------------ drawing

const ORDER = { live: 0, open: 1, scheduled: 2 };

function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
}

function timeText(iso) {
  return new Date(iso).toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' });
}

function dayText(date) {
  const today = startOfToday();
  const tomorrow = new Date(today.getTime() + 86_400_000);
  if (dayKey(date) === dayKey(today)) return t('home.day.today');
  if (dayKey(date) === dayKey(tomorrow)) return t('home.day.tomorrow');
  return date.toLocaleDateString(lang, { month: 'long', day: 'numeric', weekday: 'short' });
}

function node(tag, className = '', text = '') {
  const n = document.createElement(tag);
  if (className) n.className = className;
  if (text) n.textContent = text;
  return n;
}

function roomLabel(room) {
  return `${room.school_name} · ${room.name}`;
}

function actionLink(action) {
  const a = node('a', `button-link action-${action.kind}`);
  a.href = withLang(action.href);
  a.dataset.action = action.kind;
  if (action.kind === 'teach') {
    a.textContent = t('home.action.teach');
    a.classList.add('primary');
  } else if (action.kind === 'room') {
    a.textContent = t('home.action.room', { room: roomLabel(action.room) });
    a.dataset.classroomId = String(action.room.classroom_id);
  } else {
    a.textContent = t('home.action.watch');
  }
  return a;
}

function lessonCard(lesson, actions) {
  const card = node('article', 'lesson-card');
  card.dataset.lessonId = String(lesson.id);
  card.dataset.state = lesson.state;
  const head = node('div', 'lesson-card-head');
  const title = node('h3', '', lesson.title || t('lesson.untitled', { subject: lesson.subject, grade: lesson.grade }));
  const pill = node('span', 'pill', t(`lesson.state.${lesson.state}`));
  pill.dataset.state = lesson.state;
  head.append(title, pill);

  const start = new Date(lesson.planned_start);
  const when = t('home.lesson.when', {
    day: dayText(start),
    start: timeText(lesson.planned_start),
    end: timeText(lesson.planned_end),
  });
  const kind = t.has(`kind.${lesson.kind}`) ? t(`kind.${lesson.kind}`) : lesson.kind;
  const meta = node('p', 'meta', `${when} · ${t('home.lesson.teacher', { teacher: lesson.teacher_name })} · ${kind}`);
  const main = lesson.rooms.find((r) => r.role === 'main');
  const receiving = lesson.rooms.filter((r) => r.role === 'receiving');
  const rooms = node(
    'p',
    'meta lesson-rooms',
    t('home.lesson.rooms', {
      main: main ? roomLabel(main) : '—',
      receiving: receiving.map((r) => r.school_name).join('、') || '—',
    }),
  );
  const bar = node('div', 'lesson-card-actions');
  bar.append(...actions.map(actionLink));
  card.append(head, meta, rooms, bar);
  return card;
}

/** Live lessons first; then what starts before midnight (or is open already); then later. */
function sectionOf(lesson) {
  if (lesson.state === 'live') return 'live';
  const tomorrow = startOfToday().getTime() + 86_400_000;
  return lesson.state === 'open' || Date.parse(lesson.planned_start) < tomorrow ? 'today' : 'later';
}

function renderHeader(user) {
  const name = user.display_name || user.username;
  $('home-greeting').textContent = t('home.greeting', { name });
  $('home-role-line').textContent = t(`home.role.${user.role}`);
  const links = [];
  if (user.role === 'admin' || user.role === 'school_admin') links.push(['admin', '/admin']);
  if (user.role !== 'device') links.push(['library', '/library']);
  const list = $('home-links');
  list.replaceChildren(
    ...links.map(([key, href]) => {
      const item = node('li');
      const a = node('a', 'button-link', t(`home.link.${key}`));
      a.href = withLang(href);
      a.dataset.link = key;
      item.append(a);
      return item;
    }),
  );
  list.hidden = links.length === 0;
}

function render(user, { lessons, own, truncated }) {
  // Redrawing would take the keyboard focus off a button the user is on: only on change.
  const status = $('status');
  status.textContent = truncated ? t('home.truncated', { count: PAGE_SIZE }) : '';
  status.dataset.status = 'ready';
  window.tongbuHome.state = 'ready';
  const signature = JSON.stringify([dayKey(new Date()), own && [...own], lessons]);
  if (signature === drawn) return;
  drawn = signature;
  const shown = [];
  const lists = { live: [], today: [], later: [] };
  const sorted = [...lessons].sort(
    (a, b) =>
      ORDER[a.state] - ORDER[b.state] || Date.parse(a.planned_start) - Date.parse(b.planned_start) || a.id - b.id,
  );
  for (const lesson of sorted) {
    const actions = lessonActions(lesson, user, own);
    if (!relevant(user, actions)) continue;
    lists[sectionOf(lesson)].push(lessonCard(lesson, actions));
    shown.push({
      id: lesson.id,
      state: lesson.state,
      title: lesson.title,
      actions: actions.map((a) => ({ kind: a.kind, href: a.href })),
    });
  }
  for (const [name, cards] of Object.entries(lists)) {
    const section = $(`home-${name}`);
    section.querySelector('.lesson-list').replaceChildren(...cards);
    section.hidden = cards.length === 0;
  }
  const empty = $('home-empty');
  empty.hidden = shown.length > 0;
  empty.textContent = t(`home.empty.${user.role === 'reviewer' ? 'reviewer' : 'lessons'}`, { days: DAYS_AHEAD });
  window.tongbuHome = { state: 'ready', role: user.role, lessons: shown };
}

function showError(error) {
  const status = $('status');
  let text;
  if (error instanceof ApiError && error.status === 401) text = t('home.error.signed_out');
  else if (error instanceof ApiError && error.code === 'network') text = t('home.error.network');
  else if (error instanceof ApiError) text = t('home.error.http', { status: error.status, message: error.message });
  else text = String(error?.message ?? error);
  status.textContent = text;
  status.dataset.status = 'error';
  window.tongbuHome.state = 'error';
}

// ------------------------------------------------------------------ start

async function refresh(user) {
  try {
    render(user, await loadLessons(user));
  } catch (error) {
    console.warn('tongbu: home', error);
    if (error instanceof ApiError && error.status === 401) {
      await requireSession(); // signed out elsewhere: to the login page and back here
      return;
    }
    showError(error);
  }
}

async function main() {
  t = await loadCatalogue(lang);
  document.title = t('home.page_title');
  const session = await requireSession();
  if (!session) return; // on the way to the login page
  await mountNav(t, { session, current: 'home' });
  renderHeader(session.user);
  await refresh(session.user);
  setInterval(() => refresh(session.user), REFRESH_MS);
}

main().catch((error) => {
  console.error(error);
  showError(error);
});
