// Admin: webhook endpoints (CONTRACT §3). The list creates them (the
// generated secret is shown once); an endpoint's page edits it, sends a
// test, deletes it, and shows its delivery log with Resend per delivery.

import { html, useState, useEffect, useRef } from '../../html.js';
import * as api from '../../api.js';
import { announce } from '../../store.js';
import { navigate } from '../../router.js';
import { label } from '../../format.js';
import { Alert, Checkbox, ConfirmButton, Select, TextField, Time, useLoad, fieldError, formError } from '../components.js';
import { Secret } from './tokens.js';

export const EVENTS = [
  'ticket.created', 'ticket.updated', 'ticket.deleted', 'ticket.assigned', 'ticket.status_changed',
  'ticket.closed', 'ticket.escalated', 'message.created', 'message.deleted', 'ticket.message.created',
  'contact.created', 'contact.updated', 'contact.deleted', 'time_entry.created', 'time_entry.updated',
  'time_entry.deleted', 'intervention.created', 'intervention.submitted', 'intervention.accepted', 'test.ping',
];
const FORM_FIELDS = ['url', 'events', 'secret', 'description', 'payload_format', 'active'];

/** The part of an error not already shown beside a field of the form. */
function generalError(error) {
  const rest = formError(error, FORM_FIELDS);
  return rest && (rest.code === 'INVALID_URL' || rest.code === 'INVALID_EVENTS') ? null : rest;
}

/** URL, description, events, format, active: shared by create and edit. */
function WebhookFields({ form, setForm, error, withSecret }) {
  const set = (key) => (value) => setForm({ ...form, [key]: value });
  const all = form.events.includes('*');
  const toggle = (event, on) => setForm({
    ...form,
    events: on ? [...new Set([...form.events.filter((e) => e !== '*' || event === '*'), event])] : form.events.filter((e) => e !== event),
  });
  // INVALID_URL / INVALID_EVENTS come without `errors`: they still belong beside their field.
  const urlError = fieldError(error, 'url') || (error?.code === 'INVALID_URL' ? error.detail : null);
  const eventsError = fieldError(error, 'events') || (error?.code === 'INVALID_EVENTS' ? error.detail : null);
  return html`
    <${TextField} label="URL" type="url" value=${form.url} onInput=${set('url')} error=${urlError}
      placeholder="https://example.com/hooks/tickiti" required />
    <${TextField} label="Description" value=${form.description} onInput=${set('description')} error=${fieldError(error, 'description')} maxlength="500" />
    <fieldset class="checks checks-grid">
      <legend>Events</legend>
      <${Checkbox} label="All events (*)" checked=${all} onChange=${(on) => setForm({ ...form, events: on ? ['*'] : [] })} />
      ${!all && EVENTS.map((e) => html`<${Checkbox} key=${e} label=${e} checked=${form.events.includes(e)} onChange=${(on) => toggle(e, on)} />`)}
      ${eventsError && html`<p class="field-error" role="alert">${eventsError}</p>`}
    </fieldset>
    <${Select} label="Payload format" value=${form.payload_format} onChange=${set('payload_format')}
      options=${[['nested', 'Nested (event, timestamp, data)'], ['flat', 'Flat (fields at the top level)']]}
      error=${fieldError(error, 'payload_format')} />
    ${withSecret && html`<${TextField} label="Secret" value=${form.secret} onInput=${set('secret')} error=${fieldError(error, 'secret')}
      hint="Leave empty to have one generated (shown once)." autocomplete="off" />`}
    <${Checkbox} label="Active" checked=${form.active} onChange=${set('active')} error=${fieldError(error, 'active')} />`;
}

const emptyForm = () => ({ url: '', description: '', events: ['*'], payload_format: 'nested', secret: '', active: true });

