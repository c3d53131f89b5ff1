// Tickiti staff app: boot (is there a session?), sign-in / sign-out, the
// routes, and the app-wide data every screen shows (perspectives and counts,
// unacknowledged mentions, users, queues). Without realtime it polls.

import { html, render, useState, useEffect } from './html.js';
import * as api from './api.js';
import * as live from './live.js';
import { state, update, on, emit, reportBug } from './store.js';
import { useRoute, match, focusMain } from './router.js';
import { Shell } from './views/shell.js';
import { SignIn } from './views/signin.js';
import { TicketList } from './views/tickets.js';
import { TicketView } from './views/ticket.js';
import { Mentions } from './views/mentions.js';
import { Notifications } from './views/notifications.js';
import { Alert } from './views/components.js';
import { AdminUsers } from './views/admin/users.js';
import { AdminTokens } from './views/admin/tokens.js';
import { AdminWebhooks, AdminWebhook } from './views/admin/webhooks.js';
import { AdminInterventions, AdminIntervention } from './views/admin/interventions.js';
import { AdminRealtime } from './views/admin/realtime.js';
import { AdminSystem } from './views/admin/system.js';

// Set on sign-in, cleared on sign-out: a fresh browser goes straight to the
// sign-in form instead of asking /me and getting a 401.
const SIGNED_IN_KEY = 'tickiti.signedIn';
const POLL_EVERY = 5000;
const SAFETY_EVERY = 60000;

const remember = (on_) => {
  try {
    if (on_) localStorage.setItem(SIGNED_IN_KEY, '1');
    else localStorage.removeItem(SIGNED_IN_KEY);
  } catch { /* storage disabled: /me is asked every time */ }
};
const remembered = () => {
  try { return localStorage.getItem(SIGNED_IN_KEY) === '1'; } catch { return true; }
};

// --- App-wide data ---------------------------------------------------------------
// Background loads keep what they had on failure: the screens show their own errors.

async function loadDirectory() {
  try {
    const [users, queues] = await Promise.all([api.getAll('/users'), api.getAll('/queues')]);
    update({ users, queues });
  } catch { /* shown as "Unknown user" until the next try */ }
}

async function loadPerspectives() {
  try {
    update({ perspectives: await api.getAll('/perspectives') });
  } catch { /* the sidebar keeps the last list */ }
}

async function loadCounts() {
  try {
    const answer = await api.get('/perspectives/counts');
    const counts = {};
    for (const c of answer?.data || []) counts[c.perspective_id] = c.count;
    update({ counts });
  } catch { /* the last counts stay */ }
}

/** Unacknowledged mentions come first: count until the first acknowledged one. */
async function loadMentionCount() {
  try {
    let count = 0;
    let cursor = null;
    for (let page = 0; page < 5; page += 1) {
      const answer = await api.get('/mentions', { query: { limit: 200, cursor } });
      const rows = answer?.data || [];
      const open = rows.filter((m) => !m.acknowledged_at).length;
      count += open;
      cursor = answer?.next_cursor;
      if (open < rows.length || !cursor) break;
    }
    update({ mentionsUnread: count });
  } catch { /* the last count stays */ }
}

async function loadNotificationCount() {
  try {
    const answer = await api.get('/notifications/unread-count');
    update({ notificationsUnread: answer.unread });
  } catch { /* the last count stays */ }
}

function loadEverything() {
  loadDirectory();
  loadPerspectives();
  loadCounts();
  loadMentionCount();
  loadNotificationCount();
}

// Live frames that change app-wide data.
on('live', ({ event, data }) => {
  if (!state.user) return;
  if (event === 'connected') {
    loadCounts();
    loadMentionCount();
    loadNotificationCount();
  } else if (event.startsWith('mention.')) {
    loadMentionCount();
  } else if (event === 'notification.created') {
    // Frames of notifications go to their person only; said politely.
    update({ notificationsUnread: (state.notificationsUnread ?? 0) + 1 });
    if (data?.title) announce(`New notification: ${data.title}`);
  } else if (event === 'notification.read') {
    loadNotificationCount();
  } else if (event === 'system.worker_health' && data?.status === 'down') {
    announce(`${data.process_id} stopped reporting in`);
  } else if (event === 'system.endpoint_failed') {
    announce(`Webhook endpoint ${data?.url || ''} failed`);
  }
});
on('refresh', ({ reason } = {}) => {
  if (!state.user) return;
  loadCounts();
  loadMentionCount();
  loadNotificationCount();
  if (reason === 'welcome') {
    loadPerspectives();
    loadDirectory();
  }
});

// Without the websocket, everything on screen refreshes itself over REST.
let sinceSafety = 0;
setInterval(() => {
  if (!state.user) return;
  sinceSafety += POLL_EVERY;
  if (state.connection !== 'connected') {
    // A hidden tab polls six times less often.
    if (document.hidden && sinceSafety % (POLL_EVERY * 6) !== 0) return;
    emit('refresh', { reason: 'poll' });
    if (sinceSafety >= SAFETY_EVERY) {
      sinceSafety = 0;
      loadPerspectives();
      loadDirectory();
    }
  } else if (sinceSafety >= SAFETY_EVERY) {
    // Even with realtime: a cheap re-tally in case a frame was missed.
    sinceSafety = 0;
    loadCounts();
    loadMentionCount();
    loadNotificationCount();
  }
}, POLL_EVERY);

