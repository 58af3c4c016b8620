//! What an edge is told on its command line: the shared log, the writer's
//! address and the writer's admin key.
//!
//! Invariants: the writer's address is an `http://` or `https://` origin
//! (no path, query or user part), checked once at startup; the key never
//! appears in `Debug` output or logs.

/// Settings of an edge (`serve --role edge`).
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// NATS servers of the shared log.
    pub nats: Vec<async_nats::ServerAddr>,
    /// The JetStream stream holding the writer's batches.
    pub stream: String,
    /// Where the writer answers.
    pub writer: WriterAddress,
    /// The writer's instance admin key (for its backup).
    pub writer_key: WriterKey,
}

/// The writer's origin: scheme and authority, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterAddress {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
}

impl WriterAddress {
    /// Parses `http://host:port` or `https://host[:port]` (a trailing `/`
    /// is allowed); anything else is refused with the reason.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: http::Uri = text
            .trim()
            .parse()
            .map_err(|err| format!("`{text}` is not a URL: {err}"))?;
        let scheme = uri
            .scheme()
            .filter(|s| **s == http::uri::Scheme::HTTP || **s == http::uri::Scheme::HTTPS)
            .ok_or_else(|| format!("`{text}` must start with http:// or https://"))?
            .clone();
        let authority = uri
            .authority()
            .filter(|a| !a.as_str().contains('@') && !a.host().is_empty())
            .ok_or_else(|| format!("`{text}` names no host (or has a user part)"))?
            .clone();
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "`{text}` must be the writer's origin only, without a path or query"
            ));
        }
        Ok(Self { scheme, authority })
    }

    /// The URI of `path_and_query` on the writer.
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// The host and port, for the `Host` header of forwarded requests.
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }
}

impl std::fmt::Display for WriterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// The writer's instance admin key, shown nowhere.
#[derive(Clone)]
pub struct WriterKey(String);

impl WriterKey {
    /// Wraps the key.
    pub fn new(key: &str) -> Self {
        Self(key.to_string())
    }

    /// The key itself, for the one header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WriterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterKey(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_http_origin_is_a_writer_address() {
        let address = WriterAddress::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(address.to_string(), "http://127.0.0.1:8080");
        assert_eq!(
            address.uri("/admin/v1/backup?x=1").unwrap().to_string(),
            "http://127.0.0.1:8080/admin/v1/backup?x=1"
        );
        assert!(WriterAddress::parse("https://writer.lan").is_ok());
        for bad in [
            "127.0.0.1:8080",
            "ftp://writer",
            "http://",
            "http://u:p@writer",
            "http://writer/api",
            "http://writer/?a=b",
            "not a url",
        ] {
            assert!(WriterAddress::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            format!("{:?}", WriterKey::new("adm_secret")),
            "WriterKey(…)"
        );
    }
}
