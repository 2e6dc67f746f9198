//! The client's address, through trusted reverse proxies only, and the network it belongs to
//! (what the abuse limits and the binding MAC key on).

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;

/// `ip` with IPv4-mapped IPv6 (`::ffff:a.b.c.d`) turned into plain IPv4, so that a dual-stack
/// listener's peers compare equal to the IPv4 addresses they are.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpAddr]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|t| canonical(*t) == ip)
}

/// The client address: the peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
///
/// The chain is read from the right, and reading stops at the first entry that does not parse
/// as an address: what lies left of it was written by someone no trusted proxy vouches for, so
/// the address is then the last trusted hop's (never an entry beyond the garbage).
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for entry in entries.into_iter().rev() {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = canonical(ip);
        if !is_trusted(client, trusted) {
            break;
        }
    }
    Some(client)
}

/// The network a client address is counted in: an IPv4 address on its own, an IPv6 address
/// by its /64 (one subscriber's prefix: a client picks any address inside it at will).
pub(crate) fn network(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_only_believed_from_trusted_proxies() {
        let h = xff("1.1.1.1, 2.2.2.2");
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(client_ip(Some(other), &h, &[proxy]), Some(other));
        assert_eq!(client_ip(Some(proxy), &h, &[proxy]), "2.2.2.2".parse().ok());
        let trusted_chain = ["10.0.0.1".parse().unwrap(), "2.2.2.2".parse().unwrap()];
        assert_eq!(
            client_ip(Some(proxy), &h, &trusted_chain),
            "1.1.1.1".parse().ok()
        );
        assert_eq!(
            client_ip(Some(proxy), &HeaderMap::new(), &[proxy]),
            Some(proxy)
        );
    }

    #[test]
    fn xff_parsing_stops_at_an_unparsable_entry() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let inner: IpAddr = "10.0.0.2".parse().unwrap();
        // "6.6.6.6" is left of garbage: nobody trusted wrote it, it must never win.
        let h = xff("6.6.6.6, not-an-ip, 10.0.0.2");
        assert_eq!(client_ip(Some(proxy), &h, &[proxy, inner]), Some(inner));
        let h = xff("6.6.6.6, 3.3.3.3:8080");
        assert_eq!(client_ip(Some(proxy), &h, &[proxy]), Some(proxy));
        let h = xff("6.6.6.6,");
        assert_eq!(client_ip(Some(proxy), &h, &[proxy]), Some(proxy));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_trusted_proxies() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let h = xff("1.1.1.1");
        assert_eq!(
            client_ip(Some(mapped), &h, &[proxy]),
            "1.1.1.1".parse().ok()
        );
        // And the other way round, and for the entries themselves.
        let h = xff("::ffff:1.1.1.1");
        assert_eq!(
            client_ip(Some(proxy), &h, &[mapped]),
            "1.1.1.1".parse().ok()
        );
        assert_eq!(
            client_ip(Some(mapped), &HeaderMap::new(), &[]),
            "10.0.0.1".parse().ok()
        );
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network(a), network(b));
        assert_ne!(network(a), network(c));
        assert_eq!(network("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_ne!(
            network("192.0.2.1".parse().unwrap()),
            network("192.0.2.2".parse().unwrap())
        );
    }
}
