// esig-pdf.js: PAdES signatures with esigd, prepared and embedded in the browser.
//
// An ES module with no dependencies but the WebAssembly build of esig's PAdES code
// (client-wasm/, built by scripts/build-wasm.sh into ./pdf/esig_wasm.js and
// ./pdf/esig_wasm_bg.wasm next to this file). It runs in browsers and in Node.js >= 20. The PDF
// never leaves the page: only its digest goes to esigd.
//
//   1. `preparePdf(file, {reason, location})` -> {prepared, digest, hashType}: the PDF with an
//      empty signature appended as an incremental update, and the SHA-256 of its /ByteRange.
//      Keep `prepared` as it is (memory, IndexedDB) until step 3.
//   2. sign `digest` with esigd (esig.js `signUrl({hash: digest, hashType, format: 'PAdES', ...})`).
//   3. `embedPdf(prepared, response)` -> the signed PDF, with `response` the
//      `GET /v1/sign/response/{signatureId}` answer (or its base64 `signature`, or the DER bytes).
//
// And ASiC-E: `buildAsice(files, response)` -> the `.asice` container of the documents and the
// `META-INF/signatures0.xml` esigd returned for format ASIC (the same Rust code as `esig asice
// build`: the zip crate, and a check that the files are exactly the referenced ones).
//
// A page whose Content-Security-Policy has a script-src needs 'wasm-unsafe-eval' in it to
// instantiate the module.

/** Where the generated module is, unless `init({moduleUrl})` says otherwise. */
const DEFAULT_MODULE = new URL('./pdf/esig_wasm.js', import.meta.url);

let loading = null;

/**
 * Loads and instantiates the WebAssembly module (once; later calls return the same promise).
 * `preparePdf` and `embedPdf` call it themselves, with the defaults.
 *
 * @param {object} [o]
 * @param {string|URL} [o.moduleUrl] the generated `esig_wasm.js` (default `./pdf/esig_wasm.js`
 *   next to this file)
 * @param {BufferSource|WebAssembly.Module|Response|string|URL} [o.wasm] the `.wasm` itself or
 *   where it is (default: `esig_wasm_bg.wasm` next to `moduleUrl`; read from disk in Node)
 * @returns {Promise<object>} the generated module (`pdfPrepare`, `pdfEmbed`)
 * @throws {Error} if the module cannot be loaded (not built: run scripts/build-wasm.sh)
 */
export function init({ moduleUrl = DEFAULT_MODULE, wasm } = {}) {
  if (!loading) {
    loading = load(moduleUrl, wasm).catch((e) => {
      loading = null;
      throw e;
    });
  }
  return loading;
}

async function load(moduleUrl, wasm) {
  const url = new URL(String(moduleUrl), import.meta.url);
  let mod;
  try {
    mod = await import(url.href);
  } catch (e) {
    throw new Error(`esig-pdf: cannot load the WebAssembly PDF module ${url.href} (built by scripts/build-wasm.sh): ${e.message}`);
  }
  let source = wasm;
  if (source === undefined && url.protocol === 'file:') {
    // Node: fetch() does not read file: URLs.
    const { readFile } = await import('node:fs/promises');
    source = await readFile(new URL('esig_wasm_bg.wasm', url));
  }
  await mod.default(source === undefined ? undefined : { module_or_path: source });
  return mod;
}

/** The bytes of a File/Blob, ArrayBuffer or typed array (a view, not a copy, where possible). */
async function toBytes(input, what) {
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (input && typeof input.arrayBuffer === 'function') return new Uint8Array(await input.arrayBuffer());
  throw new TypeError(`${what}: expected a File, Blob, ArrayBuffer or Uint8Array`);
}

