//! The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy defines it: a load balancer
//! that relays TCP connections opens each one with a header naming the client it relays for.
//! Read, the limits per address, Sources' allowlists, the pause after failed logins and the
//! addresses recorded with opens and clicks all see the client rather than the balancer.
//!
//! A listener reads the header only from the networks it trusts, and requires it from them:
//! from anyone else a header would let a client claim any address, and a trusted balancer's
//! connection without one cannot be told from a header split by a slow network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The twelve bytes a version-2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version-1 header, its CRLF included.
const V1_MAX_BYTES: usize = 107;

/// The most bytes after a version-2 header's first sixteen that are read: the addresses (216
/// bytes for UNIX sockets) and type-length-value fields (TLS details, a unique ID) that real
/// balancers send fit many times over; a longer header is refused rather than buffered.
const V2_MAX_BODY_BYTES: usize = 2048;

/// Networks whose connections start with a PROXY header, as configured: each entry an
/// address (`10.0.0.5`) or a network (`10.0.0.0/24`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts these networks.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    /// Whether connections from `ip` come through a trusted proxy. An IPv4 address seen on
    /// an IPv6 socket (`::ffff:10.0.0.5`) is matched as the IPv4 address it is.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|network| network.contains(&ip))
    }

    /// Whether no network is trusted, so no connection is read a header from.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        entries
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        serde::de::Error::custom(format!(
                            "{entry:?} is neither an IP address nor a network such as 10.0.0.0/24"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

/// What a header says of its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// Relayed for the client at this address.
    Relayed(SocketAddr),
    /// The proxy's own connection (a health check: version 2's LOCAL), or one relayed for a
    /// client without an IP address (`UNKNOWN`, UNIX sockets): served as from the proxy.
    Local,
}

/// Why a header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The connection failed or ended before the header did.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// The connection starts with something else.
    #[error("the connection does not start with a PROXY header")]
    Missing,
    /// A header that breaks the protocol.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Reads one header off `stream`, and not a byte more: what follows is the relayed protocol.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Header, HeaderError> {
    let mut start = [0u8; 12];
    stream.read_exact(&mut start).await?;
    if start == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        stream.read_exact(&mut fixed).await?;
        let length = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        if length > V2_MAX_BODY_BYTES {
            return Err(HeaderError::Malformed("version 2 header too long"));
        }
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await?;
        parse_v2(fixed[0], fixed[1], &body)
    } else if start.starts_with(b"PROXY ") {
        // Byte by byte: the line's end is not known, and a byte read past it would be taken
        // from the relayed protocol. A balancer sends the header in one segment, so these
        // reads find their bytes waiting.
        let mut line = start.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX_BYTES || line.contains(&b'\n') {
                return Err(HeaderError::Malformed(
                    "version 1 header without CRLF in 107 bytes",
                ));
            }
            line.push(stream.read_u8().await?);
        }
        parse_v1(&line)
    } else {
        Err(HeaderError::Missing)
    }
}