// --- Session -----------------------------------------------------------------------

let setPhase = () => {};

function begin(user) {
  const { csrf_token: _csrf, ...rest } = user; // the token lives in api.js only
  remember(true);
  update({ user: rest, counts: {}, locks: {}, mentionsUnread: null, notificationsUnread: null });
  setPhase({ name: 'in' });
  loadEverything();
  live.start();
}

function end(notice, email) {
  live.stop();
  remember(false);
  api.setCsrf(null);
  update({ user: null, perspectives: [], counts: {}, users: [], queues: [], mentionsUnread: null, notificationsUnread: null, locks: {} });
  setPhase({ name: 'out', notice, email });
}

api.onUnauthorized(() => {
  if (state.user) end('Your session ended. Sign in again to go on.', state.user.email);
});

async function boot() {
  if (!remembered()) {
    setPhase({ name: 'out' });
    return;
  }
  try {
    const me = await api.get('/me', { quiet401: true });
    // /me repeats the session's CSRF token (where the api supports it), so a
    // new tab or a cleared sessionStorage need not sign in again.
    if (me.csrf_token) api.setCsrf(me.csrf_token);
    if (!api.getCsrf()) {
      end('Sign in again to continue in this tab.', me.email);
      return;
    }
    begin(me);
  } catch (error) {
    if (error.status === 401) end();
    else setPhase({ name: 'error', error });
  }
}

async function signOut() {
  const email = state.user?.email;
  try {
    await api.post('/auth/logout', undefined, { quiet401: true });
  } catch { /* signed out here anyway; the session expires on its own */ }
  end('You are signed out.', email);
  history.replaceState(null, '', '/');
}

// --- Screens -----------------------------------------------------------------------

function Routes({ route }) {
  const { path } = route;
  const admin = state.user?.role === 'admin';
  let m;
  if (path === '/' || path === '') return html`<${TicketList} key="all" route=${route} />`;
  if ((m = match('/perspectives/:id', path))) return html`<${TicketList} key=${path} route=${route} perspectiveId=${m.id} />`;
  if ((m = match('/tickets/:id', path))) return html`<${TicketView} key=${m.id} id=${m.id} />`;
  if (path === '/mentions') return html`<${Mentions} onCountChanged=${loadMentionCount} />`;
  if (path === '/notifications') return html`<${Notifications} onCountChanged=${loadNotificationCount} />`;
  if (path.startsWith('/admin/') && !admin) {
    return html`<div class="page"><h1>Admins only</h1><p>This page is for admins of the organization. <a href="/">Back to the tickets</a>.</p></div>`;
  }
  if (path === '/admin/users') return html`<${AdminUsers} />`;
  if (path === '/admin/tokens') return html`<${AdminTokens} />`;
  if (path === '/admin/webhooks') return html`<${AdminWebhooks} />`;
  if ((m = match('/admin/webhooks/:id', path))) return html`<${AdminWebhook} key=${m.id} id=${m.id} />`;
  if (path === '/admin/interventions') return html`<${AdminInterventions} />`;
  if ((m = match('/admin/interventions/:name', path))) return html`<${AdminIntervention} key=${m.name} name=${m.name} />`;
  if (path === '/admin/realtime') return html`<${AdminRealtime} />`;
  if (path === '/admin/system') return html`<${AdminSystem} />`;
  return html`<div class="page"><h1>Page not found</h1><p>There is nothing at this address. <a href="/">Go to the tickets</a>.</p></div>`;
}

function App() {
  const [phase, set] = useState({ name: 'boot' });
  const route = useRoute();
  setPhase = set;
  useEffect(() => { boot(); }, []);
  useEffect(() => { if (phase.name === 'out') document.title = 'Sign in · Tickiti'; }, [phase.name]);

  switch (phase.name) {
    case 'boot':
      return html`<main class="boot" id="main"><p>Loading Tickiti…</p></main>`;
    case 'error':
      return html`<main class="signin" id="main"><div class="signin-card">
        <h1>Tickiti cannot start</h1>
        <${Alert} error=${phase.error} />
        <button type="button" class="btn primary" onClick=${() => { set({ name: 'boot' }); boot(); }}>Try again</button>
      </div></main>`;
    case 'out':
      return html`<${SignIn} notice=${phase.notice} initialEmail=${phase.email || ''}
        onSignedIn=${(user) => { begin(user); focusMain(); }} />`;
    default:
      return html`<${Shell} onSignOut=${signOut}><${Routes} route=${route} /><//>`;
  }
}

// Anything that slips past the views' own handling is kept off the console
// as an uncaught error, but still visible to developers.
window.addEventListener('unhandledrejection', (event) => {
  event.preventDefault();
  reportBug(event.reason);
});

render(html`<${App} />`, document.getElementById('app'));
