#!/usr/bin/env node
// The development / test Identity Building Block: a real OpenID Connect provider (npm `oidc-provider`)
// with built-in test users, first-party clients and its own simple login page.
//
//   node tests/e2e/idp.mjs [--host 127.0.0.1] [--port N] [--config FILE.json] [--keys FILE.json]
//
// --port 0 (the default) listens on any free port. When listening, exactly one JSON line goes to stdout:
//   {"issuer":"http://127.0.0.1:43123","ready":true}
// and the process runs until SIGTERM / SIGINT. One line per request (method, path, status) goes to stderr.
//
// --keys FILE: the private signing JWKS; loaded if it exists, else generated (one EC P-256 key for ES256, one
// RSA key for RS256) and saved there (mode 0600) so that a restarted IdP keeps its keys. Without --keys the keys
// are generated in memory.
//
// --config FILE: { "clients": [...], "users": [...], "claims": {...} }, every part optional; entries are added to
// the built-in defaults (an entry with the client_id / login of a default replaces it).
//   clients: oidc-provider client metadata (client_id, client_secret, redirect_uris, token_endpoint_auth_method
//            "client_secret_basic" | "private_key_jwt", jwks or jwks_uri, id_token_signed_response_alg (default
//            ES256), userinfo_signed_response_alg, post_logout_redirect_uris, ...) plus `id_token_ttl` (seconds,
//            default 600), `access_token_ttl` (seconds, default 600) and `introspect_any_token` (boolean, default
//            false; the built-in `esigd` client has it: see "Access tokens" below).
//   users:   { "login": "...", "password": "test", "sub": "...", "acr": "...", <any claims> }; password defaults
//            to "test", sub to "user-<login>"; `acr` is the login's authentication context (ID token `acr`;
//            defaults: mari eIDAS LoA high, juri substantial). Claims not mapped to a scope are released with
//            the `profile` scope.
//   claims:  extra scope -> claim names mapping (oidc-provider `claims` format), merged over the defaults
//            openid: sub; profile: name given_name family_name birthdate; national_id: individual_id country.
//
// Access tokens (what an e-Service may pass on instead of an ID token): opaque (not JWTs), good for userinfo
// (plain JSON unless the client asked for userinfo_signed_response_alg), revocable at /token/revocation by the
// client they were issued to, and readable at the RFC 7662 introspection endpoint (/token/introspection), which
// also gives the login's `auth_time` and `acr`. A client may introspect its own tokens; one with
// `introspect_any_token: true` (and a real client authentication) those of every client: esigd checks there the
// access tokens its e-Services forward.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';

import * as jose from 'jose';
import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

/** The built-in in-memory storage, on purpose (a development IdP); a subclass so it is not warned about. */
class DevMemoryAdapter extends MemoryAdapter {}

const DEFAULT_ID_TOKEN_TTL = 600;
const DEFAULT_ACCESS_TOKEN_TTL = 600;

const DEFAULT_CLIENTS = [
  {
    client_id: 'esigd',
    client_name: 'esigd eSignature service',
    client_secret: 'esigd-dev-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: ['http://127.0.0.1:8080/v1/oidc/callback', 'http://localhost:8080/v1/oidc/callback'],
    // esigd introspects the access tokens that e-Services (other clients) pass on.
    introspect_any_token: true,
  },
  {
    client_id: 'demo-eservice',
    client_name: 'Demo e-Service',
    client_secret: 'demo-eservice-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: ['http://127.0.0.1:8090/login/callback'],
  },
];

const DEFAULT_USERS = [
  {
    login: 'mari',
    password: 'test',
    sub: 'user-mari',
    name: 'Mari Maasikas',
    given_name: 'Mari',
    family_name: 'Maasikas',
    birthdate: '1990-05-17',
    individual_id: '49005170001',
    country: 'EE',
    // Authentication context of this user's login (the `acr` claim): eIDAS level of assurance.
    acr: 'http://eidas.europa.eu/LoA/high',
  },
  {
    login: 'juri',
    password: 'test',
    sub: 'user-juri',
    name: 'Jüri Õun',
    given_name: 'Jüri',
    family_name: 'Õun',
    birthdate: '1985-01-02',
    individual_id: '38501020002',
    country: 'EE',
    acr: 'http://eidas.europa.eu/LoA/substantial',
  },
];

