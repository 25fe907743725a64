// The pairings section (#pairings): a city main classroom with one to four rural receiving
// classrooms (1拖4), the form that pairs them, and its edit dialog. RoomPicker, the tick
// boxes for the receiving rooms, is the lesson dialog's too.

import { active, cache, classroomById, classroomLabel, handleForm, isAdmin, loadRegisters, roomsOfKind } from './admin_core.js';
import { activeCell, editing, handleEdit, registerActions } from './admin_rows.js';
import { $, MAX_RECEIVING, changed, el, fillTable, options, requireFields, setStatus, t, trimmed } from './admin_ui.js';
import { api } from './session.js';

/**
 * Tick boxes for 1–4 receiving classrooms; the order they are ticked in is the screen
 * order, shown as a number beside each. Used by the pairing forms and the lesson dialog.
 */
export class RoomPicker {
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

/** Rural rooms to offer, plus those already chosen (an archived room stays visible). */
export function receivingChoices(chosen = [], labels = new Map()) {
  const rooms = roomsOfKind('rural').map((c) => ({ id: c.id, label: `${c.school_name} · ${c.name}` }));
  for (const id of chosen) {
    if (!rooms.some((r) => r.id === id)) rooms.push({ id, label: labels.get(id) ?? classroomLabel(id) });
  }
  return rooms;
}

export function renderPairings() {
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

export function pairingLabel(p) {
  return t('admin.choose.pairing_label', {
    name: p.name,
    main: classroomLabel(p.main_classroom_id),
    count: p.receiving_classroom_ids.length,
  });
}

export function init() {
  newPairingRooms = new RoomPicker($('pairing-receiving-choices'), 'pairing-rcv');
  editPairingRooms = new RoomPicker($('pairing-edit-choices'), 'pairing-edit-rcv');

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
  handleEdit('pairing', $('pairing-edit'), {
    fill(item) {
      const form = $('pairing-edit');
      const mains = roomsOfKind('city');
      if (!mains.some((c) => c.id === item.main_classroom_id)) {
        mains.push(classroomById(item.main_classroom_id) ?? { id: item.main_classroom_id, school_name: '', name: classroomLabel(item.main_classroom_id) });
      }
      options(form.elements.main_classroom_id, mains, { value: (c) => c.id, label: (c) => (c.school_name ? `${c.school_name} · ${c.name}` : c.name) });
      form.elements.main_classroom_id.value = String(item.main_classroom_id);
      form.elements.name.value = item.name;
      editPairingRooms.render(receivingChoices(item.receiving_classroom_ids), [...item.receiving_classroom_ids]);
    },
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
}
