//! Encryption of the connections to PostgreSQL: libpq's `sslmode` and `sslrootcert` read from
//! the connection string, and the TLS connector (rustls on ring) tokio-postgres connects with.
//!
//! The settings mean what they mean to libpq, so a connection string written for `psql` keeps
//! its meaning here. `disable` never encrypts; `allow` and `prefer` (the default) encrypt
//! when the server offers it; `require` refuses a server that does not; `verify-ca` also
//! checks that the certificate chains to `sslrootcert`, and `verify-full` that it names the
//! host too. As in libpq, a root certificate given with a weaker mode has the chain checked,
//! and `sslrootcert=system` (the public roots) goes with `verify-full` only. Without a checked
//! certificate, encryption holds against a listener but not against an attacker on the path.
//!
//! The connection offers `tls-server-end-point` channel binding (RFC 5929), so SCRAM
//! authentication over TLS is bound to the certificate the server showed: an attacker who
//! relays the exchange under a certificate of its own fails it.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;

use super::postgres::PostgresError;
use crate::delivery::client::tls::AnyCertificate;

/// How far a connection to PostgreSQL is encrypted and its server checked: libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Never encrypted.
    Disable,
    /// Encrypted when the server offers it (libpq tries plain first; here it is `prefer`).
    Allow,
    /// Encrypted when the server offers it.
    Prefer,
    /// Always encrypted; the certificate is checked only when a root certificate is given.
    Require,
    /// Always encrypted, the certificate chained to the root certificates.
    VerifyCa,
    /// Always encrypted, the certificate chained to the root certificates and naming the host.
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<Self, PostgresError> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(PostgresError::Tls(format!(
                    "sslmode `{other}` is none of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                )));
            }
        })
    }

    /// What tokio-postgres is told: whether to ask for TLS, and whether to insist on it.
    fn negotiation(self) -> SslMode {
        match self {
            Self::Disable => SslMode::Disable,
            Self::Allow | Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

/// The certificates the server's chain must end at: libpq's `sslrootcert`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RootCertificates {
    /// A file of PEM certificates.
    File(PathBuf),
    /// The public web roots (`system`).
    Public,
}

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// The TLS settings a connection string carried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TlsSettings {
    mode: Option<TlsMode>,
    roots: Option<RootCertificates>,
}

/// The setting names taken out of a connection string.
const MODE_KEY: &str = "sslmode";
const ROOTS_KEY: &str = "sslrootcert";

