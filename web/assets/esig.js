// esig.js: client library of the esigd eSignature Building Block (GovStack workflow 9.1).
//
// An ES module with no dependencies. It runs in browsers (served by esigd at
// `/v1/client/esig.js`) and in Node.js >= 20 (globalThis.crypto, atob/btoa, Blob).
//
// The e-Service flow it supports:
//   1. `digest(file)`                  : hash the document in the browser; the document never leaves it.
//   2. `signUrl({...})`                : build the esigd interactive signing URL and redirect the user to it.
//   3. `parseCallback(location.search)`: read `signatureId` (or `error`) when esigd sends the user back.
//   4. the e-Service back end fetches `GET /v1/sign/response/{signatureId}` over mutual TLS.
//   5. `toP7s(response)` / `verifyBasic(response, {hash, hashType})`: get the detached CMS
//      signature (.p7s) and sanity-check it; `decodeSignature(response, format)` for every format
//      (bytes for CMS, text for XML and JSON, the digests it covers, a file name to save it as).

/** GovStack hash type names that WebCrypto can compute, mapped to WebCrypto names. */
const WEBCRYPTO_HASH = { 'SHA2-256': 'SHA-256', 'SHA2-384': 'SHA-384', 'SHA2-512': 'SHA-512' };

/** Digest length in bytes of every hash type this esigd signs (the GovStack SHA3-* and BLAKE2B
 * types are refused by esigd: its signature algorithms are ECDSA with SHA-2). */
const HASH_LENGTH = { 'SHA2-256': 32, 'SHA2-384': 48, 'SHA2-512': 64 };

/** Digest algorithm OIDs (NIST) to GovStack hash type names. */
const DIGEST_OID = {
  '2.16.840.1.101.3.4.2.1': 'SHA2-256', '2.16.840.1.101.3.4.2.2': 'SHA2-384',
  '2.16.840.1.101.3.4.2.3': 'SHA2-512', '2.16.840.1.101.3.4.2.8': 'SHA3-256',
  '2.16.840.1.101.3.4.2.9': 'SHA3-384', '2.16.840.1.101.3.4.2.10': 'SHA3-512',
};

/** Signature formats esigd makes (the GovStack names). What `signature` of the response is:
 * CAdES and PAdES the DER CMS (PAdES: to embed into the prepared PDF, see esig-pdf.js), XAdES the
 * detached XML signature, ASIC the `META-INF/signatures0.xml` of an ASiC-E container, JWS the
 * detached JAdES in the JSON serialization. */
export const FORMATS = Object.freeze(['CAdES', 'PAdES', 'XAdES', 'ASIC', 'JWS']);
/** esigd's limits on the `doc` parameters of a redirect (see its OpenAPI document). */
const MAX_DOCUMENTS = 64;
const MAX_DOCUMENT_NAME_CHARS = 255;
const MAX_REDIRECT_DOCUMENTS_BYTES = 8192;
/** esigd's limits on what it echoes and keeps (see its OpenAPI document). */
const MAX_ECHO = 512;
const MAX_CALLBACK_URL = 2048;
const RESERVED_CALLBACK_PARAMS = ['signatureId', 'error', 'error_description', 'state', 'nonce'];
const MAX_DISPLAY_CHARS = 256; // GovStack DisplayData: "Limited to 256 characters."

const OID = {
  signedData: '1.2.840.113549.1.7.2',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  signingCertificate: '1.2.840.113549.1.9.16.2.12',
  signingCertificateV2: '1.2.840.113549.1.9.16.2.47',
  signatureTimeStamp: '1.2.840.113549.1.9.16.2.14',
  tstInfo: '1.2.840.113549.1.9.16.1.4',
};

// ---------------------------------------------------------------------------------------------
// base64

/**
 * Encodes bytes as standard base64 (with padding).
 * @param {ArrayBuffer|ArrayBufferView} bytes
 * @returns {string}
 */
