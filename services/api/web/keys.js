// Keyboard shortcuts. Single keys (j, k, r, ?, /, g then l) are ignored while
// the user types in a field or a dialog is open, and the "Single-key
// shortcuts" setting (kept in localStorage) turns them off altogether.
// Screens register handlers with useShortcut; the latest one for a key wins.

import { useEffect, useRef } from './html.js';

const SETTINGS_KEY = 'tickiti.settings';
const handlers = new Map(); // key -> [fn, ...] (most recent last)
const settingsListeners = new Set();

export function loadSettings() {
  try {
    return { singleKeys: true, ...JSON.parse(localStorage.getItem(SETTINGS_KEY) || '{}') };
  } catch {
    return { singleKeys: true };
  }
}
let settings = loadSettings();

export function getSettings() { return settings; }
export function saveSettings(patch) {
  settings = { ...settings, ...patch };
  try { localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings)); } catch { /* kept for this page */ }
  for (const fn of settingsListeners) fn(settings);
}
export function onSettings(fn) {
  settingsListeners.add(fn);
  return () => settingsListeners.delete(fn);
}

/** Registers `fn` for `key` ('j', 'r', '?', 'g l', ...) while mounted. */
export function useShortcut(key, fn) {
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => {
    const entry = (event) => latest.current(event);
    const list = handlers.get(key) || [];
    list.push(entry);
    handlers.set(key, list);
    return () => {
      const now = handlers.get(key) || [];
      handlers.set(key, now.filter((f) => f !== entry));
    };
  }, [key]);
}

function typing(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  const tag = target.tagName;
  if (tag === 'TEXTAREA' || tag === 'SELECT') return true;
  if (tag === 'INPUT') {
    const type = (target.getAttribute('type') || 'text').toLowerCase();
    return !['checkbox', 'radio', 'button', 'submit', 'reset'].includes(type);
  }
  return false;
}

let pendingG = 0;

document.addEventListener('keydown', (event) => {
  if (event.defaultPrevented || event.isComposing) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (!settings.singleKeys || typing(event.target)) return;
  if (document.querySelector('dialog[open]')) return;
  let key = event.key;
  if (key.length !== 1) return;
  if (Date.now() - pendingG < 1500 && key !== 'g') {
    key = `g ${key}`;
    pendingG = 0;
  } else if (key === 'g') {
    pendingG = Date.now();
    return;
  }
  const list = handlers.get(key);
  const fn = list && list[list.length - 1];
  if (fn) {
    event.preventDefault();
    fn(event);
  }
});

/** The keys, as the help dialog lists them. */
export const KEY_HELP = [
  ['j', 'Next ticket in the list'],
  ['k', 'Previous ticket in the list'],
  ['Enter', 'Open the selected ticket'],
  ['r', 'Reply to the open ticket'],
  ['Ctrl + Enter', 'Send the reply (⌘ + Enter on a Mac)'],
  ['/', 'Search tickets'],
  ['g then l', 'Back to the ticket list'],
  ['g then m', 'Mentions'],
  ['g then n', 'Notifications'],
  ['?', 'This list of keys'],
  ['Escape', 'Close a dialog or menu'],
];
