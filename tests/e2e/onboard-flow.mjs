#!/usr/bin/env node
// Browser driver for setting up a signing device (GovStack workflow 9.2.1) and for "My certificates": Debian's
// Chromium through npm playwright-core, one browser. Used by appliance/tests/browser_onboarding.rs.
//
//   node tests/e2e/onboard-flow.mjs --scenario SCENARIO --out DIR [options]
//
// Scenarios:
//   onboard  --esigd URL --device-ui URL --device-id ID --user U [--password P] --pin PIN [--key-id N]
//            tab 1: esigd /v1/onboard -> "Log in with National ID" -> IdP login -> the pairing form (types the
//            device ID) -> the page with the verification code; tab 2 (same browser): the device app's UI
//            shows the request: the code must be the one tab 1 shows (or, when the device offers three codes,
//            the one picked is tab 1's); types the PIN twice, Confirm; tab 1 then ends on the pseudonym.
//   certs    --esigd URL --user U [--password P] --certificate-id ID [--action suspend|revoke|activate]
//            esigd /v1/certs -> "Log in with National ID" -> IdP login (unless the IdP remembers the user) ->
//            the list; reports the row of the certificate; with --action presses that row's button and reports
//            the list afterwards.
//
// Common options: --out DIR (screenshots NN-name.png), --timeout-ms N (default 60000 per step; the wait for the
// device's answer on the esigd page gets --finish-timeout-ms, default 180000), --chromium PATH (default
// /usr/bin/chromium).
//
// Prints exactly one JSON line on stdout: {"ok":true,"scenario":...,...what was seen...}. On failure: a message
// on stderr, {"ok":false,"error":...} on stdout, failure screenshots in --out, exit status 1 (2 for usage
// errors, 3 when Chromium or playwright-core is missing). The PIN is typed into the device page only: it is
// never printed.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic',
];
const INSTALL_HINT = 'run `scripts/install-deps.sh --with-test-tools` (Debian package `chromium`; '
  + 'npm packages with `npm ci --prefix tests/e2e`)';
/** The device app is a phone: its tab gets a phone-sized window. */
const PHONE = { width: 412, height: 860 };

function usage(message) {
  process.stderr.write(`onboard-flow: ${message}\n`);
  process.exit(2);
}

function parseCli() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        scenario: { type: 'string' },
        esigd: { type: 'string' },
        'device-ui': { type: 'string' },
        'device-id': { type: 'string' },
        user: { type: 'string' },
        password: { type: 'string', default: 'test' },
        pin: { type: 'string' },
        'key-id': { type: 'string', default: '0' },
        'certificate-id': { type: 'string' },
        action: { type: 'string' },
        out: { type: 'string' },
        'timeout-ms': { type: 'string', default: '60000' },
        'finish-timeout-ms': { type: 'string', default: '180000' },
        chromium: { type: 'string', default: '/usr/bin/chromium' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (e) {
    usage(e.message);
  }
  if (values.help) {
    process.stdout.write('usage: node tests/e2e/onboard-flow.mjs --scenario onboard|certs --out DIR ...\n'
      + '(see the comment at the top of this file)\n');
    process.exit(0);
  }
  const need = (k) => { if (!values[k]) usage(`--${k} is required for --scenario ${values.scenario}`); };
  need('out');
  need('esigd');
  need('user');
  switch (values.scenario) {
    case 'onboard': need('device-ui'); need('device-id'); need('pin'); break;
    case 'certs':
      need('certificate-id');
      if (values.action && !['suspend', 'revoke', 'activate'].includes(values.action)) {
        usage('--action must be suspend, revoke or activate');
      }
      break;
    default: usage(`--scenario must be onboard or certs (got ${values.scenario})`);
  }
  const ms = (k) => {
    const n = Number(values[k]);
    if (!Number.isInteger(n) || n <= 0) usage(`--${k} must be a positive integer`);
    return n;
  };
  return { ...values, timeout: ms('timeout-ms'), finishTimeout: ms('finish-timeout-ms') };
}

/** Where a step failed, for the error message. */
class StepError extends Error {}

// ---------------------------------------------------------------------------------------------------------------
// browser helpers

