// Tests for esig-pdf.js and the WebAssembly build of esig's PAdES code: `node --test web/assets/`
//
// Needs the build output of scripts/build-wasm.sh (web/assets/pdf/, or $ESIG_WASM_OUT); every test
// fails with that instruction when it is missing (scripts/test.sh builds it first). The signatures
// are REAL: the openssl CLI signs the /ByteRange of the prepared PDF (a detached CAdES-BES CMS,
// with content-type, message-digest, signing-certificate-v2 and signing-time attributes, as
// pyHanko and poppler accept), and three independent tools check the embedded result: qpdf
// --check (structure), pdfsig (poppler: "Signature is Valid", whole document signed) and pyHanko
// (`pyhanko sign validate`, from $ESIGD_VENV: intact, valid, trusted, incremental update allowed).
// The record client-wasm/tests/fixtures/prepared.json, also checked by the native build
// (client-wasm/tests/native_prepare.rs), shows that both builds prepare byte-identical files.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createHash } from 'node:crypto';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const OUT = process.env.ESIG_WASM_OUT ? resolve(ROOT, process.env.ESIG_WASM_OUT) : join(HERE, 'pdf');
const FIXTURES = join(ROOT, 'client-wasm', 'tests', 'fixtures');
const BUILT = existsSync(join(OUT, 'esig_wasm.js')) && existsSync(join(OUT, 'esig_wasm_bg.wasm'));
const VENV = process.env.ESIGD_VENV || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'esigd-venv');
const PYHANKO = join(VENV, 'bin', 'pyhanko');