/** Standard base64 or base64url (padding and whitespace optional) to bytes. */
function fromBase64(text, what) {
  const s = text.replace(/\s+/g, '').replace(/-/g, '+').replace(/_/g, '/');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.replace(/=+$/, '').length % 4 === 1) {
    throw new Error(`${what}: not base64`);
  }
  const bin = atob(s.replace(/=+$/, '') + '='.repeat((4 - (s.replace(/=+$/, '').length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Appends an empty PAdES signature (an invisible signature field on the first page) to a PDF as
 * an incremental update; the original bytes stay a prefix of `prepared`.
 *
 * @param {File|Blob|ArrayBuffer|Uint8Array} pdf the PDF (not encrypted)
 * @param {object} [o]
 * @param {string} [o.fieldName] the signature field's name (default: the first free SignatureN)
 * @param {string} [o.reason] `/Reason`
 * @param {string} [o.location] `/Location`
 * @param {Date|number} [o.signingTime] the claimed signing time written as `/M` (default now)
 * @param {number} [o.reserve] bytes reserved for the CMS (default 16384; 1024..1048576)
 * @returns {Promise<{prepared: Uint8Array, digest: string, hashType: string, byteRange: number[],
 *   fieldName: string}>} `digest` is the standard base64 SHA-256 of the /ByteRange, what esigd
 *   signs (`hash`, with `hashType` 'SHA2-256')
 * @throws {Error} with esig's message: not a PDF, encrypted, damaged, certified with no changes
 *   allowed, a prepared signature never filled, a taken field name, …
 */
export async function preparePdf(pdf, { fieldName, reason, location, signingTime = Date.now(), reserve } = {}) {
  const m = await init();
  const bytes = await toBytes(pdf, 'preparePdf');
  const time = signingTime instanceof Date ? signingTime.getTime() : signingTime;
  const r = m.pdfPrepare(bytes, { fieldName, reason, location, signingTime: time, reserve });
  return { prepared: r.prepared, digest: r.digest, hashType: 'SHA2-256', byteRange: r.byteRange, fieldName: r.fieldName };
}

/**
 * Embeds the CMS that esigd returned into the placeholder of `prepared` (same length; only the
 * /Contents hex changes). Checks first that the CMS fits and carries the digest of `prepared`.
 *
 * @param {Uint8Array|ArrayBuffer|Blob} prepared exactly the bytes `preparePdf` returned
 * @param {object|string|Uint8Array|ArrayBuffer} signature the esigd response (its `signature`
 *   is the base64 CMS), that base64 string, or the DER bytes
 * @returns {Promise<Uint8Array>} the signed PDF
 * @throws {Error} with esig's message (wrong digest, too big for the reserve, already signed, …)
 */
export async function embedPdf(prepared, signature) {
  const m = await init();
  const bytes = await toBytes(prepared, 'embedPdf');
  let der;
  if (typeof signature === 'string') der = fromBase64(signature, 'embedPdf: signature');
  else if (signature instanceof Uint8Array || signature instanceof ArrayBuffer || ArrayBuffer.isView(signature)) {
    der = await toBytes(signature, 'embedPdf');
  } else if (signature && typeof signature.signature === 'string') {
    der = fromBase64(signature.signature, 'embedPdf: response.signature');
  } else {
    throw new TypeError('embedPdf: expected the esigd response, its base64 signature, or the DER CMS');
  }
  return m.pdfEmbed(bytes, der);
}

/**
 * The ASiC-E container (EN 319 162-1) of `files` and the XAdES `signatures0.xml` esigd returned
 * for format `ASIC`.
 *
 * @param {Array<{name: string, mediaType?: string, bytes: Uint8Array|ArrayBuffer|Blob}>} files
 *   the documents under the names they were signed with
 * @param {object|string|Uint8Array} signature the esigd response (its `signature` is base64 of
 *   the XML), that base64 string, or the XML bytes
 * @param {{time?: number}} [o] the entries' modification time (ms since 1970; default now)
 * @returns {Promise<Uint8Array>} the `.asice` file
 * @throws {Error} with esig's message (a file not referenced, a changed file, a reserved name, …)
 */
export async function buildAsice(files, signature, { time = Date.now() } = {}) {
  const m = await init();
  let xml;
  if (typeof signature === 'string') xml = fromBase64(signature, 'buildAsice: signature');
  else if (signature instanceof Uint8Array) xml = signature;
  else if (signature && typeof signature.signature === 'string') {
    xml = fromBase64(signature.signature, 'buildAsice: response.signature');
  } else {
    throw new TypeError('buildAsice: expected the esigd response, its base64 signature, or the XML bytes');
  }
  const read = [];
  for (const f of files) {
    read.push({ name: f.name, mediaType: f.mediaType || '', bytes: await toBytes(f.bytes, 'buildAsice') });
  }
  return m.asiceBuild(xml, read, time);
}
