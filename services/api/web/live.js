// The tab's one websocket to the realtime service (CONTRACT §5): a token from
// POST /realtime/ticket, hello (with resume after a drop), welcome, frames;
// reconnects with full-jitter exponential backoff (0.5 s .. 20 s), fetching a
// fresh token after a 4401. Reply locks held by this tab are renewed every
// 10 s and taken again after a reconnect.
//
// Without realtime (unpaired: 409, or unreachable) the app keeps working: the
// Connection status reads "Reconnecting…" and app.js polls over REST.

import * as api from './api.js';
import { state, update, emit } from './store.js';

const BASE_DELAY = 500;
const MAX_DELAY = 20000;
/** Unpaired install: asking again soon would only repeat the same 409. */
const UNPAIRED_DELAY = 30000;
const LOCK_RENEW = 10000;
/** A lock lasts 30 s after its last renewal; past that, a stale banner is wrong. */
const LOCK_TTL = 30000;

let running = false;
let socket = null;
let grant = null;          // {url, token, expires_at} from POST /realtime/ticket
let epoch = null;          // of the last welcome
let lastOffset = null;     // of the last frame seen
let attempt = 0;
let retryTimer = null;
let staleLocksTimer = null;
const held = new Map();    // ticket id -> renewal interval

function setConnection(value) {
  if (state.connection !== value) update({ connection: value });
}

/** Starts the connection (after sign-in). */
export function start() {
  if (running) return;
  running = true;
  attempt = 0;
  connect();
}

/** Closes everything (sign-out). */
export function stop() {
  running = false;
  clearTimeout(retryTimer);
  clearTimeout(staleLocksTimer);
  retryTimer = null;
  for (const timer of held.values()) clearInterval(timer);
  held.clear();
  const ws = socket;
  socket = null;
  if (ws) ws.close(1000, 'signed out');
  grant = null;
  epoch = null;
  lastOffset = null;
  setConnection('reconnecting');
  update({ locks: {} });
}

/** Tries again now (after pairing, or when the browser is back online). */
export function retryNow() {
  if (!running || socket) return;
  clearTimeout(retryTimer);
  retryTimer = null;
  attempt = 0;
  connect();
}

function schedule(delay) {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, delay);
}

/** Full jitter between 0.5 s and an exponential ceiling that stops at 20 s. */
function backoff() {
  const ceiling = Math.min(MAX_DELAY, BASE_DELAY * 2 ** attempt);
  attempt += 1;
  return BASE_DELAY + Math.random() * (ceiling - BASE_DELAY);
}

async function connect() {
  retryTimer = null;
  if (!running || socket) return;
  try {
    // Tokens are reused for reconnects until close to expiry (or a 4401).
    if (!grant || Date.parse(grant.expires_at) - Date.now() < 15000) {
      grant = await api.post('/realtime/ticket');
    }
  } catch (error) {
    grant = null;
    if (!running || error.status === 401) return; // signed out meanwhile
    schedule(error.status === 409 ? UNPAIRED_DELAY : backoff());
    return;
  }
  if (!running || socket) return; // stopped, or a racing attempt won
  let ws;
  try {
    ws = new WebSocket(grant.url);
  } catch {
    grant = null; // a URL the browser refuses: ask for another one later
    schedule(backoff());
    return;
  }
  socket = ws;
  ws.onopen = () => {
    const hello = { type: 'hello', token: grant?.token };
    if (epoch !== null && lastOffset !== null) hello.resume = { epoch, offset: lastOffset };
    ws.send(JSON.stringify(hello));
  };
  ws.onmessage = (message) => {
    if (socket !== ws) return;
    let frame;
    try { frame = JSON.parse(message.data); } catch { return; }
    if (frame && typeof frame === 'object') handleFrame(frame);
  };
  ws.onerror = () => { /* a close event follows; it decides what to do */ };
  ws.onclose = (event) => {
    if (socket !== ws) return;
    socket = null;
    setConnection('reconnecting');
    clearTimeout(staleLocksTimer);
    staleLocksTimer = setTimeout(() => update({ locks: {} }), LOCK_TTL);
    if (!running) return;
    if (event.code === 4401) grant = null; // fetch a fresh token first
    schedule(backoff());
  };
}

function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN && state.connection === 'connected') {
    socket.send(JSON.stringify(frame));
  }
}

function handleFrame(frame) {
  switch (frame.type) {
    case 'welcome': {
      attempt = 0;
      clearTimeout(staleLocksTimer);
      // recovered: every missed frame follows on this socket; otherwise
      // whatever is on screen may be stale and is fetched again.
      const recovered = frame.recovered === true;
      epoch = frame.epoch ?? null;
      if (!recovered) {
        lastOffset = typeof frame.offset === 'number' ? frame.offset : null;
        update({ locks: {} });
      }
      setConnection('connected');
      for (const ticketId of held.keys()) send({ type: 'lock', ticket_id: ticketId });
      emit('live', { event: 'connected', data: { recovered } });
      if (!recovered) emit('refresh', { reason: 'welcome' });
      break;
    }
    case 'event':
      if (typeof frame.offset === 'number') lastOffset = frame.offset;
      dispatch(frame.event, frame.data || {});
      break;
    case 'lock.denied':
      // Someone else holds the lock we asked for: show who.
      dispatch('lock.acquired', frame);
      break;
    case 'pong':
    case 'error':
      break;
    default:
      // Tolerate servers that send these names as frame types.
      if (['perspective.counts', 'lock.acquired', 'lock.released', 'mention.created', 'mention.acknowledged'].includes(frame.type)) {
        dispatch(frame.type, frame.data || frame);
      }
  }
}

function dispatch(name, data) {
  const me = state.user?.id;
  switch (name) {
    case 'perspective.counts': {
      const counts = { ...state.counts };
      for (const c of data.counts || []) counts[c.perspective_id] = c.count;
      update({ counts });
      return;
    }
    case 'lock.acquired': {
      if (!data.ticket_id || !data.user) return;
      const locks = { ...state.locks };
      if (data.user.id === me) delete locks[data.ticket_id];
      else locks[data.ticket_id] = { user: data.user, expires_at: data.expires_at };
      update({ locks });
      return;
    }
    case 'lock.released': {
      const current = state.locks[data.ticket_id];
      if (!current || (data.user && current.user.id !== data.user.id)) return;
      const locks = { ...state.locks };
      delete locks[data.ticket_id];
      update({ locks });
      return;
    }
    default:
      emit('live', { event: name, data });
  }
}

/** Takes the reply lock of a ticket and keeps renewing it until `release`. */
export function hold(ticketId) {
  if (held.has(ticketId)) return;
  send({ type: 'lock', ticket_id: ticketId });
  held.set(ticketId, setInterval(() => send({ type: 'lock', ticket_id: ticketId }), LOCK_RENEW));
}

export function release(ticketId) {
  const timer = held.get(ticketId);
  if (timer === undefined) return;
  clearInterval(timer);
  held.delete(ticketId);
  send({ type: 'unlock', ticket_id: ticketId });
}

window.addEventListener('online', retryNow);
