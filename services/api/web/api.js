// REST client for /api/v1: session cookie + X-CSRF-Token, and one error type
// for every failure (problem+json answers and network errors alike), so views
// only ever catch ApiError.

const BASE = '/api/v1';
const CSRF_KEY = 'tickiti.csrf';
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** An API answer that was not 2xx, or a request that never got an answer. */
export class ApiError extends Error {
  constructor(status, problem = {}) {
    const detail = problem.detail || problem.title || (status ? `The server answered ${status}.` : '');
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.code = problem.code || (status ? `HTTP_${status}` : 'NETWORK');
    this.problem = problem;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }

  /** A sentence for a person: the problem's detail, capitalised. */
  get detail() {
    const text = this.message || 'Something went wrong.';
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  /** The message of the first field error for `field` (or one of its sub-fields). */
  fieldError(field) {
    const hit = this.errors.find((e) => e.field === field || e.field?.startsWith(`${field}[`) || e.field?.startsWith(`${field}.`));
    return hit ? hit.message : null;
  }
}

let unauthorizedHandler = () => {};
/** Called when a request comes back 401: the session is gone. */
export function onUnauthorized(fn) { unauthorizedHandler = fn; }

// The CSRF token lives in sessionStorage: it survives a reload of the tab,
// and dies with it.
export function setCsrf(token) {
  try {
    if (token) sessionStorage.setItem(CSRF_KEY, token);
    else sessionStorage.removeItem(CSRF_KEY);
  } catch { /* storage disabled: the in-memory copy below still works */ }
  memoryCsrf = token || null;
}
let memoryCsrf = null;
export function getCsrf() {
  try { return sessionStorage.getItem(CSRF_KEY) || memoryCsrf; } catch { return memoryCsrf; }
}

/**
 * One request. Resolves to the parsed JSON body (null for 204); rejects with
 * ApiError. `ifMatch` is a ticket version; `quiet401` stops the global
 * "session ended" handling (sign-in uses it).
 */
export async function request(method, path, options = {}) {
  try {
    return await send(method, path, options);
  } catch (error) {
    // Signing in in another tab replaces the session cookie and with it the
    // CSRF token: /me tells the current one (where the api includes it), and
    // the request is tried once more.
    if (error instanceof ApiError && error.status === 403 && error.code === 'CSRF_FAILED' && UNSAFE.has(method) && !options.csrfRetried) {
      const me = await send('GET', '/me', { quiet401: options.quiet401 }).catch(() => null);
      if (me?.csrf_token && me.csrf_token !== getCsrf()) {
        setCsrf(me.csrf_token);
        return send(method, path, { ...options, csrfRetried: true });
      }
    }
    throw error;
  }
}

async function send(method, path, { body, ifMatch, query, quiet401 = false, signal, onVersion } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (UNSAFE.has(method)) {
    const csrf = getCsrf();
    if (csrf) headers['X-CSRF-Token'] = csrf;
  }
  if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = `"${ifMatch}"`;
  let url = BASE + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
    }
    const qs = params.toString();
    if (qs) url += (url.includes('?') ? '&' : '?') + qs;
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    });
  } catch (cause) {
    if (cause?.name === 'AbortError') throw cause;
    throw new ApiError(0, { detail: 'The server could not be reached. Check the connection and try again.' });
  }
  const type = response.headers.get('Content-Type') || '';
  let data = null;
  if (response.status !== 204) {
    const text = await response.text().catch(() => '');
    if (text && (type.includes('json'))) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
  }
  if (!response.ok) {
    const problem = data && typeof data === 'object' ? data : { detail: `The server answered ${response.status} ${response.statusText}.` };
    const error = new ApiError(response.status, problem);
    const retry = response.headers.get('Retry-After');
    if (retry) error.retryAfter = Number(retry);
    if (response.status === 401 && !quiet401) unauthorizedHandler(error);
    throw error;
  }
  // A message answers with the ticket's new ETag: the caller's next
  // If-Match must not be the version its own change just replaced.
  const tag = onVersion && response.headers.get('ETag');
  const version = tag ? Number(tag.replace(/^W\//, '').replace(/"/g, '')) : NaN;
  if (Number.isInteger(version)) onVersion(version);
  return data;
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, body, opts = {}) => request('POST', path, { ...opts, body });
export const patch = (path, body, opts = {}) => request('PATCH', path, { ...opts, body });
export const del = (path, opts) => request('DELETE', path, opts);

/** Every page of a list endpoint (at most `max` items), oldest page first. */
export async function getAll(path, { query = {}, max = 1000 } = {}) {
  const out = [];
  let cursor = null;
  do {
    const page = await get(path, { query: { ...query, limit: 200, cursor } });
    out.push(...(page?.data || []));
    cursor = page?.next_cursor || null;
  } while (cursor && out.length < max);
  return out;
}

/** Ids go into paths: encode them anyway, they come from the server. */
export const seg = (id) => encodeURIComponent(String(id));
