//! Where webhook calls may go. A customer chooses the URL, so without a guard the server would
//! make requests into its own network on the customer's behalf (SSRF): to loopback admin
//! ports, cloud metadata at 169.254.169.254, private services. Unless the operator allows
//! private destinations, calls go only to public addresses, checked after DNS resolution (a
//! public name may resolve to a private address) and for address literals in the URL. A URL is
//! checked when registered too, so a customer learns at once that it cannot work.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an address is reachable on the public internet: not loopback, private, link-local,
/// shared (CGNAT), documentation, benchmarking, multicast, reserved or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space, RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, RFC 2544
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., high, low] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)) // documentation
}

/// Refuses a URL whose host is an address literal that is not public; names are checked when
/// they are resolved, by [`PublicOnly`].
pub fn check_literal(url: &reqwest::Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or("");
    // IPv6 literals keep their brackets in host_str.
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(refusal(&ip.to_string()))
    }
}

/// Refuses a URL whose host name is internal: `localhost` or a name under it (always loopback,
/// RFC 6761), or a name with any address that is not public as `resolver` (the server's own)
/// answers now. A name that does not resolve (yet) passes: the call checks again, after its
/// own resolution.
pub async fn check_name(url: &reqwest::Url, resolver: &crate::dns::Resolver) -> Result<(), String> {
    let host = url.host_str().unwrap_or("");
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok();
    if literal || host.is_empty() {
        return Ok(());
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return Err(refusal(host));
    }
    match resolver.ips(&name).await {
        Ok(ips) => match ips.into_iter().find(|ip| !is_public(*ip)) {
            Some(ip) => Err(refusal(&format!("{host} resolves to {ip}, which"))),
            None => Ok(()),
        },
        Err(error) => {
            tracing::debug!(%host, %error, "webhook host not resolved at registration");
            Ok(())
        }
    }
}

fn refusal(host: &str) -> String {
    format!(
        "{host} is not a public address; the operator allows private webhook destinations \
         with [webhooks] allow_private_destinations"
    )
}

/// A resolver that answers only the public addresses of a name (the system's resolver
/// underneath), and fails when there are none.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found
                .into_iter()
                .filter(|address| is_public(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(refusal(&host).into());
            }
            let addresses: Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(address: &str) -> bool {
        is_public(address.parse().unwrap())
    }

    #[test]
    fn private_ranges_are_not_public() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!public(address), "{address}");
        }
    }

    #[test]
    fn public_addresses_are() {
        for address in [
            "93.184.215.14",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(public(address), "{address}");
        }
    }

    #[test]
    fn literals_in_urls_are_checked() {
        let check = |url: &str| check_literal(&reqwest::Url::parse(url).unwrap());
        assert!(check("http://127.0.0.1:8080/hook").is_err());
        assert!(check("http://[::1]/hook").is_err());
        assert!(check("https://8.8.8.8/hook").is_ok());
        assert!(check("https://hooks.example.com/hook").is_ok());
    }
}
