#!/usr/bin/env node
// Browser driver for signing with the citizen's own device by pseudonym (GovStack workflow 9.2.2): Debian's
// Chromium through npm playwright-core, one browser. Used by appliance/tests/browser_scd_signing.rs.
//
//   node tests/e2e/scd-sign-flow.mjs --scenario sign|refuse --out DIR --eservice URL --device-ui URL
//        --pseudonym P [--pin PIN] [--document FILE] [--format F]
//
// tab 1: the example e-Service (examples/eservice/server.mjs) hashes --document and redirects to esigd's choice
// page -> "My signing device (SCD)" (#choice-scd) -> the pseudonym form (types --pseudonym, "Send") -> the page
// with the verification code; tab 2 (same browser, phone-sized): the device app's UI shows the signature request:
// its code must be the one tab 1 shows.
//   sign    types --pin on the device, Confirm; tab 1 moves on to esigd's result page, then to the e-Service
//           callback, whose back end fetched the signature over mutual TLS; downloads signature.p7s into --out
//           (CAdES, PAdES) and what the result page offers for the format (PAdES: the signed PDF the browser
//           embedded; XAdES, JWS: the signature file and the document) into --out/downloads.
// --format: the signature format chosen on the e-Service page (default: the page's choice, PAdES for a PDF).
//   refuse  presses Refuse on the device; tab 1 ends on the e-Service callback with the error.
//
// Options: --timeout-ms N (default 60000 per step; the wait for the device's answer on the esigd page gets
// --finish-timeout-ms, default 180000), --chromium PATH (default /usr/bin/chromium).
//
// Prints exactly one JSON line on stdout: {"ok":true,"scenario":...,...what was seen...}. On failure: a message
// on stderr, {"ok":false,"error":...} on stdout, failure screenshots in --out, exit status 1 (2 for usage
// errors, 3 when Chromium or playwright-core is missing). The PIN is typed into the device page only: it is
// never printed.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { chooseFormat, downloadResult } from './eservice-result.mjs';

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic',
];
const INSTALL_HINT = 'run `scripts/install-deps.sh --with-test-tools` (Debian package `chromium`; '
  + 'npm packages with `npm ci --prefix tests/e2e`)';
/** The device app is a phone: its tab gets a phone-sized window. */
const PHONE = { width: 412, height: 860 };

function usage(message) {
  process.stderr.write(`scd-sign-flow: ${message}\n`);
  process.exit(2);
}

function parseCli() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        scenario: { type: 'string' },
        eservice: { type: 'string' },
        'device-ui': { type: 'string' },
        pseudonym: { type: 'string' },
        pin: { type: 'string' },
        document: { type: 'string' },
        format: { type: 'string' },
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
    process.stdout.write('usage: node tests/e2e/scd-sign-flow.mjs --scenario sign|refuse --out DIR ...\n'
      + '(see the comment at the top of this file)\n');
    process.exit(0);
  }
  if (!['sign', 'refuse'].includes(values.scenario)) usage(`--scenario must be sign or refuse (got ${values.scenario})`);
  for (const k of ['out', 'eservice', 'device-ui', 'pseudonym']) {
    if (!values[k]) usage(`--${k} is required`);
  }
  if (values.scenario === 'sign' && !values.pin) usage('--pin is required for --scenario sign');
  if (values.document && !fs.existsSync(values.document)) usage(`--document ${values.document} does not exist`);
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

const params = (url) => Object.fromEntries(new URL(url).searchParams);

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

/** A promise to hold routed requests with, and its release. */
function gate() {
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  return { held, release };
}

// ---------------------------------------------------------------------------------------------------------------
// the flow

/** e-Service start page -> (document chosen) -> "Sign" -> esigd's choice page. */
async function eserviceToChoice(page, opts, shots) {
  await page.goto(opts.eservice);
  await page.locator('body[data-ready="true"]').waitFor({ timeout: opts.timeout })
    .catch(async () => { throw new StepError(`the e-Service start page did not get ready: ${await why(page)}`); });
  if (opts.document) await page.setInputFiles('#file', opts.document);
  const formatChoice = await chooseFormat(page, opts);
  await shots.shot(page, 'eservice-start');
  await page.click('#sign');
  await page.waitForURL((u) => u.pathname === '/v1/sign/interactive', { timeout: opts.timeout, waitUntil: 'load' })
    .catch(async () => { throw new StepError(`no redirect to esigd: ${await why(page)}`); });
  if (!(await page.locator('#choice-scd').count())) throw new StepError(`no #choice-scd: ${await why(page)}`);
  const choice = {
    url: page.url(),
    status: await status(page),
    query: params(page.url()),
    eserviceName: await text(page, '#eservice-name'),
    displayText: await text(page, '#display-text'),
    scdText: await text(page, '#choice-scd'),
    scdHref: await attr(page, '#choice-scd', 'href'),
    format: params(page.url()).format,
    formatChoice,
  };
  await shots.shot(page, 'esigd-choice');
  return choice;
}

