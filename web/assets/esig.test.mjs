// Tests for esig.js: `node --test web/assets/`
//
// The CMS fixtures are REAL detached signatures made with the openssl CLI (OpenSSL 3), so the
// DER reader in esig.js is exercised against an independent implementation. openssl cannot add an
// unsigned attribute, so the time-stamped case is built here: openssl makes the RFC 3161 token
// over the SignerInfo signature value, this file splices it in as a signature-time-stamp unsigned
// attribute (with its own tiny DER reader/writer, independent of the one under test), and
// `openssl cms -verify` then confirms that the spliced signature is still valid.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

import {
  digest, signUrl, randomToken, parseCallback, toP7s, verifyBasic, toBase64, fromBase64, FORMATS, decodeSignature,
} from './esig.js';

const hex = (u8) => Buffer.from(u8).toString('hex');

// ---------------------------------------------------------------------------------------------
describe('digest', () => {
  const ABC = {
    'SHA2-256': 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    'SHA2-384': 'cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7',
    'SHA2-512': 'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
  };
  for (const [type, want] of Object.entries(ABC)) {
    test(`${type} of "abc"`, async () => {
      const d = await digest('abc', type);
      assert.equal(d.hashType, type);
      assert.equal(hex(d.bytes), want);
      assert.equal(d.hash, Buffer.from(want, 'hex').toString('base64'));
    });
  }

  test('default is SHA2-256; every input kind gives the same digest', async () => {
    const bytes = new TextEncoder().encode('abc');
    const inputs = ['abc', bytes, bytes.buffer, new DataView(bytes.buffer), new Blob(['a', 'bc']),
      new File([bytes], 'abc.txt'), new Uint8Array([0, 97, 98, 99, 0]).subarray(1, 4)];
    for (const input of inputs) {
      const d = await digest(input);
      assert.equal(d.hashType, 'SHA2-256');
      assert.equal(hex(d.bytes), ABC['SHA2-256']);
    }
  });

  test('string input is hashed as UTF-8', async () => {
    const d = await digest('härmä ✓');
    assert.equal(hex(d.bytes), createHash('sha256').update('härmä ✓', 'utf8').digest('hex'));
  });

  test('unsupported hash types are refused with a clear error', async () => {
    await assert.rejects(digest('abc', 'SHA3-256'), /unsupported hashType "SHA3-256"; supported: SHA2-256, SHA2-384, SHA2-512/);
    await assert.rejects(digest('abc', 'constructor'), /unsupported hashType "constructor"/);
    await assert.rejects(digest('abc', 'sha256'), /supported: SHA2-256, SHA2-384, SHA2-512/);
    await assert.rejects(digest(42), /expected a Blob/);
  });
});

