// The one module that knows how a page is signed in and how it talks to /api/v1.
//
// Pages are signed in with the session cookie `tongbu_session` (HttpOnly, SameSite=Lax),
// set by POST /api/v1/auth/session. Script never sees the cookie; it keeps only the
// session's CSRF token, in memory, and sends it as X-CSRF-Token on every POST, PUT, PATCH
// and DELETE (the server refuses a state change signed by the cookie without it). After a
// reload the token comes back from GET /api/v1/auth/session. No credential is ever put in
// sessionStorage or a URL, so a copied link or an XSS read of storage carries nothing.

export const API_BASE = '/api/v1';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * An API failure: HTTP status and the server's {"error": {code, message, field, reason,
 * params}}: `reason` names the refusing rule (docs/api.md lists them), `params` the values
 * its sentence names. `answer` is the whole decoded body (a refused timetable import lists
 * every bad row beside `error`).
 */
export class ApiError extends Error {
  constructor(status, code, message, field = null, answer = null) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || null;
    this.field = field || null;
    this.answer = answer;
    const error = answer?.error ?? {};
    this.reason = error.reason || null;
    this.params = error.params ?? {};
  }
}

// Params whose values are names of the catalogue, said in the page's language.
const PARAM_KEYS = { state: 'lesson.state.', current: 'lesson.state.', to: 'lesson.state.' };

/**
 * A refusal (an ApiError, or a refused import row: {reason, params}) as the sentence the
 * catalogue has for its reason, `error.<reason>`, filled from its params; null when the
 * catalogue has none. `own` maps reasons to the page's own sentence: a function of
 * (params, refusal) returning the text.
 */
export function reasonText(t, refusal, own = {}) {
  const reason = refusal?.reason;
  // A reason that is only its code's name says no more than the code (the page's own).
  if (!reason || reason === refusal.code) return null;
  const params = { ...(refusal.params ?? {}) };
  for (const [name, prefix] of Object.entries(PARAM_KEYS)) {
    if (typeof params[name] === 'string') params[name] = t(prefix + params[name]);
  }
  if (Object.hasOwn(own, reason)) return own[reason](params, refusal);
  const key = `error.${reason}`;
  const text = t(key, params);
  return text === key ? null : text;
}

// The signed-in session as the server last described it: {user, csrf_token, expires_at},
// null when signed out, undefined until asked.
let session;
let pending = null;

function apiUrl(path, params = {}) {
  const url = new URL(path.startsWith(API_BASE) ? path : API_BASE + path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, String(value));
  }
  return url;
}

async function send(method, path, body, params, csrf, contentType = null) {
  const headers = { Accept: 'application/json' };
  if (csrf && !SAFE_METHODS.has(method)) headers['X-CSRF-Token'] = csrf;
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    // A body with its own type (a CSV file's bytes) goes as it is; anything else as JSON.
    headers['Content-Type'] = contentType ?? 'application/json';
    init.body = contentType ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path, params), init);
  } catch (error) {
    throw new ApiError(0, 'network', String(error?.message ?? error));
  }
  const answer = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = answer?.error ?? {};
    throw new ApiError(response.status, error.code, error.message, error.field, answer);
  }
  return answer;
}

/**
 * Who is signed in: {user, csrf_token, expires_at}, or null. Asked of the server once per
 * page load (concurrent callers share the one request); `refresh` asks again.
 */
export async function currentSession({ refresh = false } = {}) {
  if (session !== undefined && !refresh) return session;
  if (!pending) {
    pending = send('GET', '/auth/session')
      .then((answer) => (session = answer))
      .catch((error) => {
        if (error.status === 401) return (session = null);
        throw error;
      })
      .finally(() => (pending = null));
  }
  return pending;
}

/** The signed-in user, or null. */
export async function currentUser() {
  return (await currentSession())?.user ?? null;
}

/**
 * One API call. `path` is relative to /api/v1 (or includes it); `params` become the query
 * string (empty values skipped); `body` is sent as JSON, or as it is (a Blob, bytes) with
 * `contentType` when given (text/csv for a timetable import). Resolves to the decoded answer,
 * or throws an ApiError with the server's code, message and field. An unsafe method first
 * makes sure the CSRF token is known; a 401 forgets the session (expired or signed out
 * elsewhere), so the next currentSession() asks again.
 */
export async function request(method, path, body = undefined, { params = {}, contentType = null } = {}) {
  const upper = method.toUpperCase();
  let csrf = null;
  if (!SAFE_METHODS.has(upper)) csrf = (await currentSession().catch(() => null))?.csrf_token ?? null;
  try {
    return await send(upper, path, body, params, csrf, contentType);
  } catch (error) {
    if (error.status === 401) session = undefined;
    throw error;
  }
}

export const api = {
  get: (path, params) => request('GET', path, undefined, { params }),
  post: (path, body) => request('POST', path, body),
  put: (path, body) => request('PUT', path, body),
  patch: (path, body) => request('PATCH', path, body),
  delete: (path) => request('DELETE', path),
};

/** Sign in with a username and password; resolves to the new session. */
export async function signIn(username, password) {
  session = undefined;
  session = await send('POST', '/auth/session', { username, password });
  return session;
}

/** Sign out (ends the session on the server and clears the cookie). */
export async function signOut() {
  const known = await currentSession().catch(() => null);
  try {
    if (known) await send('DELETE', '/auth/session', undefined, {}, known.csrf_token);
  } finally {
    session = null;
  }
}

/**
 * Where the login page sends the user back to: a path on this site, never elsewhere.
 * Backslashes and control characters are refused anywhere: browsers drop tabs and
 * newlines from URLs and read `\` as `/`, so `/\t/evil.example` would leave the site.
 */
export function safeNext(value) {
  if (typeof value !== 'string' || !value.startsWith('/') || value.startsWith('//')) return '/';
  if (/[\\\u0000-\u001f\u007f]/.test(value) || /^\/login(?:[/?#]|$)/.test(value)) return '/';
  return value;
}

/** The login page's address for coming back here afterwards. */
export function loginUrl(next = window.location.pathname + window.location.search + window.location.hash) {
  const params = new URLSearchParams({ next: safeNext(next) });
  const lang = new URLSearchParams(window.location.search).get('lang');
  if (lang) params.set('lang', lang);
  return `/login?${params}`;
}

/**
 * The signed-in session, or a trip to the login page (which brings the user back here).
 * Resolves to null only while the browser is leaving.
 */
export async function requireSession() {
  const known = await currentSession();
  if (known) return known;
  window.location.assign(loginUrl());
  return null;
}
