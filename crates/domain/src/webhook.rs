//! Webhook rules without I/O: endpoint states, payload formats, the retry
//! schedule, URL checks and the address classification that keeps webhook
//! and epilog calls away from private networks (SSRF). The api checks URLs
//! with it when an endpoint is saved; the dispatcher vets every address it
//! is about to connect to with the same function.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::string_enum;

string_enum!(
    /// Whether an endpoint receives deliveries.
    EndpointStatus {
        Active => "active",
        Disabled => "disabled",
        Failed => "failed",
    }
);

string_enum!(
    /// The body shape an endpoint receives.
    PayloadFormat {
        Nested => "nested",
        Flat => "flat",
    }
);

string_enum!(
    /// Where a delivery stands.
    DeliveryStatus {
        Pending => "pending",
        Success => "success",
        Retrying => "retrying",
        Failed => "failed",
    }
);

/// Longest endpoint URL accepted.
pub const URL_MAX: usize = 2048;

/// Why a URL cannot be a webhook target (answered as `INVALID_URL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    /// Not an absolute URL.
    #[error("is not a valid absolute URL")]
    NotAUrl,
    /// Neither http nor https.
    #[error("must use http or https")]
    Scheme,
    /// http where https is required.
    #[error("must use https")]
    HttpsRequired,
    /// Carries `user:password@`.
    #[error("must not contain credentials")]
    Credentials,
    /// No host.
    #[error("must name a host")]
    NoHost,
    /// The host is, or resolves to, an address webhooks may not reach.
    #[error("resolves to a {0} address, which webhooks may not reach")]
    Forbidden(AddressClass),
}

/// Parses and checks an endpoint URL's form (not where it resolves).
pub fn parse_url(text: &str, require_https: bool) -> Result<url::Url, UrlProblem> {
    if text.len() > URL_MAX || text.trim() != text {
        return Err(UrlProblem::NotAUrl);
    }
    let url = url::Url::parse(text).map_err(|_| UrlProblem::NotAUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if !require_https => {}
        "http" => return Err(UrlProblem::HttpsRequired),
        _ => return Err(UrlProblem::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    if url.host().is_none() {
        return Err(UrlProblem::NoHost);
    }
    Ok(url)
}

/// The literal IP address of a URL's host, if it is one.
pub fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Kinds of addresses a webhook may not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918, IPv6 unique local `fc00::/7`, deprecated site-local `fec0::/10`.
    Private,
    /// `100.64.0.0/10` (RFC 6598, carrier-grade NAT; also Alibaba's metadata address).
    SharedCgnat,
    /// `169.254.0.0/16`, `fe80::/10` (cloud metadata services live here).
    LinkLocal,
    /// Well-known metadata addresses outside link-local (e.g. Azure's `168.63.129.16`).
    Metadata,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// Broadcast, reserved, benchmarking, documentation and protocol ranges.
    Reserved,
    /// An IPv6 form that hides an IPv4 address we cannot vouch for (Teredo, local NAT64).
    Tunnel,
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::SharedCgnat => "shared (CGNAT)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Metadata => "cloud metadata",
            AddressClass::Multicast => "multicast",
            AddressClass::Reserved => "reserved",
            AddressClass::Tunnel => "tunnelled",
        })
    }
}

