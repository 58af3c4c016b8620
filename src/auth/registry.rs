//! The auth registry: tenants, API keys and realms, persisted in the store and
//! held in memory for lookups on every request.
//!
//! Invariants:
//! * every change is committed durably through the writer before the
//!   in-memory view changes, so a change the admin API acknowledged is in
//!   effect for the next request and survives restarts;
//! * changes are serialized: one runs at a time, from its checks (slug
//!   uniqueness, the tenant of a new key or realm) through its commit to its
//!   in-memory update, so checks see every earlier change and the view is
//!   updated in commit order; a change runs in its own task, so a caller that
//!   goes away (a reset stream) cannot leave the view behind the store;
//! * the view is replaced under one lock, so readers never see half a change;
//! * a key is usable only while it is active and its tenant exists;
//! * every tenant, key and realm carries a revocation token (a key's and a
//!   realm's are children of their tenant's): revoking a key, deleting a realm
//!   or a tenant cancels it once the removal is durable, which ends the
//!   streams its credentials opened (see [`super::Principal::revoked`]).

use super::api_keys::{self, ApiKey, Scope};
use super::jwt::Verifier;
use super::layout;
use super::origins::AllowedOrigins;
use super::realms::{self, DEFAULT_REALM, Realm};
use super::tenants::{self, Tenant};
use crate::core::datadir::InstanceConfig;
use crate::core::store::{Store, StoreError};
use crate::core::writer::{Footprint, Writer};
use crate::error::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A record of the view with the token that its removal cancels.
struct Revocable<T> {
    record: T,
    token: CancellationToken,
}

struct RealmEntry {
    realm: Realm,
    verifier: Arc<Verifier>,
    token: CancellationToken,
}

#[derive(Default)]
struct View {
    tenants: HashMap<Uuid, Revocable<Tenant>>,
    keys: HashMap<String, Revocable<ApiKey>>,
    realms: HashMap<(Uuid, String), RealmEntry>,
}

impl View {
    /// The token of a new key or realm of `tenant`: a child of the tenant's,
    /// or an already cancelled one when the tenant is gone.
    fn child_token(&self, tenant: &Uuid) -> CancellationToken {
        match self.tenants.get(tenant) {
            Some(entry) => entry.token.child_token(),
            None => cancelled(),
        }
    }

    /// The key with this secret hash while it is active and its tenant exists,
    /// with its revocation token.
    fn active_key(&self, hash: &str) -> Option<(ApiKey, CancellationToken)> {
        let entry = self.keys.get(hash)?;
        let usable = entry.record.is_active() && self.tenants.contains_key(&entry.record.tenant);
        usable.then(|| (entry.record.clone(), entry.token.clone()))
    }

    fn insert_tenant(&mut self, tenant: Tenant) {
        let token = self
            .tenants
            .get(&tenant.id)
            .map(|entry| entry.token.clone())
            .unwrap_or_default();
        self.tenants.insert(
            tenant.id,
            Revocable {
                record: tenant,
                token,
            },
        );
    }

    fn insert_key(&mut self, key: ApiKey) {
        let token = match self.keys.get(&key.hash) {
            Some(entry) => entry.token.clone(),
            None => self.child_token(&key.tenant),
        };
        if !key.is_active() {
            token.cancel();
        }
        self.keys
            .insert(key.hash.clone(), Revocable { record: key, token });
    }

    /// Inserts or replaces a realm; a replacement that drops a verification
    /// key revokes what the old realm admitted (tokens signed by the dropped
    /// key must not keep their streams).
    fn insert_realm(&mut self, realm: Realm, verifier: Verifier) {
        let id = (realm.tenant, realm.name.clone());
        let token = match self.realms.get(&id) {
            Some(old) if old.realm.keys.iter().all(|key| realm.keys.contains(key)) => {
                old.token.clone()
            }
            Some(old) => {
                old.token.cancel();
                self.child_token(&realm.tenant)
            }
            None => self.child_token(&realm.tenant),
        };
        let verifier = Arc::new(verifier);
        self.realms.insert(
            id,
            RealmEntry {
                realm,
                verifier,
                token,
            },
        );
    }
}

