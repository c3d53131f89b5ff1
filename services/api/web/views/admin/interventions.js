// Admin: intervention definitions (CONTRACT §4). Fields are edited as JSON
// (a list of {"type","key"?,"label"?}), templates as text (MiniJinja).

import { html, useState, useEffect } from '../../html.js';
import * as api from '../../api.js';
import { useStore, announce } from '../../store.js';
import { navigate } from '../../router.js';
import { Alert, Checkbox, ConfirmButton, Select, TextArea, TextField, Time, useLoad, fieldError, formError } from '../components.js';

const FIELDS_EXAMPLE = `[
  {"type": "label", "label": "Order {{ data.order_id }}"},
  {"type": "text", "key": "reason", "label": "Reason"},
  {"type": "hr"},
  {"type": "checkbox", "key": "approved", "label": "Approved"}
]`;
const NAMES = ['name', 'title', 'queue_name', 'remote_name', 'remote_epilog_url', 'remote_bearer_token',
  'remote_timeout_seconds', 'remote_enabled', 'enabled', 'notify_inbox_managers', 'fma_inbox_managers', 'fields', 'templates'];

function toForm(def) {
  return {
    name: def?.name || '',
    title: def?.title || '',
    queue_name: def?.queue_name || '',
    remote_name: def?.remote_name || '',
    remote_epilog_url: def?.remote_epilog_url || '',
    remote_bearer_token: '',
    remote_timeout_seconds: String(def?.remote_timeout_seconds ?? 10),
    remote_enabled: def?.remote_enabled ?? false,
    enabled: def?.enabled ?? true,
    notify_inbox_managers: def?.notify_inbox_managers ?? false,
    fma_inbox_managers: def?.fma_inbox_managers ?? false,
    fields: def ? JSON.stringify(def.fields || [], null, 2) : '[]',
    private: def?.templates?.private || '',
    public: def?.templates?.public || '',
    final: def?.templates?.final || '',
  };
}

/** The request body; throws a local 422 when the fields JSON does not parse. */
function toBody(form, editing) {
  let fields;
  try {
    fields = JSON.parse(form.fields || '[]');
    if (!Array.isArray(fields)) throw new Error('not a list');
  } catch {
    throw new api.ApiError(422, { detail: 'Fields must be a JSON list.', errors: [{ field: 'fields', message: 'must be a JSON list of {"type","key","label"} objects' }] });
  }
  const text = (v) => v.trim();
  const orNull = (v) => (v.trim() ? v.trim() : null);
  const body = {
    title: text(form.title),
    remote_timeout_seconds: Number(form.remote_timeout_seconds) || 10,
    remote_enabled: form.remote_enabled,
    enabled: form.enabled,
    notify_inbox_managers: form.notify_inbox_managers,
    fma_inbox_managers: form.fma_inbox_managers,
    fields,
  };
  if (editing) {
    Object.assign(body, {
      queue_name: orNull(form.queue_name),
      remote_name: orNull(form.remote_name),
      remote_epilog_url: orNull(form.remote_epilog_url),
      templates: { private: form.private, public: form.public.trim() ? form.public : null, final: form.final.trim() ? form.final : null },
    });
  } else {
    body.name = text(form.name);
    for (const key of ['queue_name', 'remote_name', 'remote_epilog_url']) if (form[key].trim()) body[key] = form[key].trim();
    body.templates = { private: form.private };
    if (form.public.trim()) body.templates.public = form.public;
    if (form.final.trim()) body.templates.final = form.final;
  }
  // Write-only: empty keeps the stored token.
  if (form.remote_bearer_token) body.remote_bearer_token = form.remote_bearer_token;
  return body;
}

/** The error for a template field, also from 422 INVALID_TEMPLATE. */
function templateError(error, which) {
  const field = `templates.${which}`;
  if (error?.problem?.template_error?.template === field) return error.detail;
  return fieldError(error, field);
}

