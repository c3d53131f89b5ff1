// Admin: the organization's users. The api lists and changes users (role,
// quiet notifications); it has no endpoint to create one yet, so the page
// says how to, with the admin command line.

import { html, useState, useEffect } from '../../html.js';
import * as api from '../../api.js';
import { update, state, announce } from '../../store.js';
import { Alert, Time, useLoad } from '../components.js';

export function AdminUsers() {
  const users = useLoad(() => api.getAll('/users'), []);
  const [errors, setErrors] = useState({});
  useEffect(() => { document.title = 'Users · Tickiti'; }, []);

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
    <p class="muted">New users are added on the server: <code>tickiti-api admin create-user --org ORG_ID --email EMAIL --name NAME --password PW [--role admin|agent]</code>.</p>
    <${Alert} error=${users.error} />
    ${!users.data && !users.error && html`<p class="muted">Loading users…</p>`}
    ${users.data && html`<div class="table-wrap"><table class="data" aria-label="Users">
      <thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Role</th>
        <th scope="col">Quiet notifications</th><th scope="col" class="col-time">Since</th></tr></thead>
      <tbody>
        ${users.data.map((u) => html`<tr key=${u.id}>
          <td>${u.name}${u.id === state.user?.id ? html` <span class="muted small">(you)</span>` : ''}</td>
          <td class="break">${u.email}</td>
          <td>
            <select aria-label=${`Role of ${u.name}`} value=${u.role}
              onChange=${(e) => change(u, { role: e.currentTarget.value }, 'Role')}>
              <option value="agent" selected=${u.role === 'agent'}>Agent</option>
              <option value="admin" selected=${u.role === 'admin'}>Admin</option>
            </select>
            <${Alert} error=${errors[u.id]} />
          </td>
          <td>
            <input type="checkbox" aria-label=${`Quiet notifications for ${u.name}`} checked=${u.realtime_notifications}
              onChange=${(e) => change(u, { realtime_notifications: e.currentTarget.checked }, 'Notification setting')} />
          </td>
          <td class="col-time"><${Time} iso=${u.created_at} /></td>
        </tr>`)}
      </tbody>
    </table></div>`}
  </div>`;
}
