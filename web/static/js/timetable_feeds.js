// iCalendar feeds on the timetable page: a subscribable URL per classroom or per teacher
// (POST /calendar-feeds), shown once with a copy button, and the list of feeds with a
// revoke button (DELETE /calendar-feeds/{id}: the URL answers 404 from then on).
//
// The URL carries the feed's own token: it reads that one calendar and nothing else, and
// the server keeps only its digest, so it cannot be shown again; the page keeps it only in
// the text field until the next feed or a reload.

import { api } from './api.js';
import { $, confirmAction, el, fillTable, handleForm, setOptions } from './timetable_ui.js';

let ctx;

function when(iso) {
  if (!iso) return '—';
  return new Intl.DateTimeFormat(ctx.lang, {
    timeZone: ctx.zone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hour12: false,
  }).format(new Date(iso));
}

function targetText(feed) {
  const { t } = ctx;
  if (feed.kind === 'classroom') return t('timetable.feeds.of_classroom', { name: ctx.classroomLabel(feed.classroom_id) });
  const user = ctx.teachers.find((u) => u.id === feed.teacher_user_id);
  return t('timetable.feeds.of_teacher', { name: user ? ctx.teacherLabel(user) : `#${feed.teacher_user_id}` });
}

function feedRow(feed) {
  const { t } = ctx;
  const target = targetText(feed);
  return el(
    'tr',
    { dataset: { id: feed.id, revoked: String(feed.revoked) } },
    el('td', { text: feed.id }),
    el('td', { text: target }),
    el('td', { text: feed.name || '—' }),
    el('td', { text: when(feed.created_at) }),
    el('td', { text: when(feed.last_used_at) }),
    el('td', {}, el('span', { class: `pill${feed.revoked ? ' pill-archived' : ''}`, text: t(feed.revoked ? 'timetable.feeds.revoked' : 'timetable.feeds.active') })),
    el(
      'td',
      { class: 'actions' },
      feed.revoked
        ? null
        : el('button', {
            type: 'button',
            class: 'danger',
            dataset: { action: 'revoke-feed', id: feed.id },
            'aria-label': t('timetable.feeds.revoke_named', { id: feed.id, name: target }),
            text: t('timetable.feeds.revoke'),
            onclick: (event) =>
              confirmAction(
                {
                  title: t('timetable.feeds.revoke_title'),
                  text: t('timetable.feeds.revoke_text', { name: target }),
                  yes: t('timetable.feeds.revoke'),
                  run: () => api.delete(`/calendar-feeds/${feed.id}`),
                  async done() {
                    ctx.status(t('timetable.feeds.revoked_status', { name: target }), 'ok');
                    await loadList();
                    $('feed-kind').focus();
                  },
                },
                event.currentTarget,
              ),
          }),
    ),
  );
}

async function loadList() {
  const feeds = (await api.get('/calendar-feeds')).items;
  fillTable($('feed-table'), feeds.map(feedRow), ctx.t('timetable.feeds.empty'));
}

function syncKind() {
  const teacher = $('feed-kind').value === 'teacher';
  $('feed-classroom-field').hidden = teacher;
  $('feed-teacher-field').hidden = !teacher;
}

export async function show(context) {
  ctx = context;
  const { t } = ctx;
  const mine = (schoolId) => ctx.isAdmin || schoolId === ctx.me.school_id;
  setOptions(
    $('feed-classroom'),
    ctx.classrooms.filter((c) => c.active !== false && mine(c.school_id)).map((c) => [c.id, `${c.school_name}/${c.name}`]),
    { placeholder: t('timetable.feeds.choose_classroom') },
  );
  setOptions(
    $('feed-teacher'),
    ctx.teachers.filter((u) => !u.disabled && mine(u.school_id)).map((u) => [u.id, ctx.teacherLabel(u)]),
    { placeholder: t('timetable.feeds.choose_teacher') },
  );
  syncKind();
  await loadList();
}

async function copyUrl() {
  const { t } = ctx;
  const input = $('feed-url');
  const status = $('feed-copy-status');
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    // No clipboard API (a page on plain http from another host): select it for Ctrl+C.
    input.focus();
    input.select();
    if (!document.execCommand?.('copy')) {
      status.textContent = t('timetable.feeds.copy_manual');
      return;
    }
  }
  status.textContent = t('timetable.feeds.copied');
}

export function init(context) {
  ctx = context;
  $('feed-kind').addEventListener('change', syncKind);
  $('feed-copy').addEventListener('click', copyUrl);
  const form = $('feed-form');
  handleForm(form, {
    check() {
      const { t } = ctx;
      const errors = {};
      const kind = form.elements.kind.value;
      const body = { kind, name: form.elements.name.value.trim() };
      if (kind === 'classroom') {
        body.classroom_id = Number(form.elements.classroom_id.value) || null;
        if (!body.classroom_id) errors.classroom_id = t('timetable.feeds.choose_classroom');
      } else {
        body.teacher_user_id = Number(form.elements.teacher_user_id.value) || null;
        if (!body.teacher_user_id) errors.teacher_user_id = t('timetable.feeds.choose_teacher');
      }
      return { errors, body };
    },
    send: (body) => api.post('/calendar-feeds', body),
    describe: (error) => ctx.refused(error),
    onError: (error) => ctx.leaveIfSignedOut(error),
    async done(issued) {
      const { t } = ctx;
      $('feed-url').value = issued.url;
      $('feed-issued').hidden = false;
      $('feed-copy-status').textContent = '';
      form.elements.name.value = '';
      await loadList();
      ctx.status(t('timetable.feeds.created_status', { name: targetText(issued.feed) }), 'ok');
      $('feed-url').focus();
      $('feed-url').select();
    },
  });
}
