//! DNS lookups for delivery (MX, A/AAAA) and authentication (TXT, CNAME), over one resolver.
//!
//! Everything that asks the DNS goes through one `Resolver`, so the nameservers the operator
//! configured (and a test's loopback server) are the only ones asked, and one cache serves all.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use serde::Deserialize;

/// The resolver's settings (`[dns]` in the configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Recursive nameservers, each asked over UDP with TCP fallback on its own port; empty means
    /// the system's (resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    /// How long one query may take, in milliseconds; unset keeps the system's or 5 s.
    pub timeout_ms: Option<u64>,
}

/// Why a lookup gave no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN) or has no records of the type asked: a final answer.
    #[error("no such DNS record")]
    NotFound,
    /// No answer could be had (timeout, SERVFAIL, I/O, a malformed name): worth retrying later.
    #[error("DNS lookup failed: {0}")]
    Failed(String),
}

/// What a domain's MX records say about delivering to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxAnswer {
    /// Mail exchangers, most preferred first; equal preferences keep the server's order.
    Hosts(Vec<MxHost>),
    /// The domain exists but has no MX records: deliver to its own A/AAAA (RFC 5321 §5.1).
    NoMx,
    /// The domain publishes a null MX (RFC 7505): it accepts no mail at all.
    NullMx,
}

/// One mail exchanger of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    /// Lower is tried first.
    pub preference: u16,
    /// The exchanger's host name, lower-case, without the trailing dot.
    pub host: String,
}

/// A caching resolver; clones share the cache and the connections.
///
/// Connections run as tasks on the runtime of the lookup that opened them, so a resolver
/// belongs with the one runtime that serves (building it needs no runtime).
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    // Held as mail-auth's type because it wraps the very resolver we use, so DKIM/SPF/DMARC
    // checks share our nameservers and cache without a second resolver.
    authenticator: mail_auth::MessageAuthenticator,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver asking the configured nameservers, or the system's when none are configured.
    pub fn new(config: &DnsConfig) -> Result<Self, DnsError> {
        let (resolver_config, options) = resolver_parts(config)?;
        let resolver =
            TokioResolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
                .with_options(options)
                .build()
                .map_err(failed)?;
        Ok(Self {
            inner: Arc::new(Inner {
                authenticator: mail_auth::MessageAuthenticator(resolver),
            }),
        })
    }

    /// mail-auth's verifier over this resolver: the same nameservers and the same cache.
    pub fn message_authenticator(&self) -> &mail_auth::MessageAuthenticator {
        &self.inner.authenticator
    }

    fn hickory(&self) -> &TokioResolver {
        &self.inner.authenticator.0
    }

    /// The TXT records at `name`, each one's character-strings joined (a long DKIM key arrives
    /// split into 255-byte pieces).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let lookup = self
            .hickory()
            .txt_lookup(fqdn(name)?)
            .await
            .map_err(from_net)?;
        let records: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::TXT(txt) => Some(join_strings(&txt.txt_data)),
                _ => None,
            })
            .collect();
        // Only a CNAME came back (its target has no TXT): nothing of the type asked.
        if records.is_empty() {
            return Err(DnsError::NotFound);
        }
        Ok(records)
    }

    /// Where `name` is an alias to, if it is one. A name that does not exist is not an alias
    /// either, so NXDOMAIN is `None` too.
    pub async fn cname(&self, name: &str) -> Result<Option<String>, DnsError> {
        let asked = fqdn(name)?;
        let lookup = match self
            .hickory()
            .lookup(asked.clone(), RecordType::CNAME)
            .await
        {
            Ok(lookup) => lookup,
            Err(error) => {
                return match from_net(error) {
                    DnsError::NotFound => Ok(None),
                    error => Err(error),
                };
            }
        };
        // Only the first link: the caller asks about this name's alias, not where a chain ends.
        Ok(lookup
            .answers()
            .iter()
            .find_map(|record| match &record.data {
                RData::CNAME(target) if record.name == asked => Some(host_name(&target.0)),
                _ => None,
            }))
    }

    /// Where mail for `domain` goes. NXDOMAIN is `Err(NotFound)`: the domain does not exist,
    /// unlike a domain without MX records, which takes mail on its address.
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let lookup = match self.hickory().mx_lookup(fqdn(domain)?).await {
            Ok(lookup) => lookup,
            Err(error) if error.is_nx_domain() => return Err(DnsError::NotFound),
            Err(error) => {
                return match from_net(error) {
                    DnsError::NotFound => Ok(MxAnswer::NoMx),
                    error => Err(error),
                };
            }
        };
        let records = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                _ => None,
            })
            .collect();
        Ok(classify_mx(records))
    }

    /// The IPv4 and IPv6 addresses of `host`, IPv4 first.
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let lookup = self
            .hickory()
            .lookup_ip(fqdn(host)?)
            .await
            .map_err(from_net)?;
        let ips: Vec<IpAddr> = lookup.iter().collect();
        if ips.is_empty() {
            return Err(DnsError::NotFound);
        }
        Ok(ips)
    }
}

