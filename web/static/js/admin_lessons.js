// The lessons section (#lessons): the form that schedules a lesson on a pairing, the list
// (filtered by state, a page at a time) with each lesson's actions (edit, open, watch,
// end, cancel), and the lesson's edit dialog. Times are Beijing time (admin_ui.js).

import { describeError } from './admin_errors.js';
import { active, cache, classroomById, handleForm, isAdmin, leaveIfSignedOut, showLoadError } from './admin_core.js';
import { RoomPicker, pairingLabel, receivingChoices } from './admin_pairings.js';
import { editing, handleEdit, openEditor } from './admin_rows.js';
import {
  $,
  changed,
  el,
  fillTable,
  fromLocalInput,
  lang,
  options,
  requireFields,
  setStatus,
  span,
  t,
  toLocalInput,
  trimmed,
} from './admin_ui.js';
import { api } from './session.js';

const LESSON_PAGE = 20;

let lessonOffset = 0;
const shownLessons = new Map(); // id -> lesson, as last listed
const watchLinks = new Map(); // lesson id -> {url, expires} minted on demand
let editLessonRooms;

export function renderLessonForm() {
  options($('lesson-pairing'), active(cache.pairings), { placeholder: 'admin.choose.pairing', value: (p) => p.id, label: pairingLabel });
}

export function setLessonDefaults() {
  const form = $('lesson-form');
  const start = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000);
  if (!form.elements.planned_start.value) form.elements.planned_start.value = toLocalInput(start);
  if (!form.elements.planned_end.value) {
    form.elements.planned_end.value = toLocalInput(new Date(start.getTime() + 45 * 60_000));
  }
  form.elements.broadcast.checked = form.elements.kind.value === 'famous_school';
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

const ACTIONS = {
  scheduled: ['edit', 'open', 'cancel'],
  open: ['edit', 'watch', 'end', 'cancel'],
  live: ['watch', 'end'],
  ended: [],
  cancelled: [],
};

export async function renderLessons() {
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
export function watchControl(lessonId) {
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

export function init() {
  editLessonRooms = new RoomPicker($('lesson-edit-choices'), 'lesson-edit-rcv');

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
  const lessonEdit = $('lesson-edit');
  lessonEdit.elements.kind.addEventListener('change', () => {
    lessonEdit.elements.broadcast.checked = lessonEdit.elements.kind.value === 'famous_school';
  });
  handleEdit('lesson', lessonEdit, {
    fill(item) {
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
    },
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
}
