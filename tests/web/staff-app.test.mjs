// The staff app in a real headless Chromium against the real api (an
// unpaired install: no realtime, so the app must work over REST alone).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, colleague, withArtifacts, signIn, api, until, seriousViolations, ADMIN, AGENT, BASE } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('sign-in with the keyboard alone, then a wrong password keeps the e-mail', async () => {
  const me = await colleague(browser, 'keyboard');
  await withArtifacts('keyboard', [me], async () => {
    const { page } = me;
    await page.goto(process.env.TICKITI_WEB_URL + '/');
    await page.getByRole('textbox', { name: 'Email' }).waitFor();
    await page.keyboard.press('Tab');
    // Tab until the e-mail field has focus (skip links may come first).
    for (let i = 0; i < 5 && !(await page.getByRole('textbox', { name: 'Email' }).evaluate((e) => e === document.activeElement)); i++) {
      await page.keyboard.press('Tab');
    }
    await page.keyboard.type(ADMIN.email);
    await page.keyboard.press('Tab');
    await page.keyboard.type('not the password');
    await page.keyboard.press('Enter');
    await page.getByRole('alert').waitFor();
    assert.equal(await page.getByRole('textbox', { name: 'Email' }).inputValue(), ADMIN.email);
    await page.getByLabel('Password').fill(ADMIN.password);
    await page.keyboard.press('Enter');
    await page.getByRole('table', { name: 'Tickets' }).waitFor();
    assert.equal(await page.getByRole('status', { name: 'Connection' }).innerText(), 'Reconnecting…');
    assert.deepEqual(me.errors(), []);
  });
  await me.context.close();
});

test('a reply shows in a colleague\'s browser over REST, and the ticket view is what the README shows', async () => {
  const subject = 'Printer on fire'; // a fresh database each run: unique
  const ticket = await api('POST', '/tickets', {
    subject, priority: 'high',
    contact: { email: 'carla@example.com', name: 'Carla Customer' },
    message: 'Help, the printer in room 4 is on fire.',
  });
  const admin = await colleague(browser, 'admin');
  const other = await colleague(browser, 'colleague');
  await withArtifacts('reply', [admin, other], async () => {
    await signIn(admin.page, ADMIN);
    await signIn(other.page, AGENT);
    for (const c of [admin, other]) {
      await c.page.getByRole('link', { name: subject }).click();
      await c.page.getByRole('heading', { level: 1, name: subject }).waitFor();
    }
    const conversation = (c) => c.page.getByLabel('Conversation').getByRole('article');
    // The heading can render before the messages arrive: count once they have.
    await conversation(other).first().waitFor();
    assert.equal(await conversation(other).count(), 1);

    await admin.page.getByRole('textbox', { name: 'Reply' }).fill('We are sending the fire brigade.');
    const sent = Date.now();
    await admin.page.getByRole('button', { name: 'Send reply' }).click();
    await conversation(admin).nth(1).waitFor();
    // Without realtime the app refreshes by itself (every 5 s).
    await conversation(other).filter({ hasText: 'fire brigade' }).waitFor({ timeout: 12_000 });
    console.log(`reply seen by the colleague over REST after ${Date.now() - sent} ms`);

    await admin.page.getByRole('combobox', { name: 'Status' }).selectOption('pending');
    const stored = await api('GET', `/tickets/${ticket.id}`);
    for (let i = 0; i < 20 && stored.status !== 'pending'; i++) {
      await new Promise((r) => setTimeout(r, 250));
      Object.assign(stored, await api('GET', `/tickets/${ticket.id}`));
    }
    assert.equal(stored.status, 'pending');
    // The colleague's view follows (polling, again).
    await other.page.waitForFunction(
      () => [...document.querySelectorAll('select')].some((s) => s.value === 'pending'),
      null, { timeout: 12_000 });
    await admin.page.screenshot({ path: new URL('../../docs/screenshot-ticket.png', import.meta.url).pathname });
    assert.deepEqual(admin.errors(), []);
    assert.deepEqual(other.errors(), []);
  });
  await admin.context.close();
  await other.context.close();
});