// ---------------------------------------------------------------------------------------------
describe('base64 and randomToken', () => {
  test('round trip, base64url, whitespace', () => {
    const all = new Uint8Array(256).map((_, i) => i);
    assert.equal(toBase64(all), Buffer.from(all).toString('base64'));
    assert.deepEqual(fromBase64(toBase64(all)), all);
    assert.deepEqual(fromBase64(Buffer.from(all).toString('base64url')), all);
    assert.deepEqual(fromBase64('YW\r\nJj'), new TextEncoder().encode('abc'));
    const big = new Uint8Array(200_000).map((_, i) => i * 7);
    assert.equal(toBase64(big), Buffer.from(big).toString('base64'));
  });

  test('invalid base64 is refused', () => {
    assert.throws(() => fromBase64('a'), /invalid/);
    assert.throws(() => fromBase64('ab$c'), /invalid/);
    assert.throws(() => fromBase64(null), /expected a string/);
  });

  test('randomToken is base64url of the requested size', () => {
    const a = randomToken();
    assert.match(a, /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(a, randomToken());
    assert.equal(fromBase64(randomToken(32)).length, 32);
    assert.throws(() => randomToken(2), /between 8 and 1024/);
  });
});

// ---------------------------------------------------------------------------------------------
describe('signUrl', () => {
  const hash = Buffer.alloc(32, 0xfb).toString('base64'); // contains '+' and '/'
  const base = {
    base: 'http://127.0.0.1:8080', serviceId: 'demo', hash, hashType: 'SHA2-256',
    dataToBeDisplayed: 'Consent form – ✓ & more', callbackUrl: 'http://127.0.0.1:8090/callback?x=1',
    state: 'st-123', nonce: 'no+/=',
  };

  test('round trip through URLSearchParams', () => {
    const u = new URL(signUrl({ ...base, requestTimestamp: '2024-01-31T12:00:00Z' }));
    assert.equal(u.origin + u.pathname, 'http://127.0.0.1:8080/v1/sign/interactive');
    assert.deepEqual(Object.fromEntries(u.searchParams), {
      serviceId: 'demo', hash, hashType: 'SHA2-256', format: 'CAdES',
      dataToBeDisplayed: Buffer.from(base.dataToBeDisplayed, 'utf8').toString('base64url'),
      callbackUrl: base.callbackUrl,
      state: 'st-123', nonce: 'no+/=', requestTimestamp: '2024-01-31T12:00:00Z',
    });
    // The GovStack redirect carries the display text base64url-encoded (UTF-8).
    assert.equal(Buffer.from(u.searchParams.get('dataToBeDisplayed'), 'base64url').toString('utf8'),
      'Consent form – ✓ & more');
  });

  test('every format esigd makes is accepted, others are not', () => {
    assert.deepEqual([...FORMATS], ['CAdES', 'PAdES', 'XAdES', 'ASIC', 'JWS']);
    for (const format of FORMATS) {
      assert.equal(new URL(signUrl({ ...base, format })).searchParams.get('format'), format);
    }
    for (const format of ['cades', 'PDF', '', 42, 'constructor']) {
      assert.throws(() => signUrl({ ...base, format }), /format must be one of CAdES, PAdES, XAdES, ASIC, JWS/);
    }
  });

  test('documents: one doc=name|mediaType|hash parameter each, no hash', () => {
    const h2 = Buffer.alloc(32, 0x3e).toString('base64');
    const documents = [
      { name: 'contract.pdf', mediaType: 'application/pdf', hash },
      { name: 'annex|1 ✓.txt', hash: h2 }, // a '|' in the name is fine; the media type defaults
    ];
    const u = new URL(signUrl({ ...base, hash: undefined, documents, format: 'XAdES' }));
    assert.equal(u.searchParams.has('hash'), false);
    assert.deepEqual(u.searchParams.getAll('doc'), [
      `contract.pdf|application/pdf|${hash}`, `annex|1 ✓.txt|application/octet-stream|${h2}`,
    ]);
    assert.equal(u.searchParams.get('format'), 'XAdES');
    assert.equal(u.searchParams.get('hashType'), 'SHA2-256');
    // '+' and '/' of the hash survive the URL encoding.
    assert.match(u.search, /doc=contract\.pdf%7Capplication%2Fpdf%7C%2B/);
  });

  test('documents: what esigd would refuse is refused here', () => {
    const d = { name: 'a.txt', mediaType: 'text/plain', hash };
    const noHash = { ...base, hash: undefined };
    const cases = [
      [{ ...base, documents: [d] }, /either hash or documents/],
      [{ ...noHash, documents: [] }, /1 to 64 documents/],
      [{ ...noHash, documents: 'a.txt' }, /1 to 64 documents/],
      [{ ...noHash, documents: Array.from({ length: 65 }, (_, i) => ({ ...d, name: `${i}` })) }, /1 to 64/],
      [{ ...noHash, documents: [null] }, /documents\[0\] must be/],
      [{ ...noHash, documents: [{ ...d, name: '' }] }, /documents\[0\]\.name must have 1 to 255/],
      [{ ...noHash, documents: [{ ...d, name: 'x'.repeat(256) }] }, /name must have 1 to 255/],
      [{ ...noHash, documents: [{ ...d, name: 'a\nb' }] }, /name contains control characters/],
      [{ ...noHash, documents: [{ ...d, mediaType: 'text/plain|x' }] }, /mediaType must not contain \|/],
      [{ ...noHash, documents: [d, { ...d }] }, /documents\[1\]\.name "a\.txt" is there twice/],
      [{ ...noHash, documents: [{ ...d, hash: 'AAAA' }] }, /documents\[0\]\.hash is 3 bytes, SHA2-256 needs 32/],
      [{ ...noHash, documents: [{ ...d, hash: hash.replace(/=$/, '') }] }, /documents\[0\]\.hash must be standard base64/],
      [{ ...noHash, documents: Array.from({ length: 64 }, (_, i) => ({ ...d, name: `${i}`.padStart(100, 'n') })) },
        /at most 8192/],
    ];
    for (const [args, re] of cases) assert.throws(() => signUrl(args), re, JSON.stringify(args).slice(0, 120));
    assert.throws(() => signUrl(noHash), /hash is required/);
  });

  test('defaults, Date timestamp, path prefix, payment token', () => {
    const before = Date.now();
    const u = new URL(signUrl({ ...base, base: 'https://esig.example/pfx/' }));
    assert.equal(u.pathname, '/pfx/v1/sign/interactive');
    assert.equal(u.searchParams.get('format'), 'CAdES');
    assert.equal(u.searchParams.has('paymentToken'), false);
    const ts = Date.parse(u.searchParams.get('requestTimestamp'));
    assert.ok(ts >= before - 1000 && ts <= Date.now() + 1000);
    const u2 = new URL(signUrl({ ...base, requestTimestamp: new Date(0), paymentToken: 'pay-1' }));
    assert.equal(u2.searchParams.get('requestTimestamp'), '1970-01-01T00:00:00.000Z');
    assert.equal(u2.searchParams.get('paymentToken'), 'pay-1');
  });

  test('dataToBeDisplayed: 256 characters (code points) allowed, 257 refused', () => {
    assert.ok(signUrl({ ...base, dataToBeDisplayed: 'é'.repeat(256) }));
    assert.ok(signUrl({ ...base, dataToBeDisplayed: '😀'.repeat(256) })); // 512 UTF-16 units
    assert.throws(() => signUrl({ ...base, dataToBeDisplayed: 'x'.repeat(257) }), /257 characters, at most 256/);
  });

  test('validation errors name the field', () => {
    for (const f of ['base', 'serviceId', 'hash', 'hashType', 'dataToBeDisplayed', 'callbackUrl', 'state', 'nonce']) {
      assert.throws(() => signUrl({ ...base, [f]: undefined }), new RegExp(`signUrl: ${f} is required`), f);
      assert.throws(() => signUrl({ ...base, [f]: '' }), new RegExp(`signUrl: ${f} is required`), f);
    }
    assert.throws(() => signUrl(), /base is required/);
    assert.throws(() => signUrl({ ...base, base: '/relative' }), /base is not an absolute URL/);
    assert.throws(() => signUrl({ ...base, callbackUrl: 'javascript:alert(1)' }), /callbackUrl must be http/);
    assert.throws(() => signUrl({ ...base, hashType: 'MD5' }), /unsupported hashType/);
    assert.throws(() => signUrl({ ...base, hashType: 'SHA2-512' }), /32 bytes, SHA2-512 needs 64/);
    assert.throws(() => signUrl({ ...base, hash: Buffer.alloc(32, 0xfb).toString('base64url') }), /standard base64/);
    assert.throws(() => signUrl({ ...base, format: 'PDF' }), /format must be one of/);
    assert.throws(() => signUrl({ ...base, requestTimestamp: '2024-01-31 12:00' }), /requestTimestamp/);
    assert.throws(() => signUrl({ ...base, requestTimestamp: '2024-01-31T12:00:00+02:00' }), /requestTimestamp/);
    assert.throws(() => signUrl({ ...base, paymentToken: '' }), /paymentToken/);
  });

  test("esigd's own rules: what esigd would refuse is refused here, naming the field", () => {
    // Hash types and formats esigd does not sign; inherited object keys are not hash types.
    for (const hashType of ['SHA3-256', 'BLAKE2B', 'constructor', 'toString']) {
      assert.throws(() => signUrl({ ...base, hashType }), /unsupported hashType/, hashType);
    }
    assert.throws(() => signUrl({ ...base, format: 'PDF' }), /format must be one of CAdES/);
    // base64 without its padding, or with the base64url alphabet mixed in.
    assert.throws(() => signUrl({ ...base, hash: hash.replace(/=+$/, '') }), /standard base64 with padding/);
    assert.throws(() => signUrl({ ...base, hash: `${hash.slice(0, 40)}-${hash.slice(41)}` }), /standard base64/);
    // Display text: control characters (but newline) and blank text.
    assert.throws(() => signUrl({ ...base, dataToBeDisplayed: 'a\u0000b' }), /no control characters/);
    assert.throws(() => signUrl({ ...base, dataToBeDisplayed: 'a\u001bb' }), /no control characters/);
    assert.ok(signUrl({ ...base, dataToBeDisplayed: 'line 1\r\nline 2\tend' }));
    // state / nonce: 1-512 visible ASCII.
    assert.throws(() => signUrl({ ...base, state: 'a b' }), /state must be 1 to 512 visible ASCII/);
    assert.throws(() => signUrl({ ...base, nonce: 'é' }), /nonce must be 1 to 512 visible ASCII/);
    assert.throws(() => signUrl({ ...base, state: 'x'.repeat(513) }), /state must be/);
    assert.ok(signUrl({ ...base, state: 'x'.repeat(512) }));
    // callbackUrl: esigd adds these parameters itself; at most 2048 characters.
    for (const k of ['signatureId', 'error', 'error_description', 'state', 'nonce']) {
      assert.throws(() => signUrl({ ...base, callbackUrl: `http://127.0.0.1:8090/cb?${k}=1` }),
        new RegExp(`callbackUrl must not have a ${k} parameter`), k);
    }
    assert.throws(() => signUrl({ ...base, callbackUrl: `http://127.0.0.1:8090/${'a'.repeat(2048)}` }),
      /callbackUrl is longer than 2048 bytes/);
    // Counted as esigd counts: UTF-8 bytes (1,100 'é': 1,122 characters, 2,222 bytes).
    assert.throws(() => signUrl({ ...base, callbackUrl: `http://127.0.0.1:8090/${'é'.repeat(1100)}` }),
      /longer than 2048 bytes/);
  });
});

// ---------------------------------------------------------------------------------------------
describe('parseCallback', () => {
  const id = 'ab'.repeat(32);
  test('success, from a URL, a search string, URLSearchParams', () => {
    const want = { signatureId: id, state: 's1', nonce: 'n1' };
    assert.deepEqual(parseCallback(`http://127.0.0.1:8090/callback?signatureId=${id}&state=s1&nonce=n1`), want);
    assert.deepEqual(parseCallback(`?signatureId=${id}&state=s1&nonce=n1`), want);
    assert.deepEqual(parseCallback(`signatureId=${id}&state=s1&nonce=n1`), want);
    assert.deepEqual(parseCallback(new URLSearchParams({ signatureId: id, state: 's1', nonce: 'n1' })), want);
    assert.deepEqual(parseCallback(new URL(`http://x/?signatureId=${id}`)), { signatureId: id });
  });

  test('error', () => {
    assert.deepEqual(parseCallback('?error=access_denied&error_description=User%20cancelled&state=s&nonce=n'),
      { error: 'access_denied', errorDescription: 'User cancelled', state: 's', nonce: 'n' });
    assert.deepEqual(parseCallback('?error=payment_required'), { error: 'payment_required', errorDescription: '' });
  });

  test('mixed, duplicated or empty parameters throw (a forged or broken callback)', () => {
    assert.throws(() => parseCallback(`?error=access_denied&signatureId=${id}`), /both error and signatureId/);
    assert.throws(() => parseCallback(`?error=&signatureId=${id}`), /both error and signatureId/);
    assert.throws(() => parseCallback('?error='), /error is empty/);
    for (const dup of [`signatureId=${id}&signatureId=${'cd'.repeat(32)}`, `signatureId=${id}&state=a&state=b`,
      `signatureId=${id}&nonce=a&nonce=b`, 'error=login_failed&error=access_denied',
      'error=login_failed&error_description=a&error_description=b']) {
      assert.throws(() => parseCallback(`?${dup}`), /appears more than once/, dup);
    }
  });

  test('invalid callbacks throw', () => {
    assert.throws(() => parseCallback('?state=s'), /neither signatureId nor error/);
    assert.throws(() => parseCallback(`?signatureId=${id.toUpperCase()}`), /64 lowercase hex/);
    assert.throws(() => parseCallback(`?signatureId=${id}0`), /64 lowercase hex/);
    assert.throws(() => parseCallback(42), /expected a URL/);
  });
});

// ---------------------------------------------------------------------------------------------
// Fixtures made with openssl.

// openssl is a required validator: without it these tests FAIL (never skip) and say how to get it.
function requireOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`the openssl CLI is required by these tests and did not run (${e.message.split('\n')[0]}): `
      + 'run scripts/install-deps.sh');
  }
}

