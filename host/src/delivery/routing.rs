//! Where mail for a domain goes: a configured static route, else the domain's MX hosts in
//! preference order, else its own address (RFC 5321 §5.1, implicit MX); a null MX (RFC 7505)
//! or a domain that does not exist can never receive mail.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::dns::{DnsError, MxAnswer, Resolver};

/// The SMTP port, for static routes that name none.
const SMTP_PORT: u16 = 25;

/// A host to try, with the port to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The host name (or address literal) as given by the route or the MX record.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// Where a domain's mail goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// These hosts, best first.
    Hops(Vec<Hop>),
    /// The domain says it accepts no mail (null MX).
    NullMx,
    /// The domain does not exist.
    NoSuchDomain,
}

/// Static routes: `domain` or `*` → `host:port`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes(BTreeMap<String, String>);

impl Routes {
    /// Routes from the configuration's table.
    pub fn new(routes: BTreeMap<String, String>) -> Self {
        Self(
            routes
                .into_iter()
                .map(|(domain, target)| (domain.to_ascii_lowercase(), target))
                .collect(),
        )
    }

    /// The static route for a domain: an exact match, else `*`.
    pub fn get(&self, domain: &str) -> Option<Hop> {
        let target = self.0.get(domain).or_else(|| self.0.get("*"))?;
        let (host, port) = match target.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (target.as_str(), SMTP_PORT),
        };
        Some(Hop {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        })
    }
}

/// Finds where mail for `domain` goes. Errors are temporary DNS failures: try again later.
/// MX hosts are reached on `mx_port` (25, except in test set-ups).
pub async fn destination(
    routes: &Routes,
    resolver: &Resolver,
    domain: &str,
    mx_port: u16,
) -> Result<Destination, DnsError> {
    let domain = domain.to_ascii_lowercase();
    if let Some(hop) = routes.get(&domain) {
        return Ok(Destination::Hops(vec![hop]));
    }
    match resolver.mx(&domain).await {
        Ok(MxAnswer::Hosts(hosts)) => Ok(Destination::Hops(
            hosts
                .into_iter()
                .map(|mx| Hop {
                    host: mx.host,
                    port: mx_port,
                })
                .collect(),
        )),
        Ok(MxAnswer::NullMx) => Ok(Destination::NullMx),
        Ok(MxAnswer::NoMx) => Ok(Destination::Hops(vec![Hop {
            host: domain,
            port: mx_port,
        }])),
        Err(DnsError::NotFound) => Ok(Destination::NoSuchDomain),
        Err(error) => Err(error),
    }
}

/// The addresses of a hop: the literal itself, or its A/AAAA records.
pub async fn addresses(resolver: &Resolver, hop: &Hop) -> Result<Vec<SocketAddr>, DnsError> {
    if let Ok(ip) = hop.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, hop.port)]);
    }
    Ok(resolver
        .ips(&hop.host)
        .await?
        .into_iter()
        .map(|ip| SocketAddr::new(ip, hop.port))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_routes_match_the_domain_then_the_wildcard() {
        let routes = Routes::new(BTreeMap::from([
            ("Example.com".to_string(), "127.0.0.1:2526".to_string()),
            ("*".to_string(), "[::1]:2527".to_string()),
        ]));
        assert_eq!(
            routes.get("example.com"),
            Some(Hop {
                host: "127.0.0.1".into(),
                port: 2526
            })
        );
        assert_eq!(
            routes.get("other.example"),
            Some(Hop {
                host: "::1".into(),
                port: 2527
            })
        );
        assert_eq!(Routes::default().get("example.com"), None);
    }
}
