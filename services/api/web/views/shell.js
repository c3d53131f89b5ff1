// The frame of every signed-in screen: top bar (search, connection, keys,
// user menu, sign out), the sidebar (perspectives with live counts, mentions, notifications,
// admin pages), the polite live region and the keyboard-shortcuts dialog.

import { html, useState, useEffect, useRef, Fragment } from '../html.js';
import { useStore } from '../store.js';
import { navigate, useRoute } from '../router.js';
import { useShortcut, getSettings, saveSettings, onSettings, KEY_HELP } from '../keys.js';
import { initials } from '../format.js';

const ADMIN_LINKS = [
  ['/admin/users', 'Users'],
  ['/admin/tokens', 'API tokens'],
  ['/admin/webhooks', 'Webhooks'],
  ['/admin/interventions', 'Interventions'],
  ['/admin/realtime', 'Realtime'],
  ['/admin/system', 'System'],
];

/** Whether `path` is a ticket list (home, a perspective), where search stays. */
export const isListPath = (path) => path === '/' || path.startsWith('/perspectives/');

export function Shell({ children, onSignOut }) {
  const store = useStore();
  const route = useRoute();
  const [helpOpen, setHelpOpen] = useState(false);
  const searchRef = useRef(null);

  useShortcut('?', () => setHelpOpen(true));
  useShortcut('/', () => searchRef.current?.focus());
  useShortcut('g l', () => navigate(store.lastListUrl || '/'));
  useShortcut('g m', () => navigate('/mentions'));
  useShortcut('g n', () => navigate('/notifications'));

  return html`
    <a class="skip-link" href="#main-content" data-external>Skip to content</a>
    <header class="topbar">
      <a class="brand" href="/"><span class="brand-mark" aria-hidden="true">T</span><span>Tickiti</span></a>
      <${Search} route=${route} inputRef=${searchRef} />
      <div class="topbar-tools">
        <${Connection} value=${store.connection} />
        <button type="button" class="btn icon" aria-label="Keyboard shortcuts" title="Keyboard shortcuts (?)"
          onClick=${() => setHelpOpen(true)}>?</button>
        <${UserMenu} user=${store.user} />
        <button type="button" class="btn quiet" onClick=${onSignOut}>Sign out</button>
      </div>
    </header>
    <div class="layout">
      <aside class="sidebar">
        <${Sidebar} store=${store} path=${route.path} />
      </aside>
      <main id="main-content" tabindex="-1">
        ${children}
      </main>
    </div>
    <div class="sr-only" aria-live="polite" aria-atomic="true">${store.announcement}</div>
    <${ShortcutsDialog} open=${helpOpen} onClose=${() => setHelpOpen(false)} />`;
}

function Connection({ value }) {
  const connected = value === 'connected';
  return html`<span class=${`connection ${connected ? 'is-on' : 'is-off'}`}
      title=${connected ? 'Live updates are on' : 'Live updates are off; the page refreshes itself every few seconds'}>
    <span class="dot" aria-hidden="true"></span>
    <span role="status" aria-label="Connection">${connected ? 'Connected' : 'Reconnecting\u2026'}</span>
  </span>`;
}

function Search({ route, inputRef }) {
  const onList = isListPath(route.path);
  const urlQ = onList ? route.query.get('q') || '' : '';
  const [value, setValue] = useState(urlQ);
  // Follow the URL (back/forward, a perspective click) unless the user is typing.
  useEffect(() => {
    if (document.activeElement !== inputRef.current) setValue(urlQ);
  }, [urlQ]); // eslint-disable-line react-hooks/exhaustive-deps

  function submit(event) {
    event.preventDefault();
    const base = onList ? route.path : '/';
    const params = onList ? new URLSearchParams(route.query) : new URLSearchParams();
    const q = value.trim();
    if (q) params.set('q', q);
    else params.delete('q');
    const qs = params.toString();
    navigate(base + (qs ? `?${qs}` : ''), { replace: onList, focus: false });
  }

  return html`<form class="search" role="search" onSubmit=${submit}>
    <input type="search" ref=${inputRef} aria-label="Search tickets" placeholder="Search tickets"
      value=${value} onInput=${(e) => setValue(e.currentTarget.value)}
      onKeyDown=${(e) => { if (e.key === 'Escape' && value) { e.preventDefault(); setValue(''); } }} />
  </form>`;
}