test('a ticket under a service-level policy shows its clocks, and a reply meets the first response', async () => {
  const queue = await api('POST', '/queues', { name: 'Priority line' });
  await api('POST', '/sla-policies', {
    name: 'Priority line', position: 1, queue_ids: [queue.id],
    targets: [{ priority: 'urgent', metric: 'first_response', within: '1h', warn_before: '10m' },
      { priority: 'urgent', metric: 'resolution', within: '1d' }],
  });
  const subject = 'Payroll export stuck';
  await api('POST', '/tickets', {
    subject, priority: 'urgent', queue_id: queue.id,
    contact: { email: 'dora@example.com' }, message: 'Salaries are due today.',
  });
  const me = await colleague(browser, 'sla');
  await withArtifacts('sla', [me], async () => {
    const { page } = me;
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: subject }).click();
    const levels = page.getByRole('region', { name: 'Service levels' });
    await levels.getByText(/^First response due in (59|60) min$/).waitFor();
    await levels.getByText(/^Resolution due in (23|24) h$/).waitFor();
    await page.getByRole('textbox', { name: 'Reply' }).fill('Looking at it now.');
    await page.getByRole('button', { name: 'Send reply' }).click();
    await levels.getByText('First response met').waitFor();
    assert.deepEqual(me.errors(), []);
  });
  await me.context.close();
});

test('every admin screen opens, an admin adds a colleague, and the app fits a 390 px phone', async () => {
  const me = await colleague(browser, 'admin-screens');
  await withArtifacts('admin-screens', [me], async () => {
    await signIn(me.page, ADMIN);
    for (const name of ['Users', 'API tokens', 'Webhooks', 'Interventions', 'Realtime', 'System']) {
      await me.page.getByRole('link', { name, exact: true }).click();
      await me.page.getByRole('heading', { level: 1 }).waitFor();
    }
    // The dispatcher beside the api reports in and is listed up.
    await me.page.getByRole('table', { name: 'Processes' }).getByRole('row')
      .filter({ hasText: 'dispatcher' }).filter({ hasText: 'Up' }).first().waitFor();
    // Add a colleague: a taken e-mail shows beside its field and keeps what was typed.
    await me.page.getByRole('link', { name: 'Users', exact: true }).click();
    const form = me.page.getByRole('region', { name: 'Add a user' });
    await form.getByRole('textbox', { name: 'Name' }).fill('Ada Again');
    await form.getByRole('textbox', { name: 'Email' }).fill(AGENT.email);
    await form.getByLabel('First password').fill('another-password-1');
    await form.getByRole('button', { name: 'Add user' }).click();
    await form.getByRole('alert').filter({ hasText: /exists/ }).waitFor();
    assert.equal(await form.getByRole('textbox', { name: 'Name' }).inputValue(), 'Ada Again');
    await form.getByRole('textbox', { name: 'Email' }).fill('grace@example.com');
    await form.getByRole('button', { name: 'Add user' }).click();
    await me.page.getByRole('table', { name: 'Users' }).getByRole('cell', { name: 'grace@example.com' }).waitFor();

    await me.page.setViewportSize({ width: 390, height: 800 });
    await me.page.goto(process.env.TICKITI_WEB_URL + '/');
    await me.page.getByRole('table', { name: 'Tickets' }).waitFor();
    const [scroll, width] = await me.page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= width, `no sideways scrolling at 390 px: ${scroll} > ${width}`);
    await me.page.getByRole('button', { name: 'Sign out' }).click();
    await me.page.getByRole('button', { name: 'Sign in' }).waitFor();
    assert.deepEqual(me.errors().filter((m) => !/409/.test(m.text)), []);
  });
  await me.context.close();
});

