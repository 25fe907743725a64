// The library search page (/library): a search box, filters, result cards, pages.
//
// State lives in the address bar (?q=&subject=&grade=&kind=&page=&lang=), so a search can
// be bookmarked, shared and reloaded, and Back returns to the previous page of results.
// Tests read `window.tongbuLibrary`.

import {
  apiGet,
  errorText,
  formatClock,
  formatDate,
  imageSrc,
  loadCatalogue,
  pageLang,
  schoolsLine,
} from './api.js';

export const PAGE_SIZE = 12;
// Suggestions only: the filters are free text matched exactly, as the API does.
const SUBJECTS = ['语文', '数学', '英语', '科学', '物理', '化学', '生物', '历史', '地理', '道德与法治', '音乐', '美术', '体育', '信息技术'];
const GRADES = ['一年级', '二年级', '三年级', '四年级', '五年级', '六年级', '初一', '初二', '初三', '高一', '高二', '高三'];
const FILTERS = ['q', 'subject', 'grade', 'kind'];

const lang = pageLang();
const $ = (id) => document.getElementById(id);
let t = (key) => key;
let last = { status: 'loading', total: 0, items: [], error: null };

/** The search the address bar describes. */
export function queryFromLocation(location = window.location) {
  const params = new URLSearchParams(location.search);
  const query = {};
  for (const key of FILTERS) query[key] = (params.get(key) ?? '').trim();
  query.page = Math.max(1, Number.parseInt(params.get('page') ?? '1', 10) || 1);
  return query;
}

/** GET /library parameters for a search (page numbers are 1-based). */
export function apiParams(query, pageSize = PAGE_SIZE) {
  return {
    q: query.q,
    subject: query.subject,
    grade: query.grade,
    kind: query.kind,
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
  for (const key of FILTERS) $(key).value = query[key];
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

async function search() {
  const query = queryFromLocation();
  fillForm(query);
  const summary = $('summary');
  summary.textContent = t('library.searching');
  summary.dataset.status = 'loading';
  last = { ...last, status: 'loading' };
  try {
    const page = await apiGet('/library', apiParams(query));
    last = { status: 'ready', total: page.total, items: page.items, error: null, query };
    $('results').replaceChildren(...page.items.map((entry) => renderCard(entry, t)));
    const pages = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
    summary.textContent = page.total
      ? t('library.summary', { total: page.total })
      : t(query.q || query.subject || query.grade || query.kind ? 'library.empty_search' : 'library.empty');
    summary.dataset.status = 'ready';
    $('pager').hidden = pages <= 1;
    $('page-info').textContent = t('library.page.info', { page: query.page, pages });
    $('prev').disabled = query.page <= 1;
    $('next').disabled = query.page >= pages;
  } catch (error) {
    last = { status: 'error', total: 0, items: [], error: String(error), query };
    $('results').replaceChildren();
    $('pager').hidden = true;
    summary.textContent = errorText(t, error);
    summary.dataset.status = 'error';
  }
}

function options(id, values) {
  $(id).replaceChildren(...values.map((value) => Object.assign(document.createElement('option'), { value })));
}

window.tongbuLibrary = {
  lang,
  get state() {
    return last;
  },
  search: (query) => navigate({ q: '', subject: '', grade: '', kind: '', page: 1, ...query }),
};

async function main() {
  t = await loadCatalogue(lang);
  document.title = t('library.page_title');
  options('subjects', SUBJECTS);
  options('grades', GRADES);
  $('search').addEventListener('submit', (event) => {
    event.preventDefault();
    const query = { page: 1 };
    for (const key of FILTERS) query[key] = $(key).value.trim();
    navigate(query);
  });
  $('kind').addEventListener('change', () => $('search').requestSubmit());
  $('prev').addEventListener('click', () => navigate({ ...queryFromLocation(), page: queryFromLocation().page - 1 }));
  $('next').addEventListener('click', () => navigate({ ...queryFromLocation(), page: queryFromLocation().page + 1 }));
  window.addEventListener('popstate', search);
  await search();
}

main().catch((error) => {
  console.error(error);
  $('summary').textContent = String(error);
});
