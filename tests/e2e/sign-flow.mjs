#!/usr/bin/env node
// Browser driver for the esigd one-time signing flow (GovStack workflow 9.1): Debian's Chromium through
// npm playwright-core, a fresh browser context per run. Used by appliance/tests/browser_flow.rs.
//
//   node tests/e2e/sign-flow.mjs --scenario SCENARIO --out DIR [options]
//
// Scenarios (the e-Service is examples/eservice/server.mjs):
//   happy           --eservice URL --user U [--password P] [--document FILE] [--format F]
//                   e-Service start page (--format: the signature format to choose; default what the page
//                   chooses: PAdES for a PDF, else CAdES) -> esigd choice page -> "National ID" -> IdP login ->
//                   esigd result page -> e-Service callback (result page); downloads signature.p7s into --out
//                   and what the result page offers for the format (PAdES: the signed PDF it embedded in the
//                   browser; XAdES, JWS: the signature file and the document); then replays the OIDC callback
//                   URL esigd got from the IdP (must be refused).
//   cancel          --eservice URL [--document FILE]
//                   as happy, but presses "Cancel" at the IdP; ends on the e-Service callback.
//   tampered-state  --eservice URL --user U [--password P]
//                   as happy up to the IdP login; the IdP's redirect to esigd's OIDC callback is held back
//                   (the genuine code never reaches esigd) and a copy with a changed `state` is opened; then
//                   the genuine callback is opened in a fresh context (no esigd session cookie).
//   page            --url URL [--url URL ...] [--name NAME ...] [--scd]
//                   opens each URL in its own fresh context and reports what it shows (status, redirects,
//                   #error, #payment-required, #display-text, dialogs); --scd also follows #choice-scd;
//                   --phone opens them on a phone-sized touch screen (360x740) and reports the layout
//                   (horizontal overflow, where the choices are, the smallest text); --axe runs the
//                   axe-core accessibility rules for WCAG 2.1 A and AA on each page and reports the
//                   violations (the context bypasses the page's CSP so that axe can be injected).
//   paid            --url URL --user U [--password P] --callback-prefix URL
//                   opens URL (with a payment token), signs with National ID up to the callback, then opens
//                   URL again in the same browser (the token is spent).
//
// Common options: --out DIR (screenshots NN-name.png, signature.p7s), --timeout-ms N (default 60000 per step),
// --chromium PATH (default /usr/bin/chromium).
//
// Prints exactly one JSON line on stdout: {"ok":true,"scenario":...,...what was seen...}. On failure: a
// message on stderr, {"ok":false,"error":...} on stdout, a failure screenshot in --out, exit status 1
// (2 for usage errors, 3 when Chromium or playwright-core is missing).

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

function usage(message) {
  process.stderr.write(`sign-flow: ${message}\n`);
  process.exit(2);
}

