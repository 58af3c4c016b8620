//! JWT verification for a realm: which keys may sign a token, and what a
//! verified token says about its bearer.
//!
//! A [`Verifier`] is built once from a [`RealmPolicy`] (PEM keys are parsed
//! and checked then) and answers [`Verifier::verify`] with the token's
//! [`Claims`] or a [`JwtError`].
//!
//! Invariants:
//!
//! * Only HS256, RS256, ES256 and EdDSA exist. Each key allows exactly one
//!   algorithm, and a token's header `alg` must equal the algorithm of the
//!   key that verifies it. `none` and every other algorithm are refused, so
//!   an HS256 token is never checked with a public key's bytes as the HMAC
//!   secret (key confusion); an HS256 secret may not be a PEM document either.
//! * A token with a `kid` is checked against the key with that `kid` only
//!   (none: [`JwtError::UnknownKey`]); without a `kid`, against every key of
//!   its `alg` (none: [`JwtError::AlgorithmNotAllowed`]).
//! * The signature is verified before any claim is read. Then, in order:
//!   `exp` is required and `now < exp + leeway`; `nbf`, when present,
//!   `nbf <= now + leeway`; `iss` and `aud` are checked only when the policy
//!   sets them; `sub` is a non-empty string; the optional `roles`,
//!   `entitlements`, `features`, `topics` (arrays of strings) and `tenant`
//!   (a string) have the right type.
//! * Crypto is aws-lc-rs through jsonwebtoken's `aws_lc` provider, passed
//!   explicitly at every use: jsonwebtoken's process-wide provider is never
//!   installed or consulted (so a second crypto feature could not make it
//!   panic), and no rustls provider is touched.
//! * No input panics. Tokens longer than [`MAX_TOKEN_BYTES`] are
//!   [`JwtError::Malformed`]. Errors and their messages never echo the token.
//! * Every built verifier has its own [`Verifier::id`], never reused in the
//!   process (clones share it): a result cached for one verifier (see
//!   [`super::token_cache`]) can never answer for a realm rebuilt with other
//!   keys or checks. [`Validity`] is the one place the `exp`/`nbf` rule is
//!   written, so a cached token expires exactly as a verified one.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest token accepted, in bytes; longer ones are [`JwtError::Malformed`].
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Shortest HS256 secret: RFC 7518 §3.2 requires a key at least as long as
/// the hash output (256 bits).
const MIN_HMAC_SECRET_BYTES: usize = 32;

/// RSA modulus sizes that aws-lc's RS256 verification accepts.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// DER of a P-256 SubjectPublicKeyInfo up to the point: SEQUENCE {
/// SEQUENCE { OID id-ecPublicKey, OID prime256v1 }, BIT STRING (0 unused
/// bits) …; the uncompressed point (0x04 ‖ x ‖ y, 65 bytes) follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// DER of an Ed25519 SubjectPublicKeyInfo up to the key: SEQUENCE {
/// SEQUENCE { OID id-Ed25519 }, BIT STRING (0 unused bits) …; the 32-byte
/// public key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The signing algorithms a realm key can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    #[serde(rename = "HS256")]
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA keys of 2048 to 8192 bits).
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl JwtAlgorithm {
    /// The name used in a token's `alg` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm a header `alg` names exactly (case-sensitive), if supported.
    pub fn from_header(alg: &str) -> Option<Self> {
        [Self::Hs256, Self::Rs256, Self::Es256, Self::EdDsa]
            .into_iter()
            .find(|candidate| candidate.as_str() == alg)
    }

    fn library(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key of a realm and the one algorithm it allows.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationKey {
    /// Selects this key when a token's header carries the same `kid`.
    pub kid: Option<String>,
    /// The only algorithm this key verifies.
    pub algorithm: JwtAlgorithm,
    /// HS256: the shared secret (its UTF-8 bytes, at least 32). Others: a PEM
    /// public key, `BEGIN PUBLIC KEY` (SubjectPublicKeyInfo), or for RS256
    /// also `BEGIN RSA PUBLIC KEY` (PKCS#1).
    pub material: String,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("material", &format_args!("<{} bytes>", self.material.len()))
            .finish()
    }
}

/// What a realm accepts: its keys and the checks on the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmPolicy {
    /// The keys tokens may be signed with (at least one; `kid`s unique).
    pub keys: Vec<VerificationKey>,
    /// When set, a token's `aud` (a string or an array) must contain one of these.
    pub audience: Option<Vec<String>>,
    /// When set, a token's `iss` must equal it.
    pub issuer: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in whole seconds.
    pub leeway: Duration,
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user id (`sub`), never empty.
    pub sub: String,
    /// Expiry (`exp`), Unix seconds.
    pub exp: u64,
    /// `roles` (empty when absent).
    pub roles: Vec<String>,
    /// `entitlements` (empty when absent).
    pub entitlements: Vec<String>,
    /// `features` (empty when absent).
    pub features: Vec<String>,
    /// `topics`: topic patterns for the generic topics API, see [`topic_allowed`].
    pub topics: Vec<String>,
    /// `tenant`, when present.
    pub tenant: Option<String>,
    /// Every other claim (`iss`, `aud`, `iat`, `nbf`, `jti`, custom ones).
    pub extra: ExtraClaims,
}

/// The claims of a token beyond the ones [`Claims`] names, in name order.
///
/// A boxed slice rather than a map: the verified-token cache and every
/// stream keep their token's claims for their whole life, and a map's node
/// (room for eleven entries) would cost most of a kilobyte per user for the
/// two or three claims a token usually has.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtraClaims(Box<[(Box<str>, Value)]>);

impl ExtraClaims {
    /// The claim called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(claim, _)| &**claim == name)
            .map(|(_, value)| value)
    }

    /// The claims' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| &**name)
    }
}

impl From<Map<String, Value>> for ExtraClaims {
    fn from(claims: Map<String, Value>) -> Self {
        Self(
            claims
                .into_iter()
                .map(|(name, value)| (name.into_boxed_str(), value))
                .collect(),
        )
    }
}

/// When a verified token is accepted: its `exp` and `nbf` with the realm's
/// leeway, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first second the token is accepted (`nbf - leeway`; 0 without `nbf`).
    pub from: u64,
    /// The first second it is refused again (`exp + leeway`).
    pub until: u64,
}