/** Records main-frame navigations (url, status), dialogs, page errors and console errors of a page. */
function watch(page) {
  const seen = { navigations: [], dialogs: [], pageErrors: [], consoleErrors: [] };
  page.on('response', (r) => {
    const req = r.request();
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) {
      seen.navigations.push({ url: r.url(), status: r.status() });
    }
  });
  page.on('dialog', (d) => {
    seen.dialogs.push({ type: d.type(), message: d.message() });
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => seen.pageErrors.push(String(e.message ?? e)));
  page.on('console', (m) => { if (m.type() === 'error') seen.consoleErrors.push(m.text()); });
  return seen;
}

/** innerText of the first match, or null when there is none. */
async function text(page, selector) {
  const l = page.locator(selector).first();
  return (await l.count()) ? (await l.innerText()).trim() : null;
}

async function attr(page, selector, name) {
  const l = page.locator(selector).first();
  return (await l.count()) ? l.getAttribute(name) : null;
}

/** Screenshots numbered in the order taken: DIR/NN-name.png. */
function shooter(out) {
  let n = 0;
  const taken = [];
  return {
    taken,
    async shot(page, name) {
      n += 1;
      const file = path.join(out, `${String(n).padStart(2, '0')}-${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      taken.push(file);
      return file;
    },
  };
}

/** What a page shows when a step did not find what it expected. */
async function why(page) {
  return `${page.url()}: ${await text(page, '#error') ?? (await page.content()).slice(0, 600)}`;
}

/** The HTTP status of the page's current document. */
function status(page) {
  return page.evaluate(() => performance.getEntriesByType('navigation')[0]?.responseStatus ?? null);
}

/**
 * From an esigd start page (/v1/onboard or /v1/certs): "Log in with National ID", then the IdP's form unless the
 * IdP still knows the user; waits until the browser is back at esigd under `landing`.
 */
async function logIn(page, opts, shots, landing) {
  const start = { url: page.url(), status: await status(page), h1: await text(page, 'h1') };
  if (!(await page.locator('#login').count())) throw new StepError(`no #login link: ${await why(page)}`);
  start.loginHref = await attr(page, '#login', 'href');
  await page.click('#login');
  const form = page.locator('input[name="login"]');
  const esigdOrigin = new URL(opts.esigd).origin;
  const back = (u) => u.origin === esigdOrigin && u.pathname === landing;
  await Promise.race([
    form.waitFor({ timeout: opts.timeout }),
    page.waitForURL(back, { timeout: opts.timeout }),
  ]).catch(async () => { throw new StepError(`neither the IdP login form nor ${landing}: ${await why(page)}`); });
  let idp = null;
  if (!back(new URL(page.url()))) {
    idp = { url: page.url() };
    await form.fill(opts.user);
    await page.fill('input[name="password"]', opts.password);
    await shots.shot(page, 'idp-login');
    await page.getByRole('button', { name: 'Sign in' }).click({ noWaitAfter: true });
    await page.waitForURL(back, { timeout: opts.timeout, waitUntil: 'load' })
      .catch(async () => { throw new StepError(`not back at esigd ${landing} after the login: ${await why(page)}`); });
  }
  return { start, idp };
}

// ---------------------------------------------------------------------------------------------------------------
// scenarios

async function onboard(browser, opts, shots) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = watch(page);

  // 1. The start page, the login.
  await page.goto(new URL('/v1/onboard', opts.esigd).href);
  await shots.shot(page, 'onboard-start');
  const { start, idp } = await logIn(page, opts, shots, '/v1/onboard/device');

  // 2. The pairing form.
  await page.locator('#scd-remote-id').waitFor({ timeout: opts.timeout })
    .catch(async () => { throw new StepError(`no pairing form: ${await why(page)}`); });
  const form = {
    url: page.url(),
    status: await status(page),
    citizenName: await text(page, '#citizen-name'),
    keySlots: await page.locator('#scd-key-id option').evaluateAll((os) => os.map((o) => o.value)),
    csp: null,
  };
  await page.fill('#scd-remote-id', opts['device-id']);
  await page.selectOption('#scd-key-id', opts['key-id']);
  await shots.shot(page, 'onboard-device');

  // 3. The code. The page refreshes itself to /v1/onboard/finish after a second: hold that navigation until the
  // page is in a screenshot.
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  await page.route((u) => u.pathname === '/v1/onboard/finish', async (route) => {
    await gate;
    await route.continue();
  });
  await page.click('#pair');
  try {
    await page.locator('#verification-code, #error').first().waitFor({ timeout: opts.timeout });
  } catch {
    release();
    throw new StepError(`no verification code after "pair": ${await why(page)}`);
  }
  if (await page.locator('#error').count()) {
    release();
    throw new StepError(`the pairing form refused: ${await text(page, '#error')}`);
  }
  const wait = {
    url: page.url(),
    status: await status(page),
    code: await text(page, '#verification-code'),
    metaRefresh: await attr(page, 'meta[http-equiv="refresh" i]', 'content'),
    continueHref: await attr(page, '#continue', 'href'),
  };
  await shots.shot(page, 'onboard-code');

  // 4. The device, in a second tab of the same browser: the idle page refreshes itself until the request is there.
  const phone = await context.newPage();
  await phone.setViewportSize(PHONE);
  const phoneSeen = watch(phone);
  await phone.goto(opts['device-ui']);
  try {
    await phone.locator('form[action="/decide"]').waitFor({ timeout: opts.timeout });
  } catch {
    release();
    throw new StepError(`the device UI shows no request: ${await why(phone)}`);
  }
  const choices = await phone.locator('input[type="radio"][name="choice"]')
    .evaluateAll((rs) => rs.map((r) => r.value));
  const device = {
    url: phone.url(),
    header: await text(phone, 'header'),
    rpName: await text(phone, '.rp'),
    what: await text(phone, '.what'),
    text: await text(phone, '.text'),
    code: await text(phone, '.vc'),
    choices,
    pinFields: await phone.locator('input[type="password"]').count(),
    pinAgainField: await phone.locator('#pin_again').count(),
  };
  if (choices.length) {
    if (!choices.includes(wait.code)) {
      release();
      throw new StepError(`the device offers ${choices.join(', ')}, not the page's code ${wait.code}`);
    }
    await phone.check(`input[type="radio"][name="choice"][value="${wait.code}"]`);
    device.picked = wait.code;
  } else if (device.code !== wait.code) {
    release();
    throw new StepError(`the device shows ${device.code}, the esigd page ${wait.code}`);
  }
  await phone.fill('#pin', opts.pin);
  if (device.pinAgainField) await phone.fill('#pin_again', opts.pin);
  await shots.shot(phone, 'device-request');

  // Let the esigd page go on to its long poll, then answer on the device.
  release();
  await phone.click('#confirm');
  await phone.waitForLoadState('load');
  device.after = { url: phone.url(), notice: await text(phone, '.notice'), request: await phone.locator('form[action="/decide"]').count() };
  await shots.shot(phone, 'device-answered');

  // 5. The esigd page ends on the outcome.
  try {
    await page.locator('#pseudonym, #error').first().waitFor({ timeout: opts.finishTimeout });
  } catch {
    throw new StepError(`no outcome on the esigd page after the device answered: ${await why(page)}`);
  }
  const done = {
    url: page.url(),
    status: await status(page),
    result: await text(page, '#result'),
    error: await text(page, '#error'),
    pseudonym: await text(page, '#pseudonym'),
    certificateId: await text(page, '#certificate-id'),
    certificateHref: await attr(page, '#certificate-link', 'href'),
    myCertsHref: await attr(page, '#my-certs', 'href'),
  };
  await shots.shot(page, 'onboard-done');
  if (done.error) throw new StepError(`the esigd page shows an error: ${done.error}`);
  return {
    start, idp, form, wait, device, done,
    navigations: seen.navigations, deviceNavigations: phoneSeen.navigations,
    dialogs: [...seen.dialogs, ...phoneSeen.dialogs],
    pageErrors: [...seen.pageErrors, ...phoneSeen.pageErrors],
    consoleErrors: [...seen.consoleErrors, ...phoneSeen.consoleErrors],
  };
}

/** The row of `id` on the list page (null when absent), and the list's note. */
async function certRow(page, id) {
  const row = page.locator(`#cert-${id}`);
  const list = {
    url: page.url(),
    status: await status(page),
    citizenName: await text(page, '#citizen-name'),
    note: await text(page, '#note'),
    error: await text(page, '#error'),
    rows: await page.locator('#certs tr[id^="cert-"]').count(),
    row: null,
  };
  if (await row.count()) {
    list.row = {
      status: (await row.locator('td.status').innerText()).trim(),
      text: (await row.innerText()).trim(),
      buttons: await row.locator('button').evaluateAll((bs) => bs.map((b) => b.id)),
    };
  }
  return list;
}

async function certs(browser, opts, shots) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = watch(page);
  await page.goto(new URL('/v1/certs', opts.esigd).href);
  await shots.shot(page, 'certs-start');
  const { start, idp } = await logIn(page, opts, shots, '/v1/certs/list');
  await page.locator('#certs, #no-certs, #error').first().waitFor({ timeout: opts.timeout })
    .catch(async () => { throw new StepError(`no certificate list: ${await why(page)}`); });
  const id = opts['certificate-id'];
  const before = await certRow(page, id);
  await shots.shot(page, 'certs-list');
  let after = null;
  if (opts.action) {
    const button = page.locator(`#${opts.action}-${id}`);
    if (!(await button.count())) throw new StepError(`no #${opts.action}-${id} button: ${JSON.stringify(before)}`);
    await button.click();
    await page.waitForURL((u) => u.pathname === '/v1/certs/list' && u.searchParams.has('done'), { timeout: opts.timeout })
      .catch(async () => { throw new StepError(`no list after ${opts.action}: ${await why(page)}`); });
    after = await certRow(page, id);
    await shots.shot(page, `certs-${opts.action}`);
  }
  return {
    start, idp, before, after,
    navigations: seen.navigations, dialogs: seen.dialogs, pageErrors: seen.pageErrors, consoleErrors: seen.consoleErrors,
  };
}

// ---------------------------------------------------------------------------------------------------------------

async function main() {
  const opts = parseCli();
  fs.mkdirSync(opts.out, { recursive: true });
  if (!fs.existsSync(opts.chromium)) {
    process.stderr.write(`onboard-flow: Chromium not found at ${opts.chromium}: ${INSTALL_HINT}\n`);
    process.stdout.write(`${JSON.stringify({ ok: false, error: 'chromium missing' })}\n`);
    process.exit(3);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    process.stderr.write(`onboard-flow: npm playwright-core is not installed: ${INSTALL_HINT}\n`);
    process.stdout.write(`${JSON.stringify({ ok: false, error: 'playwright-core missing' })}\n`);
    process.exit(3);
  }
  const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS });
  const shots = shooter(opts.out);
  const run = { onboard, certs }[opts.scenario];
  const watchdog = setTimeout(() => {
    process.stderr.write('onboard-flow: gave up after 6 minutes\n');
    process.exit(1);
  }, 6 * 60 * 1000);
  watchdog.unref();
  try {
    const seen = await run(browser, opts, shots);
    process.stdout.write(`${JSON.stringify({ ok: true, scenario: opts.scenario, ...seen, screenshots: shots.taken })}\n`);
    await browser.close();
  } catch (e) {
    const at = [];
    let n = 0;
    for (const context of browser.contexts()) {
      for (const page of context.pages()) {
        n += 1;
        at.push(page.url());
        await page.screenshot({ path: path.join(opts.out, `failure-${n}.png`), fullPage: true }).catch(() => {});
      }
    }
    const message = e instanceof StepError ? e.message : (e.stack ?? String(e));
    process.stderr.write(`onboard-flow: scenario ${opts.scenario} failed (tabs at ${at.join(', ')}): ${message}\n`);
    process.stdout.write(`${JSON.stringify({ ok: false, scenario: opts.scenario, error: message, at, screenshots: shots.taken })}\n`);
    await browser.close().catch(() => {});
    process.exit(1);
  }
}

main().catch((e) => {
  process.stderr.write(`onboard-flow: ${e.stack ?? e}\n`);
  process.exit(1);
});