function parseCli() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        scenario: { type: 'string' },
        eservice: { type: 'string' },
        url: { type: 'string', multiple: true },
        name: { type: 'string', multiple: true },
        user: { type: 'string' },
        password: { type: 'string', default: 'test' },
        document: { type: 'string' },
        format: { type: 'string' },
        out: { type: 'string' },
        'callback-prefix': { type: 'string' },
        scd: { type: 'boolean', default: false },
        phone: { type: 'boolean', default: false },
        axe: { type: 'boolean', default: false },
        'timeout-ms': { type: 'string', default: '60000' },
        chromium: { type: 'string', default: '/usr/bin/chromium' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (e) {
    usage(e.message);
  }
  if (values.help) {
    process.stdout.write('usage: node tests/e2e/sign-flow.mjs --scenario happy|cancel|tampered-state|page|paid --out DIR ...\n'
      + '(see the comment at the top of this file)\n');
    process.exit(0);
  }
  const need = (k) => { if (!values[k]) usage(`--${k} is required for --scenario ${values.scenario}`); };
  need('out');
  switch (values.scenario) {
    case 'happy': case 'tampered-state': need('eservice'); need('user'); break;
    case 'cancel': need('eservice'); break;
    case 'page': if (!values.url?.length) usage('--url is required for --scenario page'); break;
    case 'paid':
      if (values.url?.length !== 1) usage('--scenario paid takes exactly one --url');
      need('user'); need('callback-prefix'); break;
    default: usage(`--scenario must be happy, cancel, tampered-state, page or paid (got ${values.scenario})`);
  }
  if (values.document && !fs.existsSync(values.document)) usage(`--document ${values.document} does not exist`);
  const timeout = Number(values['timeout-ms']);
  if (!Number.isInteger(timeout) || timeout <= 0) usage('--timeout-ms must be a positive integer');
  return { ...values, timeout };
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
      seen.navigations.push({ url: r.url(), status: r.status(), location: r.headers().location ?? null });
    }
  });
  page.on('requestfailed', (req) => {
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) {
      seen.navigations.push({ url: req.url(), status: 0, failure: req.failure()?.errorText ?? 'failed' });
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

function params(url) {
  return Object.fromEntries(new URL(url).searchParams);
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

const origin = (u) => new URL(u).origin;

// ---------------------------------------------------------------------------------------------------------------
// steps

/** e-Service start page -> (document chosen) -> "Sign" -> esigd choice page. Returns what was seen. */
async function eserviceToChoice(page, opts, shots) {
  await page.goto(opts.eservice);
  await page.locator('body[data-ready="true"]').waitFor({ timeout: opts.timeout }).catch(async () => {
    throw new StepError(`the e-Service start page did not get ready (esig.js from esigd not loaded?): `
      + `${await text(page, '#error') ?? await text(page, '#status')}`);
  });
  if (opts.document) await page.setInputFiles('#file', opts.document);
  const formatChoice = await chooseFormat(page, opts);
  await shots.shot(page, 'eservice-start');
  const started = page.waitForResponse((r) => r.url().endsWith('/start') && r.request().method() === 'POST');
  await page.click('#sign');
  const startResponse = await started;
  if (startResponse.status() !== 200) throw new StepError(`e-Service POST /start: HTTP ${startResponse.status()}`);
  await page.waitForURL((u) => u.pathname.endsWith('/v1/sign/interactive'), { timeout: opts.timeout });
  await page.waitForLoadState('load');
  const choiceStatus = await page.evaluate(() => performance.getEntriesByType('navigation')[0]?.responseStatus ?? null);
  if (!(await page.locator('#choice-national-id').count())) {
    throw new StepError(`esigd did not show the choice page (HTTP ${choiceStatus}): `
      + `${await text(page, '#error') ?? await text(page, '#payment-required') ?? (await page.content()).slice(0, 500)}`);
  }
  const choice = {
    url: page.url(),
    status: choiceStatus,
    query: params(page.url()),
    eserviceName: await text(page, '#eservice-name'),
    displayText: await text(page, '#display-text'),
    hashFingerprint: await text(page, '#hash-fingerprint'),
    nationalIdText: await text(page, '#choice-national-id'),
    scdText: await text(page, '#choice-scd'),
    cookies: (await page.context().cookies(page.url()))
      .filter((c) => c.name === 'esigd_session')
      .map(({ name, httpOnly, sameSite, secure, path: p }) => ({ name, httpOnly, sameSite, secure, path: p })),
  };
  await shots.shot(page, 'esigd-choice');
  // What the e-Service sent to esigd (its /start answer is gone with the navigation): these must come back.
  const start = {
    state: choice.query.state, nonce: choice.query.nonce, callbackUrl: choice.query.callbackUrl,
    serviceId: choice.query.serviceId, hash: choice.query.hash,
  };
  choice.format = choice.query.format;
  choice.docs = new URL(choice.url).searchParams.getAll('doc');
  return { start, choice, formatChoice };
}

/** Waits for the IdP login form; screenshot; fills it and presses "Sign in" (or "Cancel"). */
async function idpLogin(page, opts, shots, action = 'Sign in') {
  const login = page.locator('input[name="login"]');
  await login.waitFor({ timeout: opts.timeout }).catch(async () => {
    throw new StepError(`no Identity BB login form at ${page.url()}: ${(await page.content()).slice(0, 500)}`);
  });
  const idp = { url: page.url(), query: params(page.url()) };
  if (action === 'Sign in') {
    await login.fill(opts.user);
    await page.fill('input[name="password"]', opts.password);
  }
  await shots.shot(page, 'idp-login');
  await page.getByRole('button', { name: action }).click({ noWaitAfter: true });
  return idp;
}

/** Waits until the main frame is at a URL starting with `prefix`, and the page has loaded. */
async function waitForPrefix(page, prefix, opts, what) {
  try {
    await page.waitForURL((u) => u.href.startsWith(prefix), { timeout: opts.timeout, waitUntil: 'load' });
  } catch {
    throw new StepError(`${what}: still at ${page.url()} after ${opts.timeout} ms: `
      + `${await text(page, '#error') ?? (await page.content()).slice(0, 500)}`);
  }
}

async function pageReport(page, response, seen) {
  const displayHtml = page.locator('#display-text').first();
  return {
    url: page.url(),
    status: response ? response.status() : null,
    redirectedFrom: response?.request().redirectedFrom()?.url() ?? null,
    title: await page.title(),
    error: await text(page, '#error'),
    paymentRequired: await text(page, '#payment-required'),
    eserviceName: await text(page, '#eservice-name'),
    displayText: await text(page, '#display-text'),
    displayTextScripts: (await displayHtml.count())
      ? await displayHtml.evaluate((e) => e.querySelectorAll('script').length) : null,
    hashFingerprint: await text(page, '#hash-fingerprint'),
    choiceNationalId: await text(page, '#choice-national-id'),
    choiceScd: await text(page, '#choice-scd'),
    metaRefresh: await attr(page, 'meta[http-equiv="refresh" i]', 'content'),
    headers: response ? await response.allHeaders().then((h) => ({
      'content-security-policy': h['content-security-policy'] ?? null,
      'x-frame-options': h['x-frame-options'] ?? null,
      'set-cookie': h['set-cookie'] ? h['set-cookie'].replace(/=[^;\n]*/, '=…') : null,
    })) : null,
    navigations: [...seen.navigations],
    dialogs: [...seen.dialogs],
  };
}

// ---------------------------------------------------------------------------------------------------------------
// scenarios

async function happy(browser, opts, shots) {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const seen = watch(page);
  const { start, choice, formatChoice } = await eserviceToChoice(page, opts, shots);

  // Remember the Identity BB's redirect to esigd (for the replay check at the end).
  let oidcCallback = null;
  page.on('request', (r) => {
    if (r.isNavigationRequest() && new URL(r.url()).pathname.endsWith('/v1/oidc/callback') && !oidcCallback) {
      oidcCallback = r.url();
    }
  });
  // Hold the browser's way back to the e-Service until the esigd result page is in a screenshot (it moves on
  // by itself after about a second).
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const callbackPrefix = start.callbackUrl;
  const toEservice = (u) => u.href.startsWith(callbackPrefix);
  await page.route(toEservice, async (route) => {
    await gate;
    await route.continue();
  });

  await page.click('#choice-national-id');
  const idp = await idpLogin(page, opts, shots);
  // The authorization request esigd sent the browser to (the login page itself is at /interaction/…).
  const authorization = seen.navigations.find((n) => new URL(n.url).searchParams.has('response_type'));
  idp.authorizationUrl = authorization?.url ?? null;
  idp.query = authorization ? params(authorization.url) : {};

  const esigdOrigin = origin(choice.url);
  try {
    await page.waitForURL((u) => u.origin === esigdOrigin, { timeout: opts.timeout, waitUntil: 'load' });
    await page.locator('#continue').waitFor({ timeout: opts.timeout });
  } catch {
    release();
    throw new StepError(`no esigd result page with #continue after login (at ${page.url()}): `
      + `${await text(page, '#error') ?? (await page.content()).slice(0, 500)}`);
  }
  const esigdResult = {
    url: page.url(),
    result: await text(page, '#result'),
    continueHref: await attr(page, '#continue', 'href'),
    metaRefresh: await attr(page, 'meta[http-equiv="refresh" i]', 'content'),
  };
  await shots.shot(page, 'esigd-result');
  release();

  await waitForPrefix(page, callbackPrefix, opts, 'back to the e-Service');
  await page.locator('#result, #error').first().waitFor({ timeout: opts.timeout });
  if (await page.locator('#error').count()) {
    throw new StepError(`the e-Service callback page shows an error: ${await text(page, '#error')}`);
  }
  // The browser-side esig.js check sets data-ok when done.
  await page.locator('#verify[data-ok]').waitFor({ timeout: opts.timeout }).catch(() => {});
  const callback = {
    url: page.url(),
    query: params(page.url()),
    subject: await text(page, '#subject'),
    issuer: await text(page, '#issuer'),
    validFrom: await text(page, '#valid-from'),
    validTo: await text(page, '#valid-to'),
    signatureId: await text(page, '#signature-id'),
    timestampPresent: await attr(page, '#timestamp', 'data-present'),
    serverCheckOk: await attr(page, '#server-check', 'data-ok'),
    browserCheckOk: await attr(page, '#verify', 'data-ok'),
    browserCheck: await text(page, '#verify'),
  };
  // The result page's script: the browser check, the kept document, the PDF embedding.
  let result;
  try {
    result = await downloadResult(page, path.join(opts.out, 'downloads'), opts);
  } catch (e) {
    await shots.shot(page, 'eservice-result');
    throw new StepError(`the e-Service result page: ${e.message}`);
  }
  callback.browserCheckOk = await attr(page, '#verify', 'data-ok');
  callback.browserCheck = await text(page, '#verify');
  callback.format = await text(page, '#format');
  await shots.shot(page, 'eservice-result');

  // The CMS (CAdES: the detached signature; PAdES: what went into the PDF).
  let p7s = null;
  if (result.format === 'CAdES' || result.format === 'PAdES') {
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: opts.timeout }), page.click('#download')]);
    p7s = path.join(opts.out, 'signature.p7s');
    await download.saveAs(p7s);
  }

  // A replayed OIDC callback (same code, same state) must be refused.
  let replay = null;
  if (oidcCallback) {
    await page.unroute(toEservice);
    const before = seen.navigations.length;
    const response = await page.goto(oidcCallback);
    await page.waitForLoadState('load');
    replay = await pageReport(page, response, { ...seen, navigations: seen.navigations.slice(before) });
    replay.requested = oidcCallback;
    await shots.shot(page, 'esigd-replayed-callback');
  }
  await context.close();
  return {
    start, choice, formatChoice, result, idp, oidcCallback, esigdResult, callback, signature: p7s, replay,
    navigations: seen.navigations, dialogs: seen.dialogs, pageErrors: seen.pageErrors, consoleErrors: seen.consoleErrors,
  };
}

