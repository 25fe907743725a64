// The top bar every signed-in page shares: the brand (back to the home page), the links
// the user's role may use, who is signed in, a sign-out button and the language switch.
//
// Usage, after the page's catalogue is loaded:
//
//   import { mountNav } from './nav.js';
//   const t = await loadCatalogue(pageLang());
//   await mountNav(t, { current: 'library' });
//
// It asks session.js who is signed in (unless given `session`), so a page that already
// called requireSession() passes that session and no second request is made.

import { pageLang } from './api.js';
import { currentSession, loginUrl, signOut } from './session.js';

/**
 * The pages a role may open from the bar, in bar order. `current` names one of them;
 * `label` is the catalogue key when it is not `nav.<key>`.
 */
const LINKS = [
  { key: 'home', href: '/', roles: ['admin', 'school_admin', 'teacher', 'reviewer', 'device'] },
  { key: 'admin', href: '/admin', roles: ['admin', 'school_admin'] },
  { key: 'timetable', href: '/admin/timetable', roles: ['admin', 'school_admin'], label: 'timetable.nav.link' },
  { key: 'stats', href: '/admin/stats', roles: ['admin', 'school_admin', 'teacher'] },
  { key: 'library', href: '/library', roles: ['admin', 'school_admin', 'teacher', 'reviewer'] },
];

/** `href` with `?lang=en` kept when the page is in English (the default needs nothing). */
export function withLang(href, lang = pageLang()) {
  if (lang !== 'en') return href;
  const url = new URL(href, window.location.origin);
  url.searchParams.set('lang', 'en');
  return url.pathname + url.search + url.hash;
}

/**
 * This page in the other language: the query (say `?classroom=3`) and a harmless hash
 * (an admin section) are kept; a fragment carrying a credential is not.
 */
export function otherLanguageHref(lang = pageLang(), location = window.location) {
  const params = new URLSearchParams(location.search);
  if (lang === 'en') params.delete('lang');
  else params.set('lang', 'en');
  const query = params.toString();
  const hash = /(?:^|[#&])(?:token|api)=/.test(location.hash) ? '' : location.hash;
  return location.pathname + (query ? `?${query}` : '') + hash;
}

function element(tag, attributes = {}, text = '') {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

/**
 * Draw the bar and return its <nav>.
 *
 * @param {Function} t  the page's catalogue function (loadCatalogue's result)
 * @param {object} [options]
 * @param {object|null} [options.session]  {user, ...} already known; null = signed out;
 *        omitted: asked of the server (a failed request counts as signed out)
 * @param {string} [options.current]  'home' | 'admin' | 'timetable' | 'library': marked aria-current
 * @param {Element} [options.into]  where to draw (default: a <nav> put first in <body>)
 * @param {boolean} [options.langSwitch=true]  false for a page that keeps its own switch
 * @param {boolean} [options.signInLink=true]  false on the login page itself
 * @param {Function} [options.beforeSignOut]  awaited before signing out (leave a lesson)
 */
export async function mountNav(t, options = {}) {
  const { current = '', langSwitch = true, signInLink = true, beforeSignOut = null } = options;
  let { session } = options;
  if (session === undefined) session = await currentSession().catch(() => null);
  const user = session?.user ?? null;
  const lang = pageLang();

  const nav = options.into ?? element('nav');
  nav.classList.add('top-nav');
  nav.setAttribute('aria-label', t('nav.label'));
  nav.replaceChildren();
  const brand = element('a', { class: 'nav-brand', href: withLang('/') }, t('app.title'));
  const links = element('ul', { class: 'nav-links' });
  for (const link of LINKS) {
    if (!user || !link.roles.includes(user.role)) continue;
    const a = element('a', { href: withLang(link.href), 'data-nav': link.key }, t(link.label ?? `nav.${link.key}`));
    if (link.key === current) a.setAttribute('aria-current', 'page');
    const item = element('li');
    item.append(a);
    links.append(item);
  }
  const end = element('div', { class: 'nav-end' });
  if (user) {
    const who = element('span', { id: 'nav-user', class: 'nav-user' });
    who.textContent = t('nav.user', {
      name: user.display_name || user.username,
      role: t(`nav.role.${user.role}`),
    });
    who.title = user.username;
    const out = element('button', { id: 'nav-sign-out', type: 'button' }, t('nav.sign_out'));
    out.addEventListener('click', async () => {
      out.disabled = true;
      try {
        if (beforeSignOut) await beforeSignOut();
        await signOut();
        window.location.assign(withLang('/login', lang));
      } catch (error) {
        out.disabled = false;
        out.textContent = t('nav.sign_out_failed');
        console.warn('tongbu: sign-out failed', error);
      }
    });
    end.append(who, out);
  } else if (signInLink) {
    end.append(element('a', { id: 'nav-sign-in', href: loginUrl() }, t('nav.sign_in')));
  }
  if (langSwitch) {
    const swap = element('a', { id: 'nav-lang', class: 'lang', lang: lang === 'en' ? 'zh-CN' : 'en' });
    swap.textContent = lang === 'en' ? '中文' : 'English';
    // Read at click time: the page may have changed its query or hash since it was drawn.
    const refresh = () => swap.setAttribute('href', otherLanguageHref(lang));
    refresh();
    swap.addEventListener('click', refresh);
    swap.addEventListener('focus', refresh);
    swap.addEventListener('mouseenter', refresh);
    end.append(swap);
  }
  nav.append(brand, links, end);
  if (!options.into) document.body.prepend(nav);
  document.body.classList.add('with-nav');
  return nav;
}
