// Mentions: where colleagues named the user, unacknowledged first, each with
// its ticket and an Acknowledge button.

import { html, useState, useEffect } from '../html.js';
import * as api from '../api.js';
import { useBus, userName, announce } from '../store.js';
import { Alert, Time, useLoad } from './components.js';

export function Mentions({ onCountChanged }) {
  const mentions = useLoad(async () => {
    const page = await api.get('/mentions', { query: { limit: 100 } });
    const rows = page.data || [];
    // The tickets' codes and subjects, once each (tickets of mentions exist:
    // deleting a ticket deletes its mentions).
    const ids = [...new Set(rows.map((m) => m.ticket_id))];
    const tickets = {};
    await Promise.all(ids.map(async (id) => {
      try { tickets[id] = await api.get(`/tickets/${api.seg(id)}`); } catch { tickets[id] = null; }
    }));
    return { rows, tickets, next: page.next_cursor };
  }, []);
  const [errors, setErrors] = useState({});

  useEffect(() => { document.title = 'Mentions · Tickiti'; }, []);
  useBus('refresh', () => mentions.reload());
  useBus('live', ({ event }) => { if (event.startsWith('mention.')) mentions.reload(); });

  async function ack(mention) {
    setErrors((e) => ({ ...e, [mention.id]: null }));
    try {
      const saved = await api.post(`/mentions/${api.seg(mention.id)}/ack`);
      mentions.setData((d) => ({ ...d, rows: d.rows.map((m) => (m.id === saved.id ? saved : m)) }));
      announce('Mention acknowledged');
      onCountChanged();
    } catch (failure) {
      setErrors((e) => ({ ...e, [mention.id]: failure }));
    }
  }

  const data = mentions.data;
  return html`<div class="page">
    <div class="page-head"><h1>Mentions</h1></div>
    <${Alert} error=${mentions.error} />
    ${!data && !mentions.error && html`<p class="muted">Loading mentions…</p>`}
    ${data && !data.rows.length && html`<p class="muted">Nobody has mentioned you yet. Colleagues mention you by writing @ and your name in a message.</p>`}
    ${data && data.rows.length > 0 && html`<ul class="mention-list">
      ${data.rows.map((m) => {
        const ticket = data.tickets[m.ticket_id];
        const textId = `mention-${m.id}`;
        return html`<li key=${m.id} class=${`mention${m.acknowledged_at ? ' is-done' : ''}`}>
          <div class="mention-text" id=${textId}>
            <a href=${`/tickets/${m.ticket_id}`}>${ticket ? `${ticket.code} · ${ticket.subject}` : 'Open the ticket'}</a>
            <span class="muted small">${m.author_user_id ? userName(m.author_user_id) : 'Someone'} mentioned you · <${Time} iso=${m.created_at} /></span>
          </div>
          <div class="mention-actions">
            ${m.acknowledged_at
              ? html`<span class="muted small">Acknowledged <${Time} iso=${m.acknowledged_at} /></span>`
              : html`<button type="button" class="btn" aria-describedby=${textId} onClick=${() => ack(m)}>Acknowledge</button>`}
            <${Alert} error=${errors[m.id]} />
          </div>
        </li>`;
      })}
    </ul>`}
  </div>`;
}
