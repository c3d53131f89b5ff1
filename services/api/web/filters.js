// The ticket list's filter: a perspective's stored filter (same names as the
// list's query parameters) with the user's own choices on top, and the same
// rules applied locally so a live event can move a row at once, before the
// confirming refetch.

import { PRIORITIES } from './format.js';

export const FILTER_KEYS = ['status', 'priority', 'queue_id', 'assignee_id', 'tag', 'q'];
export const SORTS = [
  { value: '-updated_at', label: 'Last activity' },
  { value: '-created_at', label: 'Newest' },
  { value: 'created_at', label: 'Oldest' },
  { value: '-priority', label: 'Priority' },
];
export const DEFAULT_SORT = '-updated_at';

/**
 * Query parameters for GET /tickets: the perspective's filter, overridden by
 * every non-empty choice in `choices`; `assignee_id: "me"` becomes the user.
 */
export function buildQuery(perspectiveFilters, choices, me) {
  const query = {};
  for (const key of FILTER_KEYS) {
    const chosen = choices[key];
    const stored = perspectiveFilters?.[key];
    const value = chosen !== undefined && chosen !== '' ? chosen : stored;
    if (value !== undefined && value !== null && value !== '') query[key] = value;
  }
  for (const key of ['contact_id', 'updated_since']) {
    if (perspectiveFilters?.[key]) query[key] = perspectiveFilters[key];
  }
  if (query.assignee_id === 'me' && me) query.assignee_id = me;
  // The api sorts by last activity by default; sending the default is not needed.
  if (choices.sort && choices.sort !== DEFAULT_SORT) query.sort = choices.sort;
  return query;
}

const list = (value) => String(value).split(',').map((s) => s.trim()).filter(Boolean);

/**
 * Whether `ticket` passes `query` as far as the browser can tell; `null` when
 * it cannot (full text `q`, contact or time filters): then only the refetch knows.
 */
export function matches(ticket, query) {
  if (query.q || query.updated_since) return null;
  if (query.status && !list(query.status).includes(ticket.status)) return false;
  if (query.priority && !list(query.priority).includes(ticket.priority)) return false;
  if (query.queue_id && ticket.queue_id !== query.queue_id) return false;
  if (query.contact_id && ticket.contact_id !== query.contact_id) return false;
  if (query.assignee_id) {
    if (query.assignee_id === 'none') {
      if (ticket.assignee_id) return false;
    } else if (ticket.assignee_id !== query.assignee_id) {
      return false;
    }
  }
  if (query.tag && !(ticket.tags || []).includes(String(query.tag).trim().toLowerCase())) return false;
  return true;
}

const time = (iso) => Date.parse(iso) || 0;
const rank = (p) => PRIORITIES.indexOf(p);

/** Orders tickets as the api does for `sort` (ties: newest id first). */
export function compare(sort) {
  const byId = (a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
  switch (sort) {
    case '-created_at':
      return (a, b) => time(b.created_at) - time(a.created_at) || byId(a, b);
    case 'created_at':
      return (a, b) => time(a.created_at) - time(b.created_at) || -byId(a, b);
    case '-priority':
      return (a, b) => rank(b.priority) - rank(a.priority) || time(b.updated_at) - time(a.updated_at) || byId(a, b);
    default:
      return (a, b) => time(b.updated_at) - time(a.updated_at) || byId(a, b);
  }
}