export function toBase64(bytes) {
  const u8 = toBytes(bytes);
  let bin = '';
  // Chunked so that String.fromCharCode never receives more arguments than the engine allows.
  for (let i = 0; i < u8.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/**
 * Decodes standard base64 or base64url, with or without padding; whitespace (as in PEM bodies
 * or JSON with `\r\n`) is ignored.
 * @param {string} text
 * @returns {Uint8Array}
 * @throws {Error} if `text` is not a string or not valid base64
 */
export function fromBase64(text) {
  if (typeof text !== 'string') throw new Error('base64: expected a string');
  let s = text.replace(/\s+/g, '').replace(/-/g, '+').replace(/_/g, '/');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.replace(/=+$/, '').length % 4 === 1) {
    throw new Error('base64: invalid characters or length');
  }
  s = s.replace(/=+$/, '');
  s += '='.repeat((4 - (s.length % 4)) % 4);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * A random token for `state` and `nonce`: `bytes` bytes from crypto.getRandomValues, base64url
 * without padding (16 bytes -> 22 characters).
 * @param {number} [bytes=16]
 * @returns {string}
 */
export function randomToken(bytes = 16) {
  if (!Number.isInteger(bytes) || bytes < 8 || bytes > 1024) {
    throw new Error('randomToken: bytes must be an integer between 8 and 1024');
  }
  const u8 = globalThis.crypto.getRandomValues(new Uint8Array(bytes));
  return toBase64(u8).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function toBytes(x) {
  if (x instanceof Uint8Array) return x;
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  throw new Error('expected an ArrayBuffer or a TypedArray');
}

// ---------------------------------------------------------------------------------------------
// digest

/**
 * Hashes a document with WebCrypto: SHA2-256, SHA2-384 or SHA2-512 (the hash types esigd signs).
 *
 * In browsers WebCrypto exists only in secure contexts: pages served over HTTPS or from
 * `localhost` / `127.0.0.1`.
 *
 * @param {Blob|File|ArrayBuffer|ArrayBufferView|string} fileOrBuffer the document; a string is
 *   hashed as its UTF-8 encoding
 * @param {'SHA2-256'|'SHA2-384'|'SHA2-512'} [hashType='SHA2-256']
 * @returns {Promise<{hash: string, hashType: string, bytes: Uint8Array}>} `hash` is the standard
 *   base64 of the digest, `bytes` the digest itself
 */
export async function digest(fileOrBuffer, hashType = 'SHA2-256') {
  const algo = typeof hashType === 'string' && Object.hasOwn(WEBCRYPTO_HASH, hashType) ? WEBCRYPTO_HASH[hashType] : null;
  if (!algo) {
    throw new Error(`digest: unsupported hashType ${JSON.stringify(hashType)}; supported: `
      + `${Object.keys(WEBCRYPTO_HASH).join(', ')}`);
  }
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) {
    throw new Error('digest: WebCrypto (crypto.subtle) is unavailable; serve the page over HTTPS or from localhost');
  }
  let data;
  if (typeof fileOrBuffer === 'string') data = new TextEncoder().encode(fileOrBuffer);
  else if (typeof Blob !== 'undefined' && fileOrBuffer instanceof Blob) data = new Uint8Array(await fileOrBuffer.arrayBuffer());
  else if (fileOrBuffer instanceof ArrayBuffer || ArrayBuffer.isView(fileOrBuffer)) data = toBytes(fileOrBuffer);
  else throw new Error('digest: expected a Blob/File, ArrayBuffer, TypedArray or string');
  const bytes = new Uint8Array(await subtle.digest(algo, data));
  return { hash: toBase64(bytes), hashType, bytes };
}

// ---------------------------------------------------------------------------------------------
// signUrl / parseCallback

function requireString(name, v) {
  if (typeof v !== 'string' || v.length === 0) throw new Error(`signUrl: ${name} is required (non-empty string)`);
  return v;
}

function requireHttpUrl(name, v) {
  requireString(name, v);
  let u;
  try { u = new URL(v); } catch { throw new Error(`signUrl: ${name} is not an absolute URL`); }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error(`signUrl: ${name} must be http(s)`);
  return u;
}

/** Standard padded base64 of a `hashType` digest; throws naming `field` otherwise. */
function checkHash(field, hash, hashType) {
  // Standard base64, padded: what digest() returns and what esigd reads without guessing.
  if (typeof hash !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(hash) || hash.length % 4 !== 0) {
    throw new Error(`signUrl: ${field} must be standard base64 with padding`);
  }
  let digestBytes;
  try { digestBytes = fromBase64(hash); } catch { throw new Error(`signUrl: ${field} must be standard base64`); }
  if (digestBytes.length !== HASH_LENGTH[hashType]) {
    throw new Error(`signUrl: ${field} is ${digestBytes.length} bytes, ${hashType} needs ${HASH_LENGTH[hashType]}`);
  }
}

/** The `doc` values (`name|mediaType|hash`) of `documents`, checked as esigd checks them. */
function documentValues(documents, hashType) {
  if (!Array.isArray(documents) || documents.length === 0 || documents.length > MAX_DOCUMENTS) {
    throw new Error(`signUrl: documents must be an array of 1 to ${MAX_DOCUMENTS} documents`);
  }
  const names = new Set();
  const values = documents.map((d, i) => {
    const field = `documents[${i}]`;
    if (!d || typeof d !== 'object') throw new Error(`signUrl: ${field} must be {name, mediaType, hash}`);
    const { name, mediaType = 'application/octet-stream', hash } = d;
    for (const [k, v] of [['name', name], ['mediaType', mediaType]]) {
      if (typeof v !== 'string' || v.length === 0 || [...v].length > MAX_DOCUMENT_NAME_CHARS) {
        throw new Error(`signUrl: ${field}.${k} must have 1 to ${MAX_DOCUMENT_NAME_CHARS} characters`);
      }
      if (/[\u0000-\u001f\u007f-\u009f]/.test(v)) throw new Error(`signUrl: ${field}.${k} contains control characters`);
    }
    // esigd splits the value at its last two '|': a name may contain one, a media type not.
    if (mediaType.includes('|')) throw new Error(`signUrl: ${field}.mediaType must not contain |`);
    if (names.has(name)) throw new Error(`signUrl: ${field}.name ${JSON.stringify(name)} is there twice`);
    names.add(name);
    checkHash(`${field}.hash`, hash, hashType);
    return `${name}|${mediaType}|${hash}`;
  });
  const bytes = values.reduce((n, v) => n + new TextEncoder().encode(v).length, 0);
  if (bytes > MAX_REDIRECT_DOCUMENTS_BYTES) {
    throw new Error(`signUrl: documents take ${bytes} bytes as doc parameters, at most ${MAX_REDIRECT_DOCUMENTS_BYTES}; `
      + 'send many documents through the API (POST /v1/sign/onetime)');
  }
  return values;
}

/**
 * Builds the esigd interactive signing URL (`{base}/v1/sign/interactive?...`) to redirect the user
 * to. All fields are validated; nothing is generated: make `state` and `nonce` with
 * {@link randomToken} (or server-side) and keep them to check the callback.
 *
 * @param {object} p
 * @param {string} p.base esigd public base URL, e.g. `http://127.0.0.1:8080` (may carry a path prefix)
 * @param {string} p.serviceId the e-Service id registered in esigd
 * The rules are esigd's own, so a URL this returns is not refused by esigd for its form (only for
 * what esigd alone knows: the registered e-Service and callback prefixes, a payment).
 *
 * @param {string} [p.hash] standard base64 of the digest (padded, as {@link digest} returns it); its
 *   length must match `hashType`. esigd names this one document `document`.
 * @param {Array<{name: string, mediaType?: string, hash: string}>} [p.documents] instead of `hash`:
 *   the documents by name, media type (default application/octet-stream) and digest, one `doc`
 *   parameter `name|mediaType|hash` each (for XAdES, ASIC and JWS, whose signature names the
 *   documents; CAdES and PAdES sign one). At most 64, 8192 bytes of `doc` values in all; names and
 *   media types 1 to 255 characters without control characters, media types without `|`.
 * @param {string} p.hashType SHA2-256|SHA2-384|SHA2-512
 * @param {string} [p.format='CAdES'] one of {@link FORMATS}: CAdES, PAdES, XAdES, ASIC, JWS
 * @param {string} p.dataToBeDisplayed text shown to the signer, at most 256 characters (code points),
 *   no control characters but tab and line breaks; sent base64url-encoded (UTF-8), as the GovStack
 *   API has it (esigd takes only that form)
 * @param {string} p.callbackUrl absolute http(s) URL, at most 2048 bytes (UTF-8); must match a prefix
 *   registered for `serviceId`; its query must not have signatureId, error, error_description,
 *   state or nonce (esigd adds them)
 * @param {string} p.state opaque value echoed back on the callback (CSRF protection): 1 to 512
 *   visible ASCII characters, e.g. {@link randomToken}
 * @param {string} p.nonce opaque value echoed back on the callback (replay protection): as `state`
 * @param {string|Date} [p.requestTimestamp=new Date().toISOString()] ISO 8601 UTC (`...Z`)
 * @param {string} [p.paymentToken] when the esigd deployment requires payment
 * @returns {string} the URL
 * @throws {Error} naming the first invalid field
 */
export function signUrl({
  base, serviceId, hash, documents, hashType, format = 'CAdES', dataToBeDisplayed, callbackUrl, state, nonce,
  requestTimestamp = new Date().toISOString(), paymentToken,
} = {}) {
  const baseUrl = requireHttpUrl('base', base);
  requireString('serviceId', serviceId);
  requireString('hashType', hashType);
  if (!Object.hasOwn(HASH_LENGTH, hashType)) {
    throw new Error(`signUrl: unsupported hashType ${JSON.stringify(hashType)}; one of ${Object.keys(HASH_LENGTH).join(', ')}`);
  }
  let docValues = null;
  if (documents !== undefined && documents !== null) {
    if (hash !== undefined && hash !== null) throw new Error('signUrl: give either hash or documents, not both');
    docValues = documentValues(documents, hashType);
  } else {
    requireString('hash', hash);
    checkHash('hash', hash, hashType);
  }
  if (typeof format !== 'string' || !FORMATS.includes(format)) throw new Error(`signUrl: format must be one of ${FORMATS.join(', ')}`);
  requireString('dataToBeDisplayed', dataToBeDisplayed);
  const chars = [...dataToBeDisplayed].length;
  if (chars > MAX_DISPLAY_CHARS) {
    throw new Error(`signUrl: dataToBeDisplayed is ${chars} characters, at most ${MAX_DISPLAY_CHARS} allowed`);
  }
  // esigd shows only text: control characters other than tab and line breaks are refused.
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(dataToBeDisplayed)) {
    throw new Error('signUrl: dataToBeDisplayed must be text: no control characters but tab and line breaks');
  }
  const callback = requireHttpUrl('callbackUrl', callbackUrl);
  // esigd counts UTF-8 bytes.
  if (new TextEncoder().encode(callbackUrl).length > MAX_CALLBACK_URL) {
    throw new Error(`signUrl: callbackUrl is longer than ${MAX_CALLBACK_URL} bytes (UTF-8)`);
  }
  for (const k of RESERVED_CALLBACK_PARAMS) {
    if (callback.searchParams.has(k)) throw new Error(`signUrl: callbackUrl must not have a ${k} parameter: esigd adds it`);
  }
  for (const [name, v] of [['state', state], ['nonce', nonce]]) {
    requireString(name, v);
    if (v.length > MAX_ECHO || !/^[\x21-\x7e]+$/.test(v)) {
      throw new Error(`signUrl: ${name} must be 1 to ${MAX_ECHO} visible ASCII characters`);
    }
  }
  const ts = requestTimestamp instanceof Date ? requestTimestamp.toISOString() : requestTimestamp;
  if (typeof ts !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/.test(ts) || Number.isNaN(Date.parse(ts))) {
    throw new Error('signUrl: requestTimestamp must be ISO 8601 UTC, e.g. 2024-01-31T12:00:00Z');
  }
  if (paymentToken !== undefined && paymentToken !== null) requireString('paymentToken', paymentToken);

  const display = toBase64(new TextEncoder().encode(dataToBeDisplayed))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const q = new URLSearchParams({ serviceId });
  if (docValues) for (const v of docValues) q.append('doc', v);
  else q.set('hash', hash);
  for (const [k, v] of Object.entries({
    hashType, format, dataToBeDisplayed: display, callbackUrl, state, nonce, requestTimestamp: ts,
  })) q.set(k, v);
  if (paymentToken) q.set('paymentToken', paymentToken);
  const path = baseUrl.pathname.replace(/\/+$/, '') + '/v1/sign/interactive';
  return `${baseUrl.origin}${path}?${q}`;
}

/**
 * Reads the query string esigd appends to the callback URL.
 *
 * @param {string|URL|URLSearchParams} urlOrSearch a full URL, `location.search` (`?a=b`) or `a=b`
 * @returns {{signatureId: string, state?: string, nonce?: string}
 *   | {error: string, errorDescription: string, state?: string, nonce?: string}}
 *   `error` is one of access_denied (user cancelled), login_failed, signing_failed,
 *   payment_required (other codes are passed through)
 * @throws {Error} if neither a valid signatureId (64 lowercase hex) nor an error is present, if
 *   both are (esigd never sends both), if `error` is empty, or if signatureId, error,
 *   error_description, state or nonce appears more than once (which value would count?).
 *   The caller must still compare `state` (and `nonce`) with the values it sent.
 */
export function parseCallback(urlOrSearch) {
  let q;
  if (urlOrSearch instanceof URLSearchParams) q = urlOrSearch;
  else if (urlOrSearch instanceof URL) q = urlOrSearch.searchParams;
  else if (typeof urlOrSearch === 'string') {
    q = /^[a-z][a-z0-9+.-]*:/i.test(urlOrSearch) ? new URL(urlOrSearch).searchParams : new URLSearchParams(urlOrSearch);
  } else throw new Error('parseCallback: expected a URL, URLSearchParams or query string');
  for (const k of RESERVED_CALLBACK_PARAMS) {
    if (q.getAll(k).length > 1) throw new Error(`parseCallback: ${k} appears more than once`);
  }
  const extra = {};
  if (q.has('state')) extra.state = q.get('state');
  if (q.has('nonce')) extra.nonce = q.get('nonce');
  const error = q.get('error');
  const signatureId = q.get('signatureId');
  if (error !== null && signatureId !== null) {
    throw new Error('parseCallback: both error and signatureId (esigd never sends both)');
  }
  if (error === '') throw new Error('parseCallback: error is empty');
  if (error !== null) return { error, errorDescription: q.get('error_description') || '', ...extra };
  if (signatureId === null) throw new Error('parseCallback: neither signatureId nor error in the callback');
  if (!/^[0-9a-f]{64}$/.test(signatureId)) throw new Error('parseCallback: signatureId must be 64 lowercase hex characters');
  return { signatureId, ...extra };
}

// ---------------------------------------------------------------------------------------------
// A tiny DER reader.
//
// Scope and limits (on purpose: enough to look inside a CMS SignedData, nothing more):
// - definite lengths only (DER); BER indefinite lengths (0x80) are refused;
// - low tag numbers only (< 31); the high-tag-number form is refused;
// - lengths up to 4 bytes; no check that the encoding is *minimal* DER;
// - values are not interpreted beyond OIDs and UTCTime/GeneralizedTime.
// A node is {tag, cons, start, body, end} with offsets into `buf`; it always stays within its parent.

function readTlv(buf, pos, end) {
  if (pos + 2 > end) throw new Error('DER: truncated header');
  const tag = buf[pos];
  if ((tag & 0x1f) === 0x1f) throw new Error('DER: high tag numbers are not supported');
  let len = buf[pos + 1];
  let body = pos + 2;
  if (len === 0x80) throw new Error('DER: indefinite length (BER) is not supported');
  if (len > 0x80) {
    const n = len & 0x7f;
    if (n > 4 || body + n > end) throw new Error('DER: bad length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i];
    body += n;
  }
  if (body + len > end) throw new Error('DER: value runs past its container');
  return { tag, cons: (tag & 0x20) !== 0, start: pos, body, end: body + len };
}

/** Parses `buf` as exactly one TLV. */
function parseDer(buf) {
  const node = readTlv(buf, 0, buf.length);
  if (node.end !== buf.length) throw new Error('DER: trailing bytes after the value');
  return node;
}

/** The TLVs inside a constructed node; they must fill it exactly. */
function children(buf, node) {
  if (!node.cons) throw new Error('DER: primitive value has no children');
  const out = [];
  for (let p = node.body; p < node.end;) {
    const c = readTlv(buf, p, node.end);
    out.push(c);
    p = c.end;
  }
  return out;
}

const value = (buf, n) => buf.subarray(n.body, n.end);
const raw = (buf, n) => buf.subarray(n.start, n.end);

function oidString(buf, n) {
  if (n.tag !== 0x06) throw new Error('DER: expected an OBJECT IDENTIFIER');
  const v = value(buf, n);
  const arcs = [];
  let acc = 0n;
  for (const b of v) {
    acc = (acc << 7n) | BigInt(b & 0x7f);
    if (!(b & 0x80)) { arcs.push(acc); acc = 0n; }
  }
  if (v.length === 0 || v[v.length - 1] & 0x80) throw new Error('DER: bad OBJECT IDENTIFIER');
  const first = arcs.shift();
  const head = first < 40n ? [0n, first] : first < 80n ? [1n, first - 40n] : [2n, first - 80n];
  return [...head, ...arcs].join('.');
}

function derTime(buf, n) {
  const s = new TextDecoder().decode(value(buf, n));
  let m;
  if (n.tag === 0x17 && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    const yy = +m[1];
    return new Date(Date.UTC(yy < 50 ? 2000 + yy : 1900 + yy, m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
  }
  if (n.tag === 0x18 && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:\.(\d+))?Z$/.exec(s))) {
    const ms = m[7] ? Math.floor(Number(`0.${m[7]}`) * 1000) : 0;
    return new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6], ms));
  }
  throw new Error('DER: bad time value');
}