/// Takes libpq's TLS settings out of `conninfo` (a URL or `key=value` pairs), returning the
/// rest for tokio-postgres, which knows only some of them.
fn take_tls_settings(conninfo: &str) -> Result<(String, TlsSettings), PostgresError> {
    let mut settings = TlsSettings::default();
    // Values come percent-encoded in a URL, as they are in pairs otherwise.
    let mut take = |key: &str, value: &dyn Fn() -> Result<String, PostgresError>| {
        match key {
            MODE_KEY => settings.mode = Some(TlsMode::parse(&value()?)?),
            ROOTS_KEY => {
                settings.roots = Some(match value()?.as_str() {
                    "system" => RootCertificates::Public,
                    path => RootCertificates::File(PathBuf::from(path)),
                })
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if is_url(conninfo) {
        take_from_url(conninfo, &mut take)?
    } else {
        // A string read otherwise than tokio-postgres reads it could hide an `sslmode` from
        // one of the two: it is refused instead.
        let pairs = pairs(conninfo).ok_or_else(|| {
            PostgresError::Tls(
                "the connection string is neither a postgres:// URL nor key=value pairs \
                 (a value with spaces is quoted in single quotes)"
                    .into(),
            )
        })?;
        let mut kept = Vec::new();
        for pair in pairs {
            if !take(&pair.key, &|| Ok(pair.value.clone()))? {
                kept.push(&conninfo[pair.start..pair.end]);
            }
        }
        kept.join(" ")
    };
    Ok((rest, settings))
}

fn is_url(conninfo: &str) -> bool {
    conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://")
}

/// The driver's configuration for `conninfo` and the TLS connector it connects with, the
/// TLS settings taken out and followed.
pub(super) fn configure(
    conninfo: &str,
) -> Result<(tokio_postgres::Config, PostgresTls), PostgresError> {
    let (rest, settings) = take_tls_settings(conninfo)?;
    let (negotiation, tls) = settings.connector()?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(PostgresError::Url)?;
    // What tokio-postgres read of `sslmode` itself (its default is `prefer`) is what the
    // string held beyond what was taken out of it: refused rather than overridden.
    if config.get_ssl_mode() != SslMode::Prefer {
        return Err(PostgresError::Tls(
            "sslmode is given in a form that cannot be read for sure".into(),
        ));
    }
    let unix =
        |host: &tokio_postgres::config::Host| !matches!(host, tokio_postgres::config::Host::Tcp(_));
    let hosts = config.get_hosts();
    let negotiation = if !hosts.is_empty() && hosts.iter().all(unix) {
        // As in libpq, a Unix socket is never encrypted: PostgreSQL offers no TLS there.
        SslMode::Disable
    } else if negotiation == SslMode::Require && hosts.iter().any(unix) {
        return Err(PostgresError::Tls(
            "sslmode require or verify-* with a Unix socket among the hosts: PostgreSQL \
             offers no TLS on a socket, so that host could never be reached"
                .into(),
        ));
    } else {
        negotiation
    };
    config.ssl_mode(negotiation);
    Ok((config, tls))
}

/// Where a URL's query parameters start, found as tokio-postgres finds them: the user and
/// password run to the first `@` (wherever it is), the hosts to the next `/` or `?`, the
/// database to the next `?`.
fn query_start(url: &str) -> Option<usize> {
    let scheme = url.find("://").map_or(0, |at| at + 3);
    let hosts = url[scheme..].find('@').map_or(scheme, |at| scheme + at + 1);
    let after_hosts = url[hosts..]
        .find(['/', '?'])
        .map_or(url.len(), |at| hosts + at);
    let question = url[after_hosts..].find('?')? + after_hosts;
    Some(question + 1)
}

/// The URL without the query parameters `take` took.
fn take_from_url(
    url: &str,
    take: &mut impl FnMut(
        &str,
        &dyn Fn() -> Result<String, PostgresError>,
    ) -> Result<bool, PostgresError>,
) -> Result<String, PostgresError> {
    let Some(start) = query_start(url) else {
        return Ok(url.to_string());
    };
    let (base, query) = (&url[..start - 1], &url[start..]);
    let mut kept = Vec::new();
    for parameter in query.split('&') {
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        // A key that does not decode is none of the two (tokio-postgres names its fault).
        let taken = match percent_decoded(key) {
            Some(key) => take(&key, &|| {
                percent_decoded(value).ok_or_else(|| {
                    PostgresError::Tls(format!("the value of {key} is not percent-encoded UTF-8"))
                })
            })?,
            None => false,
        };
        if !taken {
            kept.push(parameter);
        }
    }
    Ok(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

fn percent_decoded(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%' {
            let hex = std::str::from_utf8(after.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &after[2..];
        } else {
            bytes.push(byte);
            rest = after;
        }
    }
    String::from_utf8(bytes).ok()
}

/// One `key = value` pair of a connection string, with where it stands in it.
#[derive(Debug, PartialEq, Eq)]
struct Pair {
    key: String,
    value: String,
    start: usize,
    end: usize,
}

/// The pairs of a `key=value` connection string, read as libpq reads them (a value quoted in
/// single quotes may hold spaces; a backslash escapes the character after it); `None` when
/// it is malformed.
fn pairs(conninfo: &str) -> Option<Vec<Pair>> {
    let text: Vec<(usize, char)> = conninfo.char_indices().collect();
    let at = |index: usize| text.get(index).map(|&(_, c)| c);
    let offset = |index: usize| text.get(index).map_or(conninfo.len(), |&(at, _)| at);
    let skip_space = |mut index: usize| {
        while at(index).is_some_and(char::is_whitespace) {
            index += 1;
        }
        index
    };
    let mut found = Vec::new();
    let mut index = skip_space(0);
    while index < text.len() {
        let start = index;
        while at(index).is_some_and(|c| c != '=' && !c.is_whitespace()) {
            index += 1;
        }
        let key = conninfo[offset(start)..offset(index)].to_string();
        index = skip_space(index);
        if key.is_empty() || at(index) != Some('=') {
            return None;
        }
        index = skip_space(index + 1);
        let mut value = String::new();
        if at(index) == Some('\'') {
            index += 1;
            loop {
                match at(index)? {
                    '\'' => break,
                    '\\' => {
                        value.push(at(index + 1)?);
                        index += 2;
                    }
                    c => {
                        value.push(c);
                        index += 1;
                    }
                }
            }
            index += 1;
        } else {
            while let Some(c) = at(index).filter(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(at(index + 1)?);
                    index += 2;
                } else {
                    value.push(c);
                    index += 1;
                }
            }
        }
        found.push(Pair {
            key,
            value,
            start: offset(start),
            end: offset(index),
        });
        index = skip_space(index);
    }
    Some(found)
}

impl TlsSettings {
    /// The mode in force: the one given, else `verify-full` with the public roots (as libpq
    /// has it), else `prefer`.
    fn mode(&self) -> TlsMode {
        match (self.mode, &self.roots) {
            (Some(mode), _) => mode,
            (None, Some(RootCertificates::Public)) => TlsMode::VerifyFull,
            (None, _) => TlsMode::Prefer,
        }
    }

    /// How much of the certificate is checked; refuses what libpq refuses.
    fn check(&self) -> Result<Check, PostgresError> {
        let mode = self.mode();
        Ok(match (&self.roots, mode) {
            (Some(RootCertificates::Public), TlsMode::VerifyFull) => Check::ChainAndName,
            (Some(RootCertificates::Public), _) => {
                return Err(PostgresError::Tls(
                    "sslrootcert=system goes with sslmode=verify-full only: a public \
                     certificate proves nothing without its name"
                        .into(),
                ));
            }
            (_, TlsMode::Disable) => Check::Nothing,
            (None, TlsMode::VerifyCa | TlsMode::VerifyFull) => {
                return Err(PostgresError::Tls(format!(
                    "sslmode={} needs sslrootcert: a file of the CA certificates in PEM, or \
                     `system` for the public roots",
                    if mode == TlsMode::VerifyCa {
                        "verify-ca"
                    } else {
                        "verify-full"
                    }
                )));
            }
            (None, _) => Check::Nothing,
            (Some(RootCertificates::File(_)), TlsMode::VerifyFull) => Check::ChainAndName,
            (Some(RootCertificates::File(_)), _) => Check::Chain,
        })
    }

    /// What tokio-postgres is told and the connector it is given, reading the root
    /// certificates now, so a node whose file is missing or unreadable does not start.
    fn connector(&self) -> Result<(SslMode, PostgresTls), PostgresError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let check = self.check()?;
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            Check::Nothing => Arc::new(AnyCertificate(provider.signature_verification_algorithms)),
            Check::Chain | Check::ChainAndName => {
                let roots = match &self.roots {
                    Some(RootCertificates::File(path)) => roots_from_file(path)?,
                    _ => rustls::RootCertStore {
                        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                    },
                };
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|error| {
                            PostgresError::Tls(format!("the root certificates: {error}"))
                        })?;
                if check == Check::Chain {
                    Arc::new(ChainOnly(webpki))
                } else {
                    webpki
                }
            }
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // PostgreSQL 17 refuses a direct TLS handshake (`sslnegotiation=direct`) that does
        // not name its protocol; older servers ignore the name.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok((
            self.mode().negotiation(),
            PostgresTls {
                config: Arc::new(config),
            },
        ))
    }
}

