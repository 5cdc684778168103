// keep.js: the example e-Service keeps the citizen's document in the browser across the round
// trip through esigd (served at /keep.js; an ES module without dependencies).
//
// IndexedDB, not sessionStorage: sessionStorage holds strings and about 5 MB per origin (a PDF
// as base64 grows by a third), while IndexedDB stores the Blob itself and lets an origin use a
// large share of the free disk, so documents of many megabytes fit. The record is per origin (not
// per tab) and stays until the next signing replaces it or the result page deletes it; in a
// private window it lives as long as the window.
//
//   await keep({fileName, format, hash, type, document, prepared?})  // before the redirect
//   const kept = await take(hash)                                     // on the result page
//
// `document` is the original file (Blob); `prepared` the PDF with the empty signature (PAdES,
// from esig-pdf.js preparePdf), whose /ByteRange digest is `hash`.

const DB = 'esig-example';
const STORE = 'documents';
const KEY = 'current';

function open() {
  return new Promise((resolve, reject) => {
    if (!globalThis.indexedDB) {
      reject(new Error('this browser has no IndexedDB: the document cannot be kept across the redirect'));
      return;
    }
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error || new Error('IndexedDB: cannot open'));
  });
}

function run(mode, f) {
  return open().then((db) => new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = f(tx.objectStore(STORE));
    tx.oncomplete = () => { db.close(); resolve(req.result); };
    tx.onerror = () => { db.close(); reject(tx.error || new Error('IndexedDB: transaction failed')); };
    tx.onabort = () => { db.close(); reject(tx.error || new Error('IndexedDB: transaction aborted (quota?)')); };
  }));
}

const asBlob = (x, type) => (x === undefined || x === null || x instanceof Blob ? x : new Blob([x], { type }));

/**
 * Keeps the document (and the prepared PDF) of this signing, replacing any earlier one.
 * @param {{fileName: string, format: string, hash: string, type?: string,
 *   document: Blob|Uint8Array, prepared?: Blob|Uint8Array}} record
 */
export function keep(record) {
  const type = record.type || 'application/octet-stream';
  const value = {
    ...record, type, savedAt: Date.now(),
    document: asBlob(record.document, type),
    prepared: asBlob(record.prepared, 'application/pdf'),
  };
  return run('readwrite', (s) => s.put(value, KEY));
}

/**
 * The kept record when it belongs to the signing of `hash` (the digest sent to esigd), else null.
 * @param {string} hash
 * @returns {Promise<null|{fileName: string, format: string, hash: string, type: string,
 *   document: Blob, prepared?: Blob}>}
 */
export async function take(hash) {
  const r = await run('readonly', (s) => s.get(KEY));
  return r && r.hash === hash ? r : null;
}

/** Forgets the kept record. */
export function forget() {
  return run('readwrite', (s) => s.delete(KEY));
}
