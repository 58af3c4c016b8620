//! Outbound HTTP for deliveries: hyper-util's pooled client over rustls.
//!
//! Invariants: one crypto provider (aws-lc-rs), passed explicitly, as for
//! the server; https endpoints are verified against the Mozilla roots
//! compiled in (webpki-roots, so the binary needs no system store) plus the
//! PEM certificates of `--webhook-ca-file`; redirects are not followed (a
//! 3xx is a failed attempt); at most a few KiB of a response are read; every
//! address connected to passes the [`AddressPolicy`] (names when resolved,
//! literal addresses before the request).

use super::address::AddressPolicy;
use super::outbox::AttemptError;
use crate::error::StartupError;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::time::Duration;

/// Most response bytes read (quoted in the error of a failed attempt).
const RESPONSE_LIMIT: usize = 4096;
/// Most characters of a response quoted in an error.
const QUOTED_CHARS: usize = 200;
/// Idle pooled connections are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The pooled client every delivery uses.
pub type HttpClient = Client<HttpsConnector<HttpConnector<AddressPolicy>>, Full<Bytes>>;

/// Builds the client; `ca_file` adds trusted certificates (PEM); `policy`
/// decides which resolved addresses it may connect to.
pub fn build(
    ca_file: Option<&Path>,
    connect_timeout: Duration,
    policy: AddressPolicy,
) -> Result<HttpClient, StartupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        add_pem_roots(&mut roots, path)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::http::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| StartupError::Config(format!("webhook TLS settings: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(policy);
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(https))
}

fn add_pem_roots(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), StartupError> {
    let bad = |err: &dyn std::fmt::Display| {
        StartupError::Config(format!("--webhook-ca-file {}: {err}", path.display()))
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|err| bad(&err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad(&err))?;
    if certificates.is_empty() {
        return Err(bad(&"no certificate in the file"));
    }
    for certificate in certificates {
        roots.add(certificate).map_err(|err| bad(&err))?;
    }
    Ok(())
}

/// POSTs `body` to `url` with `headers`; Ok for a 2xx response. The caller
/// bounds the time it may take.
pub async fn post(
    client: &HttpClient,
    policy: &AddressPolicy,
    url: &str,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
) -> Result<(), AttemptError> {
    let failed = |message: String| AttemptError {
        status: None,
        message,
    };
    let mut request = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("tidings/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|err| failed(format!("invalid request: {err}")))?;
    request.headers_mut().extend(headers);
    let literal = request
        .uri()
        .host()
        .map(|host| host.trim_matches(['[', ']']));
    if let Some(ip) = literal.and_then(|host| host.parse().ok()) {
        policy
            .check(ip, None)
            .map_err(|err| failed(err.to_string()))?;
    }
    let response = client
        .request(request)
        .await
        .map_err(|err| failed(error_chain(&err)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = match Limited::new(response.into_body(), RESPONSE_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => quote(&collected.to_bytes()),
        Err(_) => String::new(),
    };
    Err(AttemptError {
        status: Some(status.as_u16()),
        message: format!("HTTP {status}{text}"),
    })
}

/// `: <start of the response>` on one line, or nothing for an empty body.
fn quote(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(QUOTED_CHARS)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// An error and its causes, `outer: inner: root` (hyper's own message alone
/// says little, e.g. "client error (Connect)").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_single_lines() {
        assert_eq!(quote(b""), "");
        assert_eq!(quote(b"  \n"), "");
        assert_eq!(quote(b"oops\nsecond line"), ": oops second line");
        assert_eq!(quote("x".repeat(1000).as_bytes()).len(), 2 + QUOTED_CHARS);
    }

    #[test]
    fn a_missing_ca_file_is_a_config_error() {
        let err = build(
            Some(Path::new("/nonexistent/ca.pem")),
            Duration::from_secs(1),
            AddressPolicy::default(),
        )
        .unwrap_err();
        assert!(matches!(err, StartupError::Config(msg) if msg.contains("--webhook-ca-file")));
    }
}
