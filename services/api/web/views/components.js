// Small building blocks shared by the screens: labelled fields with their
// error beside them, alerts, times, and a loader hook that never leaves a
// rejected promise unhandled.

import { html, useState, useEffect, useRef, useCallback, useId } from '../html.js';
import { relative, absolute, until, label as words } from '../format.js';
import { ApiError } from '../api.js';
import { reportBug } from '../store.js';

/** A problem's detail in an alert, next to whatever it concerns. */
export function Alert({ error, children, id }) {
  const text = children || (error ? detailOf(error) : '');
  if (!text) return null;
  return html`<div class="alert" role="alert" id=${id}>${text}</div>`;
}

/** What to tell a person about an error of any kind. */
export function detailOf(error) {
  if (!error) return '';
  if (error instanceof ApiError) return error.detail;
  if (typeof error === 'string') return error;
  reportBug(error);
  return 'Something went wrong in the app. Reload the page and try again.';
}

/** The error message for `field` of a 422, or null. */
export function fieldError(error, field) {
  return error instanceof ApiError ? error.fieldError(field) : null;
}

/** An error of a request that is not about one of the fields in `fields`. */
export function formError(error, fields = []) {
  if (!error) return null;
  if (error instanceof ApiError && error.errors.length && error.errors.every((e) => fields.some((f) => e.field === f || e.field.startsWith(`${f}[`) || e.field.startsWith(`${f}.`)))) {
    return null; // every problem is shown beside its field
  }
  return error;
}

/** The small message under a control; referenced by its aria-describedby. */
export function FieldError({ id, message }) {
  if (!message) return null;
  return html`<p class="field-error" id=${id} role="alert">${message}</p>`;
}

/** A labelled input with its own error beside it. */
export function TextField({ label, value, onInput, error, type = 'text', hint, className, inputRef, ...rest }) {
  const id = useId();
  const errorId = `${id}-error`;
  const hintId = `${id}-hint`;
  const described = [hint ? hintId : null, error ? errorId : null].filter(Boolean).join(' ') || undefined;
  return html`
    <div class=${`field ${className || ''}`}>
      <label for=${id}>${label}</label>
      <input id=${id} type=${type} value=${value ?? ''} ref=${inputRef}
        onInput=${(e) => onInput(e.currentTarget.value)}
        aria-invalid=${error ? 'true' : undefined} aria-describedby=${described} ...${rest} />
      ${hint && html`<p class="hint" id=${hintId}>${hint}</p>`}
      <${FieldError} id=${errorId} message=${error} />
    </div>`;
}

/** A labelled textarea with its own error beside it. */
export function TextArea({ label, value, onInput, error, hint, className, ...rest }) {
  const id = useId();
  const errorId = `${id}-error`;
  const hintId = `${id}-hint`;
  const described = [hint ? hintId : null, error ? errorId : null].filter(Boolean).join(' ') || undefined;
  return html`
    <div class=${`field ${className || ''}`}>
      <label for=${id}>${label}</label>
      <textarea id=${id} value=${value ?? ''} onInput=${(e) => onInput(e.currentTarget.value)}
        aria-invalid=${error ? 'true' : undefined} aria-describedby=${described} ...${rest}></textarea>
      ${hint && html`<p class="hint" id=${hintId}>${hint}</p>`}
      <${FieldError} id=${errorId} message=${error} />
    </div>`;
}

/** A labelled checkbox. */
export function Checkbox({ label, checked, onChange, error, hint, ...rest }) {
  const id = useId();
  const errorId = `${id}-error`;
  const hintId = `${id}-hint`;
  const described = [hint ? hintId : null, error ? errorId : null].filter(Boolean).join(' ') || undefined;
  return html`
    <div class="check">
      <input id=${id} type="checkbox" checked=${Boolean(checked)}
        onChange=${(e) => onChange(e.currentTarget.checked)}
        aria-invalid=${error ? 'true' : undefined} aria-describedby=${described} ...${rest} />
      <label for=${id}>${label}</label>
      ${hint && html`<p class="hint" id=${hintId}>${hint}</p>`}
      <${FieldError} id=${errorId} message=${error} />
    </div>`;
}

/** A labelled native select; `options` are [value, text] pairs. */
export function Select({ label, value, onChange, options, error, className, ...rest }) {
  const id = useId();
  const errorId = `${id}-error`;
  return html`
    <div class=${`field ${className || ''}`}>
      <label for=${id}>${label}</label>
      <select id=${id} value=${value ?? ''} onChange=${(e) => onChange(e.currentTarget.value)}
        aria-invalid=${error ? 'true' : undefined} aria-describedby=${error ? errorId : undefined} ...${rest}>
        ${options.map(([v, text]) => html`<option value=${v} selected=${v === (value ?? '')}>${text}</option>`)}
      </select>
      <${FieldError} id=${errorId} message=${error} />
    </div>`;
}

