//! HTTP/1.1 and HTTP/2 on one port, plain and over TLS, and certificate reload.

use crate::harness::{Server, json, tls_client_trusting};
use std::time::{Duration, Instant};

#[tokio::test]
async fn plain_port_serves_http1_and_prior_knowledge_h2c() {
    let server = Server::start();
    assert!(server.base.starts_with("http://127.0.0.1:"));
    let one = server
        .http1()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.version(), reqwest::Version::HTTP_11);
    assert_eq!(one.status(), 200);
    let h2 = server.h2();
    let two = h2.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(two.version(), reqwest::Version::HTTP_2);
    assert_eq!(two.status(), 200);
    let metrics = h2
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tidings_open_connections{protocol=\"h2\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn self_signed_tls_serves_http1_and_h2_via_alpn() {
    let server = Server::builder().args(&["--tls-self-signed"]).start();
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data_dir.join("tls/localhost-key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
    for (http2, version) in [
        (false, reqwest::Version::HTTP_11),
        (true, reqwest::Version::HTTP_2),
    ] {
        let response = server
            .tls_client(http2)
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(json(response).await["data"]["status"], "ok");
    }
}

#[tokio::test]
async fn the_generated_certificate_is_kept_across_restarts() {
    let mut first = Server::builder().args(&["--tls-self-signed"]).start();
    let pem = std::fs::read(first.data_dir.join("tls/localhost-cert.pem")).unwrap();
    assert!(first.stop().success());
    let second = Server::builder()
        .data_dir(&first.data_dir)
        .args(&["--tls-self-signed"])
        .start();
    assert_eq!(
        std::fs::read(second.data_dir.join("tls/localhost-cert.pem")).unwrap(),
        pem
    );
    let response = tls_client_trusting(&pem, false)
        .get(second.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn write_certificate(dir: &std::path::Path) -> Vec<u8> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    generated.cert.pem().into_bytes()
}

async fn peer_certificate(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("tls info");
    info.peer_certificate().unwrap().to_vec()
}

fn der_of(pem: &[u8]) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

#[tokio::test]
async fn sighup_reloads_pem_files_without_dropping_open_connections() {
    let certs = tempfile::tempdir().unwrap();
    let first_pem = write_certificate(certs.path());
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    let server = Server::builder()
        .args(&[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .start();
    let url = server.url("/healthz");
    let old_client = tls_client_trusting(&first_pem, false);
    assert_eq!(
        peer_certificate(&old_client, &url).await,
        der_of(&first_pem)
    );

    let second_pem = write_certificate(certs.path());
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tls_client_trusting(&second_pem, false)
        .get(&url)
        .send()
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "new connections never got the reloaded certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The pooled connection from before the reload still works and still carries the old certificate.
    assert_eq!(
        peer_certificate(&old_client, &url).await,
        der_of(&first_pem)
    );
    let fresh = tls_client_trusting(&second_pem, false);
    assert_eq!(peer_certificate(&fresh, &url).await, der_of(&second_pem));

    std::fs::write(&cert, b"garbage").unwrap();
    server.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_bad_reload = tls_client_trusting(&second_pem, false);
    assert_eq!(
        peer_certificate(&after_bad_reload, &url).await,
        der_of(&second_pem)
    );
    let logged = "TLS reload failed";
    assert!(server.stderr_once_it_contains(logged).contains(logged));
}
