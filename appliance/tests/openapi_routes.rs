//! `/v1/openapi.yaml` stays true: it is a valid OpenAPI 3 document (openapi-spec-validator, from
//! PyPI), and every path it lists answers on a running daemon (embedded defaults) with something
//! other than "no such route".
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::process::Command;

use esigd_testkit::{Daemon, SERVE, curl, esigd, venv};

/// The `paths:` keys of the document (two-space indented lines under `paths:` that start with `/`).
fn documented_paths(yaml: &str) -> Vec<String> {
    let mut in_paths = false;
    let mut out = Vec::new();
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if in_paths
            && let Some(p) = line.strip_prefix("  /")
            && !line.starts_with("   ")
        {
            out.push(format!("/{}", p.trim_end().trim_end_matches(':')));
        }
    }
    out
}

/// Methods documented for `path` (the keys right under it).
fn methods(yaml: &str, path: &str) -> Vec<String> {
    let header = format!("  {path}:");
    let mut lines = yaml.lines().skip_while(|l| l.trim_end() != header).skip(1);
    let mut out = Vec::new();
    for l in lines.by_ref() {
        if !l.starts_with("    ") {
            break;
        }
        if !l.starts_with("     ")
            && let Some(m) = l.trim().strip_suffix(':')
        {
            out.push(m.to_uppercase());
        }
    }
    out
}

#[test]
fn the_openapi_document_is_valid_and_every_path_exists() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cmd = esigd();
    cmd.args(["--data-dir"]).arg(&data).args(SERVE);
    let d = Daemon::start(cmd);

    let (status, yaml) = d.get("/v1/openapi.yaml", &[]);
    assert_eq!(status, 200);
    let yaml = String::from_utf8(yaml).unwrap();
    let file = dir.path().join("openapi.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let out = Command::new(venv().join("bin/openapi-spec-validator"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let paths = documented_paths(&yaml);
    for p in [
        "/v1/sign/onetime",
        "/v1/sign/response/{signatureId}",
        "/v1/audit/log",
        "/tsa",
    ] {
        assert!(
            paths.iter().any(|x| x == p),
            "{p} not documented: {paths:?}"
        );
    }
    let pki = data.join("pki");
    let cert = pki.join("demo-eservice.pem");
    let key = pki.join("demo-eservice.key");
    let ca = pki.join("eservice-client-ca.pem");
    for path in &paths {
        let concrete = path
            .replace("{signatureId}", &"0".repeat(64))
            .replace("{serial}", "01")
            .replace("{certificateId}", "01")
            .replace("{pseudonym}", "k7m2-9xqa-h3dz")
            .replace("{request}", "MAA=");
        let eservice_api = path.starts_with("/v1/sign/onetime")
            || path.starts_with("/v1/sign/response/")
            || path.starts_with("/v1/audit/")
            || path.starts_with("/v1/cert/")
            || path.starts_with("/v1/token/")
            || path == "/v1/sign/pseudonym";
        for method in methods(&yaml, path) {
            let (status, body) = if eservice_api {
                let url = format!("https://{}{concrete}", d.eservice);
                curl(&[
                    "-X",
                    &method,
                    "--cacert",
                    ca.to_str().unwrap(),
                    "--cert",
                    cert.to_str().unwrap(),
                    "--key",
                    key.to_str().unwrap(),
                    "--data-binary",
                    if method == "POST" { "{}" } else { "" },
                    &url,
                ])
            } else if method == "POST" {
                d.get(&concrete, &["-X", "POST", "--data-binary", "x"])
            } else {
                d.get(&concrete, &[])
            };
            let text = String::from_utf8_lossy(&body);
            assert!(
                status != 0
                    && !(status == 404 && (text.is_empty() || text.contains("no such route"))),
                "{method} {path} does not exist: {status} {text}"
            );
        }
    }
    d.stop();
}

/// `/v1/client/esig.js`: its ETag is the Subresource Integrity value of the body (checked with
/// openssl), and a browser revalidating with it gets 304.
#[test]
fn the_client_library_carries_its_integrity_value_and_revalidates() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = esigd();
    cmd.args(["--data-dir"])
        .arg(dir.path().join("data"))
        .args(SERVE);
    let d = Daemon::start(cmd);
    // Headers, then the body.
    let (status, answer) = curl(&["-D", "-", &d.url("/v1/client/esig.js")]);
    assert_eq!(status, 200);
    let headers = String::from_utf8_lossy(&answer).to_string();
    let etag = headers
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an ETag")
        .trim()
        .to_owned();
    let (_, body) = d.get("/v1/client/esig.js", &[]);
    let file = dir.path().join("esig.js");
    std::fs::write(&file, &body).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("openssl dgst -sha384 -binary \"$0\" | openssl base64 -A")
        .arg(&file)
        .output()
        .unwrap();
    let sri = format!(
        "\"sha384-{}\"",
        String::from_utf8(out.stdout).unwrap().trim()
    );
    assert_eq!(etag, sri);
    let (status, body) = curl(&[
        "-H",
        &format!("If-None-Match: {etag}"),
        &d.url("/v1/client/esig.js"),
    ]);
    assert_eq!(status, 304);
    assert!(body.is_empty());
    // A weak validator (a compressing proxy's W/"…") matches too (RFC 9110 weak comparison).
    let (status, _) = curl(&[
        "-H",
        &format!("If-None-Match: W/{etag}"),
        &d.url("/v1/client/esig.js"),
    ]);
    assert_eq!(status, 304);
    let (status, _) = curl(&[
        "-H",
        "If-None-Match: \"sha384-other\"",
        &d.url("/v1/client/esig.js"),
    ]);
    assert_eq!(status, 200);
}
