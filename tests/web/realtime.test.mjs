// The staff app live: a paired realtime service between two colleagues'
// browsers. Replies, status changes and new tickets reach the other browser
// within a second (measured and printed); the reply lock shows and goes; a
// realtime restart is survived with nothing missed. Runs before
// staff-app.test.mjs and unpairs at the end, so that file sees an unpaired
// install.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  launch, colleague, withArtifacts, signIn, api, until, connection,
  startRealtime, pairRealtime, unpairRealtime, ADMIN, AGENT, BASE,
} from './harness.mjs';

/** The user's promise (seed 000): a colleague's change within one second. */
const PROMISE_MS = 1000;

let browser;
let realtime;
let adminName;
before(async () => {
  browser = await launch();
  realtime = await startRealtime();
  await pairRealtime();
  adminName = (await api('GET', '/me')).name;
});
after(async () => {
  if (realtime) {
    await unpairRealtime().catch(() => {});
    await realtime.stop();
  }
  await browser?.close();
});

async function withRealtimeLog(body) {
  try {
    await body();
  } catch (error) {
    console.log(`tickiti-realtime's output:\n${realtime.output.join('').slice(-4000)}`);
    throw error;
  }
}

const conversation = (c) => c.page.getByLabel('Conversation').getByRole('article');

async function openTicket(c, subject) {
  await c.page.getByRole('link', { name: subject }).click();
  await c.page.getByRole('heading', { level: 1, name: subject }).waitFor();
}

async function bothSignedIn(a, b) {
  await signIn(a.page, ADMIN);
  await signIn(b.page, AGENT);
  await connection(a.page, 'Connected');
  await connection(b.page, 'Connected');
}

test('live: a reply, a status change and a new ticket reach a colleague within a second; the lock shows and goes', async () => {
  const subject = 'Projector flickers';
  await api('POST', '/tickets', {
    subject, contact: { email: 'paul@example.com', name: 'Paul' }, message: 'The projector flickers in room 2.',
  });
  const admin = await colleague(browser, 'live-admin');
  const other = await colleague(browser, 'live-colleague');
  const late = await colleague(browser, 'live-late');
  await withArtifacts('live', [admin, other, late], () => withRealtimeLog(async () => {
    await bothSignedIn(admin, other);
    await openTicket(admin, subject);

    // Typing takes the lock: a marker on the colleague's list row ...
    await admin.page.getByRole('textbox', { name: 'Reply' }).fill('Trying a new cable now.');
    const row = other.page.getByRole('table', { name: 'Tickets' }).getByRole('row').filter({ hasText: subject });
    await row.filter({ hasText: `${adminName} is replying` }).waitFor({ timeout: PROMISE_MS * 3 });
    // ... and the banner in the ticket view.
    await openTicket(other, subject);
    const banner = other.page.getByRole('status').filter({ hasText: `${adminName} is responding to this ticket` });
    await banner.waitFor();
    // A tab opened later is told who holds the lock at once.
    await signIn(late.page, AGENT);
    await openTicket(late, subject);
    await late.page.getByRole('status').filter({ hasText: `${adminName} is responding to this ticket` }).waitFor({ timeout: PROMISE_MS * 3 });

    // The reply: measured from the click to the colleague's screen.
    let sent = Date.now();
    await admin.page.getByRole('button', { name: 'Send reply' }).click();
    await conversation(other).filter({ hasText: 'new cable' }).waitFor({ timeout: PROMISE_MS * 5 });
    const replyMs = Date.now() - sent;
    console.log(`reply seen by the colleague after ${replyMs} ms (realtime)`);
    // Sending released the lock.
    await banner.waitFor({ state: 'detached', timeout: PROMISE_MS * 3 });

    // A status change.
    sent = Date.now();
    await admin.page.getByRole('combobox', { name: 'Status' }).selectOption('pending');
    await until('the colleague\'s Status to read pending', () =>
      other.page.getByRole('combobox', { name: 'Status' }).inputValue().then((v) => v === 'pending'), PROMISE_MS * 5);
    const statusMs = Date.now() - sent;
    console.log(`status change seen by the colleague after ${statusMs} ms (realtime)`);

    // A new ticket, and the count beside its perspective.
    await other.page.getByRole('navigation', { name: 'Perspectives' }).getByRole('link').first().click();
    await other.page.getByRole('table', { name: 'Tickets' }).waitFor();
    const allOpen = other.page.getByRole('navigation', { name: 'Perspectives' }).getByRole('link', { name: /^All open \d+$/ });
    const countBefore = Number((await allOpen.innerText()).match(/(\d+)\s*$/)[1]);
    sent = Date.now();
    await api('POST', '/tickets', {
      subject: 'Badge reader dead', contact: { email: 'paul@example.com' }, message: 'The door will not open.',
    });
    await other.page.getByRole('table', { name: 'Tickets' }).getByRole('link', { name: 'Badge reader dead' })
      .waitFor({ timeout: PROMISE_MS * 5 });
    const newTicketMs = Date.now() - sent;
    console.log(`new ticket seen by the colleague after ${newTicketMs} ms (realtime)`);
    await until('the All open count to go up', async () =>
      Number((await allOpen.innerText()).match(/(\d+)\s*$/)[1]) === countBefore + 1, PROMISE_MS * 5);

    for (const [what, ms] of [['reply', replyMs], ['status', statusMs], ['new ticket', newTicketMs]]) {
      assert.ok(ms < PROMISE_MS, `${what} reached the colleague in ${ms} ms, over the promised ${PROMISE_MS} ms`);
    }
    for (const c of [admin, other, late]) assert.deepEqual(c.errors(), [], `${c.name}'s console`);
  }));
  for (const c of [admin, other, late]) await c.context.close();
});