impl Validity {
    /// [`JwtError::Expired`] from `until` on, [`JwtError::NotYetValid`] before `from`.
    pub fn check(&self, now: u64) -> Result<(), JwtError> {
        if now >= self.until {
            Err(JwtError::Expired)
        } else if self.from > now {
            Err(JwtError::NotYetValid)
        } else {
            Ok(())
        }
    }

    /// True when the token is accepted at `now`.
    pub fn admits(&self, now: u64) -> bool {
        self.check(now).is_ok()
    }
}

/// A token that verified: its claims and when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// What the token says.
    pub claims: Claims,
    /// When it is accepted.
    pub validity: Validity,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Not a JWS compact token we can read (or too long, or a claim of the wrong type).
    Malformed,
    /// The header's `kid` names no key of the realm.
    UnknownKey,
    /// The header's `alg` is not the algorithm of the key(s) it could use.
    AlgorithmNotAllowed,
    /// The signature does not verify.
    BadSignature,
    /// `exp` (plus the leeway) has passed.
    Expired,
    /// `nbf` (minus the leeway) has not come yet.
    NotYetValid,
    /// `aud` names none of the realm's audiences.
    WrongAudience,
    /// `iss` is not the realm's issuer.
    WrongIssuer,
    /// A required claim is absent (or `sub` is empty).
    MissingClaim(&'static str),
}

impl JwtError {
    /// One sentence for the API error envelope; never includes the token.
    pub fn message(&self) -> String {
        match self {
            Self::Malformed => "the token is not a well-formed JWT".into(),
            Self::UnknownKey => "the token's key id (kid) names no key of this realm".into(),
            Self::AlgorithmNotAllowed => {
                "the token's signing algorithm is not allowed for this realm's keys".into()
            }
            Self::BadSignature => "the token's signature is not valid".into(),
            Self::Expired => "the token has expired".into(),
            Self::NotYetValid => "the token is not valid yet (nbf is in the future)".into(),
            Self::WrongAudience => "the token is not meant for this audience (aud)".into(),
            Self::WrongIssuer => "the token was not issued by this realm's issuer (iss)".into(),
            Self::MissingClaim(claim) => format!("the token lacks the required {claim} claim"),
        }
    }

    /// `TOKEN_EXPIRED` for [`JwtError::Expired`], `TOKEN_INVALID` otherwise.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Expired => "TOKEN_EXPIRED",
            _ => "TOKEN_INVALID",
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for JwtError {}

/// Verifies tokens for one realm. Built once; clones share the parsed keys.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Realm>,
}

struct Realm {
    id: u64,
    keys: Vec<PreparedKey>,
    audience: Option<Vec<String>>,
    issuer: Option<String>,
    leeway_secs: u64,
}

struct PreparedKey {
    kid: Option<String>,
    algorithm: JwtAlgorithm,
    key: DecodingKey,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<_> = self
            .inner
            .keys
            .iter()
            .map(|key| (key.kid.as_deref(), key.algorithm))
            .collect();
        f.debug_struct("Verifier")
            .field("keys", &keys)
            .field("audience", &self.inner.audience)
            .field("issuer", &self.inner.issuer)
            .field("leeway_secs", &self.inner.leeway_secs)
            .finish()
    }
}

/// The id of the next verifier built ([`Verifier::id`]).
static NEXT_VERIFIER_ID: AtomicU64 = AtomicU64::new(1);

impl Verifier {
    /// Parses and checks every key of the policy. The error says which key
    /// (by position, `kid` and algorithm) is unusable and why.
    pub fn new(policy: &RealmPolicy) -> Result<Self, String> {
        check_policy(policy)?;
        let keys = policy
            .keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                prepare_key(key).map_err(|why| format!("{}: {why}", describe_key(index, key)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let realm = Realm {
            id: NEXT_VERIFIER_ID.fetch_add(1, Ordering::Relaxed),
            keys,
            audience: policy.audience.clone(),
            issuer: policy.issuer.clone(),
            leeway_secs: policy.leeway.as_secs(),
        };
        Ok(Self {
            inner: Arc::new(realm),
        })
    }

    /// This verifier's identity: unique among the verifiers built in this
    /// process (clones share it), so it names exactly these keys and checks.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The claims of `token` if it is valid for this realm now.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        self.verify_at(token, crate::core::clock::unix_millis() / 1000)
    }

    /// [`Verifier::verify`] at the given time (Unix seconds).
    fn verify_at(&self, token: &str, now: u64) -> Result<Claims, JwtError> {
        self.verified_at(token, now).map(|verified| verified.claims)
    }

    /// The claims of `token` and when it is accepted, if it is valid for
    /// this realm at `now` (Unix seconds).
    pub fn verified_at(&self, token: &str, now: u64) -> Result<Verified, JwtError> {
        let segments = split_token(token)?;
        let header = parse_header(segments.header)?;
        let signature = decode_segment(segments.signature)?;
        self.check_signature(&header, segments.signing_input.as_bytes(), &signature)?;
        let claims = decode_json_object(segments.payload)?;
        self.check_claims(claims, now)
    }

    fn check_signature(
        &self,
        header: &TokenHeader,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), JwtError> {
        let verified = match &header.kid {
            Some(kid) => self
                .key_for_kid(kid, header.algorithm)?
                .verifies(signing_input, signature),
            None => self
                .keys_for_algorithm(header.algorithm)?
                .any(|key| key.verifies(signing_input, signature)),
        };
        if verified {
            Ok(())
        } else {
            Err(JwtError::BadSignature)
        }
    }

    fn key_for_kid(&self, kid: &str, algorithm: JwtAlgorithm) -> Result<&PreparedKey, JwtError> {
        let key = self
            .inner
            .keys
            .iter()
            .find(|key| key.kid.as_deref() == Some(kid))
            .ok_or(JwtError::UnknownKey)?;
        if key.algorithm == algorithm {
            Ok(key)
        } else {
            Err(JwtError::AlgorithmNotAllowed)
        }
    }

    fn keys_for_algorithm(
        &self,
        algorithm: JwtAlgorithm,
    ) -> Result<impl Iterator<Item = &PreparedKey>, JwtError> {
        let mut keys = self
            .inner
            .keys
            .iter()
            .filter(move |key| key.algorithm == algorithm)
            .peekable();
        match keys.peek() {
            Some(_) => Ok(keys),
            None => Err(JwtError::AlgorithmNotAllowed),
        }
    }

    fn check_claims(&self, mut claims: Map<String, Value>, now: u64) -> Result<Verified, JwtError> {
        let (exp, validity) = self.check_times(&claims, now)?;
        self.check_issuer(&claims)?;
        self.check_audience(&claims)?;
        claims.remove("exp");
        let claims = Claims {
            sub: take_subject(&mut claims)?,
            exp,
            roles: take_string_list(&mut claims, "roles")?,
            entitlements: take_string_list(&mut claims, "entitlements")?,
            features: take_string_list(&mut claims, "features")?,
            topics: take_string_list(&mut claims, "topics")?,
            tenant: take_optional_string(&mut claims, "tenant")?,
            extra: claims.into(),
        };
        Ok(Verified { claims, validity })
    }

    /// Enforces `exp` (required, checked first) and `nbf` (when present);
    /// returns `exp` and the token's [`Validity`].
    fn check_times(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<(u64, Validity), JwtError> {
        let leeway = self.inner.leeway_secs;
        let exp = match claims.get("exp") {
            None | Some(Value::Null) => return Err(JwtError::MissingClaim("exp")),
            Some(value) => numeric_date(value)?,
        };
        let mut validity = Validity {
            from: 0,
            until: exp.saturating_add(leeway),
        };
        validity.check(now)?;
        if let Some(value) = claims.get("nbf").filter(|value| !value.is_null()) {
            validity.from = numeric_date(value)?.saturating_sub(leeway);
        }
        validity.check(now)?;
        Ok((exp, validity))
    }

    fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), JwtError> {
        let Some(expected) = &self.inner.issuer else {
            return Ok(());
        };
        match claims.get("iss") {
            None | Some(Value::Null) => Err(JwtError::MissingClaim("iss")),
            Some(Value::String(iss)) if iss == expected => Ok(()),
            Some(_) => Err(JwtError::WrongIssuer),
        }
    }

    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), JwtError> {
        let Some(accepted) = &self.inner.audience else {
            return Ok(());
        };
        let accepts = |value: &Value| {
            value
                .as_str()
                .is_some_and(|aud| accepted.iter().any(|a| a == aud))
        };
        match claims.get("aud") {
            None | Some(Value::Null) => Err(JwtError::MissingClaim("aud")),
            Some(Value::Array(items)) if items.iter().any(accepts) => Ok(()),
            Some(value) if accepts(value) => Ok(()),
            Some(_) => Err(JwtError::WrongAudience),
        }
    }
}