/** Fails the test when the WebAssembly build is missing: it is never skipped. */
function needBuild() {
  if (!BUILT) {
    assert.fail(`the WebAssembly PDF module is not built (${join(OUT, 'esig_wasm.js')} or esig_wasm_bg.wasm missing): run scripts/build-wasm.sh`);
  }
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest();
const b64 = (bytes) => Buffer.from(bytes).toString('base64');

let pdf; // the module under test, once loaded
let work;
before(async () => {
  work = mkdtempSync(join(tmpdir(), 'esig-pdf-test-'));
  if (!BUILT) return;
  pdf = await import('./esig-pdf.js');
  await pdf.init({ moduleUrl: pathToFileURL(join(OUT, 'esig_wasm.js')) });
});
after(() => rmSync(work, { recursive: true, force: true }));

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

/** A CA and a signer certificate (EC P-256), made with openssl in the work directory. */
function makePki(dir) {
  const ossl = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key',
    '-out', 'ca.pem', '-days', '2', '-subj', '/CN=esig-pdf test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  ossl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'signer.key',
    '-out', 'signer.csr', '-subj', '/CN=esig-pdf test signer');
  writeFileSync(join(dir, 'signer.ext'),
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n');
  ossl('x509', '-req', '-in', 'signer.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '1', '-out', 'signer.pem', '-extfile', 'signer.ext');
}

/** The bytes the signature covers: the prepared file without the /Contents placeholder. */
function signedRanges(prepared, [, a, b]) {
  return Buffer.concat([prepared.subarray(0, a), prepared.subarray(b)]);
}

/** A detached CAdES-BES CMS (DER) over the /ByteRange of `prepared`, made by openssl. */
function opensslCms(dir, prepared, byteRange, name) {
  writeFileSync(join(dir, `${name}.ranges`), signedRanges(prepared, byteRange));
  execFileSync('openssl', ['cms', '-sign', '-binary', '-md', 'sha256', '-nosmimecap', '-cades',
    '-signer', 'signer.pem', '-inkey', 'signer.key', '-certfile', 'ca.pem', '-outform', 'DER',
    '-in', `${name}.ranges`, '-out', `${name}.p7s`], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  return readFileSync(join(dir, `${name}.p7s`));
}

function qpdfCheck(file) {
  const r = run('qpdf', ['--check', file]);
  return { ok: r.code === 0 && r.out.includes('No syntax or stream encoding errors'), out: r.out };
}

function pdfsig(file) {
  return run('pdfsig', [file]).out;
}

function pyhanko(file, trust) {
  assert.ok(existsSync(PYHANKO), `${PYHANKO} is missing: run scripts/install-deps.sh --with-test-tools (or set ESIGD_VENV)`);
  return run(PYHANKO, ['sign', 'validate', '--trust', trust, '--trust-replace', '--no-revocation-check', file],
    { env: { ...process.env, PYTHONWARNINGS: 'ignore' } });
}

// ---------------------------------------------------------------------------------------------
describe('WebAssembly prepare', () => {
  test('prepares byte for byte what the native build prepares (client-wasm/tests/fixtures/prepared.json)', async () => {
    needBuild();
    const record = JSON.parse(readFileSync(join(FIXTURES, 'prepared.json'), 'utf8'));
    assert.ok(record.cases.length >= 2);
    for (const c of record.cases) {
      assert.ok(c.expected, `${c.input}: no expected values: ESIG_WASM_BLESS=1 cargo test -p esig-wasm --test native_prepare`);
      const input = readFileSync(join(FIXTURES, c.input));
      const r = await pdf.preparePdf(input, c.options);
      const got = {
        sha256: sha256(r.prepared).toString('hex'),
        length: r.prepared.length,
        digest: r.digest,
        byteRange: r.byteRange,
        fieldName: r.fieldName,
      };
      assert.deepEqual(got, c.expected, `${c.input} ${JSON.stringify(c.options)}: the WebAssembly build differs from the native one`);
      assert.equal(r.hashType, 'SHA2-256');
      assert.ok(Buffer.from(r.prepared.subarray(0, input.length)).equals(input), 'the original is a prefix');
      // The digest is the SHA-256 of the /ByteRange (computed here independently).
      assert.equal(r.digest, b64(sha256(signedRanges(Buffer.from(r.prepared), r.byteRange))));
    }
  });

  test('accepts a Blob and an ArrayBuffer, and a Date as signingTime', async () => {
    needBuild();
    const input = readFileSync(join(FIXTURES, 'classic.pdf'));
    const opts = { signingTime: new Date(1700000000000) };
    const a = await pdf.preparePdf(new Blob([input]), opts);
    const buf = input.buffer.slice(input.byteOffset, input.byteOffset + input.length);
    const b = await pdf.preparePdf(buf, { signingTime: 1700000000000 });
    assert.deepEqual(a, b);
    assert.match(Buffer.from(a.prepared).toString('latin1'), /\/M\s*\(D:20231114221320Z\)/);
  });

  test('errors are JavaScript Errors with esig\'s message', async () => {
    needBuild();
    const input = readFileSync(join(FIXTURES, 'classic.pdf'));
    await assert.rejects(pdf.preparePdf(new TextEncoder().encode('hello'), {}), (e) => e instanceof Error && /not a PDF/.test(e.message));
    await assert.rejects(pdf.preparePdf(input, { reserve: 10 }), /reserve must be between 1024 and 1048576/);
    await assert.rejects(pdf.preparePdf(input, { fieldName: 'a.b' }), /contains '\.'/);
    await assert.rejects(pdf.preparePdf(input, { signingTime: 'yesterday' }), /options\.signingTime must be a number/);
    await assert.rejects(pdf.preparePdf(input, { signingTime: NaN }), /signingTime/);
    await assert.rejects(pdf.preparePdf('a string', {}), TypeError);
    const p = await pdf.preparePdf(input, { reserve: 1024 });
    // Preparing the prepared file again: its placeholder is still empty.
    await assert.rejects(pdf.preparePdf(p.prepared, {}), /prepared but never signed/);
    // A CMS over other bytes, one too big, and no CMS at all.
    const other = new Uint8Array([0x30, 0x22, 0x04, 0x20, ...new Uint8Array(32)]);
    await assert.rejects(pdf.embedPdf(p.prepared, other), /digest/i);
    const big = new Uint8Array(2000); big.set([0x30, 0x82, 0x07, 0xcc]);
    await assert.rejects(pdf.embedPdf(p.prepared, big), /reserve/);
    await assert.rejects(pdf.embedPdf(p.prepared, { signature: 'not base64!' }), /not base64/);
    await assert.rejects(pdf.embedPdf(p.prepared, {}), TypeError);
    await assert.rejects(pdf.embedPdf(input, other), /ByteRange/);
  });
});

// ---------------------------------------------------------------------------------------------
describe('prepare, sign with openssl, embed: validated by qpdf, pdfsig and pyHanko', () => {
  let dir;
  let signed;
  let twice;
  before(() => {
    dir = join(work, 'pades');
    execFileSync('mkdir', ['-p', dir]);
    makePki(dir);
  });

  test('one signature', async () => {
    needBuild();
    const original = readFileSync(join(FIXTURES, 'classic.pdf'));
    const p = await pdf.preparePdf(original, { reason: 'Zustimmung – ß', location: 'Tallinn', reserve: 8192 });
    const cms = opensslCms(dir, Buffer.from(p.prepared), p.byteRange, 'one');
    // As esigd answers: the response object with the base64 CMS.
    signed = await pdf.embedPdf(p.prepared, { signature: b64(cms) });
    assert.equal(signed.length, p.prepared.length);
    const [, a, b] = p.byteRange;
    assert.ok(Buffer.from(signed.subarray(0, a)).equals(Buffer.from(p.prepared.subarray(0, a))));
    assert.ok(Buffer.from(signed.subarray(b)).equals(Buffer.from(p.prepared.subarray(b))));
    const file = join(dir, 'one.pdf');
    writeFileSync(file, signed);

    const q = qpdfCheck(file);
    assert.ok(q.ok, `qpdf --check:\n${q.out}`);
    const s = pdfsig(file);
    assert.match(s, /Signature #1:/, s);
    assert.match(s, /Signature Validation: Signature is Valid\./, s);
    assert.match(s, /Total document signed/, s);
    assert.match(s, /Signature Type: ETSI\.CAdES\.detached/, s);
    assert.doesNotMatch(s, /Signature #2/, s);
    const h = pyhanko(file, join(dir, 'ca.pem'));
    assert.equal(h.code, 0, `pyhanko sign validate:\n${h.out}`);
    // One line per signature: field:signer:INTACT:TRUSTED,<modification level>.
    assert.match(h.out, /^Signature1:.*:INTACT:TRUSTED,UNTOUCHED$/m, h.out);
  });

  test('a second signature on the signed file keeps the first one valid', async () => {
    needBuild();
    assert.ok(signed, 'the first signature test did not run');
    const p = await pdf.preparePdf(signed, { fieldName: 'Countersignature' });
    assert.equal(p.fieldName, 'Countersignature');
    const cms = opensslCms(dir, Buffer.from(p.prepared), p.byteRange, 'two');
    twice = await pdf.embedPdf(p.prepared, cms); // DER bytes this time
    const file = join(dir, 'two.pdf');
    writeFileSync(file, twice);
    assert.ok(qpdfCheck(file).ok, qpdfCheck(file).out);
    const s = pdfsig(file);
    assert.equal((s.match(/Signature is Valid\./g) || []).length, 2, s);
    const h = pyhanko(file, join(dir, 'ca.pem'));
    assert.equal(h.code, 0, `pyhanko sign validate:\n${h.out}`);
    // pyHanko's difference analysis: the second update only adds a signature (form filling).
    assert.match(h.out, /^Signature1:.*:INTACT:TRUSTED,EXTENDED_WITH_FORM_FILLING,ACCEPTABLE_MODIFICATIONS$/m, h.out);
    assert.match(h.out, /^Countersignature:.*:INTACT:TRUSTED,UNTOUCHED$/m, h.out);
  });

  test('the validators see a changed byte (they can fail)', async () => {
    needBuild();
    assert.ok(signed, 'the first signature test did not run');
    const text = Buffer.from(signed).toString('latin1');
    const at = text.indexOf('a contract');
    assert.ok(at > 0);
    const tampered = Buffer.from(signed);
    tampered[at] = 'A'.charCodeAt(0);
    const file = join(dir, 'tampered.pdf');
    writeFileSync(file, tampered);
    const s = pdfsig(file);
    assert.doesNotMatch(s, /Signature is Valid/, s);
    const h = pyhanko(file, join(dir, 'ca.pem'));
    assert.notEqual(h.code, 0, `pyhanko accepted a tampered file:\n${h.out}`);
    // And a CMS over the tampered ranges cannot be embedded into the original prepared file.
    await assert.rejects(pdf.embedPdf(tampered, new Uint8Array([0x30, 0x00])), /already|signed/i);
  });
});

// ---------------------------------------------------------------------------------------------
describe('the example e-Service serves the module', () => {
  test('esig-pdf.js and pdf/ with their content types; the .wasm compiles from the response', async () => {
    needBuild();
    const { createServer } = await import('../../examples/eservice/server.mjs');
    const server = createServer({ wasmDir: OUT, esigdPublic: 'http://127.0.0.1:1', esigJs: 'http://127.0.0.1:1/v1/client/esig.js' });
    await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
    try {
      const base = `http://127.0.0.1:${server.address().port}`;
      const wasm = await fetch(`${base}/pdf/esig_wasm_bg.wasm`);
      assert.equal(wasm.status, 200);
      assert.equal(wasm.headers.get('content-type'), 'application/wasm');
      // compileStreaming refuses any other content type.
      const module = await WebAssembly.compileStreaming(wasm);
      assert.ok(WebAssembly.Module.exports(module).some((e) => e.name === 'pdfPrepare'));
      const js = await fetch(`${base}/pdf/esig_wasm.js`);
      assert.match(js.headers.get('content-type'), /^text\/javascript/);
      assert.match(await js.text(), /pdfPrepare/);
      const wrapper = await fetch(`${base}/esig-pdf.js`);
      assert.equal(await wrapper.text(), readFileSync(join(HERE, 'esig-pdf.js'), 'utf8'));
      assert.equal((await fetch(`${base}/pdf/other.wasm`)).status, 404);
    } finally {
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
    }
  });
});

describe('ASiC-E container (buildAsice, the zip crate through WebAssembly)', () => {
  // signatures0.xml as esigd returned it for format ASIC over lease.txt (from a browser test run).
  const xml = () => readFileSync(join(FIXTURES, 'asic', 'signatures0.xml'));
  const lease = () => readFileSync(join(FIXTURES, 'asic', 'lease.txt'));
  const PY = `
import json, sys, zipfile
raw = open(sys.argv[1], "rb").read()
z = zipfile.ZipFile(sys.argv[1])
print(json.dumps({"bad": z.testzip(), "first_name": raw[30:38].decode(), "first_value": raw[38:69].decode(),
  "entries": [{"name": i.filename, "method": i.compress_type, "extra": len(i.extra),
               "data": z.read(i).decode("utf-8", "replace")} for i in z.infolist()]}))
`;

  test('mimetype first and stored, the document, the manifest and the signature; read back by Python zipfile', async () => {
    const container = await pdf.buildAsice(
      [{ name: 'lease.txt', mediaType: 'text/plain', bytes: new Uint8Array(lease()) }],
      new Uint8Array(xml()),
      { time: Date.UTC(2026, 11, 7, 10, 0, 0) },
    );
    const dir = mkdtempSync(join(tmpdir(), 'asice-'));
    try {
      writeFileSync(join(dir, 'c.asice'), container);
      const out = JSON.parse(execFileSync('python3', ['-c', PY, join(dir, 'c.asice')], { encoding: 'utf8' }));
      assert.equal(out.bad, null);
      assert.equal(out.first_name, 'mimetype');
      assert.equal(out.first_value, 'application/vnd.etsi.asic-e+zip');
      const names = out.entries.map((e) => e.name);
      assert.deepEqual(names.sort(), ['META-INF/manifest.xml', 'META-INF/signatures0.xml', 'lease.txt', 'mimetype']);
      const mimetype = out.entries.find((e) => e.name === 'mimetype');
      assert.equal(mimetype.method, 0, 'mimetype is stored');
      assert.equal(mimetype.extra, 0, 'mimetype has no extra field');
      assert.equal(out.entries.find((e) => e.name === 'lease.txt').data, lease().toString('utf8'));
      assert.match(out.entries.find((e) => e.name === 'META-INF/manifest.xml').data, /full-path="lease.txt"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a changed or unreferenced document is refused with esig\'s message', async () => {
    const changed = new Uint8Array(lease());
    changed[0] ^= 1;
    await assert.rejects(
      pdf.buildAsice([{ name: 'lease.txt', bytes: changed }], new Uint8Array(xml())),
      /lease\.txt/,
    );
    await assert.rejects(
      pdf.buildAsice([{ name: 'other.txt', bytes: new Uint8Array(lease()) }], new Uint8Array(xml())),
      /other\.txt|lease\.txt/,
    );
    await assert.rejects(pdf.buildAsice([{ name: 'lease.txt', bytes: 'text' }], new Uint8Array(xml())));
  });
});
