//! TLS: certificates from PEM files or a generated localhost certificate, ALPN
//! for HTTP/2, and reloading on SIGHUP.
//!
//! Invariants: one crypto provider (aws-lc-rs) is passed explicitly, never
//! installed globally; a reload that fails keeps the previous certificate (and
//! says why in the log); connections already open keep the certificate they
//! were accepted with, new handshakes use the newest one.

use crate::error::StartupError;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Where TLS certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    /// Plain HTTP/1.1 and h2c.
    Off,
    /// PEM files given by the operator; reloaded on SIGHUP.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// A localhost certificate generated into the data directory.
    SelfSigned,
}

/// Names and addresses the generated certificate is valid for.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The crypto provider used for every TLS and signing operation.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate and key loaded from PEM files that can be reloaded in place.
#[derive(Debug)]
pub struct ReloadableCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCertificate {
    /// Loads the pair; fails with a message naming the bad file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, StartupError> {
        let provider = crypto_provider();
        let key = load_certified_key(cert_path, key_path, &provider)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Re-reads both files; on failure the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), StartupError> {
        let key = load_certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        *current = Arc::new(key);
        Ok(())
    }

    /// The rustls server configuration (TLS 1.2 and 1.3, ALPN h2 then http/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, StartupError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| StartupError::Config(format!("TLS setup: {err}")))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        Some(current.clone())
    }
}

fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, StartupError> {
    let bad_file = |path: &Path, err: &dyn std::fmt::Display| {
        StartupError::Config(format!("TLS file {}: {err}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|err| bad_file(cert_path, &err))?
        .collect::<Result<_, _>>()
        .map_err(|err| bad_file(cert_path, &err))?;
    if chain.is_empty() {
        return Err(bad_file(cert_path, &"no CERTIFICATE block found"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|err| bad_file(key_path, &err))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|err| {
        StartupError::Config(format!(
            "TLS files {} and {} do not form a usable pair: {err}",
            cert_path.display(),
            key_path.display()
        ))
    })
}

/// Returns the paths of the localhost certificate in `dir`, generating it on first use.
pub fn ensure_self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), StartupError> {
    let cert_path = dir.join("localhost-cert.pem");
    let key_path = dir.join("localhost-key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir)
        .map_err(|err| StartupError::io(format!("creating {}", dir.display()), err))?;
    let names: Vec<String> = SELF_SIGNED_NAMES
        .iter()
        .map(|name| name.to_string())
        .collect();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|err| StartupError::io("generating a self-signed certificate", err))?;
    crate::core::datadir::write_private_file_atomically(
        &key_path,
        generated.signing_key.serialize_pem().as_bytes(),
    )?;
    crate::core::datadir::write_private_file_atomically(
        &cert_path,
        generated.cert.pem().as_bytes(),
    )?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate for localhost");
    Ok((cert_path, key_path))
}