impl PreparedKey {
    /// Whether `signature` over `signing_input` verifies with this key and
    /// its algorithm (the provider is aws-lc, passed explicitly).
    fn verifies(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match (DEFAULT_PROVIDER.verifier_factory)(&self.algorithm.library(), &self.key) {
            Ok(verifier) => verifier.verify(signing_input, &signature.to_vec()).is_ok(),
            Err(_) => false,
        }
    }
}

/// Policy-level checks: keys present, `kid`s unique and non-empty, audience
/// and issuer not empty when set.
fn check_policy(policy: &RealmPolicy) -> Result<(), String> {
    if policy.keys.is_empty() {
        return Err("the realm has no verification keys".into());
    }
    for (index, key) in policy.keys.iter().enumerate() {
        let Some(kid) = &key.kid else { continue };
        if kid.is_empty() {
            return Err(format!(
                "{}: the kid is empty; leave it unset instead",
                describe_key(index, key)
            ));
        }
        if policy.keys[..index]
            .iter()
            .any(|earlier| earlier.kid.as_ref() == Some(kid))
        {
            return Err(format!(
                "{}: another key already has this kid",
                describe_key(index, key)
            ));
        }
    }
    if policy
        .audience
        .as_ref()
        .is_some_and(|audience| audience.is_empty())
    {
        return Err("the audience list is empty: leave it unset to accept any audience".into());
    }
    if policy
        .issuer
        .as_ref()
        .is_some_and(|issuer| issuer.is_empty())
    {
        return Err("the issuer is empty: leave it unset to accept any issuer".into());
    }
    Ok(())
}

/// `key 2 (kid "a", RS256)`: names a key in configuration errors.
fn describe_key(index: usize, key: &VerificationKey) -> String {
    match &key.kid {
        Some(kid) => format!("key {} (kid {kid:?}, {})", index + 1, key.algorithm),
        None => format!("key {} (no kid, {})", index + 1, key.algorithm),
    }
}

fn prepare_key(key: &VerificationKey) -> Result<PreparedKey, String> {
    let material = key.material.as_str();
    let decoding = match key.algorithm {
        JwtAlgorithm::Hs256 => check_hmac_secret(material).map(DecodingKey::from_secret)?,
        JwtAlgorithm::Rs256 => rsa_public_key(material)?,
        JwtAlgorithm::Es256 => p256_public_key(material)?,
        JwtAlgorithm::EdDsa => ed25519_public_key(material)?,
    };
    Ok(PreparedKey {
        kid: key.kid.clone(),
        algorithm: key.algorithm,
        key: decoding,
    })
}

/// The secret's bytes, if it is long enough and not a PEM document.
fn check_hmac_secret(secret: &str) -> Result<&[u8], String> {
    if secret.contains("-----BEGIN") {
        return Err("an HS256 secret must be a shared secret, not a PEM key".into());
    }
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(format!(
            "an HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes long"
        ));
    }
    Ok(secret.as_bytes())
}

/// An RS256 key from an SPKI or PKCS#1 PEM, with a 2048 to 8192-bit modulus.
fn rsa_public_key(material: &str) -> Result<DecodingKey, String> {
    let der = match pkcs1_pem_body(material) {
        Some(body) => body?,
        None => spki_der(material)?,
    };
    let (modulus, _exponent) = (DEFAULT_PROVIDER
        .key_utils
        .rsa_pub_components_from_public_key)(&der)
    .map_err(|_| format!("RS256 needs an RSA public key; this is {}", spki_kind(&der)))?;
    let bits = bit_length(&modulus);
    if !RSA_BITS.contains(&bits) {
        return Err(format!(
            "the RSA key has {bits} bits; RS256 needs {} to {}",
            RSA_BITS.start(),
            RSA_BITS.end()
        ));
    }
    Ok(DecodingKey::from_rsa_der(&der))
}

/// An ES256 key from an SPKI PEM of a P-256 key with an uncompressed point.
fn p256_public_key(material: &str) -> Result<DecodingKey, String> {
    let der = spki_der(material)?;
    match der.strip_prefix(P256_SPKI_PREFIX.as_slice()) {
        Some(point) if point.len() == 65 && point[0] == 0x04 => Ok(DecodingKey::from_ec_der(point)),
        _ => Err(format!(
            "ES256 needs a P-256 (prime256v1) public key; this is {}",
            spki_kind(&der)
        )),
    }
}

