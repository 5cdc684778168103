// What the browser drivers share about the example e-Service (examples/eservice/): choosing the
// signature format on its start page, and taking what its result page offers for download.

import path from 'node:path';

/**
 * After a document was put into #file: waits until the page has looked at it (PAdES is chosen
 * for a PDF), then selects `format` when given. Returns {defaultFormat, format}: what the page
 * chose by itself and what is selected now.
 */
export async function chooseFormat(page, { document, format, timeout }) {
  if (document) {
    await page.waitForFunction((name) => document.getElementById('format')?.dataset.for === name,
      path.basename(document), { timeout });
  }
  const defaultFormat = await page.inputValue('#format');
  if (format) await page.selectOption('#format', format);
  return { defaultFormat, format: await page.inputValue('#format') };
}

/** The JSON config of the result page: the format, the esigd response, the digest. */
export async function resultConfig(page) {
  return page.evaluate(() => JSON.parse(document.getElementById('config')?.textContent ?? 'null'));
}

async function save(page, selector, dir, timeout) {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout }), page.click(selector)]);
  const file = path.join(dir, download.suggestedFilename());
  await download.saveAs(file);
  return { file, name: download.suggestedFilename() };
}

/**
 * On the e-Service result page (after its script ran: body[data-ready]): downloads what it offers
 * for the format into `dir`. PAdES: the signed PDF (#download-pdf, embedded in the browser);
 * XAdES, ASIC and JWS: the signature file (#download) and the document kept in the browser
 * (#download-doc); ASIC also the container the browser built (#download-container). Returns
 * {format, signedPdf?, container?, signature?, document?, pdfStatus?, containerStatus?, response}.
 */
export async function downloadResult(page, dir, { timeout }) {
  await page.locator('body[data-ready="true"]').waitFor({ timeout });
  const config = await resultConfig(page);
  const out = { format: config.format, response: config.response, hash: config.hash };
  if (config.format === 'PAdES') {
    out.pdfStatus = (await page.locator('#pdf-status').innerText()).trim();
    if ((await page.getAttribute('#pdf-status', 'data-ok')) !== 'true') {
      throw new Error(`the e-Service did not make the signed PDF: ${out.pdfStatus}`);
    }
    out.downloadPdfText = (await page.locator('#download-pdf').innerText()).trim();
    out.signedPdf = await save(page, '#download-pdf', dir, timeout);
  } else if (['XAdES', 'ASIC', 'JWS'].includes(config.format)) {
    if (config.format === 'ASIC') {
      out.containerStatus = (await page.locator('#container-status').innerText()).trim();
      if ((await page.getAttribute('#container-status', 'data-ok')) !== 'true') {
        throw new Error(`the e-Service did not make the container: ${out.containerStatus}`);
      }
      out.container = await save(page, '#download-container', dir, timeout);
    }
    out.signature = await save(page, '#download', dir, timeout);
    const docDir = path.join(dir, 'document');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(docDir, { recursive: true });
    await page.locator('#download-doc:not([hidden])').waitFor({ timeout });
    out.document = await save(page, '#download-doc', docDir, timeout);
  }
  return out;
}
