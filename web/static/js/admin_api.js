// How the admin pages talk to the REST API (/api/v1), and the only file that knows how a
// request is authenticated.
//
// Today: an API bearer token, kept in sessionStorage (it lasts for the tab, not beyond it).
// It comes from the sign-in form (username + password → POST /auth/login, or a pasted
// token) or from the URL fragment `#api=TOKEN`, which a browser never sends to a server;
// once read it is removed from the address bar.
//
// Later: a session cookie plus an X-CSRF-Token header on unsafe methods. Switching means
// changing `credentials()` and `signIn()` below; admin.js calls only the exports here.

export const API_BASE = '/api/v1';
const TOKEN_KEY = 'tongbu.api_token'; // shared with the library pages: one sign-in per tab

/** An API failure: HTTP status and the server's {"error": {code, message, field}}. */
export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || null;
    this.field = field || null;
  }
}

// ------------------------------------------------------------------ credentials

function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return memoryToken; // storage disabled: this page load only
  }
}

let memoryToken = null;

function keepToken(token) {
  memoryToken = token || null;
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: memoryToken serves */
  }
}

/**
 * Take `api=TOKEN` out of the URL fragment, if there; the rest of the fragment (a
 * section name such as `lessons`) stays. Call once, before anything reads location.hash.
 */
export function takeTokenFromUrl() {
  const hash = window.location.hash.slice(1);
  if (!hash.includes('api=')) return false;
  const parts = hash.split(/[&]/);
  let token = null;
  const rest = [];
  for (const part of parts) {
    if (part.startsWith('api=')) token = decodeURIComponent(part.slice(4)).trim();
    else if (part) rest.push(part);
  }
  if (token) keepToken(token);
  const fragment = rest.length ? `#${rest.join('&')}` : '';
  history.replaceState(null, '', window.location.pathname + window.location.search + fragment);
  return Boolean(token);
}

export function signedIn() {
  return Boolean(readToken());
}

/** Sign in with a username and password, or with a pasted API token. */
export async function signIn({ username, password, token } = {}) {
  if (token) {
    keepToken(token.trim());
  } else {
    const answer = await request('POST', '/auth/login', { username, password }, { anonymous: true });
    keepToken(answer.token);
  }
  return request('GET', '/me'); // proves the credentials work
}

export function signOut() {
  keepToken(null);
}

/** What a request needs to be recognised. The one place to change for session cookies. */
function credentials(method, anonymous) {
  const headers = {};
  const token = anonymous ? null : readToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  // Cookies later: return { headers: {'X-CSRF-Token': csrf} (unsafe methods), credentials: 'same-origin' }.
  void method;
  return { headers, credentials: 'omit' };
}

// ------------------------------------------------------------------ requests

/**
 * One API call. `path` is relative to /api/v1; `params` become the query string (empty
 * values skipped); `body` is sent as JSON. Resolves to the decoded answer, or throws an
 * ApiError carrying the server's code, message and field.
 */
export async function request(method, path, body = undefined, { params = {}, anonymous = false } = {}) {
  const url = new URL(API_BASE + path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, String(value));
  }
  const auth = credentials(method, anonymous);
  const headers = { Accept: 'application/json', ...auth.headers };
  const init = { method, headers, credentials: auth.credentials };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(0, 'network', String(error?.message ?? error));
  }
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const error = answer?.error ?? {};
    if (response.status === 401 && !anonymous) keepToken(null); // expired or revoked
    throw new ApiError(response.status, error.code, error.message, error.field);
  }
  return answer;
}

export const api = {
  get: (path, params) => request('GET', path, undefined, { params }),
  post: (path, body) => request('POST', path, body),
};
