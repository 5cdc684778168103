// asice.js: the example e-Service builds an ASiC-E container (ETSI EN 319 162-1) in the browser
// around the citizen's document and the `META-INF/signatures0.xml` that esigd returns for format
// ASIC (served at /asice.js; an ES module without dependencies, also usable in Node).
//
// Layout: `mimetype` first, STORED, without extra field (its name at byte 30, its value at byte
// 38), then the documents at the root under their names, `META-INF/manifest.xml` (OpenDocument
// manifest: every document with its media type) and `META-INF/signatures0.xml`. Every entry is
// STORED (no compression: the container is as big as its parts, and no deflate code is needed).

export const MIMETYPE = 'application/vnd.etsi.asic-e+zip';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ZIP, IEEE 802.3) of `bytes`. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const escapeAttr = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The OpenDocument `META-INF/manifest.xml` listing `documents` ({name, mediaType}). */
export function odfManifest(documents) {
  return '<?xml version="1.0" encoding="UTF-8"?>\n'
    + '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">\n'
    + ` <manifest:file-entry manifest:full-path="/" manifest:media-type="${MIMETYPE}"/>\n`
    + documents.map((d) => ` <manifest:file-entry manifest:full-path="${escapeAttr(d.name)}" `
      + `manifest:media-type="${escapeAttr(d.mediaType || 'application/octet-stream')}"/>\n`).join('')
    + '</manifest:manifest>\n';
}

/** MS-DOS time and date of `d` (UTC: ZIP has no time zone). */
function dosTime(d) {
  return {
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1),
    date: ((Math.max(1980, d.getUTCFullYear()) - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
  };
}

/** A ZIP of STORED entries [{name, bytes}], in order. */
export function storedZip(entries, modified = new Date()) {
  const enc = new TextEncoder();
  const { time, date } = dosTime(modified);
  const parts = [];
  const central = [];
  let offset = 0;
  for (const e of entries) {
    const name = enc.encode(e.name);
    // Bit 11: the name is UTF-8 (only set when it is not plain ASCII; never on mimetype).
    const flags = /^[\x20-\x7e]*$/.test(e.name) ? 0 : 0x0800;
    const crc = crc32(e.bytes);
    const size = e.bytes.length;
    if (size > 0xfffffffe || offset > 0xfffffffe) throw new Error('asice: no ZIP64 here: the container must stay under 4 GiB');
    const local = new DataView(new ArrayBuffer(30));
    [[0, 0x04034b50, 4], [4, 10, 2], [6, flags, 2], [8, 0, 2], [10, time, 2], [12, date, 2], [14, crc, 4],
      [18, size, 4], [22, size, 4], [26, name.length, 2], [28, 0, 2]]
      .forEach(([at, v, n]) => (n === 4 ? local.setUint32(at, v, true) : local.setUint16(at, v, true)));
    const cd = new DataView(new ArrayBuffer(46));
    [[0, 0x02014b50, 4], [4, 20, 2], [6, 10, 2], [8, flags, 2], [10, 0, 2], [12, time, 2], [14, date, 2],
      [16, crc, 4], [20, size, 4], [24, size, 4], [28, name.length, 2], [30, 0, 2], [32, 0, 2], [34, 0, 2],
      [36, 0, 2], [38, 0, 4], [42, offset, 4]]
      .forEach(([at, v, n]) => (n === 4 ? cd.setUint32(at, v, true) : cd.setUint16(at, v, true)));
    parts.push(new Uint8Array(local.buffer), name, e.bytes);
    central.push(new Uint8Array(cd.buffer), name);
    offset += 30 + name.length + size;
  }
  const cdSize = central.reduce((n, p) => n + p.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  [[0, 0x06054b50, 4], [4, 0, 2], [6, 0, 2], [8, entries.length, 2], [10, entries.length, 2], [12, cdSize, 4],
    [16, offset, 4], [20, 0, 2]]
    .forEach(([at, v, n]) => (n === 4 ? end.setUint32(at, v, true) : end.setUint16(at, v, true)));
  const all = [...parts, ...central, new Uint8Array(end.buffer)];
  const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of all) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * The ASiC-E container of `documents` ({name, mediaType, bytes}) and the `signatures0.xml` esigd
 * returned for them (text or bytes).
 * @returns {Uint8Array} the `.asice` file
 */
export function asiceContainer(documents, signaturesXml, modified = new Date()) {
  const enc = new TextEncoder();
  const sig = typeof signaturesXml === 'string' ? enc.encode(signaturesXml) : signaturesXml;
  for (const d of documents) {
    if (d.name === 'mimetype' || /^META-INF(\/|$)/i.test(d.name)) throw new Error(`asice: ${d.name} is reserved in a container`);
  }
  return storedZip([
    { name: 'mimetype', bytes: enc.encode(MIMETYPE) },
    ...documents.map((d) => ({ name: d.name, bytes: d.bytes })),
    { name: 'META-INF/manifest.xml', bytes: enc.encode(odfManifest(documents)) },
    { name: 'META-INF/signatures0.xml', bytes: sig },
  ], modified);
}
