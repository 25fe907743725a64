// The timetable page (/admin/timetable): terms (学期, with holidays, 调休 days and periods),
// weekly lesson series per pairing and their generation, a week view of the lessons with
// changes to one occurrence (cancel, move, substitute teacher), CSV import, and iCalendar
// feeds. Sections are hash routes (#terms, #series, #week, #import, #feeds); the term the
// page works on is in the query (?term=3), so a reload or a language switch keeps both.
//
// Signed in with the session cookie through session.js (requireSession sends a stranger to
// the login page and back); the top bar is nav.js's. Only admins and school admins use the
// page; any other account is told so and shown nothing. Terms are the education bureau's:
// a school admin reads them and schedules on them, the forms that change them are not
// offered (the server refuses them anyway). Every string comes from the catalogue
// (timetable.* keys; zh-CN by default, ?lang=en for English).
//
// Each section lives in its own module (timetable_terms.js, _series, _week, _import,
// _feeds) with `init(ctx)` once and `show(ctx)` whenever it comes on screen or the term
// changes. Tests read `window.tongbuTimetable`.

import { ApiError, api, loadCatalogue, pageLang } from './api.js';
import { mountNav } from './nav.js';
import { loginUrl, requireSession } from './session.js';
import { describe } from './timetable_errors.js';
import * as feeds from './timetable_feeds.js';
import * as importer from './timetable_import.js';
import * as series from './timetable_series.js';
import * as terms from './timetable_terms.js';
import { $, setOptions, wireConfirm, wireDialog } from './timetable_ui.js';
import * as week from './timetable_week.js';

const ROLES = new Set(['admin', 'school_admin']);
const TABS = { terms, series, week, import: importer, feeds };
const DEFAULT_TAB = 'terms';

/** What every section shares: the catalogue, who is signed in, the registers, the term. */
const ctx = {
  t: (key) => key,
  lang: pageLang(),
  me: null,
  terms: [],
  schools: [],
  classrooms: [],
  pairings: [],
  teachers: [], // teacher accounts the caller may see
  termId: null,
  tab: null,
  loads: 0,
  weekTarget: null, // {by, target} another section asks the week view to show

  get term() {
    return this.terms.find((x) => x.id === this.termId) ?? null;
  },
  get isAdmin() {
    return this.me?.role === 'admin';
  },
  get zone() {
    return this.term?.timezone ?? 'Asia/Shanghai';
  },

  status(text, kind = 'info') {
    const line = $('tt-status');
    line.textContent = text;
    line.dataset.status = kind;
  },

  describe(error) {
    return describe(this.t, error);
  },

  /** A form's refusal: the status line says so (for screen readers too), the form says why. */
  refused(error) {
    this.status(this.t('timetable.status.refused'), 'error');
    return this.describe(error);
  },

  /** A signed-out or expired session: to the login page, which brings us back. */
  leaveIfSignedOut(error) {
    if (error instanceof ApiError && error.status === 401) {
      window.location.assign(loginUrl());
      return true;
    }
    return false;
  },

  failed(error) {
    if (this.leaveIfSignedOut(error)) return;
    this.status(this.describe(error).text, 'error');
  },

  weekdayName(n) {
    return this.t(`timetable.weekday.${n}`);
  },

  classroom(id) {
    return this.classrooms.find((c) => c.id === id) ?? null;
  },
  classroomLabel(id) {
    const room = this.classroom(id);
    return room ? `${room.school_name}/${room.name}` : `#${id}`;
  },
  pairing(id) {
    return this.pairings.find((p) => p.id === id) ?? null;
  },
  /** "结对名：主讲 → 听课、听课" */
  pairingLabel(id) {
    const p = this.pairing(id);
    if (!p) return `#${id}`;
    const rooms = p.receiving_classroom_ids.map((c) => this.classroomLabel(c)).join('、');
    return this.t('timetable.pairing_label', { name: p.name, main: this.classroomLabel(p.main_classroom_id), rooms });
  },
  teacherLabel(user) {
    const school = this.schools.find((s) => s.id === user.school_id)?.name ?? '';
    return `${user.display_name || user.username}（${user.username}${school ? ` · ${school}` : ''}）`;
  },
  /** Teacher accounts of the school of the pairing's main classroom (series may name one). */
  teachersFor(pairingId) {
    const main = this.classroom(this.pairing(pairingId)?.main_classroom_id);
    return main ? this.teachers.filter((u) => u.school_id === main.school_id && !u.disabled) : [];
  },
  /** May the signed-in account schedule on this pairing (its main classroom's school)? */
  maySchedule(pairingId) {
    if (this.isAdmin) return true;
    const main = this.classroom(this.pairing(pairingId)?.main_classroom_id);
    return !!main && main.school_id === this.me.school_id;
  },

  async loadRegisters() {
    const [schools, classrooms, pairings, teachers] = await Promise.all([
      api.get('/schools'),
      api.get('/classrooms'),
      api.get('/pairings'),
      api.get('/users', { role: 'teacher' }),
    ]);
    this.schools = schools.items;
    this.classrooms = classrooms.items;
    this.pairings = pairings.items;
    this.teachers = teachers.items;
  },

  async loadTerms({ select = null } = {}) {
    this.terms = (await api.get('/terms')).items;
    if (select !== null) this.termId = select;
    if (!this.terms.some((x) => x.id === this.termId)) this.termId = defaultTerm(this.terms);
    renderTermPicker();
  },

  /** A term changed (created, edited): reload the list and redraw what is on screen. */
  async termsChanged(selectId = null) {
    await this.loadTerms({ select: selectId });
    await showTab(this.tab, { focus: false });
  },
};

