// Client-side routing with history.pushState. The api answers index.html for
// every non-API path, so any URL here can be reloaded or shared.

import { useEffect, useReducer } from './html.js';

const listeners = new Set();

function current() {
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

function notify(focus) {
  for (const fn of [...listeners]) fn();
  if (focus) focusMain();
}

/** Goes to `url` (same origin). `replace` rewrites the entry (filters, search). */
export function navigate(url, { replace = false, focus = true } = {}) {
  const target = new URL(url, location.origin);
  if (target.origin !== location.origin) {
    location.assign(url);
    return;
  }
  const same = target.pathname === location.pathname && target.search === location.search;
  if (replace || same) history.replaceState(null, '', target.pathname + target.search + target.hash);
  else history.pushState(null, '', target.pathname + target.search + target.hash);
  if (!replace && !same) window.scrollTo(0, 0);
  notify(focus && !replace);
}

// After a page change the new page's heading takes focus, so keyboard and
// screen-reader users start at the top of what changed. A page still loading
// marks its placeholder heading with data-loading; the real one is awaited
// (up to 5 s), unless the user has moved focus meanwhile.
export function focusMain() {
  const from = document.activeElement;
  const started = Date.now();
  const attempt = () => {
    const moved = document.activeElement && document.activeElement !== from && document.activeElement !== document.body;
    if (moved) return;
    const target = document.querySelector('main h1:not([data-loading])');
    if (!target) {
      if (Date.now() - started < 5000) setTimeout(attempt, 50);
      return;
    }
    if (!target.hasAttribute('tabindex')) target.setAttribute('tabindex', '-1');
    target.focus({ preventScroll: true });
  };
  requestAnimationFrame(() => requestAnimationFrame(attempt));
}

window.addEventListener('popstate', () => notify(true));

// Same-origin links move within the app instead of reloading it.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest?.('a[href]');
  if (!link || link.target || link.hasAttribute('download') || link.dataset.external !== undefined) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});

/** The current location; re-renders the caller on every navigation. */
export function useRoute() {
  const [, force] = useReducer((n) => n + 1, 0);
  useEffect(() => {
    listeners.add(force);
    return () => listeners.delete(force);
  }, []);
  return current();
}

/** Matches `/tickets/:id` style patterns; returns the params or null. */
export function match(pattern, path) {
  const p = pattern.split('/');
  const s = path.replace(/\/+$/, '').split('/');
  if (path === '/' && pattern === '/') return {};
  if (p.length !== s.length) return null;
  const params = {};
  for (let i = 0; i < p.length; i += 1) {
    if (p[i].startsWith(':')) {
      if (!s[i]) return null;
      params[p[i].slice(1)] = decodeURIComponent(s[i]);
    } else if (p[i] !== s[i]) {
      return null;
    }
  }
  return params;
}
