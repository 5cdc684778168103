// Self-test of the development Identity BB: `node --test tests/e2e/` (after `npm ci --prefix tests/e2e`).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import * as jose from 'jose';

import { authorize, exchangeCode, unescapeHtml } from './get-id-token.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const IDP = path.join(here, 'idp.mjs');
const GET_ID_TOKEN = path.join(here, 'get-id-token.mjs');
const run = promisify(execFile);

const ESIGD = {
  clientId: 'esigd',
  clientSecret: 'esigd-dev-secret',
  redirectUri: 'http://127.0.0.1:8080/v1/oidc/callback',
};
const DEMO = {
  clientId: 'demo-eservice',
  clientSecret: 'demo-eservice-secret',
  redirectUri: 'http://127.0.0.1:8090/login/callback',
};
const SHORT = { clientId: 'short-ttl', clientSecret: 'short-secret', redirectUri: 'http://127.0.0.1:9/short/cb' };
const RSA = { clientId: 'rs256-client', clientSecret: 'rs256-secret', redirectUri: 'http://localhost:9/rs/cb' };
const SIGNED_UI = { clientId: 'signed-userinfo', clientSecret: 'sui-secret', redirectUri: 'http://127.0.0.1:9/sui/cb' };
const PKJWT = { clientId: 'pkjwt-client', redirectUri: 'http://127.0.0.1:9/pk/cb' };

/** Starts idp.mjs with `args`; resolves to { issuer, child, stderr(), stop() } once the ready line is read. */
function startIdp(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [IDP, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`idp did not become ready:\n${err}`));
    }, 20000);
    child.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      const ready = JSON.parse(out.slice(0, nl));
      assert.equal(ready.ready, true);
      assert.match(ready.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
      const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
      resolve({
        issuer: ready.issuer,
        child,
        stderr: () => err,
        async stop() {
          child.kill('SIGTERM');
          return exited;
        },
      });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`idp exited with ${code} before ready:\n${err}`));
    });
  });
}

