// App-wide state that several screens show at once (who is signed in,
// perspectives and their counts, unacknowledged mentions, the realtime
// connection, colleagues' reply locks, users and queues) and a tiny event bus
// for "something changed, refetch". Screen-local state stays in the views.

import { useEffect, useReducer, useRef } from './html.js';

export const state = {
  user: null,            // the signed-in user (GET /me without csrf_token)
  perspectives: [],      // GET /perspectives
  counts: {},            // perspective id -> count
  mentionsUnread: null,  // number of unacknowledged mentions (null: not known yet)
  notificationsUnread: null, // number of unread notifications (null: not known yet)
  connection: 'reconnecting', // 'connected' | 'reconnecting'
  locks: {},             // ticket id -> {user: {id, name}, expires_at}
  users: [],             // GET /users
  queues: [],            // GET /queues
  announcement: '',      // text for the polite live region
  lastListUrl: '/',      // where "back to the list" goes
};

const subscribers = new Set();
let scheduled = false;

/** Changes state and re-renders subscribers once per microtask. */
export function update(patch) {
  Object.assign(state, typeof patch === 'function' ? patch(state) : patch);
  if (!scheduled) {
    scheduled = true;
    queueMicrotask(() => {
      scheduled = false;
      for (const fn of [...subscribers]) fn();
    });
  }
}

/** Re-renders the calling component whenever the shared state changes. */
export function useStore() {
  const [, force] = useReducer((n) => n + 1, 0);
  useEffect(() => {
    subscribers.add(force);
    return () => subscribers.delete(force);
  }, []);
  return state;
}

export const userName = (id) => {
  if (!id) return null;
  const user = state.users.find((u) => u.id === id);
  return user ? user.name : 'Unknown user';
};
export const queueName = (id) => {
  if (!id) return null;
  const queue = state.queues.find((q) => q.id === id);
  return queue ? queue.name : 'Unknown queue';
};

// --- The polite live region ---------------------------------------------------
let clearTimer = null;
/** Says `text` through the aria-live region, without moving focus. */
export function announce(text) {
  // Emptied first so that the same sentence twice is announced twice.
  update({ announcement: '' });
  setTimeout(() => update({ announcement: text }), 50);
  clearTimeout(clearTimer);
  clearTimer = setTimeout(() => update({ announcement: '' }), 7000);
}

// --- Bus ------------------------------------------------------------------------
// 'refresh': refetch everything on screen (a resume failed, or a poll tick
// while realtime is away). 'live': one realtime event frame {event, data}.
const listeners = { refresh: new Set(), live: new Set() };

export function on(kind, fn) {
  listeners[kind].add(fn);
  return () => listeners[kind].delete(fn);
}

export function emit(kind, payload) {
  for (const fn of [...listeners[kind]]) {
    try { fn(payload); } catch (error) { reportBug(error); }
  }
}

/** A listener's bug must not break the others; it is shown, not thrown. */
export function reportBug(error) {
  // A programming error, not an API answer: keep it visible to developers
  // without turning it into an uncaught exception.
  console.warn('tickiti:', error); // eslint-disable-line no-console
}

/** Subscribes a component to a bus kind for its lifetime (always calling its latest `fn`). */
export function useBus(kind, fn) {
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => on(kind, (payload) => latest.current(payload)), [kind]);
}
