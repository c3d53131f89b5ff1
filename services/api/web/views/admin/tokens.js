// Admin: the signed-in user's API tokens. A new token's secret is shown
// once, with a copy button; revoking asks once more.

import { html, useState, useEffect, useRef } from '../../html.js';
import * as api from '../../api.js';
import { announce } from '../../store.js';
import { Alert, Checkbox, ConfirmButton, TextField, Time, useLoad, copyText, fieldError, formError } from '../components.js';

export const ABILITIES = [
  ['*', 'Everything (*)'],
  ['create-ticket', 'Create tickets'],
  ['tickets:read', 'Read tickets'],
  ['tickets:write', 'Change tickets'],
  ['contacts:read', 'Read contacts'],
  ['contacts:write', 'Change contacts'],
  ['webhooks:manage', 'Manage webhooks'],
  ['interventions:manage', 'Manage interventions'],
  ['admin', 'Admin'],
];

export function AdminTokens() {
  const tokens = useLoad(() => api.getAll('/tokens'), []);
  const [name, setName] = useState('');
  const [abilities, setAbilities] = useState(['tickets:read']);
  const [error, setError] = useState(null);
  const [created, setCreated] = useState(null);
  const [rowErrors, setRowErrors] = useState({});
  useEffect(() => { document.title = 'API tokens · Tickiti'; }, []);

  async function create(event) {
    event.preventDefault();
    setError(null);
    try {
      const answer = await api.post('/tokens', { name: name.trim(), abilities });
      setCreated(answer);
      setName('');
      const { token: _secret, ...listed } = answer; // the list never holds the secret
      tokens.setData((list) => [...(list || []), listed]);
      announce(`Token ${answer.name} created`);
    } catch (failure) {
      setError(failure);
    }
  }

  async function revoke(token) {
    setRowErrors((e) => ({ ...e, [token.id]: null }));
    try {
      await api.del(`/tokens/${api.seg(token.id)}`);
      tokens.setData((list) => list.filter((t) => t.id !== token.id));
      if (created?.id === token.id) setCreated(null);
      announce(`Token ${token.name} revoked`);
    } catch (failure) {
      setRowErrors((e) => ({ ...e, [token.id]: failure }));
    }
  }

  const toggle = (ability, on) => setAbilities((list) => (on ? [...new Set([...list, ability])] : list.filter((a) => a !== ability)));

  return html`<div class="page">
    <div class="page-head"><h1>API tokens</h1></div>
    <p class="muted">Tokens let scripts and integrations call the API as you (<code>Authorization: Bearer tkt_…</code>). A token never gets more than your own role allows.</p>
    ${created && html`<${Secret} title=${`Token “${created.name}” created`} secret=${created.token} onDone=${() => setCreated(null)} />`}
    <section class="panel" aria-labelledby="new-token-title">
      <h2 id="new-token-title" class="panel-title">New token</h2>
      <form class="stack" onSubmit=${create}>
        <${TextField} label="Name" value=${name} onInput=${setName} error=${fieldError(error, 'name')} maxlength="100" required />
        <fieldset class="checks">
          <legend>Abilities</legend>
          ${ABILITIES.map(([value, text]) => html`<${Checkbox} key=${value} label=${text} checked=${abilities.includes(value)}
            onChange=${(on) => toggle(value, on)} />`)}
          ${fieldError(error, 'abilities') && html`<p class="field-error" role="alert">${fieldError(error, 'abilities')}</p>`}
        </fieldset>
        <div><button type="submit" class="btn primary">Create token</button></div>
        <${Alert} error=${formError(error, ['name', 'abilities'])} />
      </form>
    </section>
    <section class="panel" aria-labelledby="tokens-title">
      <h2 id="tokens-title" class="panel-title">Your tokens</h2>
      <${Alert} error=${tokens.error} />
      ${tokens.data && !tokens.data.length && html`<p class="muted">No tokens yet.</p>`}
      ${tokens.data && tokens.data.length > 0 && html`<div class="table-wrap"><table class="data" aria-label="API tokens">
        <thead><tr><th scope="col">Name</th><th scope="col">Starts with</th><th scope="col">Abilities</th>
          <th scope="col" class="col-time">Created</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>
          ${tokens.data.map((t) => html`<tr key=${t.id}>
            <td id=${`token-${t.id}`}>${t.name}</td>
            <td class="mono">${t.prefix}…</td>
            <td>${(t.abilities || []).join(', ')}</td>
            <td class="col-time"><${Time} iso=${t.created_at} /></td>
            <td class="actions">
              <${ConfirmButton} label="Revoke" confirmLabel="Revoke now" describedBy=${`token-${t.id}`} onConfirm=${() => revoke(t)} />
              <${Alert} error=${rowErrors[t.id]} />
            </td>
          </tr>`)}
        </tbody>
      </table></div>`}
    </section>
  </div>`;
}

/** A secret shown this once: a read-only field, a copy button and a warning. */
export function Secret({ title, secret, onDone }) {
  const input = useRef(null);
  const [copied, setCopied] = useState('');
  useEffect(() => { input.current?.focus(); input.current?.select(); }, [secret]);
  return html`<section class="panel secret" aria-labelledby="secret-title">
    <h2 id="secret-title" class="panel-title">${title}</h2>
    <p class="warning"><strong>Copy it now.</strong> This secret is shown only once; Tickiti keeps only a hash of it.</p>
    <div class="secret-row">
      <label class="sr-only" for="secret-value">Secret</label>
      <input id="secret-value" class="mono" type="text" readonly value=${secret} ref=${input} />
      <button type="button" class="btn" onClick=${async () => setCopied(await copyText(secret, input.current) ? 'Copied.' : 'Selected: press Ctrl+C to copy.')}>Copy</button>
      <button type="button" class="btn quiet" onClick=${onDone}>Done</button>
    </div>
    <p class="hint" role="status">${copied}</p>
  </section>`;
}
