//! The client's address: the connection's peer, or, when the peer is a
//! trusted proxy, the address the proxies say they forwarded for.
//!
//! Anyone can send `X-Forwarded-For: 1.2.3.4`. A proxy appends the address
//! it received the request from to the right of the list, so only the
//! entries appended by proxies we trust are believed: the list is walked
//! from the right, past the trusted proxies, and the first address that is
//! not a trusted proxy is the client. Entries further left were written by
//! that client (or by proxies we know nothing of) and are ignored. A peer
//! that is not a trusted proxy is the client, whatever its headers say.
//!
//! The header is one, chosen explicitly ([`ForwardedHeader`]): a proxy that
//! maintains `X-Forwarded-For` passes a client's `Forwarded` header through
//! unchanged, so believing both would let the client choose its address.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

/// The networks whose forwarding headers are believed: the reverse proxies
/// and load balancers in front of the service.
///
/// ```
/// let proxies = sealog_tower::TrustedProxies::new(["10.0.0.0/8", "fd00::/8", "192.0.2.7"])?;
/// assert!(proxies.contains("10.1.2.3".parse().unwrap()));
/// # Ok::<(), sealog_tower::ProxyListError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// An entry of a trusted-proxy list that is neither an address nor a CIDR
/// network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "trusted proxy `{entry}` is neither an IP address nor a CIDR network such as 10.0.0.0/8 or \
     fd00::/8"
)]
pub struct ProxyListError {
    /// The entry.
    pub entry: String,
}

impl TrustedProxies {
    /// No trusted proxy: the peer is always the client (the default).
    pub fn none() -> TrustedProxies {
        TrustedProxies::default()
    }

    /// Proxies given as CIDR networks (`10.0.0.0/8`) or single addresses.
    pub fn new<I, S>(entries: I) -> Result<TrustedProxies, ProxyListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for entry in entries {
            let text = entry.as_ref().trim();
            let net = IpNet::from_str(text)
                .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
                .map_err(|_| ProxyListError {
                    entry: text.to_owned(),
                })?;
            nets.push(canonical_net(net));
        }
        Ok(TrustedProxies { nets })
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network
/// it means, to match peers, which are compared in canonical form.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n);
    }
    net
}

/// Which header the trusted proxies maintain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default; what nginx,
    /// HAProxy, Envoy and the cloud load balancers set).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// Where the client's address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The client's address (`None` when the peer is unknown).
    pub client: Option<IpAddr>,
    /// The connection's peer, when it differs from the client (a proxy).
    pub via: Option<IpAddr>,
    /// The forwarding header held an entry that is not an address where
    /// the client's should have been; `client` is then the last trusted
    /// proxy.
    pub unparsable: bool,
}

/// The client's address for a request from `peer` with `headers`.
pub(crate) fn resolve(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    header: ForwardedHeader,
) -> Resolved {
    let Some(peer) = peer.map(|p| p.to_canonical()) else {
        return Resolved {
            client: None,
            via: None,
            unparsable: false,
        };
    };
    let direct = Resolved {
        client: Some(peer),
        via: None,
        unparsable: false,
    };
    if !trusted.contains(peer) {
        return direct;
    }
    let hops = match header {
        ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
        ForwardedHeader::Forwarded => forwarded(headers),
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) => {
                client = ip.to_canonical();
                if !trusted.contains(client) {
                    break;
                }
            }
            None => {
                return Resolved {
                    client: Some(client),
                    via: (client != peer).then_some(peer),
                    unparsable: true,
                };
            }
        }
    }
    Resolved {
        client: Some(client),
        via: (client != peer).then_some(peer),
        unparsable: false,
    }
}

/// The entries of every `X-Forwarded-For` line, left to right; `None` for an
/// entry that is not an address.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(text) => hops.extend(text.split(',').map(|e| parse_node(e.trim()))),
            Err(_) => hops.push(None),
        }
    }
    hops
}

/// The `for=` of every element of every `Forwarded` line, left to right;
/// `None` for an element without one or whose node is not an address
/// (`unknown`, an obfuscated `_name`).
fn forwarded(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all(http::header::FORWARDED) {
        match value.to_str() {
            Ok(text) => hops.extend(
                forwarded_for(text)
                    .into_iter()
                    .map(|node| node.and_then(|n| parse_node(&n))),
            ),
            Err(_) => hops.push(None),
        }
    }
    hops
}

/// The `for` parameter of each element of one `Forwarded` value (RFC 7239
/// section 4: elements separated by commas, pairs by semicolons, values
/// tokens or quoted strings).
fn forwarded_for(value: &str) -> Vec<Option<String>> {
    let mut elements = Vec::new();
    let mut current: Option<String> = None;
    let mut malformed = false;
    let mut pair = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let finish_pair = |pair: &mut String, current: &mut Option<String>, malformed: &mut bool| {
        let text = std::mem::take(pair);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let Some((name, value)) = text.split_once('=') else {
            *malformed = true;
            return;
        };
        if name.trim().eq_ignore_ascii_case("for") {
            match unquote(value.trim()) {
                Some(v) if current.is_none() => *current = Some(v),
                // Two `for` in one element, or a broken quoted string.
                _ => *malformed = true,
            }
        }
    };
    for c in value.chars() {
        if in_quotes {
            pair.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                pair.push(c);
            }
            ';' => finish_pair(&mut pair, &mut current, &mut malformed),
            ',' => {
                finish_pair(&mut pair, &mut current, &mut malformed);
                let element = current.take();
                elements.push(if malformed { None } else { element });
                malformed = false;
            }
            _ => pair.push(c),
        }
    }
    if in_quotes {
        malformed = true;
    }
    finish_pair(&mut pair, &mut current, &mut malformed);
    elements.push(if malformed { None } else { current });
    elements
}

fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// An address, with or without a port: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(text) {
        return Some(ip);
    }
    if let Ok(sa) = SocketAddr::from_str(text) {
        return Some(sa.ip());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    IpAddr::from_str(inner).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(["10.0.0.0/8", "192.0.2.7", "fd00::/8"]).expect("list")
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_forwards() {
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        let r = resolve(
            Some(ip("198.51.100.1")),
            &h,
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(r.client, Some(ip("198.51.100.1")));
        assert_eq!(r.via, None);
    }

    #[test]
    fn chain_is_walked_right_to_left_past_trusted_proxies() {
        // The client wrote 6.6.6.6 itself; the first proxy saw 203.0.113.9.
        let h = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.9", "10.1.1.1"]);
        let r = resolve(
            Some(ip("10.9.9.9")),
            &h,
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(r.client, Some(ip("203.0.113.9")));
        assert_eq!(r.via, Some(ip("10.9.9.9")));
        assert!(!r.unparsable);
    }

    #[test]
    fn all_trusted_chain_gives_its_leftmost_entry() {
        let h = headers("x-forwarded-for", &["10.0.0.5, 10.0.0.6"]);
        let r = resolve(
            Some(ip("10.9.9.9")),
            &h,
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(r.client, Some(ip("10.0.0.5")));
    }

    #[test]
    fn garbage_entry_stops_at_the_last_trusted_hop() {
        let h = headers("x-forwarded-for", &["203.0.113.9, not-an-ip, 10.1.1.1"]);
        let r = resolve(
            Some(ip("10.9.9.9")),
            &h,
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(r.client, Some(ip("10.1.1.1")));
        assert!(r.unparsable);
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        let r = resolve(
            Some(ip("10.9.9.9")),
            &HeaderMap::new(),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(r.client, Some(ip("10.9.9.9")));
        assert_eq!(r.via, None);
    }

    #[test]
    fn the_other_header_is_not_believed() {
        // The proxy maintains X-Forwarded-For; a client-made Forwarded
        // header passed through must not count.
        let mut h = headers("forwarded", &["for=6.6.6.6"]);
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let r = resolve(
            Some(ip("10.9.9.9")),
            &h,
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(r.client, Some(ip("203.0.113.9")));
    }

    #[test]
    fn forwarded_header_with_ports_quotes_and_other_params() {
        let h = headers(
            "forwarded",
            &[
                r#"for=6.6.6.6;proto=http, for="[2001:db8:cafe::17]:4711";by=10.0.0.1"#,
                "For=192.0.2.7:80;proto=https",
            ],
        );
        let r = resolve(
            Some(ip("10.9.9.9")),
            &h,
            &proxies(),
            ForwardedHeader::Forwarded,
        );
        assert_eq!(r.client, Some(ip("2001:db8:cafe::17")));
    }

    #[test]
    fn forwarded_unknown_or_obfuscated_node_is_unparsable() {
        let h = headers("forwarded", &["for=203.0.113.9, for=_hidden, for=10.0.0.3"]);
        let r = resolve(
            Some(ip("10.9.9.9")),
            &h,
            &proxies(),
            ForwardedHeader::Forwarded,
        );
        assert_eq!(r.client, Some(ip("10.0.0.3")));
        assert!(r.unparsable);
        assert_eq!(
            forwarded_for(r#"for="a,b";x=1, for=unknown, proto=https, for="unterminated"#),
            vec![Some("a,b".into()), Some("unknown".into()), None, None]
        );
    }

    #[test]
    fn ipv4_mapped_peer_matches_ipv4_networks() {
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        let r = resolve(
            Some(ip("::ffff:10.2.3.4")),
            &h,
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(r.client, Some(ip("203.0.113.9")));
        let mapped = TrustedProxies::new(["::ffff:10.0.0.0/104"]).expect("list");
        assert!(mapped.contains(ip("10.1.1.1")));
    }

    #[test]
    fn a_bad_list_entry_is_named() {
        let err = TrustedProxies::new(["10.0.0.0/8", "10.0.0.0/33"]).expect_err("refused");
        assert_eq!(err.entry, "10.0.0.0/33");
        assert!(err.to_string().contains("CIDR"));
    }

    #[test]
    fn unknown_peer_trusts_no_header() {
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        let r = resolve(None, &h, &proxies(), ForwardedHeader::XForwardedFor);
        assert_eq!(r.client, None);
    }
}
