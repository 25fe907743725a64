// Shared by the library pages: the REST API (/api/v1) with an optional bearer token, the
// message catalogues, and small formatters. No framework, no build step; ES modules only.
//
// The API takes bearer tokens only (no cookies, so no CSRF surface). A token a user pastes
// is kept in sessionStorage: it lasts for the tab, not beyond it, and is never put in a URL.

export const API_BASE = '/api/v1';
const TOKEN_KEY = 'tongbu.api_token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

// ------------------------------------------------------------------ token

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null; // storage disabled: anonymous
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: nothing to keep */
  }
}

function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// ------------------------------------------------------------------ requests

/** GET an API path (with or without the /api/v1 prefix); `params` skips empty values. */
export async function apiGet(path, params = {}) {
  const url = new URL(path.startsWith(API_BASE) ? path : API_BASE + path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, String(value));
  }
  const response = await fetch(url, { headers: { Accept: 'application/json', ...authHeaders() } });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = body?.error ?? {};
    throw new ApiError(response.status, error.code, error.message);
  }
  return body;
}

/** A library file's bytes parsed as JSON (chapters, thumbnail index). */
export async function fileJson(url) {
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) throw new ApiError(response.status, null, `${url}: HTTP ${response.status}`);
  return response.json();
}

/**
 * Something an <img> can show for a library file. Anonymous: the URL itself (the browser
 * caches and lazy-loads it). With a token: the bytes fetched with it, as a blob URL,
 * because an <img> cannot send an Authorization header.
 */
export async function imageSrc(url) {
  if (!getToken()) return url;
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) throw new ApiError(response.status, null, `${url}: HTTP ${response.status}`);
  return URL.createObjectURL(await response.blob());
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

/** The lesson's schools as one line: main school first, then the receiving schools. */
export function schoolsLine(entry, t) {
  const receiving = (entry.receiving_schools ?? []).map((s) => s.name).join('、');
  if (!receiving) return entry.main_school || '';
  return t('library.schools', { main: entry.main_school || '—', receiving });
}
