// The ticket's side panel: status, priority, assignee and queue (each saved
// at once with If-Match), tags, time entries and the audit trail.

import { html, useState, useEffect, useMemo } from '../html.js';
import * as api from '../api.js';
import { useStore, userName, announce } from '../store.js';
import { STATUSES, PRIORITIES, label, duration } from '../format.js';
import { Alert, Select, TextField, Time, clockText, fieldError, formError, useNow } from './components.js';
import { describeAudit } from './changes.js';

export function TicketSide({ ticket, setTicket, onConflict, entries, audit }) {
  return html`
    <${ServiceLevels} ticket=${ticket} />
    <${Properties} ticket=${ticket} setTicket=${setTicket} onConflict=${onConflict} />
    <${Tags} ticket=${ticket} setTicket=${setTicket} onConflict=${onConflict} />
    <${TimeEntries} ticket=${ticket} entries=${entries} audit=${audit} />
    <${AuditTrail} audit=${audit} />`;
}

/** PATCH one change with If-Match; a 412 refreshes and says what changed. */
async function saveChange(ticket, body, setTicket, onConflict) {
  try {
    const saved = await api.patch(`/tickets/${api.seg(ticket.id)}`, body, { ifMatch: ticket.version });
    setTicket(saved);
    return { ok: true };
  } catch (failure) {
    if (failure instanceof api.ApiError && failure.status === 412) {
      const what = await onConflict(failure.problem.ticket);
      return { ok: false, conflict: `Not saved: the ticket changed meanwhile. ${what} Choose again to apply your change.` };
    }
    return { ok: false, error: failure };
  }
}

function Properties({ ticket, setTicket, onConflict }) {
  const store = useStore();
  const [pending, setPending] = useState({}); // field -> value being saved, or kept after an error
  const [error, setError] = useState(null);
  const [conflict, setConflict] = useState('');

  async function change(field, raw) {
    const value = raw === '' ? null : raw;
    setPending((p) => ({ ...p, [field]: raw }));
    setError(null);
    setConflict('');
    const result = await saveChange(ticket, { [field]: value }, setTicket, onConflict);
    if (result.ok) {
      setPending((p) => { const n = { ...p }; delete n[field]; return n; });
      announce(`${label(field.replace('_id', ''))} saved`);
    } else if (result.conflict) {
      setPending({});
      setConflict(result.conflict);
    } else {
      setError(result.error); // the choice stays shown, with the problem beside it
    }
  }

  const value = (field) => (field in pending ? pending[field] : ticket[field] ?? '');
  const users = store.users;
  // A user who is no longer listed still shows as the current assignee.
  const assigneeOptions = useMemo(() => {
    const options = [['', 'Unassigned'], ...users.map((u) => [u.id, u.name])];
    if (ticket.assignee_id && !users.some((u) => u.id === ticket.assignee_id)) options.push([ticket.assignee_id, 'Unknown user']);
    return options;
  }, [users, ticket.assignee_id]);
  const queueOptions = useMemo(() => {
    const options = [['', 'No queue'], ...store.queues.map((q) => [q.id, q.name])];
    if (ticket.queue_id && !store.queues.some((q) => q.id === ticket.queue_id)) options.push([ticket.queue_id, 'Unknown queue']);
    return options;
  }, [store.queues, ticket.queue_id]);

  return html`<section class="panel" aria-labelledby="props-title">
    <h2 id="props-title" class="panel-title">Properties</h2>
    <div class="props">
      <${Select} label="Status" value=${value('status')} onChange=${(v) => change('status', v)}
        options=${STATUSES.map((s) => [s, label(s)])} error=${fieldError(error, 'status')} />
      <${Select} label="Priority" value=${value('priority')} onChange=${(v) => change('priority', v)}
        options=${PRIORITIES.map((p) => [p, label(p)])} error=${fieldError(error, 'priority')} />
      <${Select} label="Assignee" value=${value('assignee_id')} onChange=${(v) => change('assignee_id', v)}
        options=${assigneeOptions} error=${fieldError(error, 'assignee_id')} />
      <${Select} label="Queue" value=${value('queue_id')} onChange=${(v) => change('queue_id', v)}
        options=${queueOptions} error=${fieldError(error, 'queue_id')} />
    </div>
    ${conflict && html`<div class="alert warn" role="alert">${conflict}</div>`}
    <${Alert} error=${formError(error, ['status', 'priority', 'assignee_id', 'queue_id'])} />
  </section>`;
}

/** The ticket's service-level clocks, when a policy applies. */
function ServiceLevels({ ticket }) {
  const current = useNow();
  const clocks = ticket.sla || [];
  if (!clocks.length) return null;
  return html`<section class="panel" aria-labelledby="sla-title">
    <h2 id="sla-title" class="panel-title">Service levels</h2>
    <ul class="sla-list">
      ${clocks.map((clock) => {
        const { tone, text } = clockText(clock, current);
        // Overdue: since when; otherwise when it is due or was met.
        const at = clock.state === 'breached' ? clock.breached_at : clock.due_at || clock.fulfilled_at;
        return html`<li key=${clock.metric} class=${`sla sla-${tone || 'plain'}`}>
          <span>${text}</span>
          ${at && html`<span class="muted small"><${Time} iso=${at} /></span>`}
        </li>`;
      })}
    </ul>
  </section>`;
}

