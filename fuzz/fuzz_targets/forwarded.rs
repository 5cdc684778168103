//! `X-Forwarded-For` behind trusted proxies → `esigd_web::net::forwarded::client_ip`, the function
//! the public listener's `real_client` middleware calls. Input: the first byte picks the TCP peer
//! (trusted or not, IPv4, IPv6 or IPv4-mapped), the rest is split at newlines into header values
//! (a value hyper would refuse ends the case: hyper refuses such requests).
//!
//! Asserts: an untrusted peer's header is ignored; behind a trusted peer the client is an entry all
//! of whose right-hand neighbours are trusted proxies and which is not one itself, or, when every
//! entry is a trusted proxy, the farthest one; what was written left of the client never changes
//! the answer; the answer is canonical (an IPv4-mapped IPv6 address is its IPv4 address); and a
//! refusal names the header and comes from an entry that is not an address with only trusted
//! proxies right of it.
#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue};
use esigd_web::net::forwarded::client_ip;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

const PEERS: [&str; 6] = [
    "10.0.0.2",
    "::ffff:10.0.0.3",
    "fd00::7",
    "203.0.113.9",
    "2001:db8::9",
    "::ffff:198.51.100.1",
];

fn trusted() -> &'static [IpNet] {
    static NETS: OnceLock<Vec<IpNet>> = OnceLock::new();
    NETS.get_or_init(|| {
        ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8", "127.0.0.1/32"]
            .iter()
            .map(|n| n.parse().expect("network"))
            .collect()
    })
}

fn is_trusted(ip: IpAddr) -> bool {
    trusted().iter().any(|n| n.contains(&ip.to_canonical()))
}

fn headers(values: &[&[u8]]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    for v in values {
        h.append("x-forwarded-for", HeaderValue::from_bytes(v).ok()?);
    }
    Some(h)
}

/// The address an entry names, in the forms proxies write: `a.b.c.d`, `v6`, `[v6]`, with a port.
fn address(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    e.parse::<IpAddr>()
        .ok()
        .or_else(|| e.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            e.strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .and_then(|x| x.parse().ok())
        })
        .map(|ip| ip.to_canonical())
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let peer: IpAddr = PEERS[usize::from(pick) % PEERS.len()]
        .parse()
        .expect("peer");
    let values: Vec<&[u8]> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|b| *b == b'\n').collect()
    };
    let Some(h) = headers(&values) else {
        return;
    };
    let got = client_ip(peer, &h, trusted());

    if !is_trusted(peer) {
        assert_eq!(
            got,
            Ok(peer.to_canonical()),
            "an untrusted peer's header was believed"
        );
        return;
    }
    let ascii = values
        .iter()
        .all(|v| v.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\t'));
    // Entries left to right, as the proxies appended them.
    let all: Vec<&str> = values
        .iter()
        .flat_map(|v| std::str::from_utf8(v).unwrap_or("").split(','))
        .collect();
    match got {
        Ok(ip) => {
            assert_eq!(ip, ip.to_canonical(), "the client address is canonical");
            assert!(ascii || values.is_empty());
            if all.is_empty() {
                assert_eq!(ip, peer.to_canonical());
                return;
            }
            if is_trusted(ip) {
                assert!(
                    all.iter().all(|e| address(e).is_some_and(is_trusted)),
                    "{ip} (a trusted proxy) taken as the client although {all:?} has another"
                );
                assert_eq!(address(all[0]), Some(ip), "not the farthest hop of {all:?}");
                return;
            }
            let client = all
                .iter()
                .rposition(|e| address(e) == Some(ip))
                .unwrap_or_else(|| panic!("{ip} is in none of {all:?}"));
            for e in &all[client + 1..] {
                assert!(
                    address(e).is_some_and(is_trusted),
                    "{e:?} right of the client {ip} is not a trusted proxy"
                );
            }
            // What the client wrote further left does not matter.
            for left in [&b"garbage, 203.0.113.200"[..], b"10.1.1.1", b""] {
                let mut more = vec![left];
                more.extend(values.iter().copied());
                let h2 = headers(&more).expect("valid header values");
                assert_eq!(
                    client_ip(peer, &h2, trusted()),
                    Ok(ip),
                    "an entry left of the client changed the answer"
                );
            }
        }
        Err(m) => {
            assert!(m.contains("X-Forwarded-For"), "{m}");
            if ascii {
                let bad = all
                    .iter()
                    .rposition(|e| address(e).is_none())
                    .unwrap_or_else(|| panic!("refused {all:?} without a bad entry: {m}"));
                for e in &all[bad + 1..] {
                    assert!(
                        address(e).is_some_and(is_trusted),
                        "refused for {:?} left of the untrusted client {e:?}",
                        all[bad]
                    );
                }
            }
        }
    }
});
