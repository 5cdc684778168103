//! The `esigd` binary: embedded defaults, `init`, `check`, configuration faults, and the caller's
//! uid in the admin socket's history.
//!
//! Each test runs the real binary. Tokens for configured runs are created by the test in the
//! SoftHSM directory the test runner gave this process; the child inherits `SOFTHSM2_CONF`.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::Path;
use std::process::Command;

use esigd_hsm::testing::{TestToken, softhsm_module};
use esigd_testkit::{Daemon, SERVE, config, esigd, run, text};

fn serve_dev(data: &Path) -> Daemon {
    let mut cmd = esigd();
    cmd.args(["--data-dir"]).arg(data).args(SERVE);
    Daemon::start(cmd)
}

#[test]
fn embedded_defaults_create_token_keys_and_certificates_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = serve_dev(&data);
    for f in [
        "pki/ca.pem",
        "pki/tsa.pem",
        "pki/demo-eservice.pem",
        "pki/demo-eservice.key",
        "hsm/user-pin",
    ] {
        assert!(data.join(f).is_file(), "{f} missing; banner:\n{}", d.stdout);
    }
    assert!(d.stdout.contains("demo-eservice.pem"), "{}", d.stdout);
    // Private material is private.
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "hsm/user-pin",
        "hsm/so-pin",
        "pki/demo-eservice.key",
        "tls/server.key",
    ] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert_eq!(d.get("/healthz", &[]).0, 200);
    let (code, body) = d.get("/readyz", &[]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, pem) = d.get("/pki/ca.pem", &[]);
    assert_eq!(code, 200);
    assert_eq!(pem, std::fs::read(data.join("pki/ca.pem")).unwrap());
    // The TSA certificate chains to the CA (checked by openssl, not by us).
    let v = run(Command::new("openssl")
        .args(["verify", "-purpose", "timestampsign", "-CAfile"])
        .arg(data.join("pki/ca.pem"))
        .arg(data.join("pki/tsa.pem")));
    assert!(v.status.success(), "{}", text(&v));
    d.stop();

    // Second start: same token, same CA.
    let ca_before = std::fs::read(data.join("pki/ca.pem")).unwrap();
    let d = serve_dev(&data);
    assert_eq!(std::fs::read(data.join("pki/ca.pem")).unwrap(), ca_before);
    assert_eq!(d.get("/pki/ca.pem", &[]).1, ca_before);
    d.stop();
}

#[test]
fn configured_init_then_check_passes() {
    let token = TestToken::create();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &token, "");
    let o = run(esigd().arg("--config").arg(&cfg).arg("check"));
    assert!(
        !o.status.success(),
        "check must fail before init:\n{}",
        text(&o)
    );
    assert!(text(&o).contains("ca.key"), "{}", text(&o));
    let o = run(esigd().arg("--config").arg(&cfg).arg("init"));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(esigd().arg("--config").arg(&cfg).arg("check"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("all checks passed"), "{}", text(&o));
    // init refuses to replace the CA.
    let o = run(esigd().arg("--config").arg(&cfg).args(["init", "ca"]));
    assert!(
        !o.status.success() && text(&o).contains("already initialised"),
        "{}",
        text(&o)
    );
}