impl View {
    /// Makes the view hold exactly `records`: what is still there keeps its
    /// token (an unchanged realm also its verifier, so the verified-token
    /// cache keeps answering for it); a tenant, key or realm that is gone
    /// has its token cancelled, as has a key now revoked and a realm that
    /// dropped a verification key.
    fn reconcile(&mut self, records: Records) {
        let tenants: HashSet<Uuid> = records.tenants.iter().map(|tenant| tenant.id).collect();
        let keys: HashSet<&str> = records.keys.iter().map(|key| key.hash.as_str()).collect();
        let realms: HashSet<(Uuid, &str)> = records
            .realms
            .iter()
            .map(|realm| (realm.tenant, realm.name.as_str()))
            .collect();
        retain_or_cancel(&mut self.tenants, |id| tenants.contains(id), |e| &e.token);
        retain_or_cancel(
            &mut self.keys,
            |hash| keys.contains(hash.as_str()),
            |e| &e.token,
        );
        retain_or_cancel(
            &mut self.realms,
            |(tenant, name)| realms.contains(&(*tenant, name.as_str())),
            |e| &e.token,
        );
        for tenant in records.tenants {
            self.insert_tenant(tenant);
        }
        for key in records.keys {
            self.insert_key(key);
        }
        for realm in records.realms {
            let id = (realm.tenant, realm.name.clone());
            if self
                .realms
                .get(&id)
                .is_some_and(|entry| entry.realm == realm)
            {
                continue;
            }
            match realm.verifier() {
                Ok(verifier) => self.insert_realm(realm, verifier),
                Err(err) => {
                    tracing::error!(realm = %realm.name, error = %err, "stored realm is unusable; skipped")
                }
            }
        }
    }
}

/// Removes the entries `keep` refuses, cancelling their tokens.
fn retain_or_cancel<K, V>(
    map: &mut HashMap<K, V>,
    keep: impl Fn(&K) -> bool,
    token: impl Fn(&V) -> &CancellationToken,
) {
    map.retain(|id, entry| {
        let kept = keep(id);
        if !kept {
            token(entry).cancel();
        }
        kept
    });
}

fn cancelled() -> CancellationToken {
    let token = CancellationToken::new();
    token.cancel();
    token
}

/// How often a key's last-used time is written to the store.
const LAST_USED_PERSIST_MS: u64 = 60_000;
/// Longest tenant name, in bytes.
pub const MAX_TENANT_NAME_BYTES: usize = 200;
/// Longest API key name, in bytes.
pub const MAX_KEY_NAME_BYTES: usize = 100;

/// Tenants, keys and realms.
pub struct Registry {
    writer: Writer,
    default_tenant: Uuid,
    view: RwLock<View>,
    /// Held by the one change in progress, from its checks to its view update.
    changes: tokio::sync::Mutex<()>,
    last_persisted_use: std::sync::Mutex<HashMap<Uuid, u64>>,
}

impl Registry {
    /// Loads everything from the store and makes sure the default tenant and
    /// realm from `config.json` exist.
    pub async fn load(
        store: &Store,
        writer: Writer,
        instance: &InstanceConfig,
    ) -> Result<Arc<Self>, StoreError> {
        let mut view = View::default();
        view.reconcile(store.run(load_records).await?);
        let registry = Arc::new(Self {
            writer,
            default_tenant: instance.default_tenant.id,
            view: RwLock::new(view),
            changes: tokio::sync::Mutex::new(()),
            last_persisted_use: std::sync::Mutex::default(),
        });
        registry
            .seed(instance)
            .await
            .map_err(|err| StoreError::new(err.message))?;
        Ok(registry)
    }

