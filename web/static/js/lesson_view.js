// The lesson header and timer shared by the teacher console and the receiving-room page.
import { teacherTitle } from './api.js';
import { STATUS } from './protocol.js';

/** 75 → "01:15"; 3725 → "1:02:05". */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** "09:55" in the page's language. */
function shortTime(lang, iso) {
  return new Date(iso).toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' });
}

/** Title, page title (`pageTitleKey`) and "room · teacher · start–end" from `joined`. */
export function renderLessonHeader(t, lang, joined, pageTitleKey) {
  const lesson = joined.lesson;
  const title = lesson.title || t('lesson.untitled', { subject: lesson.subject, grade: lesson.grade });
  document.getElementById('lesson-title').textContent = title;
  document.title = t(pageTitleKey, { title });
  const time = (iso) => shortTime(lang, iso);
  document.getElementById('lesson-meta').textContent = t('teach.meta', {
    room: joined.you.name,
    teacher: teacherTitle(t, lesson.teacher_name),
    start: time(lesson.planned_start),
    end: time(lesson.planned_end),
  });
}

/** Time into the lesson against its timetabled length (a countdown before the start). */
export function renderLessonTimer(t, client) {
  const lesson = client?.joined?.lesson;
  const node = document.getElementById('timer');
  if (!lesson || client.status === STATUS.ENDED) return;
  const start = Date.parse(lesson.planned_start);
  const end = Date.parse(lesson.planned_end);
  const now = Date.now();
  node.hidden = false;
  node.textContent =
    now < start
      ? t('live.timer.before', { time: clock((start - now) / 1000) })
      : t('live.timer.running', { elapsed: clock((now - start) / 1000), total: clock((end - start) / 1000) });
  node.dataset.phase = now < start ? 'before' : now > end ? 'over' : 'running';
}

/** Whether this lesson's pictures and sound are being recorded: from the bell on, never in
 * the lead-in while rooms connect early (`recording` of `lesson_state`). Gone once the
 * page has left the lesson. */
export function renderRecording(t, lang, client) {
  const node = document.getElementById('recording');
  const lessonState = client?.lessonState;
  if (!lessonState || client.status === STATUS.ENDED || client.status === STATUS.CLOSED) {
    node.hidden = true;
    return;
  }
  const state = lessonState.recording ?? 'off';
  const time = lessonState.planned_start ? shortTime(lang, lessonState.planned_start) : '';
  node.hidden = false;
  node.dataset.recording = state;
  node.textContent = t(`live.recording.${state}`, { time });
}
