//! Webhook endpoints: the stored record, what the admin API may set and how
//! it is checked, the JSON the API shows, and the in-memory index that
//! the writer's staging observer reads on the writer thread.
//!
//! Invariants: a stored endpoint always passed validation (http/https URL
//! with a host and no credentials, a secret of 16–256 visible characters,
//! valid distinct event types); its signing secret is stored (we sign with
//! it; the data directory is 0700) but never shown after creation; every
//! change bumps `version` and the index never replaces a record with an
//! older version, nor brings back one that was removed.

use super::address::AddressPolicy;
use super::layout;
use crate::core::log::validate_event_type;
use crate::core::writer::Change;
use crate::error::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use uuid::Uuid;

/// Prefix of generated signing secrets.
pub const SECRET_PREFIX: &str = "whsec";
/// Longest endpoint URL.
const MAX_URL_LEN: usize = 2048;
/// Most event types in one filter.
const MAX_EVENT_TYPES: usize = 100;
/// Longest description.
const MAX_DESCRIPTION_LEN: usize = 500;

/// A tenant's webhook endpoint as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Endpoint id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant: Uuid,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The HMAC key (shown once, at creation).
    pub secret: String,
    /// Exact event types delivered; empty means all.
    pub event_types: Vec<String>,
    /// False when paused by an operator or disabled for failing.
    pub enabled: bool,
    /// Free text for operators.
    pub description: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change by an operator (RFC 3339).
    pub updated_at: String,
    /// Deliveries given up in a row since the last success.
    pub consecutive_failures: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the last attempt failed (RFC 3339).
    pub last_error_at: Option<String>,
    /// When the endpoint was disabled for failing (RFC 3339).
    pub disabled_at: Option<String>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Incremented by every stored change.
    pub version: u64,
    /// Set while its deliveries are being removed, before the record goes.
    #[serde(default)]
    pub deleted: bool,
}

impl Endpoint {
    /// True when deliveries of `event_type` are queued for this endpoint.
    pub fn accepts(&self, event_type: &str) -> bool {
        self.enabled
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }

    /// The record's key.
    pub fn key(&self) -> Vec<u8> {
        layout::endpoint(Some(&self.tenant), Some(&self.id))
    }

    /// The endpoint as the API shows it (never the secret).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "tenant": self.tenant, "url": self.url,
            "description": self.description, "eventTypes": self.event_types,
            "enabled": self.enabled, "createdAt": self.created_at, "updatedAt": self.updated_at,
            "consecutiveFailures": self.consecutive_failures, "lastError": self.last_error,
            "lastErrorAt": self.last_error_at, "disabledAt": self.disabled_at,
            "disabledReason": self.disabled_reason,
        })
    }

    /// Encodes the record.
    pub fn encode(&self) -> Result<Vec<u8>, ApiError> {
        serde_json::to_vec(self)
            .map_err(|err| ApiError::internal(format!("encoding a webhook endpoint: {err}")))
    }

    /// Decodes a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// What the admin API may set: everything is optional on update; `url` is
/// required on creation and a secret is generated when none is given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointInput {
    /// New URL.
    pub url: Option<String>,
    /// New signing secret.
    pub secret: Option<String>,
    /// New event type filter.
    pub event_types: Option<Vec<String>>,
    /// Pause (false) or resume (true; also clears a disable for failing).
    pub enabled: Option<bool>,
    /// New description.
    pub description: Option<String>,
}

impl EndpointInput {
    /// Checks every field present.
    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(url) = &self.url {
            validate_url(url)?;
        }
        if let Some(secret) = &self.secret {
            validate_secret(secret)?;
        }
        if let Some(types) = &self.event_types {
            validate_event_types(types)?;
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN)
        {
            return Err(ApiError::validation(format!(
                "description: at most {MAX_DESCRIPTION_LEN} characters"
            )));
        }
        Ok(())
    }

    /// A new endpoint of `tenant` from this input (checked here); a secret is
    /// generated when none is given.
    pub fn create(self, tenant: Uuid, now: &str) -> Result<Endpoint, ApiError> {
        self.validate()?;
        let url = self
            .url
            .clone()
            .ok_or_else(|| ApiError::validation("url is required"))?;
        let secret = match &self.secret {
            Some(secret) => secret.clone(),
            None => crate::secret::generate(SECRET_PREFIX)
                .map_err(|err| ApiError::internal(err.to_string()))?,
        };
        let mut endpoint = Endpoint {
            id: Uuid::new_v4(),
            tenant,
            url,
            secret,
            event_types: Vec::new(),
            enabled: true,
            description: String::new(),
            created_at: now.to_string(),
            updated_at: now.to_string(),
            consecutive_failures: 0,
            last_error: None,
            last_error_at: None,
            disabled_at: None,
            disabled_reason: None,
            version: 0,
            deleted: false,
        };
        self.apply(&mut endpoint, now);
        Ok(endpoint)
    }

    /// Applies a validated input; enabling clears a disable for failing.
    pub fn apply(self, endpoint: &mut Endpoint, now: &str) {
        if let Some(url) = self.url {
            endpoint.url = url;
        }
        if let Some(secret) = self.secret {
            endpoint.secret = secret;
        }
        if let Some(types) = self.event_types {
            endpoint.event_types = dedupe(types);
        }
        if let Some(description) = self.description {
            endpoint.description = description;
        }
        if let Some(enabled) = self.enabled {
            endpoint.enabled = enabled;
            if enabled {
                endpoint.consecutive_failures = 0;
                endpoint.disabled_at = None;
                endpoint.disabled_reason = None;
            }
        }
        endpoint.updated_at = now.to_string();
    }
}