/// An EdDSA key from an SPKI PEM of an Ed25519 key.
fn ed25519_public_key(material: &str) -> Result<DecodingKey, String> {
    let der = spki_der(material)?;
    match der.strip_prefix(ED25519_SPKI_PREFIX.as_slice()) {
        Some(raw) if raw.len() == 32 => Ok(DecodingKey::from_ed_der(raw)),
        _ => Err(format!(
            "EdDSA needs an Ed25519 public key; this is {}",
            spki_kind(&der)
        )),
    }
}

/// The DER of the first `BEGIN PUBLIC KEY` section; any other first section
/// is refused with a hint.
fn spki_der(material: &str) -> Result<Vec<u8>, String> {
    match <(SectionKind, Vec<u8>)>::from_pem_slice(material.as_bytes()) {
        Ok((SectionKind::PublicKey, der)) => Ok(der),
        Ok((kind, _)) => Err(format!(
            "expected a PEM public key (BEGIN PUBLIC KEY), found {}",
            describe_section(kind)
        )),
        Err(pem::Error::NoItemsFound) if material.contains("-----BEGIN RSA PUBLIC KEY-----") => {
            Err("an RSA PUBLIC KEY (PKCS#1) PEM can only be an RS256 key".into())
        }
        Err(pem::Error::NoItemsFound) => {
            Err("no PEM public key found (expected -----BEGIN PUBLIC KEY-----)".into())
        }
        Err(_) => Err("the PEM public key is malformed".into()),
    }
}

/// The DER inside `BEGIN RSA PUBLIC KEY` (PKCS#1), if the material has one.
fn pkcs1_pem_body(material: &str) -> Option<Result<Vec<u8>, String>> {
    const BEGIN: &str = "-----BEGIN RSA PUBLIC KEY-----";
    const END: &str = "-----END RSA PUBLIC KEY-----";
    let (_, rest) = material.split_once(BEGIN)?;
    let body = match rest.split_once(END) {
        Some((body, _)) => body,
        None => return Some(Err("the RSA PUBLIC KEY PEM has no END line".into())),
    };
    let base64: String = body.split_whitespace().collect();
    Some(
        STANDARD
            .decode(base64)
            .map_err(|_| "the RSA PUBLIC KEY PEM is not valid base64".to_string()),
    )
}

fn describe_section(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
            "a private key: give the public key only"
        }
        SectionKind::Certificate => {
            "a certificate: give its public key (openssl x509 -pubkey -noout)"
        }
        _ => "another kind of PEM section",
    }
}

/// What kind of key an SPKI holds, for error messages.
fn spki_kind(der: &[u8]) -> &'static str {
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    let has = |oid: &[u8]| der.windows(oid.len()).any(|window| window == oid);
    if der.starts_with(&P256_SPKI_PREFIX) {
        "a P-256 EC key (for ES256)"
    } else if has(RSA) {
        "an RSA key (for RS256)"
    } else if has(EC) {
        "an EC key on another curve or with a compressed point"
    } else if has(ED25519) {
        "an Ed25519 key (for EdDSA)"
    } else {
        "a kind of key this server does not know"
    }
}

/// Bits in a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    let significant = match bytes.iter().position(|&byte| byte != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    let leading = significant
        .first()
        .map_or(0, |byte| byte.leading_zeros() as usize);
    significant.len() * 8 - leading
}

/// The three segments of a compact JWS and the signed part.
struct Segments<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signing_input: &'a str,
}

fn split_token(token: &str) -> Result<Segments<'_>, JwtError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(JwtError::Malformed)?;
    if payload.contains('.') {
        return Err(JwtError::Malformed);
    }
    Ok(Segments {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// The parts of a token's header that matter here.
struct TokenHeader {
    algorithm: JwtAlgorithm,
    kid: Option<String>,
}

/// Reads `alg` (a supported one, else [`JwtError::AlgorithmNotAllowed`]) and
/// `kid`; refuses `crit`, since no extension is understood.
fn parse_header(segment: &str) -> Result<TokenHeader, JwtError> {
    let mut header = decode_json_object(segment)?;
    let algorithm = match header.get("alg") {
        Some(Value::String(alg)) => {
            JwtAlgorithm::from_header(alg).ok_or(JwtError::AlgorithmNotAllowed)?
        }
        _ => return Err(JwtError::Malformed),
    };
    if header.contains_key("crit") {
        return Err(JwtError::Malformed);
    }
    let kid = match header.remove("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid),
        Some(_) => return Err(JwtError::Malformed),
    };
    Ok(TokenHeader { algorithm, kid })
}

/// Strict base64url without padding (non-canonical trailing bits refused).
fn decode_segment(segment: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)
}

fn decode_json_object(segment: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = decode_segment(segment)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// A NumericDate: non-negative seconds, fractions truncated.
fn numeric_date(value: &Value) -> Result<u64, JwtError> {
    let Value::Number(number) = value else {
        return Err(JwtError::Malformed);
    };
    if let Some(seconds) = number.as_u64() {
        return Ok(seconds);
    }
    match number.as_f64() {
        // `as` saturates at u64::MAX; the range check keeps NaN and negatives out.
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds as u64),
        _ => Err(JwtError::Malformed),
    }
}

fn take_subject(claims: &mut Map<String, Value>) -> Result<String, JwtError> {
    match claims.remove("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => Ok(sub),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(JwtError::MissingClaim("sub")),
        Some(_) => Err(JwtError::Malformed),
    }
}

/// An optional array-of-strings claim (absent or null: empty).
fn take_string_list(claims: &mut Map<String, Value>, name: &str) -> Result<Vec<String>, JwtError> {
    match claims.remove(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(JwtError::Malformed),
            })
            .collect(),
        Some(_) => Err(JwtError::Malformed),
    }
}

/// An optional string claim (absent or null: `None`).
fn take_optional_string(
    claims: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<String>, JwtError> {
    match claims.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(JwtError::Malformed),
    }
}

/// Whether a token's topic patterns allow `topic`: a pattern is an exact
/// topic name, or ends with `*` to allow every topic starting with what
/// precedes it (across `/` too); `*` alone allows everything.
pub fn topic_allowed(patterns: &[String], topic: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => pattern == topic,
        })
}

