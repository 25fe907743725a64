// The classrooms section (#classrooms): the register of classrooms, the form that adds one
// to a school, and its edit dialog (only a district admin moves a room to another school).

import { active, cache, handleForm, isAdmin, loadRegisters, schoolById, schoolKindLabel } from './admin_core.js';
import { activeCell, editing, handleEdit, registerActions } from './admin_rows.js';
import { $, changed, el, fillTable, options, requireFields, setStatus, t, trimmed } from './admin_ui.js';
import { api } from './session.js';

export function renderClassrooms() {
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

export function init() {
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
  handleEdit('classroom', $('classroom-edit'), {
    fill(item) {
      const form = $('classroom-edit');
      const schools = active(cache.schools);
      if (!schools.some((s) => s.id === item.school_id)) schools.push(schoolById(item.school_id) ?? { id: item.school_id, name: item.school_name, kind: 'rural' });
      options(form.elements.school_id, schools, { value: (s) => s.id, label: schoolKindLabel });
      form.elements.school_id.value = String(item.school_id);
      // A school admin cannot move a classroom to another school (the server refuses too).
      form.elements.school_id.disabled = !isAdmin();
      form.elements.name.value = item.name;
    },
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
}
