//! Test PDFs, made byte by byte (no PDF library, so the code under test is not its own oracle):
//! one page per text, a classic cross-reference table and a trailer `/ID`; `qpdf --check` finds
//! them clean. Shared by the client's tests and (through `#[path]`) `esigd_testkit::formats_check`.

/// A PDF with one page per text; each content stream is padded to at least `pad` bytes with
/// incompressible-looking comment lines (0: no padding).
pub fn sample_pdf(texts: &[&str], pad: usize) -> Vec<u8> {
    // 1 catalog, 2 pages, 3 font, then a page and its content stream per text.
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        String::new(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut kids = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for text in texts {
        let page = objects.len() + 1;
        kids.push(format!("{page} 0 R"));
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 400 200] /Contents {} 0 R \
             /Resources << /Font << /F1 3 0 R >> >> >>",
            page + 1
        ));
        let mut stream = format!("BT /F1 18 Tf 20 100 Td ({text}) Tj ET\n");
        while stream.len() < pad {
            // xorshift
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            stream.push_str(&format!("% {seed:016x}{:016x}\n", seed.rotate_left(29)));
        }
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ));
    }
    objects[1] = format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        texts.len()
    );
    assemble_pdf(&objects)
}

/// A PDF file of `objects` (numbered from 1; object 1 is the catalog) with a classic
/// cross-reference table and a trailer `/ID`.
pub fn assemble_pdf(objects: &[String]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /ID [<00112233445566778899AABBCCDDEEFF> \
             <00112233445566778899AABBCCDDEEFF>] >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}
