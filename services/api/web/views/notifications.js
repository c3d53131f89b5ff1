// Notifications (CONTRACT §8): what the user was told of, newest first, each
// linking to its ticket with a Mark as read button; Mark all as read; and
// the preferences: per kind, in the app and by e-mail.

import { html, useState, useEffect } from '../html.js';
import * as api from '../api.js';
import { state, useBus, announce } from '../store.js';
import { Alert, Time, useLoad } from './components.js';

const KINDS = [
  ['ticket.assigned', 'A ticket is assigned to me'],
  ['message.created', 'A reply or a colleague\'s message on my ticket'],
  ['mention.created', 'Someone mentions me'],
  ['ticket.created', 'A new ticket in a queue I manage'],
  ['intervention.created', 'An intervention in a queue I manage'],
  ['escalation.warning', 'A service level is due soon'],
  ['escalation.breach', 'A service level is breached'],
];

export function Notifications({ onCountChanged }) {
  const [unreadOnly, setUnreadOnly] = useState(false);
  const list = useLoad(async () => {
    const page = await api.get('/notifications', { query: { limit: 50, unread: unreadOnly ? 'true' : undefined } });
    return { rows: page.data || [], next: page.next_cursor };
  }, [unreadOnly]);
  const [error, setError] = useState(null);
  const [loadingMore, setLoadingMore] = useState(false);

  useEffect(() => { document.title = 'Notifications · Tickiti'; }, []);
  useBus('refresh', () => list.reload());
  useBus('live', ({ event }) => { if (event.startsWith('notification.')) list.reload(); });

  async function read(n) {
    setError(null);
    try {
      const saved = await api.post(`/notifications/${api.seg(n.id)}/read`);
      list.setData((d) => ({ ...d, rows: d.rows.map((r) => (r.id === saved.id ? saved : r)) }));
      onCountChanged();
    } catch (failure) { setError(failure); }
  }

  async function readAll() {
    setError(null);
    try {
      const answer = await api.post('/notifications/read-all');
      list.reload();
      onCountChanged();
      announce(answer.read === 1 ? '1 notification marked as read' : `${answer.read} notifications marked as read`);
    } catch (failure) { setError(failure); }
  }

  async function more() {
    setLoadingMore(true);
    try {
      const page = await api.get('/notifications', { query: { limit: 50, cursor: list.data.next, unread: unreadOnly ? 'true' : undefined } });
      list.setData((d) => ({ rows: [...d.rows, ...(page.data || [])], next: page.next_cursor }));
    } catch (failure) { setError(failure); }
    setLoadingMore(false);
  }

  const data = list.data;
  const unread = data ? data.rows.filter((n) => !n.read_at).length : 0;
  return html`<div class="page">
    <div class="page-head">
      <h1>Notifications</h1>
      <div class="toolbar page-actions">
        <label class="inline-check"><input type="checkbox" checked=${unreadOnly} onChange=${(e) => setUnreadOnly(e.currentTarget.checked)} /> Unread only</label>
        <button type="button" class="btn" disabled=${!unread && !(state.notificationsUnread > 0)} onClick=${readAll}>Mark all as read</button>
      </div>
    </div>
    <${Alert} error=${list.error || error} />
    ${!data && !list.error && html`<p class="muted">Loading notifications…</p>`}
    ${data && !data.rows.length && html`<p class="muted">${unreadOnly ? 'Nothing unread.' : 'No notifications yet. You are told here when a ticket is assigned to you, when someone mentions you, and more (see below).'}</p>`}
    ${data && data.rows.length > 0 && html`<ul class="mention-list" aria-label="Notifications">
      ${data.rows.map((n) => {
        const textId = `notification-${n.id}`;
        return html`<li key=${n.id} class=${`mention${n.read_at ? ' is-done' : ''}`}>
          <div class="mention-text" id=${textId}>
            <a href=${`/tickets/${n.ticket_id}`} onClick=${() => { if (!n.read_at) read(n); }}>${n.title}</a>
            <span class="muted small"><${Time} iso=${n.created_at} />${n.read_at ? ' · read' : ''}</span>
          </div>
          <div class="mention-actions">
            ${!n.read_at && html`<button type="button" class="btn" aria-describedby=${textId} onClick=${() => read(n)}>Mark as read</button>`}
          </div>
        </li>`;
      })}
    </ul>`}
    ${data?.next && html`<p><button type="button" class="btn" disabled=${loadingMore} onClick=${more}>Load more</button></p>`}
    <${Preferences} />
  </div>`;
}

function Preferences() {
  const prefs = useLoad(() => api.get('/me/notification-preferences'), []);
  const [error, setError] = useState(null);

  async function change(kind, channel, on) {
    setError(null);
    try {
      const saved = await api.patch('/me/notification-preferences', { [kind]: { [channel]: on } });
      prefs.setData(saved);
      announce('Preference saved');
    } catch (failure) { setError(failure); }
  }

  const quiet = state.user?.realtime_notifications;
  const data = prefs.data;
  return html`<section id="preferences" class="panel prefs-panel" aria-labelledby="preferences-title">
    <h2 id="preferences-title" class="panel-title">How you are told</h2>
    ${quiet && html`<p class="muted small">Quiet notifications are on (your profile): nothing is e-mailed, whatever the column below says.</p>`}
    <${Alert} error=${prefs.error || error} />
    ${data && html`<table class="prefs">
      <caption class="sr-only">Notification preferences</caption>
      <thead><tr><th scope="col">When</th><th scope="col">In the app</th><th scope="col">By e-mail</th></tr></thead>
      <tbody>
        ${KINDS.map(([kind, label]) => html`<tr key=${kind}>
          <th scope="row">${label}</th>
          <td><input type="checkbox" aria-label=${`${label}: in the app`} checked=${data[kind]?.in_app} onChange=${(e) => change(kind, 'in_app', e.currentTarget.checked)} /></td>
          <td><input type="checkbox" aria-label=${`${label}: by e-mail`} checked=${data[kind]?.email} onChange=${(e) => change(kind, 'email', e.currentTarget.checked)} /></td>
        </tr>`)}
      </tbody>
    </table>`}
  </section>`;
}
