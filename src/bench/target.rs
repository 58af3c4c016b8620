//! The server under test: its address, credentials and the paths of the API.
//!
//! A [`Target`] is resolved once from [`ServerArgs`] (URL, API key or data
//! directory) and then copied to every task and worker process. Topic names
//! are generated here too, unique per run so that runs never see each other's
//! history. With `--peer` the target points at another server
//! ([`super::peer`]): streams at its stream URL, publishes at its publish URL.

use super::args::{PeerArgs, ServerArgs};
use super::error::BenchError;
use super::peer::{Endpoint, PeerTarget, check_stream_url};
use super::tls::{Alpn, TlsTarget, Trust};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

/// Longest topic name the server accepts.
const MAX_TOPIC_LEN: usize = 200;

/// Where and how to reach the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Socket address to connect to.
    pub addr: SocketAddr,
    /// Value of the `Host` header (`host:port` as given in the URL).
    pub authority: String,
    /// Path prefix from the URL, without a trailing slash (usually empty).
    pub base_path: String,
    /// Admin key sent as `X-API-Key` (empty for a peer: none is sent).
    pub api_key: String,
    /// Set when the run measures another server (`--peer`) instead of Tidings.
    #[serde(default)]
    pub peer: Option<Box<PeerTarget>>,
    /// Discussion id per topic name when the run measures discussions
    /// (`--surface discussions`); empty for the topics API.
    #[serde(default)]
    pub discussions: BTreeMap<String, String>,
    /// Chat room id per topic name when the run measures chat rooms
    /// (`tidings bench chat`): a publish is a message posted to the room.
    #[serde(default)]
    pub rooms: BTreeMap<String, u64>,
    /// How to speak TLS to an `https://` target (`None`: plain TCP).
    #[serde(default)]
    pub tls: Option<Box<TlsTarget>>,
}

impl Target {
    /// Resolves the URL and reads the API key.
    pub async fn resolve(args: &ServerArgs) -> Result<Self, BenchError> {
        let (scheme, authority, base_path) = parse_base_url(&args.url)?;
        let addr = lookup(&authority, scheme.default_port()).await?;
        let tls = scheme.tls_target(&authority, args)?;
        let api_key = match &args.api_key {
            Some(key) if !key.trim().is_empty() => key.trim().to_string(),
            Some(_) => return Err(BenchError::usage("--api-key is empty")),
            None => read_admin_key(&args.data_dir)?,
        };
        Ok(Self {
            addr,
            authority,
            base_path,
            api_key,
            peer: None,
            discussions: BTreeMap::new(),
            rooms: BTreeMap::new(),
            tls,
        })
    }

    /// The servers at `urls` with the credentials and trust of `args` (a
    /// cluster's edges: they share the writer's keys).
    pub async fn resolve_all(args: &ServerArgs, urls: &[String]) -> Result<Vec<Self>, BenchError> {
        let mut targets = Vec::with_capacity(urls.len());
        for url in urls {
            let args = ServerArgs {
                url: url.clone(),
                ..args.clone()
            };
            targets.push(Self::resolve(&args).await?);
        }
        Ok(targets)
    }

    /// `https` for a TLS target, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The target of a `--peer` run: connections go to the stream endpoint.
    pub async fn for_peer(args: &PeerArgs) -> Result<Option<Self>, BenchError> {
        let Some(peer) = args.peer else {
            return Ok(None);
        };
        let (Some(publish_url), Some(stream_url)) = (&args.publish_url, &args.stream_url) else {
            return Err(BenchError::usage(
                "--peer needs --publish-url and --stream-url",
            ));
        };
        check_stream_url(stream_url)?;
        let publish = Endpoint::resolve(publish_url, "--publish-url").await?;
        let stream = Endpoint::resolve(stream_url, "--stream-url").await?;
        Ok(Some(Self {
            addr: stream.addr,
            authority: stream.authority.clone(),
            base_path: String::new(),
            api_key: String::new(),
            peer: Some(Box::new(PeerTarget {
                peer,
                publish,
                stream,
            })),
            discussions: BTreeMap::new(),
            rooms: BTreeMap::new(),
            tls: None,
        }))
    }

    /// Where publishes go: this target, or a peer's publish endpoint.
    pub fn publish_target(&self) -> Self {
        match &self.peer {
            None => self.clone(),
            Some(peer) => Self {
                addr: peer.publish.addr,
                authority: peer.publish.authority.clone(),
                ..self.clone()
            },
        }
    }

