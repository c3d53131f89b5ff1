//! Who the client is, as far as limits are concerned: its address, seen
//! through the proxies the operator trusts (`TRUSTED_PROXIES`), with IPv6
//! reduced to its /64 (one host holds a whole /64, so a per-address limit on
//! full IPv6 addresses would be no limit at all).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use ipnet::IpNet;

/// `X-Forwarded-For`: the hops a request passed, client first.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address: the peer, or, when the peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not a trusted proxy itself
/// (read from the right: only the hops our proxies appended are believed).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // An unreadable hop: nothing to its left can be believed.
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// The limit key of an address: IPv4 as it is, IPv6 by its /64 (an
/// IPv4-mapped IPv6 address is its IPv4 address).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The limit key of the client of `req` (the peer address is in its
/// extensions when the server was started with connect info).
pub fn client_key<B>(req: &Request<B>, trusted: &[IpNet]) -> String {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
    address_key(client_address(peer, req.headers(), trusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append(FORWARDED_FOR, v.parse().unwrap_or_else(|_| unreachable!()));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let forged = headers(&["6.6.6.6"]);
        assert_eq!(
            client_address(ip("203.0.113.9"), &forged, &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())];
        // The client forged a first hop; our proxies appended the rest.
        let h = headers(&["6.6.6.6, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &h, &trusted),
            ip("198.51.100.7")
        );
        // A request that reached a trusted proxy without the header.
        assert_eq!(
            client_address(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        // An unreadable hop stops the walk at the last believed address.
        let h = headers(&["garbage, 10.9.9.9"]);
        assert_eq!(client_address(ip("10.0.0.1"), &h, &trusted), ip("10.9.9.9"));
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_ipv4_by_its_ipv4() {
        assert_eq!(address_key(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            address_key(ip("2001:db8:1:2:ffff::9")),
            address_key(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:3::1")),
            address_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(address_key(ip("192.0.2.1")), "192.0.2.1");
    }
}