/// The certificates of a PEM file, at least one.
fn roots_from_file(path: &std::path::Path) -> Result<rustls::RootCertStore, PostgresError> {
    let failed = |why: String| {
        PostgresError::Tls(format!("the root certificates {}: {why}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|error| failed(error.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
        let certificate = certificate.map_err(|error| failed(error.to_string()))?;
        roots
            .add(certificate)
            .map_err(|error| failed(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(failed("no certificate in the file".into()));
    }
    Ok(roots)
}

/// Checks the chain but not the name (`verify-ca`): a certificate the roots signed is taken
/// whatever host it names.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name: a name error means the chain held.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            outcome => outcome,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Makes the TLS connector of each connection to PostgreSQL.
#[derive(Clone)]
pub(super) struct PostgresTls {
    config: Arc<rustls::ClientConfig>,
}

impl MakeTlsConnect<Socket> for PostgresTls {
    type Stream = PostgresTlsStream;
    type TlsConnect = PostgresTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Self::TlsConnect, Self::Error> {
        // Asked for a Unix socket too, with no host: TLS is never started there.
        Ok(PostgresTlsConnect {
            connector: TlsConnector::from(self.config.clone()),
            name: ServerName::try_from(host.to_string()).map_err(|_| host.to_string()),
        })
    }
}

/// Runs one connection's TLS handshake.
pub(super) struct PostgresTlsConnect {
    connector: TlsConnector,
    /// The host's name for the certificate check, or the host that is no valid name.
    name: Result<ServerName<'static>, String>,
}

impl TlsConnect<Socket> for PostgresTlsConnect {
    type Stream = PostgresTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PostgresTlsStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let name = self.name.map_err(|host| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("`{host}` is not a host name or address a certificate can name"),
                )
            })?;
            let stream = self.connector.connect(name, socket).await?;
            Ok(PostgresTlsStream(Box::new(stream)))
        })
    }
}

