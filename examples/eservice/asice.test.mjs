// Tests for asice.js: `node --test examples/eservice/`
//
// The container is read back by an independent implementation: Python's zipfile (python3 is
// required: without it these tests FAIL and say so).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { asiceContainer, crc32, odfManifest, MIMETYPE } from './asice.js';

const PY = `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
print(json.dumps({"bad": bad, "entries": [
  {"name": i.filename, "method": i.compress_type, "extra": len(i.extra), "utf8": bool(i.flag_bits & 0x800),
   "date": list(i.date_time), "data": z.read(i).decode("utf-8", "replace")} for i in z.infolist()]}))
`;

function readWithPython(bytes) {
  const dir = mkdtempSync(join(tmpdir(), 'asice-'));
  try {
    writeFileSync(join(dir, 'c.asice'), bytes);
    let out;
    try {
      out = execFileSync('python3', ['-c', PY, join(dir, 'c.asice')], { encoding: 'utf8' });
    } catch (e) {
      assert.fail(`python3 is required by these tests and did not run: ${e.message.split('\n')[0]}`);
    }
    return JSON.parse(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('crc32 is the ZIP CRC-32', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(crc32(new Uint8Array()), 0);
});

test('the container: mimetype first and stored at byte 30/38, documents, manifest, signature', () => {
  const sig = '<asic:XAdESSignatures xmlns:asic="http://uri.etsi.org/02918/v1.2.1#"/>';
  const docs = [
    { name: 'lease ä.txt', mediaType: 'text/plain', bytes: new TextEncoder().encode('Lease no. 42\n') },
    { name: 'plan.pdf', mediaType: 'application/pdf', bytes: new Uint8Array([37, 80, 68, 70, 0, 255]) },
  ];
  const c = asiceContainer(docs, sig, new Date(Date.UTC(2026, 11, 7, 10, 30, 44)));
  const text = new TextDecoder('latin1').decode(c.subarray(0, 38 + MIMETYPE.length));
  assert.equal(text.slice(30, 38), 'mimetype');
  assert.equal(text.slice(38), MIMETYPE);
  const z = readWithPython(c);
  assert.equal(z.bad, null);
  assert.deepEqual(z.entries.map((e) => e.name),
    ['mimetype', 'lease ä.txt', 'plan.pdf', 'META-INF/manifest.xml', 'META-INF/signatures0.xml']);
  assert.ok(z.entries.every((e) => e.method === 0 && e.extra === 0));
  assert.deepEqual(z.entries.map((e) => e.utf8), [false, true, false, false, false]);
  assert.deepEqual(z.entries[0].date, [2026, 12, 7, 10, 30, 44]);
  assert.equal(z.entries[0].data, MIMETYPE);
  assert.equal(z.entries[1].data, 'Lease no. 42\n');
  assert.equal(z.entries[4].data, sig);
  assert.equal(z.entries[3].data, odfManifest(docs));
  assert.match(z.entries[3].data, /full-path="\/" manifest:media-type="application\/vnd\.etsi\.asic-e\+zip"/);
  assert.match(z.entries[3].data, /full-path="lease ä\.txt" manifest:media-type="text\/plain"/);
});

test('reserved names are refused', () => {
  for (const name of ['mimetype', 'META-INF/x.xml', 'meta-inf']) {
    assert.throws(() => asiceContainer([{ name, bytes: new Uint8Array(1) }], '<x/>'), /reserved/);
  }
});