function DefinitionForm({ form, setForm, error, editing }) {
  const store = useStore();
  const set = (key) => (value) => setForm({ ...form, [key]: value });
  const queues = [['', 'No queue'], ...store.queues.map((q) => [q.name, q.name])];
  if (form.queue_name && !store.queues.some((q) => q.name === form.queue_name)) queues.push([form.queue_name, form.queue_name]);
  return html`
    <div class="form-grid">
      ${!editing && html`<${TextField} label="Name" value=${form.name} onInput=${set('name')} error=${fieldError(error, 'name')}
        hint="Letters, digits, _ . -; it cannot change later." required />`}
      <${TextField} label="Title" value=${form.title} onInput=${set('title')} error=${fieldError(error, 'title')} required />
      <${Select} label="Queue" value=${form.queue_name} onChange=${set('queue_name')} options=${queues} error=${fieldError(error, 'queue_name')} />
      <${TextField} label="Remote name" value=${form.remote_name} onInput=${set('remote_name')} error=${fieldError(error, 'remote_name')} />
      <${TextField} label="Remote epilog URL" type="url" value=${form.remote_epilog_url} onInput=${set('remote_epilog_url')}
        error=${fieldError(error, 'remote_epilog_url') || (error?.code === 'INVALID_URL' ? error.detail : null)} />
      <${TextField} label="Remote bearer token" type="password" value=${form.remote_bearer_token} onInput=${set('remote_bearer_token')}
        error=${fieldError(error, 'remote_bearer_token')} autocomplete="new-password"
        hint=${editing ? 'Write-only. Leave empty to keep the stored one.' : 'Write-only: stored encrypted, never shown again.'} />
      <${TextField} label="Remote timeout (seconds)" type="number" min="1" max="120" value=${form.remote_timeout_seconds}
        onInput=${set('remote_timeout_seconds')} error=${fieldError(error, 'remote_timeout_seconds')} />
    </div>
    <div class="checks-row">
      <${Checkbox} label="Enabled" checked=${form.enabled} onChange=${set('enabled')} hint="Remotes may open tickets with it." />
      <${Checkbox} label="Remote enabled" checked=${form.remote_enabled} onChange=${set('remote_enabled')} hint="Submits call the epilog URL." />
      <${Checkbox} label="Notify inbox managers" checked=${form.notify_inbox_managers} onChange=${set('notify_inbox_managers')} />
      <${Checkbox} label="Raise to inbox managers at once" checked=${form.fma_inbox_managers} onChange=${set('fma_inbox_managers')} />
    </div>
    <${TextArea} label="Fields (JSON)" value=${form.fields} onInput=${set('fields')} rows="8" className="mono-field"
      error=${fieldError(error, 'fields')} hint=${`For example: ${FIELDS_EXAMPLE}`} spellcheck="false" />
    <${TextArea} label="Private template" value=${form.private} onInput=${set('private')} rows="5" className="mono-field"
      error=${templateError(error, 'private')} hint="Renders the internal note of a new intervention ticket (required). Variables: data, ticket, intervention." spellcheck="false" />
    <${TextArea} label="Public template" value=${form.public} onInput=${set('public')} rows="4" className="mono-field"
      error=${templateError(error, 'public')} hint="Renders the staff response of a submit; empty: the Reply text is sent." spellcheck="false" />
    <${TextArea} label="Final template" value=${form.final} onInput=${set('final')} rows="4" className="mono-field"
      error=${templateError(error, 'final')} hint="Renders the final response when the remote accepts." spellcheck="false" />`;
}

function generalError(error) {
  const rest = formError(error, NAMES);
  if (!rest) return null;
  if (rest.code === 'INVALID_URL' || rest.problem?.template_error) return null; // shown beside the field
  return rest;
}