async function scdSign(browser, opts, shots) {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const seen = watch(page);
  const choice = await eserviceToChoice(page, opts, shots);
  const callbackUrl = choice.query.callbackUrl;

  // 1. "My signing device (SCD)": the pseudonym form.
  await page.click('#choice-scd');
  await page.locator('#pseudonym, #scd-unavailable, #error').first().waitFor({ timeout: opts.timeout })
    .catch(async () => { throw new StepError(`no pseudonym form: ${await why(page)}`); });
  if (!(await page.locator('#pseudonym').count())) {
    throw new StepError(`no pseudonym form: ${await text(page, '#scd-unavailable') ?? await why(page)}`);
  }
  const form = {
    url: page.url(),
    status: await status(page),
    h1: await text(page, 'h1'),
    onboardHref: await attr(page, '#onboard-link', 'href'),
  };
  await page.fill('#pseudonym', opts.pseudonym);
  await shots.shot(page, 'scd-pseudonym');

  // 2. The code. The page refreshes itself to /v1/sign/interactive/scd/wait after a second: hold that navigation
  // until the page is in a screenshot. Hold the way back to the e-Service too, until esigd's result page is.
  const waitGate = gate();
  const backGate = gate();
  await page.route((u) => u.pathname === '/v1/sign/interactive/scd/wait', async (route) => {
    await waitGate.held;
    await route.continue();
  });
  await page.route((u) => u.href.startsWith(callbackUrl), async (route) => {
    await backGate.held;
    await route.continue();
  });
  const releaseAll = () => { waitGate.release(); backGate.release(); };
  await page.click('#send');
  try {
    await page.locator('#verification-code, #error').first().waitFor({ timeout: opts.timeout });
  } catch {
    releaseAll();
    throw new StepError(`no verification code after "Send": ${await why(page)}`);
  }
  if (await page.locator('#error').count()) {
    releaseAll();
    throw new StepError(`the pseudonym form refused: ${await text(page, '#error')}`);
  }
  const wait = {
    url: page.url(),
    status: await status(page),
    h1: await text(page, 'h1'),
    code: await text(page, '#verification-code'),
    // With scripts on, the refresh is inside <noscript> (no element) and /v1/ui/wait.js long-polls
    // data-status, then goes to data-next.
    metaRefresh: await attr(page, 'meta[http-equiv="refresh" i]', 'content'),
    waitScript: await attr(page, 'script[src="/v1/ui/wait.js"]', 'src'),
    waitNext: await attr(page, '#wait', 'data-next'),
    cancelHref: await attr(page, '#cancel', 'href'),
  };
  await shots.shot(page, 'scd-code');

  // 3. The device, in a second tab of the same browser: the idle page refreshes itself until the request is there.
  const phone = await context.newPage();
  await phone.setViewportSize(PHONE);
  const phoneSeen = watch(phone);
  await phone.goto(opts['device-ui']);
  try {
    await phone.locator('form[action="/decide"]').waitFor({ timeout: opts.timeout });
  } catch {
    releaseAll();
    throw new StepError(`the device UI shows no request: ${await why(phone)}`);
  }
  const device = {
    url: phone.url(),
    header: await text(phone, 'header'),
    rpName: await text(phone, '.rp'),
    what: await text(phone, '.what'),
    text: await text(phone, '.text'),
    code: await text(phone, '.vc'),
    choices: await phone.locator('input[type="radio"][name="choice"]').evaluateAll((rs) => rs.map((r) => r.value)),
    pinFields: await phone.locator('input[type="password"]').count(),
  };
  if (device.code !== wait.code) {
    releaseAll();
    throw new StepError(`the device shows ${device.code}, the esigd page ${wait.code}`);
  }
  if (opts.scenario === 'sign') {
    await phone.fill('#pin', opts.pin);
    await shots.shot(phone, 'device-sign');
  } else {
    await shots.shot(phone, 'device-refuse');
  }

  // 4. Let the esigd page go on to its long poll, then answer on the device.
  waitGate.release();
  if (opts.scenario === 'sign') await phone.click('#confirm');
  else await phone.click('button[value="refuse"]');
  await phone.waitForLoadState('load');
  device.after = {
    url: phone.url(),
    notice: await text(phone, '.notice'),
    request: await phone.locator('form[action="/decide"]').count(),
  };
  await shots.shot(phone, 'device-answered');

  const report = { choice, form, wait, device };
  if (opts.scenario === 'sign') {
    // 5. esigd's result page (it moves on to the e-Service by itself after two seconds; held until shot).
    try {
      await page.locator('#continue, #error').first().waitFor({ timeout: opts.finishTimeout });
    } catch {
      backGate.release();
      throw new StepError(`no esigd result page after the device answered: ${await why(page)}`);
    }
    report.esigdResult = {
      url: page.url(),
      status: await status(page),
      result: await text(page, '#result'),
      text: await text(page, 'main'),
      signatureId: await text(page, '#signature-id'),
      continueHref: await attr(page, '#continue', 'href'),
      metaRefresh: await attr(page, 'meta[http-equiv="refresh" i]', 'content'),
    };
    await shots.shot(page, 'esigd-result');
    backGate.release();
    if (report.esigdResult.result === null) throw new StepError(`esigd shows an error: ${await why(page)}`);
  } else {
    backGate.release();
  }

  // 6. The e-Service callback.
  try {
    await page.waitForURL((u) => u.href.startsWith(callbackUrl), { timeout: opts.finishTimeout, waitUntil: 'load' });
    await page.locator('#result, #error').first().waitFor({ timeout: opts.timeout });
  } catch {
    throw new StepError(`not back at the e-Service (${callbackUrl}): ${await why(page)}`);
  }
  if (opts.scenario === 'sign') {
    // The browser-side esig.js check sets data-ok when done.
    await page.locator('#verify[data-ok]').waitFor({ timeout: opts.timeout }).catch(() => {});
    if (!(await page.locator('#error').count())) {
      try {
        report.result = await downloadResult(page, path.join(opts.out, 'downloads'), opts);
      } catch (e) {
        await shots.shot(page, 'eservice-result');
        throw new StepError(`the e-Service result page: ${e.message}`);
      }
    }
    report.callback = {
      url: page.url(),
      query: params(page.url()),
      error: await text(page, '#error'),
      subject: await text(page, '#subject'),
      issuer: await text(page, '#issuer'),
      signatureId: await text(page, '#signature-id'),
      timestampPresent: await attr(page, '#timestamp', 'data-present'),
      serverCheckOk: await attr(page, '#server-check', 'data-ok'),
      browserCheckOk: await attr(page, '#verify', 'data-ok'),
      browserCheck: await text(page, '#verify'),
    };
    await shots.shot(page, 'eservice-result');
    if (report.callback.error) throw new StepError(`the e-Service callback page shows an error: ${report.callback.error}`);
    report.callback.format = await text(page, '#format');
    if (report.result.format === 'CAdES' || report.result.format === 'PAdES') {
      const [download] = await Promise.all([
        page.waitForEvent('download', { timeout: opts.timeout }),
        page.click('#download'),
      ]);
      report.signature = path.join(opts.out, 'signature.p7s');
      await download.saveAs(report.signature);
    }
  } else {
    report.callback = {
      url: page.url(),
      query: params(page.url()),
      errorCode: await text(page, '#error-code'),
      errorDescription: await text(page, '#error-description'),
      result: await text(page, '#result'),
    };
    await shots.shot(page, 'eservice-refused');
  }
  return {
    ...report,
    navigations: seen.navigations, deviceNavigations: phoneSeen.navigations,
    dialogs: [...seen.dialogs, ...phoneSeen.dialogs],
    pageErrors: [...seen.pageErrors, ...phoneSeen.pageErrors],
    consoleErrors: [...seen.consoleErrors, ...phoneSeen.consoleErrors],
  };
}