async function cancel(browser, opts, shots) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = watch(page);
  const { start, choice } = await eserviceToChoice(page, opts, shots);
  await page.click('#choice-national-id');
  const idp = await idpLogin(page, opts, shots, 'Cancel');
  await waitForPrefix(page, start.callbackUrl, opts, 'back to the e-Service after Cancel');
  const callback = {
    url: page.url(),
    query: params(page.url()),
    errorCode: await text(page, '#error-code'),
    errorDescription: await text(page, '#error-description'),
    result: await text(page, '#result'),
  };
  await shots.shot(page, 'eservice-cancelled');
  await context.close();
  return { start, choice, idp, callback, navigations: seen.navigations, dialogs: seen.dialogs };
}

async function tamperedState(browser, opts, shots) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = watch(page);
  const { start, choice } = await eserviceToChoice(page, opts, shots);
  // Redirects are not routed, so the login form's POST is: its redirects inside the IdP are followed here
  // (same cookie jar), and the one to esigd is captured instead of followed.
  let captured;
  const held = new Promise((resolve) => { captured = resolve; });
  let idpOrigin = null;
  const isLoginPost = (u) => idpOrigin !== null && u.origin === idpOrigin && u.pathname.startsWith('/interaction/');
  await page.route(isLoginPost, async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    let url = route.request().url();
    let response = await route.fetch({ maxRedirects: 0 });
    for (let hop = 0; hop < 10; hop += 1) {
      const location = response.headers().location;
      if (!location) break;
      const next = new URL(location, url);
      if (next.origin !== idpOrigin) {
        captured(next.href);
        break;
      }
      url = next.href;
      response = await context.request.get(url, { maxRedirects: 0 });
    }
    captured(null);
    return route.fulfill({
      status: 200,
      contentType: 'text/html',
      body: '<!doctype html><title>held</title><p id="held">The test held back the redirect to esigd.</p>',
    });
  });
  await page.click('#choice-national-id');
  await page.locator('input[name="login"]').waitFor({ timeout: opts.timeout });
  idpOrigin = origin(page.url());
  const idp = await idpLogin(page, opts, shots);
  let timer;
  const genuine = await Promise.race([
    held,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new StepError(
        `the Identity BB did not redirect to esigd within ${opts.timeout} ms (at ${page.url()})`,
      )), opts.timeout);
    }),
  ]).finally(() => clearTimeout(timer));
  if (!genuine || !new URL(genuine).pathname.endsWith('/v1/oidc/callback')) {
    throw new StepError(`the Identity BB did not redirect to esigd's /v1/oidc/callback but to ${genuine}`);
  }
  await page.unroute(isLoginPost);
  const u = new URL(genuine);
  const state = u.searchParams.get('state') ?? '';
  // Same length, last character changed: a state esigd never issued.
  const last = state.slice(-1);
  u.searchParams.set('state', `${state.slice(0, -1)}${last === 'A' ? 'B' : 'A'}`);
  const before = seen.navigations.length;
  const response = await page.goto(u.href);
  await page.waitForLoadState('load');
  const tampered = await pageReport(page, response, { ...seen, navigations: seen.navigations.slice(before) });
  tampered.requested = u.href;
  tampered.genuineState = state;
  await shots.shot(page, 'esigd-tampered-state');
  await context.close();

  // The genuine callback in another browser (no esigd session cookie): a forged callback, refused.
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  const otherSeen = watch(otherPage);
  const otherResponse = await otherPage.goto(genuine);
  await otherPage.waitForLoadState('load');
  const withoutSession = await pageReport(otherPage, otherResponse, otherSeen);
  withoutSession.requested = genuine;
  await shots.shot(otherPage, 'esigd-callback-without-session');
  await other.close();
  return { start, choice, idp, genuineCallback: genuine, tampered, withoutSession, navigations: seen.navigations };
}

