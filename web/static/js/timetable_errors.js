// The timetable API's refusals as sentences of the page's language.
//
// The server answers {"error": {code, message, field}} with stable English messages
// (classroom/terms.py, timetable.py, conflicts.py, timetable_csv.py). Each known message
// maps to a catalogue sentence carrying the names, dates and numbers it holds; an unknown
// one is shown as the server wrote it, behind a translated lead, so nothing is ever lost.
// A double booking keeps everything the server says about the clash: what was refused,
// the classroom or teacher, the lesson or series already there, and when.

import { ApiError } from './session.js';

const Q = String.raw`(['"])(.*?)`; // a Python repr: '...' or "..." (when it holds a ')
const SPAN = String.raw`\d{4}-\d{2}-\d{2} \d{2}:\d{2}–(?:\d{4}-\d{2}-\d{2} )?\d{2}:\d{2} (?:[+-]\d{2}:\d{2}|UTC)`;
const CLASH = new RegExp(
  String.raw`^(?:conflict: )?(.+?) (${SPAN}): (?:classroom (\d+)(?: \((.*)\))?|teacher (.+?)(?: \(user (\d+)\))?) ` +
    String.raw`is already booked by (.+?) (${SPAN})(?: \(and (\d+) more clashes\)| \((\d+) lessons of this row clash\))?$`,
);