function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** ContentInfo -> {signedData node, its children}; throws with a readable message. */
function openSignedData(buf, top) {
  if (top.tag !== 0x30) throw new Error('not a DER SEQUENCE (ContentInfo)');
  const [type, content] = children(buf, top);
  if (!type || type.tag !== 0x06 || oidString(buf, type) !== OID.signedData) {
    throw new Error('ContentInfo content type is not signedData (1.2.840.113549.1.7.2)');
  }
  if (!content || content.tag !== 0xa0) throw new Error('ContentInfo has no [0] content');
  const [sd] = children(buf, content);
  if (!sd || sd.tag !== 0x30) throw new Error('SignedData is not a SEQUENCE');
  // SignedData ::= SEQUENCE { version, digestAlgorithms SET, encapContentInfo,
  //   certificates [0] IMPLICIT OPTIONAL, crls [1] IMPLICIT OPTIONAL, signerInfos SET }
  const parts = children(buf, sd);
  const encap = parts[2];
  if (!encap || encap.tag !== 0x30) throw new Error('SignedData has no encapContentInfo');
  let i = 3;
  const certificates = parts[i] && parts[i].tag === 0xa0 ? parts[i++] : null;
  if (parts[i] && parts[i].tag === 0xa1) i++; // crls
  const signerInfos = parts[i];
  if (!signerInfos || signerInfos.tag !== 0x31) throw new Error('SignedData has no signerInfos SET');
  return { encap, certificates, signerInfos };
}

