//! A bounded in-memory cache of verified JWTs: a token's signature and
//! claims are checked once, then the same token is answered from memory
//! until it expires (the poll path's main saving: one lookup instead of a
//! signature check per request).
//!
//! Invariants:
//!
//! * An entry answers only for the exact token string (compared whole; the
//!   hash only picks the shard and slot, so a hash collision is a miss,
//!   never another token's claims) and only for the [`Verifier`] that
//!   verified it ([`Verifier::id`], unique per built verifier). A realm whose
//!   keys or checks change gets a new verifier, and a deleted realm has
//!   none, so their old entries can never answer again (unreferenced, they
//!   are the first evicted).
//! * An entry is served only while its [`Validity`] (the verifier's own
//!   `exp`/`nbf`-with-leeway rule) admits the current time; otherwise the
//!   token goes through the verifier again and gets the verifier's answer.
//! * Only successful verifications are stored; a refusal is never cached.
//! * At most the configured number of entries (split evenly over up to
//!   [`SHARDS`] shards, rounding down), each token at most
//!   [`MAX_CACHED_TOKEN_BYTES`] long (longer ones are verified every time):
//!   memory stays bounded. A full shard evicts with the clock
//!   (second-chance) algorithm, expired entries first, under that shard's
//!   lock only: never a global stop. A capacity of 0 disables the cache.
//! * The cache only replaces the signature and claim checks: which realm
//!   verifies, the tenant claim and revocation stay with the caller on every
//!   request.

use super::jwt::{Claims, JwtError, Validity, Verifier};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

/// Most shards (locks); a smaller cache has fewer.
pub const SHARDS: usize = 64;

/// Fewest entries per shard when the capacity allows (a shard's tokens
/// compete only with each other, so tiny shards would evict needlessly).
const MIN_SHARD_ENTRIES: usize = 64;

/// Longest token the cache stores, in bytes (typical HS256/ES256/RS256
/// tokens are well below); longer ones are verified on every request.
pub const MAX_CACHED_TOKEN_BYTES: usize = 2 * 1024;

/// How often the cache answered and how often it had to verify.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that found no usable entry (the token was then verified).
    /// Tokens the cache does not take (too long, cache disabled) count in neither.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

/// Verified tokens by verifier and token string; see the module doc.
pub struct TokenCache {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0: disabled).
    pub fn new(capacity: usize) -> Self {
        let count = match capacity {
            0 => 0,
            _ => (capacity / MIN_SHARD_ENTRIES).clamp(1, SHARDS),
        };
        let per_shard = capacity.checked_div(count).unwrap_or(0);
        Self {
            shards: (0..count).map(|_| Shard::new(per_shard)).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The claims of `token` as `verifier` judges it now: from the cache
    /// while the cached entry is valid, else verified (and cached on success).
    pub fn verify(&self, verifier: &Verifier, token: &str) -> Result<Arc<Claims>, JwtError> {
        self.verify_at(verifier, token, crate::core::clock::unix_millis() / 1000)
    }

    /// [`TokenCache::verify`] at `now` (Unix seconds).
    fn verify_at(
        &self,
        verifier: &Verifier,
        token: &str,
        now: u64,
    ) -> Result<Arc<Claims>, JwtError> {
        let Some((shard, hash)) = self.shard_for(verifier, token) else {
            return verifier
                .verified_at(token, now)
                .map(|verified| Arc::new(verified.claims));
        };
        let key = Key {
            hash,
            verifier: verifier.id(),
            token,
        };
        if let Some(claims) = shard.lock().lookup(&key, now) {
            return Ok(claims);
        }
        let verified = verifier.verified_at(token, now)?;
        let claims = Arc::new(verified.claims);
        shard.lock().insert(
            Slot {
                hash,
                verifier: key.verifier,
                token: token.into(),
                claims: claims.clone(),
                validity: verified.validity,
                referenced: false,
            },
            now,
        );
        Ok(claims)
    }

    /// The shard holding `token` for `verifier` and the key's hash; none
    /// when the cache is disabled or the token too long to store.
    fn shard_for(&self, verifier: &Verifier, token: &str) -> Option<(&Shard, u64)> {
        if self.shards.is_empty() || token.len() > MAX_CACHED_TOKEN_BYTES {
            return None;
        }
        let hash = self.hasher.hash_one((verifier.id(), token));
        let index = (hash % self.shards.len() as u64) as usize;
        Some((&self.shards[index], hash))
    }

    /// Hits, misses and entries so far (locks each shard in turn, briefly).
    pub fn stats(&self) -> CacheStats {
        self.shards
            .iter()
            .fold(CacheStats::default(), |total, shard| {
                let shard = shard.lock();
                CacheStats {
                    hits: total.hits + shard.hits,
                    misses: total.misses + shard.misses,
                    entries: total.entries + shard.slots.len(),
                }
            })
    }
}

/// What a lookup is for.
struct Key<'a> {
    hash: u64,
    verifier: u64,
    token: &'a str,
}