/** The term holding today, else the next to come, else the latest. */
function defaultTerm(list) {
  const fromQuery = Number(new URLSearchParams(window.location.search).get('term'));
  if (list.some((x) => x.id === fromQuery)) return fromQuery;
  const day = new Date().toISOString().slice(0, 10);
  const current = list.find((x) => x.start_date <= day && day <= x.end_date);
  if (current) return current.id;
  const coming = list.filter((x) => x.start_date > day).sort((a, b) => a.start_date.localeCompare(b.start_date));
  return (coming[0] ?? list[0])?.id ?? null;
}

function renderTermPicker() {
  const { t } = ctx;
  const select = $('tt-term');
  setOptions(
    select,
    ctx.terms.map((x) => [x.id, t('timetable.term.option', { name: x.name, from: x.start_date, to: x.end_date })]),
    { placeholder: ctx.terms.length ? null : t('timetable.term.none') },
  );
  select.value = ctx.termId === null ? '' : String(ctx.termId);
  $('tt-term-pick').hidden = false;
  const url = new URL(window.location.href);
  if (ctx.termId === null) url.searchParams.delete('term');
  else url.searchParams.set('term', String(ctx.termId));
  window.history.replaceState(null, '', url.pathname + url.search + url.hash);
}

function tabFromHash() {
  const name = window.location.hash.slice(1);
  return name in TABS ? name : null;
}

async function showTab(name, { focus = true } = {}) {
  const { t } = ctx;
  ctx.tab = name;
  for (const [key] of Object.entries(TABS)) $(`tab-${key}`).hidden = key !== name;
  for (const link of document.querySelectorAll('#tt-tabs a')) {
    if (link.dataset.tab === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${t(`timetable.tab.${name}`)} · ${t('timetable.page_title')}`;
  if (focus) {
    const heading = document.querySelector(`#tab-${name} h2`);
    heading.tabIndex = -1;
    heading.focus();
  }
  ctx.status(t('timetable.loading'));
  try {
    await TABS[name].show(ctx);
    if ($('tt-status').dataset.status === 'info') ctx.status('');
    ctx.loads += 1;
  } catch (error) {
    ctx.failed(error);
  }
}

function applyAriaLabels() {
  for (const node of document.querySelectorAll('[data-i18n-aria-label]')) {
    node.setAttribute('aria-label', ctx.t(node.dataset.i18nAriaLabel));
  }
}

async function main() {
  ctx.t = await loadCatalogue(ctx.lang);
  applyAriaLabels();
  document.title = ctx.t('timetable.page_title');
  let session;
  try {
    session = await requireSession();
  } catch (error) {
    ctx.failed(error);
    return;
  }
  if (!session) return;
  ctx.me = session.user;
  await mountNav(ctx.t, { session, current: 'timetable' });
  if (!ROLES.has(ctx.me.role)) {
    ctx.tab = 'denied';
    ctx.status('');
    $('tt-denied').hidden = false;
    const heading = document.querySelector('#tt-denied h2');
    heading.tabIndex = -1;
    heading.focus();
    return;
  }
  try {
    await Promise.all([ctx.loadRegisters(), ctx.loadTerms()]);
  } catch (error) {
    ctx.failed(error);
    return;
  }
  for (const dialog of document.querySelectorAll('dialog')) wireDialog(dialog);
  wireConfirm({ describe: (error) => ctx.refused(error), onError: (error) => ctx.leaveIfSignedOut(error) });
  for (const module of Object.values(TABS)) module.init(ctx);
  $('tt-term').addEventListener('change', () => {
    ctx.termId = Number($('tt-term').value) || null;
    renderTermPicker();
    showTab(ctx.tab, { focus: false });
  });
  window.addEventListener('hashchange', () => {
    const name = tabFromHash();
    if (name && name !== ctx.tab) showTab(name);
  });
  $('tt-tabs').hidden = false;
  const first = tabFromHash() ?? DEFAULT_TAB;
  if (!tabFromHash()) window.history.replaceState(null, '', `${window.location.pathname}${window.location.search}#${first}`);
  await showTab(first, { focus: false });
}

window.tongbuTimetable = {
  get tab() {
    return ctx.tab;
  },
  get termId() {
    return ctx.termId;
  },
  get loads() {
    return ctx.loads;
  },
  get role() {
    return ctx.me?.role ?? null;
  },
  get busy() {
    return document.querySelector('[aria-busy="true"]') !== null;
  },
};

main();