    async fn seed(self: &Arc<Self>, instance: &InstanceConfig) -> Result<(), ApiError> {
        let seed = &instance.default_tenant;
        if self.tenant(&seed.id).is_none() {
            self.save_tenant(Tenant {
                id: seed.id,
                slug: seed.slug.clone(),
                name: "Default tenant".into(),
                created_at: instance.created_at.clone(),
                allowed_origins: AllowedOrigins::default(),
            })
            .await?;
        }
        for realm in &instance.jwt_realms {
            if self.realm(&realm.tenant_id, &realm.name).is_none() {
                let key = super::jwt::VerificationKey {
                    kid: None,
                    algorithm: super::jwt::JwtAlgorithm::Hs256,
                    material: realm.hs256_secret.clone(),
                };
                self.put_realm(Realm {
                    tenant: realm.tenant_id,
                    name: realm.name.clone(),
                    keys: vec![key],
                    audience: None,
                    issuer: None,
                    leeway_seconds: realms::DEFAULT_LEEWAY_SECONDS,
                })
                .await?;
            }
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `change` alone (no other registry change between its checks and
    /// its view update) and to completion, even if the caller goes away.
    async fn serialized<T, F, Fut>(self: &Arc<Self>, change: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Self>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let registry = self.clone();
        tokio::spawn(async move {
            let _turn = registry.changes.lock().await;
            change(registry.clone()).await
        })
        .await
        .map_err(|err| ApiError::internal(format!("a registry change failed: {err}")))?
    }

    async fn persist(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), ApiError> {
        self.writer
            .commit(Footprint::SMALL, move |change| {
                match value {
                    Some(value) => change.put(key, value),
                    None => change.delete(key),
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// The default tenant's id.
    pub fn default_tenant(&self) -> Uuid {
        self.default_tenant
    }

    /// A tenant by id.
    pub fn tenant(&self, id: &Uuid) -> Option<Tenant> {
        self.read()
            .tenants
            .get(id)
            .map(|entry| entry.record.clone())
    }

    /// True when tenant `id` exists (no copy of its record, for the request path).
    pub fn has_tenant(&self, id: &Uuid) -> bool {
        self.read().tenants.contains_key(id)
    }

    /// True when tenant `id` exists and `name` is its id (lowercase,
    /// hyphenated) or its slug (no copy of its record, for the request path).
    pub fn tenant_is(&self, id: &Uuid, name: &str) -> bool {
        let view = self.read();
        let Some(entry) = view.tenants.get(id) else {
            return false;
        };
        name == entry.record.slug
            || name == id.hyphenated().encode_lower(&mut Uuid::encode_buffer())
    }

    /// A tenant and its revocation token.
    pub fn tenant_token(&self, id: &Uuid) -> Option<CancellationToken> {
        self.read().tenants.get(id).map(|entry| entry.token.clone())
    }

    /// A tenant by slug.
    pub fn tenant_by_slug(&self, slug: &str) -> Option<Tenant> {
        self.read()
            .tenants
            .values()
            .find(|entry| entry.record.slug == slug)
            .map(|entry| entry.record.clone())
    }

    /// All tenants, by slug.
    pub fn tenants(&self) -> Vec<Tenant> {
        let mut all: Vec<Tenant> = self
            .read()
            .tenants
            .values()
            .map(|entry| entry.record.clone())
            .collect();
        all.sort_by(|a, b| a.slug.cmp(&b.slug));
        all
    }

    /// Creates a new tenant with a fresh id.
    pub async fn create_tenant(
        self: &Arc<Self>,
        slug: String,
        name: String,
    ) -> Result<Tenant, ApiError> {
        self.save_tenant(Tenant {
            id: Uuid::new_v4(),
            slug,
            name,
            created_at: crate::core::clock::rfc3339_millis(crate::core::clock::unix_millis()),
            allowed_origins: AllowedOrigins::default(),
        })
        .await
    }

    /// A tenant by id or slug.
    pub fn find_tenant(&self, id_or_slug: &str) -> Result<Tenant, ApiError> {
        let found = match Uuid::parse_str(id_or_slug) {
            Ok(id) => self.tenant(&id),
            Err(_) => self.tenant_by_slug(id_or_slug),
        };
        found.ok_or_else(|| ApiError::not_found(format!("no tenant {id_or_slug}")))
    }

    /// Creates a tenant, or (seeding) puts the default tenant; slugs stay
    /// unique: of concurrent saves of one slug exactly one succeeds, the
    /// others get 409.
    async fn save_tenant(self: &Arc<Self>, tenant: Tenant) -> Result<Tenant, ApiError> {
        self.serialized(move |registry| async move { registry.put_tenant(tenant).await })
            .await
    }

    /// Changes a tenant's slug and/or name; 404 if it is gone, 409 if the
    /// slug is taken.
    pub async fn update_tenant(
        self: &Arc<Self>,
        id: Uuid,
        slug: Option<String>,
        name: Option<String>,
    ) -> Result<Tenant, ApiError> {
        self.serialized(move |registry| async move {
            let mut tenant = registry
                .tenant(&id)
                .ok_or_else(|| ApiError::not_found("no such tenant"))?;
            tenant.slug = slug.unwrap_or(tenant.slug);
            tenant.name = name.unwrap_or(tenant.name);
            registry.put_tenant(tenant).await
        })
        .await
    }

    /// Replaces the browser origins a tenant allows (404 if it is gone); in
    /// effect for the next request once durable.
    pub async fn set_origins(
        self: &Arc<Self>,
        id: Uuid,
        origins: AllowedOrigins,
    ) -> Result<Tenant, ApiError> {
        self.serialized(move |registry| async move {
            let mut tenant = registry
                .tenant(&id)
                .ok_or_else(|| ApiError::not_found("no such tenant"))?;
            tenant.allowed_origins = origins;
            registry.put_tenant(tenant).await
        })
        .await
    }

    /// True when `tenant` exists and allows a page on `origin`.
    pub fn allows_origin(&self, tenant: &Uuid, origin: &str) -> bool {
        self.read()
            .tenants
            .get(tenant)
            .is_some_and(|entry| entry.record.allowed_origins.allows(origin))
    }

    /// True when some tenant allows a page on `origin` (checks every tenant).
    pub fn any_allows_origin(&self, origin: &str) -> bool {
        self.read()
            .tenants
            .values()
            .any(|entry| entry.record.allowed_origins.allows(origin))
    }

    /// Checks and commits a tenant record, then puts it in the view
    /// (callers hold the turn).
    async fn put_tenant(&self, tenant: Tenant) -> Result<Tenant, ApiError> {
        tenants::validate_slug(&tenant.slug).map_err(ApiError::validation)?;
        crate::field_limits::check_len("name", &tenant.name, MAX_TENANT_NAME_BYTES)?;
        if self
            .tenant_by_slug(&tenant.slug)
            .is_some_and(|other| other.id != tenant.id)
        {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("slug {} is taken", tenant.slug),
            ));
        }
        self.persist(
            layout::record(layout::TENANT, &tenant.id),
            Some(to_json(&tenant)?),
        )
        .await?;
        self.write().insert_tenant(tenant.clone());
        Ok(tenant)
    }

    /// Deletes a tenant with its keys and realms (never the default tenant);
    /// ends every stream its credentials opened.
    pub async fn delete_tenant(self: &Arc<Self>, id: &Uuid) -> Result<(), ApiError> {
        if *id == self.default_tenant {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the default tenant cannot be deleted",
            ));
        }
        let tenant = *id;
        self.serialized(move |registry| async move {
            if registry.tenant(&tenant).is_none() {
                return Err(ApiError::not_found("no such tenant"));
            }
            let keys: Vec<Uuid> = registry.keys(&tenant).iter().map(|key| key.id).collect();
            let realm_names: Vec<String> = registry
                .realms(&tenant)
                .into_iter()
                .map(|realm| realm.name)
                .collect();
            registry
                .writer
                .commit(Footprint::SMALL, move |change| {
                    change.delete(layout::record(layout::TENANT, &tenant));
                    for key in &keys {
                        change.delete(layout::record(layout::API_KEY, key));
                    }
                    for name in &realm_names {
                        change.delete(layout::realm(&tenant, name));
                    }
                    Ok(())
                })
                .await?;
            let mut view = registry.write();
            if let Some(entry) = view.tenants.remove(&tenant) {
                entry.token.cancel();
            }
            view.keys.retain(|_, key| key.record.tenant != tenant);
            view.realms.retain(|(owner, _), _| *owner != tenant);
            Ok(())
        })
        .await
    }

    /// Creates an API key; returns the record and the secret (shown only now).
    pub async fn create_key(
        self: &Arc<Self>,
        tenant: Uuid,
        name: String,
        scopes: Vec<Scope>,
    ) -> Result<(ApiKey, String), ApiError> {
        if name.trim().is_empty() || scopes.is_empty() {
            return Err(ApiError::validation(
                "a key needs a name and at least one scope",
            ));
        }
        crate::field_limits::check_len("name", &name, MAX_KEY_NAME_BYTES)?;
        let secret = crate::secret::generate(api_keys::KEY_PREFIX)
            .map_err(|err| ApiError::internal(err.to_string()))?;
        let key = ApiKey {
            id: Uuid::new_v4(),
            tenant,
            name,
            scopes,
            hash: api_keys::hash_secret(&secret),
            prefix: api_keys::display_prefix(&secret),
            created_at: crate::core::clock::rfc3339_millis(crate::core::clock::unix_millis()),
            revoked_at: None,
            last_used_at: None,
        };
        self.serialized(move |registry| async move {
            if registry.tenant(&tenant).is_none() {
                return Err(ApiError::not_found("no such tenant"));
            }
            registry.store_key(key.clone()).await?;
            Ok((key, secret))
        })
        .await
    }

    /// Commits a key record, then puts it in the view (callers hold the turn).
    async fn store_key(&self, key: ApiKey) -> Result<(), ApiError> {
        self.persist(
            layout::record(layout::API_KEY, &key.id),
            Some(to_json(&key)?),
        )
        .await?;
        self.write().insert_key(key);
        Ok(())
    }

    /// A tenant's keys (active and revoked), oldest first.
    pub fn keys(&self, tenant: &Uuid) -> Vec<ApiKey> {
        let mut all: Vec<ApiKey> = self
            .read()
            .keys
            .values()
            .filter(|entry| entry.record.tenant == *tenant)
            .map(|entry| entry.record.clone())
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        all
    }

    /// Revokes a key: refused from the next request on, and the streams it
    /// opened end.
    pub async fn revoke_key(
        self: &Arc<Self>,
        tenant: &Uuid,
        id: &Uuid,
    ) -> Result<ApiKey, ApiError> {
        let (tenant, id) = (*tenant, *id);
        self.serialized(move |registry| async move {
            let mut key = registry
                .keys(&tenant)
                .into_iter()
                .find(|key| key.id == id)
                .ok_or_else(|| ApiError::not_found("no such key for this tenant"))?;
            if key.revoked_at.is_none() {
                key.revoked_at = Some(crate::core::clock::rfc3339_millis(
                    crate::core::clock::unix_millis(),
                ));
                registry.store_key(key.clone()).await?;
            }
            Ok(key)
        })
        .await
    }
    /// Records that `key` was just used: in memory at once, in the store at
    /// most once a minute (in the background, never delaying the request).
    /// A node that cannot write (an edge) records nothing: the writer
    /// records the uses of the requests it serves.
    pub fn touch_key(self: &Arc<Self>, key: &ApiKey) {
        if self.writer.is_refusing() {
            return;
        }
        let now = crate::core::clock::unix_millis();
        {
            let mut persisted = self
                .last_persisted_use
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if persisted
                .get(&key.id)
                .is_some_and(|at| now.saturating_sub(*at) < LAST_USED_PERSIST_MS)
            {
                return;
            }
            persisted.insert(key.id, now);
        }
        let (registry, id, hash) = (self.clone(), key.id, key.hash.clone());
        let used_at = crate::core::clock::rfc3339_millis(now);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = registry.record_use(id, hash, used_at).await {
                    tracing::warn!(error = %err.message, "recording a key's last use failed");
                }
            });
        }
    }

