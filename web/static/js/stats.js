// The statistics page (/admin/stats): 常态化 statistics of lessons that really ran.
//
// Filters (term, dates, school, pairing, teacher) and the grouping live in the address bar
// (?by=&term=&from=&to=&school=&pairing=&teacher=&lang=), so a view can be bookmarked and
// sent to a colleague; Back returns to the previous one. A first visit without any shows
// the current term, or the last eight weeks when no term holds today.
//
// Three requests per view, all GET /api/v1/statistics with the same filters: the chosen
// grouping (the table and the attendance chart), by week (held against scheduled), and by
// classroom (link quality per room). The server scopes them: a school admin sees the
// lessons of their school, a teacher their own; the page says so. The CSV link asks the
// server for the same rows (UTF-8 with BOM, Chinese headers and file name).
//
// Charts are our own SVG (stats_charts.js), each with its numbers in a table beside it for
// screen readers. Tests read `window.tongbuStats`.

import { ApiError, apiGet, loadCatalogue, pageLang } from './api.js';
import { mountNav } from './nav.js';
import { requireSession } from './session.js';
import { horizontalBars, stackedColumns } from './stats_charts.js';

export const GROUPINGS = ['week', 'term', 'school', 'pairing', 'teacher', 'classroom'];
const FILTERS = ['term', 'from', 'to', 'school', 'pairing', 'teacher'];
const ROLES = new Set(['admin', 'school_admin', 'teacher']);
// The table's columns after the name: the CSV's, less the ones only a spreadsheet needs.
export const COLUMNS = [
  'scheduled',
  'held',
  'partial',
  'late',
  'missed',
  'cancelled',
  'pending',
  'attendance_minutes',
  'attendance_rate',
  'drops',
  'reconnects',
  'freezes',
  'down_bitrate_kbps',
  'up_bitrate_kbps',
  'down_loss',
  'rtt_ms',
  'rtt_p95_ms',
  'recordings',
];
// Bottom to top in the weekly chart; together they are every scheduled lesson.
const VERDICTS = ['held', 'partial', 'missed', 'cancelled', 'pending'];
const MAX_ROOMS = 40; // rooms in the link chart; the table and CSV have them all
const DEFAULT_WEEKS = 8;
// Dates are Beijing days: China keeps UTC+8 all year.
const ZONE = 'Asia/Shanghai';
const ZONE_OFFSET = '+08:00';
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const ID = /^[1-9]\d{0,14}$/;

const lang = pageLang();
const $ = (id) => document.getElementById(id);
let t = (key) => key;
let generation = 0;
const state = { query: null, main: null, weeks: null, rooms: null, loads: 0, error: null, role: null };

// ------------------------------------------------------------------ the query

/** The view the address bar describes; malformed values are dropped. */
export function queryFromLocation(location = window.location) {
  const params = new URLSearchParams(location.search);
  const query = { by: params.get('by') ?? '' };
  if (!GROUPINGS.includes(query.by)) query.by = 'week';
  for (const key of FILTERS) query[key] = (params.get(key) ?? '').trim();
  for (const key of ['from', 'to']) if (!DATE.test(query[key])) query[key] = '';
  for (const key of ['term', 'school', 'pairing']) if (!ID.test(query[key])) query[key] = '';
  query.teacher = query.teacher.slice(0, 100);
  return query;
}

function hasAnyView(location = window.location) {
  const params = new URLSearchParams(location.search);
  return ['by', ...FILTERS].some((key) => params.has(key));
}

/** A Beijing calendar day plus `days`, as YYYY-MM-DD. */
export function addDays(day, days) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