const TS_OID = Buffer.from('060b2a864886f70d010910020e', 'hex'); // 1.2.840.113549.1.9.16.2.14

// The test's own minimal DER reader/writer (definite lengths), used only to build fixtures.
function tlvAt(buf, pos) {
  let len = buf[pos + 1];
  let body = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = buf.readUIntBE(body, n);
    body += n;
  }
  return { tag: buf[pos], start: pos, body, end: body + len };
}
function kids(buf, n) {
  const out = [];
  for (let p = n.body; p < n.end; p = out[out.length - 1].end) out.push(tlvAt(buf, p));
  return out;
}
function tlv(tag, ...parts) {
  const body = Buffer.concat(parts);
  const len = body.length;
  if (len < 0x80) return Buffer.concat([Buffer.from([tag, len]), body]);
  const lb = [];
  for (let n = len; n > 0; n = Math.floor(n / 256)) lb.unshift(n % 256);
  return Buffer.concat([Buffer.from([tag, 0x80 | lb.length, ...lb]), body]);
}
const rawOf = (buf, n) => buf.subarray(n.start, n.end);

/** Path ContentInfo -> SignedData -> (signerInfos SET, first SignerInfo) */
function signerInfoPath(p7s) {
  const ci = tlvAt(p7s, 0);
  const [ctype, wrap] = kids(p7s, ci);
  const sd = kids(p7s, wrap)[0];
  const sdKids = kids(p7s, sd);
  const sis = sdKids[sdKids.length - 1];
  const si = kids(p7s, sis)[0];
  return { ctype, sdKids, si, siKids: kids(p7s, si) };
}

