//! TLS for STARTTLS: a certificate from the configuration, or a self-signed one made on first
//! start and kept in the data folder.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from PEM files, creating a self-signed pair at `cert`/`key` for
/// `hostname` when they do not exist yet.
pub fn acceptor(cert: &Path, key: &Path, hostname: &str) -> anyhow::Result<TlsAcceptor> {
    if !cert.exists() || !key.exists() {
        let generated = rcgen::generate_simple_self_signed(vec![hostname.to_string()])?;
        if let Some(folder) = cert.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(cert, generated.cert.pem())?;
        crate::private_file::write_private(key, generated.key_pair.serialize_pem().as_bytes())?;
        tracing::info!(cert = %cert.display(), "made a self-signed certificate for STARTTLS");
    }
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
            .collect::<Result<_, _>>()?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))?
            .ok_or_else(|| anyhow::anyhow!("{} holds no private key", key.display()))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