/** Today in Beijing, as YYYY-MM-DD. */
function today() {
  return new Intl.DateTimeFormat('en-CA', { timeZone: ZONE, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
}

/** GET /statistics parameters: `to` is a day included, so the exclusive end is the next. */
export function apiParams(query) {
  return {
    by: query.by,
    term_id: query.term,
    from: query.from ? `${query.from}T00:00:00${ZONE_OFFSET}` : '',
    to: query.to ? `${addDays(query.to, 1)}T00:00:00${ZONE_OFFSET}` : '',
    school_id: query.school,
    pairing_id: query.pairing,
    teacher: query.teacher,
  };
}

function searchOf(query) {
  const params = new URLSearchParams();
  params.set('by', query.by);
  for (const key of FILTERS) if (query[key]) params.set(key, query[key]);
  if (lang === 'en') params.set('lang', 'en');
  return `?${params}`;
}

export function csvHref(query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(apiParams(query))) if (value) params.set(key, value);
  params.set('lang', lang);
  return `/api/v1/statistics.csv?${params}`;
}

// ------------------------------------------------------------------ formatting

const integer = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat(lang, { minimumFractionDigits: 1, maximumFractionDigits: 1 });

/** A column's value as the table shows it; null (nothing measured) is a dash. */
export function formatCell(column, value) {
  if (value === null || value === undefined) return '—';
  switch (column) {
    case 'attendance_minutes':
      return oneDecimal.format(value);
    case 'attendance_rate':
      return `${oneDecimal.format(value * 100)}%`;
    case 'down_loss':
    case 'up_loss':
      return `${(value * 100).toFixed(2)}%`;
    default:
      return integer.format(value);
  }
}

function groupLabel(by, group) {
  if (by === 'term' && !group.key) return t('stats.no_term');
  return group.label || group.key || '—';
}

// ------------------------------------------------------------------ rendering

function setStatus(text, kind = '') {
  const line = $('stats-status');
  line.textContent = text;
  if (kind) line.dataset.status = kind;
  else delete line.dataset.status;
}

function cell(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function renderTable(answer) {
  const by = answer.by;
  $('stats-caption').textContent = t('stats.table.caption', { by: t(`stats.by.${by}`), count: answer.groups.length });
  const head = $('stats-table').tHead.rows[0];
  head.replaceChildren(
    cell('th', t(`stats.col.${by}`), { scope: 'col' }),
    ...COLUMNS.map((c) => cell('th', t(`stats_csv.${c}`), { scope: 'col', 'data-col': c })),
  );
  const body = $('stats-table').tBodies[0];
  if (!answer.groups.length) {
    const row = document.createElement('tr');
    row.append(cell('td', t('stats.empty'), { colspan: String(COLUMNS.length + 1), class: 'empty' }));
    body.replaceChildren(row);
    return;
  }
  body.replaceChildren(
    ...answer.groups.map((group) => {
      const row = document.createElement('tr');
      row.dataset.key = group.key;
      row.append(cell('th', groupLabel(by, group), { scope: 'row' }));
      for (const c of COLUMNS) row.append(cell('td', formatCell(c, group[c]), { 'data-col': c }));
      return row;
    }),
  );
}

function weeklyChart(weeks) {
  const groups = weeks.groups;
  return stackedColumns({
    name: 'held-by-week',
    title: t('stats.chart.held'),
    categories: groups.map((g) => g.key.slice(5)),
    fullLabels: groups.map((g) => t('stats.week_of', { date: g.key })),
    series: VERDICTS.map((v) => ({
      key: v,
      label: t(`stats.verdict.${v}`),
      className: `v-${v}`,
      values: groups.map((g) => g[v]),
    })),
    totalLabel: t('stats_csv.scheduled'),
    format: (n) => integer.format(n),
  });
}

function attendanceChart(answer) {
  return horizontalBars({
    name: 'attendance',
    title: t('stats.chart.attendance', { by: t(`stats.by.${answer.by}`) }),
    categories: answer.groups.map((g) => groupLabel(answer.by, g)),
    values: answer.groups.map((g) => (g.attendance_rate === null ? null : g.attendance_rate * 100)),
    max: 100,
    className: 'm-attendance',
    format: (n) => `${oneDecimal.format(n)}%`,
    valueLabel: t('stats_csv.attendance_rate'),
  });
}

/**
 * The rooms for the link charts: those with link figures (a room that never connected has
 * none), the worst first (loss, then RTT), at most MAX_ROOMS.
 */
export function roomsForLinkChart(groups, max = MAX_ROOMS) {
  const measured = groups.filter((g) => g.down_bitrate_kbps !== null || g.rtt_ms !== null);
  const worst = (g) => [g.down_loss ?? -1, g.rtt_ms ?? -1];
  return [...measured]
    .sort((a, b) => {
      const [la, ra] = worst(a);
      const [lb, rb] = worst(b);
      return lb - la || rb - ra || a.label.localeCompare(b.label);
    })
    .slice(0, max);
}

function linkCharts(rooms) {
  const chosen = roomsForLinkChart(rooms.groups);
  const holder = document.createElement('section');
  holder.className = 'chart-group';
  holder.dataset.chart = 'link-quality';
  holder.setAttribute('aria-labelledby', 'link-title');
  const heading = cell('h3', t('stats.chart.link'), { id: 'link-title' });
  const note = cell('p', t('stats.chart.link_note', { count: chosen.length, total: rooms.groups.length }), { class: 'meta' });
  const row = document.createElement('div');
  row.className = 'chart-row';
  const labels = chosen.map((g) => g.label || g.key);
  const metric = (name, title, values, className, format, max) =>
    horizontalBars({ name, title, categories: labels, values, className, format, max, valueLabel: title, labelWidth: 150, width: 380 });
  row.append(
    metric('down-bitrate', t('stats.metric.bitrate'), chosen.map((g) => g.down_bitrate_kbps), 'm-bitrate', (n) => integer.format(n)),
    metric('down-loss', t('stats.metric.loss'), chosen.map((g) => (g.down_loss === null ? null : g.down_loss * 100)), 'm-loss', (n) => `${n.toFixed(2)}%`),
    metric('rtt', t('stats.metric.rtt'), chosen.map((g) => g.rtt_ms), 'm-rtt', (n) => integer.format(n)),
  );
  holder.append(heading, note, row);
  return holder;
}

function summaryLine(weeks) {
  const sum = (key) => weeks.groups.reduce((total, g) => total + g[key], 0);
  return t('stats.summary', {
    scheduled: integer.format(sum('scheduled')),
    held: integer.format(sum('held')),
    late: integer.format(sum('late')),
    missed: integer.format(sum('missed')),
    cancelled: integer.format(sum('cancelled')),
  });
}

function render() {
  const { main, weeks, rooms } = state;
  $('stats-rule').textContent = t('stats.rule', {
    percent: Math.round(main.held_min_fraction * 100),
    minutes: Math.round(main.late_after_s / 60),
  });
  renderTable(main);
  const charts = $('stats-charts');
  if (!main.groups.length) {
    charts.replaceChildren(cell('p', t('stats.empty'), { class: 'meta' }));
  } else {
    charts.replaceChildren(weeklyChart(weeks), attendanceChart(main), linkCharts(rooms));
  }
  $('stats-results').hidden = false;
  setStatus(main.groups.length ? summaryLine(weeks) : t('stats.empty'), 'ok');
}

// ------------------------------------------------------------------ loading

function fillForm(query) {
  const form = $('stats-filters');
  for (const key of FILTERS) form.elements[key].value = query[key];
  for (const radio of form.querySelectorAll('input[name="by"]')) radio.checked = radio.value === query.by;
  $('export-csv').href = csvHref(query);
  $('f-dates-error').textContent = '';
  for (const key of ['from', 'to']) form.elements[key].removeAttribute('aria-invalid');
}

function formQuery() {
  const form = $('stats-filters');
  const query = { by: form.querySelector('input[name="by"]:checked')?.value ?? 'week' };
  for (const key of FILTERS) query[key] = form.elements[key].value.trim();
  return query;
}

async function load() {
  const mine = ++generation;
  const query = state.query;
  fillForm(query);
  document.title = `${t(`stats.by.${query.by}`)} · ${t('stats.page_title')}`;
  if (query.from && query.to && query.from > query.to) {
    $('f-dates-error').textContent = t('stats.error.dates');
    $('f-to').setAttribute('aria-invalid', 'true');
    setStatus(t('stats.error.dates'), 'error');
    return;
  }
  setStatus(t('stats.loading'));
  const params = apiParams(query);
  try {
    const [main, weeks, rooms] = await Promise.all([
      apiGet('/statistics', params),
      query.by === 'week' ? null : apiGet('/statistics', { ...params, by: 'week' }),
      query.by === 'classroom' ? null : apiGet('/statistics', { ...params, by: 'classroom' }),
    ]);
    if (mine !== generation) return; // a newer view was asked for meanwhile
    Object.assign(state, { main, weeks: weeks ?? main, rooms: rooms ?? main, error: null });
    render();
    state.loads += 1;
  } catch (error) {
    if (mine !== generation) return;
    state.error = error;
    if (error instanceof ApiError && error.status === 401) {
      await requireSession();
      return;
    }
    setStatus(describe(error), 'error');
  }
}

function describe(error) {
  if (error instanceof ApiError) {
    if (error.status === 403) return t('stats.error.forbidden');
    if (error.status === 404 && error.field === 'term_id') return t('stats.error.term');
    if (error.status === 400) return t('stats.error.invalid', { message: error.message });
    return t('stats.error.http', { status: error.status, message: error.message });
  }
  return t('stats.error.network', { message: String(error?.message ?? error) });
}

function go(query, { push = true } = {}) {
  state.query = query;
  const url = window.location.pathname + searchOf(query);
  if (push) window.history.pushState(null, '', url);
  else window.history.replaceState(null, '', url);
  return load();
}

function option(value, text) {
  const node = document.createElement('option');
  node.value = String(value);
  node.textContent = text;
  return node;
}

/** Filter choices: terms, schools and pairings the caller may see (the server scopes). */
async function loadChoices() {
  const [terms, schools, pairings] = await Promise.all([
    apiGet('/terms').catch(() => ({ items: [] })),
    apiGet('/schools').catch(() => ({ items: [] })),
    apiGet('/pairings').catch(() => ({ items: [] })),
  ]);
  $('f-term').append(...terms.items.map((term) => option(term.id, `${term.name}（${term.start_date} – ${term.end_date}）`)));
  $('f-school').append(...schools.items.map((school) => option(school.id, school.name)));
  $('f-pairing').append(...pairings.items.map((pairing) => option(pairing.id, pairing.name)));
  return terms.items;
}

/** A first visit: the term that holds today, else the last DEFAULT_WEEKS weeks. */
function defaultQuery(terms) {
  const day = today();
  const current = terms.find((term) => term.start_date <= day && day <= term.end_date);
  const query = { by: 'week', term: '', from: '', to: '', school: '', pairing: '', teacher: '' };
  if (current) query.term = String(current.id);
  else {
    const weekday = (new Date(`${day}T00:00:00Z`).getUTCDay() + 6) % 7; // Monday 0
    query.from = addDays(day, -weekday - 7 * (DEFAULT_WEEKS - 1));
  }
  return query;
}

function wire() {
  const form = $('stats-filters');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    go(formQuery());
  });
  for (const radio of form.querySelectorAll('input[name="by"]')) {
    radio.addEventListener('change', () => go(formQuery()));
  }
  $('f-reset').addEventListener('click', () => {
    go({ by: formQuery().by, term: '', from: '', to: '', school: '', pairing: '', teacher: '' });
  });
  window.addEventListener('popstate', () => {
    state.query = queryFromLocation();
    load();
  });
}

async function main() {
  t = await loadCatalogue(lang);
  document.title = t('stats.page_title');
  const session = await requireSession();
  if (!session) return;
  state.role = session.user.role;
  await mountNav(t, { session, current: 'stats' });
  if (!ROLES.has(session.user.role)) {
    $('stats-denied').hidden = false;
    setStatus('');
    return;
  }
  if (session.user.role !== 'admin') {
    $('stats-scope').textContent = t(`stats.scope.${session.user.role}`);
    $('stats-scope').hidden = false;
  }
  $('stats-filters').hidden = false;
  const terms = await loadChoices();
  wire();
  if (hasAnyView()) await go(queryFromLocation(), { push: false });
  else await go(defaultQuery(terms), { push: false });
}

window.tongbuStats = {
  get loads() {
    return state.loads;
  },
  get last() {
    return { query: state.query, main: state.main, weeks: state.weeks, rooms: state.rooms };
  },
  get error() {
    return state.error ? String(state.error.message ?? state.error) : null;
  },
  get role() {
    return state.role;
  },
};

main();