    /// Sets only `lastUsedAt` of the stored record (read and written on the
    /// writer thread, so a concurrent revocation is never undone).
    async fn record_use(&self, id: Uuid, hash: String, used_at: String) -> Result<(), ApiError> {
        let stamp = used_at.clone();
        self.writer
            .commit(Footprint::SMALL, move |change| {
                let key = layout::record(layout::API_KEY, &id);
                let Some(bytes) = change.get(&key)? else {
                    return Ok(());
                };
                let mut record: ApiKey = serde_json::from_slice(&bytes)
                    .map_err(|err| ApiError::internal(format!("stored key unreadable: {err}")))?;
                record.last_used_at = Some(stamp);
                change.put(key, to_json(&record)?);
                Ok(())
            })
            .await?;
        if let Some(entry) = self.write().keys.get_mut(&hash) {
            entry.record.last_used_at = Some(used_at);
        }
        Ok(())
    }

    /// The usable key whose secret is `secret` (active, of an existing
    /// tenant) and its revocation token.
    pub fn key_by_secret(&self, secret: &str) -> Option<(ApiKey, CancellationToken)> {
        self.read().active_key(&api_keys::hash_secret(secret))
    }

    /// The usable key whose secret hashes to `hash`, and its revocation token.
    pub fn key_by_hash(&self, hash: &str) -> Option<(ApiKey, CancellationToken)> {
        self.read().active_key(hash)
    }

