//! `esig sign` against a local stub of the e-Service API: a mutual-TLS listener (rustls, client
//! certificate required and checked against the test CA) that checks the headers and the body
//! of `POST /v1/sign/onetime` and answers the way esigd does, signing the request's digests
//! with `esigd_formats` (software key, `openssl ts` time-stamp). Every format goes the whole
//! round trip and the result is checked with `esig verify`; a PAdES result with pdfsig too.
//! The real daemon is tested by the lead end to end.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Pki, openssl, run, text, tool};
use esigd_formats::{DigestAlgorithm, Document, Format};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const TOKEN: &str = "eyJ.test-id-token.sig";

/// Server and client certificates under the test CA.
fn tls_certs(pki: &Pki) {
    let d = pki.dir.path();
    std::fs::write(
        d.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    std::fs::write(
        d.join("client.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    for k in ["server", "client"] {
        openssl(
            d,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{k}.key"),
                "-subj",
                &format!("/CN={k}"),
                "-out",
                &format!("{k}.csr"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{k}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                &format!("{k}.ext"),
                "-out",
                &format!("{k}.pem"),
            ],
        );
    }
}

/// What the stub saw of each request.
#[derive(Debug, Default)]
struct Seen {
    bodies: Vec<serde_json::Value>,
}

/// Starts the stub on 127.0.0.1 (an ephemeral port) for `n` connections; returns the base URL.
fn stub(pki: Arc<Pki>, n: usize, seen: Arc<Mutex<Seen>>) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.path("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        for _ in 0..n {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let reply = handle(&pki, &mut tls, &seen);
            let _ = tls.write_all(reply.as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    url
}

/// Reads one request; answers like esigd (or with its error body).
fn handle(pki: &Pki, stream: &mut impl Read, seen: &Mutex<Seen>) -> String {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return String::new();
    }
    let request_line = line.trim().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        let (k, v) = line.trim().split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let header = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
    let len: usize = header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    seen.lock().unwrap().bodies.push(body.clone());
    let answer = |status: &str, json: serde_json::Value| {
        let b = json.to_string();
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{b}",
            b.len()
        )
    };
    if request_line != "POST /v1/sign/onetime HTTP/1.1" {
        return answer(
            "404 Not Found",
            serde_json::json!({"status": {"code": "ERROR", "message": request_line}}),
        );
    }
    if header("x-govstack-authenticationtoken").as_deref() != Some(TOKEN) {
        return answer(
            "401 Unauthorized",
            serde_json::json!({"status": {"code": "ERROR", "message": "X-GovStack-AuthenticationToken is missing or invalid"}}),
        );
    }
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    let format = Format::parse(body["format"].as_str().unwrap()).unwrap();
    assert_eq!(body["hashType"], "SHA2-256");
    assert!(body["requestTimestamp"].as_str().unwrap().ends_with('Z'));
    let docs: Vec<Document> = match (body.get("hash"), body.get("documents")) {
        (Some(h), None) => vec![Document {
            name: "document".into(),
            media_type: "application/octet-stream".into(),
            digest: B64.decode(h.as_str().unwrap()).unwrap(),
        }],
        (None, Some(d)) => d
            .as_array()
            .unwrap()
            .iter()
            .map(|d| Document {
                name: d["name"].as_str().unwrap().into(),
                media_type: d["mediaType"].as_str().unwrap().into(),
                digest: B64.decode(d["hash"].as_str().unwrap()).unwrap(),
            })
            .collect(),
        _ => panic!("{body}"),
    };
    let signature = pki.sign(format, &docs, true);
    answer(
        "200 OK",
        serde_json::json!({
            "signatureId": "ab".repeat(32),
            "signature": B64.encode(&signature),
            "certificate": std::fs::read_to_string(pki.path("signer.pem")).unwrap(),
            "status": {"code": "OK"},
            "format": format.name(),
            "hashType": "SHA2-256",
            "signatureType": "ONETIME",
        }),
    )
}

fn esig_sign(
    pki: &Pki,
    url: &str,
    token: &str,
    format: &str,
    files: &[PathBuf],
    out: &PathBuf,
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_esig"))
        .arg("sign")
        .args([
            "--server",
            url,
            "--format",
            format,
            "--display",
            "Contract 7",
        ])
        .arg("--cert")
        .arg(pki.path("client.pem"))
        .arg("--key")
        .arg(pki.path("client.key"))
        .arg("--cacert")
        .arg(pki.path("ca.pem"))
        .args(["--id-token", token])
        .args(files)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn minimal_pdf() -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ];
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(b"xref\n0 4\n0000000000 65535 f \n");
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}

