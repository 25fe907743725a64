// What the three live pages (teach.js, room.js, watch.js) share around protocol.js: the
// lesson in the path, the status line and its sentences, the lesson's state pill, the
// sound button, and the received tracks their test hooks report.

import { STATUS } from './protocol.js';

export const $ = (id) => document.getElementById(id);

/** The lesson in the path (/teach/7, /room/7, /watch/7): its id, or null. */
export function lessonIdFromPath(page) {
  return Number(window.location.pathname.match(new RegExp(`/${page}/(\\d+)`))?.[1]) || null;
}

/** Until the catalogue arrives, keys stand for themselves. */
export const untranslated = Object.assign((key) => key, { has: () => false });

/** A protocol error as a sentence: the first of `<prefix>.<code>` the catalogue has. */
export function errorText(t, error, prefixes = ['live.error', 'error']) {
  if (!error) return '';
  for (const key of prefixes.map((prefix) => `${prefix}.${error.code}`)) if (t.has(key)) return t(key);
  return t('error.unknown', { code: error.code });
}

/**
 * The status line's sentence for the client's last `status` event. `connecting()` and
 * `joined()` give the page's own sentences; `refused` is the key a refusal reads (with its
 * reason); `describe` says an error.
 */
export function statusText(t, { status, attempt, delayMs, error }, { connecting, joined, refused, describe }) {
  let text;
  switch (status) {
    case STATUS.CONNECTING:
      text = connecting();
      break;
    case STATUS.JOINED:
      text = joined();
      break;
    case STATUS.RECONNECTING:
      text = t('status.reconnecting', { seconds: Math.ceil(delayMs / 1000), attempt });
      if (error && error.code === 'lesson_not_open') text = `${describe(error)} · ${text}`;
      break;
    case STATUS.ENDED:
      text = t('status.ended');
      break;
    case STATUS.REFUSED:
      text = t(refused, { reason: describe(error) });
      break;
    case STATUS.CLOSED:
      text = t('status.closed');
      break;
    default:
      text = t('status.loading');
  }
  return text;
}

/** The status line: its sentence, and `status` (data-status) for the CSS and the tests. */
export function setStatus(text, status) {
  const node = $('status');
  node.textContent = text;
  node.dataset.status = status;
}

/** The lesson's state as a pill beside its title. */
export function showLessonState(t, state) {
  const pill = $('lesson-state');
  pill.hidden = false;
  pill.textContent = t(`lesson.state.${state}`);
  pill.dataset.state = state;
}

/** The lesson is over: the timer says so. */
export function showTimerEnded(t) {
  $('timer').dataset.phase = 'ended';
  $('timer').textContent = t('lesson.state.ended');
}

export function renderSoundButton(t, on) {
  const node = $('sound');
  node.textContent = t(on ? 'sound.disable' : 'sound.enable');
  node.setAttribute('aria-pressed', String(on));
}

/** Per received m-line: which room it carries now, and getStats' inbound figures. */
export async function receivedTracks(client, { trackId = false } = {}) {
  const inbound = client ? await client.inboundStats() : {};
  return (client?.receivers() ?? []).map((r) => ({
    mid: r.mid,
    kind: r.kind,
    classroomId: r.classroomId,
    ...(trackId ? { trackId: r.trackId } : {}),
    ...(inbound[r.mid] ?? {}),
  }));
}

/** Run the page's `main`; a failure nothing else caught is said in the status line. */
export function start(main) {
  main().catch((error) => {
    console.error(error);
    $('status').textContent = String(error);
  });
}
