// The login page (/login?next=/teach/7): username and password, signed in with the
// session cookie through session.js, then back to `next` (a path on this site only).
// Someone already signed in goes straight on. Tests read `window.tongbuLogin`.

import { ApiError, loadCatalogue, pageLang } from './api.js';
import { mountNav, withLang } from './nav.js';
import { currentSession, safeNext, signIn } from './session.js';

const lang = pageLang();
const $ = (id) => document.getElementById(id);
const next = safeNext(new URLSearchParams(window.location.search).get('next') ?? '/');

let t = Object.assign((key) => key, { has: () => false });

/** What to tell the person at the keyboard about a refused or failed sign-in. */
function failureText(error) {
  if (error instanceof ApiError) {
    if (error.code === 'account_locked') return t('login.error.locked');
    if (error.status === 401) return t('login.error.wrong');
    if (error.code === 'network') return t('login.error.network');
    if (error.code === 'csrf_failed') return t('login.error.origin');
    if (error.status === 429 || error.status >= 500) return t('login.error.server', { status: error.status });
    return t('login.error.http', { status: error.status, message: error.message });
  }
  return t('login.error.network');
}

function showError(text, field = null) {
  const node = $('login-error');
  node.textContent = text;
  node.hidden = !text;
  for (const id of ['login-username', 'login-password']) {
    const input = $(id);
    if (text && (field === null || input === field)) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  if (field) field.focus();
}

/** `next` keeps the page's language when it did not say one itself. */
function destination() {
  return new URL(next, window.location.origin).searchParams.has('lang') ? next : withLang(next, lang);
}

async function submit(event) {
  event.preventDefault();
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  if (!username) return showError(t('login.error.no_username'), $('login-username'));
  if (!password) return showError(t('login.error.no_password'), $('login-password'));
  const button = $('login-submit');
  button.disabled = true;
  button.textContent = t('login.signing_in');
  showError('');
  try {
    await signIn(username, password);
    window.tongbuLogin.state = 'signed_in';
    window.location.assign(destination());
  } catch (error) {
    window.tongbuLogin.lastError = error instanceof ApiError ? error.code : String(error);
    showError(failureText(error), error?.status === 401 ? $('login-password') : null);
    $('login-password').select();
  } finally {
    button.disabled = false;
    button.textContent = t('login.submit');
  }
}

window.tongbuLogin = { next, state: 'loading', lastError: null };

async function main() {
  t = await loadCatalogue(lang);
  document.title = t('login.page_title');
  let session = null;
  try {
    session = await currentSession();
  } catch {
    session = null; // the server did not answer: the form still lets the user try
  }
  if (session) {
    window.tongbuLogin.state = 'signed_in';
    window.location.replace(destination());
    return;
  }
  await mountNav(t, { session: null, signInLink: false });
  $('status').hidden = true;
  $('login-form').hidden = false;
  $('login-form').addEventListener('submit', submit);
  $('login-username').focus();
  window.tongbuLogin.state = 'form';
}

main().catch((error) => {
  console.error(error);
  $('status').textContent = String(error);
});