/** A small phone: what the signing pages must be usable on. */
const PHONE = { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

/** Where things are on the page: horizontal overflow, the choice buttons' boxes, the smallest text. */
async function layout(page) {
  return page.evaluate(() => {
    const box = (selector) => {
      const e = document.querySelector(selector);
      if (!e) return null;
      const r = e.getBoundingClientRect();
      return { left: r.left, right: r.right, width: r.width, height: r.height };
    };
    const textSizes = [...document.querySelectorAll('body *')]
      .filter((e) => [...e.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim()))
      .map((e) => parseFloat(getComputedStyle(e).fontSize));
    return {
      viewportWidth: window.innerWidth,
      scrollWidth: document.documentElement.scrollWidth,
      nationalId: box('#choice-national-id'),
      scd: box('#choice-scd'),
      displayText: box('#display-text'),
      minFontPx: textSizes.length ? Math.min(...textSizes) : null,
    };
  });
}

/** axe-core's WCAG 2.1 A/AA violations on the page: [{id, impact, help, targets}]. */
async function accessibility(page) {
  const { createRequire } = await import('node:module');
  const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
  await page.addScriptTag({ content: fs.readFileSync(axePath, 'utf8') });
  const result = await page.evaluate(async () => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  }));
  return {
    violations: result.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')),
    })),
    passes: result.passes.length,
  };
}

