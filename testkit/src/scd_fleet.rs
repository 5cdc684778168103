//! Many citizens' devices on one Remote SCD service, for load tests and benchmarks of workflows
//! 9.2.1 and 9.2.2: `esigd-remote-scd` with chosen limits (e.g. a push limit and a user window
//! large enough for hundreds of sessions), a fleet of `esigd-device --cli` processes, onboarding
//! of many key slots through esigd's API with the devices answering, and the devices confirming
//! every signature waiting on them.
//!
//! Each device shows one request at a time, so the devices work in parallel (one thread each) and
//! each device's requests in turn.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::Reply;
use crate::rscd::{Device, PIN, Pki, Proc, Rscd, rscd_binary, start_device, wait_for_log};

/// Key slots per device (`SCDKeyId` 0..=15).
pub const SLOTS_PER_DEVICE: u32 = 16;

/// Starts `esigd-remote-scd serve` like [`crate::rscd::start_rscd`] but with the extra arguments
/// `extra` (e.g. `["--push-limit", "10000", "--user-window", "600s"]`) instead of the default
/// `--push-limit 50`; its log at info level.
pub fn start_rscd_with(
    pki: &Pki,
    state: &Path,
    rp_port: u16,
    device_port: u16,
    log: &Path,
    extra: &[&str],
) -> Rscd {
    let child = Command::new(rscd_binary())
        .arg("serve")
        .args(["--rp-listen", &format!("127.0.0.1:{rp_port}")])
        .arg("--rp-client-ca")
        .arg(pki.path("rscd-ca.pem"))
        .args(["--device-listen", &format!("127.0.0.1:{device_port}")])
        .arg("--cert")
        .arg(pki.path("rscd-server.pem"))
        .arg("--key")
        .arg(pki.path("rscd-server.key"))
        .arg("--state")
        .arg(state)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    let rscd = Rscd {
        proc: Proc(child),
        rp_port,
        device_port,
        log: log.to_owned(),
    };
    wait_for_log(
        &rscd.log,
        "esigd-remote-scd serving",
        Duration::from_secs(30),
    );
    rscd
}

/// Starts `n` devices on `rscd`, each with its state in `dir/device-<i>` and its log in
/// `dir/device-<i>.log`.
pub fn start_devices(pki: &Pki, rscd: &Rscd, dir: &Path, n: usize) -> Vec<Device> {
    (0..n)
        .map(|i| {
            start_device(
                pki,
                rscd,
                &dir.join(format!("device-{i}")),
                &dir.join(format!("device-{i}.log")),
            )
        })
        .collect()
}

/// Onboards `keys` key slots in all: slots 0, 1, ... of device 0, then of device 1, and so on
/// ([`SLOTS_PER_DEVICE`] per device). `create(device_id, slot)` makes the `/v1/cert/create` call
/// (it returns when the device has answered); each device answers its own requests (the right
/// code, [`PIN`], twice on first use) while the devices work in parallel. Returns, per device,
/// the pseudonyms of its onboarded keys in slot order.
pub fn onboard(
    devices: &mut [Device],
    keys: usize,
    create: &(dyn Fn(&str, u32) -> Reply + Sync),
) -> Vec<Vec<String>> {
    let per = SLOTS_PER_DEVICE as usize;
    assert!(
        keys <= devices.len() * per,
        "{keys} keys need {} devices",
        keys.div_ceil(per)
    );
    std::thread::scope(|s| {
        let hs: Vec<_> = devices
            .iter_mut()
            .enumerate()
            .map(|(i, device)| {
                let slots = keys.saturating_sub(i * per).min(per) as u32;
                s.spawn(move || {
                    let id = device.id.to_uppercase();
                    (0..slots)
                        .map(|slot| {
                            let call = s.spawn({
                                let id = id.clone();
                                move || create(&id, slot)
                            });
                            let screen = device.next();
                            assert_eq!(screen["type"], "ONBOARD", "{screen}");
                            let tx = screen["transactionId"].as_str().unwrap().to_owned();
                            let mut decision = json!({"transactionId": tx, "decision": "confirm",
                                "choice": screen["vc"], "pin": PIN});
                            if screen["choosePin"] == true {
                                decision["pinAgain"] = PIN.into();
                            }
                            let sent = device.decide(decision);
                            assert_eq!(sent["sent"], "OK", "{sent}");
                            let r = call.join().unwrap();
                            assert_eq!(r.status, 200, "{}", r.message());
                            r.json()["pseudonym"].as_str().unwrap().to_owned()
                        })
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Each device confirms with [`PIN`] the `counts[i]` signature requests that reach device `i`,
/// the devices in parallel; returns the requests' lines as shown.
pub fn confirm_signatures(devices: &mut [Device], counts: &[usize]) -> Vec<Vec<Value>> {
    std::thread::scope(|s| {
        let hs: Vec<_> = devices
            .iter_mut()
            .zip(counts)
            .map(|(device, &n)| {
                s.spawn(move || {
                    (0..n)
                        .map(|_| {
                            let screen = device.next();
                            assert_eq!(screen["type"], "SIGN", "{screen}");
                            let tx = screen["transactionId"].as_str().unwrap().to_owned();
                            let sent = device.confirm(&tx, PIN, None);
                            assert_eq!(sent["sent"], "OK", "{sent}");
                            screen
                        })
                        .collect::<Vec<Value>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}