test('axe-core finds no serious or critical violation on any screen, light or dark', async () => {
  // A ticket whose first response is overdue (the dispatcher fires the
  // breach), so the service-level panel, the list's Overdue marker and the
  // Escalated count are on screen and checked too; the admin manages the
  // queue, so the breach is in their notifications.
  const adminId = (await api('GET', '/me')).id;
  const queue = await api('POST', '/queues', { name: 'Screen readers', manager_ids: [adminId] });
  await api('POST', '/sla-policies', {
    name: 'Screen readers', position: 2, queue_ids: [queue.id],
    targets: [{ priority: 'urgent', metric: 'first_response', within: '1s' },
      { priority: 'urgent', metric: 'resolution', within: '1d' }],
  });
  const ticket = await api('POST', '/tickets', {
    subject: 'Screen reader check', contact: { email: 'carla@example.com' }, message: 'A message to show.',
    priority: 'urgent', queue_id: queue.id,
  });
  await until('the first response to be breached', async () =>
    (await api('GET', `/tickets/${ticket.id}`)).sla.some((c) => c.state === 'breached'));
  for (const scheme of ['light', 'dark']) {
    const me = await colleague(browser, `axe-${scheme}`);
    await me.page.emulateMedia({ colorScheme: scheme });
    await withArtifacts(`axe-${scheme}`, [me], async () => {
      const found = {};
      const check = async (screen) => {
        const violations = await seriousViolations(me.page);
        if (violations.length) found[screen] = violations;
        // For a person's review: TICKITI_WEB_SCREENSHOTS=dir saves each
        // screen at desktop and phone width.
        const dir = process.env.TICKITI_WEB_SCREENSHOTS;
        if (dir) {
          for (const [label, width] of [['desktop', 1280], ['phone', 390]]) {
            await me.page.setViewportSize({ width, height: 800 });
            await me.page.screenshot({ path: `${dir}/${scheme}-${label}-${screen.replace(/\W+/g, '-')}.png`, fullPage: true });
          }
          await me.page.setViewportSize({ width: 1280, height: 800 });
        }
      };
      await me.page.goto(BASE + '/');
      await me.page.getByRole('button', { name: 'Sign in' }).waitFor();
      await check('sign-in');
      await signIn(me.page, ADMIN);
      await check('ticket list');
      await me.page.getByRole('link', { name: 'Screen reader check' }).click();
      await me.page.getByRole('heading', { level: 1, name: 'Screen reader check' }).waitFor();
      await me.page.getByLabel('Conversation').getByRole('article').first().waitFor();
      await check('ticket view');
      await me.page.getByRole('link', { name: /^Mentions/ }).click();
      await me.page.getByRole('heading', { level: 1 }).waitFor();
      await check('mentions');
      await me.page.getByRole('link', { name: /^Notifications/ }).click();
      await me.page.getByRole('heading', { level: 1, name: 'Notifications' }).waitFor();
      await me.page.getByRole('list', { name: 'Notifications' }).getByText('Service level breached').first().waitFor();
      await check('notifications');
      for (const name of ['Users', 'API tokens', 'Webhooks', 'Interventions', 'Realtime', 'System']) {
        await me.page.getByRole('link', { name, exact: true }).click();
        await me.page.getByRole('heading', { level: 1, name: new RegExp(name, 'i') }).waitFor();
        await check(name);
      }
      assert.deepEqual(found, {}, `serious or critical violations (${scheme}): ${JSON.stringify(found, null, 2)}`);
      assert.ok(ticket.id);
    });
    await me.context.close();
  }
});

test('the API reference at /api/docs renders the generated document from this origin alone', async () => {
  const me = await colleague(browser, 'api-docs');
  await withArtifacts('api-docs', [me], async () => {
    const foreign = [];
    me.page.on('request', (r) => { if (!r.url().startsWith(BASE)) foreign.push(r.url()); });
    await me.page.goto(BASE + '/api/docs');
    // An operation of the document, rendered by the vendored viewer.
    await me.page.getByText('/api/v1/tickets/{id}/messages').first().waitFor();
    await me.page.getByRole('heading', { name: /Tickiti API/ }).first().waitFor();
    assert.deepEqual(foreign, [], 'no request leaves this origin');
    assert.deepEqual(me.errors(), []);
    assert.deepEqual(await seriousViolations(me.page), [], 'the list of operations');
    // One operation opened: its parameters, bodies and answers.
    await me.page.getByRole('button', { name: /POST \/api\/v1\/tickets\/\{id\}\/messages/ }).first().click();
    await me.page.getByText('Request body').first().waitFor();
    assert.deepEqual(await seriousViolations(me.page), [], 'an opened operation');
    assert.deepEqual(me.errors(), []);
  });
  await me.context.close();
});