/// Mints an HS256 token (header `alg`, `typ` and the optional `kid`) over
/// `claims`, a JSON object, for the `tidings token` development command.
/// The secret must satisfy the same rules as a realm's HS256 key.
pub fn mint_hs256(secret: &str, claims: &Value, kid: Option<&str>) -> Result<String, String> {
    let secret = check_hmac_secret(secret)?;
    if !claims.is_object() {
        return Err("the claims must be a JSON object".into());
    }
    let mut header = Map::new();
    header.insert("alg".into(), JwtAlgorithm::Hs256.as_str().into());
    header.insert("typ".into(), "JWT".into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    let signing_input = format!("{}.{}", encode_json(&header)?, encode_json(claims)?);
    let token = format!(
        "{signing_input}.{}",
        hs256_signature(secret, &signing_input)?
    );
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "the token would be {} bytes; verification accepts at most {MAX_TOKEN_BYTES}",
            token.len()
        ));
    }
    Ok(token)
}

fn encode_json(value: &impl Serialize) -> Result<String, String> {
    let json =
        serde_json::to_vec(value).map_err(|err| format!("cannot encode the token: {err}"))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// The base64url HS256 signature, with the aws-lc provider passed explicitly.
fn hs256_signature(secret: &[u8], signing_input: &str) -> Result<String, String> {
    let signer =
        (DEFAULT_PROVIDER.signer_factory)(&Algorithm::HS256, &EncodingKey::from_secret(secret))
            .map_err(|err| format!("cannot sign the token: {err}"))?;
    let signature = signer
        .try_sign(signing_input.as_bytes())
        .map_err(|err| format!("cannot sign the token: {err}"))?;
    Ok(URL_SAFE_NO_PAD.encode(signature))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// Tokens, keys and policies minted by PyJWT (tests/vectors/make_jwt_vectors.py).
    const VECTORS: &str = include_str!("../../tests/vectors/jwt.json");

    /// The HS256 secret of [`hs_realm`].
    pub(crate) const SECRET: &str = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";

    #[derive(Deserialize)]
    struct Vectors {
        keys: BTreeMap<String, VerificationKey>,
        policies: BTreeMap<String, VectorPolicy>,
        tokens: Vec<VectorToken>,
        bad_keys: Vec<BadKey>,
    }

    #[derive(Deserialize)]
    struct VectorPolicy {
        keys: Vec<String>,
        audience: Option<Vec<String>>,
        issuer: Option<String>,
        leeway_secs: u64,
    }

    #[derive(Deserialize)]
    struct VectorToken {
        name: String,
        policy: String,
        token: String,
        expect: String,
        error: Option<String>,
        claims: Option<Map<String, Value>>,
    }

    #[derive(Deserialize)]
    struct BadKey {
        name: String,
        key: VerificationKey,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(VECTORS).expect("tests/vectors/jwt.json parses")
    }

    fn realm(vectors: &Vectors, name: &str) -> RealmPolicy {
        let policy = &vectors.policies[name];
        RealmPolicy {
            keys: policy
                .keys
                .iter()
                .map(|key| vectors.keys[key].clone())
                .collect(),
            audience: policy.audience.clone(),
            issuer: policy.issuer.clone(),
            leeway: Duration::from_secs(policy.leeway_secs),
        }
    }

    /// The error as named in the vectors file.
    fn error_name(error: JwtError) -> String {
        match error {
            JwtError::MissingClaim(claim) => format!("MissingClaim:{claim}"),
            other => format!("{other:?}"),
        }
    }

    /// The claims the verifier should return for a token's JSON payload.
    fn expected_claims(mut payload: Map<String, Value>) -> Claims {
        let mut list = |name: &str| -> Vec<String> {
            payload
                .remove(name)
                .map(|value| serde_json::from_value(value).unwrap())
                .unwrap_or_default()
        };
        let (roles, entitlements) = (list("roles"), list("entitlements"));
        let (features, topics) = (list("features"), list("topics"));
        Claims {
            sub: payload.remove("sub").unwrap().as_str().unwrap().to_string(),
            exp: payload.remove("exp").unwrap().as_u64().unwrap(),
            roles,
            entitlements,
            features,
            topics,
            tenant: payload
                .remove("tenant")
                .map(|t| t.as_str().unwrap().to_string()),
            extra: payload.into(),
        }
    }

    /// An HS256 realm (key id `dev`) with `leeway_secs` of clock skew.
    pub(crate) fn hs_realm(leeway_secs: u64) -> Verifier {
        Verifier::new(&RealmPolicy {
            keys: vec![VerificationKey {
                kid: Some("dev".into()),
                algorithm: JwtAlgorithm::Hs256,
                material: SECRET.into(),
            }],
            audience: None,
            issuer: None,
            leeway: Duration::from_secs(leeway_secs),
        })
        .unwrap()
    }

    fn mint(claims: Value) -> String {
        mint_hs256(SECRET, &claims, Some("dev")).unwrap()
    }

    #[test]
    fn every_independent_vector_has_its_expected_outcome() {
        let vectors = vectors();
        assert!(
            vectors.tokens.len() >= 40,
            "the vectors file lost its tokens"
        );
        let verifiers: BTreeMap<&str, Verifier> = vectors
            .policies
            .keys()
            .map(|name| {
                (
                    name.as_str(),
                    Verifier::new(&realm(&vectors, name)).unwrap(),
                )
            })
            .collect();
        for case in &vectors.tokens {
            let outcome = verifiers[case.policy.as_str()].verify(&case.token);
            match (case.expect.as_str(), outcome) {
                ("ok", Ok(claims)) => {
                    let expected = expected_claims(case.claims.clone().unwrap());
                    assert_eq!(claims, expected, "{}: claims", case.name);
                }
                ("error", Err(error)) => {
                    assert_eq!(Some(error_name(error)), case.error, "{}: error", case.name);
                }
                (expect, outcome) => panic!("{}: expected {expect}, got {outcome:?}", case.name),
            }
        }
    }

    #[test]
    fn the_vectors_cover_the_required_refusals() {
        let vectors = vectors();
        let errors: Vec<String> = vectors
            .tokens
            .iter()
            .filter_map(|t| t.error.clone())
            .collect();
        for required in [
            "AlgorithmNotAllowed",
            "UnknownKey",
            "BadSignature",
            "Expired",
            "NotYetValid",
            "WrongAudience",
            "WrongIssuer",
            "MissingClaim:exp",
            "MissingClaim:sub",
            "Malformed",
        ] {
            assert!(
                errors.iter().any(|e| e == required),
                "no vector refused with {required}"
            );
        }
        let accepted: Vec<&str> = vectors
            .tokens
            .iter()
            .filter(|t| t.expect == "ok")
            .map(|t| t.name.as_str())
            .collect();
        for prefix in ["hs256", "rs256", "es256", "eddsa"] {
            assert!(
                accepted.iter().any(|name| name.starts_with(prefix)),
                "no valid {prefix}"
            );
        }
    }

    #[test]
    fn every_bad_vector_key_is_refused_with_a_reason_naming_it() {
        let vectors = vectors();
        assert!(vectors.bad_keys.len() >= 10);
        for bad in &vectors.bad_keys {
            let policy = RealmPolicy {
                keys: vec![vectors.keys["hs"].clone(), bad.key.clone()],
                audience: None,
                issuer: None,
                leeway: Duration::ZERO,
            };
            let error = Verifier::new(&policy).expect_err(&bad.name);
            assert!(error.starts_with("key 2 (kid "), "{}: {error}", bad.name);
            assert!(error.contains(&bad.name), "{}: {error}", bad.name);
            assert!(
                !error.contains("MII"),
                "{}: the error echoes key material: {error}",
                bad.name
            );
        }
    }

    #[test]
    fn key_errors_say_what_is_wrong() {
        let vectors = vectors();
        let bad = |name: &str| {
            let key = &vectors
                .bad_keys
                .iter()
                .find(|b| b.name == name)
                .unwrap()
                .key;
            prepare_key(key).err().unwrap()
        };
        assert!(
            bad("rsa_1024_bits").contains("1024 bits"),
            "{}",
            bad("rsa_1024_bits")
        );
        assert!(bad("rsa_private_key_pem").contains("private key"));
        assert!(bad("rsa_certificate_pem").contains("certificate"));
        assert!(bad("ec_key_as_rs256").contains("EC key"));
        assert!(bad("rsa_key_as_es256").contains("RSA key"));
        assert!(bad("p384_key_as_es256").contains("P-256"));
        assert!(bad("ed_key_as_es256").contains("Ed25519 key"));
        assert!(bad("rsa_pem_as_hs256_secret").contains("not a PEM key"));
        assert!(bad("short_hs256_secret").contains("at least 32 bytes"));
        assert!(bad("not_pem").contains("no PEM public key"));
        assert!(bad("rsa_pkcs1_as_es256").contains("only be an RS256 key"));
        assert!(bad("garbage_pem").contains("malformed"));
    }

    #[test]
    fn policy_errors() {
        let key = |kid: Option<&str>| VerificationKey {
            kid: kid.map(str::to_string),
            algorithm: JwtAlgorithm::Hs256,
            material: SECRET.into(),
        };
        let policy = |keys: Vec<VerificationKey>| RealmPolicy {
            keys,
            audience: None,
            issuer: None,
            leeway: Duration::ZERO,
        };
        let error = |policy: RealmPolicy| Verifier::new(&policy).unwrap_err();
        assert!(error(policy(vec![])).contains("no verification keys"));
        let duplicate = error(policy(vec![key(Some("a")), key(None), key(Some("a"))]));
        assert!(
            duplicate.starts_with("key 3 (kid \"a\", HS256)"),
            "{duplicate}"
        );
        assert!(error(policy(vec![key(Some(""))])).contains("kid is empty"));
        assert!(Verifier::new(&policy(vec![key(None), key(None)])).is_ok());
        let mut no_audience = policy(vec![key(None)]);
        no_audience.audience = Some(vec![]);
        assert!(error(no_audience).contains("audience list is empty"));
        let mut no_issuer = policy(vec![key(None)]);
        no_issuer.issuer = Some(String::new());
        assert!(error(no_issuer).contains("issuer is empty"));
    }

    #[test]
    fn leeway_applies_to_exp_and_nbf() {
        let now = 1_800_000_000;
        let expired = mint(json!({"sub": "u", "exp": now - 5}));
        assert_eq!(hs_realm(0).verify_at(&expired, now), Err(JwtError::Expired));
        assert!(hs_realm(30).verify_at(&expired, now).is_ok());
        assert!(hs_realm(6).verify_at(&expired, now).is_ok());
        assert_eq!(hs_realm(5).verify_at(&expired, now), Err(JwtError::Expired));

        let early = mint(json!({"sub": "u", "exp": now + 3600, "nbf": now + 5}));
        assert_eq!(
            hs_realm(0).verify_at(&early, now),
            Err(JwtError::NotYetValid)
        );
        assert_eq!(
            hs_realm(4).verify_at(&early, now),
            Err(JwtError::NotYetValid)
        );
        assert!(hs_realm(5).verify_at(&early, now).is_ok());
        assert!(hs_realm(0).verify_at(&early, now + 5).is_ok());
    }

    #[test]
    fn the_validity_is_the_window_verify_accepts() {
        let now = 1_800_000_000;
        let token = mint(json!({"sub": "u", "exp": now + 100, "nbf": now - 20}));
        let verified = hs_realm(30).verified_at(&token, now).unwrap();
        assert_eq!(
            verified.validity,
            Validity {
                from: now - 50,
                until: now + 130
            }
        );
        for at in [now - 51, now - 50, now + 129, now + 130] {
            assert_eq!(
                verified.validity.check(at),
                hs_realm(30).verify_at(&token, at).map(|_| ()),
                "at {at}"
            );
        }
        let no_nbf = mint(json!({"sub": "u", "exp": 10}));
        assert_eq!(
            hs_realm(5).verified_at(&no_nbf, 0).unwrap().validity,
            Validity { from: 0, until: 15 }
        );
    }

    #[test]
    fn every_built_verifier_has_its_own_id_and_clones_share_it() {
        let first = hs_realm(0);
        let second = hs_realm(0);
        assert_ne!(first.id(), second.id(), "same keys, another verifier");
        assert_eq!(first.clone().id(), first.id());
    }

    #[test]
    fn leeway_with_the_real_clock() {
        let now = crate::core::clock::unix_millis() / 1000;
        let token = mint(json!({"sub": "u", "exp": now - 3}));
        assert_eq!(hs_realm(0).verify(&token), Err(JwtError::Expired));
        assert!(hs_realm(60).verify(&token).is_ok());
        let token = mint(json!({"sub": "u", "exp": now + 600, "nbf": now + 3}));
        assert_eq!(hs_realm(0).verify(&token), Err(JwtError::NotYetValid));
        assert!(hs_realm(60).verify(&token).is_ok());
    }

    #[test]
    fn time_claims_at_the_extremes_do_not_overflow() {
        let verifier = hs_realm(u64::MAX);
        let forever = mint(json!({"sub": "u", "exp": u64::MAX}));
        assert_eq!(
            verifier.verify_at(&forever, u64::MAX),
            Err(JwtError::Expired)
        );
        assert!(
            verifier
                .verify_at(&mint(json!({"sub": "u", "exp": u64::MAX})), u64::MAX - 1)
                .is_ok()
        );
        assert!(
            verifier
                .verify_at(&mint(json!({"sub": "u", "exp": 0})), 0)
                .is_ok()
        );
        let float = mint(json!({"sub": "u", "exp": 1e300, "nbf": 1.5}));
        assert_eq!(hs_realm(0).verify_at(&float, 10).unwrap().exp, u64::MAX);
        for exp in [
            json!(-1),
            json!(-0.5),
            json!("1"),
            json!(true),
            json!([1]),
            json!({}),
        ] {
            let token = mint(json!({"sub": "u", "exp": exp}));
            assert_eq!(
                hs_realm(0).verify_at(&token, 0),
                Err(JwtError::Malformed),
                "exp {exp}"
            );
        }
        let null_exp = mint(json!({"sub": "u", "exp": null}));
        assert_eq!(
            hs_realm(0).verify_at(&null_exp, 0),
            Err(JwtError::MissingClaim("exp"))
        );
        let bad_nbf = mint(json!({"sub": "u", "exp": 100, "nbf": "soon"}));
        assert_eq!(hs_realm(0).verify_at(&bad_nbf, 0), Err(JwtError::Malformed));
    }

    #[test]
    fn mint_round_trips_through_verify() {
        let claims = json!({
            "sub": "alice",
            "exp": 4_102_444_800_u64,
            "roles": ["admin"],
            "entitlements": ["premium"],
            "features": ["beta", "gamma"],
            "topics": ["news/*"],
            "tenant": "acme",
            "aud": "tidings",
            "custom": {"nested": [1, 2]},
        });
        let token = mint(claims);
        let verified = hs_realm(0).verify(&token).unwrap();
        assert_eq!(verified.sub, "alice");
        assert_eq!(verified.exp, 4_102_444_800);
        assert_eq!(verified.roles, ["admin"]);
        assert_eq!(verified.entitlements, ["premium"]);
        assert_eq!(verified.features, ["beta", "gamma"]);
        assert_eq!(verified.topics, ["news/*"]);
        assert_eq!(verified.tenant.as_deref(), Some("acme"));
        let extra: Vec<&str> = verified.extra.names().collect();
        assert_eq!(extra, ["aud", "custom"]);
        assert_eq!(
            verified.extra.get("custom"),
            Some(&json!({"nested": [1, 2]}))
        );
        assert_eq!(verified.extra.get("missing"), None);

        let header = decode_json_object(token.split('.').next().unwrap()).unwrap();
        assert_eq!(
            Value::Object(header),
            json!({"alg": "HS256", "typ": "JWT", "kid": "dev"})
        );
        let no_kid =
            mint_hs256(SECRET, &json!({"sub": "b", "exp": 4_102_444_800_u64}), None).unwrap();
        assert_eq!(hs_realm(0).verify(&no_kid).unwrap().sub, "b");
    }

    #[test]
    fn a_minted_token_verifies_only_with_its_secret() {
        let other = "another-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
        let token = mint_hs256(
            other,
            &json!({"sub": "u", "exp": 4_102_444_800_u64}),
            Some("dev"),
        )
        .unwrap();
        assert_eq!(hs_realm(0).verify(&token), Err(JwtError::BadSignature));
    }

    #[test]
    fn mint_refuses_bad_input() {
        let claims = json!({"sub": "u", "exp": 1});
        assert!(
            mint_hs256("short", &claims, None)
                .unwrap_err()
                .contains("at least 32")
        );
        let pem = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----";
        assert!(mint_hs256(pem, &claims, None).unwrap_err().contains("PEM"));
        assert!(
            mint_hs256(SECRET, &json!(["sub"]), None)
                .unwrap_err()
                .contains("JSON object")
        );
        let huge = json!({"sub": "u", "exp": 1, "pad": "x".repeat(MAX_TOKEN_BYTES)});
        assert!(
            mint_hs256(SECRET, &huge, None)
                .unwrap_err()
                .contains("at most")
        );
    }

    #[test]
    fn claims_of_the_wrong_type_are_malformed_and_null_means_absent() {
        let verifier = hs_realm(0);
        let exp = 4_102_444_800_u64;
        for (name, value) in [
            ("roles", json!("admin")),
            ("roles", json!([1])),
            ("entitlements", json!({"a": 1})),
            ("features", json!([null])),
            ("topics", json!(true)),
            ("tenant", json!(7)),
            ("sub", json!(["u"])),
        ] {
            let mut claims = json!({"sub": "u", "exp": exp});
            claims[name] = value;
            assert_eq!(
                verifier.verify(&mint(claims)),
                Err(JwtError::Malformed),
                "{name}"
            );
        }
        let nulls = json!({"sub": "u", "exp": exp, "roles": null, "tenant": null, "nbf": null});
        let claims = verifier.verify(&mint(nulls)).unwrap();
        assert!(claims.roles.is_empty() && claims.tenant.is_none());
        for sub in [json!(null), json!("")] {
            let token = mint(json!({"sub": sub, "exp": exp}));
            assert_eq!(verifier.verify(&token), Err(JwtError::MissingClaim("sub")));
        }
    }

    #[test]
    fn a_kid_must_name_a_key_even_when_keys_have_none() {
        let verifier = Verifier::new(&RealmPolicy {
            keys: vec![VerificationKey {
                kid: None,
                algorithm: JwtAlgorithm::Hs256,
                material: SECRET.into(),
            }],
            audience: None,
            issuer: None,
            leeway: Duration::ZERO,
        })
        .unwrap();
        let claims = json!({"sub": "u", "exp": 4_102_444_800_u64});
        assert_eq!(
            verifier.verify(&mint(claims.clone())),
            Err(JwtError::UnknownKey)
        );
        assert!(
            verifier
                .verify(&mint_hs256(SECRET, &claims, None).unwrap())
                .is_ok()
        );
    }

    /// Hand-made tokens: `header` JSON text, `payload` JSON text, raw signature segment.
    fn raw_token(header: &str, payload: &str, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn garbage_is_malformed() {
        let verifier = hs_realm(0);
        let valid = mint(json!({"sub": "u", "exp": 4_102_444_800_u64}));
        let (signing_input, signature) = valid.rsplit_once('.').unwrap();
        let cases = [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "a.b.c".into(),
            "abc".into(),
            "é.é.é".into(),
            format!("{valid}."),
            format!("{signing_input}.{signature}="),
            format!(" {valid}"),
            format!("{signing_input}.!!!!"),
            "x".repeat(MAX_TOKEN_BYTES + 1),
            format!("{valid}{}", "A".repeat(MAX_TOKEN_BYTES)),
            raw_token("[]", "{}", "AA"),
            raw_token("null", "{}", "AA"),
            raw_token("{\"alg\":5}", "{}", "AA"),
            raw_token("{}", "{}", "AA"),
            raw_token("{\"alg\":\"HS256\"", "{}", "AA"),
            raw_token("{\"alg\":\"HS256\",\"kid\":7}", "{}", "AA"),
            raw_token("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", "{}", "AA"),
            raw_token(
                &format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
                "{}",
                "AA",
            ),
        ];
        for token in &cases {
            assert_eq!(
                verifier.verify(token),
                Err(JwtError::Malformed),
                "{token:.60}"
            );
        }
    }

    #[test]
    fn only_the_four_algorithms_by_their_exact_names() {
        let verifier = hs_realm(0);
        for alg in [
            "none", "None", "NONE", "hs256", "HS384", "HS512", "RS512", "PS256", "ES384", "ES256K",
            "Ed25519", "",
        ] {
            let token = raw_token(
                &format!("{{\"alg\":\"{alg}\"}}"),
                "{\"sub\":\"u\",\"exp\":4102444800}",
                "",
            );
            assert_eq!(
                verifier.verify(&token),
                Err(JwtError::AlgorithmNotAllowed),
                "{alg}"
            );
        }
        for alg in [
            JwtAlgorithm::Hs256,
            JwtAlgorithm::Rs256,
            JwtAlgorithm::Es256,
            JwtAlgorithm::EdDsa,
        ] {
            assert_eq!(JwtAlgorithm::from_header(alg.as_str()), Some(alg));
            let json = serde_json::to_string(&alg).unwrap();
            assert_eq!(json, format!("\"{alg}\""));
            assert_eq!(serde_json::from_str::<JwtAlgorithm>(&json).unwrap(), alg);
        }
        assert_eq!(
            serde_json::to_string(&JwtAlgorithm::EdDsa).unwrap(),
            "\"EdDSA\""
        );
    }

    #[test]
    fn every_single_character_change_is_refused() {
        let vectors = vectors();
        let verifier = Verifier::new(&realm(&vectors, "all")).unwrap();
        let token = mint_hs256(
            &vectors.keys["hs"].material,
            &json!({"sub": "u", "exp": 4_102_444_800_u64, "roles": ["a"]}),
            Some("hs-1"),
        )
        .unwrap();
        let es256 = vectors
            .tokens
            .iter()
            .find(|t| t.name == "es256_kid")
            .unwrap();
        for original in [token.as_str(), es256.token.as_str()] {
            assert!(verifier.verify(original).is_ok());
            for index in 0..original.len() {
                for replacement in ['A', 'g', '_', '-', '.', '='] {
                    let mut changed = original.to_string();
                    changed.replace_range(index..=index, replacement.encode_utf8(&mut [0; 4]));
                    if changed != original {
                        assert!(verifier.verify(&changed).is_err(), "{index} {replacement}");
                    }
                }
            }
        }
    }

    #[test]
    fn pseudo_random_input_never_panics() {
        let verifier = hs_realm(0);
        let alphabet = b"ABCabc0123-_.=+/{}\"eyJ";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 200) as usize;
            let token: String = (0..len)
                .map(|i| alphabet[((state >> (i % 56)) as usize + i) % alphabet.len()] as char)
                .collect();
            assert!(verifier.verify(&token).is_err());
        }
    }

    #[test]
    fn error_messages_and_codes() {
        let all = [
            JwtError::Malformed,
            JwtError::UnknownKey,
            JwtError::AlgorithmNotAllowed,
            JwtError::BadSignature,
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::WrongAudience,
            JwtError::WrongIssuer,
            JwtError::MissingClaim("exp"),
        ];
        for error in all {
            let message = error.message();
            assert!(message.starts_with("the token"), "{message}");
            assert_eq!(error.to_string(), message);
            let expected = if error == JwtError::Expired {
                "TOKEN_EXPIRED"
            } else {
                "TOKEN_INVALID"
            };
            assert_eq!(error.code(), expected);
        }
        assert_eq!(
            JwtError::MissingClaim("sub").message(),
            "the token lacks the required sub claim"
        );
    }

    #[test]
    fn topic_patterns() {
        let patterns = |list: &[&str]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let exact = patterns(&["orders/42"]);
        assert!(topic_allowed(&exact, "orders/42"));
        assert!(!topic_allowed(&exact, "orders/421"));
        assert!(!topic_allowed(&exact, "orders/4"));
        assert!(!topic_allowed(&exact, "Orders/42"));

        let prefix = patterns(&["news/*", "chat/room-1"]);
        assert!(topic_allowed(&prefix, "news/"));
        assert!(topic_allowed(&prefix, "news/sport"));
        assert!(topic_allowed(&prefix, "news/sport/football"));
        assert!(topic_allowed(&prefix, "chat/room-1"));
        assert!(!topic_allowed(&prefix, "news"));
        assert!(!topic_allowed(&prefix, "chat/room-2"));
        assert!(topic_allowed(&patterns(&["news*"]), "newsletter/x"));

        assert!(topic_allowed(&patterns(&["*"]), "anything/at/all"));
        assert!(topic_allowed(&patterns(&["*"]), ""));
        assert!(!topic_allowed(&[], "news/x"));
        // Only a trailing `*` is a wildcard.
        let inner = patterns(&["a*b"]);
        assert!(topic_allowed(&inner, "a*b"));
        assert!(!topic_allowed(&inner, "axb"));
    }

    #[test]
    fn verifier_is_shareable_and_debug_hides_secrets() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Verifier>();
        let verifier = hs_realm(0);
        let printed = format!("{verifier:?}");
        assert!(
            printed.contains("Hs256") && !printed.contains(SECRET),
            "{printed}"
        );
        let key = VerificationKey {
            kid: None,
            algorithm: JwtAlgorithm::Hs256,
            material: SECRET.into(),
        };
        assert!(!format!("{key:?}").contains(SECRET));
    }
}
