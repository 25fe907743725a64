// The admin API's refusals as sentences of the page's language (the timetable page has its
// own in timetable_errors.js, whose double-booking sentences a pairing's re-rooming reuses).

import { ApiError, reasonText } from './session.js';
import { clashText } from './timetable_errors.js';
import { MAX_RECEIVING, messages, span, t } from './admin_ui.js';

// ------------------------------------------------------------------ server errors
// The server names the rule that refused (`reason`, docs/api.md) and the values its
// sentence needs (`params`): the catalogue's `error.<reason>` says it, or the page's own
// sentence below where the admin page has always said it otherwise.

/** The form field an error names: "receiving_classroom_ids[1]" -> "receiving_classroom_ids". */
function baseField(field) {
  if (!field) return null;
  return field.replace(/^\$\.?/, '').replace(/\[\d+\].*$/, '').split('.')[0] || null;
}

/** "2 lessons, 1 pairings" (the `uses` of an in_use refusal) as "2 节课程、1 个结对". */
function usesText(list) {
  return list
    .split(', ')
    .map((part) => {
      const [count, label] = part.split(' ');
      const key = `admin.use.${label}`;
      return key in messages ? t(key, { count }) : t('admin.use.other', { count, name: label });
    })
    .join(t('admin.use.separator'));
}

const say = (key) => () => t(key);
const archived = say('admin.error.archived');
const choice = say('admin.error.choice');
const receivingCount = () => t('admin.error.receiving_count', { max: MAX_RECEIVING });

/** The admin page's own sentences, by reason. */
const OWN = {
  unknown_timezone: say('admin.error.timezone'),
  not_a_school_teacher: say('admin.error.teacher_account'),
  pairing_archived: archived,
  classroom_archived: archived,
  classrooms_archived: archived,
  school_archived: archived,
  in_use: (p) => t('admin.error.in_use', { uses: usesText(p.uses) }),
  classroom_in_use_move: (p) => t('admin.error.in_use_move', { uses: usesText(p.uses) }),
  classroom_booked: (p) =>
    t('admin.error.double_booking', { room: p.classroom, lesson: p.lesson_id, title: p.title, time: span(p.start, p.end) }),
  teacher_booked: (p) =>
    t('admin.error.teacher_booked', { teacher: p.teacher, lesson: p.lesson_id, title: p.title, time: span(p.start, p.end) }),
  // A change that moves many lessons (a pairing's new rooms) names each clash as the
  // timetable does.
  double_booked: (p) => clashText(t, p),
  // request validation
  value_required: say('admin.error.required'),
  too_long: (p) => t('admin.error.too_long', { max: p.max }),
  too_many: receivingCount,
  too_few: receivingCount,
  bad_datetime: say('admin.error.time'),
  number_too_small: choice,
  number_too_large: choice,
  bad_value: choice,
  bad_pattern: (p, error) => t('admin.error.invalid', { message: error.message }),
};
// Refusals about a lesson's time: shown next to its start unless the server names a field.
const BOOKINGS = new Set(['classroom_booked', 'teacher_booked', 'double_booked']);
// Refusals about the whole form.
const WHOLE = new Set(['lesson_not_editable', 'changed_meanwhile']);

function conflictText(error, field) {
  const text = reasonText(t, error, OWN);
  if (!text) return { field, text: t('admin.error.conflict', { message: error.message || '' }) };
  if (BOOKINGS.has(error.reason)) return { field: field || 'planned_start', text };
  if (WHOLE.has(error.reason)) return { field: null, text };
  return error.reason === 'in_use' ? { field, text, inUse: true } : { field, text };
}

/**
 * An ApiError as {field, text}: `field` is the form field to show it next to (null: the
 * form as a whole), `text` a sentence in the page's language. `inUse` marks a refused
 * delete of something still referred to (the dialog then offers to archive it).
 */
export function describeError(error) {
  if (!(error instanceof ApiError)) {
    return { field: null, text: t('admin.error.network', { message: String(error?.message ?? error) }) };
  }
  const field = baseField(error.field);
  const message = error.message || '';
  switch (error.code) {
    case 'invalid_body':
      return { field, text: reasonText(t, error, OWN) ?? t('admin.error.invalid', { message }) };
    case 'conflict':
      return conflictText(error, field);
    case 'not_found':
      return { field, text: field ? t('admin.error.missing_choice') : t('admin.error.not_found') };
    case 'illegal_transition':
      return { field: null, text: t('admin.error.illegal_transition') };
    case 'lesson_ended':
      return { field: null, text: t('admin.error.lesson_ended') };
    case 'unauthorized':
      return { field: null, text: t('admin.error.unauthorized') };
    case 'forbidden':
    case 'csrf_failed':
      return { field: null, text: t('admin.error.forbidden') };
    case 'too_large':
      return { field: null, text: t('admin.error.too_large') };
    case 'network':
      return { field: null, text: t('admin.error.network', { message }) };
    default:
      return { field, text: t('admin.error.unknown', { status: error.status, message }) };
  }
}
