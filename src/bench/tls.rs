//! TLS for the bench's clients: how an `https://` target is trusted, and the
//! rustls client configuration every connection to it shares.
//!
//! Trust is one of: the web PKI roots (`webpki-roots`, the default), the
//! certificates of a PEM file (`--ca-file`, e.g. the server's own
//! `--tls-self-signed` certificate), or nothing at all (`--insecure`: any
//! certificate is accepted, handshake signatures are still checked; for a
//! throw-away test server only).
//!
//! Invariants: the aws-lc-rs provider is passed explicitly (never installed
//! globally); one configuration per (trust, ALPN) pair per process, so
//! every connection shares its session cache and the CA file is read once.

use super::error::BenchError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// Which certificates an `https://` target may present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trust {
    /// The web PKI roots.
    WebPki,
    /// The certificates in this PEM file.
    CaFile(PathBuf),
    /// Any certificate (`--insecure`).
    Insecure,
}

/// How to speak TLS to a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsTarget {
    /// The name the certificate must carry (the URL's host).
    pub server_name: String,
    /// What is trusted.
    pub trust: Trust,
}

/// The application protocol offered in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// `http/1.1` only (streams, WebSockets, HTTP/1.1 clients).
    Http1,
    /// `h2` only (HTTP/2 clients).
    Http2,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Self::Http1 => vec![b"http/1.1".to_vec()],
            Self::Http2 => vec![b"h2".to_vec()],
        }
    }
}

/// The configurations built so far in this process.
type Configs = HashMap<(Trust, Alpn), Arc<ClientConfig>>;

impl TlsTarget {
    /// The server name to send and verify.
    pub fn name(&self) -> Result<ServerName<'static>, BenchError> {
        ServerName::try_from(self.server_name.clone()).map_err(|err| {
            BenchError::usage(format!(
                "`{}` is not usable as a TLS server name: {err}",
                self.server_name
            ))
        })
    }

    /// The shared client configuration offering `alpn` (built on first use).
    pub fn client_config(&self, alpn: Alpn) -> Result<Arc<ClientConfig>, BenchError> {
        static CONFIGS: OnceLock<Mutex<Configs>> = OnceLock::new();
        let mut configs = CONFIGS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let key = (self.trust.clone(), alpn);
        if let Some(config) = configs.get(&key) {
            return Ok(config.clone());
        }
        let config = Arc::new(build_config(&self.trust, alpn)?);
        configs.insert(key, config.clone());
        Ok(config)
    }
}

/// A fresh client configuration.
fn build_config(trust: &Trust, alpn: Alpn) -> Result<ClientConfig, BenchError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| BenchError::run(format!("TLS setup: {err}")))?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Trust::WebPki => builder
            .with_root_certificates(RootCertStore::from_iter(
                webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
            ))
            .with_no_client_auth(),
        Trust::CaFile(path) => builder
            .with_root_certificates(roots_from_file(path)?)
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.protocols();
    Ok(config)
}

/// The certificates of a PEM file as trust anchors.
fn roots_from_file(path: &PathBuf) -> Result<RootCertStore, BenchError> {
    let unusable = |err: &dyn std::fmt::Display| {
        BenchError::usage(format!("--ca-file {}: {err}", path.display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|err| unusable(&err))? {
        let cert = cert.map_err(|err| unusable(&err))?;
        roots.add(cert).map_err(|err| unusable(&err))?;
    }
    if roots.is_empty() {
        return Err(unusable(&"no CERTIFICATE block found"));
    }
    Ok(roots)
}

/// `--insecure`: accepts any certificate, still checks that the server holds
/// its key (handshake signatures are verified with the provider's algorithms).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_shared_per_trust_and_alpn() {
        let target = TlsTarget {
            server_name: "localhost".into(),
            trust: Trust::Insecure,
        };
        let h1 = target.client_config(Alpn::Http1).expect("config");
        assert!(Arc::ptr_eq(
            &h1,
            &target.client_config(Alpn::Http1).expect("config")
        ));
        let h2 = target.client_config(Alpn::Http2).expect("config");
        assert_eq!(h2.alpn_protocols, vec![b"h2".to_vec()]);
        assert_eq!(h1.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(target.name().is_ok());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_usage_error() {
        let missing = Trust::CaFile("/nonexistent/ca.pem".into());
        assert!(build_config(&missing, Alpn::Http1).is_err());
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").expect("write");
        assert!(build_config(&Trust::CaFile(empty), Alpn::Http1).is_err());
    }
}
