// Admin: the dispatcher and realtime processes that report in (CONTRACT §8,
// GET /system/health), up or down, refreshed live by system.worker_health.

import { html, useEffect } from '../../html.js';
import * as api from '../../api.js';
import { useBus } from '../../store.js';
import { Alert, Time, useLoad } from '../components.js';

export function AdminSystem() {
  const workers = useLoad(() => api.get('/system/health'), []);
  useEffect(() => { document.title = 'System · Tickiti'; }, []);
  useBus('refresh', () => workers.reload());
  useBus('live', ({ event }) => { if (event === 'system.worker_health') workers.reload(); });

  const rows = workers.data?.data || [];
  return html`<div class="page">
    <div class="page-head"><h1>System</h1></div>
    <p class="muted">Each dispatcher and realtime process reports in every few seconds. One silent for a minute is down, and every admin is told, once; it is up again at its next report.</p>
    <${Alert} error=${workers.error} />
    ${workers.data && !rows.length && html`<p class="muted">No process has reported in yet. Start <code>tickiti-dispatcher</code> and <code>tickiti-realtime</code>.</p>`}
    ${rows.length > 0 && html`<div class="table-wrap"><table class="data" aria-label="Processes">
      <thead><tr><th scope="col">Process</th><th scope="col">Service</th><th scope="col">Status</th>
        <th scope="col">Version</th><th scope="col" class="col-time">Started</th><th scope="col" class="col-time">Last report</th></tr></thead>
      <tbody>
        ${rows.map((w) => html`<tr key=${w.process_id}>
          <td class="break">${w.process_id}</td>
          <td>${w.service}</td>
          <td><span class=${`pill pill-worker-${w.status}`}>${w.status === 'up' ? 'Up' : 'Down'}</span></td>
          <td>${w.version}</td>
          <td><${Time} iso=${w.started_at} /></td>
          <td><${Time} iso=${w.last_seen_at} /></td>
        </tr>`)}
      </tbody>
    </table></div>`}
  </div>`;
}
