//! The connection-level IP allow-list of a TLS listener (esigd: the e-Service listener).

use std::net::IpAddr;

use ipnet::IpNet;

use esigd_reload::Reloadable;

/// Source networks allowed to open a connection to a TLS listener (esigd: the union of every e-Service's
/// `allowed_ips`). Checked right after `accept()`, before any TLS byte is read. Per-request checks (this IP
/// belongs to *this* client) stay with the application, which gets the address in `ConnectInfo`.
///
/// Clone the handle, keep one in the reload path and call [`AllowList::replace`] after a SIGHUP; connections
/// accepted afterwards use the new list. An empty list admits nobody (fail closed).
#[derive(Debug, Clone)]
pub struct AllowList(Reloadable<Vec<IpNet>>);

impl AllowList {
    /// A list of networks (e.g. `"10.1.2.0/24".parse()`).
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(Reloadable::new(normalise(nets)))
    }

    /// Installs a new list.
    pub fn replace(&self, nets: Vec<IpNet>) {
        self.0.store(normalise(nets));
    }

    /// The current networks.
    pub fn nets(&self) -> Vec<IpNet> {
        self.0.load().as_ref().clone()
    }

    /// Every address, IPv4 and IPv6 (`0.0.0.0/0`, `::/0`).
    pub fn any() -> Self {
        Self::new(vec![
            IpNet::V4(ipnet::Ipv4Net::default()),
            IpNet::V6(ipnet::Ipv6Net::default()),
        ])
    }

    /// Whether `ip` may connect. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, seen on dual-stack sockets)
    /// are matched as the IPv4 address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.load().iter().any(|net| net.contains(&ip))
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; other addresses unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// What per-address limits count as one source (`listen.max_connections_per_ip`, `ui.max_sessions_per_ip`):
/// an IPv4 address, or the /64 of an IPv6 address (one subscriber usually has a whole /64, so counting single
/// IPv6 addresses would limit nothing). IPv4-mapped IPv6 addresses count as the IPv4 address.
pub fn address_bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

/// Networks written as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) become the IPv4 network they denote, so that
/// they match canonical addresses; `trunc` drops host bits (`10.1.2.3/24` → `10.1.2.0/24`).
fn normalise(nets: Vec<IpNet>) -> Vec<IpNet> {
    nets.into_iter()
        .map(|net| match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map(IpNet::V4)
                    .unwrap_or(net),
                None => net,
            },
            other => other,
        })
        .map(|net| net.trunc())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(nets: &[&str]) -> AllowList {
        AllowList::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn matches_cidr_and_mapped_addresses() {
        let l = list(&["10.1.2.0/24", "2001:db8::/32", "::ffff:192.0.2.0/120"]);
        assert!(l.allows("10.1.2.99".parse().unwrap()));
        assert!(l.allows("::ffff:10.1.2.99".parse().unwrap()));
        assert!(!l.allows("10.1.3.1".parse().unwrap()));
        assert!(!l.allows("::ffff:10.1.3.1".parse().unwrap()));
        assert!(l.allows("2001:db8::1".parse().unwrap()));
        assert!(l.allows("192.0.2.7".parse().unwrap()));
        assert!(!l.allows("192.0.3.7".parse().unwrap()));
    }

    #[test]
    fn address_buckets_are_ipv4_addresses_and_ipv6_64s() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_bucket(a), address_bucket(b));
        assert_ne!(address_bucket(a), address_bucket(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(address_bucket(v4), v4);
        assert_eq!(address_bucket("::ffff:192.0.2.7".parse().unwrap()), v4);
    }

    #[test]
    fn empty_list_admits_nobody_and_replace_takes_effect() {
        let l = list(&[]);
        assert!(!l.allows("127.0.0.1".parse().unwrap()));
        let other = l.clone();
        other.replace(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(l.allows("127.0.0.1".parse().unwrap()));
    }
}