    /// A path under the server's base path.
    pub fn path(&self, rest: &str) -> String {
        format!("{}{rest}", self.base_path)
    }

    /// `POST` path that publishes to `topic` (a peer's publish path for every topic).
    pub fn events_path(&self, topic: &str) -> String {
        if let Some(id) = self.discussions.get(topic) {
            return self.path(&format!("/api/v1/discussions/{id}/comments"));
        }
        if let Some(id) = self.rooms.get(topic) {
            return self.path(&format!("/api/v1/rooms/{id}/messages"));
        }
        match &self.peer {
            Some(peer) => peer.publish.path.clone(),
            None => self.path(&format!("/api/v1/topics/{}/events", encode_segment(topic))),
        }
    }

    /// `GET` path of the SSE stream of `topic`.
    pub fn stream_path(&self, topic: &str) -> String {
        if let Some(id) = self.discussions.get(topic) {
            return self.path(&format!("/api/v1/stream/{id}"));
        }
        match &self.peer {
            Some(peer) => peer.stream_path(topic),
            None => self.path(&format!("/api/v1/topics/{}/stream", encode_segment(topic))),
        }
    }

    /// `GET` path of the WebSocket endpoint.
    pub fn ws_path(&self) -> String {
        self.path("/api/v1/topics/ws")
    }

    /// `GET` path of a user's chat event stream (a WebSocket).
    pub fn chat_events_path(&self) -> String {
        self.path("/api/v1/events")
    }
}

/// Whether the target speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The port used when the URL names none.
    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    /// The TLS settings of a target at `authority` (`--ca-file`, `--insecure`).
    fn tls_target(
        self,
        authority: &str,
        args: &ServerArgs,
    ) -> Result<Option<Box<TlsTarget>>, BenchError> {
        let trust = match (&args.ca_file, args.insecure) {
            (Some(path), false) => Trust::CaFile(path.clone()),
            (None, true) => Trust::Insecure,
            (None, false) => Trust::WebPki,
            (Some(_), true) => {
                return Err(BenchError::usage(
                    "--ca-file and --insecure exclude each other",
                ));
            }
        };
        match self {
            Self::Https => {
                let tls = TlsTarget {
                    server_name: host_of(authority).to_string(),
                    trust,
                };
                // A bad --ca-file or host name is a usage error before anything runs.
                tls.name()?;
                tls.client_config(Alpn::Http1)?;
                Ok(Some(Box::new(tls)))
            }
            Self::Http if trust == Trust::WebPki => Ok(None),
            Self::Http => Err(BenchError::usage(
                "--ca-file and --insecure need an https:// --url",
            )),
        }
    }
}

/// The host of `host[:port]` (IPv6 brackets removed).
fn host_of(authority: &str) -> &str {
    let host = match authority.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !authority.ends_with(']') =>
        {
            host
        }
        _ => authority,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Splits `http(s)://host:port/prefix` into scheme, authority and path prefix.
fn parse_base_url(url: &str) -> Result<(Scheme, String, String), BenchError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|err| BenchError::usage(format!("--url `{url}` is not a URL: {err}")))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => {
            return Err(BenchError::usage(format!(
                "--url `{url}` must start with http:// or https://"
            )));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| BenchError::usage(format!("--url `{url}` has no host")))?;
    if uri.query().is_some() {
        return Err(BenchError::usage(format!(
            "--url `{url}` must not have a query"
        )));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok((scheme, authority.as_str().to_string(), base_path))
}

/// Resolves `host[:port]` (`default_port` when none is given) to its first address.
pub async fn lookup(authority: &str, default_port: u16) -> Result<SocketAddr, BenchError> {
    tokio::net::lookup_host(authority_with_port(authority, default_port))
        .await
        .map_err(|err| BenchError::usage(format!("cannot resolve {authority}: {err}")))?
        .next()
        .ok_or_else(|| BenchError::usage(format!("{authority} has no address")))
}

/// `host:port`, adding `default_port` when the authority has none.
fn authority_with_port(authority: &str, default_port: u16) -> String {
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !port.is_empty() && !host.ends_with(':'))
        && !authority.ends_with(']');
    if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    }
}

