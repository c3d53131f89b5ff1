// Sign-in: e-mail and password; a refusal (401, 429, 503, no network) shows
// its detail in an alert and keeps what was typed.

import { html, useState } from '../html.js';
import * as api from '../api.js';
import { Alert } from './components.js';

export function SignIn({ onSignedIn, notice, initialEmail = '' }) {
  const [email, setEmail] = useState(initialEmail);
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const answer = await api.post('/auth/login', { email: email.trim(), password }, { quiet401: true });
      api.setCsrf(answer.csrf_token);
      await onSignedIn(answer.user);
    } catch (failure) {
      setError(failure);
      // The e-mail stays; the password is kept too, so a typo can be fixed.
    } finally {
      setBusy(false);
    }
  }

  const message = error
    ? (error.status === 401 ? 'Wrong e-mail or password. Check both and try again.'
      : error.status === 429 ? `${error.detail}${error.retryAfter ? ` (try again in ${error.retryAfter} s)` : ''}`
        : error.detail)
    : '';

  return html`
    <main class="signin" id="main">
      <div class="signin-card">
        <div class="brand-mark" aria-hidden="true">T</div>
        <h1>Sign in to Tickiti</h1>
        ${notice && html`<p class="notice">${notice}</p>`}
        <form onSubmit=${submit} novalidate>
          <div class="field">
            <label for="signin-email">Email</label>
            <input id="signin-email" type="email" name="email" autocomplete="username" required
              value=${email} onInput=${(e) => setEmail(e.currentTarget.value)}
              aria-describedby=${message ? 'signin-error' : undefined} />
          </div>
          <div class="field">
            <label for="signin-password">Password</label>
            <input id="signin-password" type="password" name="password" autocomplete="current-password" required
              value=${password} onInput=${(e) => setPassword(e.currentTarget.value)}
              aria-describedby=${message ? 'signin-error' : undefined} />
          </div>
          ${message && html`<${Alert} id="signin-error">${message}<//>`}
          <button type="submit" class=${`btn primary wide${busy ? ' busy' : ''}`}>Sign in</button>
        </form>
      </div>
    </main>`;
}