/** Attributes ([0] or [1] IMPLICIT SET OF Attribute) -> Map(oid -> [value nodes]). An attribute
 * type that appears twice is refused (RFC 5652 5.3: a SignedAttributes type appears once). */
function attributes(buf, node) {
  const map = new Map();
  for (const attr of children(buf, node)) {
    const [type, values] = children(buf, attr);
    if (!type || !values || values.tag !== 0x31) throw new Error('malformed attribute');
    const oid = oidString(buf, type);
    if (map.has(oid)) throw new Error(`attribute ${oid} appears twice`);
    map.set(oid, children(buf, values));
  }
  return map;
}

/** genTime of an RFC 3161 TimeStampToken (a ContentInfo around SignedData around TSTInfo). */
function timeStampGenTime(buf, token) {
  const { encap } = openSignedData(buf, token);
  const [type, wrapped] = children(buf, encap);
  if (!type || oidString(buf, type) !== OID.tstInfo) throw new Error('eContentType is not id-ct-TSTInfo');
  if (!wrapped || wrapped.tag !== 0xa0) throw new Error('time-stamp token has no TSTInfo');
  const [octets] = children(buf, wrapped);
  if (!octets || octets.tag !== 0x04) throw new Error('TSTInfo is not in an OCTET STRING');
  const tst = value(buf, octets);
  // TSTInfo ::= SEQUENCE { version, policy, messageImprint, serialNumber, genTime, ... }
  const fields = children(tst, parseDer(tst));
  if (!fields[4] || fields[4].tag !== 0x18) throw new Error('TSTInfo has no genTime');
  return derTime(tst, fields[4]);
}