/// `None` when a webhook may connect to `ip`; otherwise what kind of address it is.
///
/// IPv6 forms that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, NAT64
/// `64:ff9b::/96` (RFC 6052) and 6to4 `2002::/16` (RFC 3056)) are judged by
/// the IPv4 address inside. Ranges from the IANA special-purpose registries.
pub fn classify_ip(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let table: &[([u8; 4], u32, AddressClass)] = &[
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Reserved),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Reserved),
        ([198, 51, 100, 0], 24, Reserved),
        ([203, 0, 113, 0], 24, Reserved),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
        // Azure's wire server / instance metadata relay.
        ([168, 63, 129, 16], 32, Metadata),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, class)| *class)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    // Truncation keeps exactly the low 32 bits, where these forms put the IPv4 address.
    #[allow(clippy::cast_possible_truncation)]
    Ipv4Addr::from(u128::from(ip) as u32)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    // IPv4-mapped ::ffff:0:0/96, IPv4-translated ::ffff:0:0:0/96,
    // IPv4-compatible ::/96 and NAT64 64:ff9b::/96: the low 32 bits.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(ip, [0, 0, 0, 0, 0xffff, 0, 0, 0], 96)
        || in_v6(ip, [0; 8], 96)
        || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        return classify_v4(low_v4(ip));
    }
    // 6to4 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let seg = ip.segments();
        let [a, b] = seg[1].to_be_bytes();
        let [c, d] = seg[2].to_be_bytes();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    let table: &[([u16; 8], u32, AddressClass)] = &[
        // Local-use NAT64 (RFC 8215): translates into private networks.
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Tunnel),
        // Teredo (RFC 4380): the embedded client address is obfuscated.
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, Tunnel),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Reserved),
        ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, Reserved),
        ([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, Reserved),
        ([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, Reserved),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Reserved),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Reserved),
        // AWS's IPv6 instance metadata address is inside fc00::/7 below.
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, Private),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Private),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, class)| *class)
}

/// The default `WEBHOOK_RETRY_SCHEDULE`: the delay before each attempt.
pub const DEFAULT_RETRY_SCHEDULE: &str = "0s,1m,5m,30m,2h";

/// Most attempts a schedule may have.
pub const MAX_ATTEMPTS: usize = 20;
/// Longest single delay in a schedule (a week).
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a comma-separated retry schedule (`0s,1m,5m`): one delay per attempt.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let delays = text
        .split(',')
        .map(crate::duration::parse_duration)
        .collect::<Result<Vec<_>, _>>()?;
    check_schedule(&delays)?;
    Ok(delays)
}

/// A schedule has 1..=20 attempts of at most a week each.
pub fn check_schedule(delays: &[Duration]) -> Result<(), String> {
    if delays.is_empty() || delays.len() > MAX_ATTEMPTS {
        return Err(format!("must have 1 to {MAX_ATTEMPTS} attempts"));
    }
    if delays.iter().any(|d| *d > MAX_DELAY) {
        return Err("no delay may exceed 7 days".into());
    }
    Ok(())
}

/// The delay before attempt `next` (1-based) after a failure, or `None` when
/// the schedule is used up. A receiver's `Retry-After` lengthens the wait,
/// bounded by the schedule's longest delay, and never shortens it.
pub fn retry_delay(
    schedule: &[Duration],
    next: usize,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let planned = *schedule.get(next.checked_sub(1)?)?;
    let bound = schedule.iter().copied().max().unwrap_or_default();
    Some(match retry_after {
        Some(asked) => planned.max(asked.min(bound)),
        None => planned,
    })
}

