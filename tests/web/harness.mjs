// Shared set-up of the browser tests: Debian's Chromium driven by
// playwright-core, one context per colleague, and a record of everything the
// page reports, so a test can assert "no console errors" and a failure
// leaves a screenshot and the page's console in tests/web/artifacts/.
import { spawn, execFile } from 'node:child_process';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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

// --- the realtime service ----------------------------------------------------
// scripts/test-web gives its binary, database and addresses; the api already
// points at them, so while it is stopped the app sees an unreachable realtime.

const REALTIME_ENV = {
  ...process.env,
  DATABASE_URL: process.env.TICKITI_WEB_REALTIME_DATABASE_URL,
  REALTIME_LISTEN: process.env.TICKITI_WEB_REALTIME_LISTEN,
  REALTIME_ADMIN_LISTEN: process.env.TICKITI_WEB_REALTIME_ADMIN_LISTEN,
};

function portOpen(address) {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const socket = connect({ host, port: Number(port) }, () => { socket.end(); resolve(true); });
    socket.on('error', () => resolve(false));
  });
}

/** Polls `check` every 50 ms until it is truthy (or throws after `ms`). */
export async function until(what, check, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A running tickiti-realtime process; its output is kept for a failure's report. */
export async function startRealtime() {
  const child = spawn(process.env.TICKITI_WEB_REALTIME_BIN, [], { env: REALTIME_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  for (const stream of [child.stdout, child.stderr]) stream.on('data', (d) => output.push(d.toString()));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await until('tickiti-realtime to listen', async () => {
    if (child.exitCode !== null) throw new Error(`tickiti-realtime exited: ${output.join('')}`);
    return (await portOpen(REALTIME_ENV.REALTIME_LISTEN)) && portOpen(REALTIME_ENV.REALTIME_ADMIN_LISTEN);
  });
  return {
    output,
    /** Stops it as an operator would (SIGTERM) and waits for the exit. */
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Pairs the running realtime service as the README says: start, `pair PIN`, bound. */
export async function pairRealtime() {
  const current = await api('GET', '/realtime/registration');
  if (current.status === 'bound') return;
  const { pin } = await api('POST', '/realtime/registration', {});
  await promisify(execFile)(process.env.TICKITI_WEB_REALTIME_BIN, ['pair', pin], { env: REALTIME_ENV });
  await until('the api to see the pairing bound',
    async () => (await api('GET', '/realtime/registration')).status === 'bound');
}

/** Ends any pairing, so the app runs over REST alone. */
export async function unpairRealtime() {
  const current = await api('GET', '/realtime/registration');
  if (current.status !== 'unbound') await api('DELETE', '/realtime/registration');
}

/** Waits until the page's Connection status reads `text`. */
export async function connection(page, text, timeout = 30_000) {
  await page.getByRole('status', { name: 'Connection' }).filter({ hasText: text }).waitFor({ timeout });
}

// --- accessibility -----------------------------------------------------------

const AXE = readFileSync(new URL('./node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');

/** axe-core's serious and critical violations on the page as it stands now. */
export async function seriousViolations(page) {
  // evaluate() runs beside the page's CSP, so axe needs no inline script.
  await page.evaluate(AXE);
  const { violations } = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ rule: v.id, impact: v.impact, help: v.help, where: v.nodes.slice(0, 8).map((n) => n.target.join(' ')) }));
}
