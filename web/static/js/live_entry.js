// How a live page (teacher console, receiving room, viewer) gets into a lesson.
//
// Two ways in:
// - an agent-style link carries a join token in its fragment (`/room/7#token=JOIN`), which
//   a browser never sends to a server. The token moves to sessionStorage and leaves the
//   address bar (a copied link or a screenshot carries nothing; a reload still works), and
//   each `joined` message's rejoin token replaces it there;
// - otherwise the signed-in user's session mints a join token through the API
//   (POST /lessons/{id}/join-tokens), which checks the user's role and school. Nothing is
//   stored: a reload mints again.
//
// Only a *join token* for the signaling socket ever arrives in a URL; API credentials never.

import { ApiError, api } from './session.js';

function storageKey(page, lessonId) {
  return `tongbu.${page}.${lessonId}`;
}

/**
 * The join token of an agent-style link, or null when the page was opened without one
 * (the page then works from the session). Older links also carried `api=` (a bearer
 * token): it is dropped unread along with the rest of the fragment.
 */
export function takeFragmentToken(page, lessonId) {
  const key = storageKey(page, lessonId);
  const hash = new URLSearchParams(window.location.hash.slice(1));
  const fromHash = hash.get('token');
  if (hash.has('token') || hash.has('api')) {
    history.replaceState(null, '', window.location.pathname + window.location.search);
  }
  try {
    if (fromHash) {
      sessionStorage.setItem(key, fromHash);
      return fromHash;
    }
    return sessionStorage.getItem(key);
  } catch {
    return fromHash; // storage disabled: keep working for this load at least
  }
}

/** Keep the latest rejoin token of a link-opened page (the original may be short-lived). */
export function rememberRejoinToken(page, lessonId, token) {
  try {
    sessionStorage.setItem(storageKey(page, lessonId), token);
  } catch {
    // storage disabled: a reload then needs the link again
  }
}

/** A join token for the signed-in user: {token, expires_at, role, classroom_id, ws_url}. */
export function mintJoinToken(lessonId, role, classroomId = null) {
  const body = { role };
  if (classroomId != null) body.classroom_id = classroomId;
  return api.post(`/lessons/${lessonId}/join-tokens`, body);
}

/**
 * Why the API refused us, as {status, text} for the page's status line: `status` goes to
 * data-status (tests and CSS read it), `text` is a catalogue sentence.
 */
export function entryRefusal(t, error, lessonId) {
  if (!(error instanceof ApiError)) {
    return { status: 'error', text: t('live.entry.http', { status: '—', message: String(error?.message ?? error) }) };
  }
  if (error.code === 'network') return { status: 'network', text: t('live.entry.network') };
  if (error.status === 401) return { status: 'signed_out', text: t('live.entry.signed_out') };
  if (error.status === 403) return { status: 'forbidden', text: t('live.entry.forbidden') };
  if (error.status === 404) return { status: 'not_found', text: t('live.entry.not_found', { id: lessonId }) };
  if (error.code === 'lesson_ended') return { status: 'ended', text: t('status.ended') };
  if (error.code === 'unknown_room') return { status: 'unknown_room', text: t('live.entry.unknown_room') };
  if (error.code === 'token_wrong_role') return { status: 'wrong_role', text: t('live.entry.wrong_role') };
  return { status: 'error', text: t('live.entry.http', { status: error.status, message: error.message }) };
}

/** A lesson that can no longer be joined, as entryRefusal's {status, text}; else null. */
export function closedLesson(t, lesson) {
  if (lesson.state === 'ended') return { status: 'ended', text: t('status.ended') };
  if (lesson.state === 'cancelled') return { status: 'cancelled', text: t('live.entry.cancelled') };
  return null;
}

/**
 * The classrooms whose seat this user may take in a lesson: a device account its own one
 * classroom, school staff their school's (GET /classrooms), a reviewer none; null for an
 * admin, who may take any. (A device made before devices were bound to a classroom has
 * no `classroom_id` and falls back to its school's, as the server then does.)
 */
export async function ownClassroomIds(user) {
  if (user.role === 'admin') return null;
  if (user.role === 'reviewer') return new Set();
  if (user.role === 'device' && user.classroom_id != null) return new Set([user.classroom_id]);
  return new Set((await api.get('/classrooms')).items.map((c) => c.id));
}

/** Roles that may open, start and end a lesson (the server still checks which one). */
export function mayRunLessons(user) {
  return Boolean(user) && ['admin', 'school_admin', 'teacher'].includes(user.role);
}
