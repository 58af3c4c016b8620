//! The auth registry: tenants, API keys and realms, persisted in the store and
//! held in memory for lookups on every request.
//!
//! Invariants: every change is committed durably through the writer before
//! the in-memory view changes, so a change the admin API acknowledged is in
//! effect for the next request and survives restarts; the view is replaced
//! under one lock, so readers never see half a change.

use super::jwt::Verifier;
use super::keys::{self, ApiKey, Scope};
use super::realms::{self, DEFAULT_REALM, Realm};
use super::tenants::{self, Tenant};
use crate::datadir::InstanceConfig;
use crate::error::{ApiError, ErrorCode};
use crate::store::{Store, StoreError, keys as store_keys};
use crate::writer::{Footprint, Writer};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use uuid::Uuid;

#[derive(Default)]
struct View {
    tenants: HashMap<Uuid, Tenant>,
    keys: HashMap<String, ApiKey>,
    realms: HashMap<(Uuid, String), (Realm, Arc<Verifier>)>,
}

/// How often a key's last-used time is written to the store.
const LAST_USED_PERSIST_MS: u64 = 60_000;

/// Tenants, keys and realms.
pub struct Registry {
    writer: Writer,
    default_tenant: Uuid,
    view: RwLock<View>,
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
        let view = store.run(load_view).await?;
        let registry = Arc::new(Self {
            writer,
            default_tenant: instance.default_tenant.id,
            view: RwLock::new(view),
            last_persisted_use: std::sync::Mutex::default(),
        });
        registry
            .seed(instance)
            .await
            .map_err(|err| StoreError(err.message))?;
        Ok(registry)
    }

    async fn seed(&self, instance: &InstanceConfig) -> Result<(), ApiError> {
        let seed = &instance.default_tenant;
        if self.tenant(&seed.id).is_none() {
            self.save_tenant(Tenant {
                id: seed.id,
                slug: seed.slug.clone(),
                name: "Default tenant".into(),
                created_at: instance.created_at.clone(),
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
        self.read().tenants.get(id).cloned()
    }

    /// A tenant by slug.
    pub fn tenant_by_slug(&self, slug: &str) -> Option<Tenant> {
        self.read()
            .tenants
            .values()
            .find(|t| t.slug == slug)
            .cloned()
    }

    /// All tenants, by slug.
    pub fn tenants(&self) -> Vec<Tenant> {
        let mut all: Vec<Tenant> = self.read().tenants.values().cloned().collect();
        all.sort_by(|a, b| a.slug.cmp(&b.slug));
        all
    }

    /// Creates a new tenant with a fresh id.
    pub async fn create_tenant(&self, slug: String, name: String) -> Result<Tenant, ApiError> {
        self.save_tenant(Tenant {
            id: Uuid::new_v4(),
            slug,
            name,
            created_at: crate::clock::rfc3339_millis(crate::clock::unix_millis()),
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

    /// Creates or replaces a tenant (slugs stay unique).
    pub async fn save_tenant(&self, tenant: Tenant) -> Result<Tenant, ApiError> {
        tenants::validate_slug(&tenant.slug).map_err(ApiError::validation)?;
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
            store_keys::auth(store_keys::AUTH_TENANT, &tenant.id),
            Some(to_json(&tenant)?),
        )
        .await?;
        self.write().tenants.insert(tenant.id, tenant.clone());
        Ok(tenant)
    }

    /// Deletes a tenant with its keys and realms (never the default tenant).
    pub async fn delete_tenant(&self, id: &Uuid) -> Result<(), ApiError> {
        if *id == self.default_tenant {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the default tenant cannot be deleted",
            ));
        }
        if self.tenant(id).is_none() {
            return Err(ApiError::not_found("no such tenant"));
        }
        let keys: Vec<Uuid> = self.keys(id).iter().map(|key| key.id).collect();
        let realm_names: Vec<String> = self
            .realms(id)
            .into_iter()
            .map(|realm| realm.name)
            .collect();
        let tenant = *id;
        self.writer
            .commit(Footprint::SMALL, move |change| {
                change.delete(store_keys::auth(store_keys::AUTH_TENANT, &tenant));
                for key in &keys {
                    change.delete(store_keys::auth(store_keys::AUTH_KEY, key));
                }
                for name in &realm_names {
                    change.delete(store_keys::auth_realm(&tenant, name));
                }
                Ok(())
            })
            .await?;
        let mut view = self.write();
        view.tenants.remove(id);
        view.keys.retain(|_, key| key.tenant != *id);
        view.realms.retain(|(tenant, _), _| tenant != id);
        Ok(())
    }

    /// Creates an API key; returns the record and the secret (shown only now).
    pub async fn create_key(
        &self,
        tenant: Uuid,
        name: String,
        scopes: Vec<Scope>,
    ) -> Result<(ApiKey, String), ApiError> {
        if self.tenant(&tenant).is_none() {
            return Err(ApiError::not_found("no such tenant"));
        }
        if name.trim().is_empty() || name.len() > 100 || scopes.is_empty() {
            return Err(ApiError::validation(
                "a key needs a name (1-100 characters) and at least one scope",
            ));
        }
        let secret = crate::secret::generate(keys::KEY_PREFIX)
            .map_err(|err| ApiError::internal(err.to_string()))?;
        let key = ApiKey {
            id: Uuid::new_v4(),
            tenant,
            name,
            scopes,
            hash: keys::hash_secret(&secret),
            prefix: keys::display_prefix(&secret),
            created_at: crate::clock::rfc3339_millis(crate::clock::unix_millis()),
            revoked_at: None,
            last_used_at: None,
        };
        self.store_key(key.clone()).await?;
        Ok((key, secret))
    }

    async fn store_key(&self, key: ApiKey) -> Result<(), ApiError> {
        self.persist(
            store_keys::auth(store_keys::AUTH_KEY, &key.id),
            Some(to_json(&key)?),
        )
        .await?;
        self.write().keys.insert(key.hash.clone(), key);
        Ok(())
    }

    /// A tenant's keys (active and revoked), oldest first.
    pub fn keys(&self, tenant: &Uuid) -> Vec<ApiKey> {
        let mut all: Vec<ApiKey> = self
            .read()
            .keys
            .values()
            .filter(|k| k.tenant == *tenant)
            .cloned()
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        all
    }

    /// Revokes a key; effective for the next request.
    pub async fn revoke_key(&self, tenant: &Uuid, id: &Uuid) -> Result<ApiKey, ApiError> {
        let mut key = self
            .keys(tenant)
            .into_iter()
            .find(|key| key.id == *id)
            .ok_or_else(|| ApiError::not_found("no such key for this tenant"))?;
        if key.revoked_at.is_none() {
            key.revoked_at = Some(crate::clock::rfc3339_millis(crate::clock::unix_millis()));
            self.store_key(key.clone()).await?;
        }
        Ok(key)
    }

    /// Records that `key` was just used: in memory at once, in the store at
    /// most once a minute (in the background, never delaying the request).
    pub fn touch_key(self: &Arc<Self>, key: &ApiKey) {
        let now = crate::clock::unix_millis();
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
        let used_at = crate::clock::rfc3339_millis(now);
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
                let key = store_keys::auth(store_keys::AUTH_KEY, &id);
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
        if let Some(key) = self.write().keys.get_mut(&hash) {
            key.last_used_at = Some(used_at);
        }
        Ok(())
    }

    /// The active key whose secret is `secret`.
    pub fn key_by_secret(&self, secret: &str) -> Option<ApiKey> {
        let hash = keys::hash_secret(secret);
        self.read()
            .keys
            .get(&hash)
            .filter(|key| key.is_active())
            .cloned()
    }

    /// A realm of a tenant.
    pub fn realm(&self, tenant: &Uuid, name: &str) -> Option<Realm> {
        self.read()
            .realms
            .get(&(*tenant, name.to_string()))
            .map(|(realm, _)| realm.clone())
    }

    /// A realm's verifier.
    pub fn verifier(&self, tenant: &Uuid, name: Option<&str>) -> Option<Arc<Verifier>> {
        let name = name.unwrap_or(DEFAULT_REALM).to_string();
        self.read()
            .realms
            .get(&(*tenant, name))
            .map(|(_, verifier)| verifier.clone())
    }

    /// A tenant's realms, by name.
    pub fn realms(&self, tenant: &Uuid) -> Vec<Realm> {
        let mut all: Vec<Realm> = self
            .read()
            .realms
            .values()
            .filter(|(realm, _)| realm.tenant == *tenant)
            .map(|(realm, _)| realm.clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Creates or replaces a realm after checking every key.
    pub async fn put_realm(&self, realm: Realm) -> Result<Realm, ApiError> {
        realms::validate_name(&realm.name).map_err(ApiError::validation)?;
        if self.tenant(&realm.tenant).is_none() {
            return Err(ApiError::not_found("no such tenant"));
        }
        let verifier = realm.verifier().map_err(ApiError::validation)?;
        self.persist(
            store_keys::auth_realm(&realm.tenant, &realm.name),
            Some(to_json(&realm)?),
        )
        .await?;
        self.write().realms.insert(
            (realm.tenant, realm.name.clone()),
            (realm.clone(), Arc::new(verifier)),
        );
        Ok(realm)
    }

    /// Deletes a realm.
    pub async fn delete_realm(&self, tenant: &Uuid, name: &str) -> Result<(), ApiError> {
        if self.realm(tenant, name).is_none() {
            return Err(ApiError::not_found("no such realm"));
        }
        self.persist(store_keys::auth_realm(tenant, name), None)
            .await?;
        self.write().realms.remove(&(*tenant, name.to_string()));
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value)
        .map_err(|err| ApiError::internal(format!("encoding an auth record: {err}")))
}

fn load_view(store: &Store) -> Result<View, StoreError> {
    let mut view = View::default();
    for tenant in load_all::<Tenant>(store, store_keys::AUTH_TENANT)? {
        view.tenants.insert(tenant.id, tenant);
    }
    for key in load_all::<ApiKey>(store, store_keys::AUTH_KEY)? {
        view.keys.insert(key.hash.clone(), key);
    }
    for realm in load_all::<Realm>(store, store_keys::AUTH_REALM)? {
        match realm.verifier() {
            Ok(verifier) => {
                view.realms.insert(
                    (realm.tenant, realm.name.clone()),
                    (realm, Arc::new(verifier)),
                );
            }
            Err(err) => {
                tracing::error!(realm = %realm.name, error = %err, "stored realm is unusable; skipped")
            }
        }
    }
    Ok(view)
}

fn load_all<T: DeserializeOwned>(store: &Store, kind: u8) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    store.for_each_blocking(&store_keys::auth_prefix(kind), |_, value| {
        let record = serde_json::from_slice(value)
            .map_err(|err| StoreError(format!("auth record unreadable: {err}")))?;
        out.push(record);
        Ok(())
    })?;
    Ok(out)
}