/// Each fault makes `check` and `serve` exit non-zero, naming the setting, never printing the PIN.
#[test]
fn configuration_faults_are_named_without_the_pin() {
    let token = TestToken::create();
    let dir = tempfile::tempdir().unwrap();
    let good = config(dir.path(), &token, "");
    assert!(
        run(esigd().arg("--config").arg(&good).arg("init"))
            .status
            .success()
    );

    let wrong_pin = dir.path().join("wrong-pin");
    std::fs::write(&wrong_pin, "31337-not-it\n").unwrap();
    let cases: Vec<(&str, String)> = vec![
        (
            "hsm.pin",
            format!(
                "data_dir = {:?}\n[hsm]\nmodule = {:?}\ntoken = {:?}\npin = {{ file = {:?} }}\n",
                dir.path().join("data"),
                softhsm_module(),
                token.label,
                wrong_pin
            ),
        ),
        (
            "hsm.module",
            format!(
                "data_dir = {:?}\n[hsm]\nmodule = \"/nonexistent/pkcs11.so\"\ntoken = {:?}\npin = {{ file = {:?} }}\n",
                dir.path().join("data"),
                token.label,
                token.pin_file
            ),
        ),
        (
            "hsm.token",
            format!(
                "data_dir = {:?}\n[hsm]\nmodule = {:?}\ntoken = \"no-such-token\"\npin = {{ file = {:?} }}\n",
                dir.path().join("data"),
                softhsm_module(),
                token.pin_file
            ),
        ),
        (
            "ca.key",
            format!(
                "data_dir = {:?}\n[hsm]\nmodule = {:?}\ntoken = {:?}\npin = {{ file = {:?} }}\n[ca]\nkey = \"pkcs11:object=missing-ca-key\"\n",
                dir.path().join("data"),
                softhsm_module(),
                token.label,
                token.pin_file
            ),
        ),
        (
            "hsm.pin",
            format!(
                "data_dir = {:?}\n[hsm]\nmodule = {:?}\ntoken = {:?}\npin = {{ env = \"ESIGD_TEST_NO_SUCH_VAR\" }}\n",
                dir.path().join("data"),
                softhsm_module(),
                token.label
            ),
        ),
        (
            "colour",
            "colour = \"blue\"\n[hsm]\npin = { env = \"X\" }\n".to_string(),
        ),
    ];
    for (setting, toml) in cases {
        let p = dir.path().join("case.toml");
        std::fs::write(&p, toml).unwrap();
        for cmd in ["check", "serve"] {
            let mut c = esigd();
            c.arg("--config").arg(&p).arg(cmd);
            if cmd == "serve" {
                c.args(["--public", "127.0.0.1:0", "--eservice", "127.0.0.1:0"]);
            }
            let o = run(&mut c);
            let t = text(&o);
            assert!(
                !o.status.success(),
                "{cmd} with a bad {setting} must fail:\n{t}"
            );
            assert!(
                t.contains(setting),
                "{cmd}: message must name {setting}:\n{t}"
            );
            assert!(
                !t.contains(&token.pin) && !t.contains("31337"),
                "{cmd}: PIN leaked:\n{t}"
            );
            assert!(!t.contains("panicked"), "{cmd}: panic:\n{t}");
        }
    }
}

/// A status change through the admin socket records, next to the `actor` the caller declares,
/// the caller's uid as the kernel reports it for the connection (SO_PEERCRED); it is stored and
/// shown by `esigd admin cert show`.
#[test]
fn admin_status_changes_record_the_callers_uid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = serve_dev(&data);
    let (key, csr) = (dir.path().join("user.key"), dir.path().join("user.csr"));
    let o = run(Command::new("openssl")
        .args(["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:P-256",
            "-subj",
            "/CN=requester",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    assert!(o.status.success(), "{}", text(&o));
    let admin = |args: &[&str]| {
        let o = run(esigd().arg("--data-dir").arg(&data).arg("admin").args(args));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        assert!(o.status.success(), "esigd admin {args:?}:\n{}", text(&o));
        v
    };
    let claims = r#"{"given_name":"Mari-Liis","family_name":"Männik","personal_identifier":"47101010033","country":"EE"}"#;
    let v = admin(&[
        "cert",
        "issue",
        "--csr",
        csr.to_str().unwrap(),
        "--claims",
        claims,
    ]);
    let serial = v["certificateId"].as_str().unwrap().to_owned();

    let uid = nix::unistd::getuid().as_raw();
    let v = admin(&["cert", "suspend", &serial, "--actor", "care-7"]);
    assert_eq!(v["history"][0]["actor"], "care-7", "{v}");
    assert_eq!(v["history"][0]["uid"], uid, "{v}");
    // Read back from the store.
    let v = admin(&["cert", "show", &serial]);
    assert_eq!(v["history"][0]["uid"], uid, "{v}");
    assert_eq!(v["history"].as_array().unwrap().len(), 1, "{v}");
    d.stop();
}
