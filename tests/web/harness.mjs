// Shared set-up of the browser tests: Debian's Chromium driven by
// playwright-core, one context per colleague, and a record of everything the
// page reports, so a test can assert "no console errors" and a failure
// leaves a screenshot and the page's console in tests/web/artifacts/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const BASE = process.env.TICKITI_WEB_URL;
export const ADMIN = { email: process.env.TICKITI_WEB_EMAIL, password: process.env.TICKITI_WEB_PASSWORD };
export const AGENT = { email: process.env.TICKITI_WEB_AGENT_EMAIL, password: process.env.TICKITI_WEB_PASSWORD };
export const TOKEN = process.env.TICKITI_WEB_TOKEN;
const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;

// Without the background-networking flags Chromium keeps dialling Google's
// hosts, which this closed network refuses.
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: FLAGS });
}

// Refusals the contract expects (§6): an unpaired realtime's 409 and a wrong
// password's 401. Anything else the page logs as an error is a defect.
const EXPECTED = [/\/api\/v1\/realtime\/ticket$/, /\/api\/v1\/auth\/login$/];

/** A colleague's page with its console recorded. */
export async function colleague(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const log = [];
  const failed = new Set();
  page.on('response', (r) => { if (r.status() >= 400) failed.add(r.url()); });
  page.on('console', (m) => log.push({ type: m.type(), text: m.text(), url: m.location()?.url }));
  page.on('pageerror', (e) => log.push({ type: 'pageerror', text: e.message }));
  return {
    name, context, page, log,
    /** Console errors other than the expected refusals. */
    errors() {
      return log.filter((m) => m.type === 'error' || m.type === 'pageerror')
        .filter((m) => !(m.text.startsWith('Failed to load resource')
          && [...failed].some((u) => EXPECTED.some((re) => re.test(u)))));
    },
    async save(test) {
      mkdirSync(ARTIFACTS, { recursive: true });
      const stem = `${ARTIFACTS}${test.replace(/\W+/g, '-')}-${name}`;
      await page.screenshot({ path: `${stem}.png`, fullPage: true }).catch(() => {});
      writeFileSync(`${stem}.console.json`, JSON.stringify(log, null, 2));
    },
  };
}

/** Runs `body`; on failure saves every colleague's screenshot and console. */
export async function withArtifacts(test, colleagues, body) {
  try {
    await body();
  } catch (error) {
    for (const c of colleagues) await c.save(test);
    throw error;
  }
}

export async function signIn(page, { email, password }) {
  await page.goto(BASE + '/');
  await page.getByRole('textbox', { name: 'Email' }).fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('table', { name: 'Tickets' }).waitFor();
}

/** Calls the REST API with the admin's token. */
export async function api(method, path, body) {
  const response = await fetch(`${BASE}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
