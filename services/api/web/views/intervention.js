// An intervention ticket's fields (CONTRACT §4): text fields and checkboxes
// edit the data bag, labels show their resolved text, hr is a separator.
// "Submit intervention" sends the edited bag with the Reply box's text.

import { html, useState, useEffect, useId } from '../html.js';
import * as api from '../api.js';
import { announce } from '../store.js';
import { label as words } from '../format.js';
import { Alert, FieldError, Time, fieldError, formError } from './components.js';

/** `{{ data.KEY }}` / `{{ ticket.FIELD }}` resolved in the browser, for labels the api did not resolve. */
function resolve(text, data, ticket) {
  return String(text || '').replace(/\{\{\s*(data|ticket)\.([A-Za-z0-9_-]+)\s*\}\}/g, (_, scope, key) => {
    const source = scope === 'data' ? data : ticket;
    const value = source?.[key];
    return value === undefined || value === null ? '' : String(value);
  });
}

export function InterventionForm({ ticketId, ticket, resource, reply, onSubmitted, onVersion }) {
  const view = resource.data;
  const [bag, setBag] = useState(null);
  const [dirty, setDirty] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState('');
  const baseId = useId();

  // The stored bag, until the user edits it.
  useEffect(() => {
    if (view && !dirty) setBag({ ...(view.data || {}) });
  }, [view]); // eslint-disable-line react-hooks/exhaustive-deps

  if (resource.error) {
    return html`<fieldset class="intervention"><legend>Intervention</legend><${Alert} error=${resource.error} /></fieldset>`;
  }
  if (!view || !bag) {
    return html`<fieldset class="intervention"><legend>Intervention</legend><p class="muted">Loading…</p></fieldset>`;
  }

  const set = (key, value) => {
    setBag({ ...bag, [key]: value });
    setDirty(true);
    setDone('');
  };

  async function submit() {
    if (busy) return;
    setBusy(true);
    setError(null);
    setDone('');
    try {
      const body = { data: bag };
      if (reply.trim()) body.message = reply;
      const answer = await api.post(`/tickets/${api.seg(ticketId)}/intervention/submit`, body, { onVersion });
      resource.setData(answer);
      setDirty(false);
      setDone('Intervention submitted.');
      announce('Intervention submitted');
      onSubmitted();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const accepted = view.status === 'accepted';
  const epilogs = view.epilogs || [];
  const lastEpilog = epilogs[epilogs.length - 1];
  const fieldNames = (view.fields || []).filter((f) => f.key).map((f) => `data.${f.key}`);
  const messageError = fieldError(error, 'message');

  return html`<fieldset class="intervention">
    <legend>Intervention</legend>
    <p class="intervention-meta muted small">
      ${view.title} · ${words(view.status)}${view.submitted_at ? html` · submitted <${Time} iso=${view.submitted_at} />` : ''}
      ${lastEpilog ? ` · remote call ${lastEpilog.status}${lastEpilog.last_error ? `: ${lastEpilog.last_error}` : ''}` : ''}
    </p>
    ${(view.fields || []).map((field, i) => {
      const id = `${baseId}-f${i}`;
      const caption = field.label || field.key;
      const problem = field.key ? fieldError(error, `data.${field.key}`) || fieldError(error, field.key) : null;
      switch (field.type) {
        case 'text':
          return html`<div class="field" key=${id}>
            <label for=${id}>${caption}</label>
            <input id=${id} type="text" value=${bag[field.key] ?? ''} disabled=${accepted}
              onInput=${(e) => set(field.key, e.currentTarget.value)}
              aria-invalid=${problem ? 'true' : undefined} aria-describedby=${problem ? `${id}-error` : undefined} />
            <${FieldError} id=${`${id}-error`} message=${problem} />
          </div>`;
        case 'checkbox':
          return html`<div class="check" key=${id}>
            <input id=${id} type="checkbox" checked=${Boolean(bag[field.key])} disabled=${accepted}
              onChange=${(e) => set(field.key, e.currentTarget.checked)} />
            <label for=${id}>${caption}</label>
            <${FieldError} id=${`${id}-error`} message=${problem} />
          </div>`;
        case 'label':
          return html`<p class="intervention-label" key=${id}>${field.text ?? resolve(field.label, bag, ticket)}</p>`;
        case 'hr':
          return html`<hr key=${id} />`;
        default:
          return null;
      }
    })}
    <div class="intervention-actions">
      <button type="button" class=${`btn primary${busy ? ' busy' : ''}`} onClick=${submit} disabled=${accepted}
        aria-describedby=${`${baseId}-hint${messageError ? ` ${baseId}-msg` : ''}`}>Submit intervention</button>
      <p class="hint" id=${`${baseId}-hint`}>${accepted ? 'The remote accepted this intervention; it cannot be submitted again.'
        : 'Sends these fields with the text of the Reply box as the response.'}</p>
      <${FieldError} id=${`${baseId}-msg`} message=${messageError ? `Reply: ${messageError}` : null} />
    </div>
    ${done && html`<p class="success" role="status">${done}</p>`}
    <${Alert} error=${formError(error, ['message', 'data', ...fieldNames])} />
  </fieldset>`;
}
