// The schools section (#schools): the register of schools, the form a district admin
// registers one with (a school admin sees only their own), and its edit dialog.

import { cache, handleForm, isAdmin, loadRegisters } from './admin_core.js';
import { activeCell, editing, handleEdit, registerActions } from './admin_rows.js';
import { $, changed, el, fillTable, requireFields, setStatus, t, trimmed } from './admin_ui.js';
import { api } from './session.js';

export function renderSchools() {
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

export function init() {
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
  handleEdit('school', $('school-edit'), {
    fill(item) {
      const form = $('school-edit');
      form.elements.name.value = item.name;
      form.elements.kind.value = item.kind;
      form.elements.region.value = item.region || '';
    },
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
}
