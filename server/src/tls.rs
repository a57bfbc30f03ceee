//! HTTPS without a reverse proxy: the rustls server configuration from a certificate and key
//! (the handshakes themselves happen in [`crate::net`]'s accept loop).

use std::{io, path::Path, sync::Arc};

use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// A TLS server configuration from PEM files: the certificate chain and its private key.
pub fn config_from_pem_files(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let named = |what: &str, path: &Path, e: rustls::pki_types::pem::Error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} {}: {e}", path.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| named("cannot read the certificate", cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| named("the certificate is not valid PEM:", cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| named("cannot read the private key", key, e))?;
    config(certs, key)
}

/// A TLS server configuration from a certificate chain and key.
pub fn config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the certificate and key do not make a TLS configuration: {e}"),
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
