// The reply box: public reply or internal note, sent with If-Match. Typing
// takes the ticket's reply lock (renewed by live.js while the draft is not
// empty); sending, emptying the box and leaving the ticket give it back.

import { html, useState, useEffect } from '../html.js';
import * as api from '../api.js';
import * as live from '../live.js';
import { announce } from '../store.js';
import { useShortcut } from '../keys.js';
import { Alert, FieldError, fieldError, formError } from './components.js';

export function ReplyForm({ ticket, draft, setDraft, resetDraft, textareaRef, onConflict, onSent, onVersion }) {
  const [error, setError] = useState(null);
  const [conflictText, setConflictText] = useState('');
  const [sending, setSending] = useState(false);
  const ticketId = ticket.id;

  useEffect(() => () => live.release(ticketId), [ticketId]);
  useShortcut('r', () => textareaRef.current?.focus());

  function edit(body) {
    setDraft({ ...draft, body });
    if (body.trim()) live.hold(ticketId);
    else live.release(ticketId);
  }

  async function send() {
    if (sending) return;
    const { body, internal } = draft;
    if (!body.trim()) {
      setError('Write a reply before sending.');
      textareaRef.current?.focus();
      return;
    }
    setSending(true);
    setError(null);
    setConflictText('');
    try {
      await api.post(`/tickets/${api.seg(ticketId)}/messages`,
        { body, visibility: internal ? 'internal' : 'public' },
        { ifMatch: ticket.version, onVersion });
      live.release(ticketId);
      resetDraft();
      announce(internal ? 'Internal note added' : 'Reply sent');
      onSent();
    } catch (failure) {
      if (failure instanceof api.ApiError && failure.status === 412) {
        const what = await onConflict(failure.problem.ticket);
        setConflictText(`Not sent: the ticket changed while you were writing. ${what} Your reply is kept; read the update, then send it again.`);
      } else {
        setError(failure);
      }
    } finally {
      setSending(false);
    }
  }

  const bodyError = typeof error === 'string' ? error : fieldError(error, 'body');
  const otherError = typeof error === 'string' ? null : formError(error, ['body']);
  const described = ['reply-hint', bodyError ? 'reply-error' : null].filter(Boolean).join(' ');

  return html`<form class=${`reply${draft.internal ? ' is-internal' : ''}`} aria-busy=${sending ? 'true' : undefined}
      onSubmit=${(e) => { e.preventDefault(); send(); }}>
    <div class="field">
      <label for="reply-body">Reply</label>
      <textarea id="reply-body" ref=${textareaRef} rows="5" value=${draft.body}
        placeholder=${draft.internal ? 'Write an internal note for colleagues…' : 'Write a reply to the contact…'}
        onInput=${(e) => edit(e.currentTarget.value)}
        onKeyDown=${(e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); send(); } }}
        aria-invalid=${bodyError ? 'true' : undefined} aria-describedby=${described}></textarea>
      <p class="hint" id="reply-hint">Ctrl+Enter sends. @name mentions a colleague. The draft is kept on this device.</p>
      <${FieldError} id="reply-error" message=${bodyError} />
    </div>
    <div class="reply-actions">
      <div class="check">
        <input id="reply-internal" type="checkbox" checked=${draft.internal}
          onChange=${(e) => setDraft({ ...draft, internal: e.currentTarget.checked })} />
        <label for="reply-internal">Internal note</label>
      </div>
      <button type="submit" class=${`btn primary${sending ? ' busy' : ''}`}>Send reply</button>
    </div>
    ${conflictText && html`<div class="alert warn" role="alert">${conflictText}</div>`}
    <${Alert} error=${otherError} />
  </form>`;
}
