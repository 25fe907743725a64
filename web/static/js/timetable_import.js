// CSV import of a term's timetable: one row per weekly lesson, all or nothing.
//
// The file is read in the browser and sent as it is (its bytes, Content-Type text/csv) to
// POST /terms/{id}/import, which decodes UTF-8 (with or without BOM), GB18030/GBK and
// UTF-16 itself — so nothing is re-encoded here. "Check only" sends ?dry_run=true: the
// server checks everything and reports what it would create. A refused file answers 400
// with every bad row (line, column, reason); the page lists them all, and nothing was
// imported. The template is made here from the documented headers (classroom/
// timetable_csv.py HEADERS), with an example row on a pairing the caller can see.

import { request } from './api.js';
import { rowReason } from './timetable_errors.js';
import { $, el, fillTable, handleForm } from './timetable_ui.js';

const MAX_BYTES = 2 * 1024 * 1024; // the server's limit (timetable_csv.MAX_BYTES)
const HEADERS = ['星期', '节次', '开始时间', '结束时间', '学科', '年级', '主讲教室', '听课教室', '教师', '课题', '类型', '单双周', '教师账号'];
let ctx;
let templateUrl = null;

function csvCell(value) {
  const text = String(value ?? '');
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The template: the importer's headers and two example rows (a period; explicit times). */
export function templateText(context) {
  const pairing = context.pairings.find((p) => p.active !== false && context.maySchedule(p.id));
  const main = pairing ? context.classroomLabel(pairing.main_classroom_id) : '城关一中/301';
  const rooms = pairing ? pairing.receiving_classroom_ids.map((id) => context.classroomLabel(id)).join('、') : '乡村小学一/听课一、乡村小学二/听课二';
  const rows = [
    HEADERS,
    ['星期一', '3', '', '', '数学', '初二', main, rooms, '王芳', '一次函数', '专递课堂', '每周', ''],
    ['周三', '', '14:00', '14:45', '语文', '初二', main, rooms, '李明', '春', '名师课堂', '单周', ''],
  ];
  // The BOM makes Excel read the file as UTF-8 (Chinese headers intact).
  return `\ufeff${rows.map((row) => row.map(csvCell).join(',')).join('\r\n')}\r\n`;
}

function renderTemplateLink() {
  if (templateUrl) URL.revokeObjectURL(templateUrl);
  templateUrl = URL.createObjectURL(new Blob([templateText(ctx)], { type: 'text/csv;charset=utf-8' }));
  const link = $('import-template');
  link.href = templateUrl;
  link.download = ctx.t('timetable.import.template_file');
}

function showResult(text, kind) {
  const line = $('import-result');
  line.textContent = text;
  line.dataset.status = kind;
}

function showRows(rows) {
  const { t } = ctx;
  const wrap = $('import-errors-wrap');
  if (!rows) {
    wrap.hidden = true;
    return;
  }
  const lines = [...new Set(rows.map((r) => r.line))];
  $('import-errors-caption').textContent = t('timetable.import.errors_caption', { count: lines.length });
  fillTable(
    $('import-errors'),
    rows.map((r) =>
      el(
        'tr',
        { dataset: { line: r.line } },
        el('td', { text: r.line }),
        el('td', { text: r.column ?? t('timetable.import.whole_row') }),
        el('td', { text: rowReason(t, r) }),
      ),
    ),
    '',
  );
  wrap.hidden = false;
}

export async function show(context) {
  ctx = context;
  $('import-form').hidden = !ctx.term;
  if (!ctx.term) showResult(ctx.t('timetable.series.no_term'), 'info');
  renderTemplateLink();
}

export function init(context) {
  ctx = context;
  const form = $('import-form');
  let file = null;
  handleForm(form, {
    check(submitter) {
      const { t } = ctx;
      const errors = {};
      file = form.elements.file.files[0] ?? null;
      if (!ctx.term) errors[''] = t('timetable.series.no_term');
      else if (!file) errors.file = t('timetable.import.choose_file');
      else if (file.size === 0) errors.file = t('timetable.error.csv_file_empty');
      else if (file.size > MAX_BYTES) errors.file = t('timetable.error.csv_too_large');
      return { errors, body: { dryRun: submitter?.value === 'check' } };
    },
    async send({ dryRun }) {
      showResult(ctx.t(dryRun ? 'timetable.import.checking' : 'timetable.import.importing'), 'info');
      showRows(null);
      const bytes = await file.arrayBuffer();
      const answer = await request('POST', `/terms/${ctx.term.id}/import`, bytes, {
        params: { dry_run: dryRun ? 'true' : '' },
        contentType: 'text/csv',
      });
      return answer;
    },
    describe: (error) => ctx.describe(error),
    onError(error) {
      if (ctx.leaveIfSignedOut(error)) return true;
      const rows = error?.answer?.rows;
      if (Array.isArray(rows) && rows.length) {
        const lines = [...new Set(rows.map((r) => r.line))];
        const text = ctx.t('timetable.import.refused', { count: lines.length, lines: lines.join('、') });
        showResult(text, 'error');
        ctx.status(text, 'error');
        showRows(rows);
        return true;
      }
      showResult(ctx.t('timetable.import.not_imported'), 'error');
      ctx.status(ctx.t('timetable.import.not_imported'), 'error');
      return false; // the reason goes next to the file field
    },
    async done(answer) {
      const { t } = ctx;
      const key = answer.dry_run ? 'timetable.import.checked' : 'timetable.import.imported';
      const text = t(key, { rows: answer.rows, series: answer.series_created, lessons: answer.lessons_created });
      showResult(text, 'ok');
      if (!answer.dry_run) ctx.status(text, 'ok');
    },
  });
}