function UserMenu({ user }) {
  const [open, setOpen] = useState(false);
  const [settings, setSettings] = useState(getSettings());
  const root = useRef(null);
  const button = useRef(null);
  useEffect(() => onSettings(setSettings), []);
  useEffect(() => {
    if (!open) return undefined;
    const outside = (e) => { if (root.current && !root.current.contains(e.target)) setOpen(false); };
    const escape = (e) => {
      if (e.key === 'Escape') { setOpen(false); button.current?.focus(); }
    };
    document.addEventListener('pointerdown', outside);
    document.addEventListener('keydown', escape);
    return () => {
      document.removeEventListener('pointerdown', outside);
      document.removeEventListener('keydown', escape);
    };
  }, [open]);
  if (!user) return null;
  return html`<div class="usermenu" ref=${root}>
    <button type="button" class="btn quiet user-button" ref=${button} aria-expanded=${open ? 'true' : 'false'}
      aria-controls="user-panel" onClick=${() => setOpen(!open)}>
      <span class="avatar" aria-hidden="true">${initials(user.name)}</span><span class="user-name">${user.name}</span>
    </button>
    <div id="user-panel" class="popover" hidden=${!open}>
      <p class="popover-title">${user.name}</p>
      <p class="muted small">${user.email} · ${user.role}</p>
      <div class="popover-section">
        <div class="check">
          <input id="setting-single-keys" type="checkbox" checked=${settings.singleKeys}
            onChange=${(e) => saveSettings({ singleKeys: e.currentTarget.checked })}
            aria-describedby="setting-single-keys-hint" />
          <label for="setting-single-keys">Single-key shortcuts</label>
        </div>
        <p class="hint" id="setting-single-keys-hint">j, k, r, / and ? work when you are not typing in a field.</p>
      </div>
      <p class="popover-section"><a href="/api/docs" data-external>API reference</a></p>
    </div>
  </div>`;
}

function Sidebar({ store, path }) {
  const perspectives = store.perspectives;
  const link = (href, text, count, current) => html`<li>
    <a href=${href} class="navlink" aria-current=${current ? 'page' : undefined}>
      <span class="navlink-text">${text}</span>${count !== undefined && count !== null ? html`${' '}<span class="count">${count}</span>` : null}
    </a></li>`;
  return html`
    <nav aria-label="Perspectives" class="navgroup">
      <h2 class="navgroup-title">Perspectives</h2>
      <ul>
        ${perspectives.map((p) => link(`/perspectives/${p.id}`, p.name, store.counts[p.id], path === `/perspectives/${p.id}`))}
      </ul>
    </nav>
    <nav aria-label="Workspace" class="navgroup">
      <h2 class="navgroup-title">Workspace</h2>
      <ul>
        ${link('/', 'All tickets', undefined, path === '/')}
        ${link('/mentions', 'Mentions', store.mentionsUnread ?? undefined, path === '/mentions')}
        ${link('/notifications', 'Notifications', store.notificationsUnread ?? undefined, path === '/notifications')}
      </ul>
    </nav>
    ${store.user?.role === 'admin' && html`<nav aria-label="Admin" class="navgroup">
      <h2 class="navgroup-title">Admin</h2>
      <ul>
        ${ADMIN_LINKS.map(([href, text]) => link(href, text, undefined, path === href || path.startsWith(`${href}/`)))}
      </ul>
    </nav>`}`;
}

function ShortcutsDialog({ open, onClose }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  return html`<dialog ref=${ref} class="dialog" aria-labelledby="shortcuts-title" onClose=${onClose}>
    <div class="dialog-head">
      <h2 id="shortcuts-title">Keyboard shortcuts</h2>
      <button type="button" class="btn quiet" onClick=${onClose}>Close</button>
    </div>
    <dl class="keys">
      ${KEY_HELP.map(([key, what]) => html`<${Fragment} key=${key}><dt><kbd>${key}</kbd></dt><dd>${what}</dd><//>`)}
    </dl>
    <p class="hint">Single keys are ignored while you type in a field, and can be turned off in the menu under your name.</p>
  </dialog>`;
}