// One clock for every relative time on the page.
let now = Date.now();
const clockListeners = new Set();
setInterval(() => {
  now = Date.now();
  for (const fn of clockListeners) fn(now);
}, 30000);

export function useNow() {
  const [value, setValue] = useState(now);
  useEffect(() => {
    clockListeners.add(setValue);
    return () => clockListeners.delete(setValue);
  }, []);
  return value;
}

/** A relative time ("5 min ago") with the exact one in `datetime` and the tooltip. */
export function Time({ iso }) {
  const current = useNow();
  if (!iso) return null;
  return html`<time datetime=${iso} title=${absolute(iso)}>${relative(iso, current)}</time>`;
}

/** A service-level clock as words ("First response due in 25 min"; the
 * moment itself stands beside it), with
 * a tone: "late" once breached and not met, "soon" once warned. */
export function clockText(clock, current) {
  const metric = words(clock.metric);
  switch (clock.state) {
    case 'fulfilled':
      return { tone: clock.breached_at ? 'late' : 'met', text: `${metric} met${clock.breached_at ? ' late' : ''}` };
    case 'paused':
      return { tone: '', text: `${metric} paused` };
    case 'breached':
      return { tone: 'late', text: `${metric} overdue` };
    default:
      return { tone: clock.warned_at ? 'soon' : '', text: `${metric} due ${until(clock.due_at, current)}` };
  }
}

/** Whether a ticket has a breached target not yet met (the `escalated` filter). */
export const isEscalated = (ticket) => (ticket.sla || []).some((c) => c.state === 'breached');

/** A status / priority pill. The text carries the meaning; colour only helps. */
export function Pill({ kind, value }) {
  if (!value) return null;
  return html`<span class=${`pill pill-${kind}-${value}`}>${words(value)}</span>`;
}

/**
 * Loads data with `fn` whenever `deps` change; `reload()` fetches again in
 * place (keeping the old data on screen), coalescing calls that overlap.
 */
export function useLoad(fn, deps) {
  const [result, setResult] = useState({ data: undefined, error: null, loading: true });
  const alive = useRef(true);
  const running = useRef(null);
  const again = useRef(false);
  const latest = useRef(fn);
  latest.current = fn;
  const generation = useRef(0);

  const run = useCallback(async () => {
    if (running.current) {
      again.current = true;
      return running.current;
    }
    const gen = generation.current;
    const job = (async () => {
      do {
        again.current = false;
        try {
          const data = await latest.current();
          if (alive.current && gen === generation.current) setResult({ data, error: null, loading: false });
        } catch (error) {
          if (alive.current && gen === generation.current) setResult((r) => ({ data: r.data, error, loading: false }));
        }
      } while (again.current && alive.current && gen === generation.current);
    })();
    running.current = job;
    try { await job; } finally { running.current = null; }
    return undefined;
  }, []);

  useEffect(() => {
    alive.current = true;
    generation.current += 1;
    running.current = null;
    setResult({ data: undefined, error: null, loading: true });
    run();
    return () => { generation.current += 1; };
  }, deps); // eslint-disable-line react-hooks/exhaustive-deps

  useEffect(() => () => { alive.current = false; }, []);

  const setData = useCallback((update) => setResult((r) => ({ ...r, data: typeof update === 'function' ? update(r.data) : update })), []);
  return { ...result, reload: run, setData };
}

/** A button that asks once more before doing something that cannot be undone. */
export function ConfirmButton({ label, confirmLabel, onConfirm, disabled, describedBy, className = 'btn danger-quiet' }) {
  const [asking, setAsking] = useState(false);
  const confirmRef = useRef(null);
  useEffect(() => { if (asking) confirmRef.current?.focus(); }, [asking]);
  if (!asking) {
    return html`<button type="button" class=${className} disabled=${disabled} aria-describedby=${describedBy}
      onClick=${() => setAsking(true)}>${label}</button>`;
  }
  return html`<span class="confirm">
    <button type="button" class="btn danger" ref=${confirmRef} aria-describedby=${describedBy}
      onClick=${() => { setAsking(false); onConfirm(); }}>${confirmLabel}</button>
    <button type="button" class="btn" onClick=${() => setAsking(false)}>Cancel</button>
  </span>`;
}

/** Copies text, falling back to selecting it when the clipboard is refused. */
export async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    fallbackInput?.select();
    return false;
  }
}