async function pages(browser, opts, shots) {
  const reports = [];
  for (const [i, url] of opts.url.entries()) {
    const name = opts.name?.[i] ?? `page-${i + 1}`;
    const context = await browser.newContext({ ...(opts.phone ? PHONE : {}), ...(opts.axe ? { bypassCSP: true } : {}) });
    const page = await context.newPage();
    const seen = watch(page);
    const response = await page.goto(url);
    await page.waitForLoadState('load');
    await page.waitForTimeout(300); // a script that was not escaped would have fired by now
    const report = await pageReport(page, response, seen);
    report.name = name;
    report.requested = url;
    if (opts.phone) report.layout = await layout(page);
    if (opts.axe) report.accessibility = await accessibility(page);
    report.cookies = (await context.cookies())
      .filter((c) => c.name === 'esigd_session')
      .map(({ name: n, httpOnly, sameSite, secure }) => ({ name: n, httpOnly, sameSite, secure }));
    await shots.shot(page, name);
    if (opts.scd && (await page.locator('#choice-scd').count())) {
      await Promise.all([page.waitForLoadState('load'), page.click('#choice-scd')]);
      await page.locator('#scd-unavailable, #error').first().waitFor({ timeout: opts.timeout }).catch(() => {});
      report.scd = { url: page.url(), unavailable: await text(page, '#scd-unavailable'), error: await text(page, '#error') };
      if (opts.axe) report.scd.accessibility = await accessibility(page);
      await shots.shot(page, `${name}-scd`);
    }
    report.pageErrors = seen.pageErrors;
    report.consoleErrors = seen.consoleErrors;
    reports.push(report);
    await context.close();
  }
  return { pages: reports };
}