test('live: a ticket assigned to a colleague lights their Notifications count within a second; reading clears it', async () => {
  const users = await api('GET', '/users?limit=200');
  const agentId = users.data.find((u) => u.email === AGENT.email).id;
  const other = await colleague(browser, 'notify-colleague');
  await withArtifacts('notify', [other], () => withRealtimeLog(async () => {
    await signIn(other.page, AGENT);
    await connection(other.page, 'Connected');
    const workspace = other.page.getByRole('navigation', { name: 'Workspace' });
    const link = workspace.getByRole('link', { name: /^Notifications \d+$/ });
    await link.waitFor();
    const countOf = async () => Number((await link.innerText()).match(/(\d+)\s*$/)[1]);
    const before = await countOf();

    const subject = 'Scanner jams on every page';
    const ticket = await api('POST', '/tickets', { subject, contact: { email: 'paul@example.com' }, message: 'Jams.' });
    const sent = Date.now();
    await api('PATCH', `/tickets/${ticket.id}`, { assignee_id: agentId });
    await until('the Notifications count to go up', async () => (await countOf()) === before + 1, PROMISE_MS * 5);
    const ms = Date.now() - sent;
    console.log(`notification seen by the assignee after ${ms} ms (realtime)`);
    assert.ok(ms < PROMISE_MS, `the notification took ${ms} ms, over the promised ${PROMISE_MS} ms`);

    await link.click();
    await other.page.getByRole('heading', { level: 1, name: 'Notifications' }).waitFor();
    const title = `Assigned to you: ${ticket.code} ${subject}`;
    const item = other.page.getByRole('list', { name: 'Notifications' }).getByRole('listitem').filter({ hasText: title });
    await item.getByRole('button', { name: 'Mark as read' }).click();
    await until('the count to go back down', async () => (await countOf()) === before, 5_000);
    await item.getByRole('button', { name: 'Mark as read' }).waitFor({ state: 'detached' });

    // The preferences: a kind turned off stays off after a reload.
    const email = () => other.page.getByRole('checkbox', { name: 'A ticket is assigned to me: by e-mail' });
    const saved = other.page.waitForResponse((r) => r.url().endsWith('/me/notification-preferences') && r.request().method() === 'PATCH');
    await email().uncheck();
    assert.equal((await saved).status(), 200);
    await other.page.reload();
    await other.page.getByRole('heading', { level: 1, name: 'Notifications' }).waitFor();
    await until('the preference to read off after a reload', async () => !(await email().isChecked()), 5_000);
    assert.deepEqual(other.errors(), [], `${other.name}'s console`);
  }));
  await other.context.close();
});

test('live: realtime stopped and started, the app says Reconnecting… then Connected and misses nothing', async () => {
  const subject = 'Coffee machine leaks';
  const ticket = await api('POST', '/tickets', {
    subject, contact: { email: 'paul@example.com' }, message: 'There is water on the floor.',
  });
  const admin = await colleague(browser, 'restart-admin');
  const other = await colleague(browser, 'restart-colleague');
  await withArtifacts('restart', [admin, other], () => withRealtimeLog(async () => {
    await bothSignedIn(admin, other);
    await openTicket(other, subject);

    await realtime.stop();
    await connection(other.page, 'Reconnecting…', 5_000);
    await connection(admin.page, 'Reconnecting…', 5_000);
    // Changes while the realtime service is away.
    await api('POST', `/tickets/${ticket.id}/messages`, { body: 'Plumber booked for 3 pm.' });
    await api('PATCH', `/tickets/${ticket.id}`, { priority: 'urgent' });

    realtime = await startRealtime();
    await connection(other.page, 'Connected');
    await connection(admin.page, 'Connected');
    await conversation(other).filter({ hasText: 'Plumber booked' }).waitFor({ timeout: 10_000 });
    await until('the colleague\'s Priority to read urgent', () =>
      other.page.getByRole('combobox', { name: 'Priority' }).inputValue().then((v) => v === 'urgent'), 10_000);

    // And live again: the next reply within the promise.
    const sent = Date.now();
    await api('POST', `/tickets/${ticket.id}/messages`, { body: 'Plumber is here.' });
    await conversation(other).filter({ hasText: 'Plumber is here' }).waitFor({ timeout: PROMISE_MS * 5 });
    const ms = Date.now() - sent;
    console.log(`after the restart, a reply seen by the colleague after ${ms} ms (realtime)`);
    assert.ok(ms < PROMISE_MS, `${ms} ms after the restart, over the promised ${PROMISE_MS} ms`);
    // A dropped websocket may show as a failed request; nothing else may.
    for (const c of [admin, other]) {
      assert.deepEqual(c.errors().filter((m) => !/WebSocket/.test(m.text)), [], `${c.name}'s console`);
    }
  }));
  for (const c of [admin, other]) await c.context.close();
});