export function AdminInterventions() {
  const defs = useLoad(() => api.getAll('/interventions'), []);
  const [form, setForm] = useState(() => toForm(null));
  const [error, setError] = useState(null);
  useEffect(() => { document.title = 'Interventions · Tickiti'; }, []);

  async function create(event) {
    event.preventDefault();
    setError(null);
    try {
      const answer = await api.post('/interventions', toBody(form, false));
      defs.setData((list) => [...(list || []), answer]);
      setForm(toForm(null));
      announce(`Intervention ${answer.name} created`);
    } catch (failure) {
      setError(failure);
    }
  }

  return html`<div class="page">
    <div class="page-head"><h1>Interventions</h1></div>
    <section class="panel" aria-labelledby="defs-title">
      <h2 id="defs-title" class="panel-title">Definitions</h2>
      <${Alert} error=${defs.error} />
      ${defs.data && !defs.data.length && html`<p class="muted">No interventions yet.</p>`}
      ${defs.data && defs.data.length > 0 && html`<div class="table-wrap"><table class="data" aria-label="Interventions">
        <thead><tr><th scope="col">Name</th><th scope="col">Title</th><th scope="col">Queue</th><th scope="col">State</th><th scope="col" class="col-time">Changed</th></tr></thead>
        <tbody>${defs.data.map((d) => html`<tr key=${d.id}>
          <td class="mono"><a href=${`/admin/interventions/${encodeURIComponent(d.name)}`}>${d.name}</a></td>
          <td>${d.title}</td>
          <td>${d.queue_name || html`<span class="muted">none</span>`}</td>
          <td>${d.enabled ? 'Enabled' : 'Disabled'}${d.remote_enabled ? ' · remote on' : ''}</td>
          <td class="col-time"><${Time} iso=${d.updated_at} /></td>
        </tr>`)}</tbody>
      </table></div>`}
    </section>
    <section class="panel" aria-labelledby="new-def-title">
      <h2 id="new-def-title" class="panel-title">New intervention</h2>
      <form class="stack" onSubmit=${create}>
        <${DefinitionForm} form=${form} setForm=${setForm} error=${error} editing=${false} />
        <div><button type="submit" class="btn primary">Create intervention</button></div>
        <${Alert} error=${generalError(error)} />
      </form>
    </section>
  </div>`;
}

export function AdminIntervention({ name }) {
  const path = `/interventions/${encodeURIComponent(name)}`;
  const def = useLoad(() => api.get(path), [name]);
  const [form, setForm] = useState(null);
  const [error, setError] = useState(null);
  const [deleteError, setDeleteError] = useState(null);
  const [saved, setSaved] = useState('');
  useEffect(() => { document.title = `${name} · Interventions · Tickiti`; }, [name]);
  useEffect(() => { if (def.data && !form) setForm(toForm(def.data)); }, [def.data]); // eslint-disable-line react-hooks/exhaustive-deps

  async function save(event) {
    event.preventDefault();
    setError(null);
    setSaved('');
    try {
      const answer = await api.patch(path, toBody(form, true));
      def.setData(answer);
      setForm({ ...form, remote_bearer_token: '' });
      setSaved('Saved.');
      announce('Intervention saved');
    } catch (failure) {
      setError(failure);
    }
  }

  async function remove() {
    setDeleteError(null);
    try {
      await api.del(path);
      announce(`Intervention ${name} deleted`);
      navigate('/admin/interventions');
    } catch (failure) {
      setDeleteError(failure);
    }
  }

  if (def.error?.status === 404) {
    return html`<div class="page"><h1>Intervention not found</h1><p><a href="/admin/interventions">Back to the interventions</a></p></div>`;
  }
  return html`<div class="page">
    <p class="back"><a href="/admin/interventions">← Interventions</a></p>
    <div class="page-head"><h1>${def.data?.title || name}</h1><span class="mono muted">${name}</span></div>
    <${Alert} error=${def.error} />
    ${def.data && html`<div class="toolbar">
      <span class="muted small">${def.data.remote_bearer_token_set ? 'A bearer token is stored.' : 'No bearer token stored.'}</span>
      <${ConfirmButton} label="Delete intervention" confirmLabel="Delete now" onConfirm=${remove} />
    </div>`}
    <${Alert} error=${deleteError} />
    ${form && html`<form class="stack panel" onSubmit=${save}>
      <${DefinitionForm} form=${form} setForm=${(f) => { setForm(f); setSaved(''); }} error=${error} editing=${true} />
      <div><button type="submit" class="btn primary">Save intervention</button></div>
      <p class="success" role="status">${saved}</p>
      <${Alert} error=${generalError(error)} />
    </form>`}
  </div>`;
}
