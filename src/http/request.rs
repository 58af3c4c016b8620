//! The request handed to handlers: head, path parameters, and a body that is
//! read under the server's limits.
//!
//! Invariants: a body is read at most once; reading enforces `--max-body`
//! (413 before reading when `Content-Length` already says too much, 413 as
//! soon as the limit is crossed otherwise) and `--body-timeout` (408); JSON
//! bodies need a JSON content type (415) and must parse (400).

use crate::error::ApiError;
use crate::http::HttpLimits;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// One HTTP request with its route parameters.
pub struct Request {
    head: http::request::Parts,
    body: BodyState,
    params: Vec<(String, String)>,
    limits: HttpLimits,
    request_id: Arc<str>,
}

/// Where the request body is.
enum BodyState {
    /// Not read yet.
    Unread(Incoming),
    /// The request has none (a bodyless GET parsed by the lean stream path).
    Absent,
    /// Already read.
    Taken,
}

impl Request {
    /// A request from its head and, unless it has none, its body.
    pub(crate) fn new(
        head: http::request::Parts,
        body: Option<Incoming>,
        params: Vec<(String, String)>,
        limits: HttpLimits,
        request_id: Arc<str>,
    ) -> Self {
        let params = params
            .into_iter()
            .map(|(key, value)| {
                let decoded = percent_encoding::percent_decode_str(&value)
                    .decode_utf8_lossy()
                    .into_owned();
                (key, decoded)
            })
            .collect();
        Self {
            head,
            body: body.map_or(BodyState::Absent, BodyState::Unread),
            params,
            limits,
            request_id,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The URI as received.
    pub fn uri(&self) -> &Uri {
        &self.head.uri
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// A header's value when present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    }

    /// True when an `If-None-Match` line names `etag` (quoted, as sent in
    /// `ETag`) or is `*`: the client holds this version (a 304 answers).
    pub fn if_none_match(&self, etag: &str) -> bool {
        self.head
            .headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|tags| tags.to_str().ok())
            .any(|tags| matches_etag(tags, etag))
    }

    /// A path parameter named in the route pattern (`{topic}`), percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A path parameter that must be a UUID, or 400 naming it.
    pub fn uuid_param(&self, name: &str) -> Result<uuid::Uuid, ApiError> {
        let text = self.param(name).unwrap_or_default();
        uuid::Uuid::parse_str(text)
            .map_err(|_| ApiError::validation(format!("{name} `{text}` is not a UUID")))
    }

    /// Every value of a query parameter, percent-decoded, in order.
    pub fn query_params<'a>(&'a self, name: &'a str) -> impl Iterator<Item = String> + 'a {
        let query = self.head.uri.query().unwrap_or_default();
        form_urlencoded::parse(query.as_bytes())
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params(name).next()
    }

    /// The `limit` query parameter of a paged read: `default` when absent,
    /// else 1 to `max` (400 otherwise).
    pub fn limit_param(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.query_param("limit") {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=max).contains(limit))
                .ok_or_else(|| ApiError::validation(format!("limit must be 1 to {max}"))),
        }
    }

    /// The id of this request (also sent back as `x-request-id`).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Values the HTTP layer attached to the request (e.g. the CORS tenant slot).
    pub fn extensions(&self) -> &http::Extensions {
        &self.head.extensions
    }

    /// Takes the pending protocol upgrade (WebSocket) of an HTTP/1.1 request.
    pub fn take_upgrade(&mut self) -> Option<hyper::upgrade::OnUpgrade> {
        self.head.extensions.remove::<hyper::upgrade::OnUpgrade>()
    }

    /// Reads the whole body under the size and time limits.
    pub async fn body_bytes(&mut self) -> Result<Bytes, ApiError> {
        let max = self.limits.max_body_bytes;
        if let Some(declared) = self.declared_length()
            && declared > max
        {
            return Err(self.abandon_body(too_large(max)));
        }
        let body = match std::mem::replace(&mut self.body, BodyState::Taken) {
            BodyState::Unread(body) => body,
            BodyState::Absent => return Ok(Bytes::new()),
            BodyState::Taken => return Err(ApiError::internal("request body was already read")),
        };
        let limited = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
        let collected = tokio::time::timeout(self.limits.body_timeout, limited.collect())
            .await
            .map_err(|_| {
                ApiError::validation(format!(
                    "the request body did not arrive within {}",
                    humantime::format_duration(self.limits.body_timeout)
                ))
                .with_status(StatusCode::REQUEST_TIMEOUT)
            })?;
        match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                Err(self.abandon_body(too_large(max)))
            }
            Err(err) => Err(ApiError::validation(format!(
                "reading the request body failed: {err}"
            ))),
        }
    }

    /// Reads the body as JSON of type `T`.
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        self.require_json_content_type()?;
        let bytes = self.body_bytes().await?;
        serde_json::from_slice(&bytes).map_err(json_error)
    }

    /// Reads the body as JSON of type `T`, or `T::default()` when the request
    /// has no body.
    pub async fn json_or_default<T: DeserializeOwned + Default>(&mut self) -> Result<T, ApiError> {
        let empty = match &self.body {
            BodyState::Unread(body) => hyper::body::Body::is_end_stream(body),
            BodyState::Absent | BodyState::Taken => true,
        };
        if empty {
            Ok(T::default())
        } else {
            self.json().await
        }
    }

    /// The body will not be read to its end, so an HTTP/1.1 connection cannot
    /// carry another request: say so, so clients do not reuse it.
    fn abandon_body(&self, err: ApiError) -> ApiError {
        if self.head.version <= http::Version::HTTP_11 {
            err.with_header(header::CONNECTION, http::HeaderValue::from_static("close"))
        } else {
            err
        }
    }

    fn declared_length(&self) -> Option<u64> {
        self.header(header::CONTENT_LENGTH.as_str())?.parse().ok()
    }

    fn require_json_content_type(&self) -> Result<(), ApiError> {
        let content_type = self.header(header::CONTENT_TYPE.as_str()).unwrap_or("");
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
        {
            return Ok(());
        }
        let shown = if content_type.is_empty() {
            "none"
        } else {
            content_type
        };
        Err(ApiError::validation(format!(
            "the request body must be JSON with Content-Type: application/json (got {shown})"
        ))
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE))
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        crate::error::ErrorCode::PayloadTooLarge,
        format!("the request body is larger than the limit of {max} bytes (--max-body)"),
    )
}

fn json_error(err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Data => "the JSON body does not have the expected shape",
        Category::Eof => "the JSON body ends too early",
        Category::Syntax | Category::Io => "the request body is not valid JSON",
    };
    ApiError::validation(format!("{what}: {err}"))
        .with_details(serde_json::json!({ "line": err.line(), "column": err.column() }))
}

/// True when an `If-None-Match` list names `etag` (weak comparison, as the
/// header asks) or is `*`.
fn matches_etag(tags: &str, etag: &str) -> bool {
    tags.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::matches_etag;

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        assert!(matches_etag("\"a\"", "\"a\""));
        assert!(matches_etag("\"b\", W/\"a\"", "\"a\""));
        assert!(matches_etag("*", "\"a\""));
        assert!(!matches_etag("\"ab\"", "\"a\""));
    }
}