// ---------------------------------------------------------------------------------------------
// toP7s / verifyBasic

/**
 * The detached CMS signature of a `GET /v1/sign/response/{signatureId}` answer, as .p7s (DER) bytes.
 *
 * @param {object|string} signatureResponse the whole response object or its `signature` string
 * @returns {Uint8Array} DER bytes, e.g. to save as `document.p7s`
 * @throws {Error} if `signature` is missing, not base64, or not one DER SEQUENCE
 */
export function toP7s(signatureResponse) {
  const b64 = typeof signatureResponse === 'string' ? signatureResponse : signatureResponse && signatureResponse.signature;
  if (typeof b64 !== 'string' || !b64) throw new Error('toP7s: no signature in the response');
  const der = fromBase64(b64);
  let top;
  try { top = parseDer(der); } catch (e) { throw new Error(`toP7s: signature is not DER: ${e.message}`); }
  if (top.tag !== 0x30) throw new Error('toP7s: signature is not a DER SEQUENCE');
  return der;
}

/**
 * Sanity checks of a signature response, for e-Service developers. This is NOT a cryptographic
 * verification: no signature, certificate chain, revocation or time-stamp imprint is checked.
 * Use `openssl cms -verify` (or a validation service) for that.
 *
 * Checks: `status.code` is "OK"; `signature` is a DER ContentInfo of type signedData; it is
 * detached (no eContent); it carries a certificate; there is exactly one SignerInfo; its digest
 * algorithm matches `hashType` and its messageDigest signed attribute equals `hash` (when given);
 * it has a signing-certificate(-v2) attribute (required by CAdES); it has a signature-time-stamp
 * unsigned attribute (1.2.840.113549.1.9.16.2.14) holding an RFC 3161 token; the `certificate`
 * PEM decodes and is one of the certificates in the signature; `signatureTimestamp`, if present,
 * decodes as DER.
 *
 * When only the `signature` string is given, the status and certificate checks are skipped.
 *
 * @param {object|string} signatureResponse the response object (or only its `signature`)
 * @param {{hash?: string|Uint8Array, hashType?: string}} [expected] the document digest sent to
 *   `signUrl` (base64 or bytes) and its type
 * @returns {{ok: boolean, problems: string[], signedAt?: Date, timestampedAt?: Date,
 *   timestamped: boolean, hashMatches?: boolean}}
 *   `signedAt` is the signingTime signed attribute (signer's claim), `timestampedAt` the genTime
 *   of the time-stamp token (TSA's claim); `hashMatches` (only when `hash` is given) is true when
 *   the (unverified) messageDigest attribute equals `hash` and the digest algorithm is `hashType`
 *   (when given). Whether the signature over those attributes is valid is NOT checked here.
 */
