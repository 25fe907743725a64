// The library search page (/library): a search box, filters, result cards, pages.
//
// State lives in the address bar (?q=&subject=&grade=&teacher=&school=&kind=&from=&to=
// &page=&lang=), so a search can be bookmarked, shared and reloaded, and Back returns to
// the previous page of results. The filter choices come from GET /library/facets: the
// values found among the entries this visitor may see, so a choice always finds lessons.
// Signed in (the session cookie), the API also lists the private entries the user may
// see; anonymous visitors see published 名校网络课堂 only, and the page says so.
// Tests read `window.tongbuLibrary`.

import {
  apiGet,
  currentSession,
  errorText,
  formatClock,
  formatDate,
  imageSrc,
  loadCatalogue,
  pageLang,
  schoolsLine,
} from './api.js';
import { mountNav } from './nav.js';
import { loginUrl } from './session.js';

export const PAGE_SIZE = 12;
export const FILTERS = ['q', 'subject', 'grade', 'teacher', 'school', 'kind', 'from', 'to'];
const DATE = /^\d{4}-\d{2}-\d{2}$/;

const lang = pageLang();
const $ = (id) => document.getElementById(id);
let t = (key) => key;
let last = { status: 'loading', total: 0, items: [], error: null };
let facets = null;

/** The search the address bar describes; malformed dates and school ids are dropped. */
export function queryFromLocation(location = window.location) {
  const params = new URLSearchParams(location.search);
  const query = {};
  for (const key of FILTERS) query[key] = (params.get(key) ?? '').trim();
  for (const key of ['from', 'to']) if (!DATE.test(query[key])) query[key] = '';
  if (!/^[1-9]\d{0,14}$/.test(query.school)) query.school = '';
  query.page = Math.max(1, Number.parseInt(params.get('page') ?? '1', 10) || 1);
  return query;
}

/**
 * A calendar day (YYYY-MM-DD) as the instant its local midnight falls on, or `days` later.
 * The date range is of days as the visitor reads them: `to` is included, so the API's
 * exclusive end is the next day's midnight.
 */
export function dayStart(day, days = 0) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(y, m - 1, d + days).toISOString();
}

/** The filters that are set, as an error key when they contradict each other. */
export function queryProblem(query) {
  if (query.from && query.to && query.from > query.to) return 'library.error.dates';
  return null;
}

/** GET /library parameters for a search (page numbers are 1-based). */
export function apiParams(query, pageSize = PAGE_SIZE) {
  return {
    q: query.q,
    subject: query.subject,
    grade: query.grade,
    teacher: query.teacher,
    school_id: query.school,
    kind: query.kind,
    from: query.from ? dayStart(query.from) : '',
    to: query.to ? dayStart(query.to, 1) : '',
    sort: '-date',
    limit: pageSize,
    offset: (query.page - 1) * pageSize,
  };
}

export function replayHref(entry, language = lang) {
  return `/replay/${entry.id}${language === 'en' ? '?lang=en' : ''}`;
}

/** One result card; `translate` is the page's t(). */
export function renderCard(entry, translate, language = lang) {
  const item = document.createElement('li');
  item.className = 'card';
  item.dataset.recordingId = String(entry.id);
  const link = document.createElement('a');
  link.href = replayHref(entry, language);
  link.className = 'card-link';

  const figure = document.createElement('div');
  figure.className = 'card-poster';
  if (entry.poster_file_id) {
    const img = document.createElement('img');
    img.alt = '';
    img.loading = 'lazy';
    img.decoding = 'async';
    imageSrc(`/api/v1/library/${entry.id}/files/${entry.poster_file_id}`)
      .then((src) => {
        img.src = src;
      })
      .catch(() => figure.classList.add('no-poster'));
    figure.append(img);
  } else {
    figure.classList.add('no-poster');
    figure.textContent = translate(entry.state === 'processing' ? 'library.card.processing' : 'library.card.no_poster');
  }
  const duration = document.createElement('span');
  duration.className = 'card-duration';
  duration.textContent = formatClock(entry.duration_s);
  figure.append(duration);

  const body = document.createElement('div');
  body.className = 'card-body';
  const title = document.createElement('h2');
  title.className = 'card-title';
  title.textContent = entry.title;
  const tags = document.createElement('p');
  tags.className = 'card-tags';
  for (const text of [translate(`kind.${entry.kind}`), entry.grade, entry.subject]) {
    if (!text) continue;
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = text;
    tags.append(tag);
  }
  if (!entry.published) {
    const tag = document.createElement('span');
    tag.className = 'tag tag-private';
    tag.textContent = translate('library.card.unpublished');
    tags.append(tag);
  }
  if (entry.state !== 'ready') {
    const tag = document.createElement('span');
    tag.className = `tag tag-${entry.state}`;
    tag.textContent = translate(`library.state.${entry.state}`);
    tags.append(tag);
  }
  const teacher = document.createElement('p');
  teacher.className = 'card-teacher';
  teacher.textContent = translate('library.card.teacher', { teacher: entry.teacher_name });
  const schools = document.createElement('p');
  schools.className = 'meta card-schools';
  schools.textContent = schoolsLine(entry, translate);
  const date = document.createElement('p');
  date.className = 'meta card-date';
  date.textContent = formatDate(entry.started_at, language);
  body.append(title, tags, teacher, schools, date);

  link.append(figure, body);
  item.append(link);
  return item;
}

