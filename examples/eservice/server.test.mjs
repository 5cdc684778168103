// Tests for the example e-Service: `node --test examples/eservice/`
//
// server.mjs runs as a child process against a fake esigd: a local HTTPS server with a CA,
// server and client certificates made here with openssl, that requires the client certificate
// and answers GET /v1/sign/response/{id} with a real detached CAdES signature made by openssl.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import http from 'node:http';
import https from 'node:https';
import { once } from 'node:events';

const HERE = dirname(fileURLToPath(import.meta.url));
// openssl is a required validator: without it these tests FAIL (never skip) and say how to get it.
function requireOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`the openssl CLI is required by these tests and did not run (${e.message.split('\n')[0]}): `
      + 'run scripts/install-deps.sh');
  }
}

const ID_OK = '1'.repeat(64);
const ID_OTHER_DOC = '2'.repeat(64);
const ID_MISSING = '3'.repeat(64);
const ID_XADES = '4'.repeat(64);
const ID_JWS = '5'.repeat(64);
const ID_PADES = '6'.repeat(64);
const ID_ASIC = '7'.repeat(64);
const ROOT = join(HERE, '..', '..');
const WASM = join(ROOT, 'web', 'assets', 'pdf');
const WASM_BUILT = existsSync(join(WASM, 'esig_wasm.js')) && existsSync(join(WASM, 'esig_wasm_bg.wasm'));
/** What the fake esigd answers, by signature ID (tests add their own). */
const answers = {};
/** A one-page PDF (classic cross-reference table) from client-wasm's fixtures. */
const PDF_FIXTURE = join(ROOT, 'client-wasm', 'tests', 'fixtures', 'classic.pdf');
const DOC = 'Consent form\n\nI agree.\n';
const HASH = createHash('sha256').update(DOC).digest('base64');

let dir; let fake; let child; let base; let port;
const fakeSeen = []; // client certificate CNs of the requests the fake esigd received

function ossl(...args) {
  return execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Minimal HTTP client: full control over Host/Origin/Cookie headers. */
function request(method, path, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, buf, text: buf.toString('utf8') });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const json = { 'content-type': 'application/json' };
const byId = (html, id) => (new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(html) || [])[1];

async function start(extraHeaders = {}, hash = HASH) {
  const r = await request('POST', '/start', {
    headers: { ...json, ...extraHeaders }, body: JSON.stringify({ hash, hashType: 'SHA2-256', fileName: 'consent.txt' }),
  });
  assert.equal(r.status, 200, r.text);
  const cookie = r.headers['set-cookie'][0].split(';')[0];
  return { ...JSON.parse(r.text), cookie, setCookie: r.headers['set-cookie'][0] };
}

