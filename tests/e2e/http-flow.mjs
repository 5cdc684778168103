// Drives workflow 9.1 through esigd's pages with plain HTTP (no browser): the interactive URL an e-Service
// would redirect to, the choice page (National ID), the Identity BB's login form, esigd's OIDC callback and
// result page, up to the redirect to the e-Service callback, which is printed but never fetched.
//
//   node tests/e2e/http-flow.mjs --start URL --callback-prefix PREFIX [--user mari] [--password test]
//        [--action login|cancel]
//
// Prints one JSON line: {"callback": "<url>", "params": {...}} (the e-Service callback and its query), or
// exits 1 with a message. Used by appliance/tests/oidc_flow_http.rs; the browser tests cover the same flow in
// Chromium.

import { parseArgs } from 'node:util';
import { CookieJar, FlowError, unescapeHtml as unescapeNamed } from './get-id-token.mjs';

/** HTML entities decoded: the named ones and numeric ones (esigd's templates escape '/' as &#x2f;). */
function unescapeHtml(s) {
  return unescapeNamed(
    s
      .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
      .replace(/&#([0-9]+);/g, (_, d) => String.fromCodePoint(parseInt(d, 10))),
  );
}

const MAX_STEPS = 30;

function attr(html, id, name) {
  const re = new RegExp(`<[^>]*\\bid="${id}"[^>]*>`, 'i');
  const tag = re.exec(html);
  if (!tag) return undefined;
  const a = new RegExp(`\\b${name}="([^"]*)"`, 'i').exec(tag[0]);
  return a ? unescapeHtml(a[1]) : undefined;
}

export async function run({ start, callbackPrefix, user = 'mari', password = 'test', action = 'login' }) {
  const jars = new Map(); // origin -> CookieJar
  const jar = (u) => {
    if (!jars.has(u.origin)) jars.set(u.origin, new CookieJar());
    return jars.get(u.origin);
  };
  let url = new URL(start);
  let init = { method: 'GET' };
  let loginSubmitted = false;
  for (let step = 0; step < MAX_STEPS; step += 1) {
    if (url.href.startsWith(callbackPrefix)) {
      return { callback: url.href, params: Object.fromEntries(url.searchParams) };
    }
    const headers = { ...(init.headers ?? {}) };
    const cookie = jar(url).header(url);
    if (cookie) headers.cookie = cookie;
    let res;
    try {
      res = await fetch(url, { ...init, headers, redirect: 'manual' });
    } catch (err) {
      throw new FlowError(`${init.method} ${url.href}: ${err.cause?.message ?? err.message}`);
    }
    jar(url).store(url, res);
    if (res.status >= 300 && res.status < 400) {
      await res.arrayBuffer();
      url = new URL(res.headers.get('location'), url);
      init = { method: 'GET' };
      continue;
    }
    const body = await res.text();
    if (res.status !== 200) {
      const main = /<main>([\s\S]*?)<\/main>/.exec(body);
      const text = unescapeHtml((main ? main[1] : body).replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim());
      throw new FlowError(`${init.method} ${url.pathname}: HTTP ${res.status}: ${text.slice(0, 400)}`);
    }
    // esigd's choice page: take National ID.
    const choice = attr(body, 'choice-national-id', 'href');
    if (choice) {
      url = new URL(choice, url);
      init = { method: 'GET' };
      continue;
    }
    // esigd's result page: follow "Return to the e-Service".
    const cont = attr(body, 'continue', 'href');
    if (cont) {
      url = new URL(cont, url);
      init = { method: 'GET' };
      continue;
    }
    // The Identity BB's login form.
    const form = /<form\b[^>]*\baction="([^"]*)"/i.exec(body);
    if (form && /name="password"/.test(body)) {
      if (loginSubmitted) throw new FlowError(`login as ${user} failed: the form was shown again`);
      loginSubmitted = true;
      const fields = action === 'cancel' ? { action: 'cancel' } : { login: user, password, action: 'login' };
      url = new URL(unescapeHtml(form[1]), url);
      init = {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(fields).toString(),
      };
      continue;
    }
    throw new FlowError(`${url.pathname}: a page this driver does not know: ${body.slice(0, 300)}`);
  }
  throw new FlowError(`no redirect to ${callbackPrefix} after ${MAX_STEPS} requests`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      start: { type: 'string' },
      'callback-prefix': { type: 'string' },
      user: { type: 'string', default: 'mari' },
      password: { type: 'string', default: 'test' },
      action: { type: 'string', default: 'login' },
    },
  });
  try {
    if (!values.start || !values['callback-prefix']) throw new FlowError('--start and --callback-prefix are required');
    const out = await run({ ...values, callbackPrefix: values['callback-prefix'] });
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } catch (err) {
    process.stderr.write(`http-flow: ${err instanceof FlowError ? err.message : err.stack}\n`);
    process.exit(1);
  }
}