/** Message patterns → catalogue key and the values it needs (by capture group). */
const PATTERNS = [
  // terms (classroom/terms.py)
  [/^unknown timezone (['"])(.*)\1$/, 'timezone', (m) => ({ zone: m[2] })],
  [/^the term must end on or after its first day$/, 'term_end'],
  [/^a term lasts at most (\d+) days$/, 'term_long', (m) => ({ days: m[1] })],
  [new RegExp(String.raw`^holiday ${Q}\1 ends before it starts$`), 'holiday_order', (m) => ({ name: m[2] })],
  [new RegExp(String.raw`^holiday ${Q}\1 \((\S+)\.\.(\S+)\) is outside the term$`), 'holiday_outside', (m) => ({ name: m[2], from: m[3], to: m[4] })],
  [/^follows_weekday is 1 \(Monday\) to 7 \(Sunday\)$/, 'weekday'],
  [/^make-up day (\S+) is outside the term$/, 'makeup_outside', (m) => ({ date: m[1] })],
  [/^make-up day (\S+) falls in a holiday$/, 'makeup_holiday', (m) => ({ date: m[1] })],
  [/^make-up day (\S+) is listed twice$/, 'makeup_twice', (m) => ({ date: m[1] })],
  [/^period numbers start at 1$/, 'period_number'],
  [/^period (\d+) is listed twice$/, 'period_twice', (m) => ({ number: m[1] })],
  [/^period (\d+) must end after it starts$/, 'period_order', (m) => ({ number: m[1] })],
  [/^periods (\d+) and (\d+) overlap$/, 'period_overlap', (m) => ({ a: m[1], b: m[2] })],
  [new RegExp(String.raw`^region ${Q}\1 already has a term named ${Q}\3$`), 'term_name', (m) => ({ name: m[4] })],
  // series and occurrences (classroom/timetable.py)
  [new RegExp(String.raw`^term ${Q}\1 has no period (\d+) \((?:periods: )?(.*)\)$`), 'no_period', (m) => ({ term: m[2], number: m[3], known: m[4] })],
  [/^weekday is 1 \(Monday\) to 7 \(Sunday\)$/, 'weekday'],
  [/^give a period or start and end times, not both$/, 'period_or_times'],
  [/^give a period, or both start_time and end_time$/, 'period_or_times'],
  [/^the lesson must end after it starts$/, 'end_after_start'],
  [/^(first_date|last_date) (\S+) is outside the term$/, 'date_outside', (m) => ({ date: m[2] })],
  [/^last_date is before first_date$/, 'last_before_first'],
  [/^(subject|grade|title|teacher_name) must not be empty$/, 'required'],
  [/^user \d+ is not an active teacher of the main classroom's school$/, 'teacher_account'],
  [/^pairing \d+ is archived$/, 'pairing_archived'],
  [/^a series keeps its pairing/, 'keeps_pairing'],
  [/^pairing \d+ is not taught from your school$/, 'not_your_pairing'],
  [new RegExp(String.raw`^(\S+) is outside term ${Q}\2$`), 'move_outside', (m) => ({ date: m[1] })],
  [new RegExp(String.raw`^(\S+) is a holiday of term ${Q}\2$`), 'move_holiday', (m) => ({ date: m[1] })],
  [/^a lesson can only be moved to a time still to come$/, 'move_past'],
  [/^(\S+ \d{2}:\d{2}) does not exist in (\S+) \(clocks change\)$/, 'no_such_time', (m) => ({ when: m[1], zone: m[2] })],
  [/^lesson \d+ is (\w+); only a scheduled one can be/, 'not_scheduled', (m, t) => ({ state: t(`lesson.state.${m[1]}`) })],
  [/^lesson \d+ is not an occurrence of a series$/, 'not_occurrence'],
  [/^no series \d+$/, 'gone'],
  [/^no term \d+$/, 'gone'],
  [/^no pairing \d+$/, 'gone'],
  // feeds (classroom/ical.py, signaling/rest/timetable.py)
  [/^no classroom \d+$/, 'gone'],
  [/^no teacher account \d+$/, 'gone'],
  [/^a (classroom|teacher) feed names/, 'choose_target'],
  [/^a teacher manages their own teacher feed only$/, 'forbidden'],
  // CSV rows (classroom/timetable_csv.py)
  [new RegExp(String.raw`^${Q}\1 is not a weekday`), 'csv_weekday', (m) => ({ value: m[2] })],
  [new RegExp(String.raw`^${Q}\1 is not a period`), 'csv_period', (m) => ({ value: m[2] })],
  [new RegExp(String.raw`^${Q}\1 is not a time`), 'csv_time', (m) => ({ value: m[2] })],
  [new RegExp(String.raw`^${Q}\1 is not 每周, 单周 or 双周$`), 'csv_parity', (m) => ({ value: m[2] })],
  [/^(\S+) is empty$/, 'csv_empty', (m) => ({ column: m[1] })],
  [new RegExp(String.raw`^unknown classroom ${Q}\1$`), 'csv_room', (m) => ({ value: m[2] })],
  [/^no classroom #(\d+)$/, 'csv_room_id', (m) => ({ id: m[1] })],
  [/^classroom (.+) is archived$/, 'csv_room_archived', (m) => ({ value: m[1] })],
  [new RegExp(String.raw`^classroom ${Q}\1 is ambiguous \((.*)\); write 学校/教室$`), 'csv_room_ambiguous', (m) => ({ value: m[2], rooms: m[3] })],
  [/^main classroom (.+) is not in your school$/, 'csv_not_your_school', (m) => ({ value: m[1] })],
  [/^no pairing of main classroom (.+?) with (.+); pair them first$/, 'csv_no_pairing', (m) => ({ main: m[1], rooms: m[2] })],
  [new RegExp(String.raw`^unknown lesson type ${Q}\1`), 'csv_kind', (m) => ({ value: m[2] })],
  [new RegExp(String.raw`^no active teacher account ${Q}\1 in (.+)$`), 'csv_account', (m) => ({ value: m[2], school: m[3] })],
  [new RegExp(String.raw`^(.+) has (\d+) teacher accounts named ${Q}\3; add a 教师账号 column$`), 'csv_same_name', (m) => ({ school: m[1], count: m[2], name: m[4] })],
  // the CSV file as a whole
  [/^line 1: missing columns (.+?)(?:; unknown columns: (.+))?$/, 'csv_missing', (m, t) => ({
    columns: m[1]
      .replace(/(\S+) \(or (\S+) and (\S+)\)/, (_, period, a, b) => t('timetable.error.csv_either', { period, a, b }))
      .split(', ')
      .join(t('timetable.error.list_separator')),
    unknown: m[2] ? t('timetable.error.csv_unknown_columns', { columns: m[2] }) : '',
  })],
  [/^line 1: column (\S+) appears twice$/, 'csv_twice', (m) => ({ column: m[1] })],
  [/^line (\d+): not valid CSV/, 'csv_syntax', (m) => ({ line: m[1] })],
  [/^the file is empty$|^send the CSV file as the request body$/, 'csv_file_empty'],
  [/^the file has a header but no rows$/, 'csv_no_rows'],
  [/^more than (\d+) rows; split the file$/, 'csv_many_rows', (m) => ({ max: m[1] })],
  [/^the file is neither UTF-8 nor GB18030\/GBK text$|^the file starts like UTF-16 but is not$/, 'csv_encoding'],
  [/^the file exceeds/, 'csv_too_large'],
  // request validation (msgspec)
  [/^Expected `str` of length >= 1/, 'required'],
  [/^Expected `str` of length <= (\d+)/, 'too_long', (m) => ({ max: m[1] })],
  [/^Expected `str` matching regex/, 'time_format'],
  [/^Invalid RFC3339 encoded date/, 'date_format'],
  [/^Expected `int` >= (\d+)/, 'number_min', (m) => ({ min: m[1] })],
  [/^Expected `int` <= (\d+)/, 'number_max', (m) => ({ max: m[1] })],
  [/^Expected `array` of length <= (\d+)/, 'too_many', (m) => ({ max: m[1] })],
  [/^Expected `(?:int|str|bool|date)`|^Invalid enum value/, 'choice'],
];

/** What made a booking, as the catalogue says it: a series, a lesson, a CSV line. */
function bookingText(t, text) {
  let m = text.match(/^series (\d+) (['"])(.*)\2$/);
  if (m) return t('timetable.clash.series', { id: m[1], title: m[3] });
  m = text.match(/^lesson (\d+) (['"])(.*)\2 \(series (\d+)\)$/);
  if (m) return t('timetable.clash.series_lesson', { id: m[1], title: m[3], series: m[4] });
  m = text.match(/^lesson (\d+) (['"])(.*)\2$/);
  if (m) return t('timetable.clash.lesson', { id: m[1], title: m[3] });
  m = text.match(/^CSV line (\d+)$/);
  if (m) return t('timetable.clash.csv_line', { line: m[1] });
  return text;
}

/** A double booking as a sentence naming both sides, or null if `message` is not one. */
export function clashText(t, message) {
  const m = (message || '').match(CLASH);
  if (!m) return null;
  const [, what, span, roomId, roomLabel, teacher, , other, otherSpan, more, rowCount] = m;
  const who = roomId
    ? t('timetable.clash.classroom', { name: roomLabel || `#${roomId}` })
    : t('timetable.clash.teacher', { name: teacher });
  let text = t('timetable.clash.text', {
    who,
    other: bookingText(t, other),
    other_span: otherSpan,
    what: bookingText(t, what),
    span,
  });
  if (more) text += t('timetable.clash.more', { count: more });
  if (rowCount) text += t('timetable.clash.row_count', { count: rowCount });
  return text;
}

/** A known server message in the page's language, or null. */
export function knownText(t, message) {
  const text = (message || '').replace(/^series \d+: /, '');
  const clash = clashText(t, text);
  if (clash) return clash;
  for (const [pattern, key, vars] of PATTERNS) {
    const m = text.match(pattern);
    if (m) return t(`timetable.error.${key}`, vars ? vars(m, t) : {});
  }
  return null;
}

/** A reason of a refused CSV row, in the page's language (the server's text if unknown). */
export function rowReason(t, message) {
  return knownText(t, message) ?? message;
}

/**
 * An error as {field, text}: `field` is where the form shows it (null: at the form's
 * foot), `text` a sentence of the catalogue.
 */
export function describe(t, error) {
  if (!(error instanceof ApiError)) {
    return { field: null, text: t('timetable.error.network', { message: String(error?.message ?? error) }) };
  }
  const field = (error.field || '').replace(/^\$\.?/, '') || null;
  const message = error.message || '';
  const known = knownText(t, message);
  switch (error.code) {
    case 'network':
      return { field: null, text: t('timetable.error.network', { message }) };
    case 'unauthorized':
      return { field: null, text: t('timetable.error.unauthorized') };
    case 'forbidden':
    case 'csrf_failed':
      return { field: null, text: known ?? t('timetable.error.forbidden') };
    case 'too_large':
      return { field: null, text: t('timetable.error.csv_too_large') };
    case 'illegal_transition':
      return { field: null, text: t('timetable.error.illegal_transition') };
    case 'not_found':
      return { field, text: known ?? t('timetable.error.gone') };
    case 'conflict':
      // A clash is about the whole lesson, not one field: shown at the form's foot.
      if (clashText(t, message)) return { field: null, text: known };
      return { field, text: known ?? t('timetable.error.conflict', { message }) };
    case 'invalid_body':
      return { field, text: known ?? t('timetable.error.invalid', { message }) };
    default:
      return { field, text: known ?? t('timetable.error.unknown', { status: error.status, message }) };
  }
}
