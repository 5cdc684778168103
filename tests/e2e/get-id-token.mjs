#!/usr/bin/env node
// Programmatic login at the development Identity BB (idp.mjs) without a browser; prints the raw ID token.
//
//   node tests/e2e/get-id-token.mjs --issuer URL --client-id ID --client-secret S --redirect-uri URI --user LOGIN
//        [--password test] [--scope "openid profile national_id"] [--nonce N] [--json]
//   node tests/e2e/get-id-token.mjs --forge --keys KEYS.json --header JSON --claims JSON
//
// --forge (tests of the verifier): prints a JWT with exactly the given protected header and claims, signed with the
// IdP's private key file (idp.mjs --keys) for header.alg ES256 / RS256 (the key of that type; header.kid defaults to
// its kid, "kid": null leaves it out), HMAC-SHA256 keyed with the PEM of the IdP's public ES256 key for HS256 (the
// key-confusion attack), and unsigned (empty signature) for "none".
// Discovery, authorization code flow with PKCE S256 and a random state, fetch with a manual cookie jar and manual
// redirects, fills the login form, stops at the redirect to the redirect URI (never fetches it), checks the state,
// exchanges the code (client_secret_basic) and prints the id_token, alone on one line, to stdout.
// --json: prints instead one line {"id_token": "...", "access_token": "...", "expires_in": N, "scope": "..."}, the
// ID token and the (opaque) access token of the same login.
// Any failure: a message on stderr and a non-zero exit status.
//
// The building blocks are exported for the self-test (idp.test.mjs).

import crypto from 'node:crypto';
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const MAX_STEPS = 20;

/** A failure with a message meant for humans. */
export class FlowError extends Error {}

/** A minimal RFC 6265 cookie jar for one origin: name/path matching and expiry, nothing more. */
export class CookieJar {
  #cookies = new Map(); // `${path}\n${name}` -> { name, value, path }

  /** Stores the Set-Cookie headers of `res`, a response to a request for `url`. */
  store(url, res) {
    const headers = typeof res.headers.getSetCookie === 'function' ? res.headers.getSetCookie() : [];
    for (const header of headers) {
      const [pair, ...attrs] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = url.pathname.replace(/\/[^/]*$/, '') || '/';
      let expired = false;
      for (const attr of attrs) {
        const i = attr.indexOf('=');
        const key = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
        const val = i < 0 ? '' : attr.slice(i + 1).trim();
        if (key === 'path' && val.startsWith('/')) path = val;
        if (key === 'max-age' && Number(val) <= 0) expired = true;
        if (key === 'expires' && Date.parse(val) <= Date.now()) expired = true;
      }
      const id = `${path}\n${name}`;
      if (expired) this.#cookies.delete(id);
      else this.#cookies.set(id, { name, value, path });
    }
  }

