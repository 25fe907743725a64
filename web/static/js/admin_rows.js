// The rows of the registers (schools, classrooms, pairings) and the lessons' edit button:
// each row's buttons (edit, archive or restore, delete), the confirm dialog, and the edit
// dialogs, pre-filled by the section that owns them and sending only what changed.
// Removal asks first: a row nothing refers to is deleted, one that lessons or recordings
// refer to is refused by the server, and the dialog then offers to archive it.

import { describeError } from './admin_errors.js';
import { handleForm, isAdmin, leaveIfSignedOut, page, whatOf } from './admin_core.js';
import { $, clearErrors, el, openDialog, setStatus, showError, t } from './admin_ui.js';
import { api } from './session.js';

let refreshSection = async () => {}; // admin.js: reload the registers, redraw the section
const editors = {}; // kind -> fill(item): the edit dialog's fields from the row

export function activeCell(item) {
  const on = item.active !== false;
  return el('td', {}, el('span', { class: `pill ${on ? '' : 'pill-archived'}`, dataset: { active: String(on) }, text: t(on ? 'admin.active.yes' : 'admin.active.no') }));
}

/** The row's buttons: edit, archive or restore, delete (each as the role allows). */
export function registerActions(kind, item, name, { archive = true, remove = true } = {}) {
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
  document.querySelector(`#section-${page.current} [data-id="${item.id}"][data-kind="${kind}"][data-action="archive"]`)?.focus();
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

export let editing = null; // the row being edited, as the server last sent it

export function openEditor(kind, item, opener) {
  editing = item;
  editors[kind](item);
  openDialog($(`${kind}-dialog`), opener);
}

/** An edit dialog's form (`fill` puts a row in it): sends only what changed, then redraws the section. */
export function handleEdit(kind, form, { fill, check, path, label }) {
  editors[kind] = fill;
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

/** The confirm dialog's buttons; `refresh` reloads the registers and redraws the section. */
export function init({ refresh }) {
  refreshSection = refresh;
  $('confirm-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (!$('confirm-yes').hidden && !$('confirm-yes').disabled) confirmed(confirming.action);
  });
  $('confirm-archive').addEventListener('click', () => confirmed('archive'));
}