/// Reads `adminKey` from `DATA_DIR/config.json` (without taking the server's lock).
pub fn read_admin_key(data_dir: &Path) -> Result<String, BenchError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct KeyOnly {
        admin_key: String,
    }
    let path = data_dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|err| {
        BenchError::usage(format!(
            "cannot read the admin key from {}: {err} (give --api-key or --data-dir)",
            path.display()
        ))
    })?;
    let parsed: KeyOnly = serde_json::from_str(&text).map_err(|err| {
        BenchError::usage(format!("{} has no usable adminKey: {err}", path.display()))
    })?;
    Ok(parsed.admin_key)
}

/// Percent-encodes everything but unreserved characters, for one path segment.
pub fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A fresh prefix `bench.<8 hex digits>` for this run's topics.
pub fn random_prefix() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        let micros = super::payload::unix_micros();
        bytes = (micros as u32).to_le_bytes();
    }
    format!("bench.{:08x}", u32::from_le_bytes(bytes))
}

/// The topic names of a run: `<prefix>.<scenario>.<index>`, checked against the server's rules.
pub fn topic_names(prefix: &str, scenario: &str, count: usize) -> Result<Vec<String>, BenchError> {
    let names: Vec<String> = (0..count)
        .map(|index| format!("{prefix}.{scenario}.{index}"))
        .collect();
    if names.iter().all(|name| is_valid_topic(name)) {
        Ok(names)
    } else {
        Err(BenchError::usage(format!(
            "--topic-prefix `{prefix}` makes invalid topic names (allowed: A-Z a-z 0-9 . _ : / -, at most {MAX_TOPIC_LEN} characters)"
        )))
    }
}

/// Whether the server accepts `name` as a topic (`[A-Za-z0-9._:/-]{1,200}`).
pub fn is_valid_topic(name: &str) -> bool {
    (1..=MAX_TOPIC_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_split_into_authority_and_prefix() {
        assert_eq!(
            parse_base_url("http://127.0.0.1:8080").expect("plain"),
            (Scheme::Http, "127.0.0.1:8080".to_string(), String::new())
        );
        assert_eq!(
            parse_base_url("http://localhost:9000/tidings/").expect("prefix"),
            (
                Scheme::Http,
                "localhost:9000".to_string(),
                "/tidings".to_string()
            )
        );
        assert_eq!(
            parse_base_url("https://localhost").expect("tls").0,
            Scheme::Https
        );
        assert!(parse_base_url("ftp://localhost").is_err());
        assert!(parse_base_url("localhost:8080").is_err());
        assert!(parse_base_url("http://x/?a=1").is_err());
        assert!(parse_base_url("not a url").is_err());
    }

    #[test]
    fn default_port_is_added_only_when_missing() {
        assert_eq!(authority_with_port("localhost", 80), "localhost:80");
        assert_eq!(authority_with_port("localhost:81", 80), "localhost:81");
        assert_eq!(authority_with_port("[::1]", 443), "[::1]:443");
        assert_eq!(authority_with_port("[::1]:81", 80), "[::1]:81");
    }

    #[test]
    fn tls_server_names_are_the_host() {
        assert_eq!(host_of("localhost:8443"), "localhost");
        assert_eq!(host_of("localhost"), "localhost");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("[::1]"), "::1");
        assert_eq!(host_of("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn topic_segments_are_encoded() {
        assert_eq!(encode_segment("a.b-c_d"), "a.b-c_d");
        assert_eq!(encode_segment("a/b:c"), "a%2Fb%3Ac");
    }

    #[test]
    fn topic_names_are_checked() {
        let names = topic_names("run1", "fanout", 2).expect("valid");
        assert_eq!(names, vec!["run1.fanout.0", "run1.fanout.1"]);
        assert!(topic_names("bad prefix", "fanout", 1).is_err());
        assert!(topic_names(&"x".repeat(250), "fanout", 1).is_err());
        let random = topic_names(&random_prefix(), "publish", 1).expect("random prefix");
        assert!(random[0].starts_with("bench."));
        assert!(!is_valid_topic(""));
    }

    #[test]
    fn admin_key_is_read_from_the_config_file() {
        let dir = std::env::temp_dir().join(format!("tidings-bench-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("config.json"), r#"{"adminKey":"adm_x","other":1}"#)
            .expect("write");
        assert_eq!(read_admin_key(&dir).expect("key"), "adm_x");
        std::fs::write(dir.join("config.json"), "{}").expect("write");
        assert!(read_admin_key(&dir).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(read_admin_key(&dir).is_err());
    }
}
