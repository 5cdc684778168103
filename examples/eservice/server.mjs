#!/usr/bin/env node
// Example e-Service for esigd (GovStack eSignature workflow 9.1, one-time signing). Node stdlib only.
//
//   node examples/eservice/server.mjs [--port 8090] [--host 127.0.0.1]
//     [--esigd-public http://127.0.0.1:8080] [--esigd-api https://127.0.0.1:8443]
//     [--data ./data] [--service-id demo]
//
// Prints one JSON line {"url":"http://127.0.0.1:8090/","ready":true} on stdout when listening;
// logs go to stderr.
//
// Routes:
//   GET  /               the start page (index.html): a format choice (PAdES for a PDF, else CAdES;
//                        XAdES, JAdES), the digest (PAdES: of the PDF prepared in the browser by
//                        esig-pdf.js), then the redirect to esigd
//   POST /start          {hash, hashType, fileName, format?, mediaType?} -> new session (cookie) +
//                        {state, nonce, callbackUrl, fileName, documents?, ...}
//   GET  /callback       esigd sends the user back here; state check, mTLS fetch of the signature,
//                        check that it covers the session's digest; the result page
//   GET  /signature.p7s  the CMS of this session (CAdES: the detached signature; PAdES: what the
//                        browser embeds into the prepared PDF)
//   GET  /signature.xml, /signatures0.xml, /signature.json  the XAdES, ASiC-E or JAdES signature
//   GET  /keep.js        keeps the document (and the prepared PDF) in the browser's IndexedDB
//                        across the round trip through esigd
//   GET  /esig-pdf.js, /pdf/esig_wasm.js, /pdf/esig_wasm_bg.wasm  the WebAssembly PAdES client
//                        (web/assets/esig-pdf.js and the output of scripts/build-wasm.sh)

import http from 'node:http';
import https from 'node:https';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The same client library esigd serves at /v1/client/esig.js; it also runs in Node. A real
// e-Service would vendor a copy of that file.
import { verifyBasic, toP7s, parseCallback, decodeSignature } from '../../web/assets/esig.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SESSION_COOKIE = 'esvc_session';
const SESSION_TTL_MS = 30 * 60 * 1000;
const MAX_SESSIONS = 10_000;
/** Tolerated clock difference between esigd and this server when comparing times. */
const CLOCK_SKEW_MS = 60 * 1000;
const HASH_LENGTH = { 'SHA2-256': 32, 'SHA2-384': 48, 'SHA2-512': 64 };
/** The formats this example offers: every one esigd makes. CMS formats sign one digest; XAdES,
 * ASIC and JWS name the document in the signature. */
const FORMATS = ['CAdES', 'PAdES', 'XAdES', 'ASIC', 'JWS'];
const CMS_FORMATS = ['CAdES', 'PAdES'];
/** Where the result page offers the signature of each format. */
const SIGNATURE_FILE = {
  CAdES: '/signature.p7s', PAdES: '/signature.p7s', XAdES: '/signature.xml', ASIC: '/signatures0.xml', JWS: '/signature.json',
};

// ---------------------------------------------------------------------------------------------
// options

function parseArgs(argv) {
  const opts = {
    port: 8090, host: '127.0.0.1', esigdPublic: 'http://127.0.0.1:8080',
    esigdApi: 'https://127.0.0.1:8443', data: './data', serviceId: 'demo',
  };
  const names = {
    '--port': 'port', '--host': 'host', '--esigd-public': 'esigdPublic', '--esigd-api': 'esigdApi',
    '--data': 'data', '--service-id': 'serviceId',
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const key = names[flag];
    if (!key) throw new Error(`unknown option ${flag}`);
    const v = inline !== undefined ? inline : argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value`);
    opts[key] = v;
  }
  opts.port = Number(opts.port);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error('--port must be 0..65535');
  for (const [k, proto] of [['esigdPublic', /^https?:$/], ['esigdApi', /^https:$/]]) {
    let u;
    try { u = new URL(opts[k]); } catch { throw new Error(`${k}: not a URL: ${opts[k]}`); }
    if (!proto.test(u.protocol) || u.search || u.hash) throw new Error(`${k}: unexpected URL ${opts[k]}`);
    opts[k] = `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
  }
  opts.esigJs = `${opts.esigdPublic}/v1/client/esig.js`;
  opts.esigdOrigin = new URL(opts.esigdPublic).origin;
  // esigd's development defaults (`esigd serve` with no config) put the demo client certificate
  // and the CA of the e-Service listener here.
  opts.tls = {
    cert: path.join(opts.data, 'pki', 'demo-eservice.pem'),
    key: path.join(opts.data, 'pki', 'demo-eservice.key'),
    ca: path.join(opts.data, 'pki', 'eservice-client-ca.pem'),
  };
  return opts;
}