/** Adds a signature-time-stamp unsigned attribute holding `token` (DER) to the only SignerInfo. */
function addTimeStamp(p7s, token) {
  const { ctype, sdKids, siKids } = signerInfoPath(p7s);
  const unsigned = tlv(0xa1, tlv(0x30, TS_OID, tlv(0x31, token)));
  const si = tlv(0x30, ...siKids.map((k) => rawOf(p7s, k)), unsigned);
  const sd = tlv(0x30, ...sdKids.slice(0, -1).map((k) => rawOf(p7s, k)), tlv(0x31, si));
  return tlv(0x30, rawOf(p7s, ctype), tlv(0xa0, sd));
}

function signatureValue(p7s) {
  const { siKids } = signerInfoPath(p7s);
  const sig = siKids.find((k, i) => i > 2 && k.tag === 0x04);
  return p7s.subarray(sig.body, sig.end);
}

describe('toP7s and verifyBasic against openssl signatures', () => {
  let dir; let fx;
  const ossl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });

  before(() => {
    requireOpenssl();
    dir = mkdtempSync(join(tmpdir(), 'esigjs-'));
    const doc = 'Consent form\nI agree.\n';
    writeFileSync(join(dir, 'doc.txt'), doc);
    const newCert = (name, cn, ...ext) => ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
      '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-subj', `/CN=${cn}`, '-days', '2', ...ext);
    newCert('signer', 'Test Signer');
    newCert('other', 'Someone Else');
    newCert('tsa', 'Test TSA', '-addext', 'extendedKeyUsage=critical,timeStamping');
    const sign = (out, ...extra) => ossl('cms', '-sign', '-binary', '-in', 'doc.txt', '-signer', 'signer.pem',
      '-inkey', 'signer.key', '-md', 'sha256', '-outform', 'DER', '-out', out, ...extra);
    sign('cades.p7s', '-cades'); // detached: no -nodetach
    sign('plain.p7s');
    sign('attached.p7s', '-cades', '-nodetach');

    // RFC 3161 token over the SignerInfo signature value (what CAdES-T time-stamps).
    const cades = readFileSync(join(dir, 'cades.p7s'));
    writeFileSync(join(dir, 'sigval.bin'), signatureValue(cades));
    writeFileSync(join(dir, 'tsa.cnf'), [
      '[ tsa ]', 'default_tsa = tsa1', '[ tsa1 ]', 'serial = ./tsaserial', 'signer_digest = sha256',
      'default_policy = 1.2.3.4.1', 'digests = sha256', 'accuracy = secs:1', 'ess_cert_id_alg = sha256', '',
    ].join('\n'));
    writeFileSync(join(dir, 'tsaserial'), '01\n');
    ossl('ts', '-query', '-data', 'sigval.bin', '-sha256', '-cert', '-out', 'q.tsq');
    ossl('ts', '-reply', '-queryfile', 'q.tsq', '-config', 'tsa.cnf', '-inkey', 'tsa.key', '-signer', 'tsa.pem',
      '-token_out', '-out', 'token.der');
    const token = readFileSync(join(dir, 'token.der'));
    writeFileSync(join(dir, 'cades-t.p7s'), addTimeStamp(cades, token));

    const response = (file, extra = {}) => ({
      signature: readFileSync(join(dir, file)).toString('base64'),
      certificate: readFileSync(join(dir, 'signer.pem'), 'utf8').replace(/\n/g, '\r\n'),
      responseTimestamp: new Date().toISOString(),
      status: { code: 'OK', message: 'Signature generated successfully' },
      ...extra,
    });
    fx = {
      hash: createHash('sha256').update(doc).digest('base64'),
      cades, token, response,
      cadesT: readFileSync(join(dir, 'cades-t.p7s')),
    };
  });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  test('the spliced time-stamped signature still verifies with openssl', () => {
    ossl('cms', '-verify', '-binary', '-inform', 'DER', '-in', 'cades-t.p7s', '-content', 'doc.txt',
      '-CAfile', 'signer.pem', '-purpose', 'any', '-out', '/dev/null');
    ossl('ts', '-verify', '-data', 'sigval.bin', '-in', 'token.der', '-token_in', '-CAfile', 'tsa.pem');
  });

  test('toP7s decodes the response or the bare string', () => {
    const r = fx.response('cades.p7s');
    assert.deepEqual(Buffer.from(toP7s(r)), fx.cades);
    assert.deepEqual(Buffer.from(toP7s(r.signature)), fx.cades);
    assert.throws(() => toP7s({}), /no signature/);
    assert.throws(() => toP7s(Buffer.from('hello').toString('base64')), /not DER/);
    assert.throws(() => toP7s(Buffer.from([0x04, 0x01, 0x00]).toString('base64')), /not a DER SEQUENCE/);
    assert.throws(() => toP7s(fx.cades.subarray(0, 100).toString('base64')), /not DER/);
  });

  test('openssl signature without time-stamp: ok=false, only the time-stamp is missing', () => {
    const r = verifyBasic(fx.response('cades.p7s'), { hash: fx.hash, hashType: 'SHA2-256' });
    assert.equal(r.ok, false);
    assert.equal(r.timestamped, false);
    assert.equal(r.hashMatches, true);
    assert.equal(r.problems.length, 1, r.problems.join('; '));
    assert.match(r.problems[0], /signature-time-stamp/);
    assert.ok(r.signedAt instanceof Date && Math.abs(r.signedAt - Date.now()) < 10 * 60_000, String(r.signedAt));
  });

  test('time-stamped signature: ok=true', () => {
    const resp = fx.response('cades-t.p7s', { signatureTimestamp: fx.token.toString('base64') });
    const r = verifyBasic(resp, { hash: fx.hash, hashType: 'SHA2-256' });
    assert.deepEqual(r.problems, []);
    assert.equal(r.ok, true);
    assert.equal(r.timestamped, true);
    assert.ok(r.timestampedAt instanceof Date && Math.abs(r.timestampedAt - Date.now()) < 10 * 60_000);
    // hash given as bytes, and no expectations at all
    assert.equal(verifyBasic(resp, { hash: Buffer.from(fx.hash, 'base64') }).ok, true);
    assert.equal(verifyBasic(resp).ok, true);
    assert.equal(verifyBasic(resp).hashMatches, undefined);
    // only the signature string: the status/certificate checks are skipped
    assert.equal(verifyBasic(resp.signature, { hash: fx.hash }).ok, true);
  });

  test('decodeSignature of CAdES and PAdES: the DER CMS, its messageDigest and signing time', () => {
    const resp = fx.response('cades-t.p7s');
    for (const format of ['CAdES', 'PAdES']) {
      const d = decodeSignature(resp, format, 'contract.pdf');
      assert.deepEqual(Buffer.from(d.bytes), fx.cadesT);
      assert.deepEqual(d.digests, [fx.hash]);
      assert.equal(d.text, undefined);
      assert.ok(d.signedAt instanceof Date && Math.abs(d.signedAt - Date.now()) < 10 * 60_000);
      assert.equal(d.fileName, 'contract.pdf.p7s');
      assert.equal(d.mediaType, 'application/pkcs7-signature');
    }
    assert.equal(decodeSignature(resp.signature, 'CAdES').fileName, 'document.p7s');
    assert.throws(() => decodeSignature(Buffer.from('<x/>').toString('base64'), 'CAdES'), /CAdES signature is not DER/);
  });

  test('wrong hash and wrong hash type are reported', () => {
    const resp = fx.response('cades-t.p7s');
    const wrong = createHash('sha256').update('another document').digest('base64');
    const r = verifyBasic(resp, { hash: wrong, hashType: 'SHA2-256' });
    assert.equal(r.ok, false);
    assert.deepEqual(r.problems, ['messageDigest does not match the document hash']);
    assert.equal(r.hashMatches, false);
    const r2 = verifyBasic(resp, { hash: fx.hash, hashType: 'SHA2-512' });
    assert.deepEqual(r2.problems, ['digest algorithm is SHA2-256, expected SHA2-512']);
    assert.equal(r2.hashMatches, false);
    assert.equal(verifyBasic({ signature: '!!' }, { hash: fx.hash }).hashMatches, false);
  });

  test('response-level problems: status, certificate, signatureTimestamp', () => {
    const bad = verifyBasic(fx.response('cades-t.p7s', {
      status: { code: 'ERROR', message: 'boom' },
      certificate: readFileSync(join(dir, 'other.pem'), 'utf8'),
      signatureTimestamp: 'bm90IGRlcg==',
    }), { hash: fx.hash });
    assert.equal(bad.ok, false);
    assert.equal(bad.problems.length, 3, bad.problems.join('; '));
    assert.match(bad.problems[0], /status is ERROR: boom/);
    assert.match(bad.problems[1], /not among the certificates/);
    assert.match(bad.problems[2], /signatureTimestamp does not decode/);
    const noCert = verifyBasic(fx.response('cades-t.p7s', { certificate: 'garbage', status: undefined }));
    assert.deepEqual(noCert.problems, ['status is missing', 'certificate: no PEM certificate in the response']);
    const badPem = verifyBasic(fx.response('cades-t.p7s', {
      certificate: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----',
    }));
    assert.match(badPem.problems.join(), /certificate: PEM does not decode/);
  });

  test('structural problems: attached content, no CAdES attribute, not signedData, garbage', () => {
    const att = verifyBasic(fx.response('attached.p7s'), { hash: fx.hash });
    assert.ok(att.problems.some((p) => /not detached/.test(p)), att.problems.join('; '));
    const plain = verifyBasic(fx.response('plain.p7s'), { hash: fx.hash });
    assert.ok(plain.problems.some((p) => /signing-certificate/.test(p)), plain.problems.join('; '));
    // The time-stamp token is itself a signedData, but an attached, non-detached one.
    const tokenAsSig = verifyBasic(fx.token.toString('base64'));
    assert.ok(tokenAsSig.problems.some((p) => /not detached/.test(p)));
    // A certificate is a SEQUENCE but not a ContentInfo.
    const certDer = fromBase64(readFileSync(join(dir, 'signer.pem'), 'utf8').replace(/-----[^-]+-----/g, ''));
    const notCms = verifyBasic(toBase64(certDer));
    assert.equal(notCms.ok, false);
    assert.match(notCms.problems.join(), /signature structure: /);
    const garbage = verifyBasic({ signature: '!!', certificate: '', status: { code: 'OK' } });
    assert.equal(garbage.ok, false);
    assert.match(garbage.problems.join(), /base64/);
  });
});

