// What every section of the admin page (/admin) shares: who is signed in, the section on
// screen, the registers (schools, classrooms, pairings) as last loaded, and the forms'
// round trip to the server (a refusal shown next to the field it names; a lost session
// sends the browser to the login page).

import { describeError } from './admin_errors.js';
import { clearErrors, setStatus, showError, t } from './admin_ui.js';
import { ApiError, api, loginUrl } from './session.js';

/** `me`: the signed-in user; `current`: the section on screen ('denied' when the role may not be here). */
export const page = { me: null, current: null };
export const cache = { schools: [], classrooms: [], pairings: [] };

export const isAdmin = () => page.me?.role === 'admin';

const beforeLeaving = [];

/** Run `stop` before the page leaves for the login page (the live overview stops polling). */
export function onSignOut(stop) {
  beforeLeaving.push(stop);
}

/** A signed-out or expired session: off to the login page, which brings us back here. */
export function leaveIfSignedOut(error) {
  if (error instanceof ApiError && error.status === 401) {
    for (const stop of beforeLeaving) stop();
    window.location.assign(loginUrl());
    return true;
  }
  return false;
}

export function showLoadError(error) {
  if (leaveIfSignedOut(error)) return;
  setStatus(describeError(error).text, 'error');
}

// ------------------------------------------------------------------ forms

/**
 * Submit a form: `check()` returns client-side errors ({field: text}) and the body to send
 * (null: nothing changed); a refusal from the server is shown next to its field. Nothing
 * is sent twice at once. A create form is emptied after success; an edit form is not.
 */
export function handleForm(form, { check, send, done, unchanged, reset = true }) {
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

// ------------------------------------------------------------------ dialogs

export function wireDialogs() {
  for (const dialog of document.querySelectorAll('dialog.admin-dialog')) {
    for (const button of dialog.querySelectorAll('[data-close]')) button.addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => {
      const back = dialog.returnTo && document.querySelector(`#section-${page.current} ${dialog.returnTo}`);
      if (back?.matches('h2')) back.tabIndex = -1;
      back?.focus();
    });
  }
}

export const whatOf = (kind) => t(`admin.what.${kind}`);

// ------------------------------------------------------------------ registers

export async function loadRegisters() {
  const [schools, classrooms, pairings] = await Promise.all([
    api.get('/schools'),
    api.get('/classrooms'),
    api.get('/pairings'),
  ]);
  cache.schools = schools.items;
  cache.classrooms = classrooms.items;
  cache.pairings = pairings.items;
}

export const schoolById = (id) => cache.schools.find((s) => s.id === id);
export const classroomById = (id) => cache.classrooms.find((c) => c.id === id);
export const active = (items) => items.filter((item) => item.active !== false);

export function classroomLabel(id) {
  const room = classroomById(id);
  return room ? `${room.school_name} · ${room.name}` : t('tile.unnamed', { id });
}

export const roomsOfKind = (kind) => active(cache.classrooms).filter((c) => schoolById(c.school_id)?.kind === kind);

export function schoolKindLabel(s) {
  return t('admin.choose.school_label', { name: s.name, kind: t(`school.kind.${s.kind}`) });
}