// ---------------------------------------------------------------------------------------------
// small helpers

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** JSON that is safe inside <script type="application/json">: no '<' can close the element. */
const jsonForHtml = (v) => JSON.stringify(v)
  .replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026')
  .replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');

/** Single-quoted POSIX shell word. */
const shellQuote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

function safeEqual(a, b) {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function cookies(req) {
  const out = {};
  for (const part of (req.headers.cookie || '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) { reject(Object.assign(new Error('body too large'), { status: 413 })); req.destroy(); } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function truncateChars(s, n) {
  const cp = [...s];
  return cp.length <= n ? s : `${cp.slice(0, n - 1).join('')}…`;
}

const isoOrDash = (d) => (d instanceof Date && !Number.isNaN(+d) ? d.toISOString() : '—');

// ---------------------------------------------------------------------------------------------
// mutual-TLS call to esigd

function readTls(opts) {
  try {
    return {
      cert: fs.readFileSync(opts.tls.cert), key: fs.readFileSync(opts.tls.key), ca: fs.readFileSync(opts.tls.ca),
    };
  } catch (e) {
    throw new Error(`cannot read the client TLS material under ${opts.data}/pki (run esigd serve once): ${e.message}`);
  }
}

/** GET {esigd-api}/v1/sign/response/{id} with the e-Service client certificate. */
function fetchSignature(opts, signatureId) {
  // Read on each call: esigd may create the files after this server started.
  const tls = readTls(opts);
  const url = new URL(`${opts.esigdApi}/v1/sign/response/${signatureId}`);
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      method: 'GET', headers: { accept: 'application/json' }, timeout: 10_000,
      cert: tls.cert, key: tls.key, ca: tls.ca, // ca: trust only esigd's CA, not the public roots
    }, (res) => {
      const chunks = [];
      let size = 0;
      res.on('data', (c) => {
        size += c.length;
        if (size > 5 * 1024 * 1024) req.destroy(new Error('esigd response too large'));
        else chunks.push(c);
      });
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) return reject(new Error(`esigd answered HTTP ${res.statusCode}: ${body.slice(0, 300)}`));
        try { resolve(JSON.parse(body)); } catch { reject(new Error('esigd answered something that is not JSON')); }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('esigd did not answer within 10 s')));
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// pages

function securityHeaders(opts, nonce) {
  return {
    // Scripts: only our nonce'd inline script, esig.js from esigd and our own modules (keep.js,
    // esig-pdf.js), which may compile WebAssembly ('wasm-unsafe-eval': no JavaScript eval). fetch()
    // only to ourselves.
    'content-security-policy': [
      "default-src 'none'", `script-src 'nonce-${nonce}' 'self' 'wasm-unsafe-eval' ${opts.esigdOrigin}`,
      `style-src 'nonce-${nonce}'`,
      "connect-src 'self'", "img-src 'self' data:", "form-action 'self'", "base-uri 'none'", "frame-ancestors 'none'",
    ].join('; '),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'same-origin',
    'cache-control': 'no-store',
  };
}

function sendHtml(res, opts, status, title, body, script = '', config = null) {
  const nonce = crypto.randomBytes(16).toString('base64');
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style nonce="${nonce}">
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 0 auto; padding: 1rem; color: #1b1b1b; }
  h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; }
  dt { font-weight: bold; } dd { margin: 0 0 .5rem 0; overflow-wrap: anywhere; }
  pre { white-space: pre-wrap; background: #f3f3f3; padding: .75rem; border-radius: .3rem; overflow-wrap: anywhere; }
  .bad, #error { color: #a00000; } .good { color: #0a6b0a; }
</style></head>
<body>
${body}
${config ? `<script type="application/json" id="config">${jsonForHtml(config)}</script>` : ''}
${script ? `<script type="module" nonce="${nonce}">${script}</script>` : ''}
</body></html>
`;
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...securityHeaders(opts, nonce) });
  res.end(html);
}

function sendError(res, opts, status, code, description) {
  sendHtml(res, opts, status, 'Signing did not complete', `
<h1>Signing did not complete</h1>
<section id="error" role="alert">
  <p>Error: <code id="error-code">${escapeHtml(code)}</code></p>
  <p id="error-description">${escapeHtml(description)}</p>
</section>
<p><a id="again" href="/">Start again</a></p>`);
}

function serveIndex(req, res, opts) {
  const nonce = crypto.randomBytes(16).toString('base64');
  const template = fs.readFileSync(path.join(HERE, 'index.html'), 'utf8');
  const config = { esigJs: opts.esigJs, esigdPublic: opts.esigdPublic };
  // Function replacers: no `$&`-style patterns are interpreted in the inserted text.
  const html = template.replace(/\{\{NONCE\}\}/g, () => nonce).replace('{{CONFIG}}', () => jsonForHtml(config));
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...securityHeaders(opts, nonce) });
  res.end(html);
}

// Runs in the browser on the result page: esig.js from esigd checks the signature against the
// digest the page computed before the redirect; the document kept in IndexedDB (keep.js) is
// offered next to the signature, or (PAdES) the signature is embedded into the prepared PDF by
// esig-pdf.js and the signed PDF offered.
const RESULT_SCRIPT = `
const config = JSON.parse(document.getElementById('config').textContent);
const $ = (id) => document.getElementById(id);
const out = $('verify');
const link = (id, blob, fileName, label) => {
  const a = $(id);
  a.href = URL.createObjectURL(blob);
  a.download = fileName;
  a.textContent = label;
  a.hidden = false;
};
try {
  const esig = await import(config.esigJs);
  let problems;
  if (config.format === 'CAdES' || config.format === 'PAdES') {
    problems = esig.verifyBasic(config.response, { hash: config.hash, hashType: config.hashType }).problems;
  } else {
    const d = esig.decodeSignature(config.response, config.format, config.fileName);
    problems = d.digests.length === 1 && d.digests[0] === config.hash ? [] : ['the signature does not cover this document'];
  }
  out.dataset.ok = String(problems.length === 0);
  out.className = problems.length === 0 ? 'good' : 'bad';
  out.textContent = problems.length === 0 ? 'esig.js check in this browser: OK'
    : 'esig.js check in this browser found problems: ' + problems.join('; ');
} catch (e) {
  out.dataset.ok = 'false';
  out.className = 'bad';
  out.textContent = 'Could not run esig.js from ' + config.esigJs + ': ' + e.message;
}
const pdfStatus = $('pdf-status');
try {
  const { take } = await import('/keep.js');
  const kept = await take(config.hash);
  if (config.format === 'PAdES') {
    if (!kept || !kept.prepared) throw new Error('the prepared PDF is not in this browser any more (another tab signed since?): sign again');
    pdfStatus.textContent = 'Putting the signature into the PDF…';
    const pdf = await import('/esig-pdf.js');
    const signed = await pdf.embedPdf(kept.prepared, config.response);
    link('download-pdf', new Blob([signed], { type: 'application/pdf' }), config.signedName, 'Download signed PDF');
    $('download-pdf').dataset.size = String(signed.length);
    pdfStatus.textContent = 'The signed PDF is ready (' + signed.length + ' bytes).';
    pdfStatus.dataset.ok = 'true';
  } else if (kept) {
    link('download-doc', kept.document, kept.fileName, 'Download the document (' + kept.fileName + ')');
    if (config.format === 'ASIC') {
      // The same Rust code as \`esig asice build\` (WebAssembly, the zip crate).
      const pdf = await import('/esig-pdf.js');
      const container = await pdf.buildAsice([{ name: kept.fileName, mediaType: kept.type,
        bytes: new Uint8Array(await kept.document.arrayBuffer()) }], config.response);
      link('download-container', new Blob([container], { type: 'application/vnd.etsi.asic-e+zip' }),
        config.containerName, 'Download the signed container (' + config.containerName + ')');
      $('container-status').textContent = 'The container is ready (' + container.length + ' bytes).';
      $('container-status').dataset.ok = 'true';
    }
  } else if (config.format === 'ASIC') {
    throw new Error('the document is not in this browser any more (another tab signed since?): sign again');
  }
} catch (e) {
  const status = pdfStatus || $('container-status');
  if (status) {
    status.dataset.ok = 'false';
    status.className = 'bad';
    status.textContent = (pdfStatus ? 'Could not make the signed PDF: ' : 'Could not make the container: ') + e.message;
  }
}
document.body.dataset.ready = 'true';
`;

/** `contract.pdf` -> `contract-signed.pdf`. */
const signedPdfName = (name) => `${name.replace(/\.pdf$/i, '')}-signed.pdf`;
/** `lease.txt` -> `lease.asice`. */
const containerName = (name) => `${name.replace(/(.)\.[^.]*$/, '$1')}.asice`;

/** The checks the back end makes of a response: {ok, problems, hashMatches, madeAt, timestamped, ...}. */
function checkResponse(resp, s) {
  if (CMS_FORMATS.includes(s.format)) {
    const check = verifyBasic(resp, { hash: s.hash, hashType: s.hashType });
    return { ...check, madeAt: check.timestampedAt ?? check.signedAt };
  }
  const problems = [];
  let d = null;
  try { d = decodeSignature(resp, s.format, s.fileName); } catch (e) { problems.push(e.message); }
  const hashMatches = Boolean(d) && d.digests.length === 1 && d.digests[0] === s.hash;
  if (d && !hashMatches) problems.push(`the ${s.format} signature covers ${d.digests.length} digest(s), not this document's`);
  if (d && hashMatches && (d.names || [])[0] !== s.fileName) problems.push(`the signature names the document ${JSON.stringify((d.names || [])[0])}`);
  const timestamped = typeof resp.signatureTimestamp === 'string' && resp.signatureTimestamp.length > 0;
  if (!timestamped) problems.push('no signatureTimestamp in the response');
  if (!resp.status || resp.status.code !== 'OK') problems.push('status is not OK');
  return {
    ok: problems.length === 0, problems, hashMatches, signedAt: d ? d.signedAt : undefined, timestamped,
    madeAt: d ? d.signedAt : undefined,
  };
}

/** The file name the signature of a non-CMS session downloads as (`lease.txt.xml`, …). */
function decodeSignatureName(s) {
  try { return decodeSignature(s.response, s.format, s.fileName).fileName; } catch { return `${s.fileName}.sig`; }
}

function renderResult(res, opts, s) {
  const resp = s.response;
  const check = checkResponse(resp, s);
  const cms = CMS_FORMATS.includes(s.format);
  let cert = null;
  try { cert = new crypto.X509Certificate(resp.certificate); } catch { /* shown as "—" */ }
  const dn = (x) => (x ? x.split('\n').join(', ') : '—');
  const validFrom = cert ? new Date(cert.validFrom) : null;
  const validTo = cert ? new Date(cert.validTo) : null;
  // The one-time certificate is valid for about a minute: verify "as of" the signing time.
  const at = check.signedAt || check.timestampedAt || validFrom;
  const attime = at ? ` -attime ${Math.floor(at.getTime() / 1000)}` : '';
  const chain = `curl -s -o chain.pem ${shellQuote(`${opts.esigdPublic}/pki/chain.pem`)}`;
  const signedName = signedPdfName(s.fileName);
  const verifyCmd = {
    CAdES: [chain,
      `openssl cms -verify -binary -inform DER -in signature.p7s -content ${shellQuote(s.fileName)} \\`,
      `  -CAfile chain.pem -purpose any${attime} -out /dev/null`],
    PAdES: [chain, `pdfsig ${shellQuote(signedName)}`,
      `pyhanko sign validate --pretty-print --trust chain.pem --no-revocation-check ${shellQuote(signedName)}`],
    XAdES: [chain, `xmlsec1 --verify --trusted-pem chain.pem ${shellQuote(`${s.fileName}.xml`)}  # next to ${shellQuote(s.fileName)}`],
    ASIC: [chain, `digidoc-tool open ${shellQuote(containerName(s.fileName))}  # libdigidocpp; or unzip it and:`,
      'xmlsec1 --verify --trusted-pem chain.pem META-INF/signatures0.xml'],
    JWS: [chain, `# ${s.fileName}.json: a detached JAdES; sigD.hashV is the SHA-256 of ${shellQuote(s.fileName)}`,
      `openssl dgst -sha256 -binary ${shellQuote(s.fileName)} | basenc --base64url`],
  }[s.format].join('\n');
  const ts = check.timestamped
    ? `present (RFC 3161)${check.timestampedAt ? `, time-stamped at ${escapeHtml(isoOrDash(check.timestampedAt))}` : ''}`
    : 'missing';
  const sigFile = SIGNATURE_FILE[s.format];
  const sigName = s.format === 'CAdES' || s.format === 'PAdES' ? 'signature.p7s'
    : decodeSignatureName(s);
  const container = s.format === 'ASIC'
    ? `<p id="container-status" role="status">Building the ASiC-E container in this browser…</p>
<p><a id="download-container" hidden></a></p>
` : '';
  const downloads = s.format === 'PAdES'
    ? `<p id="pdf-status" role="status">Putting the signature into the PDF in this browser…</p>
<p><a id="download-pdf" hidden></a></p>
<p><a id="download" href="${sigFile}" download="${escapeHtml(sigName)}">Download the CMS alone (signature.p7s)</a></p>`
    : `${container}<p><a id="download" href="${sigFile}" download="${escapeHtml(sigName)}">Download ${escapeHtml(sigName)}</a></p>
<p><a id="download-doc" hidden></a></p>`;

  sendHtml(res, opts, 200, 'Document signed', `
<h1>Document signed</h1>
<section id="result" data-ok="${check.ok}" data-format="${escapeHtml(s.format)}">
<dl>
  <dt>Document</dt><dd id="document">${escapeHtml(s.fileName)}</dd>
  <dt>Signature format</dt><dd id="format">${escapeHtml(s.format)}</dd>
  <dt>Digest (${escapeHtml(s.hashType)}, base64)${s.format === 'PAdES' ? ' of the prepared PDF\'s signed byte ranges' : ''}</dt><dd id="doc-hash">${escapeHtml(s.hash)}</dd>
  <dt>Signer</dt><dd id="subject">${escapeHtml(dn(cert && cert.subject))}</dd>
  <dt>Certificate issuer</dt><dd id="issuer">${escapeHtml(dn(cert && cert.issuer))}</dd>
  <dt>Certificate valid</dt><dd id="validity"><span id="valid-from">${escapeHtml(isoOrDash(validFrom))}</span>
    to <span id="valid-to">${escapeHtml(isoOrDash(validTo))}</span></dd>
  <dt>Signing time</dt><dd id="signed-at">${s.format === 'PAdES' && !check.signedAt
    ? 'claimed in the PDF (/M); see the time-stamp' : escapeHtml(isoOrDash(check.signedAt))}</dd>
  <dt>Time-stamp</dt><dd id="timestamp" data-present="${check.timestamped}">${ts}</dd>
  <dt>Signature id</dt><dd id="signature-id">${escapeHtml(s.signatureId)}</dd>
</dl>
${downloads}
</section>
<h2>Checks</h2>
<p id="server-check" data-ok="${check.ok}" class="${check.ok ? 'good' : 'bad'}">${check.ok
    ? `esig.js ${cms ? 'verifyBasic' : 'decodeSignature'} on the e-Service back end: OK`
    : `esig.js ${cms ? 'verifyBasic' : 'decodeSignature'} on the e-Service back end found problems: ${escapeHtml(check.problems.join('; '))}`}</p>
<p id="verify" role="status">Checking in the browser…</p>
<p>These are sanity checks, not a cryptographic verification. Verify with:</p>
<pre id="openssl">${escapeHtml(verifyCmd)}</pre>
<p><a id="again" href="/">Sign another document</a></p>`, RESULT_SCRIPT, {
    esigJs: opts.esigJs, response: resp, hash: s.hash, hashType: s.hashType, format: s.format,
    fileName: s.fileName, signedName, containerName: containerName(s.fileName),
  });
}

// ---------------------------------------------------------------------------------------------
// handlers

function sessionOf(req, sessions) {
  const id = cookies(req)[SESSION_COOKIE];
  const s = id && sessions.get(id);
  if (!s || Date.now() - s.created > SESSION_TTL_MS) return null;
  return s;
}

/** The origin the user's browser sees us at: the session cookie only works on that host. */
function ownOrigin(req, opts, port) {
  const host = req.headers.host;
  const allowed = [`127.0.0.1:${port}`, `localhost:${port}`];
  return `http://${allowed.includes(host) ? host : allowed[0]}`;
}

async function handleStart(req, res, opts, sessions, port) {
  const origin = ownOrigin(req, opts, port);
  // CSRF: only our own page may start a session (JSON content type forces a CORS preflight cross-site).
  if (req.headers.origin && req.headers.origin !== origin) return sendJson(res, 403, { error: 'bad origin' });
  if (!/^application\/json\b/.test(req.headers['content-type'] || '')) return sendJson(res, 415, { error: 'expected application/json' });
  let body;
  try { body = JSON.parse(await readBody(req, 4096)); } catch (e) { return sendJson(res, e.status || 400, { error: 'bad JSON body' }); }
  const { hash, hashType, fileName, format = 'CAdES', mediaType = 'application/octet-stream' } = body || {};
  if (typeof format !== 'string' || !FORMATS.includes(format)) return sendJson(res, 400, { error: `format must be one of ${FORMATS.join(', ')}` });
  if (format === 'PAdES' && hashType !== 'SHA2-256') return sendJson(res, 400, { error: 'PAdES: hashType must be SHA2-256' });
  if (typeof mediaType !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(mediaType) || mediaType.includes('|')) {
    return sendJson(res, 400, { error: 'mediaType must be 1 to 255 visible ASCII characters without |' });
  }
  if (typeof hashType !== 'string' || !Object.hasOwn(HASH_LENGTH, hashType)) return sendJson(res, 400, { error: 'hashType must be SHA2-256, SHA2-384 or SHA2-512' });
  if (typeof hash !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(hash)
    || Buffer.from(hash, 'base64').length !== HASH_LENGTH[hashType]) {
    return sendJson(res, 400, { error: `hash must be the base64 of a ${hashType} digest` });
  }
  // A plain file name that XAdES, ASiC-E and JAdES accept as a relative reference: no path, no
  // scheme, not a name an ASiC-E container reserves.
  let name = typeof fileName === 'string' ? [...fileName.replace(/[\u0000-\u001f\u007f-\u009f/\\:]/g, '_')].slice(0, 200).join('') : '';
  if (/^\.+$/.test(name)) name = name.replace(/\./g, '_');
  if (format === 'ASIC' && /^(mimetype|meta-inf)$/i.test(name)) name = `_${name}`;
  if (!name) return sendJson(res, 400, { error: 'fileName is required' });

  // Expire old sessions and replace any previous one of this browser.
  for (const [k, v] of sessions) if (Date.now() - v.created > SESSION_TTL_MS) sessions.delete(k);
  const old = cookies(req)[SESSION_COOKIE];
  if (old) sessions.delete(old);
  if (sessions.size >= MAX_SESSIONS) return sendJson(res, 503, { error: 'too many sessions' });

  const id = crypto.randomBytes(32).toString('base64url');
  const s = {
    created: Date.now(), hash, hashType, fileName: name, format, mediaType,
    // GovStack describes state and nonce as hex strings.
    state: crypto.randomBytes(32).toString('hex'),
    nonce: crypto.randomBytes(32).toString('hex'),
    callbackUrl: `${origin}/callback`,
    signatureId: null, response: null,
  };
  sessions.set(id, s);
  // HttpOnly: scripts cannot read it. SameSite=Lax: still sent on the top-level GET navigation
  // back from esigd to /callback. Add `Secure` when serving over HTTPS.
  res.setHeader('set-cookie', `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${SESSION_TTL_MS / 1000}`);
  sendJson(res, 200, {
    serviceId: opts.serviceId, state: s.state, nonce: s.nonce, callbackUrl: s.callbackUrl,
    dataToBeDisplayed: truncateChars(`Demo e-Service: sign "${name}"`, 256), hash, hashType, format, fileName: name,
    // XAdES, ASiC-E and JAdES name the document: the browser sends it as a `doc` parameter.
    ...(CMS_FORMATS.includes(format) ? {} : { documents: [{ name, mediaType, hash }] }),
  });
}

async function handleCallback(req, res, opts, sessions, used, url) {
  const s = sessionOf(req, sessions);
  if (!s) return sendError(res, opts, 400, 'no_session', 'No signing session in this browser (expired, or cookies are blocked). Start again.');
  const q = url.searchParams;
  // The state proves that this callback answers the request this browser started (CSRF); the
  // nonce is echoed too and must match.
  if (!safeEqual(q.get('state'), s.state) || !safeEqual(q.get('nonce'), s.nonce)) {
    return sendError(res, opts, 400, 'state_mismatch', 'The callback does not belong to the signing session of this browser.');
  }
  let cb;
  try { cb = parseCallback(q); } catch (e) { return sendError(res, opts, 400, 'bad_callback', e.message); }
  if (cb.error) {
    const text = {
      access_denied: 'You cancelled the signing.', login_failed: 'Login with the National ID failed.',
      signing_failed: 'The eSignature service could not create the signature.',
      payment_required: 'Payment is required.',
    }[cb.error] || 'The eSignature service reported an error.';
    return sendError(res, opts, 200, cb.error, `${text} ${cb.errorDescription}`.trim());
  }
  // Re-display on reload; a session accepts one signature only.
  if (s.signatureId) {
    if (s.signatureId === cb.signatureId && s.response) return renderResult(res, opts, s);
    return sendError(res, opts, 400, 'already_completed', 'This signing session already completed.');
  }
  let resp;
  try {
    resp = await fetchSignature(opts, cb.signatureId);
  } catch (e) {
    console.error(`esigd fetch failed: ${e.message}`);
    return sendError(res, opts, 502, 'esigd_unreachable', `Could not fetch the signature from esigd: ${e.message}`);
  }
  if (!resp || !resp.status || resp.status.code !== 'OK') {
    return sendError(res, opts, 502, 'signing_failed', `esigd status: ${resp && resp.status ? `${resp.status.code} ${resp.status.message || ''}` : 'missing'}`);
  }
  // The signature must be over the digest this session asked for, whatever else is wrong with it.
  const check = checkResponse(resp, s);
  if (!check.hashMatches) {
    return sendError(res, opts, 502, 'wrong_signature', `The signature is not over this document: ${check.problems.join('; ')}`);
  }
  // state and nonce bind the callback to this browser, not the signatureId next to them: a
  // signature ID seen elsewhere (history, logs) must not become this session's result. It must
  // be new to this e-Service and made after this session started. (A real e-Service also
  // compares the certificate's subject with the user it has logged in.)
  if (used.has(cb.signatureId)) {
    return sendError(res, opts, 400, 'signature_reused', 'This signature was already taken by another signing session.');
  }
  const { madeAt } = check;
  if (!madeAt || madeAt.getTime() < s.created - CLOCK_SKEW_MS) {
    return sendError(res, opts, 400, 'signature_too_old', 'This signature was made before this signing session started.');
  }
  used.set(cb.signatureId, Date.now());
  s.signatureId = cb.signatureId;
  s.response = resp;
  renderResult(res, opts, s);
}

// The WebAssembly PAdES client: web/assets/esig-pdf.js at /esig-pdf.js and the module it loads
// (./pdf/ next to it) from the output of scripts/build-wasm.sh ($ESIG_WASM_OUT or web/assets/pdf/;
// generated, so not in esigd's binary). A page using it needs 'wasm-unsafe-eval' in script-src.
const PDF_ASSETS = {
  '/esig-pdf.js': ['esig-pdf.js', 'text/javascript; charset=utf-8'],
  '/pdf/esig_wasm.js': ['esig_wasm.js', 'text/javascript; charset=utf-8'],
  '/pdf/esig_wasm_bg.wasm': ['esig_wasm_bg.wasm', 'application/wasm'],
};

function servePdfAsset(res, opts, pathname) {
  const [name, type] = PDF_ASSETS[pathname];
  const assets = path.join(HERE, '..', '..', 'web', 'assets');
  const out = opts.wasmDir || process.env.ESIG_WASM_OUT || path.join(assets, 'pdf');
  const file = name === 'esig-pdf.js' ? path.join(assets, name) : path.resolve(HERE, '..', '..', out, name);
  let body;
  try { body = fs.readFileSync(file); } catch {
    return sendJson(res, 404, { error: `${name} is not built: run scripts/build-wasm.sh` });
  }
  res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  return res.end(body);
}

function sendJson(res, status, obj) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(JSON.stringify(obj));
}

