// The ticket view: conversation, reply / internal note, properties, tags,
// time entries, audit trail and, for intervention tickets, their fields.
// Live events for this ticket refetch what they touch; a 412 from If-Match
// keeps the user's input and says what changed.

import { html, useState, useEffect, useRef, useCallback } from '../html.js';
import * as api from '../api.js';
import * as live from '../live.js';
import { useStore, useBus, announce, userName } from '../store.js';
import { loadDraft, saveDraft, clearDraft } from '../drafts.js';
import { Alert, Time, useLoad } from './components.js';
import { initials } from '../format.js';
import { describeConflict } from './changes.js';
import { ReplyForm } from './reply.js';
import { TicketSide } from './ticket-side.js';
import { InterventionForm } from './intervention.js';

export function TicketView({ id }) {
  const store = useStore();
  const me = store.user;
  const path = `/tickets/${api.seg(id)}`;

  const ticket = useLoad(() => api.get(path), [id]);
  const messages = useLoad(() => api.getAll(`${path}/messages`, { max: 5000 }), [id]);
  const audit = useLoad(() => api.getAll(`${path}/audit`, { max: 5000 }), [id]);
  const entries = useLoad(() => api.getAll(`${path}/time-entries`), [id]);
  const [deleted, setDeleted] = useState(false);

  // An intervention ticket says so in its first audit entry (or, where the
  // api adds it, in the ticket itself); only then is its payload asked for.
  const interventionName = ticket.data?.intervention
    || (audit.data || []).find((a) => a.action === 'ticket.created' && a.changes?.intervention)?.changes.intervention
    || ((audit.data || []).some((a) => a.action.startsWith('intervention.')) ? 'yes' : null);
  const intervention = useLoad(
    () => (interventionName ? api.get(`${path}/intervention`) : Promise.resolve(null)),
    [id, interventionName],
  );

  // The reply draft lives here: the intervention submit sends it as its message.
  const [draft, setDraftState] = useState(() => loadDraft(me.id, id));
  const setDraft = useCallback((next) => {
    setDraftState(next);
    saveDraft(me.id, id, next);
  }, [me.id, id]);
  const resetDraft = useCallback(() => {
    setDraftState({ body: '', internal: false });
    clearDraft(me.id, id);
    live.release(id); // an empty box holds no lock
  }, [me.id, id]);

  const replyRef = useRef(null);

  useEffect(() => {
    if (ticket.data) document.title = `${ticket.data.code} ${ticket.data.subject} · Tickiti`;
  }, [ticket.data?.code, ticket.data?.subject]);

  const reloadAll = () => {
    ticket.reload();
    messages.reload();
    audit.reload();
    entries.reload();
    if (interventionName) intervention.reload();
  };
  useBus('refresh', reloadAll);

  useBus('live', ({ event, data }) => {
    if (!data) return;
    if (event.startsWith('ticket.') && data.id === id) {
      if (event === 'ticket.deleted') {
        setDeleted(true);
        return;
      }
      // Newer than what is shown: take it now, the audit follows. (The
      // user's own change is already shown: it is not announced again.)
      const newer = !ticket.data || (data.version ?? 0) > ticket.data.version;
      if (newer || (data.version ?? 0) === ticket.data?.version) ticket.setData((t) => ({ ...t, ...data }));
      audit.reload();
      const was = ticket.data;
      if (newer && was) {
        if (data.status && data.status !== was.status) announce(`Status is now ${data.status.replace('_', ' ')}`);
        else if (data.assignee_id !== was.assignee_id) announce(data.assignee_id ? `Assigned to ${userName(data.assignee_id)}` : 'Unassigned');
        else announce('This ticket was updated');
      }
    } else if (data.ticket_id === id) {
      if (event.startsWith('message.')) {
        messages.reload();
        ticket.reload(); // a message moves the ticket's version on
        if (event === 'message.deleted') audit.reload();
        if (event === 'message.created' && data.author_user_id !== me.id) {
          announce(`New ${data.visibility === 'internal' ? 'internal note' : 'message'} from ${data.author_user_id ? userName(data.author_user_id) : 'the contact'}`);
        }
      } else if (event.startsWith('time_entry.')) {
        entries.reload();
        audit.reload();
      } else if (event.startsWith('intervention.')) {
        intervention.reload();
        audit.reload();
        messages.reload();
      }
    }
  });

  /** Our own change's new version: the next If-Match sends it, not the one it replaced. */
  const newVersion = (v) => ticket.setData((cur) => (cur && v > cur.version ? { ...cur, version: v } : cur));

  /**
   * After a 412: shows the current ticket, refetches messages and audit, and
   * returns the sentence that says what changed.
   */
  async function conflict(current) {
    const before = ticket.data;
    const oldMessages = messages.data || [];
    const oldAudit = audit.data || [];
    if (current) ticket.setData(current);
    let newMessages = oldMessages;
    let newAudit = oldAudit;
    try {
      [newMessages, newAudit] = await Promise.all([api.getAll(`${path}/messages`, { max: 5000 }), api.getAll(`${path}/audit`, { max: 5000 })]);
      messages.setData(newMessages);
      audit.setData(newAudit);
    } catch { /* the summary then rests on the ticket alone */ }
    if (!current) {
      try { ticket.setData(await api.get(path)); } catch { ticket.reload(); }
    }
    return describeConflict({ before, after: current || ticket.data, oldMessages, newMessages, oldAudit, newAudit });
  }

  if (ticket.error && ticket.error.status === 404) {
    return html`<div class="page"><h1>Ticket not found</h1>
      <p>It may have been deleted, or the link is wrong. <a href=${store.lastListUrl || '/'}>Back to the tickets</a>.</p></div>`;
  }
  if (!ticket.data) {
    return html`<div class="page">
      ${ticket.error ? html`<h1>Ticket</h1><${Alert} error=${ticket.error} />
        <p><button type="button" class="btn" onClick=${() => ticket.reload()}>Retry</button></p>`
        : html`<h1 class="loading-title" data-loading>Loading ticket…</h1>`}
    </div>`;
  }

  const t = ticket.data;
  const lock = store.locks[id];
  return html`
    <div class="page page-ticket">
      <p class="back"><a href=${store.lastListUrl || '/'}>← Tickets</a></p>
      <div class="ticket-head">
        <p class="ticket-code mono">${t.code}</p>
        <h1>${t.subject}</h1>
        <p class="muted">
          ${t.contact?.name ? html`${t.contact.name} <span class="mono">${`<${t.contact.email}>`}</span>` : t.contact?.email}
          ${' · opened '}<${Time} iso=${t.created_at} />
        </p>
      </div>
      <p class=${`lock-status${lock ? ' is-active' : ''}`} role="status">${lock ? `${lock.user.name} is responding to this ticket` : ''}</p>
      ${deleted && html`<${Alert}>This ticket was deleted by someone else.<//>`}
      <div class="ticket-grid">
        <div class="ticket-main">
          <${Conversation} ticket=${t} messages=${messages} />
          ${interventionName && html`<${InterventionForm} ticketId=${id} ticket=${t} resource=${intervention}
            reply=${draft.body} onVersion=${newVersion}
            onSubmitted=${() => { resetDraft(); messages.reload(); ticket.reload(); audit.reload(); }} />`}
          <${ReplyForm} ticket=${t} draft=${draft} setDraft=${setDraft} resetDraft=${resetDraft}
            textareaRef=${replyRef} onConflict=${conflict} onVersion=${newVersion}
            onSent=${() => { messages.reload(); ticket.reload(); audit.reload(); }} />
        </div>
        <div class="ticket-side">
          <${TicketSide} ticket=${t} setTicket=${ticket.setData} onConflict=${conflict}
            entries=${entries} audit=${audit} />
        </div>
      </div>
    </div>`;
}

function Conversation({ ticket, messages }) {
  return html`<section class="conversation" aria-label="Conversation">
    ${messages.error && html`<${Alert} error=${messages.error} />`}
    ${!messages.data && !messages.error && html`<p class="muted">Loading messages…</p>`}
    ${messages.data && !messages.data.length && html`<p class="muted">No messages yet.</p>`}
    ${(messages.data || []).map((m) => html`<${Message} key=${m.id} message=${m} ticket=${ticket} />`)}
  </section>`;
}

function Message({ message, ticket }) {
  const staff = Boolean(message.author_user_id);
  const author = staff ? userName(message.author_user_id) : (ticket.contact?.name || ticket.contact?.email || 'Contact');
  const internal = message.visibility === 'internal';
  return html`<article class=${`message${internal ? ' is-internal' : ''}${staff ? ' is-staff' : ' is-contact'}`}>
    <div class="message-head">
      <span class="avatar" aria-hidden="true">${initials(author)}</span>
      <strong class="message-author">${author}</strong>
      ${internal && html`<span class="note-badge">Internal note</span>`}
      <span class="muted small"><${Time} iso=${message.created_at} /></span>
    </div>
    <div class="message-body">${message.body}</div>
  </article>`;
}