export function AdminWebhooks() {
  const hooks = useLoad(() => api.getAll('/webhooks'), []);
  const [form, setForm] = useState(emptyForm);
  const [error, setError] = useState(null);
  const [created, setCreated] = useState(null);
  useEffect(() => { document.title = 'Webhooks · Tickiti'; }, []);

  async function create(event) {
    event.preventDefault();
    setError(null);
    const body = { url: form.url.trim(), events: form.events, active: form.active, payload_format: form.payload_format };
    if (form.description.trim()) body.description = form.description.trim();
    if (form.secret) body.secret = form.secret;
    try {
      const answer = await api.post('/webhooks', body);
      const { secret, ...listed } = answer;
      setCreated({ secret, url: answer.url });
      setForm(emptyForm());
      hooks.setData((list) => [...(list || []), listed]);
      announce('Webhook created');
    } catch (failure) {
      setError(failure);
    }
  }

  return html`<div class="page">
    <div class="page-head"><h1>Webhooks</h1></div>
    ${created && html`<${Secret} title=${`Signing secret for ${created.url}`} secret=${created.secret} onDone=${() => setCreated(null)} />`}
    <section class="panel" aria-labelledby="hooks-title">
      <h2 id="hooks-title" class="panel-title">Endpoints</h2>
      <${Alert} error=${hooks.error} />
      ${hooks.data && !hooks.data.length && html`<p class="muted">No webhooks yet.</p>`}
      ${hooks.data && hooks.data.length > 0 && html`<div class="table-wrap"><table class="data" aria-label="Webhooks">
        <thead><tr><th scope="col">URL</th><th scope="col">Events</th><th scope="col">Status</th><th scope="col" class="col-time">Created</th></tr></thead>
        <tbody>${hooks.data.map((h) => html`<tr key=${h.id}>
          <td class="break"><a href=${`/admin/webhooks/${h.id}`}>${h.url}</a>${h.description && html`<div class="muted small">${h.description}</div>`}</td>
          <td>${h.events.join(', ')}</td>
          <td><span class=${`pill pill-hook-${h.status}`}>${label(h.status)}</span>${h.status_reason && html`<div class="muted small">${h.status_reason}</div>`}</td>
          <td class="col-time"><${Time} iso=${h.created_at} /></td>
        </tr>`)}</tbody>
      </table></div>`}
    </section>
    <section class="panel" aria-labelledby="new-hook-title">
      <h2 id="new-hook-title" class="panel-title">New webhook</h2>
      <form class="stack" onSubmit=${create}>
        <${WebhookFields} form=${form} setForm=${setForm} error=${error} withSecret=${true} />
        <div><button type="submit" class="btn primary">Create webhook</button></div>
        <${Alert} error=${generalError(error)} />
      </form>
    </section>
  </div>`;
}

