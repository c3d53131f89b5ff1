// The ticket list: a perspective (or all tickets) with filters, search and
// "Load more". Live events patch rows in place at once (keyed, so focus and
// scroll stay put) and a short-delayed refetch confirms what the server says.

import { html, useState, useEffect, useRef, useMemo } from '../html.js';
import * as api from '../api.js';
import { state, update, useStore, useBus, announce, userName } from '../store.js';
import { navigate } from '../router.js';
import { useShortcut } from '../keys.js';
import { STATUSES, PRIORITIES, label } from '../format.js';
import { buildQuery, matches, compare, SORTS, DEFAULT_SORT } from '../filters.js';
import { Alert, Select, Time, Pill, fieldError, formError, isEscalated } from './components.js';

const PAGE = 50;
const CHOICE_KEYS = ['status', 'priority', 'queue_id', 'assignee_id', 'sort'];

export function TicketList({ route, perspectiveId }) {
  const store = useStore();
  const me = store.user?.id;
  const perspective = perspectiveId ? store.perspectives.find((p) => p.id === perspectiveId) : null;
  const waitingForPerspective = perspectiveId && !perspective;

  const choices = {};
  for (const key of [...CHOICE_KEYS, 'q']) choices[key] = route.query.get(key) || '';
  const query = buildQuery(perspective?.filters, choices, me);
  const queryKey = JSON.stringify(query);
  const sort = choices.sort || DEFAULT_SORT;

  const [list, setList] = useState({ rows: [], next: null, loaded: false });
  const [error, setError] = useState(null);
  const [moreError, setMoreError] = useState(null);
  const [loadingMore, setLoadingMore] = useState(false);
  const listRef = useRef(list);
  listRef.current = list;
  const tableRef = useRef(null);
  const generation = useRef(0);
  const inflight = useRef(null);
  const again = useRef(false);
  const reconcileTimer = useRef(null);
  const announced = useRef(new Map());

  const title = perspective ? perspective.name : perspectiveId ? 'Perspective' : 'All tickets';
  const here = route.path + (location.search || '');
  useEffect(() => {
    document.title = `${title} · Tickiti`;
    if (state.lastListUrl !== here) update({ lastListUrl: here });
  }, [title, here]);

  /** Fetches the rows on screen again (all of them, up to 200) and merges. */
  async function refetch(reset) {
    if (inflight.current && !reset) {
      again.current = true;
      return;
    }
    const gen = generation.current;
    const job = (async () => {
      do {
        again.current = false;
        const fresh = reset;
        const had = fresh ? 0 : listRef.current.rows.length;
        const limit = Math.min(200, Math.max(PAGE, had));
        try {
          const page = await api.get('/tickets', { query: { ...query, limit } });
          if (gen !== generation.current) return;
          setList((prev) => {
            let rows = page.data || [];
            let next = page.next_cursor || null;
            // More than 200 loaded: keep the older ones the refetch did not reach.
            if (!fresh && prev.rows.length > limit && next) {
              const seen = new Set(rows.map((t) => t.id));
              rows = rows.concat(prev.rows.slice(limit).filter((t) => !seen.has(t.id)));
              next = prev.next;
            }
            return { rows, next, loaded: true };
          });
          setError(null);
        } catch (failure) {
          if (gen === generation.current) setError(failure);
        }
        reset = false; // eslint-disable-line no-param-reassign
      } while (again.current && gen === generation.current);
    })();
    inflight.current = job;
    await job;
    if (inflight.current === job) inflight.current = null;
  }

  useEffect(() => {
    if (waitingForPerspective) return undefined;
    generation.current += 1;
    inflight.current = null;
    setList({ rows: [], next: null, loaded: false });
    setError(null);
    setMoreError(null);
    refetch(true);
    return () => clearTimeout(reconcileTimer.current);
  }, [queryKey, waitingForPerspective]); // eslint-disable-line react-hooks/exhaustive-deps

  function scheduleReconcile(delay = 400) {
    clearTimeout(reconcileTimer.current);
    reconcileTimer.current = setTimeout(() => refetch(false), delay);
  }

  useBus('refresh', () => { if (!waitingForPerspective) refetch(false); });

  useBus('live', ({ event, data }) => {
    if (waitingForPerspective || !list.loaded) return;
    if (event.startsWith('ticket.') && event !== 'ticket.message.created' && data?.id) {
      applyTicket(event, data);
      scheduleReconcile();
    } else if ((event === 'message.created' || event === 'message.deleted') && data?.ticket_id) {
      const row = listRef.current.rows.find((t) => t.id === data.ticket_id);
      if (row && event === 'message.created' && data.created_at) {
        applyTicket('ticket.touched', { ...row, updated_at: data.created_at });
        if (data.author_user_id !== me) say(row, `New message on ${row.code}`);
      }
      scheduleReconcile(row ? 400 : 150);
    }
  });

  function say(ticket, text) {
    const last = announced.current.get(ticket.id) || 0;
    if (Date.now() - last < 1500) return;
    announced.current.set(ticket.id, Date.now());
    announce(text);
  }

  function applyTicket(event, ticket) {
    const rows = listRef.current.rows;
    const index = rows.findIndex((t) => t.id === ticket.id);
    const fits = event === 'ticket.deleted' ? false : matches(ticket, query);
    let next = rows;
    if (index >= 0 && fits === false) {
      next = rows.filter((t) => t.id !== ticket.id);
      if (event !== 'ticket.touched') say(ticket, `Ticket ${ticket.code} ${event === 'ticket.deleted' ? 'was deleted' : 'left this list'}`);
    } else if (index >= 0) {
      next = rows.slice();
      next[index] = { ...rows[index], ...ticket };
      if (event !== 'ticket.touched') say(ticket, `Ticket ${ticket.code} updated`);
    } else if (fits === true) {
      // Only where it belongs in the loaded range: older ones arrive with paging.
      const last = rows[rows.length - 1];
      if (!listRef.current.next || !last || compare(sort)(ticket, last) <= 0) {
        next = rows.concat([ticket]);
        say(ticket, event === 'ticket.created' ? `New ticket ${ticket.code}: ${ticket.subject}` : `Ticket ${ticket.code} updated`);
      }
    }
    if (next !== rows) {
      next = next.slice().sort(compare(sort));
      // Frames can come several per tick: the next one builds on this one.
      listRef.current = { ...listRef.current, rows: next };
      setList((prev) => ({ ...prev, rows: next }));
    }
  }

  async function loadMore() {
    if (!list.next || loadingMore) return;
    setLoadingMore(true);
    setMoreError(null);
    const gen = generation.current;
    try {
      const page = await api.get('/tickets', { query: { ...query, limit: PAGE, cursor: list.next } });
      if (gen !== generation.current) return;
      setList((prev) => {
        const seen = new Set(prev.rows.map((t) => t.id));
        return { rows: prev.rows.concat((page.data || []).filter((t) => !seen.has(t.id))), next: page.next_cursor || null, loaded: true };
      });
    } catch (failure) {
      setMoreError(failure);
    } finally {
      setLoadingMore(false);
    }
  }

  function setChoice(key, value) {
    const params = new URLSearchParams(route.query);
    if (value) params.set(key, value);
    else params.delete(key);
    const qs = params.toString();
    navigate(route.path + (qs ? `?${qs}` : ''), { replace: true });
  }

  function clearChoices() {
    const params = new URLSearchParams(route.query);
    for (const key of [...CHOICE_KEYS, 'q']) params.delete(key);
    const qs = params.toString();
    navigate(route.path + (qs ? `?${qs}` : ''), { replace: true });
  }

  // j / k move through the rows by focusing their links; Enter then opens.
  function move(step) {
    const links = [...(tableRef.current?.querySelectorAll('a.subject-link') || [])];
    if (!links.length) return;
    const at = links.indexOf(document.activeElement);
    const next = at < 0 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, at + step));
    links[next].focus();
  }
  useShortcut('j', () => move(1));
  useShortcut('k', () => move(-1));

  const assigneeOptions = useMemo(() => [['', 'Anyone'], ['me', 'Me'], ['none', 'Unassigned'],
    ...store.users.filter((u) => u.id !== me).map((u) => [u.id, u.name])], [store.users, me]);
  const queueOptions = useMemo(() => [['', 'Any queue'], ...store.queues.map((q) => [q.id, q.name])], [store.queues]);
  const anyChoice = CHOICE_KEYS.some((k) => choices[k]) || choices.q;
  const fieldProblem = (f) => fieldError(error, f) || fieldError(error, `filters.${f}`);

  if (perspectiveId && !perspective && store.perspectives.length) {
    return html`<div class="page"><h1>Perspective not found</h1>
      <p>It may have been deleted. <a href="/">Show all tickets</a>.</p></div>`;
  }

  return html`
    <div class="page page-list">
      <div class="page-head">
        <div>
          <h1>${title}</h1>
          ${choices.q && html`<p class="muted">Matching “${choices.q}”</p>`}
        </div>
      </div>
      <div class="filters" role="group" aria-label="Filters">
        <${Select} label="Status" value=${choices.status} onChange=${(v) => setChoice('status', v)}
          options=${[['', 'Any status'], ...STATUSES.map((s) => [s, label(s)])]} error=${fieldProblem('status')} />
        <${Select} label="Priority" value=${choices.priority} onChange=${(v) => setChoice('priority', v)}
          options=${[['', 'Any priority'], ...PRIORITIES.map((p) => [p, label(p)])]} error=${fieldProblem('priority')} />
        <${Select} label="Queue" value=${choices.queue_id} onChange=${(v) => setChoice('queue_id', v)}
          options=${queueOptions} error=${fieldProblem('queue_id')} />
        <${Select} label="Assignee" value=${choices.assignee_id} onChange=${(v) => setChoice('assignee_id', v)}
          options=${assigneeOptions} error=${fieldProblem('assignee_id')} />
        <${Select} label="Sort" value=${choices.sort || DEFAULT_SORT} onChange=${(v) => setChoice('sort', v === DEFAULT_SORT ? '' : v)}
          options=${SORTS.map((s) => [s.value, s.label])} error=${fieldProblem('sort')} />
        ${anyChoice && html`<button type="button" class="btn quiet filters-clear" onClick=${clearChoices}>Clear filters</button>`}
      </div>
      ${fieldProblem('q') && html`<${Alert}>Search: ${fieldProblem('q')}<//>`}
      <${Alert} error=${formError(error, ['status', 'priority', 'queue_id', 'assignee_id', 'sort', 'q', 'filters'])} />
      ${error && html`<p><button type="button" class="btn" onClick=${() => refetch(false)}>Retry</button></p>`}
      <div class="table-wrap">
        <table class="tickets" aria-label="Tickets" ref=${tableRef} aria-busy=${list.loaded ? undefined : 'true'}>
          <thead>
            <tr>
              <th scope="col" class="col-code">Code</th>
              <th scope="col">Subject</th>
              <th scope="col" class="col-status">Status</th>
              <th scope="col" class="col-priority">Priority</th>
              <th scope="col" class="col-assignee">Assignee</th>
              <th scope="col" class="col-time">Last activity</th>
            </tr>
          </thead>
          <tbody>
            ${list.rows.map((t) => html`<${Row} key=${t.id} ticket=${t} lock=${store.locks[t.id]} />`)}
            ${list.loaded && !list.rows.length && html`<tr class="empty"><td colspan="6">No tickets here${choices.q ? ' match this search' : ''}.</td></tr>`}
            ${!list.loaded && !error && html`<tr class="empty"><td colspan="6">Loading tickets…</td></tr>`}
          </tbody>
        </table>
      </div>
      ${list.next && html`<div class="more">
        <button type="button" class="btn" onClick=${loadMore} aria-busy=${loadingMore ? 'true' : undefined}>Load more</button>
        <${Alert} error=${moreError} />
      </div>`}
    </div>`;
}

function Row({ ticket, lock }) {
  const assignee = ticket.assignee_id ? userName(ticket.assignee_id) : 'Unassigned';
  const open = (event) => {
    // A click anywhere on the row opens it; the link stays the one control.
    if (event.target.closest('a, button, input, select, textarea')) return;
    if (window.getSelection()?.toString()) return;
    navigate(`/tickets/${ticket.id}`);
  };
  return html`<tr class=${lock ? 'is-locked' : ''} onClick=${open}>
    <td class="col-code mono">${ticket.code}</td>
    <td class="col-subject">
      <a class="subject-link" href=${`/tickets/${ticket.id}`}>${ticket.subject}</a>
      ${lock && html`<span class="lock-badge">${lock.user.name} is replying</span>`}
      ${isEscalated(ticket) && html`<span class="sla-badge">Overdue</span>`}
      <div class="row-sub">
        <span class="muted">${ticket.contact?.name || ticket.contact?.email || ''}</span>
        <span class="row-meta muted"><span class="mono">${ticket.code}</span> · ${label(ticket.priority)} · ${assignee}</span>
      </div>
    </td>
    <td class="col-status"><${Pill} kind="status" value=${ticket.status} /></td>
    <td class="col-priority"><${Pill} kind="priority" value=${ticket.priority} /></td>
    <td class="col-assignee">${ticket.assignee_id ? assignee : html`<span class="muted">Unassigned</span>`}</td>
    <td class="col-time"><${Time} iso=${ticket.updated_at} /></td>
  </tr>`;
}
