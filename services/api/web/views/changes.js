// Words for what changed on a ticket: the audit trail's entries, and the
// summary a 412 TICKET_CHANGED shows ("Status changed from Open to Pending
// by Ada. A new message arrived from Grace.").

import { userName, queueName } from '../store.js';
import { label, duration } from '../format.js';

const FIELDS = {
  status: 'Status',
  priority: 'Priority',
  assignee_id: 'Assignee',
  queue_id: 'Queue',
  subject: 'Subject',
  tags: 'Tags',
};

function show(field, value) {
  if (field === 'assignee_id') return value ? userName(value) : 'nobody';
  if (field === 'queue_id') return value ? queueName(value) : 'no queue';
  if (field === 'tags') return value && value.length ? value.join(', ') : 'none';
  if (field === 'subject') return `“${value}”`;
  return label(value);
}

const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/**
 * What changed between the ticket the user saw and the current one, with
 * who did it when the audit trail says so, and the messages that arrived.
 */
export function describeConflict({ before, after, oldMessages, newMessages, oldAudit, newAudit }) {
  const parts = [];
  const seenAudit = new Set((oldAudit || []).map((a) => a.id));
  const fresh = (newAudit || []).filter((a) => !seenAudit.has(a.id));
  const by = (field) => {
    const entry = [...fresh].reverse().find((a) => a.changes && a.changes[field]);
    return entry?.actor_user_id ? ` by ${userName(entry.actor_user_id)}` : '';
  };
  for (const [field, name] of Object.entries(FIELDS)) {
    if (before && after && !same(before[field], after[field])) {
      parts.push(`${name} changed from ${show(field, before[field])} to ${show(field, after[field])}${by(field)}`);
    }
  }
  const seen = new Set((oldMessages || []).map((m) => m.id));
  const added = (newMessages || []).filter((m) => !seen.has(m.id));
  if (added.length) {
    const authors = [...new Set(added.map((m) => (m.author_user_id ? userName(m.author_user_id) : 'the contact')))];
    parts.push(`${added.length === 1 ? 'A new message' : `${added.length} new messages`} arrived from ${authors.join(' and ')}`);
  }
  if (!parts.length) parts.push('Someone else changed the ticket since you loaded it');
  return `${parts.join('. ')}.`;
}

/** One audit entry as a sentence without its actor ("changed status from Open to Pending"). */
export function describeAudit(entry) {
  const c = entry.changes || {};
  switch (entry.action) {
    case 'ticket.created':
      return c.intervention ? `created the ticket for intervention ${c.intervention} (${c.uid})` : 'created the ticket';
    case 'ticket.updated': {
      const bits = [];
      for (const [field, change] of Object.entries(c)) {
        if (!change || typeof change !== 'object') continue;
        if (field === 'assignee_id') bits.push(change.to ? `assigned it to ${userName(change.to)}` : 'unassigned it');
        else if (field === 'queue_id') bits.push(change.to ? `moved it to ${queueName(change.to)}` : 'removed it from its queue');
        else if (field === 'tags') bits.push(`set tags to ${show('tags', change.to)}`);
        else if (field === 'subject') bits.push(`renamed it to ${show('subject', change.to)}`);
        else bits.push(`changed ${(FIELDS[field] || field).toLowerCase()} from ${label(change.from)} to ${label(change.to)}`);
      }
      return bits.join(', ') || 'changed the ticket';
    }
    case 'ticket.deleted':
      return 'deleted the ticket';
    case 'message.deleted':
      return 'deleted a message';
    case 'time_entry.created':
      return `logged ${duration(c.minutes || 0)}${c.note ? ` (${c.note})` : ''}`;
    case 'time_entry.updated':
      return 'changed a time entry';
    case 'time_entry.deleted':
      return `removed a time entry of ${duration(c.minutes || 0)}`;
    case 'intervention.submitted':
      return 'submitted the intervention';
    case 'intervention.accepted': {
      const note = typeof c.ticket_audit === 'string' ? c.ticket_audit : '';
      return `the remote accepted the intervention${note ? `: ${note}` : ''}`;
    }
    case 'intervention.template_failed':
      return `a ${c.template || ''} template failed to render${c.error ? `: ${c.error}` : ''}`;
    default:
      return entry.action;
  }
}