/// A connection to PostgreSQL under TLS.
pub(super) struct PostgresTlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl TlsStream for PostgresTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, connection) = self.0.get_ref();
        connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|certificate| server_end_point(certificate))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

impl AsyncRead for PostgresTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PostgresTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

/// The hash functions a certificate signature can name, for channel binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndPointHash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// The `tls-server-end-point` binding of `certificate`: its hash under the hash function of
/// its own signature, SHA-256 in place of MD5 and SHA-1 (RFC 5929, section 4.1); `None` for a
/// signature with no single hash function (Ed25519), where PostgreSQL has no binding either,
/// and for RSA-PSS, whose hash is in its parameters, not read here (`channel_binding=require`
/// then fails against such a certificate).
fn server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    Some(match end_point_hash(signature_algorithm(certificate)?)? {
        EndPointHash::Sha224 => sha2::Sha224::digest(certificate).to_vec(),
        EndPointHash::Sha256 => sha2::Sha256::digest(certificate).to_vec(),
        EndPointHash::Sha384 => sha2::Sha384::digest(certificate).to_vec(),
        EndPointHash::Sha512 => sha2::Sha512::digest(certificate).to_vec(),
    })
}

/// The hash function for channel binding of a signature algorithm, by its OID's DER content.
fn end_point_hash(algorithm: &[u8]) -> Option<EndPointHash> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    if let Some(suffix) = algorithm.strip_prefix(RSA) {
        return match suffix {
            // md5WithRSAEncryption, sha1WithRSAEncryption
            [0x04] | [0x05] | [0x0b] => Some(EndPointHash::Sha256),
            [0x0c] => Some(EndPointHash::Sha384),
            [0x0d] => Some(EndPointHash::Sha512),
            [0x0e] => Some(EndPointHash::Sha224),
            _ => None,
        };
    }
    match algorithm.strip_prefix(ECDSA)? {
        // ecdsa-with-SHA1
        [0x01] | [0x03, 0x02] => Some(EndPointHash::Sha256),
        [0x03, 0x01] => Some(EndPointHash::Sha224),
        [0x03, 0x03] => Some(EndPointHash::Sha384),
        [0x03, 0x04] => Some(EndPointHash::Sha512),
        _ => None,
    }
}

/// The OID (its DER content) of a certificate's `signatureAlgorithm`: the second element of
/// the certificate's outer sequence.
fn signature_algorithm(certificate: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (certificate, _) = der_element(certificate, SEQUENCE)?;
    let (_signed_part, rest) = der_element(certificate, SEQUENCE)?;
    let (algorithm, _) = der_element(rest, SEQUENCE)?;
    let (oid, _) = der_element(algorithm, OID)?;
    Some(oid)
}