const splitTags = (text) => text.split(',').map((t) => t.trim()).filter(Boolean);

function Tags({ ticket, setTicket, onConflict }) {
  const shown = (ticket.tags || []).join(', ');
  const [text, setText] = useState(shown);
  const [dirty, setDirty] = useState(false);
  const [error, setError] = useState(null);
  const [conflict, setConflict] = useState('');
  // Follow changes made elsewhere unless the user is editing.
  useEffect(() => { if (!dirty) setText(shown); }, [shown]); // eslint-disable-line react-hooks/exhaustive-deps

  async function save(event) {
    event.preventDefault();
    setError(null);
    setConflict('');
    const result = await saveChange(ticket, { tags: splitTags(text) }, setTicket, onConflict);
    if (result.ok) {
      setDirty(false);
      announce('Tags saved');
    } else if (result.conflict) {
      setConflict(result.conflict.replace('Choose again', 'Save again'));
    } else {
      setError(result.error);
    }
  }

  return html`<section class="panel" aria-labelledby="tags-title">
    <h2 id="tags-title" class="panel-title">Tags</h2>
    ${ticket.tags?.length ? html`<ul class="chips">${ticket.tags.map((t) => html`<li class="chip" key=${t}>${t}</li>`)}</ul>`
      : html`<p class="muted small">No tags.</p>`}
    <form class="inline-form" onSubmit=${save}>
      <${TextField} label="Tags" value=${text} onInput=${(v) => { setText(v); setDirty(true); }}
        hint="Separate tags with commas." error=${fieldError(error, 'tags')} autocomplete="off" />
      <button type="submit" class="btn">Save tags</button>
    </form>
    ${conflict && html`<div class="alert warn" role="alert">${conflict}</div>`}
    <${Alert} error=${formError(error, ['tags'])} />
  </section>`;
}

function TimeEntries({ ticket, entries, audit }) {
  const [minutes, setMinutes] = useState('');
  const [note, setNote] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const list = entries.data || [];
  const total = list.reduce((sum, e) => sum + (e.minutes || 0), 0);

  async function add(event) {
    event.preventDefault();
    if (busy) return;
    const n = Number(minutes);
    if (!Number.isInteger(n) || n < 1) {
      setError(new api.ApiError(422, { detail: 'Minutes must be a whole number of at least 1.', errors: [{ field: 'minutes', message: 'must be a whole number of at least 1' }] }));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const body = { minutes: n };
      if (note.trim()) body.note = note.trim();
      await api.post(`/tickets/${api.seg(ticket.id)}/time-entries`, body);
      setMinutes('');
      setNote('');
      announce(`${duration(n)} logged`);
      entries.reload();
      audit.reload();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  return html`<section class="panel" aria-labelledby="time-title">
    <h2 id="time-title" class="panel-title">Time <span class="muted small">${list.length ? duration(total) : ''}</span></h2>
    <${Alert} error=${entries.error} />
    ${list.length ? html`<ul class="time-list">
      ${list.map((e) => html`<li key=${e.id}>
        <span class="time-minutes">${duration(e.minutes)}</span>
        <span class="muted small">${userName(e.user_id)} · <${Time} iso=${e.created_at} /></span>
        ${e.note && html`<span class="time-note">${e.note}</span>`}
      </li>`)}
    </ul>` : entries.data && html`<p class="muted small">No time logged.</p>`}
    <form class="time-form" onSubmit=${add}>
      <${TextField} label="Minutes" type="number" min="1" max="100000" step="1" inputmode="numeric"
        value=${minutes} onInput=${setMinutes} error=${fieldError(error, 'minutes')} className="field-minutes" />
      <${TextField} label="Note" value=${note} onInput=${setNote} error=${fieldError(error, 'note')} maxlength="2000" />
      <button type="submit" class=${`btn${busy ? ' busy' : ''}`}>Add time</button>
    </form>
    <${Alert} error=${formError(error, ['minutes', 'note', 'user_id'])} />
  </section>`;
}

function AuditTrail({ audit }) {
  const list = [...(audit.data || [])].reverse();
  return html`<section class="panel" aria-labelledby="audit-title">
    <h2 id="audit-title" class="panel-title">Audit trail</h2>
    <${Alert} error=${audit.error} />
    ${list.length ? html`<ol class="audit">
      ${list.map((a) => html`<li key=${a.id}>
        <span><strong>${a.actor_user_id ? userName(a.actor_user_id) : 'Tickiti'}</strong> ${describeAudit(a)}</span>
        <span class="muted small"><${Time} iso=${a.created_at} /></span>
      </li>`)}
    </ol>` : audit.data && html`<p class="muted small">Nothing recorded yet.</p>`}
  </section>`;
}
