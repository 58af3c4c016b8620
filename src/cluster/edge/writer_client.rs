//! HTTP to the writer: hyper-util's pooled client over rustls, shared by
//! the bootstrap (the writer's backup), forwarding and the reachability
//! probe.
//!
//! Invariants: one crypto provider (aws-lc-rs), passed explicitly, as for
//! the server; `https://` writers are verified against the Mozilla roots
//! compiled in (webpki-roots); connecting gives up after
//! [`CONNECT_TIMEOUT`]; redirects are not followed.

use super::settings::WriterAddress;
use crate::error::StartupError;
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Longest wait for a connection to the writer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The pooled client to the writer.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The writer's address and a client to reach it.
#[derive(Clone)]
pub struct WriterClient {
    /// Where the writer answers.
    pub address: WriterAddress,
    /// The pooled client.
    pub http: HttpClient,
}

impl WriterClient {
    /// A client for the writer at `address`.
    pub fn new(address: WriterAddress) -> Result<Self, StartupError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(crate::http::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| StartupError::Config(format!("TLS to the writer: {err}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(https);
        Ok(Self { address, http })
    }
}