async function paid(browser, opts, shots) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = watch(page);
  const url = opts.url[0];
  const response = await page.goto(url);
  await page.waitForLoadState('load');
  const first = await pageReport(page, response, seen);
  await shots.shot(page, 'paid-choice');
  if (!(await page.locator('#choice-national-id').count())) {
    throw new StepError(`with a fresh payment token esigd did not show the choice page (HTTP ${first.status}): `
      + `${first.paymentRequired ?? first.error ?? ''}`);
  }
  await page.click('#choice-national-id');
  await idpLogin(page, opts, shots);
  await waitForPrefix(page, opts['callback-prefix'], opts, 'back to the e-Service with a paid request');
  const callback = { url: page.url(), query: params(page.url()) };
  await shots.shot(page, 'paid-callback');
  const before = seen.navigations.length;
  const again = await page.goto(url);
  await page.waitForLoadState('load');
  const reused = await pageReport(page, again, { ...seen, navigations: seen.navigations.slice(before) });
  await shots.shot(page, 'paid-token-reused');
  await context.close();
  return { first, callback, reused };
}

// ---------------------------------------------------------------------------------------------------------------

async function main() {
  const opts = parseCli();
  fs.mkdirSync(opts.out, { recursive: true });
  if (!fs.existsSync(opts.chromium)) {
    process.stderr.write(`sign-flow: Chromium is not installed at ${opts.chromium}: ${INSTALL_HINT}\n`);
    process.stdout.write(`${JSON.stringify({ ok: false, error: `no Chromium at ${opts.chromium}` })}\n`);
    process.exit(3);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    process.stderr.write(`sign-flow: cannot load playwright-core (${e.message}): ${INSTALL_HINT}\n`);
    process.stdout.write(`${JSON.stringify({ ok: false, error: 'playwright-core missing' })}\n`);
    process.exit(3);
  }
  const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS });
  const shots = shooter(opts.out);
  const run = { happy, cancel, 'tampered-state': tamperedState, page: pages, paid }[opts.scenario];
  const watchdog = setTimeout(() => {
    process.stderr.write('sign-flow: gave up after 5 minutes\n');
    process.exit(1);
  }, 5 * 60 * 1000);
  watchdog.unref();
  try {
    const seen = await run(browser, opts, shots);
    process.stdout.write(`${JSON.stringify({ ok: true, scenario: opts.scenario, ...seen, screenshots: shots.taken })}\n`);
    await browser.close();
  } catch (e) {
    const contexts = browser.contexts();
    const page = contexts.at(-1)?.pages().at(-1);
    let at = null;
    if (page) {
      at = page.url();
      await page.screenshot({ path: path.join(opts.out, 'failure.png'), fullPage: true }).catch(() => {});
    }
    const message = e instanceof StepError ? e.message : (e.stack ?? String(e));
    process.stderr.write(`sign-flow: scenario ${opts.scenario} failed at ${at}: ${message}\n`);
    process.stdout.write(`${JSON.stringify({ ok: false, scenario: opts.scenario, error: message, at, screenshots: shots.taken })}\n`);
    await browser.close().catch(() => {});
    process.exit(1);
  }
}

main().catch((e) => {
  process.stderr.write(`sign-flow: ${e.stack ?? e}\n`);
  process.exit(1);
});
