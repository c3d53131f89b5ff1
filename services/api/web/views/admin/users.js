// Admin: the organization's users: add a colleague (POST /users), change a
// role or the quiet-notifications flag. Errors show beside their field and
// what was typed stays.

import { html, useState, useEffect } from '../../html.js';
import * as api from '../../api.js';
import { update, state, announce } from '../../store.js';
import { Alert, Select, TextField, Time, useLoad, fieldError, formError } from '../components.js';

export function AdminUsers() {
  const users = useLoad(() => api.getAll('/users'), []);
  const [errors, setErrors] = useState({});
  useEffect(() => { document.title = 'Users · Tickiti'; }, []);
  const [draft, setDraft] = useState({ name: '', email: '', password: '', role: 'agent' });
  const [addError, setAddError] = useState(null);
  const [adding, setAdding] = useState(false);
  const set = (field) => (value) => setDraft((d) => ({ ...d, [field]: value }));

  async function add(event) {
    event.preventDefault();
    setAddError(null);
    setAdding(true);
    try {
      const user = await api.post('/users', draft);
      users.setData((list) => [...(list || []), user]);
      update({ users: [...state.users, user] });
      setDraft({ name: '', email: '', password: '', role: 'agent' });
      announce(`${user.name} added`);
    } catch (failure) {
      setAddError(failure);
    } finally {
      setAdding(false);
    }
  }

  async function change(user, body, what) {
    setErrors((e) => ({ ...e, [user.id]: null }));
    try {
      const saved = await api.patch(`/users/${api.seg(user.id)}`, body);
      users.setData((list) => list.map((u) => (u.id === saved.id ? saved : u)));
      update({ users: state.users.map((u) => (u.id === saved.id ? saved : u)) });
      if (state.user?.id === saved.id) update({ user: { ...state.user, ...saved } });
      announce(`${what} saved for ${saved.name}`);
    } catch (failure) {
      setErrors((e) => ({ ...e, [user.id]: failure }));
    }
  }

  return html`<div class="page">
    <div class="page-head"><h1>Users</h1></div>
    <section class="panel" aria-labelledby="new-user-title">
      <h2 id="new-user-title" class="panel-title">Add a user</h2>
      <form class="stack" onSubmit=${add}>
        <${TextField} label="Name" value=${draft.name} onInput=${set('name')} error=${fieldError(addError, 'name')} maxlength="200" required />
        <${TextField} label="Email" type="email" value=${draft.email} onInput=${set('email')} error=${fieldError(addError, 'email')} autocomplete="off" required />
        <${TextField} label="First password" type="password" value=${draft.password} onInput=${set('password')}
          error=${fieldError(addError, 'password')} hint="At least 8 characters; tell it to them in person." autocomplete="new-password" required />
        <${Select} label="Role" value=${draft.role} onChange=${set('role')} error=${fieldError(addError, 'role')}
          options=${[['agent', 'Agent'], ['admin', 'Admin']]} />
        <div><button type="submit" class="btn primary" disabled=${adding}>Add user</button></div>
        <${Alert} error=${formError(addError, ['name', 'email', 'password', 'role'])} />
      </form>
    </section>
    <${Alert} error=${users.error} />
    ${!users.data && !users.error && html`<p class="muted">Loading users…</p>`}
    ${users.data && html`<div class="table-wrap"><table class="data" aria-label="Users">
      <thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Role</th>
        <th scope="col">Quiet notifications</th><th scope="col" class="col-time">Since</th></tr></thead>
      <tbody>
        ${users.data.map((u) => html`<tr key=${u.id}>
          <td>${u.name}${u.id === state.user?.id ? html` <span class="muted small">(you)</span>` : ''}</td>
          <td class="break">${u.email}</td>
          <td data-label="Role">
            <select aria-label=${`Role of ${u.name}`} value=${u.role}
              onChange=${(e) => change(u, { role: e.currentTarget.value }, 'Role')}>
              <option value="agent" selected=${u.role === 'agent'}>Agent</option>
              <option value="admin" selected=${u.role === 'admin'}>Admin</option>
            </select>
            <${Alert} error=${errors[u.id]} />
          </td>
          <td data-label="Quiet notifications">
            <input type="checkbox" aria-label=${`Quiet notifications for ${u.name}`} checked=${u.realtime_notifications}
              onChange=${(e) => change(u, { realtime_notifications: e.currentTarget.checked }, 'Notification setting')} />
          </td>
          <td class="col-time"><${Time} iso=${u.created_at} /></td>
        </tr>`)}
      </tbody>
    </table></div>`}
  </div>`;
}