// ---------------------------------------------------------------------------------------------
describe('decodeSignature of XAdES, ASIC and JWS', () => {
  const h1 = createHash('sha256').update('one').digest('base64');
  const h2 = createHash('sha256').update('two').digest('base64');
  const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');
  // The shape esigd writes (formats/src/xades.rs): one reference per document by percent-encoded
  // URI, then the SignedProperties reference.
  const signature = (uris) => '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Id="S1">'
    + '<ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"></ds:CanonicalizationMethod>'
    + uris.map(([uri, h], i) => `<ds:Reference Id="r${i}" URI="${uri}"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"></ds:DigestMethod>`
      + `<ds:DigestValue>${h}</ds:DigestValue></ds:Reference>`).join('')
    + '<ds:Reference Type="http://uri.etsi.org/01903#SignedProperties" URI="#sp"><ds:DigestMethod Algorithm="x"></ds:DigestMethod>'
    + '<ds:DigestValue>c3Bw</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue>'
    + '<ds:Object><xades:QualifyingProperties xmlns:xades="http://uri.etsi.org/01903/v1.3.2#"><xades:SignedProperties Id="sp">'
    + '<xades:SignedSignatureProperties><xades:SigningTime>2026-12-07T10:00:00Z</xades:SigningTime>'
    + '<xades:SigningCertificateV2><xades:Cert><xades:CertDigest><ds:DigestValue>Y2VydA==</ds:DigestValue></xades:CertDigest>'
    + '</xades:Cert></xades:SigningCertificateV2></xades:SignedSignatureProperties></xades:SignedProperties>'
    + '</xades:QualifyingProperties></ds:Object></ds:Signature>';

  test('XAdES: the XML, the documents\' digests and names, SigningTime', () => {
    const xml = `<?xml version="1.0" encoding="UTF-8"?>${signature([['contract%20%C3%A4.pdf', h1], ['a&amp;b.txt', h2]])}`;
    const d = decodeSignature({ signature: b64(xml) }, 'XAdES', 'contract ä.pdf');
    assert.equal(d.text, xml);
    assert.deepEqual(Buffer.from(d.bytes), Buffer.from(xml));
    assert.deepEqual(d.digests, [h1, h2]);
    assert.deepEqual(d.names, ['contract ä.pdf', 'a&b.txt']);
    assert.equal(d.signedAt.toISOString(), '2026-12-07T10:00:00.000Z');
    assert.equal(d.fileName, 'contract ä.pdf.xml');
    assert.equal(d.mediaType, 'application/xml');
  });

  test('ASIC: signatures0.xml of an ASiC-E container', () => {
    const xml = `<asic:XAdESSignatures xmlns:asic="http://uri.etsi.org/02918/v1.2.1#">${signature([['a.txt', h1]])}</asic:XAdESSignatures>`;
    const d = decodeSignature(b64(xml), 'ASIC', 'a.txt');
    assert.deepEqual(d.digests, [h1]);
    assert.equal(d.fileName, 'a.txt.signatures0.xml');
    assert.throws(() => decodeSignature(b64(signature([['a.txt', h1]])), 'ASIC'), /not an ASiC-E signatures file/);
  });

  test('JWS: the JSON, sigD.hashV as standard base64, sigD.pars, iat', () => {
    const header = {
      alg: 'ES256', typ: 'jose+json', iat: 1796637600, b64: false,
      sigD: { mId: 'http://uri.etsi.org/19182/ObjectIdByURIHash', pars: ['contract.pdf', 'b.txt'], hashM: 'S256',
        hashV: [Buffer.from(h1, 'base64').toString('base64url'), Buffer.from(h2, 'base64').toString('base64url')] },
      crit: ['sigD', 'b64'],
    };
    const jws = JSON.stringify({ protected: Buffer.from(JSON.stringify(header)).toString('base64url'), signature: 'AAAA' });
    const d = decodeSignature({ signature: b64(jws) }, 'JWS', 'contract.pdf');
    assert.equal(d.text, jws);
    assert.equal(d.json.signature, 'AAAA');
    assert.deepEqual(d.digests, [h1, h2]);
    assert.deepEqual(d.names, ['contract.pdf', 'b.txt']);
    assert.equal(d.signedAt.getTime(), 1796637600 * 1000);
    assert.equal(d.fileName, 'contract.pdf.json');
    assert.equal(d.mediaType, 'application/jose+json');
  });

  test('what a format does not make is refused', () => {
    assert.throws(() => decodeSignature({ signature: b64('{}') }, 'JWS'), /not a JWS/);
    assert.throws(() => decodeSignature({ signature: b64('<a/>') }, 'XAdES'), /no ds:Signature/);
    assert.throws(() => decodeSignature(Buffer.from([0xff, 0xfe]).toString('base64'), 'XAdES'), /not UTF-8/);
    assert.throws(() => decodeSignature({}, 'XAdES'), /no signature/);
    assert.throws(() => decodeSignature('!!', 'XAdES'), /not base64/);
    assert.throws(() => decodeSignature(b64('x'), 'PDF'), /format must be one of/);
  });
});
