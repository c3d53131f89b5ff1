// Reply drafts, per user and ticket, in localStorage: they survive a reload
// and can never show up on another ticket (the key names both ids).

const key = (userId, ticketId) => `tickiti.draft.${userId}.${ticketId}`;

export function loadDraft(userId, ticketId) {
  try {
    const raw = localStorage.getItem(key(userId, ticketId));
    if (!raw) return { body: '', internal: false };
    const draft = JSON.parse(raw);
    return { body: String(draft.body || ''), internal: Boolean(draft.internal) };
  } catch {
    return { body: '', internal: false };
  }
}

export function saveDraft(userId, ticketId, draft) {
  try {
    if (!draft.body) localStorage.removeItem(key(userId, ticketId));
    else localStorage.setItem(key(userId, ticketId), JSON.stringify({ body: draft.body, internal: draft.internal, saved_at: new Date().toISOString() }));
  } catch { /* storage full or disabled: the draft stays in memory */ }
}

export function clearDraft(userId, ticketId) {
  try { localStorage.removeItem(key(userId, ticketId)); } catch { /* nothing to clear */ }
}
