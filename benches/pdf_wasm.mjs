#!/usr/bin/env node
// MEASUREMENT (not a test): the WebAssembly PAdES client (web/assets/esig-pdf.js) on a large PDF in
// Node: module load, preparePdf, embedPdf, and the .wasm size.
//
//   scripts/build-wasm.sh && node benches/pdf_wasm.mjs [--pages 300] [--mb 30] [--rounds 3] [--pdf file.pdf]
//     [--save DIR]   (keeps input.pdf, signed.pdf and sig.p7s there, e.g. for pdfsig or a native run)
//
// Without --pdf it generates a PDF of --pages pages, each drawing its own uncompressed RGB image
// (random bytes, so nothing compresses), --mb MB in all, with a classic cross-reference table. The
// CMS embedded is a real detached CMS made by openssl over the /ByteRange (outside the timings).
// Prints one JSON line per round and a summary (median and min, ms).

import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = process.env.ESIG_WASM_OUT ? resolve(ROOT, process.env.ESIG_WASM_OUT) : join(ROOT, 'web', 'assets', 'pdf');

function args(argv) {
  const o = { pages: 300, mb: 30, rounds: 3, pdf: null, save: null };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o) || argv[i + 1] === undefined) throw new Error(`usage: node benches/pdf_wasm.mjs [--pages N] [--mb N] [--rounds N] [--pdf file] [--save DIR]`);
    o[k] = ['pdf', 'save'].includes(k) ? argv[i + 1] : Number(argv[i + 1]);
  }
  return o;
}

/** A PDF of `pages` pages of about `mb` MB together (one image per page). */
function bigPdf(pages, mb) {
  const imageBytes = Math.max(3, Math.floor((mb * 1024 * 1024) / pages / 3) * 3);
  const width = 500;
  const height = Math.max(1, Math.floor(imageBytes / 3 / width));
  const chunks = [];
  let len = 0;
  const push = (b) => { const buf = typeof b === 'string' ? Buffer.from(b, 'latin1') : b; chunks.push(buf); len += buf.length; };
  const offsets = [];
  const obj = (n, body, stream) => {
    offsets[n] = len;
    push(`${n} 0 obj\n${body}\n`);
    if (stream) { push('stream\n'); push(stream); push('\nendstream\n'); }
    push('endobj\n');
  };
  push('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n');
  const kids = [];
  // Objects: 1 catalog, 2 pages, then per page i: page, content, image.
  for (let i = 0; i < pages; i++) kids.push(`${3 + 3 * i} 0 R`);
  obj(1, '<< /Type /Catalog /Pages 2 0 R >>');
  obj(2, `<< /Type /Pages /Kids [${kids.join(' ')}] /Count ${pages} >>`);
  for (let i = 0; i < pages; i++) {
    const [page, content, image] = [3 + 3 * i, 4 + 3 * i, 5 + 3 * i];
    obj(page, `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /XObject << /Im0 ${image} 0 R >> >> /Contents ${content} 0 R >>`);
    const draw = `q 500 0 0 ${height} 47 100 cm /Im0 Do Q\n`;
    obj(content, `<< /Length ${draw.length} >>`, Buffer.from(draw, 'latin1'));
    const pixels = randomFillSync(Buffer.alloc(width * height * 3));
    obj(image, `<< /Type /XObject /Subtype /Image /Width ${width} /Height ${height} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Length ${pixels.length} >>`, pixels);
  }
  const size = 3 + 3 * pages;
  const xref = len;
  push(`xref\n0 ${size}\n0000000000 65535 f \n`);
  for (let n = 1; n < size; n++) push(`${String(offsets[n]).padStart(10, '0')} 00000 n \n`);
  push(`trailer\n<< /Size ${size} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`);
  return Buffer.concat(chunks, len);
}

function opensslCms(dir, prepared, [, a, b]) {
  const ossl = (...x) => execFileSync('openssl', x, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'k.pem',
    '-out', 'c.pem', '-days', '1', '-subj', '/CN=bench');
  writeFileSync(join(dir, 'ranges'), Buffer.concat([prepared.subarray(0, a), prepared.subarray(b)]));
  ossl('cms', '-sign', '-binary', '-md', 'sha256', '-nosmimecap', '-cades', '-signer', 'c.pem', '-inkey', 'k.pem',
    '-outform', 'DER', '-in', 'ranges', '-out', 'sig.p7s');
  return readFileSync(join(dir, 'sig.p7s'));
}

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

async function main() {
  const o = args(process.argv.slice(2));
  const work = mkdtempSync(join(tmpdir(), 'pdf-wasm-bench-'));
  try {
    const wasmFile = join(OUT, 'esig_wasm_bg.wasm');
    const wasmSize = statSync(wasmFile).size; // throws if not built: run scripts/build-wasm.sh
    const t0 = performance.now();
    const pdf = await import(pathToFileURL(join(ROOT, 'web', 'assets', 'esig-pdf.js')).href);
    await pdf.init({ moduleUrl: pathToFileURL(join(OUT, 'esig_wasm.js')) });
    const initMs = performance.now() - t0;

    const input = o.pdf ? readFileSync(o.pdf) : bigPdf(o.pages, o.mb);
    const rows = [];
    let cms = null;
    for (let r = 0; r < o.rounds; r++) {
      const t1 = performance.now();
      const p = await pdf.preparePdf(input, { signingTime: 1765000000000, reason: 'bench' });
      const prepareMs = performance.now() - t1;
      // Same input and options: the same prepared bytes each round, so one CMS does for all.
      if (!cms) cms = opensslCms(work, Buffer.from(p.prepared), p.byteRange);
      const t2 = performance.now();
      const signed = await pdf.embedPdf(p.prepared, cms);
      const embedMs = performance.now() - t2;
      const row = {
        round: r + 1, inputBytes: input.length, outputBytes: signed.length,
        prepareMs: Math.round(prepareMs), embedMs: Math.round(embedMs),
        rssMB: Math.round(process.memoryUsage().rss / 1048576),
      };
      rows.push(row);
      if (o.save && r === 0) {
        writeFileSync(join(o.save, 'input.pdf'), input);
        writeFileSync(join(o.save, 'signed.pdf'), signed);
        writeFileSync(join(o.save, 'sig.p7s'), cms);
      }
      console.log(JSON.stringify(row));
    }
    console.log(JSON.stringify({
      summary: true, node: process.version, wasmBytes: wasmSize, initMs: Math.round(initMs),
      inputMB: +(input.length / 1048576).toFixed(1), pages: o.pdf ? null : o.pages,
      // The first call runs V8's baseline (Liftoff) code until the optimizing tier takes over:
      // what a page that signs one PDF sees.
      prepareMsFirst: rows[0].prepareMs, embedMsFirst: rows[0].embedMs,
      prepareMsMedian: median(rows.map((x) => x.prepareMs)), prepareMsMin: Math.min(...rows.map((x) => x.prepareMs)),
      embedMsMedian: median(rows.map((x) => x.embedMs)), embedMsMin: Math.min(...rows.map((x) => x.embedMs)),
      maxRssMB: Math.max(...rows.map((x) => x.rssMB)),
    }));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