/// The id of the delivery of event `event_id` to endpoint `endpoint_id`:
/// the same pair always gets the same id, so a fan-out redone after a crash
/// (or by another dispatcher) names the delivery as the first one did and
/// the receiver sees one stable `X-Tickiti-Delivery`. Shaped like a UUID v7
/// with the event's millisecond (event ids are v7), so deliveries sort and
/// prune by time like every other id; the other 74 bits are a hash of both.
pub fn delivery_id(event_id: uuid::Uuid, endpoint_id: uuid::Uuid) -> uuid::Uuid {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(event_id.as_bytes())
        .chain_update(endpoint_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    if event_id.get_version_num() == 7 {
        bytes[..6].copy_from_slice(&event_id.as_bytes()[..6]);
    }
    bytes[6] = 0x70 | (bytes[6] & 0x0F); // version 7
    bytes[8] = 0x80 | (bytes[8] & 0x3F); // RFC 9562 variant
    uuid::Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_stable_distinct_and_time_ordered() {
        let event = crate::new_id();
        let (a, b) = (crate::new_id(), crate::new_id());
        assert_eq!(delivery_id(event, a), delivery_id(event, a));
        assert_ne!(delivery_id(event, a), delivery_id(event, b));
        assert_eq!(delivery_id(event, a).get_version_num(), 7);
        assert_eq!(delivery_id(event, a).as_bytes()[..6], event.as_bytes()[..6]);
        let later = uuid::Uuid::from_u128(event.as_u128() + (1u128 << 80));
        assert!(delivery_id(later, a) > delivery_id(event, b));
    }

    fn class(text: &str) -> Option<AddressClass> {
        classify_ip(text.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        use AddressClass::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedCgnat),
            ("100.100.100.200", SharedCgnat),
            ("169.254.169.254", LinkLocal),
            ("168.63.129.16", Metadata),
            ("224.0.0.1", Multicast),
            ("255.255.255.255", Reserved),
            ("192.0.0.192", Reserved),
            ("198.18.0.1", Reserved),
            ("::", Unspecified),
            ("::1", Loopback),
            ("fc00::1", Private),
            ("fd00:ec2::254", Private),
            ("fe80::1", LinkLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Tunnel),
            ("64:ff9b:1::a00:1", Tunnel),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn embedded_ipv4_forms_are_judged_by_their_ipv4() {
        use AddressClass::*;
        for (ip, want) in [
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:10.0.0.1", Private),
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("::ffff:0:127.0.0.1", Loopback),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("2002:7f00:1::1", Loopback),
            ("2002:a9fe:a9fe::", LinkLocal),
            ("2002:c0a8:101::5", Private),
        ] {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn urls() {
        assert!(parse_url("https://example.com/hook", true).is_ok());
        assert!(parse_url("http://example.com/hook", false).is_ok());
        assert_eq!(
            parse_url("http://example.com/hook", true),
            Err(UrlProblem::HttpsRequired)
        );
        assert_eq!(parse_url("not a url", false), Err(UrlProblem::NotAUrl));
        assert_eq!(
            parse_url("ftp://example.com", false),
            Err(UrlProblem::Scheme)
        );
        assert_eq!(
            parse_url("https://u:p@example.com", false),
            Err(UrlProblem::Credentials)
        );
        let url = parse_url("http://[::ffff:127.0.0.1]:8080/", false).unwrap();
        assert_eq!(
            literal_ip(&url).and_then(classify_ip),
            Some(AddressClass::Loopback)
        );
        // Decimal and hex host spellings are normalised by the URL parser.
        let url = parse_url("http://2130706433/", false).unwrap();
        assert_eq!(
            literal_ip(&url).and_then(classify_ip),
            Some(AddressClass::Loopback)
        );
        let url = parse_url("http://0x7f.1/", false).unwrap();
        assert_eq!(
            literal_ip(&url).and_then(classify_ip),
            Some(AddressClass::Loopback)
        );
    }

    #[test]
    fn schedules() {
        let s = parse_schedule(DEFAULT_RETRY_SCHEDULE).unwrap();
        assert_eq!(
            s,
            [0, 60, 300, 1800, 7200].map(Duration::from_secs).to_vec()
        );
        assert_eq!(
            parse_schedule("0s,500ms").unwrap()[1],
            Duration::from_millis(500)
        );
        assert!(parse_schedule("").is_err());
        assert!(parse_schedule("1x").is_err());
        assert!(parse_schedule("10").is_err());
        assert_eq!(
            crate::duration::parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
    }

    #[test]
    fn retry_delays_follow_the_schedule_and_bound_retry_after() {
        let s = parse_schedule("0s,1s,2s").unwrap();
        assert_eq!(retry_delay(&s, 2, None), Some(Duration::from_secs(1)));
        assert_eq!(retry_delay(&s, 3, None), Some(Duration::from_secs(2)));
        assert_eq!(retry_delay(&s, 4, None), None);
        // Retry-After lengthens, up to the longest delay of the schedule.
        assert_eq!(
            retry_delay(&s, 2, Some(Duration::from_millis(1500))),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_delay(&s, 2, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_delay(&s, 3, Some(Duration::from_millis(10))),
            Some(Duration::from_secs(2))
        );
    }
}