export function verifyBasic(signatureResponse, { hash, hashType } = {}) {
  const problems = [];
  const result = { ok: false, problems, timestamped: false };
  if (hash !== undefined && hash !== null) result.hashMatches = false;
  const full = typeof signatureResponse !== 'string';
  const resp = full ? (signatureResponse || {}) : { signature: signatureResponse };

  if (full) {
    const st = resp.status;
    if (!st || st.code !== 'OK') {
      problems.push(`status is ${st && st.code ? st.code : 'missing'}${st && st.message ? `: ${st.message}` : ''}`);
    }
  }

  let der;
  try { der = toP7s(resp); } catch (e) { problems.push(e.message.replace(/^toP7s: /, '')); }

  let certs = [];
  if (der) {
    try {
      checkSignedData(der, { hash, hashType }, problems, result, (c) => { certs = c; });
    } catch (e) {
      problems.push(`signature structure: ${e.message}`);
    }
  }

  if (full) {
    const pem = resp.certificate;
    const m = typeof pem === 'string' && /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem);
    if (!m) problems.push('certificate: no PEM certificate in the response');
    else {
      try {
        const certDer = fromBase64(m[1]);
        if (parseDer(certDer).tag !== 0x30) throw new Error('not a SEQUENCE');
        if (der && certs.length && !certs.some((c) => bytesEqual(c, certDer))) {
          problems.push('certificate: the response certificate is not among the certificates in the signature');
        }
      } catch (e) {
        problems.push(`certificate: PEM does not decode (${e.message})`);
      }
    }
    if (resp.signatureTimestamp !== undefined && resp.signatureTimestamp !== null && resp.signatureTimestamp !== '') {
      try { parseDer(fromBase64(resp.signatureTimestamp)); } catch (e) {
        problems.push(`signatureTimestamp does not decode as DER (${e.message})`);
      }
    }
  }

  result.ok = problems.length === 0;
  return result;
}