/** Runs get-id-token.mjs; resolves to { code, stdout, stderr }. */
async function getIdTokenCli(issuer, c, user, extra = []) {
  try {
    const { stdout, stderr } = await run(process.execPath, [
      GET_ID_TOKEN, '--issuer', issuer, '--client-id', c.clientId, '--client-secret', c.clientSecret,
      '--redirect-uri', c.redirectUri, '--user', user, ...extra,
    ]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** `Authorization: Basic` for client `c` (RFC 6749 2.3.1: both parts form-urlencoded first). */
function basic(c) {
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(c.clientId)}:${enc(c.clientSecret)}`).toString('base64')}`;
}

/** POSTs `token` to the RFC 7662 introspection endpoint as client `c`; resolves to { status, body }. */
async function introspect(meta, c, token) {
  const res = await fetch(meta.introspection_endpoint, {
    method: 'POST',
    headers: { authorization: basic(c), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
  });
  return { status: res.status, body: await res.json() };
}

describe('development Identity BB', () => {
  let tmp;
  let idp;
  let meta;
  let jwks;
  let pkPrivate;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'esigd-idp-test-'));
    const { publicKey, privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
    pkPrivate = privateKey;
    const pub = { ...(await jose.exportJWK(publicKey)), kid: 'test-client-key', use: 'sig', alg: 'ES256' };
    const config = {
      clients: [
        {
          client_id: SHORT.clientId,
          client_secret: SHORT.clientSecret,
          redirect_uris: [SHORT.redirectUri],
          id_token_ttl: 2,
          access_token_ttl: 2,
        },
        {
          client_id: RSA.clientId,
          client_secret: RSA.clientSecret,
          redirect_uris: [RSA.redirectUri],
          id_token_signed_response_alg: 'RS256',
        },
        {
          client_id: SIGNED_UI.clientId,
          client_secret: SIGNED_UI.clientSecret,
          redirect_uris: [SIGNED_UI.redirectUri],
          userinfo_signed_response_alg: 'ES256',
        },
        {
          client_id: PKJWT.clientId,
          token_endpoint_auth_method: 'private_key_jwt',
          token_endpoint_auth_signing_alg: 'ES256',
          jwks: { keys: [pub] },
          redirect_uris: [PKJWT.redirectUri],
        },
      ],
      users: [
        { login: 'extra', password: 's3cret <&>', sub: 'user-extra', name: 'Extra User', employee_no: 'E-17' },
      ],
    };
    const cfgFile = path.join(tmp, 'idp.json');
    fs.writeFileSync(cfgFile, JSON.stringify(config));
    idp = await startIdp(['--config', cfgFile]);
    meta = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json();
    jwks = jose.createLocalJWKSet(await (await fetch(meta.jwks_uri)).json());
  });

  after(async () => {
    if (idp) {
      const { code, signal } = await idp.stop();
      assert.equal(code, 0, `exit ${code} ${signal}\n${idp.stderr()}`);
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('discovery: code flow only, PKCE S256, both client auth methods, scopes', async () => {
    assert.equal(meta.issuer, idp.issuer);
    assert.deepEqual(meta.response_types_supported, ['code']);
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
    assert.ok(meta.token_endpoint_auth_methods_supported.includes('client_secret_basic'));
    assert.ok(meta.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
    for (const s of ['openid', 'profile', 'national_id']) assert.ok(meta.scopes_supported.includes(s), s);
    assert.ok(!meta.scopes_supported.includes('offline_access'));
    for (const a of ['ES256', 'RS256']) assert.ok(meta.id_token_signing_alg_values_supported.includes(a), a);
    const keys = (await (await fetch(meta.jwks_uri)).json()).keys;
    assert.deepEqual(keys.map((k) => k.kty).sort(), ['EC', 'RSA']);
    assert.ok(keys.every((k) => k.d === undefined), 'public JWKS must not carry private parts');
  });

  for (const [user, expected] of [
    ['mari', {
      sub: 'user-mari', name: 'Mari Maasikas', given_name: 'Mari', family_name: 'Maasikas',
      birthdate: '1990-05-17', individual_id: '49005170001', country: 'EE',
    }],
    ['juri', {
      sub: 'user-juri', name: 'Jüri Õun', given_name: 'Jüri', family_name: 'Õun',
      birthdate: '1985-01-02', individual_id: '38501020002', country: 'EE',
    }],
  ]) {
    test(`get-id-token.mjs: ES256 ID token for ${user} with the requested claims`, async () => {
      const nonce = `n-${user}-${Date.now()}`;
      const r = await getIdTokenCli(idp.issuer, ESIGD, user, ['--nonce', nonce]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      const lines = r.stdout.split('\n');
      assert.equal(lines.length, 2, 'exactly one line on stdout');
      assert.equal(lines[1], '');
      const { payload, protectedHeader } = await jose.jwtVerify(lines[0], jwks, {
        issuer: idp.issuer,
        audience: 'esigd',
        algorithms: ['ES256'],
      });
      assert.equal(protectedHeader.alg, 'ES256');
      assert.equal(payload.nonce, nonce);
      const now = Math.floor(Date.now() / 1000);
      assert.ok(payload.exp > now && payload.exp <= now + 600 + 5, `exp ${payload.exp}`);
      assert.equal(payload.exp - payload.iat, 600);
      for (const [k, v] of Object.entries(expected)) assert.equal(payload[k], v, k);
    });
  }

  test('scope openid profile only: no national_id claims', async () => {
    const r = await getIdTokenCli(idp.issuer, ESIGD, 'mari', ['--scope', 'openid profile']);
    assert.equal(r.code, 0, r.stderr);
    const { payload } = await jose.jwtVerify(r.stdout.trim(), jwks, { issuer: idp.issuer, audience: 'esigd' });
    assert.equal(payload.name, 'Mari Maasikas');
    assert.equal(payload.individual_id, undefined);
    assert.equal(payload.country, undefined);
  });

  test('a client may choose RS256', async () => {
    const r = await getIdTokenCli(idp.issuer, RSA, 'juri');
    assert.equal(r.code, 0, r.stderr);
    const { protectedHeader, payload } = await jose.jwtVerify(r.stdout.trim(), jwks, {
      issuer: idp.issuer, audience: RSA.clientId, algorithms: ['RS256'],
    });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(payload.family_name, 'Õun');
  });

  test('a user from the config, with its own password and an extra claim', async () => {
    const r = await getIdTokenCli(idp.issuer, ESIGD, 'extra', ['--password', 's3cret <&>']);
    assert.equal(r.code, 0, r.stderr);
    const { payload } = await jose.jwtVerify(r.stdout.trim(), jwks, { issuer: idp.issuer, audience: 'esigd' });
    assert.equal(payload.sub, 'user-extra');
    assert.equal(payload.employee_no, 'E-17');
  });

  test('wrong password and unknown user: get-id-token.mjs fails clearly', async () => {
    const bad = await getIdTokenCli(idp.issuer, ESIGD, 'mari', ['--password', 'wrong']);
    assert.notEqual(bad.code, 0);
    assert.equal(bad.stdout, '');
    assert.match(bad.stderr, /login as mari failed.*Wrong username or password/);
    const unknown = await getIdTokenCli(idp.issuer, ESIGD, 'nobody');
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /login as nobody failed/);
    const secret = await getIdTokenCli(idp.issuer, { ...ESIGD, clientSecret: 'nope' }, 'mari');
    assert.notEqual(secret.code, 0);
    assert.match(secret.stderr, /invalid_client/);
    assert.doesNotMatch(idp.stderr(), /wrong|nope/, 'no secrets in the log');
  });

  test('the login page: labels, buttons, escaping; wrong password shows the form again with an error', async () => {
    const { challenge } = { challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM' };
    const auth = new URL(meta.authorization_endpoint);
    auth.search = new URLSearchParams({
      response_type: 'code', client_id: 'esigd', redirect_uri: ESIGD.redirectUri, scope: 'openid profile',
      state: 's', nonce: 'n', code_challenge: challenge, code_challenge_method: 'S256', login_hint: '"><script>x</script>',
    }).toString();
    const r1 = await fetch(auth, { redirect: 'manual' });
    assert.equal(r1.status, 303);
    const cookie = r1.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const loginUrl = new URL(r1.headers.get('location'), idp.issuer);
    const r2 = await fetch(loginUrl, { headers: { cookie } });
    assert.equal(r2.status, 200);
    assert.match(r2.headers.get('content-type'), /text\/html; charset=utf-8/);
    const html = await r2.text();
    assert.match(html, /<label for="login">Username<\/label>/);
    assert.match(html, /<input id="login" name="login"/);
    assert.match(html, /<label for="password">Password<\/label>/);
    assert.match(html, /<input id="password" name="password" type="password"/);
    assert.match(html, /<button type="submit" name="action" value="login">Sign in<\/button>/);
    assert.match(html, /<button type="submit" name="action" value="cancel" formnovalidate>Cancel<\/button>/);
    assert.doesNotMatch(html, /<script>/);
    assert.match(html, /&quot;&gt;&lt;script&gt;/);
    assert.doesNotMatch(html, /https?:\/\/(?!127\.0\.0\.1)/, 'no external resources');
    const action = unescapeHtml(/<form\b[^>]*\baction="([^"]*)"/.exec(html)[1]);
    const r3 = await fetch(new URL(action, loginUrl), {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ login: 'mari', password: 'bad', action: 'login' }).toString(),
      redirect: 'manual',
    });
    assert.equal(r3.status, 200);
    const again = await r3.text();
    assert.match(again, /role="alert"[^>]*>Wrong username or password/);
    assert.match(again, /name="password"/);
    assert.match(again, /value="mari"/);
  });

  test('Cancel: redirect to the client with error=access_denied and the state', async () => {
    const { params, state } = await authorize({ issuer: idp.issuer, ...ESIGD, action: 'cancel', meta });
    assert.equal(params.get('error'), 'access_denied');
    assert.equal(params.get('state'), state);
    assert.equal(params.get('code'), null);
    assert.equal(params.get('iss'), idp.issuer);
  });

  test('private_key_jwt: code exchange with a client assertion', async () => {
    const { params, nonce, verifier } = await authorize({ issuer: idp.issuer, ...PKJWT, user: 'mari', meta });
    const code = params.get('code');
    assert.ok(code, params.toString());
    const assertion = () => new jose.SignJWT({ jti: crypto.randomUUID() })
      .setProtectedHeader({ alg: 'ES256', kid: 'test-client-key' })
      .setIssuer(PKJWT.clientId)
      .setSubject(PKJWT.clientId)
      .setAudience(meta.token_endpoint)
      .setIssuedAt()
      .setExpirationTime('60s')
      .sign(pkPrivate);
    // A secret is no use for this client.
    await assert.rejects(
      exchangeCode({ meta, ...PKJWT, code, verifier, clientSecret: 'x' }),
      /invalid_client/,
    );
    const tokens = await exchangeCode({ meta, ...PKJWT, code, verifier, clientAssertion: await assertion() });
    const { payload } = await jose.jwtVerify(tokens.id_token, jwks, { issuer: idp.issuer, audience: PKJWT.clientId });
    assert.equal(payload.nonce, nonce);
    assert.equal(payload.individual_id, '49005170001');
    assert.equal(tokens.refresh_token, undefined, 'no refresh tokens');
  });

  test('PKCE is required and checked', async () => {
    const noPkce = new URL(meta.authorization_endpoint);
    noPkce.search = new URLSearchParams({
      response_type: 'code', client_id: 'esigd', redirect_uri: ESIGD.redirectUri, scope: 'openid', state: 'st',
    }).toString();
    const r = await fetch(noPkce, { redirect: 'manual' });
    assert.equal(r.status, 303);
    const loc = new URL(r.headers.get('location'));
    assert.equal(loc.searchParams.get('error'), 'invalid_request');
    assert.match(loc.searchParams.get('error_description'), /PKCE/);

    const { params } = await authorize({ issuer: idp.issuer, ...ESIGD, user: 'mari', meta });
    await assert.rejects(
      exchangeCode({ meta, ...ESIGD, code: params.get('code'), verifier: 'x'.repeat(43) }),
      /invalid_grant/,
    );
  });

  test('implicit flow is off', async () => {
    const u = new URL(meta.authorization_endpoint);
    u.search = new URLSearchParams({
      response_type: 'id_token', client_id: 'esigd', redirect_uri: ESIGD.redirectUri, scope: 'openid', nonce: 'n', state: 's',
    }).toString();
    const r = await fetch(u, { redirect: 'manual' });
    assert.ok([302, 303, 400].includes(r.status), String(r.status));
    if (r.status !== 400) {
      const loc = new URL(r.headers.get('location'));
      const err = loc.searchParams.get('error') ?? new URLSearchParams(loc.hash.slice(1)).get('error');
      assert.equal(err, 'unsupported_response_type');
    }
  });

  test('userinfo: plain JSON, or a signed JWT when the client asks for it', async () => {
    const plain = await authorize({ issuer: idp.issuer, ...ESIGD, user: 'juri', meta });
    const t1 = await exchangeCode({ meta, ...ESIGD, code: plain.params.get('code'), verifier: plain.verifier });
    const u1 = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${t1.access_token}` } });
    assert.equal(u1.status, 200);
    assert.match(u1.headers.get('content-type'), /application\/json/);
    const claims = await u1.json();
    assert.equal(claims.sub, 'user-juri');
    assert.equal(claims.name, 'Jüri Õun');
    assert.equal(claims.individual_id, '38501020002');
    assert.equal(claims.country, 'EE');

    const signed = await authorize({ issuer: idp.issuer, ...SIGNED_UI, user: 'mari', meta });
    const t2 = await exchangeCode({ meta, ...SIGNED_UI, code: signed.params.get('code'), verifier: signed.verifier });
    const u2 = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${t2.access_token}` } });
    assert.equal(u2.status, 200);
    assert.match(u2.headers.get('content-type'), /application\/jwt/);
    const { payload, protectedHeader } = await jose.jwtVerify(await u2.text(), jwks, {
      issuer: idp.issuer, audience: SIGNED_UI.clientId,
    });
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(payload.sub, 'user-mari');
    assert.equal(payload.name, 'Mari Maasikas');
  });

  test('id_token_ttl / access_token_ttl: 2-second tokens (exp - iat == 2) that then expire', async () => {
    const r = await getIdTokenCli(idp.issuer, SHORT, 'mari', ['--json']);
    assert.equal(r.code, 0, r.stderr);
    const { id_token: token, access_token: accessToken, expires_in: expiresIn } = JSON.parse(r.stdout);
    const { payload } = await jose.jwtVerify(token, jwks, { issuer: idp.issuer, audience: SHORT.clientId });
    assert.equal(payload.exp - payload.iat, 2);
    assert.ok(expiresIn <= 2, String(expiresIn));
    const live = await introspect(meta, ESIGD, accessToken);
    assert.equal(live.body.active, true);
    assert.equal(live.body.exp - live.body.iat, 2);
    await new Promise((res) => { setTimeout(res, 3100); });
    await assert.rejects(jose.jwtVerify(token, jwks, { issuer: idp.issuer, audience: SHORT.clientId }), {
      code: 'ERR_JWT_EXPIRED',
    });
    assert.deepEqual(await introspect(meta, ESIGD, accessToken), { status: 200, body: { active: false } });
  });

  test('get-id-token.mjs --json: the ID token and the opaque access token of one login', async () => {
    const r = await getIdTokenCli(idp.issuer, DEMO, 'juri', ['--json', '--scope', 'openid profile']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines.length, 2, 'exactly one line on stdout');
    const tokens = JSON.parse(lines[0]);
    const { payload } = await jose.jwtVerify(tokens.id_token, jwks, { issuer: idp.issuer, audience: DEMO.clientId });
    assert.equal(payload.sub, 'user-juri');
    assert.match(tokens.access_token, /^[\w-]{32,}$/, 'an opaque access token, not a JWT');
    assert.equal(tokens.expires_in, 600);
    assert.deepEqual(tokens.scope.split(' ').sort(), ['openid', 'profile']);
    const ui = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    assert.equal(ui.status, 200);
    const claims = await ui.json();
    assert.equal(claims.sub, 'user-juri');
    assert.equal(claims.name, 'Jüri Õun');
    assert.equal(claims.individual_id, undefined, 'national_id was not asked for');
  });

  test('introspection: esigd reads any client\'s access token (with auth_time, acr); others only their own', async () => {
    assert.equal(meta.introspection_endpoint, `${idp.issuer}/token/introspection`);
    assert.equal(meta.revocation_endpoint, `${idp.issuer}/token/revocation`);
    const { id_token: idToken, access_token: at } = JSON.parse((await getIdTokenCli(idp.issuer, DEMO, 'mari', ['--json'])).stdout);
    const { payload } = await jose.jwtVerify(idToken, jwks, { issuer: idp.issuer, audience: DEMO.clientId });

    const byEsigd = await introspect(meta, ESIGD, at);
    assert.equal(byEsigd.status, 200);
    const b = byEsigd.body;
    assert.equal(b.active, true);
    assert.equal(b.client_id, DEMO.clientId);
    assert.equal(b.sub, 'user-mari');
    assert.equal(b.iss, idp.issuer);
    assert.equal(b.token_type, 'Bearer');
    assert.equal(b.exp - b.iat, 600);
    assert.equal(b.auth_time, payload.auth_time);
    assert.equal(b.acr, 'http://eidas.europa.eu/LoA/high');
    assert.deepEqual(b.scope.split(' ').sort(), ['national_id', 'openid', 'profile']);

    // The token's own client may read it; a client without introspect_any_token may not (active: false).
    assert.equal((await introspect(meta, DEMO, at)).body.active, true);
    assert.deepEqual(await introspect(meta, RSA, at), { status: 200, body: { active: false } });
    // ID tokens and garbage are not introspectable tokens.
    assert.deepEqual((await introspect(meta, ESIGD, idToken)).body, { active: false });
    assert.deepEqual((await introspect(meta, ESIGD, 'not-a-token')).body, { active: false });
    // A wrong client secret: 401 invalid_client.
    const bad = await introspect(meta, { ...ESIGD, clientSecret: 'nope' }, at);
    assert.equal(bad.status, 401);
    assert.equal(bad.body.error, 'invalid_client');

    // Revoked by its client: inactive, and userinfo refuses it.
    const rev = await fetch(meta.revocation_endpoint, {
      method: 'POST',
      headers: { authorization: basic(DEMO), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: at, token_type_hint: 'access_token' }).toString(),
    });
    assert.equal(rev.status, 200);
    assert.deepEqual((await introspect(meta, ESIGD, at)).body, { active: false });
    const ui = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${at}` } });
    assert.equal(ui.status, 401);
  });

  test('the request log: one line per request, method path status, no tokens', () => {
    const log = idp.stderr();
    assert.match(log, /^GET \/\.well-known\/openid-configuration 200 /m);
    assert.match(log, /^POST \/token 200 /m);
    assert.match(log, /^POST \/token\/introspection 200 /m);
    assert.match(log, /^POST \/interaction\/[\w-]+ 200 /m);
    assert.match(log, /^POST \/interaction\/[\w-]+ 303 /m);
    assert.doesNotMatch(log, /eyJ/, 'no JWTs in the log');
    assert.doesNotMatch(log, /code=|password|s3cret/);
  });
});

describe('idp.mjs --keys', () => {
  test('keys are created, saved and kept across a restart; SIGTERM exits 0', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'esigd-idp-keys-'));
    try {
      const file = path.join(tmp, 'sub', 'keys.json');
      const kids = async (issuer) => (await (await fetch(`${issuer}/jwks`)).json()).keys.map((k) => k.kid).sort();
      const a = await startIdp(['--keys', file]);
      const first = await kids(a.issuer);
      assert.deepEqual(await a.stop(), { code: 0, signal: null });
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
      const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
      assert.deepEqual(saved.keys.map((k) => k.kty).sort(), ['EC', 'RSA']);
      assert.ok(saved.keys.every((k) => typeof k.d === 'string'));
      const b = await startIdp(['--keys', file]);
      assert.deepEqual(await kids(b.issuer), first);
      b.child.kill('SIGINT');
      assert.equal((await new Promise((r) => { b.child.once('exit', (code) => r(code)); })), 0);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('a broken config fails at start with a clear message', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'esigd-idp-bad-'));
    try {
      const file = path.join(tmp, 'bad.json');
      fs.writeFileSync(file, JSON.stringify({ clients: [{ client_id: 'x', redirect_uris: ['http://127.0.0.1/cb'] }] }));
      await assert.rejects(startIdp(['--config', file]), /client_secret is mandatory/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
