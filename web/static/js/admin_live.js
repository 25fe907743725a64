// The live overview (#live): every open or live lesson as a card (its rooms, connected or
// not, with each link's bitrate, loss and round trip; broadcast; recording), and the
// alerts, polled every few seconds while the section is on screen.

import { describeError } from './admin_errors.js';
import { leaveIfSignedOut, onSignOut } from './admin_core.js';
import { watchControl } from './admin_lessons.js';
import { $, el, lang, megabytes, messages, span, t, timeOnly } from './admin_ui.js';
import { ApiError, api } from './session.js';

const LIVE_POLL_MS = 3000;

let livePoll = null;
let liveGeneration = 0;
export const state = { lastLive: [], liveUpdates: 0, lastAlerts: [] };

function quality(link) {
  const loss = (link.fraction_lost || 0) * 100;
  const rtt = link.rtt_ms ?? 0;
  if (loss > 5 || rtt > 400) return 'poor';
  if (loss > 1 || rtt > 150) return 'fair';
  return 'good';
}

function linkBadge(direction, link) {
  const parts = [
    t('admin.live.bitrate', { kbps: Math.round(link.bitrate_kbps || 0) }),
    t('admin.live.loss', { percent: ((link.fraction_lost || 0) * 100).toFixed(1) }),
  ];
  if (link.rtt_ms !== null && link.rtt_ms !== undefined) parts.push(t('admin.live.rtt', { ms: Math.round(link.rtt_ms) }));
  return el(
    'span',
    { class: `link-badge q-${quality(link)}`, dataset: { direction }, title: t(`admin.live.${direction}_title`) },
    `${t(`admin.live.${direction}`)} ${parts.join(' · ')}`,
  );
}

function roomItem(room, lessonRoom) {
  const badges = [];
  if (room.on_stage) badges.push(el('span', { class: 'badge badge-stage', text: t('badge.stage') }));
  if (room.hand_raised) badges.push(el('span', { class: 'badge badge-hand', text: t('badge.hand') }));
  if (room.reconnects) badges.push(el('span', { class: 'badge', text: t('admin.live.reconnects', { count: room.reconnects }) }));
  return el(
    'li',
    { class: `live-room ${room.connected ? 'connected' : 'offline'}`, dataset: { classroomId: room.classroom_id, connected: String(room.connected), role: room.role } },
    el('span', { class: 'dot', 'aria-hidden': 'true' }),
    el(
      'span',
      { class: 'live-room-name' },
      el('span', { class: `badge ${room.role === 'main' ? 'badge-main' : ''}`, text: t(`role.${room.role}`) }),
      ` ${lessonRoom?.school_name ? `${lessonRoom.school_name} · ` : ''}${room.name}`,
    ),
    el('span', { class: 'live-room-state', text: t(room.connected ? 'admin.live.connected' : 'admin.live.offline') }),
    room.connected ? [linkBadge('up', room.upstream), linkBadge('down', room.downstream)] : [],
    badges,
  );
}

function broadcastLine(live) {
  const b = live?.broadcast;
  if (!b) return t('admin.live.broadcast_off');
  const stateText = t(`admin.live.broadcast.${b.state}`);
  return t('admin.live.broadcast_on', { state: stateText, segments: b.segments });
}

function recordingLine(recording) {
  if (recording.state === 'waiting') {
    // Rooms connect during the lead-in; pupils are recorded from the bell on.
    return t('admin.live.recording_waiting', { time: timeOnly.format(new Date(recording.starts_at)) });
  }
  const key = `admin.live.recording_state.${recording.state}`;
  return t('admin.live.recording_detail', {
    state: key in messages ? t(key) : recording.state,
    tracks: recording.tracks ?? 0,
    size: megabytes(recording.bytes),
  });
}

function liveCard(lesson, live) {
  const byId = new Map(lesson.rooms.map((r) => [r.classroom_id, r]));
  const rooms = live
    ? live.rooms.filter((r) => r.role !== 'watch')
    : lesson.rooms.map((r) => ({ classroom_id: r.classroom_id, name: r.name, role: r.role, connected: false }));
  const connected = rooms.filter((r) => r.connected).length;
  const card = el(
    'li',
    { class: 'live-card', dataset: { lesson: lesson.id, state: lesson.state, connected: String(connected) } },
    el(
      'header',
      { class: 'live-head' },
      el('h3', {}, lesson.title),
      el('span', { class: 'pill', dataset: { state: lesson.state }, text: t(`lesson.state.${lesson.state}`) }),
    ),
    el('p', { class: 'meta', text: `${t(`kind.${lesson.kind}`)} · ${lesson.subject} · ${lesson.grade} · ${t('admin.lessons.teacher', { teacher: lesson.teacher_name })} · ${span(lesson.planned_start, lesson.planned_end)}` }),
    el('p', { class: 'live-summary', text: t('admin.live.summary', { connected, total: rooms.length, watchers: live?.watchers ?? 0 }) }),
    live ? null : el('p', { class: 'meta', text: t('admin.live.no_session') }),
    el('ul', { class: 'live-rooms' }, ...rooms.map((r) => roomItem(r, byId.get(r.classroom_id)))),
    el('p', { class: 'meta live-broadcast', dataset: { broadcast: live?.broadcast?.state ?? 'off' }, text: broadcastLine(live) }),
    el('p', {
      class: 'meta live-recording',
      dataset: { recording: live?.recording?.state ?? 'off' },
      text: live?.recording ? recordingLine(live.recording) : t('admin.live.recording_off'),
    }),
    live?.forwarding?.transcodes ? el('p', { class: 'form-error', text: t('admin.live.transcodes', { count: live.forwarding.transcodes }) }) : null,
  );
  card.append(el('div', { class: 'live-actions' }, watchControl(lesson.id)));
  return card;
}