  /** The Cookie header value for a request to `url` (undefined when there is none). */
  header(url) {
    const p = url.pathname;
    const out = [...this.#cookies.values()]
      .filter((c) => p === c.path || p.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .sort((a, b) => b.path.length - a.path.length)
      .map((c) => `${c.name}=${c.value}`);
    return out.length ? out.join('; ') : undefined;
  }
}

/** The HTML entities the IdP's escaping produces, decoded. */
export function unescapeHtml(s) {
  return s
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&amp;', '&');
}

/** The OpenID Provider metadata of `issuer` (its `issuer` must match exactly). */
export async function discover(issuer) {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let res;
  try {
    res = await fetch(url, { headers: { accept: 'application/json' } });
  } catch (err) {
    throw new FlowError(`discovery: cannot reach ${url}: ${err.cause?.message ?? err.message}`);
  }
  if (!res.ok) throw new FlowError(`discovery: ${url} answered HTTP ${res.status}`);
  const meta = await res.json();
  if (meta.issuer !== issuer) throw new FlowError(`discovery: issuer is ${meta.issuer}, expected ${issuer}`);
  return meta;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** A fresh PKCE S256 pair. */
export function pkce() {
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

function isRedirectTarget(location, redirectUri) {
  const a = new URL(location);
  const b = new URL(redirectUri);
  return a.origin === b.origin && a.pathname === b.pathname;
}

/**
 * Runs the front-channel part of the code flow: authorization request, login form, redirects; stops at the
 * redirect to `redirectUri` without fetching it. `action` is "login" (fill the form) or "cancel" (press Cancel).
 * Returns { params (URLSearchParams of the redirect), state, nonce, verifier, meta }; the state is checked.
 */
export async function authorize({
  issuer, clientId, redirectUri, user, password = 'test', scope = 'openid profile national_id', nonce,
  action = 'login', meta,
}) {
  meta ??= await discover(issuer);
  const { verifier, challenge } = pkce();
  const state = b64url(crypto.randomBytes(16));
  nonce ??= b64url(crypto.randomBytes(16));
  const auth = new URL(meta.authorization_endpoint);
  auth.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    scope,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();

  const origin = new URL(issuer).origin;
  const jar = new CookieJar();
  let url = auth;
  let init = { method: 'GET' };
  let formSubmitted = false;
  for (let step = 0; step < MAX_STEPS; step += 1) {
    if (url.origin !== origin) throw new FlowError(`refusing to follow a redirect off the IdP to ${url.origin}`);
    const headers = { ...(init.headers ?? {}) };
    const cookie = jar.header(url);
    if (cookie) headers.cookie = cookie;
    let res;
    try {
      res = await fetch(url, { ...init, headers, redirect: 'manual' });
    } catch (err) {
      throw new FlowError(`${init.method} ${url.pathname}: ${err.cause?.message ?? err.message}`);
    }
    jar.store(url, res);

    if (res.status >= 300 && res.status < 400) {
      await res.arrayBuffer();
      const location = res.headers.get('location');
      if (!location) throw new FlowError(`${init.method} ${url.pathname}: HTTP ${res.status} without Location`);
      const next = new URL(location, url);
      if (isRedirectTarget(next.href, redirectUri)) {
        const params = next.searchParams;
        if (params.get('state') !== state) {
          throw new FlowError(`state mismatch at the redirect: got ${params.get('state')}, expected ${state}`);
        }
        return { params, state, nonce, verifier, meta };
      }
      url = next;
      init = { method: 'GET' };
      continue;
    }

    const body = await res.text();
    const form = /<form\b[^>]*\baction="([^"]*)"/i.exec(body);
    if (form && /name="password"/.test(body)) {
      if (formSubmitted && action === 'login') {
        const alert = /role="alert"[^>]*>([^<]*)</.exec(body);
        throw new FlowError(`login as ${user} failed: ${alert ? unescapeHtml(alert[1]) : 'login form shown again'}`);
      }
      if (formSubmitted) throw new FlowError(`cancel failed (HTTP ${res.status}): login form shown again`);
      formSubmitted = true;
      const fields = action === 'cancel'
        ? { action: 'cancel' }
        : { login: user ?? '', password, action: 'login' };
      url = new URL(unescapeHtml(form[1]), url);
      init = {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(fields).toString(),
      };
      continue;
    }
    const text = body.replace(/<style[\s\S]*?<\/style>/gi, '').replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
    throw new FlowError(`${init.method} ${url.pathname}: unexpected HTTP ${res.status}: ${unescapeHtml(text).slice(0, 500)}`);
  }
  throw new FlowError(`no redirect to ${redirectUri} after ${MAX_STEPS} requests`);
}

/** Exchanges `code` at the token endpoint; `auth` is { clientSecret } (client_secret_basic) or { clientAssertion }. */
export async function exchangeCode({ meta, clientId, redirectUri, code, verifier, clientSecret, clientAssertion }) {
  const form = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier });
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (clientAssertion) {
    form.set('client_id', clientId);
    form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    form.set('client_assertion', clientAssertion);
  } else {
    // RFC 6749 section 2.3.1: both parts form-urlencoded before Basic.
    const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
    headers.authorization = `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret ?? '')}`).toString('base64')}`;
  }
  let res;
  try {
    res = await fetch(meta.token_endpoint, { method: 'POST', headers, body: form.toString() });
  } catch (err) {
    throw new FlowError(`token endpoint: ${err.cause?.message ?? err.message}`);
  }
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new FlowError(`token endpoint: HTTP ${res.status}, not JSON: ${text.slice(0, 300)}`);
  }
  if (!res.ok) {
    throw new FlowError(`token endpoint: HTTP ${res.status}: ${json.error ?? ''}${json.error_description ? `: ${json.error_description}` : ''}`);
  }
  if (typeof json.id_token !== 'string') throw new FlowError('token endpoint: no id_token in the response');
  return json;
}

/** The whole flow for one user; resolves to the raw ID token. */
export async function getIdToken(opts) {
  return (await getTokens(opts)).id_token;
}

/**
 * The whole flow for one user; resolves to { id_token, access_token, expires_in, scope } of that one login (the
 * nonce of the ID token checked).
 */
export async function getTokens(opts) {
  const { params, nonce, verifier, meta } = await authorize({ ...opts, action: 'login' });
  if (params.get('error')) {
    throw new FlowError(`authorization failed: ${params.get('error')}${params.get('error_description') ? `: ${params.get('error_description')}` : ''}`);
  }
  const code = params.get('code');
  if (!code) throw new FlowError('no code at the redirect');
  const tokens = await exchangeCode({ ...opts, meta, code, verifier });
  const payload = JSON.parse(Buffer.from(tokens.id_token.split('.')[1] ?? '', 'base64url').toString('utf8'));
  if (payload.nonce !== nonce) throw new FlowError(`nonce mismatch in the ID token: ${payload.nonce} != ${nonce}`);
  if (typeof tokens.access_token !== 'string' || !tokens.access_token) {
    throw new FlowError('token endpoint: no access_token in the response');
  }
  return {
    id_token: tokens.id_token,
    access_token: tokens.access_token,
    expires_in: tokens.expires_in,
    scope: tokens.scope,
  };
}

/** A JWT with exactly `header` and `claims` (see --forge above). */
export async function forge(keysFile, header, claims) {
  const { importJWK, exportSPKI } = await import('jose');
  const jwks = JSON.parse(fs.readFileSync(keysFile, 'utf8'));
  const kty = { ES256: 'EC', RS256: 'RSA', HS256: 'EC' }[header.alg];
  const jwk = kty && jwks.keys.find((k) => k.kty === kty);
  const h = { ...header };
  if (jwk && h.kid === undefined) h.kid = jwk.kid;
  if (h.kid === null) delete h.kid;
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64(h)}.${b64(claims)}`;
  let sig;
  if (header.alg === 'none') {
    sig = Buffer.alloc(0);
  } else if (header.alg === 'HS256') {
    const { d, ...pub } = jwk;
    const pem = await exportSPKI(await importJWK({ ...pub, alg: 'ES256' }, 'ES256', { extractable: true }));
    sig = crypto.createHmac('sha256', pem).update(input).digest();
  } else if (jwk) {
    const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
    sig = header.alg === 'ES256'
      ? crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
      : crypto.sign('sha256', Buffer.from(input), key);
  } else {
    throw new FlowError(`--forge: no key for alg ${header.alg}`);
  }
  return `${input}.${sig.toString('base64url')}`;
}

