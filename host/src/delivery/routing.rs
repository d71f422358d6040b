//! Where mail for a domain goes: a configured static route (a relay, possibly a smart host
//! that wants AUTH), else the domain's MX hosts in preference order, else its own address
//! (RFC 5321 §5.1, implicit MX); a null MX (RFC 7505) or a domain that does not exist can
//! never receive mail.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

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

/// One static route as configured: `"host:port"`, or a table for a smart host that wants
/// the sender to log in.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RouteConfig {
    /// A relay that takes mail without AUTH.
    Address(String),
    /// A smart host with credentials.
    SmartHost(SmartHost),
}

impl From<String> for RouteConfig {
    fn from(address: String) -> Self {
        RouteConfig::Address(address)
    }
}

impl From<&str> for RouteConfig {
    fn from(address: &str) -> Self {
        RouteConfig::Address(address.to_string())
    }
}

/// A relay that wants AUTH before it takes mail.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartHost {
    /// `host:port`, usually the submission port 587.
    pub address: String,
    /// The user name for AUTH.
    pub username: String,
    /// The password, written here...
    #[serde(default)]
    pub password: Option<String>,
    /// ...or read from this environment variable when the server starts, so the
    /// configuration file need not hold it.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Check the relay's certificate against the public roots (default). Credentials always
    /// travel over TLS; turning this off only suits a relay on a trusted network.
    #[serde(default = "verify_by_default")]
    pub verify_certificate: bool,
}

fn verify_by_default() -> bool {
    true
}

impl std::fmt::Debug for SmartHost {
    // The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartHost")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("verify_certificate", &self.verify_certificate)
            .finish_non_exhaustive()
    }
}

impl RouteConfig {
    fn address(&self) -> &str {
        match self {
            RouteConfig::Address(address) => address,
            RouteConfig::SmartHost(smart) => &smart.address,
        }
    }
}

/// What a session to a route's relay must do beyond plain SMTP.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayLogin {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
    /// Check the certificate against the public roots.
    pub verify_certificate: bool,
}

impl std::fmt::Debug for RelayLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A static route resolved for use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The relay.
    pub hop: Hop,
    /// The login it wants, if any.
    pub login: Option<RelayLogin>,
    /// The route's name in the configuration (`*` or a domain): messages with the same
    /// route share connections whatever their recipient domain.
    pub name: String,
}

/// Static routes: `domain` or `*` → a relay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes(BTreeMap<String, Route>);

/// A static route that cannot be used as configured.
#[derive(Debug, thiserror::Error)]
#[error("route {name:?}: {problem}")]
pub struct RouteError {
    name: String,
    problem: String,
}

impl Routes {
    /// Routes from the configuration's table; checks each one (a missing password is an
    /// error at start, not a failed login at every attempt).
    pub fn new(routes: &BTreeMap<String, RouteConfig>) -> Result<Self, RouteError> {
        let mut resolved = BTreeMap::new();
        for (name, config) in routes {
            let name = name.to_ascii_lowercase();
            let problem = |problem: String| RouteError {
                name: name.clone(),
                problem,
            };
            let hop = parse_hop(config.address())
                .ok_or_else(|| problem(format!("{:?} is not host:port", config.address())))?;
            let login = match config {
                RouteConfig::Address(_) => None,
                RouteConfig::SmartHost(smart) => {
                    let password = match (&smart.password, &smart.password_env) {
                        (Some(password), None) => password.clone(),
                        (None, Some(variable)) => std::env::var(variable).map_err(|_| {
                            problem(format!("the environment variable {variable} is not set"))
                        })?,
                        _ => {
                            return Err(problem(
                                "give exactly one of password and password_env".into(),
                            ));
                        }
                    };
                    Some(RelayLogin {
                        username: smart.username.clone(),
                        password,
                        verify_certificate: smart.verify_certificate,
                    })
                }
            };
            resolved.insert(
                name.clone(),
                Route {
                    hop,
                    login,
                    name: name.clone(),
                },
            );
        }
        Ok(Self(resolved))
    }

    /// The static route for a domain: an exact match, else `*`.
    pub fn get(&self, domain: &str) -> Option<&Route> {
        self.0.get(domain).or_else(|| self.0.get("*"))
    }
}

/// `host:port`, `host` (port 25), `[v6]:port` or `[v6]`.
fn parse_hop(target: &str) -> Option<Hop> {
    let (host, port) = match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            (host, port.parse().ok()?)
        }
        _ => (target, SMTP_PORT),
    };
    let host = host.trim_matches(['[', ']']);
    (!host.is_empty()).then(|| Hop {
        host: host.to_string(),
        port,
    })
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
    if let Some(route) = routes.get(&domain) {
        return Ok(Destination::Hops(vec![route.hop.clone()]));
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

    fn hop(host: &str, port: u16) -> Hop {
        Hop {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn static_routes_match_the_domain_then_the_wildcard() {
        let routes = Routes::new(&BTreeMap::from([
            ("Example.com".to_string(), "127.0.0.1:2526".into()),
            ("*".to_string(), "[::1]:2527".into()),
        ]))
        .unwrap();
        assert_eq!(
            routes.get("example.com").unwrap().hop,
            hop("127.0.0.1", 2526)
        );
        assert_eq!(routes.get("other.example").unwrap().hop, hop("::1", 2527));
        assert_eq!(routes.get("other.example").unwrap().name, "*");
        assert!(Routes::default().get("example.com").is_none());
    }

    #[test]
    fn route_addresses_may_leave_out_the_port() {
        assert_eq!(parse_hop("relay.example"), Some(hop("relay.example", 25)));
        assert_eq!(parse_hop("[::1]"), Some(hop("::1", 25)));
        assert_eq!(parse_hop("::1"), Some(hop("::1", 25)));
        assert_eq!(
            parse_hop("relay.example:587"),
            Some(hop("relay.example", 587))
        );
        assert_eq!(parse_hop("relay.example:smtp"), None);
        assert_eq!(parse_hop(""), None);
    }

    #[test]
    fn smart_hosts_are_read_from_a_table_and_need_one_password() {
        let config: BTreeMap<String, RouteConfig> = toml::from_str(
            r#"
            "plain.example" = "10.0.0.1:25"
            "*" = { address = "smtp.relay.example:587", username = "app", password = "s3cret" }
            "#,
        )
        .unwrap();
        let routes = Routes::new(&config).unwrap();
        let login = routes.get("any.example").unwrap().login.clone().unwrap();
        assert_eq!(login.username, "app");
        assert_eq!(login.password, "s3cret");
        assert!(login.verify_certificate);
        assert!(routes.get("plain.example").unwrap().login.is_none());
        assert!(!format!("{config:?}{routes:?}").contains("s3cret"));

        let neither: BTreeMap<String, RouteConfig> =
            toml::from_str(r#""*" = { address = "relay:587", username = "app" }"#).unwrap();
        let error = Routes::new(&neither).unwrap_err().to_string();
        assert!(error.contains("exactly one of password"), "{error}");
        let unset: BTreeMap<String, RouteConfig> = toml::from_str(
            r#""*" = { address = "relay:587", username = "app", password_env = "SLUICE_TEST_UNSET_VARIABLE" }"#,
        )
        .unwrap();
        let error = Routes::new(&unset).unwrap_err().to_string();
        assert!(error.contains("SLUICE_TEST_UNSET_VARIABLE"), "{error}");
    }
}