fn resolver_parts(config: &DnsConfig) -> Result<(ResolverConfig, ResolverOpts), DnsError> {
    let (resolver_config, mut options) = if config.nameservers.is_empty() {
        hickory_resolver::system_conf::read_system_conf()
            .map_err(|error| DnsError::Failed(format!("cannot read the system's DNS: {error}")))?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut options = ResolverOpts::default();
        // Configured nameservers are the whole truth: /etc/hosts would make answers depend on
        // the machine (and let a test's names leak to it).
        options.use_hosts_file = ResolveHosts::Never;
        (ResolverConfig::from_parts(None, vec![], servers), options)
    };
    if let Some(ms) = config.timeout_ms {
        options.timeout = Duration::from_millis(ms);
    }
    // A delivery may go to either family; the caller picks.
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // An answer too big for UDP is retried over TCP by hickory anyway; this also covers a
    // server that fails over UDP only.
    options.try_tcp_on_error = true;
    Ok((resolver_config, options))
}

/// Mail names are always absolute: a search domain from resolv.conf must never be appended.
fn fqdn(name: &str) -> Result<Name, DnsError> {
    let mut parsed = Name::from_str_relaxed(name.trim())
        .map_err(|error| DnsError::Failed(format!("invalid name {name:?}: {error}")))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

fn host_name(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    text.strip_suffix('.').unwrap_or(&text).to_string()
}

fn join_strings(strings: &[Box<[u8]>]) -> String {
    let bytes: Vec<u8> = strings
        .iter()
        .flat_map(|part| part.iter().copied())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn classify_mx(mut records: Vec<(u16, Name)>) -> MxAnswer {
    if records.is_empty() {
        return MxAnswer::NoMx;
    }
    // RFC 7505 allows a null MX only alone; next to real exchangers it is a mistake that
    // cannot be delivered to, so it is dropped rather than refusing the real ones.
    let null = records.iter().any(|(_, exchange)| exchange.is_root());
    records.retain(|(_, exchange)| !exchange.is_root());
    if records.is_empty() && null {
        return MxAnswer::NullMx;
    }
    records.sort_by_key(|(preference, _)| *preference);
    MxAnswer::Hosts(
        records
            .into_iter()
            .map(|(preference, exchange)| MxHost {
                preference,
                host: host_name(&exchange),
            })
            .collect(),
    )
}

fn from_net(error: NetError) -> DnsError {
    if error.is_no_records_found() {
        DnsError::NotFound
    } else {
        failed(error)
    }
}

fn failed(error: impl std::fmt::Display) -> DnsError {
    DnsError::Failed(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::config::ProtocolConfig;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    #[test]
    fn config_defaults_to_the_system_resolver() {
        let config: DnsConfig = toml::from_str("").unwrap();
        assert_eq!(config, DnsConfig::default());
        assert!(config.nameservers.is_empty());
    }

    #[test]
    fn config_takes_addresses_with_ports_and_refuses_unknown_keys() {
        let config: DnsConfig =
            toml::from_str("nameservers = [\"127.0.0.1:5353\", \"[::1]:53\"]\ntimeout_ms = 250")
                .unwrap();
        assert_eq!(config.nameservers[0], "127.0.0.1:5353".parse().unwrap());
        assert_eq!(config.timeout_ms, Some(250));
        assert!(toml::from_str::<DnsConfig>("nameserver = []").is_err());
    }

    #[test]
    fn configured_nameservers_are_asked_on_their_port_over_udp_and_tcp() {
        let config = DnsConfig {
            nameservers: vec!["127.0.0.1:5353".parse().unwrap()],
            timeout_ms: Some(250),
        };
        let (resolver_config, options) = resolver_parts(&config).unwrap();
        let servers = resolver_config.name_servers();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        let connections: Vec<_> = servers[0]
            .connections
            .iter()
            .map(|c| (c.protocol.clone(), c.port))
            .collect();
        assert_eq!(
            connections,
            [(ProtocolConfig::Udp, 5353), (ProtocolConfig::Tcp, 5353)]
        );
        assert!(resolver_config.search().is_empty());
        assert_eq!(options.timeout, Duration::from_millis(250));
        assert_eq!(options.use_hosts_file, ResolveHosts::Never);
    }

    #[test]
    fn names_are_made_absolute() {
        assert!(fqdn("example.com").unwrap().is_fqdn());
        assert_eq!(fqdn("example.com.").unwrap(), name("example.com."));
        // DKIM selectors live under underscore labels.
        assert!(fqdn("s1._domainkey.example.com").is_ok());
    }

    #[test]
    fn host_names_are_lower_case_without_the_root_dot() {
        assert_eq!(host_name(&name("MX1.Example.COM.")), "mx1.example.com");
    }

    #[test]
    fn split_txt_strings_are_joined() {
        let parts: Vec<Box<[u8]>> = vec![
            vec![b'a'; 255].into_boxed_slice(),
            b"bc".to_vec().into_boxed_slice(),
        ];
        let joined = join_strings(&parts);
        assert_eq!(joined.len(), 257);
        assert!(joined.ends_with("abc"));
    }

    #[test]
    fn mx_hosts_are_ordered_by_preference() {
        let answer = classify_mx(vec![
            (20, name("b.example.com.")),
            (10, name("a.example.com.")),
            (20, name("c.example.com.")),
        ]);
        let MxAnswer::Hosts(hosts) = answer else {
            panic!("{answer:?}")
        };
        let order: Vec<_> = hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(order, ["a.example.com", "b.example.com", "c.example.com"]);
    }

    #[test]
    fn a_lone_root_exchange_is_a_null_mx() {
        assert_eq!(classify_mx(vec![(0, Name::root())]), MxAnswer::NullMx);
        assert_eq!(classify_mx(vec![]), MxAnswer::NoMx);
        assert_eq!(
            classify_mx(vec![(0, Name::root()), (10, name("mx.example.com."))]),
            MxAnswer::Hosts(vec![MxHost {
                preference: 10,
                host: "mx.example.com".into()
            }])
        );
    }

    #[test]
    fn a_resolver_is_made_outside_a_runtime_and_used_in_another() {
        // The server builds its resolver once at start-up; lookups run on whatever runtime.
        let resolver = Resolver::new(&DnsConfig {
            nameservers: vec!["127.0.0.1:9".parse().unwrap()],
            timeout_ms: Some(500),
        })
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime.block_on(resolver.txt("example.com")).unwrap_err();
        assert!(matches!(error, DnsError::Failed(_)), "{error:?}");
    }

    #[test]
    fn a_closed_port_is_a_failure_not_a_missing_record() {
        // Nothing listens on port 9 of loopback: UDP and TCP are refused at once.
        let config = DnsConfig {
            nameservers: vec!["127.0.0.1:9".parse().unwrap()],
            timeout_ms: Some(500),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime.block_on(async {
            let resolver = Resolver::new(&config).unwrap();
            resolver.txt("example.com").await.unwrap_err()
        });
        assert!(matches!(error, DnsError::Failed(_)), "{error:?}");
    }
}
