//! The client address behind a trusted reverse proxy (`listen.trusted_proxies`).
//!
//! When the public listener's TCP peer is one of the configured proxies, the address the proxy
//! received the request from is taken from `X-Forwarded-For`: the list is read from the right
//! (each proxy appends the address it saw), trusted proxies are skipped, and the first address
//! that is not a trusted proxy is the client. Everything after this layer (the TSA and metrics
//! allow-lists, the per-address session cap, logs) then sees the client, as nginx's `real_ip`
//! module does. A peer that is not a trusted proxy cannot set its address this way: its header is
//! ignored. Entries left of the client are never parsed. If a trusted proxy passes on an entry
//! that is not an IP address before the client is found, the request is refused (400): the
//! proxy's own address is never taken as the client's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use crate::canonical_ip;

/// The proxy a request came through, when [`real_client`] replaced the peer address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxiedBy(pub SocketAddr);

/// The client's address for a request from `peer`: from `X-Forwarded-For` when `peer` is in
/// `trusted`, otherwise `peer` itself.
///
/// The entries are read from the right (the nearest hop first) and only as far as the first one
/// that is not a trusted proxy: what the client wrote further left is never parsed, so it cannot
/// change the answer. `Err` names an entry that a trusted proxy passed on and that is not an IP
/// address (the client is then unknown, and the request is refused rather than guessed).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Result<IpAddr, String> {
    let peer = canonical_ip(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Ok(peer);
    }
    let mut values = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        values.push(
            value
                .to_str()
                .map_err(|_| "X-Forwarded-For is not ASCII".to_string())?,
        );
    }
    let mut farthest = peer;
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let hop = hop.trim();
        let ip = parse_hop(hop)
            .map(canonical_ip)
            .ok_or_else(|| format!("X-Forwarded-For entry {hop:?} is not an IP address"))?;
        if !is_trusted(&ip) {
            return Ok(ip);
        }
        farthest = ip;
    }
    // Every hop is a trusted proxy: the farthest one is the client.
    Ok(farthest)
}

/// An `X-Forwarded-For` entry: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]` or with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`), as proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
}

/// Middleware for the public router: replaces `ConnectInfo` with the client behind a trusted
/// proxy (keeping the proxy in [`ProxiedBy`]). Add it outside every layer that reads the address.
pub async fn real_client(
    State(trusted): State<Arc<[IpNet]>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(&ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        match client_ip(peer.ip(), req.headers(), &trusted) {
            Ok(ip) if ip != canonical_ip(peer.ip()) => {
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::new(ip, 0)));
                req.extensions_mut().insert(ProxiedBy(peer));
            }
            Ok(_) => {}
            Err(problem) => {
                // Falling back to the proxy's own address would let a client past allow-lists
                // meant for local callers; without a client address the request is refused.
                tracing::warn!(proxy = %peer.ip(), %problem, "request refused: no client address behind a trusted proxy");
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("{problem} (listen.trusted_proxies)\n"),
                )
                    .into_response();
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peers_cannot_claim_another_address() {
        let ip = client_ip(
            "203.0.113.9".parse().unwrap(),
            &headers(&["198.51.100.1"]),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip.unwrap(), "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "192.168.0.0/16"]);
        // A client-supplied entry on the left is not believed: the proxies appended the rest.
        let h = headers(&["1.1.1.1, 198.51.100.7", "192.168.1.5"]);
        let ip = client_ip("10.0.0.2".parse().unwrap(), &h, &trusted).unwrap();
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        // Ports and brackets as proxies write them; IPv4-mapped IPv6 is the IPv4 address.
        for (v, want) in [
            ("198.51.100.7:4711", "198.51.100.7"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("::ffff:198.51.100.7", "198.51.100.7"),
        ] {
            let ip = client_ip("10.0.0.2".parse().unwrap(), &headers(&[v]), &trusted).unwrap();
            assert_eq!(ip, want.parse::<IpAddr>().unwrap(), "{v}");
        }
    }

    #[test]
    fn missing_all_trusted_and_malformed_headers() {
        let trusted = nets(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(client_ip(proxy, &headers(&[]), &trusted).unwrap(), proxy);
        let all = client_ip(proxy, &headers(&["10.9.9.9, 10.0.0.3"]), &trusted).unwrap();
        assert_eq!(all, "10.9.9.9".parse::<IpAddr>().unwrap());
        // A client-written entry left of the client is never parsed: it cannot make the proxy
        // (which local allow-lists may trust) the client.
        let ip = client_ip(proxy, &headers(&["x", "203.0.113.5"]), &trusted).unwrap();
        assert_eq!(ip, "203.0.113.5".parse::<IpAddr>().unwrap());
        let ip = client_ip(proxy, &headers(&["x, 203.0.113.5"]), &trusted).unwrap();
        assert_eq!(ip, "203.0.113.5".parse::<IpAddr>().unwrap());
        // The nearest hop is not an address: the client is unknown.
        let e = client_ip(proxy, &headers(&["198.51.100.7, unknown"]), &trusted).unwrap_err();
        assert!(e.contains("\"unknown\""), "{e}");
        let e = client_ip(proxy, &headers(&["garbage, 10.0.0.3"]), &trusted).unwrap_err();
        assert!(e.contains("\"garbage\""), "{e}");
    }
}