async function main() {
  if (process.argv.includes('--forge')) {
    const { values: f } = parseArgs({
      options: { forge: { type: 'boolean' }, keys: { type: 'string' }, header: { type: 'string' }, claims: { type: 'string' } },
      strict: true,
    });
    if (!f.keys || !f.header || !f.claims) throw new FlowError('--forge needs --keys, --header and --claims');
    process.stdout.write(`${await forge(f.keys, JSON.parse(f.header), JSON.parse(f.claims))}\n`);
    return;
  }
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        issuer: { type: 'string' },
        'client-id': { type: 'string' },
        'client-secret': { type: 'string' },
        'redirect-uri': { type: 'string' },
        user: { type: 'string' },
        password: { type: 'string', default: 'test' },
        scope: { type: 'string', default: 'openid profile national_id' },
        nonce: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    throw new FlowError(err.message);
  }
  const missing = ['issuer', 'client-id', 'client-secret', 'redirect-uri', 'user'].filter((k) => values[k] === undefined);
  if (missing.length) {
    throw new FlowError(`missing ${missing.map((k) => `--${k}`).join(', ')}\nusage: node get-id-token.mjs --issuer URL `
      + '--client-id ID --client-secret S --redirect-uri URI --user LOGIN [--password test] '
      + '[--scope "openid profile national_id"] [--nonce N] [--json]');
  }
  const tokens = await getTokens({
    issuer: values.issuer,
    clientId: values['client-id'],
    clientSecret: values['client-secret'],
    redirectUri: values['redirect-uri'],
    user: values.user,
    password: values.password,
    scope: values.scope,
    nonce: values.nonce,
  });
  process.stdout.write(values.json ? `${JSON.stringify(tokens)}\n` : `${tokens.id_token}\n`);
}

const invokedDirectly = (() => {
  try {
    return !!process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
})();

if (invokedDirectly) {
  main().catch((err) => {
    process.stderr.write(`get-id-token: ${err instanceof FlowError ? err.message : (err.stack ?? err)}\n`);
    process.exit(1);
  });
}