/// The content of the DER element at the start of `input` if its tag is `tag`, and what
/// follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (length, rest) = rest.split_at(octets);
        let length = length
            .iter()
            .fold(0usize, |length, &octet| length << 8 | usize::from(octet));
        (length, rest)
    };
    (rest.len() >= length).then(|| rest.split_at(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(conninfo: &str) -> (String, TlsSettings) {
        take_tls_settings(conninfo).unwrap()
    }

    #[test]
    fn the_tls_settings_are_taken_out_of_a_url() {
        let (rest, taken) = settings(
            "postgres://u:p%3Fw@db.internal:5433/sluice?application_name=node1&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fsluice%2Fca%20db.pem&connect_timeout=5",
        );
        assert_eq!(
            rest,
            "postgres://u:p%3Fw@db.internal:5433/sluice?application_name=node1&connect_timeout=5"
        );
        assert_eq!(taken.mode(), TlsMode::VerifyFull);
        assert_eq!(
            taken.roots,
            Some(RootCertificates::File("/etc/sluice/ca db.pem".into()))
        );

        let (rest, taken) = settings("postgresql://db/sluice?sslmode=require");
        assert_eq!(rest, "postgresql://db/sluice");
        assert_eq!(taken.mode(), TlsMode::Require);

        let (rest, taken) = settings("postgres://db/sluice");
        assert_eq!(rest, "postgres://db/sluice");
        assert_eq!(taken, TlsSettings::default());
        assert_eq!(taken.mode(), TlsMode::Prefer);
    }

    #[test]
    fn the_tls_settings_are_taken_out_of_key_value_pairs() {
        let (rest, taken) = settings(
            "host=db.internal  sslmode = verify-ca password='it\\'s a secret' \
             sslrootcert='/etc/sluice/ca db.pem' dbname=sluice",
        );
        assert_eq!(
            rest,
            "host=db.internal password='it\\'s a secret' dbname=sluice"
        );
        assert_eq!(taken.mode(), TlsMode::VerifyCa);
        assert_eq!(
            taken.roots,
            Some(RootCertificates::File("/etc/sluice/ca db.pem".into()))
        );
        // What tokio-postgres then reads is the same password.
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"it's a secret"[..]));

        let (rest, taken) = settings("host=/var/run/postgresql dbname=sluice");
        assert_eq!(rest, "host=/var/run/postgresql dbname=sluice");
        assert_eq!(taken.mode(), TlsMode::Prefer);
        // A string not read for sure is refused: it could hide an sslmode.
        for unread in [
            "host=db dbname",
            "host=db =x sslmode=require",
            "host=db password=ab\\",
        ] {
            assert!(
                matches!(take_tls_settings(unread), Err(PostgresError::Tls(_))),
                "{unread}"
            );
        }
        assert!(matches!(
            take_tls_settings("host=db sslmode=verify"),
            Err(PostgresError::Tls(_))
        ));
    }

    #[test]
    fn a_url_is_split_where_tokio_postgres_splits_it() {
        // A `?` in the password is not where the parameters start.
        let (rest, taken) = settings("postgres://u:pa?ss@db/x?sslmode=require");
        assert_eq!(rest, "postgres://u:pa?ss@db/x");
        assert_eq!(taken.mode(), TlsMode::Require);
        let (rest, taken) = settings("postgres://db?sslmode=verify-ca&sslrootcert=ca.pem");
        assert_eq!(rest, "postgres://db");
        assert_eq!(taken.mode(), TlsMode::VerifyCa);
        // Encoded keys are the same keys; other parameters are left as they were written.
        let (rest, taken) = settings("postgres://db/x?password=50%off&ssl%6dode=require");
        assert_eq!(rest, "postgres://db/x?password=50%off");
        assert_eq!(taken.mode(), TlsMode::Require);
    }

    #[test]
    fn the_driver_is_told_what_to_negotiate() {
        let mode = |conninfo: &str| configure(conninfo).map(|(config, _)| config.get_ssl_mode());
        assert_eq!(mode("host=db").unwrap(), SslMode::Prefer);
        assert_eq!(mode("host=db sslmode=require").unwrap(), SslMode::Require);
        assert_eq!(mode("host=db sslmode=disable").unwrap(), SslMode::Disable);
        // A Unix socket is never encrypted, whatever the mode (as in libpq)...
        assert_eq!(
            mode("host=/var/run/postgresql sslmode=require").unwrap(),
            SslMode::Disable
        );
        // ...so a socket among network hosts cannot be reached under `require`.
        assert!(matches!(
            mode("host=/var/run/postgresql,db sslmode=require"),
            Err(PostgresError::Tls(_))
        ));
        assert_eq!(
            mode("host=/var/run/postgresql,db").unwrap(),
            SslMode::Prefer
        );
    }

    #[test]
    fn the_modes_need_what_libpq_needs() {
        let check = |conninfo: &str| take_tls_settings(conninfo).unwrap().1.check();
        for (conninfo, expected) in [
            ("host=db", Check::Nothing),
            ("host=db sslmode=require", Check::Nothing),
            ("host=db sslmode=require sslrootcert=ca.pem", Check::Chain),
            ("host=db sslmode=verify-ca sslrootcert=ca.pem", Check::Chain),
            (
                "host=db sslmode=verify-full sslrootcert=ca.pem",
                Check::ChainAndName,
            ),
            ("host=db sslrootcert=system", Check::ChainAndName),
            ("host=db sslmode=disable sslrootcert=ca.pem", Check::Nothing),
        ] {
            assert_eq!(check(conninfo).unwrap(), expected, "{conninfo}");
        }
        for refused in [
            "host=db sslmode=verify-full",
            "host=db sslmode=verify-ca",
            "host=db sslmode=require sslrootcert=system",
            "host=db sslmode=disable sslrootcert=system",
        ] {
            assert!(
                matches!(check(refused), Err(PostgresError::Tls(_))),
                "{refused}"
            );
        }
        // A root file that cannot be read stops the node at start.
        let missing = take_tls_settings("host=db sslmode=verify-full sslrootcert=/nonexistent")
            .unwrap()
            .1;
        assert!(
            matches!(missing.connector(), Err(PostgresError::Tls(why)) if why.contains("/nonexistent"))
        );
    }

    /// Opens the store at `url`, saying why not.
    fn opens(url: &str) -> Result<(), String> {
        let settings = super::super::postgres::PoolSettings {
            max_connections: 2,
            ..Default::default()
        };
        super::super::postgres::open(url, settings)
            .map(drop)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn a_server_that_takes_tls_only_is_reached_as_the_mode_says() {
        use sluice_test_support::postgres::TlsCluster;
        let test = "a_server_that_takes_tls_only_is_reached_as_the_mode_says";
        let Some(cluster) = TlsCluster::start(test) else {
            return;
        };
        let url = |host: &str, parameters: &str| {
            format!(
                "postgres://postgres:{}@{host}:{}/postgres?{parameters}",
                cluster.password(),
                cluster.port()
            )
        };
        let ca = cluster.ca_file().display().to_string();
        // The chain and the name checked; the password exchange bound to the certificate.
        opens(&url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}&channel_binding=require"),
        ))
        .unwrap();
        // The default, `prefer`, encrypts where the server offers it (this one refuses
        // anything else), and so does `require`; neither checks the certificate.
        opens(&url("localhost", "")).unwrap();
        opens(&url("127.0.0.1", "sslmode=require&channel_binding=require")).unwrap();
        // The certificate names `localhost`, not 127.0.0.1: `verify-ca` takes it,
        // `verify-full` does not.
        opens(&url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        ))
        .unwrap();
        let refused = opens(&url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ))
        .unwrap_err();
        assert!(refused.contains("certificate"), "{refused}");
        // A root the certificate does not chain to fails under every mode that was given one.
        let elsewhere = tempfile::tempdir().unwrap();
        let other_ca = elsewhere.path().join("other-ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&other_ca, params.self_signed(&key).unwrap().pem()).unwrap();
        for mode in ["require", "verify-ca", "verify-full"] {
            let refused = opens(&url(
                "localhost",
                &format!("sslmode={mode}&sslrootcert={}", other_ca.display()),
            ))
            .unwrap_err();
            assert!(refused.contains("certificate"), "{mode}: {refused}");
        }
        // The server refuses a connection without TLS, so the ones above were encrypted.
        let refused = opens(&url("localhost", "sslmode=disable")).unwrap_err();
        assert!(refused.contains("pg_hba.conf"), "{refused}");
    }

    #[test]
    fn the_end_point_hash_follows_the_signature() {
        let certificate = |algorithm: &'static rcgen::SignatureAlgorithm| {
            let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
            let params = rcgen::CertificateParams::new(vec!["db.internal".into()]).unwrap();
            params.self_signed(&key).unwrap().der().to_vec()
        };
        let der = certificate(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            server_end_point(&der),
            Some(sha2::Sha384::digest(&der).to_vec())
        );
        let der = certificate(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            server_end_point(&der),
            Some(sha2::Sha256::digest(&der).to_vec())
        );
        assert_eq!(server_end_point(&certificate(&rcgen::PKCS_ED25519)), None);
        assert_eq!(
            end_point_hash(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05]),
            Some(EndPointHash::Sha256)
        );
        assert_eq!(server_end_point(b"\x30\x03\x30\x01"), None);
    }
}