fn dedupe(mut types: Vec<String>) -> Vec<String> {
    types.sort();
    types.dedup();
    types
}

/// An http or https URL with a host, no credentials, at most 2048 characters.
pub fn validate_url(url: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| ApiError::validation(format!("url: {why}"));
    if url.len() > MAX_URL_LEN {
        return Err(invalid("at most 2048 characters"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| invalid("not a valid absolute URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("use an http:// or https:// URL"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("the URL needs a host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid(
            "credentials in the URL are not supported; use the signature",
        ));
    }
    if authority.host().is_empty() {
        return Err(invalid("the URL needs a host"));
    }
    Ok(())
}

/// Refuses a URL whose host is a literal address that deliveries may not
/// reach (see [`AddressPolicy`]); names are checked when resolved, at every
/// attempt.
pub fn check_destination(url: &str, policy: &AddressPolicy) -> Result<(), ApiError> {
    let Some(ip) = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.host()?.trim_matches(['[', ']']).parse().ok())
    else {
        return Ok(());
    };
    policy.check(ip, None).map_err(|err| {
        ApiError::validation(format!("url: {err}"))
            .with_details(json!({ "field": "url", "address": ip.to_string() }))
    })
}

/// 16 to 256 visible ASCII characters.
fn validate_secret(secret: &str) -> Result<(), ApiError> {
    if !(16..=256).contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::validation(
            "secret: 16 to 256 visible ASCII characters (omit it to get a generated one)",
        ));
    }
    Ok(())
}

fn validate_event_types(types: &[String]) -> Result<(), ApiError> {
    if types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::validation(format!(
            "eventTypes: at most {MAX_EVENT_TYPES} types"
        )));
    }
    for (index, event_type) in types.iter().enumerate() {
        validate_event_type(event_type)
            .map_err(|err| ApiError::validation(format!("eventTypes[{index}]: {err}")))?;
    }
    Ok(())
}

/// Reads an endpoint inside a change; `None` when it does not exist or is
/// being deleted.
pub fn read(change: &Change<'_>, tenant: Uuid, id: Uuid) -> Result<Option<Endpoint>, ApiError> {
    let key = layout::endpoint(Some(&tenant), Some(&id));
    let Some(bytes) = change.get(&key)? else {
        return Ok(None);
    };
    let endpoint = Endpoint::decode(&bytes)
        .map_err(|err| ApiError::internal(format!("stored webhook endpoint unreadable: {err}")))?;
    Ok(Some(endpoint).filter(|endpoint| !endpoint.deleted))
}

/// Reads an endpoint inside a change, lets `edit` change it, bumps its
/// version and stores it. `None` when it does not exist or is being deleted.
pub fn modify(
    change: &mut Change<'_>,
    tenant: Uuid,
    id: Uuid,
    edit: impl FnOnce(&mut Endpoint) -> Result<(), ApiError>,
) -> Result<Option<Endpoint>, ApiError> {
    let Some(mut endpoint) = read(change, tenant, id)? else {
        return Ok(None);
    };
    edit(&mut endpoint)?;
    endpoint.version += 1;
    change.put(endpoint.key(), endpoint.encode()?);
    Ok(Some(endpoint))
}

/// Every endpoint in memory, by tenant.
#[derive(Debug, Default)]
pub struct Index {
    by_tenant: RwLock<HashMap<Uuid, Vec<Arc<Endpoint>>>>,
}