before(async () => {
  requireOpenssl();
  dir = mkdtempSync(join(tmpdir(), 'esvc-'));
  mkdirSync(join(dir, 'data', 'pki'), { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ossl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=Fake esigd CA', '-days', '2');
  const leaf = (name, cn, ext) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    ossl('req', '-new', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    ossl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
  };
  leaf('server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'Demo e-Service', 'extendedKeyUsage=clientAuth\n');
  const read = (f) => readFileSync(join(dir, f));
  writeFileSync(join(dir, 'data/pki/demo-eservice.pem'), read('client.pem'));
  writeFileSync(join(dir, 'data/pki/demo-eservice.key'), read('client.key'));
  writeFileSync(join(dir, 'data/pki/eservice-client-ca.pem'), read('ca.pem'));

  // Signatures over DOC and over another document.
  ossl('req', '-x509', ...ec, '-keyout', 'signer.key', '-out', 'signer.pem', '-subj', '/CN=Test Signer/O=Citizens', '-days', '2');
  writeFileSync(join(dir, 'doc.txt'), DOC);
  writeFileSync(join(dir, 'other.txt'), 'something else');
  for (const d of ['doc', 'other']) {
    ossl('cms', '-sign', '-cades', '-binary', '-md', 'sha256', '-in', `${d}.txt`, '-signer', 'signer.pem',
      '-inkey', 'signer.key', '-outform', 'DER', '-out', `${d}.p7s`);
  }
  const response = (p7s) => ({
    signature: read(p7s).toString('base64'), certificate: read('signer.pem').toString('utf8'),
    responseTimestamp: new Date().toISOString(), status: { code: 'OK', message: 'Signature generated successfully' },
  });
  Object.assign(answers, { [ID_OK]: response('doc.p7s'), [ID_OTHER_DOC]: response('other.p7s') });
  // XAdES and JAdES answers over DOC named consent.txt, in the shape esigd writes them (not
  // signed: the e-Service checks what they cover, validators check the rest).
  const now = new Date();
  const b64u = (b) => Buffer.from(b).toString('base64url');
  const xml = '<?xml version="1.0" encoding="UTF-8"?><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
    + `<ds:SignedInfo><ds:Reference Id="r-0" URI="consent.txt"><ds:DigestValue>${HASH}</ds:DigestValue></ds:Reference>`
    + '<ds:Reference Type="http://uri.etsi.org/01903#SignedProperties" URI="#sp"><ds:DigestValue>c3Bw</ds:DigestValue></ds:Reference>'
    + '</ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue><ds:Object><xades:QualifyingProperties '
    + 'xmlns:xades="http://uri.etsi.org/01903/v1.3.2#"><xades:SignedProperties Id="sp"><xades:SignedSignatureProperties>'
    + `<xades:SigningTime>${now.toISOString().replace(/\.\d+Z$/, 'Z')}</xades:SigningTime></xades:SignedSignatureProperties>`
    + '</xades:SignedProperties></xades:QualifyingProperties></ds:Object></ds:Signature>';
  const header = { alg: 'ES256', iat: Math.floor(now / 1000), b64: false,
    sigD: { pars: ['consent.txt'], hashM: 'S256', hashV: [Buffer.from(HASH, 'base64').toString('base64url')] } };
  const jws = JSON.stringify({ protected: b64u(JSON.stringify(header)), signature: 'AAAA' });
  const textResponse = (t) => ({ ...response('doc.p7s'), signature: Buffer.from(t).toString('base64'), signatureTimestamp: 'MAA=' });
  answers[ID_XADES] = textResponse(xml);
  answers[ID_JWS] = textResponse(jws);
  answers[ID_ASIC] = textResponse(`<asic:XAdESSignatures xmlns:asic="http://uri.etsi.org/02918/v1.2.1#">${xml.replace(/^<\?xml[^>]*>/, '')}</asic:XAdESSignatures>`);

  fake = https.createServer({
    key: read('server.key'), cert: read('server.pem'), ca: read('ca.pem'), requestCert: true, rejectUnauthorized: true,
  }, (req, res) => {
    fakeSeen.push(req.socket.getPeerCertificate().subject.CN);
    const m = /^\/v1\/sign\/response\/([0-9a-f]{64})$/.exec(req.url);
    const a = m && answers[m[1]];
    res.writeHead(a ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(a || { error: 'not found' }));
  });
  fake.listen(0, '127.0.0.1');
  await once(fake, 'listening');

  child = spawn(process.execPath, [join(HERE, 'server.mjs'), '--port', '0',
    '--esigd-public', 'http://127.0.0.1:9/', '--esigd-api', `https://127.0.0.1:${fake.address().port}`,
    '--data', join(dir, 'data'), '--service-id', 'demo'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (c) => { buf += c; if (buf.includes('\n')) resolve(buf.split('\n')); });
    child.on('exit', (code) => reject(new Error(`server.mjs exited with ${code}`)));
  });
  const ready = JSON.parse(line);
  assert.equal(ready.ready, true);
  base = ready.url;
  port = Number(new URL(base).port);
});

after(() => {
  if (child) child.kill('SIGTERM');
  if (fake) fake.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('ready line and start page with injected esigd URL and CSP', async () => {
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const r = await request('GET', '/');
  assert.equal(r.status, 200);
  const csp = r.headers['content-security-policy'];
  const nonce = /'nonce-([^']+)'/.exec(csp)[1];
  assert.match(csp, /script-src 'nonce-[^']+' 'self' 'wasm-unsafe-eval' http:\/\/127\.0\.0\.1:9;/);
  assert.doesNotMatch(csp, /unsafe-inline|'unsafe-eval'/);
  assert.ok(r.text.includes(`<script type="module" nonce="${nonce}">`));
  const config = JSON.parse(/<script type="application\/json" id="config">(.*?)<\/script>/s.exec(r.text)[1]);
  assert.deepEqual(config, { esigJs: 'http://127.0.0.1:9/v1/client/esig.js', esigdPublic: 'http://127.0.0.1:9' });
  for (const id of ['file', 'format', 'sign', 'sample-text', 'status', 'hash', 'error']) assert.ok(r.text.includes(`id="${id}"`), id);
  // The format choice: PAdES (enabled for PDFs by the page), CAdES by default, XAdES, ASiC-E, JAdES.
  const options = [...r.text.matchAll(/<option value="([^"]+)"/g)].map((m) => m[1]);
  assert.deepEqual(options, ['PAdES', 'CAdES', 'XAdES', 'ASIC', 'JWS']);
});

test('/start validates and creates a session', async () => {
  const body = JSON.stringify({ hash: HASH, hashType: 'SHA2-256', fileName: 'a.txt' });
  assert.equal((await request('POST', '/start', { body })).status, 415);
  assert.equal((await request('POST', '/start', { headers: { ...json, origin: 'http://evil.example' }, body })).status, 403);
  for (const bad of [{ hash: 'abc', hashType: 'SHA2-256' }, { hash: HASH, hashType: 'SHA3-256' }, { hash: HASH, hashType: 'SHA2-256' }]) {
    assert.equal((await request('POST', '/start', { headers: json, body: JSON.stringify(bad) })).status, 400, JSON.stringify(bad));
  }
  const s = await start({ origin: `http://127.0.0.1:${port}` });
  assert.match(s.state, /^[0-9a-f]{64}$/);
  assert.match(s.nonce, /^[0-9a-f]{64}$/);
  assert.notEqual(s.state, s.nonce);
  assert.equal(s.serviceId, 'demo');
  assert.equal(s.callbackUrl, `http://127.0.0.1:${port}/callback`);
  assert.match(s.dataToBeDisplayed, /consent\.txt/);
  assert.match(s.setCookie, /HttpOnly/);
  assert.match(s.setCookie, /SameSite=Lax/);
  // The callback goes back to the host name the browser used (the cookie is per host).
  const l = await start({ host: `localhost:${port}` });
  assert.equal(l.callbackUrl, `http://localhost:${port}/callback`);
  const e = await start({ host: 'evil.example' });
  assert.equal(e.callbackUrl, `http://127.0.0.1:${port}/callback`);
});

test('/callback checks session and state, shows errors', async () => {
  const s = await start();
  const q = (o) => `/callback?${new URLSearchParams({ state: s.state, nonce: s.nonce, ...o })}`;
  const noSession = await request('GET', q({ signatureId: ID_OK }));
  assert.equal(noSession.status, 400);
  assert.equal(byId(noSession.text, 'error-code'), 'no_session');
  const headers = { cookie: s.cookie };
  const wrongState = await request('GET', q({ signatureId: ID_OK, state: 'x'.repeat(64) }), { headers });
  assert.equal(wrongState.status, 400);
  assert.equal(byId(wrongState.text, 'error-code'), 'state_mismatch');
  const wrongNonce = await request('GET', q({ signatureId: ID_OK, nonce: 'x' }), { headers });
  assert.equal(byId(wrongNonce.text, 'error-code'), 'state_mismatch');
  const cancelled = await request('GET', q({ error: 'access_denied', error_description: '<b>User</b> cancelled' }), { headers });
  assert.equal(cancelled.status, 200);
  assert.equal(byId(cancelled.text, 'error-code'), 'access_denied');
  assert.ok(cancelled.text.includes('&#60;b&#62;User&#60;/b&#62; cancelled'), 'escaped');
  const badId = await request('GET', q({ signatureId: 'ABC' }), { headers });
  assert.equal(byId(badId.text, 'error-code'), 'bad_callback');
});

test('/callback fetches the signature over mTLS and renders the result', async () => {
  const s = await start();
  const headers = { cookie: s.cookie };
  const path = `/callback?${new URLSearchParams({ signatureId: ID_OK, state: s.state, nonce: s.nonce })}`;
  const seen = fakeSeen.length;
  const r = await request('GET', path, { headers });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(fakeSeen.slice(seen), ['Demo e-Service']);
  assert.equal(byId(r.text, 'subject'), 'CN=Test Signer, O=Citizens');
  assert.match(byId(r.text, 'valid-from'), /^\d{4}-\d\d-\d\dT/);
  assert.match(byId(r.text, 'signed-at'), /^\d{4}-\d\d-\d\dT/);
  assert.match(r.text, /id="timestamp" data-present="false">missing/);
  // openssl made no time-stamp: verifyBasic reports exactly that.
  assert.match(byId(r.text, 'server-check'), /found problems: no signature-time-stamp/);
  assert.match(byId(r.text, 'openssl'), /openssl cms -verify -binary -inform DER -in signature.p7s -content &#39;consent.txt&#39;/);
  assert.match(r.text, /id="download" href="\/signature.p7s"/);
  const config = JSON.parse(/<script type="application\/json" id="config">(.*?)<\/script>/s.exec(r.text)[1]);
  assert.equal(config.hash, HASH);
  assert.equal(config.response.status.code, 'OK');

  const p7s = await request('GET', '/signature.p7s', { headers });
  assert.equal(p7s.status, 200);
  assert.equal(p7s.headers['content-type'], 'application/pkcs7-signature');
  assert.deepEqual(p7s.buf, readFileSync(join(dir, 'doc.p7s')));
  assert.equal((await request('GET', '/signature.p7s')).status, 404);

  // Reload shows the stored result without another fetch; another signatureId is refused.
  const again = await request('GET', path, { headers });
  assert.equal(again.status, 200);
  assert.equal(fakeSeen.length, seen + 1);
  const other = await request('GET', path.replace(ID_OK, ID_OTHER_DOC), { headers });
  assert.equal(byId(other.text, 'error-code'), 'already_completed');

  // Another browser session over the same document cannot take this signature ID as its own
  // (its state and nonce are right, the signature ID was seen elsewhere).
  const s2 = await start();
  const stolen = await request('GET', `/callback?${new URLSearchParams({ signatureId: ID_OK, state: s2.state, nonce: s2.nonce })}`,
    { headers: { cookie: s2.cookie } });
  assert.equal(stolen.status, 400);
  assert.equal(byId(stolen.text, 'error-code'), 'signature_reused');
  assert.equal((await request('GET', '/signature.p7s', { headers: { cookie: s2.cookie } })).status, 404);
});

test('/callback refuses a signature over another document and esigd errors', async () => {
  let s = await start();
  let r = await request('GET', `/callback?${new URLSearchParams({ signatureId: ID_OTHER_DOC, state: s.state, nonce: s.nonce })}`,
    { headers: { cookie: s.cookie } });
  assert.equal(r.status, 502);
  assert.equal(byId(r.text, 'error-code'), 'wrong_signature');
  assert.match(byId(r.text, 'error-description'), /messageDigest does not match/);
  s = await start();
  r = await request('GET', `/callback?${new URLSearchParams({ signatureId: ID_MISSING, state: s.state, nonce: s.nonce })}`,
    { headers: { cookie: s.cookie } });
  assert.equal(r.status, 502);
  assert.equal(byId(r.text, 'error-code'), 'esigd_unreachable');
  assert.match(byId(r.text, 'error-description'), /HTTP 404/);
});

test('/start: formats, documents for XAdES and JAdES, file names they accept', async () => {
  const post = (o) => request('POST', '/start', { headers: json, body: JSON.stringify({ hash: HASH, hashType: 'SHA2-256', fileName: 'a.txt', ...o }) });
  for (const bad of [{ format: 'asic' }, { format: 'pdf' }, { format: 'PAdES', hashType: 'SHA2-384', hash: Buffer.alloc(48).toString('base64') },
    { mediaType: 'text/plain|x' }, { mediaType: '' }, { mediaType: 'a b' }]) {
    const r = await post(bad);
    assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.text}`);
  }
  const cades = JSON.parse((await post({})).text);
  assert.equal(cades.format, 'CAdES');
  assert.equal(cades.documents, undefined);
  const pades = JSON.parse((await post({ format: 'PAdES', fileName: 'contract.pdf', mediaType: 'application/pdf' })).text);
  assert.equal(pades.format, 'PAdES');
  assert.equal(pades.documents, undefined);
  for (const format of ['XAdES', 'ASIC', 'JWS']) {
    const r = JSON.parse((await post({ format, fileName: 'dir/x:y\\z.txt', mediaType: 'text/plain' })).text);
    assert.equal(r.fileName, 'dir_x_y_z.txt');
    assert.deepEqual(r.documents, [{ name: 'dir_x_y_z.txt', mediaType: 'text/plain', hash: HASH }]);
  }
  assert.equal(JSON.parse((await post({ format: 'XAdES', fileName: '..' })).text).fileName, '__');
  // Names an ASiC-E container reserves.
  assert.equal(JSON.parse((await post({ format: 'ASIC', fileName: 'mimetype' })).text).fileName, '_mimetype');
  assert.equal(JSON.parse((await post({ format: 'ASIC', fileName: 'META-INF' })).text).fileName, '_META-INF');
  assert.equal(JSON.parse((await post({ format: 'XAdES', fileName: 'mimetype' })).text).fileName, 'mimetype');
});

test('/keep.js and the WebAssembly PAdES client are served', async () => {
  const keep = await request('GET', '/keep.js');
  assert.equal(keep.status, 200);
  assert.match(keep.headers['content-type'], /^text\/javascript/);
  assert.match(keep.text, /export function keep/);
  const pdfJs = await request('GET', '/esig-pdf.js');
  assert.equal(pdfJs.status, 200);
  assert.match(pdfJs.text, /export async function preparePdf/);
  if (!WASM_BUILT) assert.fail(`${WASM} is not built: run scripts/build-wasm.sh`);
  const wasm = await request('GET', '/pdf/esig_wasm_bg.wasm');
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers['content-type'], 'application/wasm');
  assert.deepEqual(wasm.buf.subarray(0, 4), Buffer.from([0, 0x61, 0x73, 0x6d]));
});

for (const [format, id, ext, type, file] of [['XAdES', ID_XADES, 'xml', 'application/xml', 'signature.xml'],
  ['ASIC', ID_ASIC, 'signatures0.xml', 'application/xml', 'signatures0.xml'],
  ['JWS', ID_JWS, 'json', 'application/jose+json', 'signature.json']]) {
  test(`/callback with ${format}: checks what the signature covers, offers consent.txt.${ext}`, async () => {
    const r0 = await request('POST', '/start', { headers: json, body: JSON.stringify({ hash: HASH, hashType: 'SHA2-256', fileName: 'consent.txt', format, mediaType: 'text/plain' }) });
    const s = { ...JSON.parse(r0.text), cookie: r0.headers['set-cookie'][0].split(';')[0] };
    const headers = { cookie: s.cookie };
    const r = await request('GET', `/callback?${new URLSearchParams({ signatureId: id, state: s.state, nonce: s.nonce })}`, { headers });
    assert.equal(r.status, 200, r.text);
    assert.equal(byId(r.text, 'format'), format);
    assert.match(byId(r.text, 'server-check'), /decodeSignature on the e-Service back end: OK/);
    const re = (x) => x.replace(/\./g, '\\.');
    assert.match(r.text, new RegExp(`id="download" href="/${re(file)}" download="consent\\.txt\\.${re(ext)}"`));
    assert.equal(/id="download-container"/.test(r.text), format === 'ASIC');
    assert.match(r.text, /id="download-doc" hidden/);
    const config = JSON.parse(/<script type="application\/json" id="config">(.*?)<\/script>/s.exec(r.text)[1]);
    assert.equal(config.format, format);
    assert.equal(config.containerName, 'consent.asice');
    const sig = await request('GET', `/${file}`, { headers });
    assert.equal(sig.status, 200);
    assert.equal(sig.headers['content-type'], type);
    assert.match(sig.headers['content-disposition'], new RegExp(`filename="consent\\.txt\\.${re(ext)}"`));
    assert.deepEqual(sig.buf, Buffer.from(answers[id].signature, 'base64'));
    assert.equal((await request('GET', '/signature.p7s', { headers })).status, 404);

    // The same signature for a session over another document: refused.
    const r1 = await request('POST', '/start', { headers: json, body: JSON.stringify({ hash: Buffer.alloc(32, 1).toString('base64'), hashType: 'SHA2-256', fileName: 'consent.txt', format }) });
    const s1 = { ...JSON.parse(r1.text), cookie: r1.headers['set-cookie'][0].split(';')[0] };
    const other = await request('GET', `/callback?${new URLSearchParams({ signatureId: id, state: s1.state, nonce: s1.nonce })}`, { headers: { cookie: s1.cookie } });
    assert.equal(byId(other.text, 'error-code'), 'wrong_signature');
    assert.match(byId(other.text, 'error-description'), /covers 1 digest\(s\), not this document/);
  });
}

test('/callback with PAdES: the CMS over the prepared PDF, embedded as the result page does', async () => {
  if (!WASM_BUILT) assert.fail(`${WASM} is not built: run scripts/build-wasm.sh`);
  const pdf = await import('../../web/assets/esig-pdf.js');
  await pdf.init({ moduleUrl: pathToFileURL(join(WASM, 'esig_wasm.js')) });
  const p = await pdf.preparePdf(readFileSync(PDF_FIXTURE), { reason: 'test' });
  // openssl signs the /ByteRange of the prepared PDF (a CAdES-BES CMS, as esig-pdf.test.mjs does).
  const [, a, b] = p.byteRange;
  const prepared = Buffer.from(p.prepared);
  writeFileSync(join(dir, 'ranges.bin'), Buffer.concat([prepared.subarray(0, a), prepared.subarray(b)]));
  ossl('cms', '-sign', '-binary', '-md', 'sha256', '-nosmimecap', '-cades', '-signer', 'signer.pem', '-inkey', 'signer.key',
    '-outform', 'DER', '-in', 'ranges.bin', '-out', 'pades.p7s');
  answers[ID_PADES] = { ...answers[ID_OK], signature: readFileSync(join(dir, 'pades.p7s')).toString('base64') };

  const r0 = await request('POST', '/start', { headers: json, body: JSON.stringify({ hash: p.digest, hashType: p.hashType, fileName: 'contract.pdf', format: 'PAdES', mediaType: 'application/pdf' }) });
  assert.equal(r0.status, 200, r0.text);
  const s = { ...JSON.parse(r0.text), cookie: r0.headers['set-cookie'][0].split(';')[0] };
  const r = await request('GET', `/callback?${new URLSearchParams({ signatureId: ID_PADES, state: s.state, nonce: s.nonce })}`, { headers: { cookie: s.cookie } });
  assert.equal(r.status, 200, r.text);
  assert.equal(byId(r.text, 'format'), 'PAdES');
  assert.match(r.text, /id="download-pdf" hidden/);
  assert.match(r.text, /id="pdf-status"/);
  // openssl made no time-stamp: that is the one problem.
  assert.match(byId(r.text, 'server-check'), /verifyBasic on the e-Service back end found problems: no signature-time-stamp[^;]*$/);
  assert.match(byId(r.text, 'openssl'), /pdfsig &#39;contract-signed\.pdf&#39;/);
  const config = JSON.parse(/<script type="application\/json" id="config">(.*?)<\/script>/s.exec(r.text)[1]);
  assert.equal(config.signedName, 'contract-signed.pdf');
  assert.equal(config.hash, p.digest);
  // What the result page does with the prepared PDF it kept: embed the response's CMS.
  const signed = Buffer.from(await pdf.embedPdf(p.prepared, config.response));
  assert.equal(signed.length, prepared.length);
  assert.deepEqual(signed.subarray(0, a), prepared.subarray(0, a));
  writeFileSync(join(dir, 'contract-signed.pdf'), signed);
  let pdfsigOut;
  try {
    pdfsigOut = execFileSync('pdfsig', [join(dir, 'contract-signed.pdf')], { encoding: 'utf8' });
  } catch (e) {
    assert.fail(`pdfsig (poppler-utils) is required and did not run: ${e.message}; run scripts/install-deps.sh`);
  }
  assert.match(pdfsigOut, /Signature Validation: Signature is Valid\./);
  assert.match(pdfsigOut, /Signer Certificate Common Name: Test Signer/);
});
