// The timetable API's refusals as sentences of the page's language.
//
// The server answers {"error": {code, message, field, reason, params}}: `reason` names the
// refusing rule (classroom/refusals.py, docs/api.md) and `params` the names, dates and
// numbers its sentence holds. A reason is said by the catalogue's `error.<reason>` sentence
// (or the page's own below); a refusal without one by its code's sentence; an unknown one
// is shown as the server wrote it, behind a translated lead, so nothing is ever lost. A
// double booking keeps everything the server says about the clash: what was refused, the
// classroom or teacher, the lesson or series already there, and when.

import { ApiError, reasonText } from './session.js';

/** What made a booking, as the catalogue says it: a series, a lesson, a CSV line. */
function bookingText(t, p, side) {
  const [kind, id, title, series] = ['kind', 'id', 'title', 'series'].map((k) => p[`${side}_${k}`]);
  if (kind === 'csv_line') return t('timetable.clash.csv_line', { line: id });
  if (kind === 'series') return t('timetable.clash.series', { id, title });
  if (series !== null && series !== undefined) return t('timetable.clash.series_lesson', { id, title, series });
  return t('timetable.clash.lesson', { id, title });
}

/**
 * A double booking as a sentence naming both sides, from the params of a `double_booked`
 * refusal (or a refused import row's `row_double_booked`).
 */
export function clashText(t, p) {
  const who =
    p.resource === 'classroom'
      ? t('timetable.clash.classroom', { name: p.classroom || `#${p.classroom_id}` })
      : t('timetable.clash.teacher', { name: p.teacher });
  let text = t('error.double_booked', {
    who,
    other: bookingText(t, p, 'other'),
    other_span: p.other_span,
    what: bookingText(t, p, 'what'),
    span: p.span,
  });
  if (p.more) text += t('timetable.clash.more', { count: p.more });
  if (p.row_clashes > 1) text += t('timetable.clash.row_count', { count: p.row_clashes });
  return text;
}

const CLASHES = new Set(['double_booked', 'row_double_booked']);

/** The page's own sentences, where it says a reason otherwise than the catalogue. */
function ownSentences(t) {
  const gone = () => t('timetable.error.gone');
  return {
    double_booked: (p) => clashText(t, p),
    row_double_booked: (p) => clashText(t, p),
    csv_missing_columns: (p) => {
      const columns = (p.columns ? p.columns.split(', ') : []).concat(
        p.missing_period ? [t('timetable.error.csv_either', { period: '节次', a: '开始时间', b: '结束时间' })] : [],
      );
      return t('error.csv_missing_columns', {
        columns: columns.join(t('timetable.error.list_separator')),
        unknown: p.unknown ? t('timetable.error.csv_unknown_columns', { columns: p.unknown }) : '',
      });
    },
    // Whatever is gone, the page says so one way: reload.
    ...Object.fromEntries(
      ['term', 'pairing', 'school', 'classroom', 'classrooms', 'series', 'lesson', 'feed', 'teacher_account'].map(
        (what) => [`${what}_not_found`, gone],
      ),
    ),
  };
}

/** A refusal (an ApiError, a refused import row) in the page's language, or null. */
export function knownText(t, refusal) {
  return reasonText(t, refusal, ownSentences(t));
}

/** A refused CSV row ({line, column, message, reason, params}) in the page's language. */
export function rowReason(t, row) {
  return knownText(t, row) ?? row.message;
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
  const known = knownText(t, error);
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
      if (CLASHES.has(error.reason)) return { field: null, text: known };
      return { field, text: known ?? t('timetable.error.conflict', { message }) };
    case 'invalid_body':
      return { field, text: known ?? t('timetable.error.invalid', { message }) };
    default:
      return { field, text: known ?? t('timetable.error.unknown', { status: error.status, message }) };
  }
}