// ---------------------------------------------------------------------------------------------
// server

export function createServer(opts) {
  const sessions = new Map();
  // Signature IDs taken by a session (id -> when), kept as long as a session can live.
  const used = new Map();
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [k, v] of sessions) if (now - v.created > SESSION_TTL_MS) sessions.delete(k);
    for (const [k, at] of used) if (now - at > 2 * SESSION_TTL_MS) used.delete(k);
  }, 60_000);
  sweep.unref();
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    const port = server.address().port;
    try {
      if (req.method === 'GET' && url.pathname === '/') return serveIndex(req, res, opts);
      if (req.method === 'POST' && url.pathname === '/start') return await handleStart(req, res, opts, sessions, port);
      if (req.method === 'GET' && url.pathname === '/callback') return await handleCallback(req, res, opts, sessions, used, url);
      if (req.method === 'GET' && Object.values(SIGNATURE_FILE).includes(url.pathname)) {
        const s = sessionOf(req, sessions);
        if (!s || !s.response || SIGNATURE_FILE[s.format] !== url.pathname) {
          return sendJson(res, 404, { error: 'no such signature in this session' });
        }
        const d = decodeSignature(s.response, s.format, s.fileName);
        const fileName = CMS_FORMATS.includes(s.format) ? 'signature.p7s' : d.fileName;
        res.writeHead(200, {
          'content-type': d.mediaType,
          'content-disposition': `attachment; filename="${fileName.replace(/[^\x20-\x7e]|["\\]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(fileName)}`,
          'cache-control': 'no-store', 'x-content-type-options': 'nosniff',
        });
        return res.end(CMS_FORMATS.includes(s.format) ? Buffer.from(toP7s(s.response)) : Buffer.from(d.bytes));
      }
      if (req.method === 'GET' && url.pathname === '/keep.js') {
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
        return res.end(fs.readFileSync(path.join(HERE, url.pathname.slice(1))));
      }
      if (req.method === 'GET' && url.pathname === '/favicon.ico') { res.writeHead(204); return res.end(); }
      if (req.method === 'GET' && Object.hasOwn(PDF_ASSETS, url.pathname)) return servePdfAsset(res, opts, url.pathname);
      sendJson(res, 404, { error: 'not found' });
    } catch (e) {
      console.error(e);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    }
  });
  server.on('close', () => clearInterval(sweep));
  return server;
}

function main() {
  let opts;
  try { opts = parseArgs(process.argv.slice(2)); } catch (e) {
    console.error(`server.mjs: ${e.message}`);
    process.exit(2);
  }
  for (const f of Object.values(opts.tls)) {
    if (!fs.existsSync(f)) console.error(`warning: ${f} does not exist yet (start esigd serve with --data ${opts.data})`);
  }
  const server = createServer(opts);
  server.listen(opts.port, opts.host, () => {
    const { port } = server.address();
    const host = ['0.0.0.0', '::'].includes(opts.host) ? '127.0.0.1' : opts.host;
    console.log(JSON.stringify({ url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`, ready: true }));
    console.error(`e-Service example: esig.js from ${opts.esigJs}, signatures from ${opts.esigdApi} as service "${opts.serviceId}"`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