#[test]
fn every_format_round_trips_through_a_mtls_stub() {
    let pki = Arc::new(Pki::new());
    tls_certs(&pki);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = stub(pki.clone(), 7, seen.clone());

    let pdf = pki.path("contract.pdf");
    std::fs::write(&pdf, minimal_pdf()).unwrap();
    let note = pki.path("my note.txt");
    std::fs::write(&note, b"Signed in Tallinn.\n").unwrap();

    for (format, files, out, data) in [
        ("PAdES", vec![pdf.clone()], "signed.pdf", vec![]),
        ("CAdES", vec![note.clone()], "note.p7s", vec![note.clone()]),
        (
            "XAdES",
            vec![pdf.clone(), note.clone()],
            "sig.xml",
            vec![pdf.clone(), note.clone()],
        ),
        (
            "JWS",
            vec![pdf.clone(), note.clone()],
            "sig.json",
            vec![pdf.clone(), note.clone()],
        ),
        (
            "ASIC",
            vec![pdf.clone(), note.clone()],
            "both.asice",
            vec![],
        ),
        (
            "ASIC-CAdES",
            vec![pdf.clone(), note.clone()],
            "cades.asice",
            vec![],
        ),
    ] {
        let out = pki.path(out);
        let o = esig_sign(&pki, &url, TOKEN, format, &files, &out);
        assert!(o.status.success(), "{format}: {}", text(&o));
        assert!(text(&o).contains(&"ab".repeat(32)), "{}", text(&o));
        let mut v = Command::new(env!("CARGO_BIN_EXE_esig"));
        v.arg("verify").arg(&out);
        if !data.is_empty() {
            v.arg("--data").args(&data);
        }
        let vo = run(&mut v);
        eprintln!("{format}: {}", text(&vo));
    }
    // The PAdES result is a PDF poppler accepts.
    let o = Command::new(tool("pdfsig"))
        .arg(pki.path("signed.pdf"))
        .output()
        .unwrap();
    assert!(text(&o).contains("Signature is Valid"), "{}", text(&o));
    // The bodies: digests only, the documents' names and media types for the multi-document
    // formats, the display text.
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.bodies[1]["hash"],
        B64.encode(DigestAlgorithm::Sha256.digest(b"Signed in Tallinn.\n"))
    );
    assert_eq!(seen.bodies[2]["documents"][1]["name"], "my note.txt");
    assert_eq!(seen.bodies[2]["documents"][1]["mediaType"], "text/plain");
    assert_eq!(seen.bodies[4]["format"], "ASIC");
    assert_eq!(seen.bodies[5]["format"], "CAdES");
    assert!(seen.bodies[5].get("documents").is_none());
    assert!(
        seen.bodies
            .iter()
            .all(|b| b["dataToBeDisplayed"] == "Contract 7")
    );
    drop(seen);

    // The service's error is shown, and nothing is written.
    let out = pki.path("refused.p7s");
    let o = esig_sign(
        &pki,
        &url,
        "wrong",
        "CAdES",
        std::slice::from_ref(&note),
        &out,
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("X-GovStack-AuthenticationToken is missing or invalid"),
        "{}",
        text(&o)
    );
    assert!(!out.exists());
}
