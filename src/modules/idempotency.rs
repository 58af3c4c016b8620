//! Idempotent writes: a write sent with an idempotency key (the
//! `Idempotency-Key` header, or an `idempotencyKey` field where a body or a
//! WebSocket message allows it) is done once; a retry with the same key gets
//! the original reply (same status, same body, ids included) instead of a
//! second write, for `--idempotency-window` and across restarts.
//!
//! A [`Claim`] names one key of one principal of one tenant for one operation
//! (e.g. `topics.publish`) and carries a fingerprint of the request (what it
//! acts on and its body). [`protect`] runs inside the writer change that
//! performs the write.
//!
//! Invariants:
//! * a record is written in the same writer change as the write it protects,
//!   so both commit together or neither does; changes run one at a time on
//!   the writer thread and see what earlier changes of their group wrote, so
//!   two requests with one key never both write: the later finds the record
//!   and replays it;
//! * a record answers only its tenant, principal and operation (they make its
//!   store key), and only the same request: another request with the key is
//!   409 `CONFLICT` and writes nothing;
//! * a write that fails stores nothing (its change fails whole), so a client
//!   can fix the request and retry with the same key;
//! * a replay is answered only after a flush (its change rewrites the record),
//!   so it never reports a write that is not durable;
//! * a record older than the window answers nothing and is replaced by the
//!   next write with its key; the pruner removes it through the expiry index
//!   (`i x`, oldest first), never a newer record of the same key.

use crate::auth::{Credential, Principal};
use crate::core::writer::Change;
use crate::error::{ApiError, ErrorCode};
use crate::http::Response;
use crate::http::response::{self, REPLAYED_HEADER};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Request header carrying the key.
pub const HEADER: &str = "idempotency-key";
/// Field carrying the key in JSON bodies and WebSocket messages.
pub const BODY_FIELD: &str = "idempotencyKey";
/// Longest key, in bytes (keys are printable ASCII).
pub const MAX_KEY_LEN: usize = 255;
/// Version byte of the record encoding.
const RECORD_VERSION: u8 = 1;
/// Bytes before the body in an encoded record: version, time, status, fingerprint.
const RECORD_HEAD: usize = 1 + 8 + 2 + 32;

