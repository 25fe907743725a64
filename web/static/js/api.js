// Shared by the pages: the REST API (/api/v1, signed in by session.js), the message
// catalogues, and small formatters. No framework, no build step; ES modules only.

import { ApiError, request } from './session.js';

export { API_BASE, ApiError, api, currentSession, currentUser, request } from './session.js';

// ------------------------------------------------------------------ requests

/** GET an API path (with or without the /api/v1 prefix); `params` skips empty values. */
export function apiGet(path, params = {}) {
  return request('GET', path, undefined, { params });
}

/** A library file's bytes parsed as JSON (chapters, thumbnail index); the cookie goes along. */
export async function fileJson(url) {
  const response = await fetch(url, { credentials: 'same-origin' });
  if (!response.ok) throw new ApiError(response.status, null, `${url}: HTTP ${response.status}`);
  return response.json();
}

/**
 * Something an <img> can show for a library file: the URL itself. The session cookie is
 * same-origin, so the browser sends it and may cache and lazy-load the picture.
 */
export async function imageSrc(url) {
  return url;
}

// ------------------------------------------------------------------ i18n

export function pageLang() {
  return new URLSearchParams(window.location.search).get('lang') === 'en' ? 'en' : 'zh-CN';
}

/**
 * The catalogue for `lang`, applied to every [data-i18n] (text) and [data-i18n-placeholder]
 * node; returns t(key, vars). The language link keeps the rest of the query string.
 */
export async function loadCatalogue(lang) {
  const response = await fetch(`/static/i18n/${lang}.json`);
  const messages = await response.json();
  const t = (key, vars = {}) =>
    (messages[key] ?? key).replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ''));
  t.has = (key) => key in messages;
  document.documentElement.lang = lang;
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll('[data-i18n-placeholder]')) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  for (const node of document.querySelectorAll('[data-i18n-title]')) node.title = t(node.dataset.i18nTitle);
  const swap = document.getElementById('lang-switch');
  if (swap) {
    const params = new URLSearchParams(window.location.search);
    if (lang === 'en') params.delete('lang');
    else params.set('lang', 'en');
    const query = params.toString();
    swap.textContent = lang === 'en' ? '中文' : 'English';
    swap.lang = lang === 'en' ? 'zh-CN' : 'en'; // the link speaks the language it leads to
    swap.href = window.location.pathname + (query ? `?${query}` : '');
  }
  return t;
}

/** An API error as a sentence for the status line. */
export function errorText(t, error) {
  if (error instanceof ApiError) {
    if (error.status === 401) return t('library.error.unauthorized');
    if (error.status === 403) return t('library.error.forbidden');
    if (error.status === 404) return t('library.error.not_found');
    return t('library.error.http', { status: error.status, message: error.message });
  }
  return t('library.error.network', { message: String(error?.message ?? error) });
}

// ------------------------------------------------------------------ formatting

/** 75.4 → "1:15"; 3725 → "1:02:05". */
export function formatClock(seconds) {
  const total = Math.max(0, Math.floor(Number(seconds) || 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

export function formatDate(iso, lang) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleString(lang, {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
  });
}

/**
 * A teacher as a lesson header names them: 李芳 → "李芳老师" ("Teacher 李芳" in English).
 * Timetables often give the name with its title already (王老师, 张教师); that is shown as
 * given, never "王老师 老师". Every page that titles a teacher goes through here.
 */
export function teacherTitle(t, name) {
  const given = String(name ?? '').trim();
  if (!given) return '';
  return /(?:老师|教师)$/.test(given) ? given : t('teacher.titled', { name: given });
}

/** The lesson's schools as one line: main school first, then the receiving schools. */
export function schoolsLine(entry, t) {
  const receiving = (entry.receiving_schools ?? []).map((s) => s.name).join('、');
  if (!receiving) return entry.main_school || '';
  return t('library.schools', { main: entry.main_school || '—', receiving });
}
