// Display helpers: the API's values stay as they are (option values, query
// parameters); these only turn them into words for people.

export const STATUSES = ['new', 'open', 'pending', 'on_hold', 'solved', 'closed'];
export const PRIORITIES = ['low', 'normal', 'high', 'urgent'];

const WORDS = { on_hold: 'On hold' };
/** `on_hold` -> `On hold`, `open` -> `Open`. */
export function label(value) {
  if (value === null || value === undefined || value === '') return '';
  if (WORDS[value]) return WORDS[value];
  const text = String(value).replace(/_/g, ' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

const minute = 60 * 1000;
const hour = 60 * minute;
const day = 24 * hour;

/** "just now", "5 min ago", "3 h ago", "2 d ago", then the date. */
export function relative(iso, now = Date.now()) {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return '';
  const diff = now - at;
  if (diff < 45 * 1000 && diff > -60 * 1000) return 'just now';
  if (diff < 0) return absolute(iso);
  if (diff < hour) return `${Math.round(diff / minute)} min ago`;
  if (diff < day) return `${Math.round(diff / hour)} h ago`;
  if (diff < 7 * day) return `${Math.round(diff / day)} d ago`;
  return new Date(at).toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

/** A due time: "in 25 min", "in 3 h", "in 2 d", or "5 min ago" once passed. */
export function until(iso, now = Date.now()) {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return '';
  const diff = at - now;
  if (diff <= 0) return relative(iso, now);
  if (diff < hour) return `in ${Math.max(1, Math.round(diff / minute))} min`;
  if (diff < day) return `in ${Math.round(diff / hour)} h`;
  return `in ${Math.round(diff / day)} d`;
}

export function absolute(iso) {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return '';
  return new Date(at).toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
}

/** 90 -> "1 h 30 min". */
export function duration(minutes) {
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  if (!h) return `${m} min`;
  return m ? `${h} h ${m} min` : `${h} h`;
}

/** First letters for an avatar: "Ada Lovelace" -> "AL". */
export function initials(name) {
  return (name || '?').split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join('');
}