/// Parses a version-1 header: `PROXY TCP4 <source> <destination> <source port> <destination
/// port>\r\n`, `TCP6` alike, or `PROXY UNKNOWN` and anything up to the CRLF.
fn parse_v1(line: &[u8]) -> Result<Header, HeaderError> {
    let text = line
        .strip_suffix(b"\r\n")
        .ok_or(HeaderError::Malformed("version 1 header without CRLF"))?;
    let text = std::str::from_utf8(text)
        .ok()
        .filter(|text| text.is_ascii() && !text.contains(['\r', '\n']))
        .ok_or(HeaderError::Malformed("version 1 header not plain ASCII"))?;
    let mut fields = text.split(' ');
    if fields.next() != Some("PROXY") {
        return Err(HeaderError::Malformed("version 1 header without PROXY"));
    }
    let family = fields.next();
    if family == Some("UNKNOWN") {
        return Ok(Header::Local);
    }
    let fields: Vec<&str> = fields.collect();
    let [source, destination, source_port, destination_port] = fields[..] else {
        return Err(HeaderError::Malformed(
            "version 1 header without four address fields",
        ));
    };
    // The destination is checked too: a header with a bad one is not trusted for its source.
    let source: IpAddr = match family {
        Some("TCP4") => {
            v1_address::<Ipv4Addr>(destination)?;
            v1_address::<Ipv4Addr>(source)?.into()
        }
        Some("TCP6") => {
            v1_address::<Ipv6Addr>(destination)?;
            v1_address::<Ipv6Addr>(source)?.into()
        }
        _ => {
            return Err(HeaderError::Malformed(
                "version 1 protocol not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    v1_port(destination_port)?;
    Ok(Header::Relayed(SocketAddr::new(
        source,
        v1_port(source_port)?,
    )))
}

fn v1_address<A: std::str::FromStr>(text: &str) -> Result<A, HeaderError> {
    text.parse()
        .map_err(|_| HeaderError::Malformed("version 1 address not of its protocol"))
}

/// A port in decimal digits: `u16::from_str` would also take a sign.
fn v1_port(text: &str) -> Result<u16, HeaderError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(HeaderError::Malformed("version 1 port not a number"));
    }
    text.parse()
        .map_err(|_| HeaderError::Malformed("version 1 port over 65535"))
}

/// Parses what follows a version-2 header's signature: its version and command byte, its
/// family and transport byte, and the `body` its length gave.
fn parse_v2(version_command: u8, family_transport: u8, body: &[u8]) -> Result<Header, HeaderError> {
    if version_command >> 4 != 2 {
        return Err(HeaderError::Malformed(
            "version 2 signature with another version",
        ));
    }
    match version_command & 0x0f {
        // LOCAL: the addresses, if any, are to be ignored.
        0 => return Ok(Header::Local),
        1 => {}
        _ => {
            return Err(HeaderError::Malformed(
                "version 2 command neither LOCAL nor PROXY",
            ));
        }
    }
    let transport = family_transport & 0x0f;
    if transport == 2 {
        return Err(HeaderError::Malformed("version 2 header for a datagram"));
    }
    let (source, port_at) = match family_transport >> 4 {
        // AF_INET: source, destination (4 bytes each), source port, destination port.
        1 if body.len() >= 12 => {
            let octets: [u8; 4] = body[0..4].try_into().expect("four bytes");
            (IpAddr::from(octets), 8)
        }
        // AF_INET6: the same with 16-byte addresses.
        2 if body.len() >= 36 => {
            let octets: [u8; 16] = body[0..16].try_into().expect("sixteen bytes");
            (IpAddr::from(octets), 32)
        }
        1 | 2 => {
            return Err(HeaderError::Malformed(
                "version 2 header shorter than its addresses",
            ));
        }
        // AF_UNSPEC and AF_UNIX: no IP address to give.
        0 | 3 => return Ok(Header::Local),
        _ => return Err(HeaderError::Malformed("version 2 address family unknown")),
    };
    if transport != 1 {
        return Err(HeaderError::Malformed(
            "version 2 address without the stream transport",
        ));
    }
    let port = u16::from_be_bytes([body[port_at], body[port_at + 1]]);
    Ok(Header::Relayed(SocketAddr::new(source, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> (Result<Header, HeaderError>, Vec<u8>) {
        let mut stream = bytes;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let header = runtime.block_on(read_header(&mut stream));
        (header, stream.to_vec())
    }

    fn relayed(address: &str) -> Header {
        Header::Relayed(address.parse().unwrap())
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.push(0x20 | command);
        bytes.push(family);
        bytes.extend((body.len() as u16).to_be_bytes());
        bytes.extend(body);
        bytes
    }

    #[test]
    fn version_1_gives_the_source_and_leaves_the_relayed_bytes() {
        let (header, rest) = read(b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\r\nEHLO x\r\n");
        assert_eq!(header.unwrap(), relayed("203.0.113.7:56324"));
        assert_eq!(rest, b"EHLO x\r\n");
        let (header, rest) =
            read(b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 443\r\nGET / HTTP/1.1\r\n");
        assert_eq!(header.unwrap(), relayed("[2001:db8::7]:65535"));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn version_1_unknown_is_the_proxys_own_connection() {
        assert_eq!(read(b"PROXY UNKNOWN\r\n").0.unwrap(), Header::Local);
        let (header, rest) = read(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nQUIT\r\n");
        assert_eq!(header.unwrap(), Header::Local);
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn malformed_version_1_headers_are_refused() {
        for bad in [
            &b"PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n"[..],
            b"PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n",
            b"PROXY TCP6 203.0.113.7 2001:db8::1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 +1 25\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 25\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 25 extra\r\n",
            b"PROXY TCP4  203.0.113.7 192.0.2.1 1 25\r\n",
            b"PROXY UDP4 203.0.113.7 192.0.2.1 1 25\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 25\n",
        ] {
            assert!(
                matches!(read(bad).0, Err(HeaderError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let endless = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
        assert!(matches!(read(&endless).0, Err(HeaderError::Malformed(_))));
    }

    #[test]
    fn a_connection_without_a_header_or_cut_short_is_refused() {
        assert!(matches!(
            read(b"EHLO client.example\r\n").0,
            Err(HeaderError::Missing)
        ));
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\n").0,
            Err(HeaderError::Missing)
        ));
        assert!(matches!(
            read(b"PROXY TCP4 203.0").0,
            Err(HeaderError::Io(_))
        ));
        assert!(matches!(
            read(&V2_SIGNATURE[..8]).0,
            Err(HeaderError::Io(_))
        ));
    }

    #[test]
    fn version_2_gives_the_source_of_either_family_and_skips_extra_fields() {
        let mut inet = vec![203, 0, 113, 7, 192, 0, 2, 1];
        inet.extend(56324u16.to_be_bytes());
        inet.extend(25u16.to_be_bytes());
        // A type-length-value field (PP2_TYPE_UNIQUE_ID) after the addresses.
        inet.extend([0x05, 0x00, 0x03, b'a', b'b', b'c']);
        let mut bytes = v2(1, 0x11, &inet);
        bytes.extend(b"EHLO x\r\n");
        let (header, rest) = read(&bytes);
        assert_eq!(header.unwrap(), relayed("203.0.113.7:56324"));
        assert_eq!(rest, b"EHLO x\r\n");

        let source: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let destination: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut inet6 = source.octets().to_vec();
        inet6.extend(destination.octets());
        inet6.extend(40000u16.to_be_bytes());
        inet6.extend(443u16.to_be_bytes());
        assert_eq!(
            read(&v2(1, 0x21, &inet6)).0.unwrap(),
            relayed("[2001:db8::7]:40000")
        );
    }

    #[test]
    fn version_2_local_unspecified_and_unix_are_the_proxys_own() {
        assert_eq!(read(&v2(0, 0x00, &[])).0.unwrap(), Header::Local);
        // LOCAL ignores whatever addresses it carries.
        assert_eq!(read(&v2(0, 0x11, &[0; 12])).0.unwrap(), Header::Local);
        assert_eq!(read(&v2(1, 0x00, &[])).0.unwrap(), Header::Local);
        assert_eq!(read(&v2(1, 0x31, &[0; 216])).0.unwrap(), Header::Local);
    }

    #[test]
    fn malformed_version_2_headers_are_refused() {
        // Addresses shorter than their family's.
        assert!(matches!(
            read(&v2(1, 0x11, &[0; 11])).0,
            Err(HeaderError::Malformed(_))
        ));
        assert!(matches!(
            read(&v2(1, 0x21, &[0; 12])).0,
            Err(HeaderError::Malformed(_))
        ));
        // A datagram, an unknown command, family or version.
        assert!(matches!(
            read(&v2(1, 0x12, &[0; 12])).0,
            Err(HeaderError::Malformed(_))
        ));
        assert!(matches!(
            read(&v2(2, 0x11, &[0; 12])).0,
            Err(HeaderError::Malformed(_))
        ));
        assert!(matches!(
            read(&v2(1, 0x41, &[0; 12])).0,
            Err(HeaderError::Malformed(_))
        ));
        let mut version_3 = v2(1, 0x11, &[0; 12]);
        version_3[12] = 0x31;
        assert!(matches!(read(&version_3).0, Err(HeaderError::Malformed(_))));
        // Longer than is ever read: refused from its length, before its body is read.
        let mut long = V2_SIGNATURE.to_vec();
        long.extend([0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(read(&long).0, Err(HeaderError::Malformed(_))));
    }

    #[test]
    fn trusted_networks_are_addresses_or_networks_and_match_mapped_addresses() {
        let trusted: TrustedProxies =
            serde_json::from_str(r#"["10.0.0.0/24", "192.0.2.9", "2001:db8::/32"]"#).unwrap();
        assert!(trusted.trusts("10.0.0.200".parse().unwrap()));
        assert!(!trusted.trusts("10.0.1.1".parse().unwrap()));
        assert!(trusted.trusts("192.0.2.9".parse().unwrap()));
        assert!(!trusted.trusts("192.0.2.10".parse().unwrap()));
        assert!(trusted.trusts("::ffff:10.0.0.5".parse().unwrap()));
        assert!(trusted.trusts("2001:db8:1::1".parse().unwrap()));
        let error = serde_json::from_str::<TrustedProxies>(r#"["balancer.internal"]"#).unwrap_err();
        assert!(error.to_string().contains("balancer.internal"), "{error}");
        assert!(TrustedProxies::default().is_empty());
    }
}