/// A validated idempotency key: 1 to [`MAX_KEY_LEN`] printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// Validates a key as received; 400 when it is empty, too long or not printable ASCII.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        let printable = bytes.iter().all(|byte| (b' '..=b'~').contains(byte));
        if bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !printable {
            return Err(ApiError::validation(format!(
                "an idempotency key is 1 to {MAX_KEY_LEN} printable ASCII characters"
            )));
        }
        Ok(Self(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key a request carries in its [`HEADER`] and/or its body field
/// (already taken out of the body with [`take_field`]); 400 when either is
/// invalid or they differ.
pub fn requested(headers: &HeaderMap, field: Option<Value>) -> Result<Option<Key>, ApiError> {
    let header = headers
        .get(HEADER)
        .map(|value| Key::parse(value.as_bytes()))
        .transpose()?;
    match (header, from_field(field)?) {
        (Some(header), Some(field)) if header != field => Err(ApiError::validation(format!(
            "the Idempotency-Key header and the `{BODY_FIELD}` field differ; send one key"
        ))),
        (header, field) => Ok(header.or(field)),
    }
}

/// The key in a body field or WebSocket message field; 400 unless it is a valid key string.
pub fn from_field(field: Option<Value>) -> Result<Option<Key>, ApiError> {
    match field {
        None => Ok(None),
        Some(Value::String(text)) => Key::parse(text.as_bytes()).map(Some),
        Some(_) => Err(ApiError::validation(format!(
            "`{BODY_FIELD}` must be a string"
        ))),
    }
}

/// Removes the key field from a JSON object body, so the rest can be read
/// strictly (and fingerprinted without it).
pub fn take_field(body: &mut Value) -> Option<Value> {
    body.as_object_mut()?.remove(BODY_FIELD)
}

/// How long keys are remembered; hands out claims.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency {
    window: Duration,
}

impl Idempotency {
    /// Remembers keys for `window` (`--idempotency-window`).
    pub fn new(window: Duration) -> Self {
        Self { window }
    }

    /// How long keys are remembered.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The claim of a request with `key` (none without a key): `principal`'s
    /// key for `operation`, and `request`, the parts that identify the
    /// request (what it acts on, its body), as its fingerprint.
    pub fn claim(
        &self,
        key: Option<Key>,
        principal: &Principal,
        operation: &str,
        request: &[&[u8]],
    ) -> Option<Claim> {
        let key = key?;
        let scope = digest(&[
            principal_id(principal).as_bytes(),
            operation.as_bytes(),
            key.0.as_bytes(),
        ]);
        Some(Claim {
            record: layout::record(&principal.tenant, &scope),
            fingerprint: digest(request),
            key,
            window_ms: u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// Who a key belongs to within its tenant: the instance admin, one API key
/// (by id), or one token subject (tickets only open streams; a viewer id
/// keeps the match total).
fn principal_id(principal: &Principal) -> String {
    match &principal.credential {
        Credential::Admin => "admin".into(),
        Credential::Key(key) => format!("key:{}", key.id),
        Credential::Token(claims) => format!("sub:{}", claims.sub),
        Credential::Ticket(ticket) => {
            format!("viewer:{}", ticket.viewer.id.as_deref().unwrap_or(""))
        }
    }
}

/// SHA-256 of length-prefixed parts (so no two part lists hash alike by concatenation).
fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// One request's use of a key, ready to be checked and recorded inside a change.
#[derive(Debug, Clone)]
pub struct Claim {
    record: Vec<u8>,
    fingerprint: [u8; 32],
    key: Key,
    window_ms: u64,
}

/// The reply of a protected write, as recorded for retries: its status and
/// the JSON of its `data` (transports add their envelope).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The JSON of the reply's `data`.
    pub body: Bytes,
    /// True when this is the recorded reply of an earlier request.
    pub replayed: bool,
}

impl Reply {
    /// A fresh reply.
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            body: body.into(),
            replayed: false,
        }
    }
}

/// `{"data": <reply body>}` of an idempotent write; a replayed one carries
/// `Idempotent-Replayed: true`.
pub fn reply_response(reply: &Reply) -> Response {
    let mut response = response::raw_data(reply.status, &reply.body);
    if reply.replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// A stored record.
struct Record {
    created_ms: u64,
    status: u16,
    fingerprint: [u8; 32],
    body: Vec<u8>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_HEAD + self.body.len());
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(mut bytes: Vec<u8>) -> Option<Self> {
        if bytes.len() < RECORD_HEAD || bytes[0] != RECORD_VERSION {
            return None;
        }
        let created_ms = u64::from_be_bytes(bytes[1..9].try_into().ok()?);
        let status = u16::from_be_bytes(bytes[9..11].try_into().ok()?);
        let fingerprint = bytes[11..RECORD_HEAD].try_into().ok()?;
        let body = bytes.split_off(RECORD_HEAD);
        Some(Self {
            created_ms,
            status,
            fingerprint,
            body,
        })
    }
}

/// Runs `write` in `change` and records its reply under `claim`; or, when
/// the claim's key already has a live record, returns that reply (marked
/// replayed) writing nothing new (the record is rewritten unchanged), or 409 when the record is of another request.
/// Without a claim, just runs `write`.
pub fn protect(
    claim: Option<&Claim>,
    change: &mut Change<'_>,
    write: impl FnOnce(&mut Change<'_>) -> Result<Reply, ApiError>,
) -> Result<Reply, ApiError> {
    let Some(claim) = claim else {
        return write(change);
    };
    let now_ms = crate::core::clock::unix_millis();
    let stored = change
        .get(&claim.record)?
        .map(|bytes| {
            Record::decode(bytes)
                .ok_or_else(|| ApiError::internal("an idempotency record is unreadable"))
        })
        .transpose()?;
    match stored {
        Some(record) if now_ms.saturating_sub(record.created_ms) < claim.window_ms => {
            // Rewritten unchanged so the replay's group is flushed before it is
            // answered: a replay never reports a write that is not durable (one
            // read back from a group whose flush failed included).
            change.put(claim.record.clone(), record.encode());
            return claim.replay(record);
        }
        // Replaced below; if the write fails, the change (this too) is dropped.
        Some(expired) => {
            change.delete(layout::expiry(expired.created_ms, &claim.record));
        }
        None => {}
    }
    let reply = write(change)?;
    let record = Record {
        created_ms: now_ms,
        status: reply.status.as_u16(),
        fingerprint: claim.fingerprint,
        body: reply.body.to_vec(),
    };
    change.put(claim.record.clone(), record.encode());
    change.put(layout::expiry(now_ms, &claim.record), Vec::new());
    Ok(reply)
}

impl Claim {
    /// The recorded reply, when `record` is of this same request; else 409.
    fn replay(&self, record: Record) -> Result<Reply, ApiError> {
        if record.fingerprint != self.fingerprint {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "this idempotency key was already used for another request (other target, body or acting user); use a new key for a new request",
            )
            .with_details(json!({ "idempotencyKey": self.key.as_str() })));
        }
        let status = StatusCode::from_u16(record.status)
            .map_err(|_| ApiError::internal("an idempotency record has an invalid status"))?;
        Ok(Reply {
            status,
            body: Bytes::from(record.body),
            replayed: true,
        })
    }
}

/// Removes, in `change`, the expiry entry `index_key` and its record, unless
/// the record was rewritten since (a newer write with the same key, which
/// has its own entry).
pub fn expire(change: &mut Change<'_>, index_key: &[u8]) -> Result<(), ApiError> {
    change.delete(index_key.to_vec());
    let Some((created_ms, record_key)) = layout::parse_expiry(index_key) else {
        return Ok(());
    };
    let rewritten = change
        .get(&record_key)?
        .and_then(Record::decode)
        .is_some_and(|record| record.created_ms != created_ms);
    if !rewritten {
        change.delete(record_key);
    }
    Ok(())
}

/// Idempotency's records in the store, under the prefix `i` it claims at
/// startup:
///
/// ```text
/// i r <tenant:16> <scope:32>                 record: the reply of a keyed write
/// i x <created ms:8> <tenant:16> <scope:32>  expiry index, oldest first
/// ```
///
/// Invariants: an expiry entry ends with the tail of its record's key, and
/// its big-endian creation time orders the index oldest first; these
/// encodings never change (existing data directories are read as they are;
/// the tests pin the bytes).
pub mod layout {
    use uuid::Uuid;

    /// The prefix of every idempotency record.
    pub const PREFIX: &[u8] = b"i";
    /// Record kind: a recorded reply.
    const RECORD: u8 = b'r';
    /// Record kind: the expiry index.
    const EXPIRY: u8 = b'x';
    /// Prefix of the expiry index.
    pub const EXPIRY_PREFIX: [u8; 2] = [PREFIX[0], EXPIRY];

    /// Key of the record of `scope` (a digest of principal, operation and
    /// key) in `tenant`.
    pub fn record(tenant: &Uuid, scope: &[u8; 32]) -> Vec<u8> {
        let mut key = Vec::with_capacity(50);
        key.extend_from_slice(&[PREFIX[0], RECORD]);
        key.extend_from_slice(tenant.as_bytes());
        key.extend_from_slice(scope);
        key
    }

    /// Key of the expiry index entry of a record created at `created_ms`.
    pub fn expiry(created_ms: u64, record: &[u8]) -> Vec<u8> {
        let tail = record.get(2..).unwrap_or_default();
        let mut key = Vec::with_capacity(10 + tail.len());
        key.extend_from_slice(&EXPIRY_PREFIX);
        key.extend_from_slice(&created_ms.to_be_bytes());
        key.extend_from_slice(tail);
        key
    }

    /// Splits an expiry index key into the record's creation time and key.
    pub fn parse_expiry(key: &[u8]) -> Option<(u64, Vec<u8>)> {
        let rest = key.strip_prefix(&EXPIRY_PREFIX)?;
        let created_ms = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let mut record = vec![PREFIX[0], RECORD];
        record.extend_from_slice(rest.get(8..)?);
        Some((created_ms, record))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn expiry_keys_order_by_time_and_name_their_record() {
            let tenant = Uuid::new_v4();
            let record = record(&tenant, &[7; 32]);
            let older = expiry(1_000, &record);
            let newer = expiry(2_000, &super::record(&tenant, &[1; 32]));
            assert!(older < newer);
            assert_eq!(parse_expiry(&older), Some((1_000, record)));
            assert!(older.starts_with(&EXPIRY_PREFIX));
        }

        #[test]
        fn encodings_are_byte_for_byte_those_of_existing_data_dirs() {
            let tenant = Uuid::from_bytes([0x55; 16]);
            let record = record(&tenant, &[0x66; 32]);
            assert_eq!(record, [&b"ir"[..], &[0x55; 16], &[0x66; 32]].concat());
            assert_eq!(
                expiry(0x0102, &record),
                [
                    &b"ix"[..],
                    &0x0102u64.to_be_bytes(),
                    &[0x55; 16],
                    &[0x66; 32]
                ]
                .concat()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hub::HubLimits;
    use crate::core::store::Store;
    use crate::core::writer::{Footprint, Writer};
    use uuid::Uuid;

    fn admin_of(tenant: Uuid) -> Principal {
        Principal::unrevocable(tenant, "admin", Credential::Admin)
    }

    fn start(dir: &std::path::Path) -> (Store, Writer) {
        let store = Store::open(&dir.join("db"), 8 << 20).expect("store");
        let started = Writer::start_for_tests(store.clone(), HubLimits::minimal());
        (store, started.writer)
    }

    /// Commits a protected write that stores `value` under `k<value>` and
    /// replies with `value`; returns the reply.
    async fn write(writer: &Writer, claim: Option<Claim>, value: &str) -> Result<Reply, ApiError> {
        let value = value.to_string();
        writer
            .commit(Footprint::SMALL, move |change| {
                protect(claim.as_ref(), change, |change| {
                    change.put(format!("k{value}").into_bytes(), Vec::new());
                    Ok(Reply::new(StatusCode::CREATED, value.into_bytes()))
                })
            })
            .await
            .map(|committed| committed.value)
    }

    fn key(text: &str) -> Option<Key> {
        Some(Key::parse(text.as_bytes()).unwrap())
    }

    #[test]
    fn keys_are_1_to_255_printable_ascii() {
        assert!(Key::parse(b"a").is_ok());
        assert!(Key::parse(" ~!#".as_bytes()).is_ok());
        assert!(Key::parse(&[b'x'; MAX_KEY_LEN]).is_ok());
        for bad in [
            &b""[..],
            &[b'x'; MAX_KEY_LEN + 1],
            b"tab\there",
            "é".as_bytes(),
        ] {
            let err = Key::parse(bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn header_and_field_must_agree() {
        let mut headers = HeaderMap::new();
        assert_eq!(requested(&headers, None).unwrap(), None);
        headers.insert(HEADER, "one".parse().unwrap());
        assert_eq!(requested(&headers, None).unwrap(), key("one"));
        assert_eq!(requested(&headers, Some(json!("one"))).unwrap(), key("one"));
        assert!(requested(&headers, Some(json!("two"))).is_err());
        assert!(requested(&HeaderMap::new(), Some(json!(7))).is_err());
        let mut body = json!({ "idempotencyKey": "k", "body": "x" });
        assert_eq!(take_field(&mut body), Some(json!("k")));
        assert_eq!(body, json!({ "body": "x" }));
    }

    #[tokio::test]
    async fn a_retry_replays_and_another_request_with_the_key_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = start(dir.path());
        let idempotency = Idempotency::new(Duration::from_secs(60));
        let tenant = Uuid::new_v4();
        let claim = |request: &str| {
            idempotency.claim(key("k1"), &admin_of(tenant), "op", &[request.as_bytes()])
        };
        let first = write(&writer, claim("a"), "first").await.unwrap();
        assert!(!first.replayed);
        let retry = write(&writer, claim("a"), "second").await.unwrap();
        assert!(retry.replayed);
        assert_eq!(
            (retry.status, &retry.body[..]),
            (StatusCode::CREATED, &b"first"[..])
        );
        assert!(
            store.get_blocking(b"ksecond").unwrap().is_none(),
            "the retry wrote"
        );
        let other = write(&writer, claim("b"), "third").await.unwrap_err();
        assert_eq!(other.code, ErrorCode::Conflict);
        assert!(store.get_blocking(b"kthird").unwrap().is_none());
        let other_tenant = idempotency.claim(key("k1"), &admin_of(Uuid::new_v4()), "op", &[b"a"]);
        assert!(
            !write(&writer, other_tenant, "fourth")
                .await
                .unwrap()
                .replayed
        );
        let other_operation = idempotency.claim(key("k1"), &admin_of(tenant), "op2", &[b"a"]);
        assert!(
            !write(&writer, other_operation, "fifth")
                .await
                .unwrap()
                .replayed
        );
    }

    #[tokio::test]
    async fn a_failed_write_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, writer) = start(dir.path());
        let idempotency = Idempotency::new(Duration::from_secs(60));
        let claim = idempotency.claim(key("k"), &admin_of(Uuid::new_v4()), "op", &[b"a"]);
        let failing = claim.clone();
        let failed = writer
            .commit(Footprint::SMALL, move |change| {
                protect(failing.as_ref(), change, |_| -> Result<Reply, ApiError> {
                    Err(ApiError::validation("bad"))
                })
            })
            .await;
        assert!(failed.is_err());
        assert!(!write(&writer, claim, "fixed").await.unwrap().replayed);
    }

    #[tokio::test]
    async fn expired_records_write_again_and_the_sweep_keeps_rewritten_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = start(dir.path());
        // Long enough that the rewrite and its replay below fall inside one
        // window even on a loaded machine.
        let window = Duration::from_millis(2000);
        let idempotency = Idempotency::new(window);
        let claim = idempotency.claim(key("k"), &admin_of(Uuid::new_v4()), "op", &[b"a"]);
        write(&writer, claim.clone(), "old").await.unwrap();
        let old_entries = store
            .scan_blocking(&layout::EXPIRY_PREFIX, None, 10)
            .unwrap();
        assert_eq!(old_entries.len(), 1);
        tokio::time::sleep(window * 2).await;
        let again = write(&writer, claim.clone(), "new").await.unwrap();
        assert!(!again.replayed, "an expired key writes again");
        let entries = store
            .scan_blocking(&layout::EXPIRY_PREFIX, None, 10)
            .unwrap();
        assert_eq!(
            entries.len(),
            1,
            "the old expiry entry went with the old record"
        );
        assert_ne!(entries[0].0, old_entries[0].0);
        // The sweep read the old entry before the rewrite committed: the
        // newer record stays.
        let stale = old_entries[0].0.to_vec();
        writer
            .commit(Footprint::SMALL, move |change| expire(change, &stale))
            .await
            .unwrap();
        let replay = write(&writer, claim.clone(), "newer").await.unwrap();
        assert!(replay.replayed);
        assert_eq!(&replay.body[..], b"new");
        tokio::time::sleep(window * 2).await;
        let removed = crate::ops::pruner::expire_idempotency(&store, &writer, window)
            .await
            .unwrap();
        assert_eq!(removed, 1);
        let left = store.scan_blocking(layout::PREFIX, None, 10).unwrap();
        assert!(left.is_empty(), "record and index entry are gone: {left:?}");
    }
}