function checkSignedData(der, { hash, hashType }, problems, result, setCerts) {
  const { encap, certificates, signerInfos } = openSignedData(der, parseDer(der));

  const [, eContent] = children(der, encap);
  if (eContent) problems.push('signature is not detached: encapContentInfo carries the content');

  const certs = certificates ? children(der, certificates).map((c) => raw(der, c)) : [];
  setCerts(certs);
  if (certs.length === 0) problems.push('signature carries no certificate');

  const signers = children(der, signerInfos);
  if (signers.length !== 1) {
    problems.push(`expected exactly one SignerInfo, found ${signers.length}`);
    if (signers.length === 0) return;
  }
  // SignerInfo ::= SEQUENCE { version, sid, digestAlgorithm, signedAttrs [0] IMPLICIT OPTIONAL,
  //   signatureAlgorithm, signature OCTET STRING, unsignedAttrs [1] IMPLICIT OPTIONAL }
  const si = children(der, signers[0]);
  const digestAlg = si[2] && si[2].tag === 0x30 ? children(der, si[2])[0] : null;
  if (!digestAlg) throw new Error('SignerInfo has no digestAlgorithm');
  const digestOid = oidString(der, digestAlg);
  const signedWith = DIGEST_OID[digestOid];
  const algorithmOk = !hashType || signedWith === hashType;
  if (!algorithmOk) problems.push(`digest algorithm is ${signedWith || digestOid}, expected ${hashType}`);

  const signedAttrs = si[3] && si[3].tag === 0xa0 ? attributes(der, si[3]) : null;
  const last = si[si.length - 1];
  const unsignedAttrs = last && last.tag === 0xa1 ? attributes(der, last) : null;

  if (!signedAttrs) {
    problems.push('no signed attributes (messageDigest missing)');
  } else {
    const md = signedAttrs.get(OID.messageDigest);
    if (!md || !md[0] || md[0].tag !== 0x04) problems.push('messageDigest signed attribute missing');
    else if (md.length !== 1) problems.push('messageDigest has more than one value');
    else if (hash !== undefined && hash !== null) {
      let want;
      try { want = typeof hash === 'string' ? fromBase64(hash) : toBytes(hash); } catch { want = null; }
      if (!want) problems.push('expected hash is not valid base64');
      else if (!bytesEqual(value(der, md[0]), want)) problems.push('messageDigest does not match the document hash');
      else result.hashMatches = algorithmOk;
    }
    const st = signedAttrs.get(OID.signingTime);
    if (st && st[0]) {
      try { result.signedAt = derTime(der, st[0]); } catch { problems.push('signingTime attribute is malformed'); }
    }
    if (!signedAttrs.has(OID.signingCertificateV2) && !signedAttrs.has(OID.signingCertificate)) {
      problems.push('no signing-certificate(-v2) signed attribute (required by CAdES)');
    }
  }

  const ts = unsignedAttrs && unsignedAttrs.get(OID.signatureTimeStamp);
  if (!ts || !ts[0]) {
    problems.push('no signature-time-stamp unsigned attribute (RFC 3161 time-stamp missing)');
  } else {
    try {
      result.timestampedAt = timeStampGenTime(der, ts[0]);
      result.timestamped = true;
    } catch (e) {
      problems.push(`signature-time-stamp is not a valid RFC 3161 token: ${e.message}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// decodeSignature: every format

/** How to save each format's `signature`: file name suffix and media type. */
const SAVE_AS = {
  CAdES: { suffix: '.p7s', mediaType: 'application/pkcs7-signature' },
  PAdES: { suffix: '.p7s', mediaType: 'application/pkcs7-signature' },
  XAdES: { suffix: '.xml', mediaType: 'application/xml' },
  ASIC: { suffix: '.signatures0.xml', mediaType: 'application/xml' },
  JWS: { suffix: '.json', mediaType: 'application/jose+json' },
};

const XML_ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const xmlText = (s) => s.replace(/&(amp|lt|gt|quot|apos);/g, (_, e) => XML_ENTITIES[e]);

/** base64url (no padding) to standard padded base64. */
const toStdBase64 = (s) => toBase64(fromBase64(s));

/**
 * Decodes the `signature` of a `GET /v1/sign/response/{signatureId}` answer as its format has it,
 * and reads (without verifying anything) which document digests it covers and its claimed signing
 * time.
 *
 * | format | `signature` is | `bytes` | `text` | `digests` from | `signedAt` from |
 * |---|---|---|---|---|---|
 * | CAdES, PAdES | base64 DER CMS | the DER | — | messageDigest | signingTime (PAdES: absent, the PDF has /M) |
 * | XAdES, ASIC | base64 UTF-8 XML (ASIC: `META-INF/signatures0.xml`) | UTF-8 | the XML | ds:Reference DigestValue (not the SignedProperties one) | xades:SigningTime |
 * | JWS | base64 UTF-8 JSON (detached JAdES) | UTF-8 | the JSON | sigD.hashV | iat |
 *
 * @param {object|string} signatureResponse the response object, or its `signature` string
 * @param {string} format one of {@link FORMATS}, as sent to {@link signUrl}
 * @param {string} [documentName='document'] the name to derive `fileName` from
 * @returns {{format: string, bytes: Uint8Array, text?: string, json?: object, digests: string[],
 *   names?: string[], signedAt?: Date, fileName: string, mediaType: string}} `digests` in standard
 *   base64, in the signature's order; `names` the documents as the signature names them (XAdES,
 *   ASIC: the reference URIs; JWS: sigD.pars); `fileName` e.g. `contract.pdf.p7s`,
 *   `contract.pdf.xml`, `contract.pdf.json`
 * @throws {Error} if `signature` is missing or not what `format` makes
 */
export function decodeSignature(signatureResponse, format, documentName = 'document') {
  if (typeof format !== 'string' || !FORMATS.includes(format)) {
    throw new Error(`decodeSignature: format must be one of ${FORMATS.join(', ')}`);
  }
  const b64 = typeof signatureResponse === 'string' ? signatureResponse : signatureResponse && signatureResponse.signature;
  if (typeof b64 !== 'string' || !b64) throw new Error('decodeSignature: no signature in the response');
  let bytes;
  try { bytes = fromBase64(b64); } catch { throw new Error('decodeSignature: signature is not base64'); }
  const out = {
    format, bytes, digests: [], fileName: `${documentName}${SAVE_AS[format].suffix}`, mediaType: SAVE_AS[format].mediaType,
  };
  if (format === 'CAdES' || format === 'PAdES') {
    let top;
    try { top = parseDer(bytes); } catch (e) { throw new Error(`decodeSignature: ${format} signature is not DER: ${e.message}`); }
    const { signerInfos } = openSignedData(bytes, top);
    for (const signer of children(bytes, signerInfos)) {
      const si = children(bytes, signer);
      const attrs = si[3] && si[3].tag === 0xa0 ? attributes(bytes, si[3]) : null;
      const md = attrs && attrs.get(OID.messageDigest);
      if (md && md[0] && md[0].tag === 0x04) out.digests.push(toBase64(value(bytes, md[0])));
      const st = attrs && attrs.get(OID.signingTime);
      if (st && st[0] && !out.signedAt) {
        try { out.signedAt = derTime(bytes, st[0]); } catch { /* malformed: no time */ }
      }
    }
    return out;
  }
  let text;
  try { text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); } catch {
    throw new Error(`decodeSignature: ${format} signature is not UTF-8 text`);
  }
  out.text = text;
  if (format === 'JWS') {
    let jws; let header;
    try {
      jws = JSON.parse(text);
      header = JSON.parse(new TextDecoder().decode(fromBase64(jws.protected)));
    } catch { throw new Error('decodeSignature: JWS signature is not a JWS in the JSON serialization'); }
    out.json = jws;
    const sigD = header.sigD || {};
    if (Array.isArray(sigD.hashV)) out.digests = sigD.hashV.map(toStdBase64);
    if (Array.isArray(sigD.pars)) out.names = sigD.pars.slice();
    if (Number.isFinite(header.iat)) out.signedAt = new Date(header.iat * 1000);
    return out;
  }
  // XAdES / ASiC-E: a regular expression reader of what esigd writes (prefix `ds:`/`xades:`).
  if (!/<ds:Signature[\s>]/.test(text)) throw new Error(`decodeSignature: ${format} signature has no ds:Signature`);
  if (format === 'ASIC' && !/<asic:XAdESSignatures[\s>]/.test(text)) {
    throw new Error('decodeSignature: ASIC signature is not an ASiC-E signatures file');
  }
  const signedInfo = /<ds:SignedInfo[\s>][\s\S]*?<\/ds:SignedInfo>/.exec(text);
  const names = [];
  for (const m of (signedInfo ? signedInfo[0] : '').matchAll(/<ds:Reference\b([^>]*)>([\s\S]*?)<\/ds:Reference>/g)) {
    if (/\bType="[^"]*SignedProperties"/.test(m[1])) continue;
    const dv = /<ds:DigestValue>([^<]*)<\/ds:DigestValue>/.exec(m[2]);
    const uri = /\bURI="([^"]*)"/.exec(m[1]);
    if (dv) out.digests.push(toStdBase64(dv[1].trim()));
    if (uri) {
      const u = xmlText(uri[1]);
      try { names.push(decodeURIComponent(u)); } catch { names.push(u); }
    }
  }
  out.names = names;
  const st = /<xades:SigningTime>([^<]*)<\/xades:SigningTime>/.exec(text);
  if (st && !Number.isNaN(Date.parse(st[1]))) out.signedAt = new Date(st[1]);
  return out;
}