function fillForm(query) {
  for (const key of FILTERS) {
    const field = $(key);
    // A bookmarked value no longer among the choices stays visible (and searched for).
    if (field.tagName === 'SELECT' && query[key] && ![...field.options].some((o) => o.value === query[key])) {
      field.append(new Option(key === 'school' ? t('library.filter.school_id', { id: query[key] }) : query[key], query[key]));
    }
    field.value = query[key];
  }
}

function formQuery() {
  const query = { page: 1 };
  for (const key of FILTERS) query[key] = $(key).value.trim();
  return query;
}

function navigate(query, { replace = false } = {}) {
  const params = new URLSearchParams();
  for (const key of FILTERS) if (query[key]) params.set(key, query[key]);
  if (query.page > 1) params.set('page', String(query.page));
  if (lang === 'en') params.set('lang', 'en');
  const text = params.toString();
  const url = window.location.pathname + (text ? `?${text}` : '');
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  return search();
}

function showError(text) {
  $('results').replaceChildren();
  $('pager').hidden = true;
  $('summary').textContent = text;
  $('summary').dataset.status = 'error';
}

// Each search's number: an answer that arrives after a newer search began is dropped, or
// two choices made quickly could leave the first one's cards under the second's filters.
let searches = 0;

async function search() {
  const mine = ++searches;
  const query = queryFromLocation();
  fillForm(query);
  // The login link comes back to this very search.
  if ($('scope-login')) $('scope-login').href = loginUrl();
  const summary = $('summary');
  const problem = queryProblem(query);
  if (problem) {
    last = { status: 'error', total: 0, items: [], error: problem, query };
    showError(t(problem));
    return;
  }
  summary.textContent = t('library.searching');
  summary.dataset.status = 'loading';
  last = { ...last, status: 'loading' };
  try {
    const page = await apiGet('/library', apiParams(query));
    if (mine !== searches) return;
    last = { status: 'ready', total: page.total, items: page.items, error: null, query };
    $('results').replaceChildren(...page.items.map((entry) => renderCard(entry, t)));
    const pages = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
    const filtered = FILTERS.some((key) => query[key]);
    summary.textContent = page.total
      ? t('library.summary', { total: page.total })
      : t(filtered ? 'library.empty_search' : 'library.empty');
    summary.dataset.status = 'ready';
    $('pager').hidden = pages <= 1;
    $('page-info').textContent = t('library.page.info', { page: query.page, pages });
    $('prev').disabled = query.page <= 1;
    $('next').disabled = query.page >= pages;
  } catch (error) {
    if (mine !== searches) return;
    last = { status: 'error', total: 0, items: [], error: String(error), query };
    showError(errorText(t, error));
  }
}

/** Replace a select's choices (after its first, "all", option). */
function fillChoices(id, choices) {
  const select = $(id);
  const all = select.options[0];
  select.replaceChildren(all, ...choices.map(([value, label]) => new Option(label, value)));
}

async function loadFacets() {
  try {
    facets = await apiGet('/library/facets');
  } catch (error) {
    console.warn('tongbu: filter choices', error);
    return; // the filters still work with what the address bar says
  }
  const same = (values) => values.map((v) => [v, v]);
  fillChoices('subject', same(facets.subjects));
  fillChoices('grade', same(facets.grades));
  fillChoices('teacher', same(facets.teachers));
  fillChoices('school', facets.schools.map((s) => [String(s.id), s.name]));
}

/** Say whose library this is: anonymous visitors are told what signing in would add. */
function renderScope(session) {
  const scope = $('scope');
  if (session?.user) {
    scope.hidden = true;
    return;
  }
  const link = document.createElement('a');
  link.id = 'scope-login';
  link.href = loginUrl();
  link.textContent = t('library.scope.login');
  scope.replaceChildren(`${t('library.scope.anonymous')} `, link);
  scope.hidden = false;
}

window.tongbuLibrary = {
  lang,
  get state() {
    return last;
  },
  get facets() {
    return facets;
  },
  search: (query) => navigate({ ...Object.fromEntries(FILTERS.map((k) => [k, ''])), page: 1, ...query }),
};

async function main() {
  t = await loadCatalogue(lang);
  document.title = t('library.page_title');
  const session = await currentSession().catch(() => null);
  await mountNav(t, { session, current: 'library' });
  renderScope(session);
  await loadFacets();
  $('search').addEventListener('submit', (event) => {
    event.preventDefault();
    navigate(formQuery());
  });
  // A choice made in a list searches at once; text and dates wait for Enter or 搜索.
  for (const id of ['subject', 'grade', 'teacher', 'school', 'kind']) {
    $(id).addEventListener('change', () => $('search').requestSubmit());
  }
  $('reset').addEventListener('click', () => {
    navigate(Object.fromEntries([...FILTERS.map((k) => [k, '']), ['page', 1]]));
    $('q').focus();
  });
  $('prev').addEventListener('click', () => navigate({ ...queryFromLocation(), page: queryFromLocation().page - 1 }));
  $('next').addEventListener('click', () => navigate({ ...queryFromLocation(), page: queryFromLocation().page + 1 }));
  window.addEventListener('popstate', search);
  await search();
}

main().catch((error) => {
  console.error(error);
  $('summary').textContent = String(error);
  $('summary').dataset.status = 'error';
});