/// One lock's worth of entries, on its own cache lines so two threads
/// working on different shards do not share a line.
#[repr(align(128))]
struct Shard(Mutex<Entries>);

impl Shard {
    fn new(capacity: usize) -> Self {
        Self(Mutex::new(Entries::new(capacity)))
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A shard's entries: a ring of at most `capacity` (at least 1) slots swept
/// by the clock hand, and an index from key hash to slot. Both grow with use
/// (nothing is reserved up front, so a large capacity costs nothing idle).
struct Entries {
    capacity: usize,
    slot_of: HashMap<u64, usize>,
    slots: Vec<Slot>,
    hand: usize,
    hits: u64,
    misses: u64,
}

/// One verified token.
struct Slot {
    hash: u64,
    verifier: u64,
    token: Box<str>,
    claims: Arc<Claims>,
    validity: Validity,
    /// Set by a hit, cleared by the passing clock hand (second chance).
    referenced: bool,
}

impl Entries {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            slot_of: HashMap::new(),
            slots: Vec::new(),
            hand: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The cached claims for `key` if its entry is the same token of the
    /// same verifier and still valid at `now`.
    fn lookup(&mut self, key: &Key<'_>, now: u64) -> Option<Arc<Claims>> {
        let found = self
            .slot_of
            .get(&key.hash)
            .map(|&index| &mut self.slots[index])
            .filter(|slot| {
                slot.verifier == key.verifier
                    && *slot.token == *key.token
                    && slot.validity.admits(now)
            });
        let Some(slot) = found else {
            self.misses += 1;
            return None;
        };
        slot.referenced = true;
        self.hits += 1;
        Some(slot.claims.clone())
    }

    /// Stores `slot`: over an entry with the same hash, else in a free slot,
    /// else over the clock's victim.
    fn insert(&mut self, slot: Slot, now: u64) {
        let index = match self.slot_of.get(&slot.hash) {
            Some(&index) => index,
            None if self.slots.len() < self.capacity => {
                self.slots.push(slot);
                let index = self.slots.len() - 1;
                self.slot_of.insert(self.slots[index].hash, index);
                return;
            }
            None => {
                let index = self.victim(now);
                self.slot_of.remove(&self.slots[index].hash);
                self.slot_of.insert(slot.hash, index);
                index
            }
        };
        self.slots[index] = slot;
    }

    /// The next slot the clock hand finds expired or unreferenced, clearing
    /// reference bits on the way (so at most one turn plus one step).
    fn victim(&mut self, now: u64) -> usize {
        loop {
            let index = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let slot = &mut self.slots[index];
            if !slot.referenced || !slot.validity.admits(now) {
                return index;
            }
            slot.referenced = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::tests::{SECRET, hs_realm as verifier};
    use crate::auth::jwt::{JwtAlgorithm, RealmPolicy, VerificationKey, mint_hs256};
    use serde_json::json;
    use std::time::Duration;

    const NOW: u64 = 1_800_000_000;

    fn token(sub: &str, exp: u64) -> String {
        mint_hs256(SECRET, &json!({ "sub": sub, "exp": exp }), None).unwrap()
    }

    #[test]
    fn a_hit_returns_the_same_claims_without_verifying_again() {
        let cache = TokenCache::new(100);
        let verifier = verifier(0);
        let token = token("alice", NOW + 60);
        let first = cache.verify_at(&verifier, &token, NOW).unwrap();
        let second = cache.verify_at(&verifier, &token, NOW + 1).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "served from the cache");
        assert_eq!(second.sub, "alice");
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                entries: 1
            }
        );
    }

    #[test]
    fn a_cached_token_is_refused_from_its_expiry_with_the_verifiers_leeway() {
        let cache = TokenCache::new(100);
        let verifier = verifier(5);
        let token = token("u", NOW + 10);
        cache.verify_at(&verifier, &token, NOW).unwrap();
        assert!(cache.verify_at(&verifier, &token, NOW + 14).is_ok());
        assert_eq!(
            cache.verify_at(&verifier, &token, NOW + 15),
            Err(JwtError::Expired)
        );
        assert_eq!(cache.stats().hits, 1, "the expired lookup was a miss");
    }

    #[test]
    fn a_cached_token_is_not_served_before_its_nbf() {
        let cache = TokenCache::new(100);
        let verifier = verifier(0);
        let token = mint_hs256(
            SECRET,
            &json!({ "sub": "u", "exp": NOW + 100, "nbf": NOW }),
            None,
        )
        .unwrap();
        cache.verify_at(&verifier, &token, NOW).unwrap();
        assert_eq!(
            cache.verify_at(&verifier, &token, NOW - 1),
            Err(JwtError::NotYetValid),
            "a clock that stepped back does not reuse the entry"
        );
    }

    #[test]
    fn another_verifier_never_gets_the_entry() {
        let cache = TokenCache::new(100);
        let token = token("u", NOW + 60);
        let old = verifier(0);
        let first = cache.verify_at(&old, &token, NOW).unwrap();
        let rebuilt = verifier(0);
        let second = cache.verify_at(&rebuilt, &token, NOW).unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "verified again");
        let other_secret = Verifier::new(&RealmPolicy {
            keys: vec![VerificationKey {
                kid: None,
                algorithm: JwtAlgorithm::Hs256,
                material: "another-secret-of-at-least-32-bytes-long".into(),
            }],
            audience: None,
            issuer: None,
            leeway: Duration::ZERO,
        })
        .unwrap();
        assert_eq!(
            cache.verify_at(&other_secret, &token, NOW),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn a_different_token_with_the_same_prefix_is_not_a_hit() {
        let cache = TokenCache::new(100);
        let verifier = verifier(0);
        let token = token("u", NOW + 60);
        cache.verify_at(&verifier, &token, NOW).unwrap();
        let (signing_input, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{signing_input}.AAAA");
        let longer = format!("{token}A");
        let shorter = &token[..token.len() - 1];
        for other in [forged.as_str(), longer.as_str(), shorter, signing_input] {
            assert!(cache.verify_at(&verifier, other, NOW).is_err(), "{other}");
        }
        assert_eq!(cache.stats().hits, 0);
    }

    #[test]
    fn refusals_are_not_cached() {
        let cache = TokenCache::new(100);
        let verifier = verifier(0);
        let expired = token("u", NOW - 1);
        for _ in 0..3 {
            assert_eq!(
                cache.verify_at(&verifier, &expired, NOW),
                Err(JwtError::Expired)
            );
        }
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn the_bound_holds_under_many_inserts_and_recent_hits_survive() {
        let capacity = 1000;
        let cache = TokenCache::new(capacity);
        let verifier = verifier(0);
        let hot = token("hot", NOW + 60);
        let hot_claims = cache.verify_at(&verifier, &hot, NOW).unwrap();
        for n in 0..10 * capacity {
            cache
                .verify_at(&verifier, &token(&format!("user-{n}"), NOW + 60), NOW)
                .unwrap();
            cache.verify_at(&verifier, &hot, NOW).unwrap();
            assert!(cache.stats().entries <= capacity);
        }
        let again = cache.verify_at(&verifier, &hot, NOW).unwrap();
        assert!(
            Arc::ptr_eq(&hot_claims, &again),
            "a token used between inserts keeps its second chance"
        );
        assert!(cache.stats().entries >= capacity - capacity / MIN_SHARD_ENTRIES);
    }

    #[test]
    fn expired_entries_are_evicted_before_referenced_ones() {
        let mut entries = Entries::new(2);
        let slot = |hash: u64, until: u64| Slot {
            hash,
            verifier: 1,
            token: hash.to_string().into(),
            claims: Arc::new(verifier(0).verify(&token("u", NOW + 60)).unwrap()),
            validity: Validity { from: 0, until },
            referenced: false,
        };
        let key = |hash: u64| (hash, hash.to_string());
        let hit = |entries: &mut Entries, (hash, token): (u64, String), now| {
            let key = Key {
                hash,
                verifier: 1,
                token: &token,
            };
            entries.lookup(&key, now).is_some()
        };
        entries.insert(slot(1, NOW + 60), NOW);
        entries.insert(slot(2, NOW + 1), NOW);
        assert!(hit(&mut entries, key(1), NOW) && hit(&mut entries, key(2), NOW));
        entries.insert(slot(3, NOW + 60), NOW + 1);
        assert!(hit(&mut entries, key(1), NOW + 1), "the valid one stays");
        assert!(hit(&mut entries, key(3), NOW + 1));
        assert!(!hit(&mut entries, key(2), NOW), "the expired one went");
        assert_eq!(entries.slots.len(), 2);
    }

    #[test]
    fn a_hash_collision_is_a_miss_not_another_tokens_claims() {
        let mut entries = Entries::new(4);
        let claims = Arc::new(verifier(0).verify(&token("u", NOW + 60)).unwrap());
        entries.insert(
            Slot {
                hash: 7,
                verifier: 1,
                token: "the-token".into(),
                claims,
                validity: Validity {
                    from: 0,
                    until: NOW + 60,
                },
                referenced: false,
            },
            NOW,
        );
        let lookup = |entries: &mut Entries, verifier, token| {
            let key = Key {
                hash: 7,
                verifier,
                token,
            };
            entries.lookup(&key, NOW).is_some()
        };
        assert!(lookup(&mut entries, 1, "the-token"));
        assert!(
            !lookup(&mut entries, 1, "the-token-2"),
            "same hash, other token"
        );
        assert!(!lookup(&mut entries, 1, "the-toke"), "same hash, a prefix");
        assert!(!lookup(&mut entries, 2, "the-token"), "another verifier");
    }

    #[test]
    fn a_capacity_of_zero_or_a_long_token_bypasses_the_cache() {
        let verifier = verifier(0);
        let disabled = TokenCache::new(0);
        let token = token("u", NOW + 60);
        let first = disabled.verify_at(&verifier, &token, NOW).unwrap();
        let second = disabled.verify_at(&verifier, &token, NOW).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(disabled.stats(), CacheStats::default());

        let cache = TokenCache::new(100);
        let long = mint_hs256(
            SECRET,
            &json!({ "sub": "u", "exp": NOW + 60, "pad": "x".repeat(MAX_CACHED_TOKEN_BYTES) }),
            None,
        )
        .unwrap();
        assert_eq!(cache.verify_at(&verifier, &long, NOW).unwrap().sub, "u");
        assert_eq!(cache.stats(), CacheStats::default());
    }

    #[test]
    fn small_capacities_are_never_exceeded() {
        let verifier = verifier(0);
        for capacity in [1, 2, 63, 64, 65, 130] {
            let cache = TokenCache::new(capacity);
            for n in 0..3 * capacity {
                cache
                    .verify_at(&verifier, &token(&format!("u{n}"), NOW + 60), NOW)
                    .unwrap();
            }
            assert!(cache.stats().entries <= capacity, "{capacity}");
        }
    }

    #[test]
    fn two_threads_share_the_cache() {
        let cache = Arc::new(TokenCache::new(100));
        let verifier = verifier(0);
        let tokens: Vec<String> = (0..10).map(|n| token(&format!("u{n}"), NOW + 60)).collect();
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        for (n, token) in tokens.iter().enumerate() {
                            let claims = cache.verify_at(&verifier, token, NOW).unwrap();
                            assert_eq!(claims.sub, format!("u{n}"));
                        }
                    }
                });
            }
        });
        let stats = cache.stats();
        assert_eq!(stats.hits + stats.misses, 2000);
        assert!(stats.misses <= 20, "{stats:?}");
    }
}
