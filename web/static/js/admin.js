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
// Each section lives in its own module (admin_schools.js, _classrooms, _pairings, _lessons,
// _live); the rows' buttons and dialogs are in admin_rows.js, what they all share (who is
// signed in, the registers, the forms' round trip) in admin_core.js, the small helpers in
// admin_ui.js and the server's refusals as sentences in admin_errors.js. This file picks
// the section from the URL's hash and wires the page.
//
// Tests read `window.tongbuAdmin` (end of this file) rather than scraping the DOM.

import { describeError } from './admin_errors.js';
import * as classrooms from './admin_classrooms.js';
import { loadRegisters, page, showLoadError, wireDialogs } from './admin_core.js';
import * as lessons from './admin_lessons.js';
import { pollLive, state, stopLive } from './admin_live.js';
import * as pairings from './admin_pairings.js';
import * as rows from './admin_rows.js';
import * as schools from './admin_schools.js';
import { $, loadMessages, setStatus, t, updateLangSwitch } from './admin_ui.js';
import { mountNav } from './nav.js';
import { ApiError, currentSession, loginUrl } from './session.js';

const SECTIONS = ['schools', 'classrooms', 'pairings', 'lessons', 'live'];
const DEFAULT_SECTION = 'lessons';
const ADMIN_ROLES = new Set(['admin', 'school_admin']);

async function refreshSection() {
  await loadRegisters();
  if (page.current === 'schools') schools.renderSchools();
  if (page.current === 'classrooms') classrooms.renderClassrooms();
  if (page.current === 'pairings') pairings.renderPairings();
  if (page.current === 'lessons') {
    lessons.renderLessonForm();
    await lessons.renderLessons();
  }
}

// ------------------------------------------------------------------ sections

function sectionFromHash() {
  const name = window.location.hash.slice(1);
  return SECTIONS.includes(name) ? name : null;
}

async function show(name, { focus = true } = {}) {
  stopLive();
  page.current = name;
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
    if (name === 'schools') schools.renderSchools();
    if (name === 'classrooms') classrooms.renderClassrooms();
    if (name === 'pairings') pairings.renderPairings();
    if (name === 'lessons') {
      lessons.renderLessonForm();
      lessons.setLessonDefaults();
      await lessons.renderLessons();
    }
    setStatus('');
  } catch (error) {
    showLoadError(error);
  }
}

/** A signed-in account whose role has no admin pages: say so, show nothing else. */
function showDenied() {
  page.current = 'denied';
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
  page.me = session.user;
  // The shared top bar (who is signed in, sign-out, home, timetable, library); this page
  // keeps its own language link, which carries the section hash along.
  await mountNav(t, { session, current: 'admin', langSwitch: false, beforeSignOut: stopLive });
  if (!ADMIN_ROLES.has(page.me.role)) {
    showDenied();
    return;
  }
  schools.init();
  classrooms.init();
  pairings.init();
  lessons.init();
  rows.init({ refresh: refreshSection });
  wireDialogs();
  window.addEventListener('hashchange', () => {
    const name = sectionFromHash();
    if (name && name !== page.current) show(name);
  });
  await enter();
}

window.tongbuAdmin = {
  describeError: (error) => describeError(new ApiError(error.status, error.code, error.message, error.field, { error })),
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
    return page.current;
  },
  get role() {
    return page.me?.role ?? null;
  },
};

main();