// ---------------------------------------------------------------------------------------------------------------

async function main() {
  const opts = parseCli();
  fs.mkdirSync(opts.out, { recursive: true });
  if (!fs.existsSync(opts.chromium)) {
    process.stderr.write(`scd-sign-flow: Chromium not found at ${opts.chromium}: ${INSTALL_HINT}\n`);
    process.stdout.write(`${JSON.stringify({ ok: false, error: 'chromium missing' })}\n`);
    process.exit(3);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    process.stderr.write(`scd-sign-flow: npm playwright-core is not installed: ${INSTALL_HINT}\n`);
    process.stdout.write(`${JSON.stringify({ ok: false, error: 'playwright-core missing' })}\n`);
    process.exit(3);
  }
  const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS });
  const shots = shooter(opts.out);
  const watchdog = setTimeout(() => {
    process.stderr.write('scd-sign-flow: gave up after 6 minutes\n');
    process.exit(1);
  }, 6 * 60 * 1000);
  watchdog.unref();
  try {
    const seen = await scdSign(browser, opts, shots);
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
    process.stderr.write(`scd-sign-flow: scenario ${opts.scenario} failed (tabs at ${at.join(', ')}): ${message}\n`);
    process.stdout.write(`${JSON.stringify({ ok: false, scenario: opts.scenario, error: message, at, screenshots: shots.taken })}\n`);
    await browser.close().catch(() => {});
    process.exit(1);
  }
}

main().catch((e) => {
  process.stderr.write(`scd-sign-flow: ${e.stack ?? e}\n`);
  process.exit(1);
});