// Alerts (GET /alerts, classroom/alerts.py): a lesson not started five minutes after its
// time, a room that dropped and has not come back. Only the summary line is a live region,
// and it changes only when the number of alerts does, so a screen reader is not told the
// same list every few seconds.
function alertItem(alert, serverTime) {
  const since = new Date(alert.since);
  const minutes = Math.max(0, Math.floor((serverTime - since) / 60000));
  const vars = {
    lesson: alert.lesson_id,
    title: alert.lesson_title,
    school: alert.school_name,
    classroom: alert.classroom_name,
    role: t(`role.${alert.role}`),
    time: timeOnly.format(new Date(alert.planned_start)),
  };
  const text = alert.kind === 'dropped' ? t('stats.alert.dropped', vars) : t('stats.alert.not_started', vars);
  return el(
    'li',
    { class: `alert alert-${alert.kind}`, dataset: { key: alert.key, kind: alert.kind, lesson: alert.lesson_id, classroomId: alert.classroom_id } },
    el('strong', { class: 'alert-kind', text: alert.kind === 'dropped' ? t('stats.alert.kind.dropped') : t('stats.alert.kind.not_started') }),
    el('span', { class: 'alert-text', text }),
    el('span', { class: 'alert-since', text: t('stats.alert.since', { time: timeOnly.format(since), minutes }) }),
  );
}

function renderAlerts(answer) {
  state.lastAlerts = answer.items;
  const serverTime = new Date(answer.server_time);
  $('stats-link').href = lang === 'en' ? '/admin/stats?lang=en' : '/admin/stats';
  const box = $('live-alerts');
  box.dataset.count = String(answer.items.length);
  $('live-alerts-list').replaceChildren(...answer.items.map((a) => alertItem(a, serverTime)));
  const summary = answer.items.length ? t('stats.alert.count', { count: answer.items.length }) : t('stats.alert.none');
  if ($('live-alerts-summary').textContent !== summary) $('live-alerts-summary').textContent = summary;
}

export async function pollLive() {
  const generation = liveGeneration;
  try {
    const [live, open, alerts] = await Promise.all([
      api.get('/lessons', { state: 'live', limit: 50 }),
      api.get('/lessons', { state: 'open', limit: 50 }),
      api.get('/alerts'),
    ]);
    const lessons = [...live.items, ...open.items];
    const states = await Promise.all(
      lessons.map((lesson) =>
        api.get(`/lessons/${lesson.id}/live`).catch((error) => {
          if (error instanceof ApiError && error.code === 'not_live') return null;
          throw error;
        }),
      ),
    );
    if (generation !== liveGeneration) return; // left the section meanwhile
    renderAlerts(alerts);
    state.lastLive = lessons.map((lesson, i) => ({ lesson, live: states[i] }));
    state.liveUpdates += 1;
    const cards = $('live-cards');
    // Keep focus where it was across a refresh (a keyboard user on a watch link).
    const focused = document.activeElement?.closest?.('.live-card')?.dataset.lesson;
    cards.replaceChildren(
      ...(lessons.length
        ? state.lastLive.map(({ lesson, live: s }) => liveCard(lesson, s))
        : [el('li', { class: 'empty', text: t('admin.live.empty') })]),
    );
    if (focused) cards.querySelector(`.live-card[data-lesson="${focused}"] .live-actions a, .live-card[data-lesson="${focused}"] .live-actions button`)?.focus({ preventScroll: true });
    $('live-updated').textContent = t('admin.live.updated', { time: timeOnly.format(new Date()), seconds: LIVE_POLL_MS / 1000 });
    $('live-updated').dataset.status = 'ok';
  } catch (error) {
    if (generation !== liveGeneration) return;
    if (leaveIfSignedOut(error)) return;
    $('live-updated').textContent = describeError(error).text;
    $('live-updated').dataset.status = 'error';
  }
  if (generation === liveGeneration) livePoll = setTimeout(pollLive, LIVE_POLL_MS);
}

export function stopLive() {
  liveGeneration += 1;
  clearTimeout(livePoll);
  livePoll = null;
}

// A lost session stops the polling before the page leaves for the login page.
onSignOut(stopLive);