const DEFAULT_SCOPE_CLAIMS = {
  openid: ['sub'],
  profile: ['name', 'given_name', 'family_name', 'birthdate'],
  national_id: ['individual_id', 'country'],
};

const MAX_FORM_BYTES = 16 * 1024;

function fail(message) {
  process.stderr.write(`idp: ${message}\n`);
  process.exit(1);
}

function parseCli() {
  try {
    const { values } = parseArgs({
      options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '0' },
        config: { type: 'string' },
        keys: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      process.stdout.write('usage: node idp.mjs [--host 127.0.0.1] [--port N] [--config FILE.json] [--keys FILE.json]\n');
      process.exit(0);
    }
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid --port ${values.port}`);
    return { ...values, port };
  } catch (err) {
    return fail(err.message);
  }
}

function readConfig(file) {
  if (!file) return {};
  let cfg;
  try {
    cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`cannot read config ${file}: ${err.message}`);
  }
  if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) fail(`config ${file}: not a JSON object`);
  for (const key of ['clients', 'users']) {
    if (cfg[key] !== undefined && !Array.isArray(cfg[key])) fail(`config ${file}: "${key}" must be an array`);
  }
  if (cfg.claims !== undefined && (cfg.claims === null || typeof cfg.claims !== 'object' || Array.isArray(cfg.claims))) {
    fail(`config ${file}: "claims" must be an object`);
  }
  return cfg;
}

/** Default entries, with config entries added (same key: the config entry replaces the default). */
function mergeByKey(defaults, extra, key, what) {
  const out = new Map(defaults.map((e) => [e[key], e]));
  for (const e of extra ?? []) {
    if (e === null || typeof e !== 'object' || typeof e[key] !== 'string' || !e[key]) {
      fail(`config: every ${what} needs a string "${key}"`);
    }
    out.set(e[key], e);
  }
  return [...out.values()];
}

async function generateJwks() {
  const keys = [];
  for (const [alg, opts] of [['ES256', {}], ['RS256', { modulusLength: 2048 }]]) {
    const { privateKey } = await jose.generateKeyPair(alg, { ...opts, extractable: true });
    const jwk = await jose.exportJWK(privateKey);
    jwk.kid = await jose.calculateJwkThumbprint(jwk);
    jwk.use = 'sig';
    keys.push(jwk);
  }
  return { keys };
}

async function loadOrCreateJwks(file) {
  if (!file) return generateJwks();
  if (fs.existsSync(file)) {
    let jwks;
    try {
      jwks = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      fail(`cannot read keys ${file}: ${err.message}`);
    }
    if (!Array.isArray(jwks?.keys) || jwks.keys.length === 0 || jwks.keys.some((k) => typeof k?.d !== 'string')) {
      fail(`keys ${file}: expected a private JWKS {"keys":[...]}`);
    }
    return jwks;
  }
  const jwks = await generateJwks();
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
  return jwks;
}

function esc(value) {
  return String(value ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

const STYLE = `
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1b1b1b; }
  main { max-width: 24rem; margin: 3rem auto; padding: 1.5rem 2rem; background: #fff; border-radius: 6px;
         box-shadow: 0 1px 3px rgba(0,0,0,.2); }
  h1 { font-size: 1.4rem; margin-top: 0; }
  label { display: block; margin-top: 1rem; font-weight: 600; }
  input { display: block; width: 100%; box-sizing: border-box; padding: .5rem; margin-top: .25rem; font-size: 1rem; }
  .buttons { display: flex; gap: .75rem; margin-top: 1.5rem; }
  button { font-size: 1rem; padding: .5rem 1.25rem; cursor: pointer; }
  button[value="login"] { background: #0b57d0; color: #fff; border: 1px solid #0b57d0; border-radius: 4px; }
  button[value="cancel"] { background: #fff; color: #0b57d0; border: 1px solid #0b57d0; border-radius: 4px; }
  .error { color: #a50e0e; background: #fce8e6; padding: .5rem .75rem; border-radius: 4px; }
  :focus-visible { outline: 3px solid #f9ab00; outline-offset: 2px; }
  pre { white-space: pre-wrap; word-break: break-word; }
`;

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

function loginPage({ uid, clientName, login, error }) {
  const errorHtml = error ? `<p class="error" role="alert" id="login-error">${esc(error)}</p>\n` : '';
  const described = error ? ' aria-describedby="login-error" aria-invalid="true"' : '';
  return page('Sign in - Identity Building Block (development)', `<h1>Sign in</h1>
<p>to continue to <strong>${esc(clientName)}</strong></p>
${errorHtml}<form method="post" action="/interaction/${esc(uid)}">
<label for="login">Username</label>
<input id="login" name="login" type="text" required${login ? '' : ' autofocus'} autocomplete="username" autocapitalize="none" spellcheck="false" value="${esc(login)}"${described}>
<label for="password">Password</label>
<input id="password" name="password" type="password" required${login ? ' autofocus' : ''} autocomplete="current-password"${described}>
<div class="buttons">
<button type="submit" name="action" value="login">Sign in</button>
<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button>
</div>
</form>
<p><small>Development Identity Building Block. Do not use real credentials.</small></p>`);
}

function errorPage(title, fields) {
  const items = Object.entries(fields)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd><pre>${esc(v)}</pre></dd>`)
    .join('\n');
  return page(title, `<h1>${esc(title)}</h1>\n<dl>\n${items}\n</dl>`);
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded') {
      reject(Object.assign(new Error('expected an application/x-www-form-urlencoded form'), { status: 415 }));
      req.resume();
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_FORM_BYTES) {
        reject(Object.assign(new Error('form too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

function sameSecret(a, b) {
  const ha = crypto.createHash('sha256').update(String(a)).digest();
  const hb = crypto.createHash('sha256').update(String(b)).digest();
  return crypto.timingSafeEqual(ha, hb);
}

function sendHtml(res, status, html) {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.setHeader('x-frame-options', 'DENY');
  res.setHeader('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; frame-ancestors 'none'");
  res.end(html);
}

function buildProvider(issuer, { clients, users, scopeClaims, jwks, log }) {
  const usersBySub = new Map(users.map((u) => [u.sub, u]));
  const usersByLogin = new Map(users.map((u) => [u.login, u]));

  const account = (user) => ({
    accountId: user.sub,
    // oidc-provider filters this down to what the granted scopes / claims allow.
    async claims() {
      const { login, password, acr, ...claims } = user;
      return claims;
    },
  });

  const claims = { acr: null, auth_time: null, sid: null, ...scopeClaims };

  const provider = new Provider(issuer, {
    adapter: DevMemoryAdapter,
    clients,
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
      // Every ID token carries auth_time: esigd checks it against identity.max_age (default 10 min).
      require_auth_time: true,
    },
    extraClientMetadata: {
      properties: ['id_token_ttl', 'access_token_ttl', 'introspect_any_token'],
      validator(ctx, key, value) {
        if (['id_token_ttl', 'access_token_ttl'].includes(key) && value !== undefined
          && !(Number.isInteger(value) && value > 0)) {
          throw new Error(`${key} must be a positive integer (seconds)`);
        }
        if (key === 'introspect_any_token' && value !== undefined && typeof value !== 'boolean') {
          throw new Error('introspect_any_token must be a boolean');
        }
      },
    },
    // Opaque access tokens carry the login's auth_time and acr; introspection returns them (esigd applies
    // identity.max_age and identity.acr_values to access tokens as it does to ID tokens).
    async extraTokenClaims(ctx, token) {
      const code = ctx.oidc.entities.AuthorizationCode;
      if (token.kind !== 'AccessToken' || !code) return undefined;
      return {
        ...(code.authTime !== undefined ? { auth_time: code.authTime } : {}),
        ...(code.acr ? { acr: code.acr } : {}),
      };
    },
    jwks,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    claims,
    scopes: Object.keys(claims).filter((k) => Array.isArray(claims[k])),
    // Put the claims of the granted scopes into the ID token itself, not only into userinfo.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    acrValues: ['http://eidas.europa.eu/LoA/low', 'http://eidas.europa.eu/LoA/substantial', 'http://eidas.europa.eu/LoA/high'],
    pkce: { methods: ['S256'], required: () => true },
    clientAuthMethods: ['client_secret_basic', 'private_key_jwt'],
    features: {
      devInteractions: { enabled: false },
      claimsParameter: { enabled: true },
      userinfo: { enabled: true },
      jwtUserinfo: { enabled: true },
      // RFC 7662: a client may read its own tokens; a confidential client with introspect_any_token those of
      // every client (esigd, for the access tokens e-Services forward).
      introspection: {
        enabled: true,
        async allowedPolicy(ctx, client, token) {
          if (token.clientId === client.clientId) return true;
          return client.clientAuthMethod !== 'none' && client.introspect_any_token === true;
        },
      },
      // RFC 7009, so that tests can withdraw an access token before it expires.
      revocation: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page('Sign out', `<h1>Sign out</h1>
<p>Do you want to sign out from the development Identity Building Block?</p>
${form}
<div class="buttons">
<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Sign out</button>
<button type="submit" form="op.logoutForm">Stay signed in</button>
</div>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<h1>Signed out</h1>\n<p>You have been signed out.</p>');
        },
      },
    },
    ttl: {
      AccessToken: (ctx, token, client) => client?.access_token_ttl ?? DEFAULT_ACCESS_TOKEN_TTL,
      AuthorizationCode: 60,
      Grant: 3600,
      IdToken: (ctx, token, client) => client?.id_token_ttl ?? DEFAULT_ID_TOKEN_TTL,
      Interaction: 600,
      Session: 3600,
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      const user = usersBySub.get(sub);
      return user ? account(user) : undefined;
    },
    // First-party clients only: consent is implied. Extend (or create) the grant to cover what is requested.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const accountId = oidc.session?.accountId;
      const clientId = oidc.client.clientId;
      const grantId = oidc.result?.consent?.grantId || oidc.session?.grantIdFor(clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (!accountId) return grant;
      if (!grant || grant.accountId !== accountId || grant.clientId !== clientId) {
        grant = new oidc.provider.Grant({ accountId, clientId });
      }
      const scopes = [...oidc.requestParamOIDCScopes];
      if (scopes.length) grant.addOIDCScope(scopes.join(' '));
      const requested = [...oidc.requestParamClaims];
      if (requested.length) grant.addOIDCClaims(requested);
      await grant.save();
      return grant;
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Sign-in error', `<h1>Something went wrong</h1>\n<dl>\n${Object.entries(out)
        .map(([k, v]) => `<dt>${esc(k)}</dt><dd><pre>${esc(v)}</pre></dd>`)
        .join('\n')}\n</dl>`);
    },
  });

  for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'introspection.error', 'revocation.error', 'end_session.error', 'jwks.error', 'discovery.error']) {
    provider.on(event, (ctx, err) => {
      log(`idp: ${event}: ${err.error ?? err.name}${err.error_description ? `: ${err.error_description}` : ''}`);
    });
  }
  provider.on('server_error', (ctx, err) => log(`idp: server_error: ${err.stack ?? err}`));

  async function interaction(req, res, url) {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)$/.exec(url.pathname);
    if (!m || !['GET', 'POST'].includes(req.method)) {
      sendHtml(res, 404, errorPage('Not found', { path: url.pathname }));
      return;
    }
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch (err) {
      if (req.method === 'POST') req.resume();
      sendHtml(res, 400, errorPage('Sign-in session not found', {
        error: err.error ?? 'invalid_request',
        description: 'The sign-in session expired or cookies are disabled. Start again from the e-Service.',
      }));
      return;
    }
    if (details.uid !== m[1]) {
      if (req.method === 'POST') req.resume();
      sendHtml(res, 400, errorPage('Sign-in session mismatch', { error: 'invalid_request' }));
      return;
    }
    const client = await provider.Client.find(details.params.client_id);
    const clientName = client?.clientName || details.params.client_id;

    if (details.prompt.name === 'consent') {
      // Normally never reached (loadExistingGrant grants everything); first-party clients: grant what is missing.
      if (req.method === 'POST') req.resume();
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      const d = details.prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    if (details.prompt.name !== 'login') {
      if (req.method === 'POST') req.resume();
      sendHtml(res, 400, errorPage('Unsupported interaction', { prompt: details.prompt.name }));
      return;
    }

    if (req.method === 'GET') {
      sendHtml(res, 200, loginPage({ uid: details.uid, clientName, login: details.params.login_hint ?? '' }));
      return;
    }

    let form;
    try {
      form = await readForm(req);
    } catch (err) {
      sendHtml(res, err.status ?? 400, errorPage('Bad request', { error: err.message }));
      return;
    }
    if (form.get('action') === 'cancel') {
      await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'End-User cancelled the sign-in',
      }, { mergeWithLastSubmission: false });
      return;
    }
    const login = form.get('login') ?? '';
    const password = form.get('password') ?? '';
    const user = usersByLogin.get(login);
    // Compare even for unknown users so that timing does not reveal which logins exist.
    const ok = sameSecret(password, user?.password ?? crypto.randomBytes(16).toString('hex')) && !!user;
    if (!ok) {
      // 200, not 401: the form is simply shown again (a 4xx would be a console error in the browser tests).
      sendHtml(res, 200, loginPage({
        uid: details.uid, clientName, login, error: 'Wrong username or password. Please try again.',
      }));
      return;
    }
    await provider.interactionFinished(req, res, {
      login: { accountId: user.sub, amr: ['pwd'], ...(user.acr ? { acr: user.acr } : {}) },
    }, { mergeWithLastSubmission: false });
  }

  const callback = provider.callback();
  const handle = async function handle(req, res) {
    const url = new URL(req.url ?? '/', issuer);
    if (url.pathname.startsWith('/interaction/')) {
      try {
        await interaction(req, res, url);
      } catch (err) {
        log(`idp: interaction error: ${err.stack ?? err}`);
        if (!res.headersSent) sendHtml(res, 500, errorPage('Internal error', { error: 'server_error' }));
        else res.end();
      }
      return;
    }
    callback(req, res);
  };
  return { provider, handle };
}

function normalizeUsers(list) {
  return list.map((u) => {
    const user = { ...u };
    if (user.password === undefined) user.password = 'test';
    if (user.sub === undefined) user.sub = `user-${user.login}`;
    if (typeof user.password !== 'string' || typeof user.sub !== 'string' || !user.sub) {
      fail(`config: user ${user.login}: "password" and "sub" must be strings`);
    }
    return user;
  });
}

function buildScopeClaims(users, extra) {
  const scopeClaims = structuredClone(DEFAULT_SCOPE_CLAIMS);
  for (const [scope, names] of Object.entries(extra ?? {})) {
    if (names !== null && !(Array.isArray(names) && names.every((n) => typeof n === 'string'))) {
      fail(`config: claims.${scope} must be null or an array of claim names`);
    }
    scopeClaims[scope] = names;
  }
  const mapped = new Set(Object.entries(scopeClaims).flatMap(([k, v]) => (Array.isArray(v) ? v : [k])));
  for (const user of users) {
    for (const name of Object.keys(user)) {
      if (['login', 'password'].includes(name) || mapped.has(name)) continue;
      scopeClaims.profile = [...(scopeClaims.profile ?? []), name];
      mapped.add(name);
    }
  }
  return scopeClaims;
}

async function main() {
  const args = parseCli();
  const cfg = readConfig(args.config);
  const clients = mergeByKey(DEFAULT_CLIENTS, cfg.clients, 'client_id', 'client');
  const users = normalizeUsers(mergeByKey(DEFAULT_USERS, cfg.users, 'login', 'user'));
  const scopeClaims = buildScopeClaims(users, cfg.claims);
  const jwks = await loadOrCreateJwks(args.keys);
  const log = (line) => process.stderr.write(`${line}\n`);

  let handler = null;
  const server = http.createServer((req, res) => {
    const started = process.hrtime.bigint();
    const pathOnly = (req.url ?? '/').split('?')[0];
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      log(`${req.method} ${pathOnly} ${res.statusCode} ${ms.toFixed(1)}ms`);
    });
    if (!handler) {
      res.statusCode = 503;
      res.end();
      return;
    }
    handler(req, res);
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(args.port, args.host, resolve);
  });
  const { port } = server.address();
  const hostPart = args.host.includes(':') ? `[${args.host}]` : args.host;
  const issuer = `http://${hostPart}:${port}`;

  try {
    const built = buildProvider(issuer, { clients, users, scopeClaims, jwks, log });
    // Static clients are validated lazily; validate them now so that a bad config fails at start.
    for (const { client_id: id } of clients) {
      try {
        if (!(await built.provider.Client.find(id))) throw new Error('not found');
      } catch (err) {
        throw new Error(`client ${id}: ${err.error_description ?? err.message}`);
      }
    }
    handler = built.handle;
  } catch (err) {
    server.close();
    fail(`invalid configuration: ${err.error_description ?? err.message}`);
  }

  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    log(`idp: ${signal}, shutting down`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  process.stdout.write(`${JSON.stringify({ issuer, ready: true })}\n`);
}

main().catch((err) => fail(err.stack ?? String(err)));