export function AdminWebhook({ id }) {
  const path = `/webhooks/${api.seg(id)}`;
  const hook = useLoad(() => api.get(path), [id]);
  // A refresh fetches as many as are shown, so "Load more" pages stay.
  const shown = useRef(0);
  const deliveries = useLoad(() => api.get(`${path}/deliveries`, { query: { limit: Math.min(200, Math.max(50, shown.current)) } }), [id]);
  shown.current = deliveries.data?.data?.length || 0;
  const [form, setForm] = useState(null);
  const [error, setError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [rowErrors, setRowErrors] = useState({});
  const [saved, setSaved] = useState('');

  useEffect(() => { document.title = 'Webhook · Tickiti'; }, []);
  useEffect(() => {
    if (hook.data && !form) {
      const h = hook.data;
      setForm({ url: h.url, description: h.description || '', events: h.events, payload_format: h.payload_format, secret: '', active: h.active });
    }
  }, [hook.data]); // eslint-disable-line react-hooks/exhaustive-deps
  // Deliveries move on by themselves (retries): keep the log fresh.
  useEffect(() => {
    const timer = setInterval(() => { if (!document.hidden) deliveries.reload(); }, 5000);
    return () => clearInterval(timer);
  }, [id]); // eslint-disable-line react-hooks/exhaustive-deps

  async function save(event) {
    event.preventDefault();
    setError(null);
    setSaved('');
    const body = { url: form.url.trim(), events: form.events, payload_format: form.payload_format, active: form.active,
      description: form.description.trim() || null };
    try {
      const answer = await api.patch(path, body);
      hook.setData(answer);
      setSaved('Saved.');
      announce('Webhook saved');
    } catch (failure) {
      setError(failure);
    }
  }

  async function test() {
    setActionError(null);
    try {
      await api.post(`${path}/test`);
      announce('Test delivery sent');
      deliveries.reload();
    } catch (failure) {
      setActionError(failure);
    }
  }

  async function remove() {
    setActionError(null);
    try {
      await api.del(path);
      announce('Webhook deleted');
      navigate('/admin/webhooks');
    } catch (failure) {
      setActionError(failure);
    }
  }

  async function resend(delivery) {
    setRowErrors((e) => ({ ...e, [delivery.id]: null }));
    try {
      await api.post(`${path}/deliveries/${api.seg(delivery.id)}/resend`);
      announce(`Delivery of ${delivery.event} sent again`);
      deliveries.reload();
    } catch (failure) {
      setRowErrors((e) => ({ ...e, [delivery.id]: failure }));
    }
  }

  async function more() {
    const next = deliveries.data?.next_cursor;
    if (!next) return;
    try {
      const page = await api.get(`${path}/deliveries`, { query: { limit: 50, cursor: next } });
      deliveries.setData((d) => ({ data: [...d.data, ...(page.data || [])], next_cursor: page.next_cursor }));
    } catch (failure) {
      setActionError(failure);
    }
  }

  if (hook.error?.status === 404) {
    return html`<div class="page"><h1>Webhook not found</h1><p><a href="/admin/webhooks">Back to the webhooks</a></p></div>`;
  }
  const h = hook.data;
  return html`<div class="page">
    <p class="back"><a href="/admin/webhooks">← Webhooks</a></p>
    <div class="page-head">
      <h1 class="break">${h ? h.url : 'Webhook'}</h1>
      ${h && html`<span class=${`pill pill-hook-${h.status}`}>${label(h.status)}</span>`}
    </div>
    <${Alert} error=${hook.error} />
    ${h && html`<div class="toolbar">
      <button type="button" class="btn" onClick=${test}>Send test</button>
      <${ConfirmButton} label="Delete webhook" confirmLabel="Delete now" onConfirm=${remove} />
    </div>`}
    <${Alert} error=${actionError} />
    ${form && html`<section class="panel" aria-labelledby="edit-hook-title">
      <h2 id="edit-hook-title" class="panel-title">Settings</h2>
      <form class="stack" onSubmit=${save}>
        <${WebhookFields} form=${form} setForm=${(f) => { setForm(f); setSaved(''); }} error=${error} withSecret=${false} />
        <div><button type="submit" class="btn primary">Save webhook</button></div>
        <p class="success" role="status">${saved}</p>
        <${Alert} error=${generalError(error)} />
      </form>
    </section>`}
    <section class="panel" aria-labelledby="deliveries-title">
      <div class="panel-head">
        <h2 id="deliveries-title" class="panel-title">Delivery log</h2>
        <button type="button" class="btn quiet" onClick=${() => deliveries.reload()}>Refresh log</button>
      </div>
      <${Alert} error=${deliveries.error} />
      ${deliveries.data && !deliveries.data.data.length && html`<p class="muted">No deliveries yet. “Send test” makes one.</p>`}
      ${deliveries.data && deliveries.data.data.length > 0 && html`<div class="table-wrap"><table class="data" aria-label="Deliveries">
        <thead><tr><th scope="col">Event</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Response</th>
          <th scope="col" class="col-time">Created</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${deliveries.data.data.map((d) => html`<tr key=${d.id}>
          <td id=${`delivery-${d.id}`}><span class="mono">${d.event}</span><div class="muted small mono">${d.id}</div></td>
          <td><span class=${`pill pill-delivery-${d.status}`}>${label(d.status)}</span>
            ${d.next_attempt_at && html`<div class="muted small">next <${Time} iso=${d.next_attempt_at} /></div>`}</td>
          <td>${d.attempt}</td>
          <td>${d.response_code ?? '—'}${d.response_time_ms !== null && d.response_time_ms !== undefined ? ` · ${d.response_time_ms} ms` : ''}
            ${d.error && html`<div class="muted small break">${d.error}</div>`}</td>
          <td class="col-time"><${Time} iso=${d.created_at} /></td>
          <td class="actions">
            <button type="button" class="btn" aria-describedby=${`delivery-${d.id}`} onClick=${() => resend(d)}>Resend</button>
            <${Alert} error=${rowErrors[d.id]} />
          </td>
        </tr>`)}</tbody>
      </table></div>`}
      ${deliveries.data?.next_cursor && html`<div class="more"><button type="button" class="btn" onClick=${more}>Load more</button></div>`}
    </section>
  </div>`;
}
