// Admin: pairing with the realtime service (CONTRACT §5). "Start pairing"
// shows the one-time pin once, with the command to enter it; the page then
// watches the registration until it is bound.

import { html, useState, useEffect } from '../../html.js';
import * as api from '../../api.js';
import * as live from '../../live.js';
import { announce } from '../../store.js';
import { Alert, ConfirmButton, Time, useLoad } from '../components.js';

export function AdminRealtime() {
  const reg = useLoad(() => api.get('/realtime/registration'), []);
  const [pin, setPin] = useState(null);
  const [error, setError] = useState(null);
  const status = reg.data?.status;

  useEffect(() => { document.title = 'Realtime · Tickiti'; }, []);
  // While a pin waits to be entered, look every few seconds.
  useEffect(() => {
    if (status !== 'pending') return undefined;
    const timer = setInterval(() => reg.reload(), 3000);
    return () => clearInterval(timer);
  }, [status]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    if (status === 'bound') {
      setPin(null);
      live.retryNow();
    }
  }, [status]);

  async function start() {
    setError(null);
    try {
      const answer = await api.post('/realtime/registration');
      setPin(answer);
      reg.setData({ status: 'pending', expires_at: answer.expires_at });
      announce('Pairing started. Enter the pin on the realtime server.');
    } catch (failure) {
      setError(failure);
    }
  }

  async function unbind() {
    setError(null);
    try {
      await api.del('/realtime/registration');
      setPin(null);
      reg.setData({ status: 'unbound' });
      announce(status === 'bound' ? 'Realtime unbound' : 'Pairing cancelled');
    } catch (failure) {
      setError(failure);
    }
  }

  const words = { bound: 'Bound', pending: 'Pending: waiting for the pin', unbound: 'Unbound' };
  return html`<div class="page">
    <div class="page-head"><h1>Realtime</h1></div>
    <p class="muted">The realtime service pushes changes to every open browser within a second. Without it the app refreshes itself every few seconds.</p>
    <${Alert} error=${reg.error} />
    ${reg.data && html`<section class="panel" aria-labelledby="rt-status-title">
      <h2 id="rt-status-title" class="panel-title">Pairing</h2>
      <dl class="facts">
        <dt>Status</dt><dd><span class=${`pill pill-rt-${status}`}>${words[status] || status}</span></dd>
        ${reg.data.public_url && html`<dt>Browsers connect to</dt><dd class="mono break">${reg.data.public_url}</dd>`}
        ${reg.data.bound_at && html`<dt>Bound</dt><dd><${Time} iso=${reg.data.bound_at} /></dd>`}
        ${status === 'pending' && reg.data.expires_at && html`<dt>Pin expires</dt><dd><${Time} iso=${reg.data.expires_at} /></dd>`}
        ${reg.data.reason && html`<dt>Last pairing</dt><dd>${reg.data.reason === 'voided' ? 'voided after 5 wrong pins' : reg.data.reason}</dd>`}
      </dl>
      ${pin && html`<div class="pin-box">
        <p>Run this on the realtime server within 10 minutes. The pin is shown only now.</p>
        <p class="pin mono">${pin.pin}</p>
        <pre class="command"><code>tickiti-realtime pair ${pin.pin}</code></pre>
      </div>`}
      <div class="toolbar">
        ${status !== 'bound' && html`<button type="button" class="btn primary" onClick=${start}>Start pairing</button>`}
        ${status === 'bound' && html`<${ConfirmButton} label="Unbind" confirmLabel="Unbind now" onConfirm=${unbind} />`}
        ${status === 'pending' && html`<button type="button" class="btn quiet" onClick=${unbind}>Cancel pairing</button>`}
      </div>
      <${Alert} error=${error} />
    </section>`}
  </div>`;
}