impl Index {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, Vec<Arc<Endpoint>>>> {
        self.by_tenant.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Uuid, Vec<Arc<Endpoint>>>> {
        self.by_tenant.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The enabled endpoints of `tenant` that take `event_type`.
    pub fn targets(&self, tenant: &Uuid, event_type: &str) -> Vec<Arc<Endpoint>> {
        self.read().get(tenant).map_or_else(Vec::new, |all| {
            all.iter()
                .filter(|endpoint| endpoint.accepts(event_type))
                .cloned()
                .collect()
        })
    }

    /// A tenant's endpoints, oldest first.
    pub fn list(&self, tenant: &Uuid) -> Vec<Arc<Endpoint>> {
        self.read().get(tenant).cloned().unwrap_or_default()
    }

    /// One endpoint of a tenant.
    pub fn get(&self, tenant: &Uuid, id: &Uuid) -> Option<Arc<Endpoint>> {
        self.read()
            .get(tenant)?
            .iter()
            .find(|endpoint| endpoint.id == *id)
            .cloned()
    }

    /// Adds a new endpoint.
    pub fn insert(&self, endpoint: Endpoint) {
        let mut all = self.write();
        let list = all.entry(endpoint.tenant).or_default();
        list.retain(|existing| existing.id != endpoint.id);
        list.push(Arc::new(endpoint));
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    }

    /// Replaces an endpoint with a newer version of it; a removed endpoint stays removed.
    pub fn update(&self, endpoint: Endpoint) {
        let mut all = self.write();
        let Some(slot) = all
            .get_mut(&endpoint.tenant)
            .and_then(|list| list.iter_mut().find(|e| e.id == endpoint.id))
        else {
            return;
        };
        if endpoint.version > slot.version {
            *slot = Arc::new(endpoint);
        }
    }

    /// Removes an endpoint; returns it.
    pub fn remove(&self, tenant: &Uuid, id: &Uuid) -> Option<Arc<Endpoint>> {
        let mut all = self.write();
        let list = all.get_mut(tenant)?;
        let position = list.iter().position(|endpoint| endpoint.id == *id)?;
        let removed = list.remove(position);
        if list.is_empty() {
            all.remove(tenant);
        }
        Some(removed)
    }
}

/// Refusal when a tenant has as many endpoints as allowed.
pub fn too_many(max: usize) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!("a tenant has at most {max} webhook endpoints (--webhook-max-endpoints)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(types: &[&str]) -> Endpoint {
        EndpointInput {
            url: Some("https://example.com/hook".into()),
            event_types: Some(types.iter().map(|t| t.to_string()).collect()),
            ..EndpointInput::default()
        }
        .create(Uuid::new_v4(), "2026-01-01T00:00:00.000Z")
        .unwrap()
    }

    #[test]
    fn filters_match_exact_types_and_empty_means_all() {
        let all = endpoint(&[]);
        assert!(all.accepts("anything"));
        let some = endpoint(&["comment.created", "comment.deleted", "comment.created"]);
        assert_eq!(some.event_types, ["comment.created", "comment.deleted"]);
        assert!(some.accepts("comment.created"));
        assert!(!some.accepts("comment"));
        assert!(!some.accepts("comment.created.x"));
        let paused = Endpoint {
            enabled: false,
            ..all
        };
        assert!(!paused.accepts("anything"));
    }

    #[test]
    fn created_endpoints_get_a_generated_secret() {
        let created = endpoint(&[]);
        assert!(created.secret.starts_with("whsec_"));
        assert!(created.enabled);
        assert!(created.to_json().get("secret").is_none());
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host_and_no_credentials() {
        assert!(validate_url("http://127.0.0.1:8080/hook?x=1").is_ok());
        assert!(validate_url("https://example.com").is_ok());
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "/hook",
            "https://user:pw@example.com/",
            "http:// spaces.example/",
            "",
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
        assert!(validate_url(&format!("https://e.com/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn inputs_are_checked_field_by_field() {
        let bad_type = EndpointInput {
            event_types: Some(vec!["ok".into(), "not ok".into()]),
            ..EndpointInput::default()
        };
        assert!(
            bad_type
                .validate()
                .unwrap_err()
                .message
                .contains("eventTypes[1]")
        );
        let short_secret = EndpointInput {
            secret: Some("short".into()),
            ..EndpointInput::default()
        };
        assert!(short_secret.validate().is_err());
        assert!(
            EndpointInput::default()
                .create(Uuid::new_v4(), "t")
                .is_err()
        );
    }

    #[test]
    fn enabling_clears_a_disable_for_failing() {
        let mut endpoint = endpoint(&[]);
        endpoint.enabled = false;
        endpoint.consecutive_failures = 5;
        endpoint.disabled_at = Some("then".into());
        endpoint.disabled_reason = Some("failing".into());
        EndpointInput {
            enabled: Some(true),
            ..EndpointInput::default()
        }
        .apply(&mut endpoint, "now");
        assert!(endpoint.enabled && endpoint.disabled_at.is_none());
        assert_eq!(endpoint.consecutive_failures, 0);
        assert_eq!(endpoint.updated_at, "now");
    }

    #[test]
    fn the_index_keeps_the_newest_version_and_never_resurrects() {
        let index = Index::default();
        let mut record = endpoint(&[]);
        let (tenant, id) = (record.tenant, record.id);
        index.insert(record.clone());
        record.version = 2;
        record.url = "https://new.example/".into();
        index.update(record.clone());
        let mut stale = record.clone();
        stale.version = 1;
        stale.url = "https://old.example/".into();
        index.update(stale);
        assert_eq!(index.get(&tenant, &id).unwrap().url, "https://new.example/");
        assert_eq!(index.targets(&tenant, "x").len(), 1);
        index.remove(&tenant, &id);
        record.version = 3;
        index.update(record);
        assert!(index.get(&tenant, &id).is_none());
        assert!(index.list(&tenant).is_empty());
    }
}