    /// A realm of a tenant.
    pub fn realm(&self, tenant: &Uuid, name: &str) -> Option<Realm> {
        self.read()
            .realms
            .get(&(*tenant, name.to_string()))
            .map(|entry| entry.realm.clone())
    }

    /// A realm's verifier and revocation token.
    pub fn verifier(
        &self,
        tenant: &Uuid,
        name: Option<&str>,
    ) -> Option<(Arc<Verifier>, CancellationToken)> {
        let name = name.unwrap_or(DEFAULT_REALM).to_string();
        self.read()
            .realms
            .get(&(*tenant, name))
            .map(|entry| (entry.verifier.clone(), entry.token.clone()))
    }

    /// A tenant's realms, by name.
    pub fn realms(&self, tenant: &Uuid) -> Vec<Realm> {
        let mut all: Vec<Realm> = self
            .read()
            .realms
            .values()
            .filter(|entry| entry.realm.tenant == *tenant)
            .map(|entry| entry.realm.clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Creates or replaces a realm after checking every key. A replacement
    /// that drops a verification key ends the streams the realm admitted.
    pub async fn put_realm(self: &Arc<Self>, realm: Realm) -> Result<Realm, ApiError> {
        realms::validate(&realm)?;
        let verifier = realm.verifier().map_err(ApiError::validation)?;
        self.serialized(move |registry| async move {
            if registry.tenant(&realm.tenant).is_none() {
                return Err(ApiError::not_found("no such tenant"));
            }
            registry
                .persist(
                    layout::realm(&realm.tenant, &realm.name),
                    Some(to_json(&realm)?),
                )
                .await?;
            registry.write().insert_realm(realm.clone(), verifier);
            Ok(realm)
        })
        .await
    }

    /// Deletes a realm; ends the streams its tokens opened.
    pub async fn delete_realm(self: &Arc<Self>, tenant: &Uuid, name: &str) -> Result<(), ApiError> {
        let id = (*tenant, name.to_string());
        self.serialized(move |registry| async move {
            if registry.realm(&id.0, &id.1).is_none() {
                return Err(ApiError::not_found("no such realm"));
            }
            registry.persist(layout::realm(&id.0, &id.1), None).await?;
            if let Some(entry) = registry.write().realms.remove(&id) {
                entry.token.cancel();
            }
            Ok(())
        })
        .await
    }

    /// Makes the view equal to what the store holds now, for a node whose
    /// store another process writes (an edge, whose replication follower
    /// applies the writer's auth records): a tenant, key or realm created
    /// there works from now on; one removed or revoked there stops working
    /// and its token is cancelled, which ends the streams it opened.
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let _turn = self.changes.lock().await;
        let records = store.run(load_records).await?;
        self.write().reconcile(records);
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value)
        .map_err(|err| ApiError::internal(format!("encoding an auth record: {err}")))
}

/// Every tenant, key and realm the store holds.
struct Records {
    tenants: Vec<Tenant>,
    keys: Vec<ApiKey>,
    realms: Vec<Realm>,
}

fn load_records(store: &Store) -> Result<Records, StoreError> {
    Ok(Records {
        tenants: load_all(store, layout::TENANT)?,
        keys: load_all(store, layout::API_KEY)?,
        realms: load_all(store, layout::REALM)?,
    })
}

fn load_all<T: DeserializeOwned>(store: &Store, kind: u8) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    store.for_each_blocking(&layout::kind_prefix(kind), |_, value| {
        let record = serde_json::from_slice(value)
            .map_err(|err| StoreError::new(format!("auth record unreadable: {err}")))?;
        out.push(record);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(tenant: Uuid, hash: &str) -> ApiKey {
        ApiKey {
            id: Uuid::new_v4(),
            tenant,
            name: "k".into(),
            scopes: vec![Scope::Read],
            hash: hash.into(),
            prefix: "ek_…".into(),
            created_at: String::new(),
            revoked_at: None,
            last_used_at: None,
        }
    }

    /// A tenant with a fresh id and nothing else.
    fn some_tenant() -> Tenant {
        Tenant {
            id: Uuid::new_v4(),
            slug: "t".into(),
            name: String::new(),
            created_at: String::new(),
            allowed_origins: AllowedOrigins::default(),
        }
    }

    #[test]
    fn a_key_whose_tenant_is_gone_is_refused_and_born_revoked() {
        let mut view = View::default();
        let tenant = some_tenant();
        view.insert_tenant(tenant.clone());
        view.insert_key(key_of(tenant.id, "live"));
        view.insert_key(key_of(Uuid::new_v4(), "orphan"));
        let (_, token) = view
            .active_key("live")
            .expect("a key of a live tenant works");
        assert!(!token.is_cancelled());
        assert!(view.active_key("orphan").is_none());
        assert!(view.keys["orphan"].token.is_cancelled());
        view.tenants.remove(&tenant.id).unwrap().token.cancel();
        assert!(view.active_key("live").is_none(), "the tenant is gone");
        assert!(
            token.is_cancelled(),
            "a key's token is a child of its tenant's"
        );
    }

    #[test]
    fn reconciling_with_the_store_keeps_what_stayed_and_revokes_what_left() {
        let tenant = some_tenant();
        let realm = Realm {
            tenant: tenant.id,
            name: "r".into(),
            keys: vec![super::super::jwt::VerificationKey {
                kid: None,
                algorithm: super::super::jwt::JwtAlgorithm::Hs256,
                material: "s".repeat(32),
            }],
            audience: None,
            issuer: None,
            leeway_seconds: 0,
        };
        let (kept, revoked, removed) = (
            key_of(tenant.id, "kept"),
            key_of(tenant.id, "revoked"),
            key_of(tenant.id, "removed"),
        );
        let mut view = View::default();
        view.reconcile(Records {
            tenants: vec![tenant.clone()],
            keys: vec![kept.clone(), revoked.clone(), removed],
            realms: vec![realm.clone()],
        });
        let token = |view: &View, hash: &str| view.keys[hash].token.clone();
        let (kept_token, revoked_token, removed_token) = (
            token(&view, "kept"),
            token(&view, "revoked"),
            token(&view, "removed"),
        );
        let verifier = view.realms[&(tenant.id, "r".to_string())].verifier.clone();
        let mut revoked = revoked;
        revoked.revoked_at = Some("2026-01-01T00:00:00.000Z".into());
        view.reconcile(Records {
            tenants: vec![tenant.clone()],
            keys: vec![kept, revoked, key_of(tenant.id, "new")],
            realms: vec![realm],
        });
        assert!(!kept_token.is_cancelled() && view.active_key("kept").is_some());
        assert!(revoked_token.is_cancelled() && view.active_key("revoked").is_none());
        assert!(removed_token.is_cancelled() && !view.keys.contains_key("removed"));
        assert!(
            view.active_key("new").is_some(),
            "a key created elsewhere works"
        );
        let entry = &view.realms[&(tenant.id, "r".to_string())];
        assert!(
            Arc::ptr_eq(&entry.verifier, &verifier),
            "an unchanged realm keeps its verifier (and the token cache its entries)"
        );
        let tenant_token = view.tenants[&tenant.id].token.clone();
        view.reconcile(Records {
            tenants: Vec::new(),
            keys: Vec::new(),
            realms: Vec::new(),
        });
        assert!(tenant_token.is_cancelled() && kept_token.is_cancelled());
        assert!(view.realms.is_empty() && view.active_key("new").is_none());
    }

    #[test]
    fn replacing_a_realm_revokes_only_when_a_key_is_dropped() {
        let mut view = View::default();
        let tenant = Uuid::new_v4();
        view.insert_tenant(Tenant {
            id: tenant,
            slug: "t".into(),
            name: String::new(),
            created_at: String::new(),
            allowed_origins: AllowedOrigins::default(),
        });
        let key = |material: &str| super::super::jwt::VerificationKey {
            kid: None,
            algorithm: super::super::jwt::JwtAlgorithm::Hs256,
            material: material.repeat(32),
        };
        let realm = |keys| Realm {
            tenant,
            name: "r".into(),
            keys,
            audience: None,
            issuer: None,
            leeway_seconds: 0,
        };
        let put = |view: &mut View, realm: Realm| {
            let verifier = realm.verifier().unwrap();
            view.insert_realm(realm, verifier);
            view.realms[&(tenant, "r".to_string())].token.clone()
        };
        let first = put(&mut view, realm(vec![key("a")]));
        let added = put(&mut view, realm(vec![key("a"), key("b")]));
        assert!(!first.is_cancelled() && !added.is_cancelled());
        let dropped = put(&mut view, realm(vec![key("b")]));
        assert!(
            first.is_cancelled(),
            "dropping key a revokes what it admitted"
        );
        assert!(!dropped.is_cancelled());
    }
}
