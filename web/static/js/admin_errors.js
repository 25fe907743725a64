// The admin API's refusals as sentences of the page's language (the timetable page has its
// own in timetable_errors.js, whose double-booking sentences a pairing's re-rooming reuses).

import { ApiError } from './session.js';
import { clashText } from './timetable_errors.js';
import { MAX_RECEIVING, messages, span, t } from './admin_ui.js';

// ------------------------------------------------------------------ server errors
// The server's messages are stable English sentences (docs/api.md); each known one maps to
// a catalogue sentence, with the names and numbers it carries.

const BOOKED = /^classroom (\d+) \((.*)\) is booked by lesson (\d+) (['"])(.*)\4 from (\S+) to (\S+)$/;
const TEACHER_BOOKED =
  /^teacher (.+?)(?: \(user \d+\))? is booked by lesson (\d+) (['"])(.*)\3(?: \(series \d+\))? from (\S+) to (\S+)$/;
const IN_USE = /is in use: (.+); (archive it instead|it cannot move to another school)$/;
const HAS_ROOMS = /^school \d+ has (\d+) active classrooms/;
// Names come as Python reprs: '...' or, when they hold a ', "...".
const IN_PAIRING = /^classroom \d+ is in active pairing (\d+) (['"])(.*)\2;/;
const TO_COME = /has lesson (\d+) (['"])(.*)\2 to come;/;
const NOT_EDITABLE = /^lesson \d+ is (\w+); only a scheduled or open lesson can be changed$/;

/** The form field an error names: "receiving_classroom_ids[1]" -> "receiving_classroom_ids". */
function baseField(field) {
  if (!field) return null;
  return field.replace(/^\$\.?/, '').replace(/\[\d+\].*$/, '').split('.')[0] || null;
}

/** A msgspec or domain validation message as a sentence from the catalogue. */
function invalidText(message) {
  const m = message || '';
  if (/Expected `array` of length [<>]=/.test(m) || /1 to \d+ receiving classrooms/.test(m)) {
    return t('admin.error.receiving_count', { max: MAX_RECEIVING });
  }
  if (/Expected `str` of length >= 1/.test(m) || /missing required field/i.test(m)) {
    return t('admin.error.required');
  }
  const long = m.match(/Expected `str` of length <= (\d+)/);
  if (long) return t('admin.error.too_long', { max: long[1] });
  if (/must end after it starts/.test(m)) return t('admin.error.end_after_start');
  if (/listed twice/.test(m)) return t('admin.error.receiving_twice');
  if (/main classroom cannot also receive/.test(m)) return t('admin.error.main_also_receiving');
  if (/unknown timezone/.test(m)) return t('admin.error.timezone');
  if (/is not an active teacher/.test(m)) return t('admin.error.teacher_account');
  if (/datetime|timezone/i.test(m)) return t('admin.error.time');
  if (/Invalid enum value|unknown .* kind|Expected `int` >= 1|Expected `int`|Expected `bool`/.test(m)) {
    return t('admin.error.choice');
  }
  if (/unknown field/i.test(m)) return t('admin.error.unknown_field');
  return t('admin.error.invalid', { message: m });
}

/** "2 lessons, 1 pairings" as "2 节课程、1 个结对". */
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

function conflictText(message, field) {
  // A change that moves many lessons (a pairing's new rooms) names each clash as the
  // timetable does.
  const clash = clashText(t, message);
  if (clash) return { field: field || 'planned_start', text: clash };
  const booked = message.match(BOOKED);
  if (booked) {
    return {
      field: field || 'planned_start',
      text: t('admin.error.double_booking', {
        room: booked[2],
        lesson: booked[3],
        title: booked[5],
        time: span(booked[6], booked[7]),
      }),
    };
  }
  const teacher = message.match(TEACHER_BOOKED);
  if (teacher) {
    return {
      field: field || 'planned_start',
      text: t('admin.error.teacher_booked', {
        teacher: teacher[1],
        lesson: teacher[2],
        title: teacher[4],
        time: span(teacher[5], teacher[6]),
      }),
    };
  }
  if (/already has a classroom named/.test(message)) {
    return { field: field || 'name', text: t('admin.error.duplicate_classroom') };
  }
  const uses = message.match(IN_USE);
  if (uses) {
    const key = uses[2] === 'archive it instead' ? 'admin.error.in_use' : 'admin.error.in_use_move';
    return { field, text: t(key, { uses: usesText(uses[1]) }), inUse: key === 'admin.error.in_use' };
  }
  if (/ is archived$/.test(message)) return { field, text: t('admin.error.archived') };
  const rooms = message.match(HAS_ROOMS);
  if (rooms) return { field, text: t('admin.error.school_has_rooms', { count: rooms[1] }) };
  const pairing = message.match(IN_PAIRING);
  if (pairing) return { field, text: t('admin.error.room_in_pairing', { name: pairing[3] }) };
  const toCome = message.match(TO_COME);
  if (toCome) return { field, text: t('admin.error.lesson_to_come', { lesson: toCome[1], title: toCome[3] }) };
  const notEditable = message.match(NOT_EDITABLE);
  if (notEditable) {
    return { field: null, text: t('admin.error.lesson_not_editable', { state: t(`lesson.state.${notEditable[1]}`) }) };
  }
  if (/has rooms connected/.test(message)) return { field, text: t('admin.error.rooms_connected') };
  if (/changed meanwhile/.test(message)) return { field: null, text: t('admin.error.changed_meanwhile') };
  return { field, text: t('admin.error.conflict', { message }) };
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
      return { field, text: invalidText(message) };
    case 'conflict':
      return conflictText(message, field);
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
